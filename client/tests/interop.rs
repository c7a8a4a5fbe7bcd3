//! Interoperability with the real Perl module, both ways: Perl writers read and reaped by
//! Rust, Rust writers (both write modes) read and reaped by Perl, and Rust writers
//! recovering when a Parallel::Scoreboard 0.08 reader reaps their unlocked `.tmp`.
//!
//! Needs `perl`, Class::Accessor::Lite (Debian: libclass-accessor-lite-perl) and the
//! module, from `../shared/interop` beside the repository or else wherever Perl finds it
//! (`PERL5LIB`); skips with a reason when they are missing, except under `CI=true`,
//! where that is a failure.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scoreboard::{Scoreboard, WriteMode, read_dir};
use scoreboard_testkit::wait_until;
use support::{fork, next_command};

fn main() {
    let Some(lib) = perl_module() else { return };
    let lib = lib.map(|lib| &*Box::leak(lib.into_boxed_path()));
    PERL_LIB.set(lib).unwrap();
    support::run(&[
        (
            "perl_writers_are_read_and_reaped_by_rust",
            perl_writers_read_by_rust,
        ),
        (
            "rust_writers_are_read_and_reaped_by_perl",
            rust_writers_read_by_perl,
        ),
        (
            "rust_writers_survive_a_0_08_reader_reaping_tmp_files",
            rust_writers_survive_tmp_reaping,
        ),
        (
            "the_conformance_vectors_read_alike_in_rust_and_perl",
            vectors_read_alike,
        ),
        (
            "python_writers_are_read_by_rust_and_perl_and_reaped_by_rust",
            python_writers_read_by_rust_and_perl,
        ),
        (
            "rust_and_perl_writers_are_read_by_python",
            rust_and_perl_writers_read_by_python,
        ),
    ]);
}

/// Where the module is, for `perl -I`; `None` when Perl finds it itself (`PERL5LIB`).
static PERL_LIB: std::sync::OnceLock<Option<&'static Path>> = std::sync::OnceLock::new();

/// Whether Perl loads Parallel::Scoreboard, with `-I lib` when given; why not if not.
fn perl_loads_the_module(lib: Option<&Path>) -> Result<(), String> {
    let mut command = Command::new("perl");
    if let Some(lib) = lib {
        command.arg("-I").arg(lib);
    }
    match command.args(["-MParallel::Scoreboard", "-e1"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "perl cannot load Parallel::Scoreboard: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        )),
        Err(e) => Err(format!("cannot run perl: {e}")),
    }
}

/// Finds the module: `../shared/interop` beside the repository, else wherever Perl
/// finds it (`PERL5LIB`). `Some(None)`: Perl finds it without help.
fn perl_module() -> Option<Option<PathBuf>> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/interop");
    let problem = if lib.join("Parallel/Scoreboard.pm").exists() {
        match perl_loads_the_module(Some(&lib)) {
            Ok(()) => return Some(Some(lib)),
            Err(problem) => problem,
        }
    } else {
        match perl_loads_the_module(None) {
            Ok(()) => return Some(None),
            Err(problem) => format!("{} not found, and from PERL5LIB: {problem}", lib.display()),
        }
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("interop tests must run under CI=true, but {problem}");
    }
    eprintln!("skipping interop tests: {problem}");
    None
}

fn perl(script: &str, dir: &Path) -> Command {
    let mut command = Command::new("perl");
    if let Some(lib) = PERL_LIB.get().unwrap() {
        command.arg("-I").arg(lib);
    }
    command
        .args(["-MParallel::Scoreboard", "-e", script])
        .arg(dir);
    command
}

/// A Perl worker: updates to "perl <pid> started", then to each line read from stdin,
/// acknowledging each with a line on stdout; at EOF it exits (DESTROY unlinks its file).
const PERL_WORKER: &str = r#"
    my $sb = Parallel::Scoreboard->new(base_dir => $ARGV[0]);
    $| = 1;
    $sb->update("perl $$ started");
    print "ready\n";
    while (my $line = <STDIN>) { chomp $line; $sb->update($line); print "ok\n"; }
"#;

/// A Perl reader: read_all, printing `id<TAB>status` per worker, sorted.
const PERL_READER: &str = r#"
    my $sb = Parallel::Scoreboard->new(base_dir => $ARGV[0], worker_id => sub { "perl-reader" });
    my $all = $sb->read_all;
    print "$_\t$all->{$_}\n" for sort keys %$all;
"#;

fn perl_read_all(dir: &Path) -> BTreeMap<String, String> {
    let out = perl(PERL_READER, dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "perl warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (id, status) = line.split_once('\t').unwrap();
            (id.to_owned(), status.to_owned())
        })
        .collect()
}

fn rust_read_all(dir: &Path) -> BTreeMap<String, String> {
    let snapshot = read_dir(dir).unwrap();
    assert!(snapshot.skipped.is_empty(), "{:?}", snapshot.skipped);
    snapshot
        .workers
        .into_iter()
        .map(|w| (w.id.clone(), w.status_lossy().into_owned()))
        .collect()
}

struct PerlWorker {
    child: std::process::Child,
    acks: BufReader<std::process::ChildStdout>,
}

impl PerlWorker {
    fn start(dir: &Path) -> Self {
        let mut child = perl(PERL_WORKER, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut acks = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        acks.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        PerlWorker { child, acks }
    }

    fn update(&mut self, status: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "{status}").unwrap();
        let mut line = String::new();
        self.acks.read_line(&mut line).unwrap();
        assert_eq!(line, "ok\n");
    }

    fn id(&self) -> String {
        self.child.id().to_string()
    }
}

fn perl_writers_read_by_rust() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut a = PerlWorker::start(dir);
    let mut b = PerlWorker::start(dir);
    let (a_id, b_id) = (a.id(), b.id());
    assert_eq!(
        rust_read_all(dir),
        BTreeMap::from([
            (a_id.clone(), format!("perl {a_id} started")),
            (b_id.clone(), format!("perl {b_id} started"))
        ])
    );

    a.update("busy GET /perl?q=1");
    assert_eq!(rust_read_all(dir)[&a_id], "busy GET /perl?q=1");
    // Perl rewrites in place without truncating: a shorter status after a longer one.
    a.update("idle");
    assert_eq!(rust_read_all(dir)[&a_id], "idle");

    // kill -9: Perl's lock goes with the process; Rust sees an unlocked file and reaps.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    assert!(dir.join(format!("status_{b_id}")).exists());
    let snapshot = read_dir(dir).unwrap();
    assert_eq!(snapshot.reaped, std::slice::from_ref(&b_id));
    assert_eq!(snapshot.workers.len(), 1);
    assert!(!dir.join(format!("status_{b_id}")).exists());

    // A long-lived Rust reader, too.
    let mut reader = scoreboard::DirReader::open(dir, Default::default()).unwrap();
    assert_eq!(reader.sweep().unwrap().workers[0].status, b"idle");
    a.update("busy again");
    assert_eq!(reader.sweep().unwrap().workers[0].status, b"busy again");

    // EOF: the Perl worker exits normally and its DESTROY removes its file.
    drop(a.child.stdin.take());
    assert!(a.child.wait().unwrap().success());
    assert!(rust_read_all(dir).is_empty());
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
}

fn rust_writers_read_by_perl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let spawn = |mode: WriteMode| {
        let dir = dir.clone();
        fork(move |commands| {
            let mut scoreboard = Scoreboard::builder(&dir).write_mode(mode).open().unwrap();
            scoreboard
                .update(format!(
                    "rust {} a rather long first status to leave a tail",
                    std::process::id()
                ))
                .unwrap();
            while let Some(command) = next_command(commands) {
                let status = if command == b'i' {
                    "idle".to_owned()
                } else {
                    format!("busy {mode:?}")
                };
                scoreboard.update(status).unwrap();
            }
            0
        })
    };
    let mut mapped = spawn(WriteMode::Mapped);
    let mut pwrite = spawn(WriteMode::Pwrite);
    let (m_id, p_id) = (mapped.pid.to_string(), pwrite.pid.to_string());
    wait_until(Duration::from_secs(5), "both Rust writers", || {
        rust_read_all(&dir).len() == 2
    });
    assert_eq!(
        perl_read_all(&dir),
        BTreeMap::from([
            (
                m_id.clone(),
                format!("rust {m_id} a rather long first status to leave a tail")
            ),
            (
                p_id.clone(),
                format!("rust {p_id} a rather long first status to leave a tail")
            ),
        ])
    );
    mapped.send(b'i');
    pwrite.send(b'i');
    wait_until(
        Duration::from_secs(5),
        "both idle, as Perl reads them",
        || perl_read_all(&dir).values().all(|s| s == "idle"),
    );
    mapped.send(b'b');
    wait_until(
        Duration::from_secs(5),
        "busy Mapped, as Perl reads it",
        || perl_read_all(&dir)[&m_id] == "busy Mapped",
    );

    // Perl's flock sees our lock (it did not reap a live file above) and sees it go.
    mapped.kill(libc::SIGKILL);
    mapped.wait();
    assert!(dir.join(format!("status_{m_id}")).exists());
    assert_eq!(
        perl_read_all(&dir),
        BTreeMap::from([(p_id.clone(), "idle".to_owned())])
    );
    assert!(
        !dir.join(format!("status_{m_id}")).exists(),
        "perl reaped the dead Rust worker"
    );
    assert_eq!(pwrite.wait(), 0);
    assert!(perl_read_all(&dir).is_empty());
}

/// Parallel::Scoreboard 0.08 globs `status_*`, which includes `.tmp` files, and reaps
/// any it can lock: it can remove a Rust writer's `.tmp` before that writer locks it.
/// A writer whose id changes on every update creates a new file each time while Perl
/// reaps in a tight loop; every update must still succeed.
fn rust_writers_survive_tmp_reaping() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let mut reaper = perl(
        "my $sb = Parallel::Scoreboard->new(base_dir => $ARGV[0]); my $t = time + 3; $sb->cleanup while time < $t;",
        &dir,
    )
    .spawn()
    .unwrap();
    // Perl reaps: a dead worker's file (nobody holds its lock) goes.
    let dead = dir.join("status_dead");
    std::fs::write(&dead, b"").unwrap();
    wait_until(Duration::from_secs(5), "the 0.08 reader to reap", || {
        !dead.exists()
    });
    let mut writer = fork(move |_| {
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let id = counter.clone();
        let mut scoreboard = Scoreboard::builder(&dir)
            .worker_id(move || id.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            .open()
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut updates = 0;
        while Instant::now() < deadline {
            if let Err(error) = scoreboard.update("busy") {
                eprintln!("update failed after {updates} updates: {error}");
                return 1;
            }
            updates += 1;
        }
        eprint!("[{updates} files created under a reaping 0.08 reader] ");
        0
    });
    assert_eq!(writer.wait(), 0);
    assert!(reaper.wait().unwrap().success());
}

/// Bytes from their hex spelling.
fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// One conformance vector: (name, the file's bytes, what Rust reads, what Perl reads).
type Vector = (String, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The conformance vectors (`tests/vectors/frames.json`, which the Python tests read
/// too): (name, the file's bytes, the status a reader returns or `None`, the same for
/// Perl's `read_all`, where it differs).
fn vectors() -> Vec<Vector> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/frames.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let hex = |text: &serde_json::Value| text.as_str().map(unhex);
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vector| {
            let status = match &vector["status_repeat"] {
                serde_json::Value::Null => hex(&vector["status_hex"]),
                repeat => Some(vec![
                    repeat["byte"].as_u64().unwrap() as u8;
                    repeat["count"].as_u64().unwrap() as usize
                ]),
            };
            let bytes = hex(&vector["frame_hex"]).unwrap_or_else(|| {
                let status = status.as_deref().unwrap();
                let mut frame = vec![0; scoreboard::frame::frame_len(status.len())];
                scoreboard::frame::encode_into(&mut frame, status);
                frame
            });
            let expected = (vector["expect"] == "status").then(|| status.clone().unwrap());
            let perl = match vector["expect_perl"].as_str() {
                Some("status") => status,
                Some(_) => None,
                None => expected.clone(),
            };
            (
                vector["name"].as_str().unwrap().to_owned(),
                bytes,
                expected,
                perl,
            )
        })
        .collect()
}

/// Every vector in a live worker's file (this process holds each lock): Rust's reader
/// and Perl's `read_all` return the same statuses, and skip the same frames.
fn vectors_read_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let vectors = vectors();
    let mut held = Vec::new();
    for (index, (_, bytes, _, _)) in vectors.iter().enumerate() {
        let path = dir.join(format!("status_v{index}"));
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        file.lock().unwrap();
        held.push(file);
    }
    let rust: BTreeMap<String, Vec<u8>> = read_dir(dir)
        .unwrap()
        .workers
        .into_iter()
        .map(|w| (w.id, w.status))
        .collect();
    let out = perl(
        r#"my $sb = Parallel::Scoreboard->new(base_dir => $ARGV[0], worker_id => sub { "perl-reader" });
           my $all = $sb->read_all;
           print "$_\t" . unpack("H*", $all->{$_}) . "\n" for sort keys %$all;"#,
        dir,
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let perl: BTreeMap<String, Vec<u8>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (id, hex) = line.split_once('\t').unwrap();
            (id.to_owned(), unhex(hex))
        })
        .collect();
    for (index, (name, _, expected, by_perl)) in vectors.iter().enumerate() {
        let id = format!("v{index}");
        assert_eq!(rust.get(&id), expected.as_ref(), "Rust, vector {name:?}");
        assert_eq!(perl.get(&id), by_perl.as_ref(), "Perl, vector {name:?}");
    }
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        vectors.len(),
        "nothing reaped"
    );
}

/// `python3` with the package from `python/src` (the repository's, not an installed one).
fn python(script: &str, dir: &Path) -> Command {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/src");
    let mut command = Command::new("python3");
    command.env("PYTHONPATH", src).args(["-c", script]).arg(dir);
    command
}

/// A Python worker's file, read by Rust and Perl alike; after its SIGKILL, reaped by Rust.
fn python_writers_read_by_rust_and_perl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut child = python(
        "import sys\nfrom scoreboard import Scoreboard\nb = Scoreboard(sys.argv[1])\n\
         b.update('busy GET /py é')\nprint('ready', flush=True)\nsys.stdin.read()",
        dir,
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let id = child.id().to_string();
    let snapshot = read_dir(dir).unwrap();
    assert_eq!(snapshot.workers.len(), 1);
    assert_eq!(snapshot.workers[0].id, id);
    assert_eq!(snapshot.workers[0].status, "busy GET /py é".as_bytes());
    assert_eq!(perl_read_all(dir).len(), 1, "Perl sees the Python worker");
    child.kill().unwrap();
    child.wait().unwrap();
    let snapshot = read_dir(dir).unwrap();
    assert_eq!(snapshot.reaped, [id]);
    assert!(snapshot.workers.is_empty());
}

/// Rust and Perl workers, read by Python's `read_dir`.
fn rust_and_perl_writers_read_by_python() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rust = Scoreboard::builder(dir)
        .worker_id(|| "rust")
        .open()
        .unwrap();
    rust.update("busy GET /rust").unwrap();
    let mut perl = PerlWorker::start(dir);
    perl.update("busy GET /perl");
    let out = python(
        "import sys\nfrom scoreboard import read_dir\n\
         for k, v in sorted(read_dir(sys.argv[1]).items()): print(k, v.decode())",
        dir,
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{} busy GET /perl\nrust busy GET /rust\n", perl.id())
    );
    drop(perl.child.stdin.take());
    perl.child.wait().unwrap();
}
