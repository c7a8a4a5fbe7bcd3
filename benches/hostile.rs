//! What a hostile service user costs the agent: budgets, not speed records.
//!
//! The agent runs as root (the worst case) with `WATCHDOG_USEC=1s`, watching a service
//! whose directory belongs to uid 65534 and a well-behaved one with one worker. The
//! attacker, a real process under `setpriv`, then does in turn what the issue found:
//!
//! * `hardlinks-1MiB` — 300 names for one locked file holding a 1 MiB status;
//! * `hardlinks-torn` — 800 names for one locked file whose digest never matches;
//! * `torn-1MiB x200` — 200 locked files whose 1 MiB frame never checks out (each read
//!   ten times by a reader without a byte budget);
//! * `alternating x400` — 400 locked files, a different 50 of them valid 1 MiB frames
//!   every 2.2 s, the rest never checking out (to make a reader keep old statuses);
//! * `symlinks-100k` — 100,000 symlinks named `status_*`;
//! * `churn` — 8 loops creating, renaming and removing worker-like files for 10 s.
//!
//! For each: the agent's CPU share, peak RSS and descriptors, the worst gap between its
//! watchdog pings, the mean sweep time of the hostile directory (from the metrics
//! textfile), and how long after a kill -9 the other service's dead worker is reaped
//! (its STATUS= follows at once). Finally, how long SIGTERM takes.
//!
//! `SCOREBOARD_AGENT=/path/to/scoreboard-agent` measures another build (an older one, for
//! before/after figures); it must accept the same configuration. Needs root and setpriv.

#[path = "support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::Worker;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("the hostile bench needs root (to own files and act as uid 65534)");
        return;
    }
    let binary = std::env::var_os("SCOREBOARD_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::binary("scoreboard-agent"));
    println!("agent: {}", binary.display());
    for scenario in [
        HARDLINKS_1MIB,
        HARDLINKS_TORN,
        TORN_1MIB,
        ALTERNATING_1MIB,
        SYMLINKS_100K,
        CHURN,
    ] {
        run(&binary, scenario);
    }
}

struct Scenario {
    name: &'static str,
    /// Perl run as uid 65534 in the hostile directory; it touches `../ready` when set up
    /// and keeps running (holding locks, churning) until killed.
    attack: &'static str,
    /// How many attacker processes.
    copies: usize,
    measure: Duration,
}

const HARDLINKS_1MIB: Scenario = Scenario {
    name: "hardlinks-1MiB",
    attack: "use Fcntl ':flock'; use Digest::MD5 'md5'; my $s = 'x' x (1 << 20);\
             open(my $f, '>', 'status_0.tmp') or die; print $f md5($s), pack('N', length $s), $s;\
             close $f; open($f, '<', 'status_0.tmp') or die; flock($f, LOCK_EX) or die;\
             rename('status_0.tmp', 'status_0') or die; link('status_0', \"status_$_\") or die for 1..300;\
             open(my $r, '>', '../ready'); close $r; sleep 600;",
    copies: 1,
    measure: Duration::from_secs(5),
};

const HARDLINKS_TORN: Scenario = Scenario {
    name: "hardlinks-torn",
    attack: "use Fcntl ':flock'; open(my $f, '>', 'status_0.tmp') or die;\
             print $f ('x' x 16), pack('N', 4), 'oops'; close $f;\
             open($f, '<', 'status_0.tmp') or die; flock($f, LOCK_EX) or die;\
             rename('status_0.tmp', 'status_0') or die; link('status_0', \"status_$_\") or die for 1..800;\
             open(my $r, '>', '../ready'); close $r; sleep 600;",
    copies: 1,
    measure: Duration::from_secs(5),
};

const TORN_1MIB: Scenario = Scenario {
    name: "torn-1MiB x200",
    attack: "use Fcntl ':flock'; my @held; for my $n (1..200) {\
             open(my $f, '>', \"status_$n.tmp\") or die; print $f (chr(0) x 16), pack('N', 1 << 20), 'x' x (1 << 20);\
             close $f; open($f, '<', \"status_$n.tmp\") or die; flock($f, LOCK_EX) or die;\
             rename(\"status_$n.tmp\", \"status_$n\") or die; push @held, $f; }\
             open(my $r, '>', '../ready'); close $r; sleep 600;",
    copies: 1,
    measure: Duration::from_secs(5),
};

const ALTERNATING_1MIB: Scenario = Scenario {
    name: "alternating x400",
    attack: "use Fcntl ':flock'; use Digest::MD5 'md5'; my $s = 'x' x (1 << 20);\
             my $good = md5($s) . pack('N', length $s) . $s; my $bad = (chr(0) x 16) . pack('N', 1 << 20);\
             my @held; for my $n (1..400) { open(my $f, '>', \"status_$n.tmp\") or die;\
             print $f $bad; close $f; open($f, '+<', \"status_$n.tmp\") or die; flock($f, LOCK_EX) or die;\
             rename(\"status_$n.tmp\", \"status_$n\") or die; push @held, $f; }\
             open(my $r, '>', '../ready'); close $r; my $round = 0;\
             while (1) { for my $n (0..399) { my $f = $held[$n]; truncate($f, 0); seek($f, 0, 0);\
             print $f ((int($n / 50) == $round % 8) ? $good : $bad); $f->flush; }\
             $round++; select(undef, undef, undef, 2.2); }",
    copies: 1,
    measure: Duration::from_secs(10),
};

const SYMLINKS_100K: Scenario = Scenario {
    name: "symlinks-100k",
    attack: "symlink('/etc/passwd', \"status_$_\") or die for 1..100000;\
             open(my $r, '>', '../ready'); close $r; sleep 600;",
    copies: 1,
    measure: Duration::from_secs(5),
};

const CHURN: Scenario = Scenario {
    name: "churn",
    attack: "use Fcntl ':flock'; open(my $r, '>', '../ready'); close $r; my $i = 0;\
             while (1) { $i++; my $n = \"status_$$\\_$i\"; open(my $f, '>', \"$n.tmp\") or die;\
             flock($f, LOCK_EX); rename(\"$n.tmp\", $n); close $f; unlink $n; }",
    copies: 8,
    measure: Duration::from_secs(10),
};

fn run(binary: &Path, scenario: Scenario) {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        base.join("agent.toml"),
        format!(
            "bus = \"none\"\nstate_directory = \"{0}\"\n[metrics]\ntextfile = \"{0}/metrics.prom\"\n",
            base.display()
        ),
    )
    .unwrap();
    std::fs::create_dir(base.join("services.d")).unwrap();
    for (unit, dir) in [("evil", "evil/scoreboard"), ("good", "good")] {
        std::fs::write(
            base.join(format!("services.d/{unit}.toml")),
            format!(
                "unit = \"{unit}\"\ndirectory = \"{}\"\nnotify = \"none\"\n",
                base.join(dir).display()
            ),
        )
        .unwrap();
    }
    std::fs::create_dir_all(base.join("evil/scoreboard")).unwrap();
    for dir in ["evil", "evil/scoreboard"] {
        std::os::unix::fs::chown(base.join(dir), Some(65534), Some(65534)).unwrap();
    }
    std::fs::create_dir(base.join("good")).unwrap();
    let notify = UnixDatagram::bind(base.join("notify")).unwrap();
    let messages = record(notify);
    let mut agent = Killed(
        support::with_watchdog_pid(binary)
            .arg("--config")
            .arg(base.join("agent.toml"))
            .env("NOTIFY_SOCKET", base.join("notify"))
            .env("WATCHDOG_USEC", "1000000")
            .env("RUST_LOG", "error")
            .env_remove("JOURNAL_STREAM")
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    let mut good = Worker::start(&base.join("good"), "idle");
    wait_for(
        &messages,
        "STATUS=watching 2 services, 1 workers",
        Instant::now() - Duration::from_secs(5),
    );

    let attack_started = Instant::now();
    let attackers: Vec<Killed> = (0..scenario.copies)
        .map(|_| {
            Killed(
                Command::new("setpriv")
                    .args([
                        "--reuid=65534",
                        "--regid=65534",
                        "--clear-groups",
                        "/usr/bin/perl",
                        "-e",
                    ])
                    .arg(scenario.attack)
                    .current_dir(base.join("evil/scoreboard"))
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    while !base.join("evil/ready").exists() {
        assert!(
            attack_started.elapsed() < Duration::from_secs(120),
            "attacker not ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let measure_started = Instant::now();
    let cpu_before = support::cpu_seconds(pid);
    let mut peak_fds = 0;
    while measure_started.elapsed() < scenario.measure && agent.0.try_wait().unwrap().is_none() {
        peak_fds = peak_fds.max(support::open_fds(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive = agent.0.try_wait().unwrap().is_none();
    let cpu = if alive {
        (support::cpu_seconds(pid) - cpu_before) / measure_started.elapsed().as_secs_f64()
    } else {
        f64::NAN
    };
    let peak_rss = if alive { support::memory_kib(pid).1 } else { 0 };
    let killed = Instant::now();
    good.0.kill().unwrap();
    good.0.wait().unwrap();
    // The killed worker's file left behind is what the agent reaps at once (inotify), and
    // the other service's STATUS= goes out right after: time the reap.
    let kill_seen = loop {
        if std::fs::read_dir(base.join("good"))
            .unwrap()
            .next()
            .is_none()
        {
            break Some(killed.elapsed());
        }
        if killed.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let sweep = mean_sweep(&base.join("metrics.prom"), "evil.service");
    let (gap, pings) = worst_gap(&messages, measure_started);
    drop(attackers);
    let term = Instant::now();
    let stopped = if alive {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        loop {
            if agent.0.try_wait().unwrap().is_some() {
                break Some(term.elapsed());
            }
            if term.elapsed() > Duration::from_secs(30) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    } else {
        None
    };
    println!(
        "{:<15} CPU {:>5.1}%  peak RSS {:>7.1} MiB  peak fds {:>6}  watchdog worst gap {:>8.2?} ({pings} pings)  \
         sweep of the hostile dir {}  other service's dead worker reaped in {}  SIGTERM to exit {}{}",
        scenario.name,
        cpu * 100.0,
        peak_rss as f64 / 1024.0,
        peak_fds,
        gap,
        sweep.map_or("n/a".to_owned(), |d| format!("{d:.2?}")),
        kill_seen.map_or("never (30 s)".to_owned(), |d| format!("{d:.2?}")),
        stopped.map_or("n/a".to_owned(), |d| format!("{d:.2?}")),
        if alive { "" } else { "  (agent DIED)" },
    );
}

type Messages = Arc<Mutex<Vec<(Instant, String)>>>;

fn record(socket: UnixDatagram) -> Messages {
    let messages: Messages = Arc::default();
    let sink = messages.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            let text = support::datagram_text(&buf[..n]);
            sink.lock().unwrap().push((Instant::now(), text));
        }
    });
    messages
}

fn wait_for(messages: &Messages, expected: &str, since: Instant) {
    wait_for_within(messages, expected, since, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no {expected:?}"));
}

/// How long after `since` the datagram `expected` arrived, if within `within`.
fn wait_for_within(
    messages: &Messages,
    expected: &str,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some((at, _)) = messages
            .lock()
            .unwrap()
            .iter()
            .find(|(at, text)| *at >= since && text == expected)
        {
            return Some(*at - since);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn worst_gap(messages: &Messages, since: Instant) -> (Duration, usize) {
    let mut pings: Vec<Instant> = messages
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, text)| *at >= since && text == "WATCHDOG=1")
        .map(|(at, _)| *at)
        .collect();
    pings.insert(0, since);
    pings.push(Instant::now());
    let worst = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    (worst, pings.len() - 2)
}

/// Mean of `scoreboard_sweep_duration_seconds` for `unit`, from the textfile.
fn mean_sweep(textfile: &Path, unit: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(textfile).ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(&format!("unit=\"{unit}\"")))?
            .rsplit_once(' ')?
            .1
            .parse()
            .ok()
    };
    let sum = value("scoreboard_sweep_duration_seconds_sum")?;
    let count = value("scoreboard_sweep_duration_seconds_count")?;
    (count > 0.0).then(|| Duration::from_secs_f64(sum / count))
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
