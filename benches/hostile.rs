//! What a hostile service user costs the agent: budgets, not speed records.
//!
//! The agent runs as root (the worst case) with `WATCHDOG_USEC=1s`, watching a service
//! whose directory belongs to uid 65534 and a well-behaved one with one worker. The
//! attacker, a real process under `setpriv`, then does each of these in turn:
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
//! `SCOREBOARD_AGENT=/path/to/scoreboard-agent` measures another build, for
//! comparing two builds; it must accept the same configuration. Needs root and setpriv;
//! programs missing from `target/release/` are built first.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scoreboard_testkit::{
    Agent, AgentDir, Killed, NotifySocket, Worker, binary, cpu_seconds, emptied, memory_kib,
    open_fds, perl_as_nobody, poll_every, wait_until,
};

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
        .unwrap_or_else(|| binary("scoreboard-agent"));
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
    let metrics = tempfile::tempdir().unwrap();
    let textfile = metrics.path().join("metrics.prom");
    let dir = AgentDir::new(&format!(
        "bus = \"none\"\n[metrics]\ntextfile = \"{}\"\n",
        textfile.display()
    ));
    let base = dir.root();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(base.join("evil/scoreboard")).unwrap();
    for scoreboard in ["evil", "evil/scoreboard"] {
        std::os::unix::fs::chown(base.join(scoreboard), Some(65534), Some(65534)).unwrap();
    }
    std::fs::create_dir(base.join("good")).unwrap();
    dir.service("evil", &base.join("evil/scoreboard"), "notify = \"none\"\n")
        .service("good", &base.join("good"), "notify = \"none\"\n");
    let notify = NotifySocket::bind(&base.join("notify"));
    let messages = notify.record();
    let mut agent = Agent::spawn(
        dir.agent_command(binary)
            .env("NOTIFY_SOCKET", notify.path())
            .env("WATCHDOG_USEC", "1000000")
            .env("RUST_LOG", "error"),
    );
    let pid = agent.pid();
    let mut good = Worker::with_status(&base.join("good"), "idle");
    messages.wait_for(
        "STATUS=watching 2 services, 1 workers",
        Instant::now() - Duration::from_secs(5),
        Duration::from_secs(10),
    );

    let attackers: Vec<Killed> = (0..scenario.copies)
        .map(|_| perl_as_nobody(&base.join("evil/scoreboard"), scenario.attack))
        .collect();
    wait_until(Duration::from_secs(120), "the attacker to be ready", || {
        base.join("evil/ready").exists()
    });
    let measure_started = Instant::now();
    let cpu_before = cpu_seconds(pid);
    let mut peak_fds = 0;
    while measure_started.elapsed() < scenario.measure && agent.running() {
        peak_fds = peak_fds.max(open_fds(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive = agent.running();
    let cpu = if alive {
        (cpu_seconds(pid) - cpu_before) / measure_started.elapsed().as_secs_f64()
    } else {
        f64::NAN
    };
    let peak_rss = if alive { memory_kib(pid).1 } else { 0 };
    let killed = Instant::now();
    good.kill9();
    // The killed worker's file left behind is what the agent reaps at once (inotify), and
    // the other service's STATUS= goes out right after: time the reap.
    let kill_seen = emptied(&base.join("good"), killed, Duration::from_secs(30));
    let sweep = mean_sweep(&textfile, "evil.service");
    let (gap, pings) = messages.watchdog_gaps(measure_started);
    drop(attackers);
    let term = Instant::now();
    let stopped = if alive {
        agent.signal(rustix::process::Signal::TERM);
        let exited = || (!agent.running()).then(|| term.elapsed());
        poll_every(Duration::from_millis(5), Duration::from_secs(30), exited)
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
