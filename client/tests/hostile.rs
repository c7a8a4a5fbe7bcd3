//! A reader running as root against a directory owned by a hostile user (uid 65534,
//! acting through real processes under `setpriv`): what it plants — symlinks, swapped
//! directories, hard links, floods of entries — must not turn the reader against other
//! users' files nor make its cost grow with what was planted.
//!
//! Needs root (to own the victim's files and to hand a directory to uid 65534) and
//! setpriv; skips with a reason otherwise, except under `CI=true`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use scoreboard::{DirReader, ReadOptions, Scoreboard, SkipKind, SkipReason, frame, read_dir};
use scoreboard_testkit::{Killed, as_root_or_skip};

const ATTACKER: u32 = 65534;

fn can_run() -> bool {
    as_root_or_skip("hostile-user tests")
}

/// A world-traversable root-owned base; `svc` owned by the attacker, as a service's
/// `RuntimeDirectory=` would be; `victim`, root's, holding files a reaper would remove
/// (nobody holds their locks).
struct Scene {
    _tmp: tempfile::TempDir,
    base: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_owned();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        let svc = base.join("svc");
        fs::create_dir(&svc).unwrap();
        std::os::unix::fs::chown(&svc, Some(ATTACKER), Some(ATTACKER)).unwrap();
        let victim = base.join("victim");
        fs::create_dir(&victim).unwrap();
        for n in 1..=5 {
            fs::write(victim.join(format!("status_{n}")), b"root's").unwrap();
        }
        Scene { _tmp: tmp, base }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.base.join(relative)
    }

    /// Runs `script` with sh as the attacker, in the base directory.
    fn attacker(&self, script: &str) {
        let out = as_attacker("sh")
            .args(["-c", script])
            .current_dir(&self.base)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn victim_files(&self) -> usize {
        fs::read_dir(self.path("victim")).unwrap().count()
    }
}

fn as_attacker(program: &str) -> Command {
    let mut command = Command::new("setpriv");
    command.args([
        &format!("--reuid={ATTACKER}"),
        &format!("--regid={ATTACKER}"),
        "--clear-groups",
        program,
    ]);
    command
}

#[test]
fn a_symlink_planted_by_the_directory_owner_is_not_followed() {
    if !can_run() {
        return;
    }
    let scene = Scene::new();
    scene.attacker("ln -s ../victim svc/scoreboard");
    let error = read_dir(scene.path("svc/scoreboard")).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(
        error
            .to_string()
            .contains("symbolic link owned by nobody (uid 65534)"),
        "{error}"
    );
    assert!(DirReader::open(scene.path("svc/scoreboard"), ReadOptions::default()).is_err());
    assert_eq!(scene.victim_files(), 5, "root's files were reaped");
}

#[test]
fn a_directory_swapped_for_a_symlink_is_noticed_and_not_followed() {
    if !can_run() {
        return;
    }
    let scene = Scene::new();
    scene.attacker("mkdir svc/scoreboard");
    let reader = DirReader::open(scene.path("svc/scoreboard"), ReadOptions::default()).unwrap();
    assert!(reader.still_at_path());
    scene.attacker("mv svc/scoreboard svc/x && ln -s ../victim svc/scoreboard");
    assert!(!reader.still_at_path(), "the swap went unnoticed");
    assert!(DirReader::open(scene.path("svc/scoreboard"), ReadOptions::default()).is_err());
    // Renamed away with no symlink in its place: noticed too.
    scene.attacker("rm svc/scoreboard && mkdir svc/scoreboard");
    assert!(!reader.still_at_path());
    assert_eq!(scene.victim_files(), 5);
}

#[test]
fn a_parent_swapped_for_a_symlink_is_not_followed() {
    if !can_run() {
        return;
    }
    let scene = Scene::new();
    // The configured path is svc/app/scoreboard; root's look-alike is victim-parent.
    fs::create_dir_all(scene.path("victim-parent")).unwrap();
    std::os::unix::fs::symlink("../victim", scene.path("victim-parent/scoreboard")).unwrap();
    scene.attacker("mkdir -p svc/app/scoreboard");
    scene.attacker("mv svc/app svc/old && ln -s ../victim-parent svc/app");
    let error = read_dir(scene.path("svc/app/scoreboard")).unwrap_err();
    assert!(error.to_string().contains("symbolic link"), "{error}");
    assert_eq!(scene.victim_files(), 5);
}

#[test]
fn a_users_directory_may_not_lead_into_roots() {
    if !can_run() {
        return;
    }
    let scene = Scene::new();
    // However it got there (root made it, say), a root-owned directory inside the
    // attacker's is not somewhere a reader is sent by the attacker's path.
    fs::create_dir(scene.path("svc/rootdir")).unwrap();
    fs::write(scene.path("svc/rootdir/status_1"), b"root's").unwrap();
    let error = read_dir(scene.path("svc/rootdir")).unwrap_err();
    assert!(error.to_string().contains("leads to"), "{error}");
    assert!(scene.path("svc/rootdir/status_1").exists());
    // The owner's own directories are fine.
    scene.attacker("mkdir -p svc/a/b");
    read_dir(scene.path("svc/a/b")).unwrap();
}

/// An attacker process holding the lock of `svc/status_0` (framed `status`, so it
/// looks live) and `links` more names for it, until dropped.
struct LinkedHolder {
    _attacker: Killed,
}

impl LinkedHolder {
    fn start(scene: &Scene, status: &[u8], links: usize) -> LinkedHolder {
        let mut bytes = vec![0; frame::frame_len(status.len())];
        frame::encode_into(&mut bytes, status);
        let framed = scene.path("framed");
        fs::write(&framed, bytes).unwrap();
        let script = format!(
            "use Fcntl ':flock';\n\
             system('cp', {framed:?}, 'svc/status_0') == 0 or die;\n\
             open(my $f, '<', 'svc/status_0') or die;\n\
             flock($f, LOCK_EX) or die;\n\
             link('svc/status_0', \"svc/status_$_\") or die for 1..{links};\n\
             $| = 1; print \"ready\\n\"; sleep 600;\n",
            framed = framed.display().to_string()
        );
        LinkedHolder {
            _attacker: Killed::spawn_ready(
                as_attacker("/usr/bin/perl")
                    .args(["-e", &script])
                    .current_dir(&scene.base),
            ),
        }
    }
}

#[test]
fn hard_links_to_one_locked_file_are_never_read() {
    if !can_run() {
        return;
    }
    let scene = Scene::new();
    let _holder = LinkedHolder::start(&scene, &vec![b'x'; 1 << 20], 300);
    let mut reader = DirReader::open(scene.path("svc"), ReadOptions::default()).unwrap();
    for _ in 0..2 {
        let snapshot = reader.sweep().unwrap();
        assert!(snapshot.workers.is_empty(), "a hard-linked file was read");
        assert_eq!(snapshot.skip_counts[&SkipKind::HardLinked], 301);
        assert!(snapshot.skipped.len() <= scoreboard::MAX_LISTED_SKIPS);
        assert!(matches!(
            snapshot.skipped[0].reason,
            SkipReason::HardLinked { links: 301 }
        ));
    }
    // The one-shot reader does not fstat; it reads the first name only.
    let once = read_dir(scene.path("svc")).unwrap();
    assert!(once.workers.len() <= 1);
    assert_eq!(once.skip_counts[&SkipKind::HardLinked], 300);
    assert_eq!(once.reaped.len(), 0);
}

#[test]
fn a_hundred_thousand_planted_entries_cost_only_their_listing() {
    if !can_run() {
        return;
    }
    let scene = Scene::new();
    let script = "symlink('/etc/passwd', \"svc/status_$_\") or die for 0..99999";
    let out = as_attacker("/usr/bin/perl")
        .args(["-e", script])
        .current_dir(&scene.base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = DirReader::open(scene.path("svc"), ReadOptions::default()).unwrap();
    let snapshot = reader.sweep().unwrap();
    assert_eq!(snapshot.skip_counts[&SkipKind::NotRegularFile], 100_000);
    assert_eq!(snapshot.skipped.len(), scoreboard::MAX_LISTED_SKIPS);
    assert_eq!(reader.open_files(), 0);
    // Taken in steps, the pass comes to the same.
    let mut steps = 0;
    let snapshot = loop {
        steps += 1;
        match reader.sweep_until(Some(std::time::Instant::now())).unwrap() {
            scoreboard::Progress::Done(snapshot) => break snapshot,
            scoreboard::Progress::Partial => {}
        }
    };
    assert!(steps > 1, "a step did not stop at its deadline");
    assert_eq!(snapshot.skip_counts[&SkipKind::NotRegularFile], 100_000);
}

#[test]
fn files_and_bytes_are_budgeted_per_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut writers: Vec<Scoreboard> = (0..20)
        .map(|n| {
            let mut writer = Scoreboard::builder(tmp.path())
                .worker_id(move || format!("w{n:02}"))
                .open()
                .unwrap();
            writer.update(vec![b'a' + n as u8; 1000]).unwrap();
            writer
        })
        .collect();
    let options = ReadOptions {
        max_workers: 10,
        max_status_bytes: 5_500,
        ..ReadOptions::default()
    };
    let mut reader = DirReader::open(tmp.path(), options).unwrap();
    let snapshot = reader.sweep().unwrap();
    assert_eq!(
        snapshot.workers.len(),
        5,
        "the byte budget holds 5 statuses"
    );
    assert_eq!(snapshot.skip_counts[&SkipKind::OverByteBudget], 5);
    assert_eq!(snapshot.skip_counts[&SkipKind::TooManyFiles], 10);
    assert!(reader.open_files() <= 10);
    // Nothing was reaped: over budget is not dead.
    assert!(snapshot.reaped.is_empty());
    writers.truncate(3);
    let snapshot = reader.sweep().unwrap();
    assert_eq!(snapshot.workers.len(), 3);
    assert_eq!(snapshot.skipped_total(), 0, "{:?}", snapshot.skipped);
    assert_eq!(
        snapshot.reaped.len(),
        0,
        "the others removed their own files"
    );
}

/// Frames that never check out are read up to ten times each: every read is paid from
/// the byte budget, so a directory of them costs a pass no more than the budget.
#[test]
fn torn_frames_are_paid_for_from_the_byte_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let mut frame = vec![0u8; scoreboard::frame::frame_len(64 << 10)];
    scoreboard::frame::encode_into(&mut frame, &vec![b'x'; 64 << 10]);
    frame[0] ^= 0xff; // the digest never matches
    let _held: Vec<std::fs::File> = (0..40)
        .map(|n| {
            let staged = tmp.path().join("staged.tmp");
            fs::write(&staged, &frame).unwrap();
            let file = std::fs::File::open(&staged).unwrap();
            file.lock().unwrap();
            fs::rename(&staged, tmp.path().join(format!("status_{n}"))).unwrap();
            file
        })
        .collect();
    let options = ReadOptions {
        max_status_bytes: 1 << 20,
        ..ReadOptions::default()
    };
    let mut reader = DirReader::open(tmp.path(), options).unwrap();
    let snapshot = reader.sweep().unwrap();
    let torn = snapshot
        .skip_counts
        .get(&SkipKind::Torn)
        .copied()
        .unwrap_or(0);
    let over = snapshot.skip_counts[&SkipKind::OverByteBudget];
    assert_eq!(torn + over, 40);
    // 1 MiB pays for at most two files read ten times (650 KiB each).
    assert!(
        torn <= 2,
        "{torn} torn files read in full on a 1 MiB budget"
    );
    // Torn or over budget, a live worker is still known alive.
    assert_eq!(snapshot.unread.len(), 40);
    assert!(snapshot.workers.is_empty() && snapshot.reaped.is_empty());
}
