//! End to end on a real systemd: the .deb built by `packaging/build` is installed with
//! `dpkg -i` into a throwaway systemd booted in its own pid and mount namespaces, over
//! overlay mounts of /usr, /etc and /var so the host is never touched. Then the
//! scenarios run in order, each asserted, timings printed; last
//! the .rpm: installed, upgraded to a rebuild of it with a higher release
//! (`packaging/rpm/build`), and erased.
//!
//! Needs root, unshare/nsenter, rpmbuild and the built packages (in the target directory
//! this test was built in); skips with a reason when they are missing, except under
//! `CI=true`, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use scoreboard_testkit::{poll, target_dir, testkit_binary};

fn main() {
    let Some(packages) = preconditions() else {
        return;
    };
    check_package_contents(&packages);
    let system = System::boot();
    let scenarios: &[Scenario] = &[
        (
            "1 installed: the agent is active and shows its own status",
            installed,
        ),
        (
            "2 enable demo.service: Status shows the workers within 2 s",
            enable_and_start,
        ),
        (
            "3 kill -9 of a worker: the Status line drops it within 1 s",
            kill_worker,
        ),
        (
            "4 restart demo: a new MainPID, the Status line follows",
            restart_service,
        ),
        (
            "5 restart and kill -9 of the agent: it comes back, nothing lost",
            restart_agent,
        ),
        ("6 SIGSTOP of the agent: the watchdog restarts it", watchdog),
        (
            "7 journal: structured fields from the agent",
            journal_fields,
        ),
        (
            "D-Bus: busctl and scoreboardctl agree with systemctl; \
             per-worker details only for who could read the directory",
            bus_details,
        ),
        (
            "D-Bus: a NUL byte in a status cannot take the agent off the bus",
            nul_byte,
        ),
        (
            "D-Bus: dbus restarted, then stopped: the agent comes back, STATUS= flows meanwhile",
            bus_restart,
        ),
        (
            "D-Bus: a flood of ListWorkers: no watchdog restart, memory bounded, STATUS= on time",
            bus_flood,
        ),
        (
            "D-Bus: 30 MiB arguments from uid 65534 on 3 connections: no restart, memory bounded",
            huge_messages,
        ),
        (
            "the agent stopped or killed: lines say they are not followed; a kill storm: it comes back",
            stale_lines_and_kill_storm,
        ),
        (
            "journald stopped for 60 s under churn: no restart, STATUS keeps following",
            hung_journal,
        ),
        (
            "metrics: Debian's node_exporter, as its own user, exports the agent's textfile",
            node_exporter_reads_the_textfile,
        ),
        (
            "9 an injected MAINPID=1 does not move demo's MainPID",
            injection,
        ),
        ("enable/disable are idempotent and exact", enable_disable),
        (
            "10 a service user's planted symlink cannot make the agent delete root's files",
            planted_symlink,
        ),
        (
            "health 1: a wedged Perl pool (all 4 workers hung) is restarted by systemd",
            wedged_pool_is_restarted,
        ),
        (
            "health 2: one stuck worker of 4 gets SIGTERM, the master replaces it",
            stuck_worker_is_signalled,
        ),
        (
            "health 3: a worker id naming a pid outside the unit is never signalled",
            foreign_pid_is_never_signalled,
        ),
        (
            "health 4: idle pools and one live worker are never acted on; a dry run only reports",
            quiet_pools_and_dry_runs_are_never_acted_on,
        ),
        (
            "health 5: the agent restarted mid-wedge: fired once, timer kept",
            agent_restart_mid_wedge,
        ),
        (
            "health 6: a fresh pool whose workers have not written yet is left alone",
            fresh_pool_is_left_alone,
        ),
        (
            "health 7: a pool the agent cannot read is unknown: said so, never restarted",
            unreadable_pool_is_unknown,
        ),
        (
            "health 8: a worker serving back to back is never stuck; a hung one beside it is",
            busy_worker_is_not_stuck,
        ),
        (
            "health 9: the agent restarted between SIGTERM and the grace: one TERM, one KILL",
            one_signal_across_agent_restart,
        ),
        (
            "health 10: saved progress times an hour old: bounded by the process, nothing signalled",
            saved_times_are_bounded,
        ),
        (
            "health 11: report mode reports what acting would do, tagged, once",
            report_mode_reports_exactly,
        ),
        ("health: tidy up", health_teardown),
        (
            "a scoreboard the unit makes read-only is refused, with the fix named",
            read_only_directory_is_refused,
        ),
        (
            "gunicorn (Debian's 20.1, then PyPI's newest): busy requests, kills, timeouts, kill_stuck_after and gthread; a Python worker's hostile statuses",
            gunicorn_pools,
        ),
        (
            "8 dpkg -r and --purge leave nothing behind",
            remove_and_purge,
        ),
        (
            "11 the .rpm: rpm -i creates the user, presets decide, the agent runs as it",
            rpm_install,
        ),
        (
            "12 the .rpm upgraded to a rebuild (release 2): configuration kept, agent restarted",
            rpm_upgrade,
        ),
        ("13 rpm -e leaves nothing of ours behind", rpm_erase),
    ];
    // While working on one scenario: `SCOREBOARD_E2E_ONLY=gunicorn,rpm` runs the first
    // (the install every other one stands on) and those whose names hold one of the words.
    let only = std::env::var("SCOREBOARD_E2E_ONLY").unwrap_or_default();
    let chosen = |index: usize, name: &str| {
        only.is_empty() || index == 0 || only.split(',').any(|word| name.contains(word))
    };
    let mut ran = 0;
    for (index, (name, scenario)) in scenarios.iter().enumerate() {
        if !chosen(index, name) {
            eprintln!("scenario {name} ... not chosen by SCOREBOARD_E2E_ONLY");
            continue;
        }
        ran += 1;
        eprintln!("scenario {name} ...");
        let started = Instant::now();
        scenario(&system);
        eprintln!("scenario {name} ... ok ({:.1?})", started.elapsed());
    }
    eprintln!(
        "test result: ok. {ran} of {} scenarios passed",
        scenarios.len()
    );
}

/// A named step, run in order against the one booted system.
type Scenario = (&'static str, fn(&System));

struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
}

fn skip_or_fail(reason: &str) -> Option<Packages> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the systemd end-to-end suite must run under CI=true, but {reason}");
    }
    eprintln!("skipping the systemd end-to-end suite: {reason}");
    None
}

fn preconditions() -> Option<Packages> {
    if !rustix::process::geteuid().is_root() {
        return skip_or_fail("it needs root (namespaces, mounts, dpkg)");
    }
    for tool in ["unshare", "nsenter", "dpkg-deb", "rpm", "rpmbuild"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return skip_or_fail(&format!("{tool} is not installed"));
        }
    }
    if !Path::new("/lib/systemd/systemd").exists() {
        return skip_or_fail("systemd is not installed");
    }
    let target = target_dir();
    let find = |dir: &str, ext: &str| {
        std::fs::read_dir(target.join(dir))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == ext))
    };
    match (find("debian", "deb"), find("rpm", "rpm")) {
        (Some(deb), Some(rpm)) => Some(Packages { deb, rpm }),
        _ => skip_or_fail(&format!(
            "{0}/debian/*.deb or {0}/rpm/*.rpm is missing: run packaging/build first",
            target.display()
        )),
    }
}

fn output(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Files both packages install (the unit under /lib on Debian, /usr/lib elsewhere).
const SHIPPED: &[&str] = &[
    "usr/bin/scoreboard-agent",
    "usr/bin/scoreboardctl",
    "etc/scoreboard/agent.toml",
    "lib/systemd/system/scoreboard-agent.service",
    "usr/lib/sysusers.d/scoreboard.conf",
    "usr/share/dbus-1/system.d/io.scoreboard.Agent1.conf",
    "usr/share/scoreboard-agent/scoreboard.rules.yml",
    "usr/share/scoreboard-agent/scoreboard-dashboard.json",
    "usr/share/man/man1/scoreboardctl.1.gz",
    "usr/share/man/man8/scoreboard-agent.8.gz",
    "usr/share/man/man5/scoreboard-agent.toml.5.gz",
    "usr/share/bash-completion/completions/scoreboardctl",
    "usr/share/bash-completion/completions/scoreboard-agent",
    "usr/share/fish/vendor_completions.d/scoreboardctl.fish",
    "usr/share/fish/vendor_completions.d/scoreboard-agent.fish",
    "usr/share/doc/scoreboard-agent/README.md",
    "usr/share/doc/scoreboard-agent/docs/operating.md",
    "usr/share/doc/scoreboard-agent/docs/architecture.md",
];

/// What the packages hold, their descriptions and changelogs, and the rpm's scriptlets.
fn check_package_contents(packages: &Packages) {
    let deb = output(Command::new("dpkg-deb").arg("-c").arg(&packages.deb));
    let rpm = output(Command::new("rpm").arg("-qpl").arg(&packages.rpm));
    let in_deb =
        |path: &str| deb.contains(&format!("./{path}")) || deb.contains(&format!("./usr/{path}"));
    let in_rpm = |path: &str| {
        rpm.lines()
            .any(|l| l == format!("/{path}") || l == format!("/usr/{path}"))
    };
    for path in SHIPPED {
        assert!(in_deb(path), "{path} missing from the .deb:\n{deb}");
        assert!(in_rpm(path), "{path} missing from the .rpm:\n{rpm}");
    }
    // Where each distribution looks, and each one's licence files.
    for path in [
        "usr/share/zsh/vendor-completions/_scoreboardctl",
        "usr/share/zsh/vendor-completions/_scoreboard-agent",
        "usr/share/doc/scoreboard-agent/copyright",
        "usr/share/doc/scoreboard-agent/changelog.Debian.gz",
        "usr/share/lintian/overrides/scoreboard-agent",
    ] {
        assert!(in_deb(path), "{path} missing from the .deb:\n{deb}");
    }
    // The rpm owns its directories, so that erasing it leaves none behind.
    for path in [
        "usr/share/zsh/site-functions/_scoreboardctl",
        "usr/share/zsh/site-functions/_scoreboard-agent",
        "usr/share/licenses/scoreboard-agent/LICENSE-MIT",
        "usr/share/licenses/scoreboard-agent/LICENSE-APACHE",
        "etc/scoreboard",
        "etc/scoreboard/services.d",
        "usr/share/doc/scoreboard-agent",
        "usr/share/licenses/scoreboard-agent",
        "usr/share/scoreboard-agent",
    ] {
        assert!(in_rpm(path), "{path} missing from the .rpm:\n{rpm}");
    }
    let control = |field: &str| {
        output(
            Command::new("dpkg-deb")
                .arg("-f")
                .arg(&packages.deb)
                .arg(field),
        )
    };
    assert_eq!(control("Package").trim(), "scoreboard-agent");
    let summary = env!("CARGO_PKG_DESCRIPTION");
    let description = control("Description");
    assert!(
        description.starts_with(&format!("{summary}\n")),
        "{description}"
    );
    let control_file = |name: &str| {
        output(Command::new("sh").arg("-c").arg(format!(
            "dpkg-deb --ctrl-tarfile {} | tar -xO ./{name}",
            packages.deb.display()
        )))
    };
    assert_eq!(
        control_file("conffiles").trim(),
        "/etc/scoreboard/agent.toml"
    );
    // Every file but the conffile, with its sum, as dpkg --verify reads them.
    let md5sums = control_file("md5sums");
    for path in [
        "usr/bin/scoreboard-agent",
        "usr/share/man/man1/scoreboardctl.1.gz",
    ] {
        assert!(
            md5sums.lines().any(|l| l.ends_with(&format!("  {path}"))),
            "{path} not in md5sums:\n{md5sums}"
        );
    }
    assert!(!md5sums.contains("etc/scoreboard"), "{md5sums}");
    // The agent's user exists before anything #DEBHELPER# added starts the agent.
    let postinst = control_file("postinst");
    let sysusers = postinst
        .find("systemd-sysusers")
        .unwrap_or_else(|| panic!("postinst runs no systemd-sysusers:\n{postinst}"));
    let start = postinst
        .find("deb-systemd-invoke")
        .unwrap_or_else(|| panic!("postinst starts nothing:\n{postinst}"));
    assert!(sysusers < start, "{postinst}");

    // The rpm: a summary and a description of its own, a changelog.
    let info = output(
        Command::new("rpm")
            .args([
                "-qp",
                "--qf",
                "%{SUMMARY}\\n--\\n%{DESCRIPTION}\\n--\\n%{VERSION}-%{RELEASE}",
            ])
            .arg(&packages.rpm),
    );
    let [rpm_summary, rpm_description, version]: [&str; 3] = info
        .split("\n--\n")
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_else(|_| panic!("{info}"));
    assert_eq!(rpm_summary, summary);
    assert_ne!(rpm_description.trim(), summary);
    assert!(rpm_description.lines().count() > 1, "{rpm_description}");
    assert_eq!(version, format!("{}-1", env!("CARGO_PKG_VERSION")));
    let changelog = output(
        Command::new("rpm")
            .args(["-qp", "--changelog"])
            .arg(&packages.rpm),
    );
    assert!(
        changelog.starts_with("* ") && changelog.contains(&format!("> - {version}\n")),
        "{changelog}"
    );
    // Scriptlets as Fedora's %systemd_post/preun/postun_with_restart: presets on first
    // install (never a plain enable), disable and stop on erase, try-restart on upgrade.
    let scripts = output(
        Command::new("rpm")
            .args(["-qp", "--scripts"])
            .arg(&packages.rpm),
    );
    for expected in [
        "postinstall scriptlet",
        "systemd-sysusers /usr/lib/sysusers.d/scoreboard.conf",
        "systemctl daemon-reload",
        "systemctl --no-reload preset scoreboard-agent.service",
        "preuninstall scriptlet",
        "systemctl --no-reload disable --now scoreboard-agent.service",
        "postuninstall scriptlet",
        "systemctl try-restart scoreboard-agent.service",
    ] {
        assert!(
            scripts.contains(expected),
            "rpm scriptlets lack {expected:?}:\n{scripts}"
        );
    }
    assert!(!scripts.contains(" enable "), "{scripts}");
    eprintln!(
        "package contents: .deb and .rpm hold the binaries, unit, sysusers.d, D-Bus policy, config, \
         manual pages, completions, Prometheus rules and dashboard; the rpm owns its directories; \
         the user is made before the agent starts"
    );
}

/// Units that would rewrite the host or need hardware; masked before boot.
const MASKED: &[&str] = &[
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.timer",
    "systemd-remount-fs.service",
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-sysusers.service",
    "systemd-update-utmp.service",
    "systemd-journal-flush.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
];

/// A systemd booted in new pid and mount namespaces over overlays of /usr, /etc, /var.
struct System {
    unshare: Child,
    pid: u32,
    deb: PathBuf,
    rpm: PathBuf,
    _scratch: tempfile::TempDir,
}

impl System {
    fn boot() -> System {
        let scratch = tempfile::tempdir().unwrap();
        let script = format!(
            r#"set -e
W="$1"
mount -t tmpfs tmpfs "$W"
for d in usr etc var; do
    mkdir -p "$W/$d/upper" "$W/$d/work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/$d/upper,workdir=$W/$d/work" "/$d"
done
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system
for unit in {masked}; do ln -s /dev/null "/run/systemd/system/$unit"; done
exec env container=other /lib/systemd/systemd --system --unit=basic.target"#,
            masked = MASKED.join(" ")
        );
        let started = Instant::now();
        let unshare = Command::new("setsid")
            .args([
                "unshare",
                "--pid",
                "--fork",
                "--mount",
                "--mount-proc",
                "--propagation",
                "private",
                "bash",
                "-c",
                &script,
                "boot",
            ])
            .arg(scratch.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = poll(Duration::from_secs(10), || {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id()))
                    .ok()?;
            let pid: u32 = children.split_whitespace().next()?.parse().ok()?;
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            exe.ends_with("systemd").then_some(pid)
        })
        .expect("systemd did not start in the namespace");
        let mut system = System {
            unshare,
            pid,
            deb: PathBuf::new(),
            rpm: PathBuf::new(),
            _scratch: scratch,
        };
        // Until systemd has made its private socket, systemctl cannot reach it.
        let state = poll(Duration::from_secs(30), || {
            let state = system.sh("systemctl is-system-running --wait 2>/dev/null");
            (!state.trim().is_empty()).then_some(state)
        })
        .expect("systemd finished booting");
        eprintln!(
            "booted systemd (pid {pid} on the host) in {:.1?}: {}",
            started.elapsed(),
            state.trim()
        );
        // A running bus, as on any real system: it reads the package's policy when dpkg
        // unpacks it, before the postinst has made the user the policy names.
        system.must("systemctl start dbus.socket dbus.service");
        // Container images ship a policy-rc.d that forbids maintainer scripts to start
        // services; this is a whole system, where they must (the overlay keeps the host's).
        system.must("rm -f /usr/sbin/policy-rc.d");
        let packages = preconditions().unwrap();
        system.deb = packages.deb;
        system.rpm = packages.rpm;
        let installed = Instant::now();
        system.must(&format!("dpkg -i {}", system.deb.display()));
        eprintln!("dpkg -i took {:.1?}", installed.elapsed());
        // The workers and the flood client the scenarios run, which the packages do not
        // ship: into the overlaid /usr, where systemd's units and user nobody can run it.
        system.must(&format!(
            "install -D -m 0755 {} {TESTKIT}",
            testkit_binary().display()
        ));
        system
    }

    /// Runs `script` with sh inside the namespaces.
    fn run(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", "sh", "-c", script])
            .output()
            .unwrap()
    }

    /// Its stdout, whatever the exit status.
    fn sh(&self, script: &str) -> String {
        String::from_utf8_lossy(&self.run(script).stdout).into_owned()
    }

    /// Its stdout; the script must succeed.
    fn must(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "{script}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn property(&self, unit: &str, property: &str) -> String {
        self.sh(&format!("systemctl show -p {property} --value {unit}"))
            .trim()
            .to_owned()
    }

    /// Waits until `unit`'s StatusText is `expected`; returns how long that took.
    fn expect_status(&self, unit: &str, expected: &str, within: Duration) -> Duration {
        let started = Instant::now();
        let mut last = String::new();
        let reached = poll(within, || {
            last = self.property(unit, "StatusText");
            (last == expected).then(|| started.elapsed())
        });
        reached.unwrap_or_else(|| {
            panic!(
                "{unit}: no Status {expected:?} within {within:?} (last {last:?})\n{}",
                self.sh("journalctl -u scoreboard-agent --no-pager -n 30")
            )
        })
    }

    fn set_statuses(&self, statuses: &[&str]) {
        let lines: Vec<String> = statuses
            .iter()
            .map(|s| serde_json::to_string(s).unwrap())
            .collect();
        let script = format!(
            "printf '%s\\n' {} > /run/demo-control.tmp && mv /run/demo-control.tmp /run/demo-control",
            lines
                .iter()
                .map(|l| shell_quote(l))
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.must(&script);
    }

    /// Where the journal ends now: what [`System::agent_log_since`] reads after.
    fn journal_cursor(&self) -> String {
        let out = self.must("journalctl -n 1 --show-cursor --no-pager -o cat");
        out.lines()
            .rev()
            .find_map(|l| l.strip_prefix("-- cursor: "))
            .unwrap_or_else(|| panic!("no cursor in {out:?}"))
            .to_owned()
    }

    /// What the agent logged, and systemd about it, after `cursor`.
    fn agent_log_since(&self, cursor: &str) -> String {
        self.sh(&format!(
            "journalctl -u scoreboard-agent --after-cursor={} --no-pager -o cat",
            shell_quote(cursor)
        ))
    }

    /// Whether `io.scoreboard.Agent1` has an owner on the system bus (false while the
    /// bus is down, too).
    fn bus_name_owned(&self) -> bool {
        self.run("busctl --system status io.scoreboard.Agent1 >/dev/null 2>&1")
            .status
            .success()
    }

    /// Runs `script` with sh inside the namespaces, in the background, stdout piped.
    fn spawn(&self, script: &str) -> Child {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The agent's resident memory now and at its peak (`VmRSS`, `VmHWM`), in KiB.
    fn agent_rss_kib(&self) -> (u64, u64) {
        let pid = self.property("scoreboard-agent", "MainPID");
        let status = self.must(&format!("cat /proc/{pid}/status"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().strip_suffix(" kB"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{status}"))
        };
        (field("VmRSS"), field("VmHWM"))
    }
}

impl Drop for System {
    fn drop(&mut self) {
        // Killing the namespace's init kills everything in it; its mounts go with it.
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
        let _ = self.unshare.wait();
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `scoreboard-testkit` inside the throwaway system (the units below name it too).
const TESTKIT: &str = "/usr/local/bin/scoreboard-testkit";

const DEMO_UNIT: &str = "[Unit]
Description=Demo worker pool
[Service]
ExecStart=/usr/local/bin/scoreboard-testkit test-pool --workers 3 --dir /run/demo/scoreboard --control /run/demo-control
RuntimeDirectory=demo
# The agent reads the workers' files through the default ACL `enable` grants it,
# whatever their umask: the tightest one here.
UMask=0077
";

fn installed(system: &System) {
    assert_eq!(system.property("scoreboard-agent", "ActiveState"), "active");
    // The test helpers are scoreboard-testkit's, not the shipped CLI's.
    for helper in [
        "test-pool",
        "test-pool-worker",
        "hold-workers",
        "stdin-worker",
        "test-flood",
    ] {
        let out = system.run(&format!("scoreboardctl {helper} --help"));
        assert_eq!(
            out.status.code(),
            Some(2),
            "scoreboardctl {helper}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(
        system.property("scoreboard-agent", "UnitFileState"),
        "enabled"
    );
    let status = system.sh("systemctl status scoreboard-agent --no-pager");
    assert!(
        status.contains("Status: \"watching 0 services, 0 workers\""),
        "{status}"
    );
    let identity = agent_identity(system);
    // Whether the bus read our policy before postinst made the user (it then dropped
    // <policy user="scoreboard"> until postinst had it reload).
    let dropped = system
        .sh("journalctl -u dbus --no-pager | grep -c 'Unknown username \"scoreboard\"'")
        .trim()
        .to_owned();
    eprintln!("{identity}; bus log lines 'Unknown username \"scoreboard\"': {dropped}");
    let state = system.must("stat -c '%U:%G %a' /run/scoreboard");
    assert_eq!(state.trim(), "scoreboard:scoreboard 755");

    let ours =
        system.sh("systemd-analyze security scoreboard-agent.service --no-pager | tail -n 1");
    let typical = system.sh("systemd-analyze security dbus.service --no-pager | tail -n 1");
    eprintln!(
        "exposure (systemd-analyze security): {}   typical daemon: {}",
        ours.trim(),
        typical.trim()
    );
    let left = system.sh(
        "systemd-analyze security scoreboard-agent.service --no-pager | grep '✗' | \
         sed 's/  */ /g'",
    );
    eprintln!("what is left:\n{}", left.trim_end());
    let level: f64 = ours
        .split_whitespace()
        .rev()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(99.0);
    assert!(level <= 1.0, "{ours}");
}

/// The running agent's user and capabilities, asserted: user scoreboard, and
/// CAP_SYS_ADMIN (bit 21) alone effective, permitted, ambient and in the bounding set.
/// Returns them as a line to print.
fn agent_identity(system: &System) -> String {
    let pid = system.property("scoreboard-agent", "MainPID");
    assert_ne!(pid, "0");
    let user = system.must(&format!("ps -o user= -p {pid}"));
    assert_eq!(user.trim(), "scoreboard");
    let proc_status = system.must(&format!("cat /proc/{pid}/status"));
    let field = |name: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {name} in\n{proc_status}"))
            .trim()
            .to_owned()
    };
    let uid = system.must("id -u scoreboard").trim().to_owned();
    let gid = system.must("id -g scoreboard").trim().to_owned();
    assert!(
        field("Uid").split_whitespace().all(|u| u == uid),
        "{proc_status}"
    );
    assert!(
        field("Gid").split_whitespace().all(|g| g == gid),
        "{proc_status}"
    );
    // systemd gives User= its groups (initgroups): just its own.
    assert!(
        field("Groups").split_whitespace().all(|g| g == gid),
        "{proc_status}"
    );
    const SYS_ADMIN: &str = "0000000000200000";
    for set in ["CapEff", "CapPrm", "CapAmb", "CapBnd"] {
        assert_eq!(field(set), SYS_ADMIN, "{set}:\n{proc_status}");
    }
    // The bus gives the name to the agent's user.
    let owner = poll(Duration::from_secs(5), || {
        let owner = system.sh("busctl --system status io.scoreboard.Agent1");
        owner
            .lines()
            .any(|l| l == format!("UID={uid}"))
            .then_some(())
    });
    assert!(
        owner.is_some(),
        "io.scoreboard.Agent1 is not owned by uid {uid}:\n{}",
        system.sh("journalctl -u scoreboard-agent --no-pager -n 20")
    );
    format!(
        "agent pid {pid} runs as user {} (uid {uid}), owns io.scoreboard.Agent1; \
         CapEff {} (CAP_SYS_ADMIN only), CapBnd {}, NoNewPrivs {}",
        user.trim(),
        field("CapEff"),
        field("CapBnd"),
        field("NoNewPrivs")
    )
}

fn enable_and_start(system: &System) {
    system.must(&format!(
        "cat > /etc/systemd/system/demo.service <<'EOF'\n{DEMO_UNIT}EOF\nsystemctl daemon-reload"
    ));
    let report = system.must("scoreboardctl enable demo.service");
    for file in [
        "wrote /etc/tmpfiles.d/scoreboard-demo.conf",
        "wrote /etc/systemd/system/demo.service.d/50-scoreboard.conf",
        "wrote /etc/scoreboard/services.d/demo.toml",
    ] {
        assert!(report.contains(file), "{report}");
    }
    assert_eq!(system.property("demo", "NotifyAccess"), "main");
    system.set_statuses(&["idle", "idle", "idle"]);
    let started = Instant::now();
    system.must("systemctl start demo");
    system.expect_status("demo", "3 workers: 3 idle", Duration::from_secs(2));
    eprintln!(
        "time from start to the first Status: {:.0?}",
        started.elapsed()
    );
    let status = system.sh("systemctl status demo --no-pager");
    assert!(status.contains("Status: \"3 workers: 3 idle\""), "{status}");
    // The agent's access: the ACL `enable` wrote, on the directory and, inherited, on
    // each worker's file, although the workers run with UMask=0077.
    let acl = system.must("getfacl -cp /run/demo/scoreboard");
    for entry in ["user:scoreboard:rwx", "default:user:scoreboard:r--"] {
        assert!(acl.lines().any(|l| l == entry), "{acl}");
    }
    let file = system.must("ls -d /run/demo/scoreboard/status_* | head -n 1");
    let file = file.trim();
    let file_acl = system.must(&format!("getfacl -cp {file}"));
    assert!(
        file_acl
            .lines()
            .any(|l| l.starts_with("user:scoreboard:r--")),
        "{file_acl}"
    );
    let mode = system.must(&format!("stat -c '%A %U' {file}"));
    eprintln!(
        "a worker's file under UMask=0077: {} with {} (directory: {})",
        mode.trim(),
        file_acl
            .lines()
            .filter(|l| l.contains("scoreboard"))
            .collect::<Vec<_>>()
            .join(" "),
        acl.lines()
            .filter(|l| l.contains("scoreboard"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    system.set_statuses(&["busy GET /index.html", "idle", "idle"]);
    let took = system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));
    eprintln!("a worker's new state reached the Status line in {took:.0?} (sampled every 1 s)");
    let ours = system.must("scoreboardctl status demo --json");
    let json: serde_json::Value = serde_json::from_str(&ours).unwrap();
    assert_eq!(json["services"][0]["summary"], "3 workers: 2 idle, 1 busy");
}

fn worker_pids(system: &System) -> Vec<(String, String)> {
    let json: serde_json::Value =
        serde_json::from_str(&system.must("scoreboardctl status demo --json")).unwrap();
    json["services"][0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().to_owned(),
                w["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn kill_worker(system: &System) {
    let idle = worker_pids(system)
        .into_iter()
        .find(|(_, state)| state == "idle")
        .unwrap()
        .0;
    let killed = Instant::now();
    system.must(&format!("kill -9 {idle}"));
    system.expect_status("demo", "2 workers: 1 busy, 1 idle", Duration::from_secs(1));
    eprintln!(
        "kill -9 of worker {idle} to the updated Status: {:.0?}",
        killed.elapsed()
    );
}

fn restart_service(system: &System) {
    let before = system.property("demo", "MainPID");
    system.must("systemctl restart demo");
    let after = system.property("demo", "MainPID");
    assert_ne!(before, after);
    // RuntimeDirectory= removed /run/demo (our scoreboard with it) and made it anew.
    let took = system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));
    eprintln!("restart: MainPID {before} -> {after}, Status back in {took:.0?}");
}

fn restart_agent(system: &System) {
    system.must("systemctl restart scoreboard-agent");
    assert_eq!(system.property("scoreboard-agent", "ActiveState"), "active");
    // What it must remember across restarts (stuck timers) went to its runtime directory.
    system.must("test -s /run/scoreboard/demo.service.json");
    system.set_statuses(&["idle", "busy POST /api", "busy GET /"]);
    system.expect_status("demo", "3 workers: 2 busy, 1 idle", Duration::from_secs(3));

    let old = system.property("scoreboard-agent", "MainPID");
    let restarts: u32 = system
        .property("scoreboard-agent", "NRestarts")
        .parse()
        .unwrap();
    system.must(&format!("kill -9 {old}"));
    let back = Instant::now();
    let new = poll(Duration::from_secs(10), || {
        let pid = system.property("scoreboard-agent", "MainPID");
        (pid != old && pid != "0" && system.property("scoreboard-agent", "ActiveState") == "active")
            .then_some(pid)
    })
    .expect("the agent came back after kill -9");
    eprintln!(
        "agent killed with SIGKILL: back as {new} in {:.1?}",
        back.elapsed()
    );
    let now: u32 = system
        .property("scoreboard-agent", "NRestarts")
        .parse()
        .unwrap();
    assert_eq!(now, restarts + 1);
    // Nothing lost: every worker is there and changes still arrive.
    assert_eq!(worker_pids(system).len(), 3);
    system.set_statuses(&["idle", "idle", "busy GET /again"]);
    system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));
}

fn watchdog(system: &System) {
    let old = system.property("scoreboard-agent", "MainPID");
    system.must(&format!("kill -STOP {old}"));
    let stopped = Instant::now();
    let new = poll(Duration::from_secs(40), || {
        let pid = system.property("scoreboard-agent", "MainPID");
        (pid != old && pid != "0" && system.property("scoreboard-agent", "ActiveState") == "active")
            .then_some(pid)
    })
    .unwrap_or_else(|| {
        panic!(
            "no restart after SIGSTOP\n{}",
            system.sh("systemctl status scoreboard-agent --no-pager")
        )
    });
    eprintln!(
        "SIGSTOP: watchdog restarted the agent as {new} after {:.1?}",
        stopped.elapsed()
    );
    let log = system.sh("journalctl -u scoreboard-agent --no-pager");
    assert!(log.contains("Watchdog timeout"), "{log}");
}

fn journal_fields(system: &System) {
    let json = system.must("journalctl -u scoreboard-agent -o json --no-pager");
    let with_unit = json
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["SCOREBOARD_UNIT"] == "demo.service")
        .unwrap_or_else(|| panic!("no SCOREBOARD_UNIT field in\n{json}"));
    assert!(with_unit["MESSAGE"].is_string());
    assert!(
        json.contains("\"SCOREBOARD_WORKER\""),
        "no SCOREBOARD_WORKER field"
    );
}

fn bus_details(system: &System) {
    let path = "/io/scoreboard/Agent1/service/demo_2eservice";
    let introspection = system.must(&format!(
        "busctl --system introspect io.scoreboard.Agent1 {path}"
    ));
    for member in [
        ".ListWorkers",
        ".GetWorker",
        ".Summary",
        ".Counts",
        ".WorkerReaped",
    ] {
        assert!(
            introspection.contains(member),
            "{member} missing from\n{introspection}"
        );
    }
    let status_text = system.property("demo", "StatusText");
    let summary = system.must(&format!("busctl --system get-property io.scoreboard.Agent1 {path} io.scoreboard.Agent1.Service Summary"));
    assert_eq!(summary.trim(), format!("s \"{status_text}\""));
    let total = system.must(&format!("busctl --system get-property io.scoreboard.Agent1 {path} io.scoreboard.Agent1.Service Total"));
    assert_eq!(total.trim(), "u 3");
    // scoreboardctl reads the agent over the bus, and agrees with systemctl status.
    let json: serde_json::Value =
        serde_json::from_str(&system.must("scoreboardctl status demo.service --json")).unwrap();
    assert_eq!(json["source"], "agent");
    assert_eq!(json["services"][0]["summary"], status_text.as_str());
    let table = system.must("scoreboardctl status demo.service");
    assert!(
        table.starts_with(&format!("● demo.service — {status_text}\n")),
        "{table}"
    );
    let systemctl = system.sh("systemctl status demo --no-pager");
    assert!(
        systemctl.contains(&format!("Status: \"{status_text}\"")),
        "{systemctl}"
    );
    eprintln!("busctl: Summary {} for {status_text:?}", summary.trim());

    // Per-worker details only for who could read the directory: demo's is 0770 root root.
    let mode = system.must("stat -c '%a %U %G' /run/demo/scoreboard");
    assert_eq!(mode.trim(), "770 root root");
    let as_root = system.must(&format!(
        "busctl --system call io.scoreboard.Agent1 {path} io.scoreboard.Agent1.Service ListWorkers"
    ));
    assert!(as_root.starts_with("a(sssdb) 3 "), "{as_root}");
    let id = &worker_pids(system)[0].0;
    let nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups";
    let call = |who: &str, member: &str| {
        system.run(&format!(
            "{who} dbus-send --system --print-reply --dest=io.scoreboard.Agent1 {path} \
             io.scoreboard.Agent1.Service.{member}"
        ))
    };
    for member in ["ListWorkers".to_owned(), format!("GetWorker string:{id}")] {
        let refused = call(nobody, &member);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{member} as nobody: {said}");
        assert!(
            said.starts_with(
                "Error org.freedesktop.DBus.Error.AccessDenied: /run/demo/scoreboard: \
                 uid 65534 may not read per-worker details: "
            ),
            "{member} as nobody: {said}"
        );
        eprintln!("{member} as nobody: {}", said.trim());
    }
    // The summary is public, as in `systemctl status`.
    let public = system.must(&format!(
        "{nobody} busctl --system get-property io.scoreboard.Agent1 {path} \
         io.scoreboard.Agent1.Service Summary"
    ));
    assert_eq!(public, summary);
    let ctl = system.run(&format!("{nobody} scoreboardctl status demo.service"));
    let (out, err) = (
        String::from_utf8_lossy(&ctl.stdout),
        String::from_utf8_lossy(&ctl.stderr),
    );
    assert!(ctl.status.success(), "{out}{err}");
    assert!(
        out.starts_with(&format!("● demo.service — {status_text}\n")),
        "{out}"
    );
    assert!(
        !out.contains(id.as_str()),
        "a worker id shown to nobody:\n{out}"
    );
    assert!(
        err.contains("demo.service: per-worker details not shown: ") && err.contains("uid 65534"),
        "{err}"
    );
    eprintln!(
        "scoreboardctl status as nobody: exit 0, {:?}; stderr: {}",
        out.lines().next().unwrap_or(""),
        err.trim()
    );
    // A member of the directory's group may, through a supplementary group.
    let member = call(
        "setpriv --reuid=nobody --regid=nogroup --groups=0",
        "ListWorkers",
    );
    let reply = String::from_utf8_lossy(&member.stdout);
    assert!(
        member.status.success(),
        "ListWorkers as nobody in group root: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    assert_eq!(reply.matches("struct {").count(), 3, "{reply}");
    eprintln!("ListWorkers as root: 3 workers; as nobody with supplementary group root: 3 workers");
}

fn nul_byte(system: &System) {
    let path = "/io/scoreboard/Agent1/service/demo_2eservice";
    let agent = system.property("scoreboard-agent", "MainPID");
    let cursor = system.journal_cursor();
    // The control lines are JSON strings: a worker publishes the NUL byte itself.
    system.set_statuses(&["busy\u{0}x GET /", "idle", "idle"]);
    // Its state, "busy\0x", reaches the Status line with the NUL made a space.
    let took = system.expect_status(
        "demo",
        "3 workers: 2 idle, 1 busy x",
        Duration::from_secs(3),
    );
    eprintln!("a status holding NUL reached the Status line in {took:.0?}");
    std::thread::sleep(Duration::from_secs(3)); // three intervals
    let owner = system.must("busctl --system status io.scoreboard.Agent1");
    let uid = system.must("id -u scoreboard");
    assert!(
        owner.lines().any(|l| l == format!("UID={}", uid.trim())),
        "{owner}"
    );
    let counts = system.must(&format!(
        "busctl --system get-property io.scoreboard.Agent1 {path} io.scoreboard.Agent1.Service Counts"
    ));
    // On the bus the NUL is escaped as cescape does it.
    assert!(counts.contains("\"idle\" 2"), "{counts}");
    assert!(counts.contains("x00x"), "{counts}");
    let workers = system.must(&format!(
        "busctl --system call io.scoreboard.Agent1 {path} io.scoreboard.Agent1.Service ListWorkers"
    ));
    assert!(workers.starts_with("a(sssdb) 3 "), "{workers}");
    assert!(workers.contains("x00x GET /"), "{workers}");
    assert_eq!(system.property("scoreboard-agent", "MainPID"), agent);
    let log = system.agent_log_since(&cursor);
    for bad in ["Broken pipe", "lost the", "reconnect"] {
        assert!(!log.contains(bad), "{bad:?} in the agent's log:\n{log}");
    }
    // And STATUS= still flows.
    system.set_statuses(&["idle", "idle", "idle"]);
    let took = system.expect_status("demo", "3 workers: 3 idle", Duration::from_secs(3));
    eprintln!(
        "after 3 s: io.scoreboard.Agent1 still owned, Counts {}, ListWorkers 3 workers, \
         nothing lost in the log; back to all idle in {took:.0?}",
        counts.trim()
    );
}

fn bus_restart(system: &System) {
    // systemctl reaches systemd over its private socket: it works while dbus is down.
    system.set_statuses(&["idle", "idle", "busy GET /outage"]);
    system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));
    let agent = system.property("scoreboard-agent", "MainPID");

    // A restart of the bus: the socket stays, the daemon is new.
    let cursor = system.journal_cursor();
    let restarting = Instant::now();
    system.must("systemctl restart dbus.service");
    let restarted = restarting.elapsed();
    let back = poll(Duration::from_secs(10), || {
        system.bus_name_owned().then_some(restarting.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "io.scoreboard.Agent1 not back 10 s after systemctl restart dbus\n{}",
            system.agent_log_since(&cursor)
        )
    });
    eprintln!(
        "systemctl restart dbus: took {restarted:.0?}; io.scoreboard.Agent1 owned again \
         {back:.0?} after it began (target 2 s{})",
        if back <= Duration::from_secs(2) {
            ""
        } else {
            ": MISSED"
        }
    );
    let (lost, reconnected) = expect_one_reconnect(system, &cursor);
    eprintln!("the agent said: {lost:?}, then {reconnected:?}");
    system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));

    // An outage: while there is no bus at all, a worker dies.
    let idle = worker_pids(system)
        .into_iter()
        .find(|(_, state)| state == "idle")
        .unwrap()
        .0;
    let main_pid = system.property("demo", "MainPID");
    let cgroup = system.property("demo", "ControlGroup");
    let cursor = system.journal_cursor();
    system.must("systemctl stop dbus.service dbus.socket");
    assert!(!system.bus_name_owned());
    // --check-config cannot ask systemd how it starts the agent: it says what went
    // unchecked rather than passing it silently.
    let unchecked = system.sh("scoreboard-agent --check-config 2>&1 >/dev/null");
    assert!(
        unchecked.contains("warning:") && unchecked.contains("are not checked"),
        "{unchecked}"
    );
    system.must(&format!("kill -9 {idle}"));
    let took = system.expect_status("demo", "2 workers: 1 busy, 1 idle", Duration::from_secs(1));
    eprintln!(
        "bus down: kill -9 of worker {idle} to the updated Status in {took:.0?} (target 200 ms{})",
        if took <= Duration::from_millis(200) {
            ""
        } else {
            ": MISSED"
        },
    );
    // Meanwhile only demo's control group vouches for the main process the agent knew:
    // moved out of it (as a recycled pid would be elsewhere), it is sent nothing; back
    // in, the line goes on. Out of every hierarchy holding the unit's path: the unified
    // one, and in the hybrid and legacy layouts `unified/` and the named `systemd/`.
    let hierarchies: Vec<String> = system
        .must(&format!(
            "for h in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do \
             grep -qx {main_pid} $h{cgroup}/cgroup.procs 2>/dev/null && echo $h; done"
        ))
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!hierarchies.is_empty(), "MainPID {main_pid} in no {cgroup}");
    for h in &hierarchies {
        system.must(&format!("echo {main_pid} > {h}/cgroup.procs"));
    }
    system.set_statuses(&["busy GET /moved", "busy GET /moved", "busy GET /moved"]);
    std::thread::sleep(Duration::from_millis(2500)); // two intervals and more
    assert_eq!(
        system.property("demo", "StatusText"),
        "2 workers: 1 busy, 1 idle",
        "STATUS= sent for MainPID {main_pid} moved out of {cgroup} ({})",
        hierarchies.join(", ")
    );
    for h in &hierarchies {
        system.must(&format!("echo {main_pid} > {h}{cgroup}/cgroup.procs"));
    }
    let took = system.expect_status("demo", "2 workers: 2 busy", Duration::from_secs(2));
    eprintln!(
        "bus down: MainPID {main_pid} moved out of {cgroup} in {}: no STATUS= for 2.5 s; \
         back in it: the line arrived {took:.0?} later",
        hierarchies.join(", ")
    );
    let starting = Instant::now();
    system.must("systemctl start dbus.socket dbus.service");
    let back = poll(Duration::from_secs(10), || {
        system.bus_name_owned().then_some(starting.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "io.scoreboard.Agent1 not back 10 s after dbus started again\n{}",
            system.agent_log_since(&cursor)
        )
    });
    eprintln!("bus started again: io.scoreboard.Agent1 owned {back:.0?} after systemctl start");
    let (lost, reconnected) = expect_one_reconnect(system, &cursor);
    eprintln!("the agent said: {lost:?}, then {reconnected:?}");
    assert_eq!(system.property("scoreboard-agent", "MainPID"), agent);
    assert_eq!(system.property("scoreboard-agent", "ActiveState"), "active");
    // The details are served again, and the pool is whole again for what follows.
    let json: serde_json::Value =
        serde_json::from_str(&system.must("scoreboardctl status demo.service --json")).unwrap();
    assert_eq!(json["source"], "agent");
    assert_eq!(json["services"][0]["workers"].as_array().unwrap().len(), 2);
    system.set_statuses(&["idle", "idle", "busy GET /again"]);
    system.must("systemctl restart demo");
    system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));
}

/// The agent's log after `cursor` holds exactly one "lost the … bus connection" and
/// then one "reconnected …" line (waited for); returns them.
fn expect_one_reconnect(system: &System, cursor: &str) -> (String, String) {
    let log = poll(Duration::from_secs(5), || {
        let log = system.agent_log_since(cursor);
        log.contains("reconnected to the").then_some(log)
    })
    .unwrap_or_else(|| {
        panic!(
            "no \"reconnected\" line in the agent's log:\n{}",
            system.agent_log_since(cursor)
        )
    });
    let lines = |what: &str| -> Vec<&str> { log.lines().filter(|l| l.contains(what)).collect() };
    let lost = lines("lost the ");
    let reconnected = lines("reconnected to the ");
    assert_eq!(lost.len(), 1, "{log}");
    assert_eq!(reconnected.len(), 1, "{log}");
    assert!(
        reconnected[0].ends_with("serving io.scoreboard.Agent1 again"),
        "{log}"
    );
    (lost[0].to_owned(), reconnected[0].to_owned())
}

const BIG_UNIT: &str = "[Unit]
Description=A pool of 3,000 workers in one process, as user nobody
[Service]
User=nobody
Group=nogroup
RuntimeDirectory=big
# hold-workers holds its workers until its stdin closes: never, here.
ExecStart=/bin/sh -c 'sleep infinity | /usr/local/bin/scoreboard-testkit hold-workers --dir /run/big/scoreboard --count 3000'
";

fn bus_flood(system: &System) {
    system.must(&format!(
        "cat > /etc/systemd/system/big.service <<'EOF'\n{BIG_UNIT}EOF\nsystemctl daemon-reload"
    ));
    system.must("scoreboardctl enable big.service");
    system.must("systemctl start big");
    let took = system.expect_status(
        "big",
        "3000 workers: 2250 idle, 750 busy",
        Duration::from_secs(10),
    );
    eprintln!("big.service: 3,000 workers in its Status {took:.1?} after systemctl start");
    let owner = system.must("stat -c '%U:%G %a' /run/big/scoreboard");
    assert_eq!(owner.trim(), "nobody:nogroup 770");
    system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));

    let agent = system.property("scoreboard-agent", "MainPID");
    let restarts = system.property("scoreboard-agent", "NRestarts");
    let cursor = system.journal_cursor();
    let (_, peak_before) = system.agent_rss_kib();
    // nobody owns big's directory, so may read its workers: the budgets alone hold it.
    let mut flood = system.spawn(&format!(
        "setpriv --reuid=nobody --regid=nogroup --clear-groups {TESTKIT} test-flood \
         --path /io/scoreboard/Agent1/service/big_2eservice --clients 4 --in-flight 120 --seconds 20",
    ));
    let flooding = Instant::now();
    let mut rss_max = 0;
    let sample = |rss_max: &mut u64| {
        let (rss, _) = system.agent_rss_kib();
        *rss_max = (*rss_max).max(rss);
    };
    while flooding.elapsed() < Duration::from_secs(5) {
        sample(&mut rss_max);
        std::thread::sleep(Duration::from_millis(250));
    }
    // Another client, root here, still gets its (small) answers: the flood spends only
    // the flooder's own budget, and no more than all clients' together.
    let asked = Instant::now();
    let json: serde_json::Value =
        serde_json::from_str(&system.must("scoreboardctl status demo.service --json")).unwrap();
    assert_eq!(json["source"], "agent", "{json}");
    let pool = worker_pids(system);
    assert_eq!(pool.len(), 3);
    eprintln!(
        "during the flood: scoreboardctl status demo.service as root, twice: 3 workers from the \
         agent in {:.0?}",
        asked.elapsed()
    );
    let idle = pool
        .into_iter()
        .find(|(_, state)| state == "idle")
        .unwrap()
        .0;
    let killed = Instant::now();
    system.must(&format!("kill -9 {idle}"));
    let took = system.expect_status("demo", "2 workers: 1 busy, 1 idle", Duration::from_secs(1));
    eprintln!(
        "during the flood: kill -9 of demo's worker {idle} to the updated Status in {took:.0?} \
         (target 500 ms{}; {:.0?} with the kill)",
        if took <= Duration::from_millis(500) {
            ""
        } else {
            ": MISSED"
        },
        killed.elapsed()
    );
    while flood.try_wait().unwrap().is_none() {
        sample(&mut rss_max);
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = flood.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "test-flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |field: &str| report[field].as_u64().unwrap();
    let seconds = report["seconds"].as_f64().unwrap();
    eprintln!(
        "flood of 4 clients × 120 ListWorkers in flight for {seconds:.1} s: {report}; \
         {:.0} replies/s ({:.0} worker records/s), {:.0} LimitsExceeded/s",
        count("replies") as f64 / seconds,
        count("replies") as f64 * 3000.0 / seconds,
        count("limited") as f64 / seconds,
    );
    assert!(count("replies") > 0, "{report}");
    assert_eq!(count("denied"), 0, "{report}");
    // The four clients are one user, and a user gets at most 50,000 records a second
    // however many connections it opens: 16 answers of 3,000 in every one-second window
    // the flood touched.
    let budget = 16 * (seconds.ceil() as u64 + 1);
    assert!(
        count("replies") <= budget,
        "{report}: more than the budgets allow ({budget})"
    );
    assert!(count("limited") > 0, "{report}");

    // The agent held: same process, no watchdog restart, memory within MemoryMax=.
    assert_eq!(system.property("scoreboard-agent", "MainPID"), agent);
    assert_eq!(system.property("scoreboard-agent", "NRestarts"), restarts);
    let log = system.agent_log_since(&cursor);
    assert!(!log.contains("Watchdog timeout"), "{log}");
    let (rss, peak) = system.agent_rss_kib();
    sample(&mut rss_max);
    // cgroup2's memory.peak, or cgroup v1's (a hybrid host).
    let memory_peak = system.sh(
        "cg=$(systemctl show -p ControlGroup --value scoreboard-agent); \
         cat /sys/fs/cgroup$cg/memory.peak 2>/dev/null || \
         cat /sys/fs/cgroup/memory$cg/memory.max_usage_in_bytes",
    );
    eprintln!(
        "agent {agent}: NRestarts {restarts} before and after, no watchdog timeout; \
         VmRSS {:.1} MiB now, {:.1} MiB at most sampled during the flood, VmHWM {:.1} MiB \
         (was {:.1} MiB before it); cgroup memory.peak {}",
        rss as f64 / 1024.0,
        rss_max as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak_before as f64 / 1024.0,
        memory_peak
            .trim()
            .parse::<f64>()
            .map(|b| format!("{:.1} MiB", b / 1048576.0))
            .unwrap_or_else(|_| "unknown".to_owned()),
    );
    assert!(rss_max <= 64 * 1024, "VmRSS {rss_max} KiB");
    assert!(peak <= 64 * 1024, "VmHWM {peak} KiB");
    // It still answers, within the budgets again a second later.
    let workers = poll(Duration::from_secs(3), || {
        let workers = system.sh(
            "busctl --system call io.scoreboard.Agent1 /io/scoreboard/Agent1/service/big_2eservice \
             io.scoreboard.Agent1.Service ListWorkers | head -c 16",
        );
        workers.starts_with("a(sssdb) 3000 ").then_some(())
    });
    assert!(workers.is_some(), "no ListWorkers answer after the flood");

    system.must("systemctl stop big && scoreboardctl disable big.service");
    system.must("rm -f /etc/systemd/system/big.service && systemctl daemon-reload");
    // demo's pool whole again for what follows.
    system.must("systemctl restart demo");
    system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));
}

/// A hostile local user's huge calls, through python3-dbus: `Properties.Get` with a
/// 30 MiB interface name, `GetWorker` with a 30 MiB id (as a string and as `ay`),
/// `Introspect` on a 20 MiB object path, one after the other on each of its
/// connections.
const HUGE_CALLER: &str = r#"import sys, time
import dbus
until = time.monotonic() + float(sys.argv[1])
bus = dbus.SystemBus(private=True)
big = "x" * (30 << 20)
path = "/" + "/".join(["x" * 255] * ((20 << 20) // 256))
service = "/io/scoreboard/Agent1/service/demo_2eservice"
calls = [
    ("/io/scoreboard/Agent1", "org.freedesktop.DBus.Properties", "Get", "ss", (big, "Services")),
    (service, "io.scoreboard.Agent1.Service", "GetWorker", "s", (big,)),
    (service, "io.scoreboard.Agent1.Service", "GetWorker", "ay", (dbus.ByteArray(big.encode()),)),
    (path, "org.freedesktop.DBus.Introspectable", "Introspect", "", ()),
]
sent = failed = 0
while time.monotonic() < until:
    where, interface, method, signature, args = calls[sent % len(calls)]
    try:
        bus.call_blocking("io.scoreboard.Agent1", where, interface, method, signature, args, timeout=2)
    except dbus.exceptions.DBusException:
        failed += 1
    sent += 1
print(sent, failed)
"#;

fn huge_messages(system: &System) {
    system.must(&format!(
        "cat > /usr/local/lib/huge-caller.py <<'EOF'\n{HUGE_CALLER}EOF"
    ));
    let agent = system.property("scoreboard-agent", "MainPID");
    let restarts = system.property("scoreboard-agent", "NRestarts");
    let cursor = system.journal_cursor();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let callers: Vec<Child> = (0..3)
        .map(|_| {
            system.spawn(
                "setpriv --reuid=65534 --regid=65534 --clear-groups \
                 /usr/bin/python3 /usr/local/lib/huge-caller.py 20",
            )
        })
        .collect();
    let attack = Instant::now();
    let mut rss_max = 0;
    let sample = |rss_max: &mut u64| {
        let (rss, _) = system.agent_rss_kib();
        *rss_max = (*rss_max).max(rss);
    };
    while attack.elapsed() < Duration::from_secs(5) {
        sample(&mut rss_max);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Mid-attack, a worker joins demo's pool and is killed: the line follows.
    let count = |system: &System| -> Option<usize> {
        system
            .property("demo", "StatusText")
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    let before = count(system).expect("demo has a count");
    let mut extra = system.spawn(&format!(
        "sleep infinity | {TESTKIT} hold-workers --dir /run/demo/scoreboard --count 1"
    ));
    let joined = poll(Duration::from_secs(3), || {
        (count(system) == Some(before + 1)).then_some(())
    });
    assert!(
        joined.is_some(),
        "{}",
        system.property("demo", "StatusText")
    );
    let killed = Instant::now();
    system.sh("pkill -KILL -f 'hold-workers --dir /run/demo/scoreboard'; true");
    let followed = poll(Duration::from_secs(3), || {
        (count(system) == Some(before)).then(|| killed.elapsed())
    })
    .unwrap_or_else(|| panic!("{}", system.property("demo", "StatusText")));
    system.sh("pkill -f 'sleep infinity'; true");
    let _ = extra.kill();
    let _ = extra.wait();
    while attack.elapsed() < Duration::from_secs(21) {
        sample(&mut rss_max);
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut said = Vec::new();
    for caller in callers {
        let out = caller.wait_with_output().unwrap();
        said.push(format!(
            "{} {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let log = system.agent_log_since(&cursor);
    assert_eq!(
        system.property("scoreboard-agent", "MainPID"),
        agent,
        "{log}"
    );
    assert_eq!(
        system.property("scoreboard-agent", "NRestarts"),
        restarts,
        "{log}"
    );
    assert!(
        rss_max <= 48 * 1024,
        "VmRSS {rss_max} KiB during the attack"
    );
    assert!(
        followed <= Duration::from_millis(500),
        "kill→Status {followed:?}"
    );
    let own = system.property("scoreboard-agent", "StatusText");
    assert!(
        own.contains("oversized bus messages refused"),
        "callers: {said:?}; agent: {own:?}\n{log}\n{}",
        system.sh("journalctl -u scoreboard-agent -o verbose --no-pager -n 3")
    );
    // Said once (per connection and ten minutes), whatever else the journal holds.
    let said_refused = system.sh(&format!(
        "journalctl -u scoreboard-agent --no-pager -o cat --since=@{started_unix} -g 'refused a D-Bus message of'"
    ));
    assert_eq!(
        said_refused.lines().count(),
        1,
        "{own:?}\n{said_refused}\n{log}"
    );
    let settled = Instant::now();
    let rss_after = poll(Duration::from_secs(60), || {
        let (rss, _) = system.agent_rss_kib();
        (rss < 16 * 1024).then_some(rss)
    })
    .unwrap_or_else(|| panic!("VmRSS {:?} a minute after", system.agent_rss_kib()));
    eprintln!(
        "3 connections of uid 65534 sending 30 MiB Get/GetWorker/GetWorker(ay) and a 20 MiB \
         Introspect path for 20 s (calls, failed per connection: {said:?}): NRestarts {restarts} \
         before and after, VmRSS at most {:.1} MiB sampled, kill→Status {followed:.0?} during it, \
         {:.1} MiB {:.1?} after",
        rss_max as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        settled.elapsed()
    );
}

/// However the agent ends, no watched service keeps a line claiming a live count; and
/// SIGKILL every 2 s for a minute does not leave it `failed`.
fn stale_lines_and_kill_storm(system: &System) {
    let live = system.property("demo", "StatusText");
    system.must("systemctl stop scoreboard-agent");
    let stopped = system.property("demo", "StatusText");
    assert!(stopped.starts_with("not followed since "), "{stopped}");
    system.must("systemctl start scoreboard-agent");
    system.expect_status("demo", &live, Duration::from_secs(5));

    let restarts: u32 = system
        .property("scoreboard-agent", "NRestarts")
        .parse()
        .unwrap();
    let storm = Instant::now();
    let mut kills = 0;
    let mut stale_seen = 0;
    while storm.elapsed() < Duration::from_secs(60) {
        let pid = system.property("scoreboard-agent", "MainPID");
        if pid != "0" && system.run(&format!("kill -9 {pid}")).status.success() {
            kills += 1;
            let stale = poll(Duration::from_millis(1500), || {
                system
                    .property("demo", "StatusText")
                    .starts_with("not followed since ")
                    .then_some(())
            });
            stale_seen += usize::from(stale.is_some());
        }
        let next = Duration::from_secs(2 * (storm.elapsed().as_secs() / 2 + 1));
        std::thread::sleep(next.saturating_sub(storm.elapsed()));
    }
    let back = Instant::now();
    let active = poll(Duration::from_secs(10), || {
        (system.property("scoreboard-agent", "ActiveState") == "active").then_some(())
    });
    assert!(
        active.is_some(),
        "after {kills} kills: {} {}",
        system.property("scoreboard-agent", "ActiveState"),
        system.property("scoreboard-agent", "Result")
    );
    system.expect_status("demo", &live, Duration::from_secs(5));
    let now: u32 = system
        .property("scoreboard-agent", "NRestarts")
        .parse()
        .unwrap();
    assert!(
        now >= restarts + kills as u32 - 1,
        "NRestarts {restarts} -> {now}, {kills} kills"
    );
    assert!(
        stale_seen * 2 >= kills,
        "stale lines seen after {stale_seen} of {kills} kills"
    );
    eprintln!(
        "systemctl stop: demo's line {stopped:?}; SIGKILL every 2 s for 60 s ({kills} kills, \
         NRestarts {restarts} -> {now}, the line said it was not followed after {stale_seen} of \
         them): active again {:.1?} after the storm, demo's line live again",
        back.elapsed()
    );
}

/// journald stopped with SIGSTOP for a minute while workers come and die ten times a
/// second (a log line each): the agent never waits on it — no watchdog restart, the
/// line keeps following — and says how many entries it dropped once journald is back.
fn hung_journal(system: &System) {
    let agent = system.property("scoreboard-agent", "MainPID");
    let restarts = system.property("scoreboard-agent", "NRestarts");
    let journald = system.property("systemd-journald", "MainPID");
    let cursor = system.journal_cursor();
    let mut churn = system.spawn(&format!(
        "i=0; while [ $i -lt 1200 ]; do \
           sleep 3 | {TESTKIT} hold-workers --dir /run/demo/scoreboard --count 1 --prefix churn$i & \
           p=$!; sleep 0.1; kill -9 $p; i=$((i+1)); done"
    ));
    system.must(&format!("kill -STOP {journald}"));
    let stopped = Instant::now();
    let mut lines = std::collections::BTreeSet::new();
    while stopped.elapsed() < Duration::from_secs(60) {
        lines.insert(system.property("demo", "StatusText"));
        std::thread::sleep(Duration::from_millis(300));
    }
    let alive = system.property("scoreboard-agent", "MainPID");
    let restarts_during = system.property("scoreboard-agent", "NRestarts");
    system.must(&format!("kill -CONT {journald}"));
    let _ = churn.kill();
    let _ = churn.wait();
    system.sh("pkill -KILL -f 'hold-workers --dir /run/demo/scoreboard'; true");
    assert_eq!(alive, agent);
    assert_eq!(restarts_during, restarts);
    assert!(lines.len() >= 2, "the line did not follow: {lines:?}");
    let said = poll(Duration::from_secs(10), || {
        let log = system.agent_log_since(&cursor);
        log.lines()
            .find(|l| l.contains("log entries were dropped"))
            .map(str::to_owned)
            .or_else(|| log.contains("churn").then(String::new))
    })
    .unwrap_or_else(|| panic!("{}", system.agent_log_since(&cursor)));
    eprintln!(
        "journald stopped 60 s while a worker died every ~0.15 s: the agent {agent} kept running \
         (NRestarts {restarts}), {} distinct demo lines seen meanwhile; afterwards: {said:?}",
        lines.len()
    );
}

/// The agent's textfile, linked into Debian's node_exporter directory as docs/metrics.md says,
/// read by the real node_exporter running as its own user.
fn node_exporter_reads_the_textfile(system: &System) {
    const LISTEN: &str = "127.0.0.1:19100";
    system.must(
        "printf '[metrics]\\ntextfile = \"/run/scoreboard/scoreboard.prom\"\\n' >> /etc/scoreboard/agent.toml && \
         mkdir -p /var/lib/prometheus/node-exporter && \
         ln -sf /run/scoreboard/scoreboard.prom /var/lib/prometheus/node-exporter/scoreboard.prom && \
         systemctl reload scoreboard-agent",
    );
    let mode = poll(Duration::from_secs(5), || {
        let out = system.run("stat -c '%a %U' /run/scoreboard/scoreboard.prom");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    })
    .expect("no textfile");
    assert_eq!(mode, "644 scoreboard");
    let mut exporter = system.spawn(&format!(
        "exec setpriv --reuid=prometheus --regid=prometheus --clear-groups \
         /usr/bin/prometheus-node-exporter --collector.disable-defaults --collector.textfile \
         --collector.textfile.directory=/var/lib/prometheus/node-exporter --web.listen-address={LISTEN}"
    ));
    let exported = poll(Duration::from_secs(10), || {
        let text = system.sh(&format!("curl -s http://{LISTEN}/metrics"));
        (text.contains("node_textfile_scrape_error 0")
            && text.contains("scoreboard_pool_workers{unit=\"demo.service\"}"))
        .then_some(text)
    });
    let _ = exporter.kill();
    let _ = exporter.wait();
    system.sh("pkill -f 'prometheus-node-exporter --collector.disable-defaults'; true");
    system.must(
        "sed -i '/^\\[metrics\\]/,$d' /etc/scoreboard/agent.toml && \
         rm -f /var/lib/prometheus/node-exporter/scoreboard.prom && systemctl reload scoreboard-agent",
    );
    let text = exported.unwrap_or_else(|| {
        panic!(
            "node_exporter did not export the textfile:\n{}",
            system.sh(&format!(
                "curl -s http://{LISTEN}/metrics | grep -e textfile -e scoreboard"
            ))
        )
    });
    let line = text
        .lines()
        .find(|l| l.starts_with("scoreboard_pool_workers{unit=\"demo.service\"}"))
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "textfile {mode} in /run/scoreboard, linked into /var/lib/prometheus/node-exporter: \
         node_exporter 1.5 as user prometheus exports {line:?}"
    );
}

fn injection(system: &System) {
    let main_pid = system.property("demo", "MainPID");
    system.set_statuses(&["idle", "busy\nMAINPID=1\nREADY=1", "idle"]);
    system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(system.property("demo", "MainPID"), main_pid);
    assert_eq!(system.property("demo", "ActiveState"), "active");
}

fn enable_disable(system: &System) {
    let again = system.must("scoreboardctl enable demo.service");
    assert_eq!(again.matches("unchanged ").count(), 3, "{again}");
    let report = system.must("scoreboardctl disable demo.service");
    assert_eq!(report.matches("removed ").count(), 3, "{report}");
    assert!(
        !system
            .run("test -e /etc/scoreboard/services.d/demo.toml")
            .status
            .success()
    );
    system.must("scoreboardctl enable demo.service");
    let refused = system.run(
        "setpriv --reuid=nobody --regid=nogroup --clear-groups scoreboardctl enable demo.service",
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("must run as root"));
}

const EVIL_UNIT: &str = "[Unit]
Description=A watched service whose user turns against the agent
[Service]
User=nobody
Group=nogroup
RuntimeDirectory=evil
ExecStart=/bin/sleep infinity
";

fn planted_symlink(system: &System) {
    system.must(&format!(
        "cat > /etc/systemd/system/evil.service <<'EOF'\n{EVIL_UNIT}EOF\nsystemctl daemon-reload"
    ));
    // Under a hardened root's umask: what enable writes must still be the agent's to read.
    system.must("umask 077 && scoreboardctl enable evil.service");
    let modes = system.must(
        "stat -c '%a %n' /etc/scoreboard/services.d/evil.toml /etc/tmpfiles.d/scoreboard-evil.conf",
    );
    assert!(modes.lines().all(|l| l.starts_with("644 ")), "{modes}");
    system.must("systemctl start evil");
    let owners = system.must("stat -c '%U %n' /run/evil /run/evil/scoreboard");
    assert_eq!(
        owners, "nobody /run/evil\nnobody /run/evil/scoreboard\n",
        "{owners}"
    );
    // Root's files the agent must never touch, unlocked: to a reaper they look dead.
    system.must(
        "mkdir -m 0755 /root-victim && for i in 1 2 3 4 5; do echo root > /root-victim/status_$i; done",
    );
    // The agent watches /run/evil/scoreboard (empty) by now.
    let watched = poll(Duration::from_secs(5), || {
        let list = system.sh("scoreboardctl list --json");
        list.contains("evil.service").then_some(())
    });
    assert!(watched.is_some(), "the agent does not watch evil.service");
    let agent = system.property("scoreboard-agent", "MainPID");
    let since = system.must("date +%s").trim().to_owned();

    // The attack: the service's user swaps its scoreboard for a link to root's directory.
    system.must(
        "setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c \
         'mv /run/evil/scoreboard /run/evil/x && ln -s /root-victim /run/evil/scoreboard'",
    );
    std::thread::sleep(Duration::from_secs(3)); // three intervals
    let left = system.must("ls /root-victim");
    assert_eq!(left.lines().count(), 5, "{left}");
    assert_eq!(system.property("scoreboard-agent", "ActiveState"), "active");
    assert_eq!(system.property("scoreboard-agent", "MainPID"), agent);
    let log = system.sh(&format!(
        "journalctl -u scoreboard-agent --since @{since} --no-pager -o cat"
    ));
    let refusal = log
        .lines()
        .find(|l| l.contains("symbolic link"))
        .unwrap_or_else(|| panic!("no refusal in the agent's log:\n{log}"));
    eprintln!("the agent refused: {refusal}");
    eprintln!("after 3 s: /root-victim still holds 5 files; the agent is active, same pid {agent}");

    // The layer under the path rule: were a reaper fooled into root's directory, the
    // agent's user may not remove anything there. Through the planted link, first with
    // exactly the agent's privileges, then with none at all.
    for (privileges, caps) in [
        (
            "CAP_SYS_ADMIN, as the agent",
            "--inh-caps=-all,+sys_admin --ambient-caps=+sys_admin",
        ),
        ("no capabilities", "--inh-caps=-all"),
    ] {
        let reaper = system.run(&format!(
            "setpriv --reuid=scoreboard --regid=scoreboard --clear-groups {caps} \
             perl -e 'for (glob \"/run/evil/scoreboard/status_*\") {{ unlink or print \"$_: $!\\n\" }}'"
        ));
        let said = String::from_utf8_lossy(&reaper.stdout);
        assert_eq!(said.matches("Permission denied").count(), 5, "{said}");
        let left = system.must("ls /root-victim");
        assert_eq!(left.lines().count(), 5, "{left}");
        eprintln!(
            "a reaper that does not check paths, as user scoreboard with {privileges}: \
             unlink() refused 5 times ({}), 5 files left",
            said.lines().next().unwrap_or("")
        );
    }

    system.must("systemctl stop evil");
    system.must("scoreboardctl disable evil.service");
    system.must("rm -f /run/evil/scoreboard && rm -rf /run/evil /root-victim /etc/systemd/system/evil.service && systemctl daemon-reload");
}

fn remove_and_purge(system: &System) {
    let warnings = system.sh(
        "journalctl -u scoreboard-agent -p warning --no-pager -o cat | sort | uniq -c | sort -rn",
    );
    eprintln!(
        "the agent's warnings over the run:\n{}",
        warnings.trim_end()
    );
    system.must("dpkg -r scoreboard-agent");
    // Every file the package holds is gone, but its conffile (until the purge).
    let files = deb_files(&system.deb);
    assert!(files.len() >= SHIPPED.len(), "{files:?}");
    for path in files.iter().filter(|p| *p != "/etc/scoreboard/agent.toml") {
        assert!(
            !system
                .run(&format!("test -e {path} || test -L {path}"))
                .status
                .success(),
            "{path} left after dpkg -r"
        );
    }
    for path in [
        "/lib/systemd/system/scoreboard-agent.service",
        "/usr/lib/systemd/system/scoreboard-agent.service",
        "/usr/share/scoreboard-agent",
        "/usr/share/doc/scoreboard-agent",
    ] {
        assert!(
            !system.run(&format!("test -e {path}")).status.success(),
            "{path} left after dpkg -r"
        );
    }
    assert_ne!(system.property("scoreboard-agent", "ActiveState"), "active");
    system.must("dpkg --purge scoreboard-agent");
    for path in [
        "/etc/scoreboard/agent.toml",
        "/etc/scoreboard",
        "/etc/tmpfiles.d/scoreboard-demo.conf",
        "/etc/systemd/system/demo.service.d",
        "/etc/systemd/system/scoreboard-agent.service",
        "/etc/systemd/system/multi-user.target.wants/scoreboard-agent.service",
        "/run/scoreboard",
    ] {
        assert!(
            !system
                .run(&format!("test -e {path} || test -L {path}"))
                .status
                .success(),
            "{path} left after purge"
        );
    }
    let units = system.sh("systemctl list-unit-files scoreboard-agent.service --no-legend");
    assert!(units.trim().is_empty(), "{units}");
    // As Debian does with system users: the user stays, so that nothing it may still
    // own is ever given to a later user who gets the same uid.
    system.must("getent passwd scoreboard");
}

/// The files (not directories) a .deb holds, as absolute paths.
fn deb_files(deb: &Path) -> Vec<String> {
    output(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| {
            let path = &l[l.find(" ./")? + 2..];
            Some(path.split(" -> ").next().unwrap().to_owned())
        })
        .collect()
}

/// rpm's database here: /var (an overlay), not Debian's default ~/.rpmdb on the host.
const RPM: &str = "rpm --dbpath /var/lib/rpm --force-debian";

/// An administrator's preset saying no to the agent (the system's own presets have no
/// rule for it, and so would enable it).
const PRESET: &str = "/etc/systemd/system-preset/50-scoreboard-test.preset";

/// Runs an rpm transaction; it must succeed, no scriptlet may fail (rpm only warns when
/// one does). Returns what rpm said.
fn rpm_transaction(system: &System, what: &str) -> String {
    let started = Instant::now();
    // --nodeps: this rpm database knows nothing of systemd or dbus (dpkg installed them).
    let out = system.run(&format!("{RPM} {what}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rpm {what}: {said}");
    assert!(!said.contains("scriptlet failed"), "rpm {what}: {said}");
    eprintln!(
        "rpm {} took {:.1?}{}",
        what.split_whitespace().next().unwrap_or(""),
        started.elapsed(),
        if said.trim().is_empty() {
            String::new()
        } else {
            format!(", said: {}", said.trim())
        }
    );
    said
}

fn rpm_install(system: &System) {
    // So that the rpm's own scriptlet has to make the user.
    system.must("userdel scoreboard && mkdir -p /var/lib/rpm");
    assert!(!system.run("getent passwd scoreboard").status.success());
    // %post applies the presets on a first install, as Fedora's %systemd_post does: with
    // this one the agent stays disabled, where a plain `systemctl enable` would not.
    system.must(&format!(
        "mkdir -p /etc/systemd/system-preset && echo 'disable scoreboard-agent.service' > {PRESET}"
    ));
    rpm_transaction(
        system,
        &format!("-i --nodeps --nosignature {}", system.rpm.display()),
    );
    system.must(&format!("{RPM} -q scoreboard-agent"));
    let user = system.must("getent passwd scoreboard");
    // Unit files loaded (the scriptlet reloaded systemd), nothing enabled nor started.
    assert_eq!(system.property("scoreboard-agent", "LoadState"), "loaded");
    assert_eq!(
        system.property("scoreboard-agent", "UnitFileState"),
        "disabled"
    );
    assert_eq!(
        system.property("scoreboard-agent", "ActiveState"),
        "inactive"
    );
    system.must(&format!("rm {PRESET}"));
    // What the administrator does where the presets say no (Fedora's default).
    system.must("systemctl enable --now scoreboard-agent.service");
    let active = poll(Duration::from_secs(10), || {
        (system.property("scoreboard-agent", "ActiveState") == "active").then_some(())
    });
    assert!(
        active.is_some(),
        "{}",
        system.sh("systemctl status scoreboard-agent --no-pager")
    );
    eprintln!(
        "the rpm's scriptlet made the user: {}; the preset left the agent disabled; \
         enabled by hand: {}",
        user.trim(),
        agent_identity(system)
    );
    // And it does its job: the demo, watched again.
    system.must("scoreboardctl enable demo.service && systemctl restart demo");
    system.set_statuses(&["idle", "busy GET /rpm", "idle"]);
    let took = system.expect_status("demo", "3 workers: 2 idle, 1 busy", Duration::from_secs(3));
    eprintln!("rpm-installed agent: demo's Status back in {took:.0?}");
}

fn rpm_upgrade(system: &System) {
    // The same binaries rebuilt as release 2, as a distribution's rebuild would be.
    let rebuilt_dir = tempfile::tempdir().unwrap();
    output(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/rpm/build"))
            .arg(target_dir().join("release"))
            .arg("2")
            .arg(rebuilt_dir.path()),
    );
    let version = env!("CARGO_PKG_VERSION");
    let rebuilt = rebuilt_dir.path().join(format!(
        "scoreboard-agent-{version}-2.{}.rpm",
        std::env::consts::ARCH
    ));
    assert!(rebuilt.exists(), "{} was not built", rebuilt.display());

    // What an administrator changed: the configuration (a %config(noreplace) file),
    // a watched service (services.d/demo.toml); and a preset that an upgrade must not
    // apply (it would disable the agent).
    system.must(
        "cp /etc/scoreboard/agent.toml /run/agent.toml.orig && \
         echo '# edited by the administrator' >> /etc/scoreboard/agent.toml",
    );
    system.must(&format!(
        "echo 'disable scoreboard-agent.service' > {PRESET}"
    ));
    let agent = system.property("scoreboard-agent", "MainPID");
    rpm_transaction(
        system,
        &format!("-U --nodeps --nosignature {}", rebuilt.display()),
    );
    system.must(&format!("rm {PRESET}"));
    let installed = system.must(&format!("{RPM} -q scoreboard-agent"));
    assert_eq!(
        installed.trim(),
        format!("scoreboard-agent-{version}-2.{}", std::env::consts::ARCH)
    );
    // Restarted onto the new files (try-restart), still enabled.
    let restarted = poll(Duration::from_secs(10), || {
        let pid = system.property("scoreboard-agent", "MainPID");
        (system.property("scoreboard-agent", "ActiveState") == "active"
            && pid != agent
            && pid != "0")
            .then_some(pid)
    });
    let restarted = restarted.unwrap_or_else(|| {
        panic!(
            "the agent was not restarted by the upgrade:\n{}",
            system.sh("systemctl status scoreboard-agent --no-pager")
        )
    });
    assert_eq!(
        system.property("scoreboard-agent", "UnitFileState"),
        "enabled"
    );
    let config = system.must("cat /etc/scoreboard/agent.toml");
    assert!(
        config.ends_with("# edited by the administrator\n"),
        "{config}"
    );
    let saved = system.sh("ls /etc/scoreboard");
    assert_eq!(
        saved.split_whitespace().collect::<Vec<_>>(),
        ["agent.toml", "services.d"]
    );
    system.must("test -f /etc/scoreboard/services.d/demo.toml");
    system.set_statuses(&["idle", "busy GET /upgraded", "busy GET /again"]);
    let took = system.expect_status("demo", "3 workers: 2 busy, 1 idle", Duration::from_secs(3));
    eprintln!(
        "upgraded to {}: agent {agent} restarted as {restarted}, still enabled; the edited \
         agent.toml and services.d/demo.toml kept; demo's Status followed in {took:.0?}",
        installed.trim()
    );
}

fn rpm_erase(system: &System) {
    system.must("scoreboardctl disable demo.service && systemctl stop demo");
    // The administrator's edit undone (an edited %config file would be kept as
    // agent.toml.rpmsave, as rpm does).
    system.must("cp /run/agent.toml.orig /etc/scoreboard/agent.toml && rm /run/agent.toml.orig");
    let files = output(Command::new("rpm").arg("-qpl").arg(&system.rpm));
    rpm_transaction(system, "-e scoreboard-agent");
    assert!(
        !system
            .run(&format!("{RPM} -q scoreboard-agent"))
            .status
            .success()
    );
    assert_ne!(system.property("scoreboard-agent", "ActiveState"), "active");
    let units = system.sh("systemctl list-unit-files scoreboard-agent.service --no-legend");
    assert!(units.trim().is_empty(), "{units}");
    let paths: Vec<&str> = files.lines().collect();
    assert!(paths.len() >= SHIPPED.len(), "{files}");
    for path in paths.iter().copied().chain([
        "/etc/systemd/system/multi-user.target.wants/scoreboard-agent.service",
        "/run/scoreboard",
    ]) {
        assert!(
            !system
                .run(&format!("test -e {path} || test -L {path}"))
                .status
                .success(),
            "{path} left after rpm -e"
        );
    }
    eprintln!(
        "rpm -e: the agent stopped and disabled, none of the package's {} paths left \
         (its directories included), nor /run/scoreboard",
        paths.len()
    );
    // As with the .deb, the user stays.
    system.must("getent passwd scoreboard");
}

/// Where the Perl pre-fork pool and the Perl peer are installed in the throwaway system.
const PERL_POOL_DIR: &str = "/usr/local/lib/scoreboard-test";

/// A pre-fork server in Perl, as the health actions meet them in the wild: a master
/// forks N workers and forks a new one whenever one exits; each worker publishes its
/// state with Parallel::Scoreboard (its id is its pid). A worker works (`busy request
/// N`, `idle`, every 0.2 s) unless `/run/pool-control` (all workers) or
/// `/run/pool-control.<pid>` (this one) says otherwise:
/// * `hang`: it writes `busy hanging` once and then writes nothing — a wedged request —
///   until told otherwise;
/// * `stubborn`: the same, and it ignores SIGTERM;
/// * `flip`: it serves requests back to back, `busy GET /health` for 50 ms, `idle` for
///   1 ms, so that two looks a second apart mostly find the same text;
/// * `silent`: it publishes nothing, as Plack::Middleware::ServerStatus::Lite's workers
///   before their first request (no file at all).
const PERL_POOL: &str = r#"use strict;
use warnings;
use Time::HiRes qw(sleep);
use Parallel::Scoreboard;
my ($dir, $n) = @ARGV;
my $sb = Parallel::Scoreboard->new(base_dir => $dir);
my %kids;
$SIG{TERM} = sub { kill 'TERM', keys %kids; exit 0 };
sub said {
    open(my $f, '<', $_[0]) or return '';
    local $/;
    my $text = <$f> // '';
    $text =~ s/\s+//g;
    return $text;
}
sub work {
    $SIG{TERM} = 'DEFAULT';
    my $i = 0;
    my $was = '';
    while (1) {
        my $mode = said("/run/pool-control.$$") || said('/run/pool-control');
        my $new = $mode ne $was;
        $was = $mode;
        if ($mode eq 'hang' || $mode eq 'stubborn') {
            $SIG{TERM} = 'IGNORE' if $mode eq 'stubborn';
            $sb->update('busy hanging') if $new;
            sleep 0.2;
            next;
        }
        if ($mode eq 'flip') { $sb->update('busy GET /health'); sleep 0.05; $sb->update('idle'); sleep 0.001; next }
        if ($mode eq 'silent') { sleep 0.2; next }
        if ($mode eq 'idle') { $sb->update('idle'); sleep 0.2; next }
        $i++;
        $sb->update("busy request $i");
        sleep 0.2;
        $sb->update('idle');
        sleep 0.2;
    }
}
sub spawn {
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) { work(); exit 0 }
    $kids{$pid} = 1;
}
spawn() for 1 .. $n;
while (1) {
    my $pid = wait;
    last if $pid < 0;
    delete $kids{$pid};
    spawn();
}
"#;

const POOL_UNIT: &str = "[Unit]
Description=Perl pre-fork pool
[Service]
ExecStart=/usr/bin/perl -I/usr/local/lib/scoreboard-test /usr/local/lib/scoreboard-test/pool.pl /run/pool/scoreboard 4
RuntimeDirectory=pool
Restart=on-failure
RestartSec=200ms
";

/// What `kill_stuck_after` needs of the agent's unit, as docs/operating.md says (what
/// `scoreboardctl grant-kill` writes):
/// CAP_KILL to signal another user's worker, and the process table (`/proc/PID/cgroup`,
/// `/proc/locks`) for the checks before it.
const KILL_DROP_IN: &str = "[Service]
AmbientCapabilities=CAP_SYS_ADMIN CAP_KILL
CapabilityBoundingSet=CAP_SYS_ADMIN CAP_KILL
ProtectProc=default
ProcSubset=all
";

/// `pool.service`'s actions: `settings` appended to what `enable` wrote, in force after
/// a reload of the agent; the control file reset to work.
fn pool_actions(system: &System, settings: &str) {
    let base = system
        .must("grep -v -e _after -e kill_ -e '^actions' /etc/scoreboard/services.d/pool.toml");
    system.must(&format!(
        "cat > /etc/scoreboard/services.d/pool.toml <<'EOF'\n{base}stuck_after = \"1s\"\n{settings}EOF\n\
         systemctl reload scoreboard-agent"
    ));
}

/// The pool's worker pids, as the agent lists them.
fn pool_workers(system: &System) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(&system.must("scoreboardctl status pool --json")).unwrap();
    let mut ids: Vec<String> = json["services"][0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn pool_status_workers(system: &System) -> Option<usize> {
    let status = system.property("pool", "StatusText");
    status.split(' ').next()?.parse().ok()
}

/// The Perl pool, enabled and running with 4 working workers.
fn health_setup(system: &System) {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/interop");
    assert!(
        interop.join("Parallel/Scoreboard.pm").exists(),
        "the Perl peer is missing: {}",
        interop.display()
    );
    system.must(&format!(
        "install -D -m 0644 {}/Parallel/Scoreboard.pm {PERL_POOL_DIR}/Parallel/Scoreboard.pm && \
         cat > {PERL_POOL_DIR}/pool.pl <<'EOF'\n{PERL_POOL}EOF\n\
         cat > /etc/systemd/system/pool.service <<'EOF'\n{POOL_UNIT}EOF\n\
         mkdir -p /etc/systemd/system/scoreboard-agent.service.d && \
         cat > /etc/systemd/system/scoreboard-agent.service.d/50-kill.conf <<'EOF'\n{KILL_DROP_IN}EOF\n\
         systemctl daemon-reload && systemctl restart scoreboard-agent && \
         echo work > /run/pool-control",
        interop.canonicalize().unwrap().display()
    ));
    system.must("scoreboardctl enable pool.service");
    pool_actions(system, "");
    system.must("systemctl start pool");
    let up = poll(Duration::from_secs(5), || {
        (pool_status_workers(system) == Some(4)).then_some(())
    });
    assert!(
        up.is_some(),
        "pool: {}",
        system.property("pool", "StatusText")
    );
}

/// The agent's journal entry for `action` after `cursor`, with its fields.
fn action_entry(system: &System, cursor: &str, action: &str) -> serde_json::Value {
    let json = system.sh(&format!(
        "journalctl -u scoreboard-agent --after-cursor={} -o json --no-pager",
        shell_quote(cursor)
    ));
    json.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["SCOREBOARD_ACTION"] == action)
        .unwrap_or_else(|| panic!("no SCOREBOARD_ACTION={action} in\n{json}"))
}

/// How many times systemd restarted the pool.
fn restarts(system: &System) -> u32 {
    system.property("pool", "NRestarts").parse().unwrap()
}

fn wedged_pool_is_restarted(system: &System) {
    health_setup(system);
    pool_actions(system, "wedged_after = \"3s\"\n");
    let before = restarts(system);
    let cursor = system.journal_cursor();
    let hung = Instant::now();
    system.must("echo hang > /run/pool-control");
    // Every worker stuck 1 s after its last status (0.2 s), wedged 3 s later; sampled
    // every 1 s: the restart comes within 1.2 + 3 + 1 s of the hang, plus systemd's.
    let restarted = poll(Duration::from_secs(9), || {
        (restarts(system) > before).then(|| hung.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "pool was not restarted; agent:\n{}",
            system.agent_log_since(&cursor)
        )
    });
    system.must("echo work > /run/pool-control");
    assert_eq!(restarts(system), before + 1);
    // systemd says why it restarted the pool: its watchdog, as if it had expired.
    let pool_log = poll(Duration::from_secs(5), || {
        let log = system.sh(&format!(
            "journalctl -u pool.service --after-cursor={} --no-pager -o cat",
            shell_quote(&cursor)
        ));
        log.contains("Failed with result 'watchdog'").then_some(log)
    })
    .unwrap_or_else(|| {
        panic!(
            "no watchdog result for pool:\n{}",
            system.sh("journalctl --no-pager -n 60 -o short-monotonic")
        )
    });
    let request = pool_log
        .lines()
        .find(|l| l.contains("Watchdog request"))
        .unwrap_or("");
    let agent_log = system.agent_log_since(&cursor);
    let said = agent_log
        .lines()
        .find(|l| l.contains("triggered its watchdog"))
        .unwrap_or_else(|| panic!("{agent_log}"));
    let entry = action_entry(system, &cursor, "watchdog");
    assert_eq!(entry["SCOREBOARD_UNIT"], "pool.service", "{entry}");
    // Back with 4 workers.
    let back = poll(Duration::from_secs(5), || {
        (pool_status_workers(system) == Some(4)).then_some(())
    });
    assert!(back.is_some(), "{}", system.property("pool", "StatusText"));
    let status = system.must("scoreboardctl status pool");
    assert!(
        status.contains("last action:") && status.contains("watchdog"),
        "{status}"
    );
    let metrics = system.sh("busctl --system get-property io.scoreboard.Agent1 /io/scoreboard/Agent1/service/pool_2eservice io.scoreboard.Agent1.Service LastAction");
    assert!(metrics.contains("triggered the watchdog"), "{metrics}");
    eprintln!(
        "all 4 workers hung: restarted by systemd (Result=watchdog, NRestarts {before} -> {}) \
         {restarted:.1?} after the hang, i.e. {:.1?} after the pool was wedged (all stuck \
         1.2 s after the hang; wedged_after 3 s, interval 1 s): {said}; systemd: {request}",
        restarts(system),
        restarted.saturating_sub(Duration::from_millis(1200)),
    );
}

fn stuck_worker_is_signalled(system: &System) {
    pool_actions(system, "kill_stuck_after = \"2s\"\nkill_grace = \"5s\"\n");
    let workers = pool_workers(system);
    assert_eq!(workers.len(), 4, "{workers:?}");
    let victim = workers[0].clone();
    let cursor = system.journal_cursor();
    let hung = Instant::now();
    system.must(&format!("echo hang > /run/pool-control.{victim}"));
    // Stuck 1 s after its last status, signalled 2 s later, gone, replaced.
    let replaced = poll(Duration::from_secs(8), || {
        let now = pool_workers(system);
        (!now.contains(&victim) && now.len() == 4).then(|| (hung.elapsed(), now))
    });
    let (took, after) = replaced.unwrap_or_else(|| {
        panic!(
            "worker {victim} was not replaced; agent:\n{}",
            system.agent_log_since(&cursor)
        )
    });
    for other in &workers[1..] {
        assert!(after.contains(other), "{other} lost its pid: {after:?}");
    }
    let agent_log = system.agent_log_since(&cursor);
    let said = agent_log
        .lines()
        .find(|l| l.contains(&format!("sent SIGTERM to pid {victim}")))
        .unwrap_or_else(|| panic!("{agent_log}"));
    let entry = action_entry(system, &cursor, "signal");
    assert_eq!(entry["SCOREBOARD_WORKER"], victim.as_str(), "{entry}");
    assert_eq!(entry["SCOREBOARD_STATUS"], "busy hanging", "{entry}");
    assert_eq!(entry["SCOREBOARD_UNIT"], "pool.service", "{entry}");
    assert!(entry["SCOREBOARD_STOOD"].is_string(), "{entry}");
    system.must(&format!("rm -f /run/pool-control.{victim}"));
    eprintln!(
        "one worker of 4 hung: replaced {took:.1?} after the hang (kill_stuck_after reached \
         at ~3.2 s: stuck 1 s after its last status, then 2 s), the 3 others kept their \
         pids: {said}"
    );
}

fn foreign_pid_is_never_signalled(system: &System) {
    let cursor = system.journal_cursor();
    // A process outside the unit publishes in the pool's directory under its own pid,
    // and one under a name that is not a pid; both stand still.
    let mut outsider = system.spawn(&format!(
        "exec perl -I{PERL_POOL_DIR} -MParallel::Scoreboard -e \
         'my $sb = Parallel::Scoreboard->new(base_dir => \"/run/pool/scoreboard\"); \
          $| = 1; $sb->update(\"busy forever\"); print \"$$\\n\"; sleep 600'"
    ));
    let mut named = system.spawn(&format!(
        "exec perl -I{PERL_POOL_DIR} -MParallel::Scoreboard -e \
         'my $sb = Parallel::Scoreboard->new(base_dir => \"/run/pool/scoreboard\", \
          worker_id => sub {{ \"web-1\" }}); $| = 1; $sb->update(\"busy forever\"); \
          print \"$$\\n\"; sleep 600'"
    ));
    let mut pid = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(outsider.stdout.as_mut().unwrap()),
        &mut pid,
    )
    .unwrap();
    let pid = pid.trim().to_owned();
    let mut named_pid = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(named.stdout.as_mut().unwrap()),
        &mut named_pid,
    )
    .unwrap();
    let named_pid = named_pid.trim().to_owned();
    let refused = poll(Duration::from_secs(8), || {
        let log = system.agent_log_since(&cursor);
        (log.contains(&format!("worker {pid} stuck"))
            && log.contains("runs outside the unit")
            && log.contains("worker web-1 stuck")
            && log.contains("not a pid"))
        .then_some(log)
    })
    .unwrap_or_else(|| panic!("{}", system.agent_log_since(&cursor)));
    assert!(
        system.run(&format!("kill -0 {pid}")).status.success(),
        "the outsider {pid} was hit"
    );
    let line = refused
        .lines()
        .find(|l| l.contains("runs outside the unit"))
        .unwrap();
    eprintln!("a worker id naming a pid outside the unit: not signalled: {line}");
    let _ = outsider.kill();
    let _ = named.kill();
    let _ = outsider.wait();
    let _ = named.wait();
    // nsenter's children live on in the namespace: ended by pid.
    system.sh(&format!("kill {pid} {named_pid} 2>/dev/null; true"));
}

fn quiet_pools_and_dry_runs_are_never_acted_on(system: &System) {
    pool_actions(system, "wedged_after = \"2s\"\n");
    let before = (restarts(system), pool_workers(system));
    // An idle pool, then three hung workers beside one that works: never wedged.
    system.must("echo idle > /run/pool-control");
    std::thread::sleep(Duration::from_secs(4));
    system.must("echo work > /run/pool-control");
    for worker in &before.1[..3] {
        system.must(&format!("echo hang > /run/pool-control.{worker}"));
    }
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!((restarts(system), pool_workers(system)), before);

    // A dry run: everything hung, both actions due, nothing done, everything said.
    pool_actions(
        system,
        "wedged_after = \"2s\"\nkill_stuck_after = \"2s\"\nactions = \"report\"\n",
    );
    let cursor = system.journal_cursor();
    system.must("echo hang > /run/pool-control");
    let reported = poll(Duration::from_secs(8), || {
        let log = system.agent_log_since(&cursor);
        (log.contains("would trigger its watchdog")
            && log.matches("would send SIGTERM").count() >= 4)
            .then_some(log)
    })
    .unwrap_or_else(|| panic!("{}", system.agent_log_since(&cursor)));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!((restarts(system), pool_workers(system)), before);
    let status = system.must("scoreboardctl status pool");
    assert!(status.contains("reported"), "{status}");
    system.must("rm -f /run/pool-control.* && echo work > /run/pool-control");
    eprintln!(
        "idle pool, 3 hung + 1 working: no action; dry run: {} reports, nothing done",
        reported.lines().filter(|l| l.contains("would")).count()
    );
}

fn agent_restart_mid_wedge(system: &System) {
    pool_actions(system, "wedged_after = \"4s\"\n");
    let before = restarts(system);
    let cursor = system.journal_cursor();
    let hung = Instant::now();
    system.must("echo hang > /run/pool-control");
    // 2.5 s in (stuck for ~1.3 s of the 4), the agent restarts: the stuck timers come
    // back from its state, so the wedge is still judged from when it began.
    std::thread::sleep(Duration::from_millis(2500));
    system.must("systemctl restart scoreboard-agent");
    let restarted = poll(Duration::from_secs(10), || {
        (restarts(system) > before).then(|| hung.elapsed())
    })
    .unwrap_or_else(|| panic!("{}", system.agent_log_since(&cursor)));
    // Restarted agents later, within the same start of the pool: no second trigger.
    system.must("echo work > /run/pool-control");
    system.must("systemctl restart scoreboard-agent");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(restarts(system), before + 1);
    let triggers = system
        .agent_log_since(&cursor)
        .matches("triggered its watchdog")
        .count();
    assert_eq!(triggers, 1);
    eprintln!(
        "agent restarted 2.5 s into a 5.2 s wedge: the pool was restarted {restarted:.1?} after \
         the hang (once; a later agent restart did not trigger again)"
    );
}

/// The pool's services.d file with `settings` in place of every health setting (and
/// `stuck_after`), in force after a reload.
fn pool_settings(system: &System, settings: &str) {
    let base = system.must(
        "grep -v -e stuck_after -e _after -e kill_ -e '^actions' /etc/scoreboard/services.d/pool.toml",
    );
    system.must(&format!(
        "cat > /etc/scoreboard/services.d/pool.toml <<'EOF'\n{base}{settings}EOF\n\
         systemctl reload scoreboard-agent"
    ));
}

/// Seconds since the Unix epoch, for `journalctl --since=@…`.
fn unix_now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The agent's journal entries since `since` (Unix seconds) that carry
/// `SCOREBOARD_ACTION`.
fn action_entries_since(system: &System, since: u64) -> Vec<serde_json::Value> {
    system
        .sh(&format!(
            "journalctl -u scoreboard-agent --since=@{since} -o json --no-pager"
        ))
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["SCOREBOARD_ACTION"].is_string())
        .collect()
}

/// What the agent logged since `since` (Unix seconds).
fn agent_log_since_time(system: &System, since: u64) -> String {
    system.sh(&format!(
        "journalctl -u scoreboard-agent --since=@{since} --no-pager -o cat"
    ))
}

/// The agent's journal entries after `cursor` that carry `SCOREBOARD_ACTION`.
fn action_entries(system: &System, cursor: &str) -> Vec<serde_json::Value> {
    system
        .sh(&format!(
            "journalctl -u scoreboard-agent --after-cursor={} -o json --no-pager",
            shell_quote(cursor)
        ))
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["SCOREBOARD_ACTION"].is_string())
        .collect()
}

/// The pool restarted with workers that publish nothing, as ServerStatus::Lite's before
/// their first request: "0 workers", and nothing done about it however long it lasts.
fn fresh_pool_is_left_alone(system: &System) {
    pool_actions(system, "wedged_after = \"4s\"\nkill_stuck_after = \"2s\"\n");
    system.must(
        "rm -f /run/pool-control.* && echo silent > /run/pool-control && systemctl restart pool",
    );
    let before = restarts(system);
    // By time: the first entry after a cursor has been seen missing from such views,
    // and an empty list must not pass for that reason.
    let since = unix_now_seconds() - 1;
    system.expect_status("pool", "0 workers: none", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(15));
    let log = agent_log_since_time(system, since);
    assert_eq!(restarts(system), before, "{log}");
    assert_eq!(system.property("pool", "StatusText"), "0 workers: none");
    assert!(action_entries_since(system, since).is_empty(), "{log}");
    system.must("echo work > /run/pool-control");
    let back = poll(Duration::from_secs(5), || {
        (pool_status_workers(system) == Some(4)).then_some(())
    });
    assert!(back.is_some(), "{}", system.property("pool", "StatusText"));
    eprintln!(
        "a pool with no worker files for 15 s (wedged_after 4 s): NRestarts {before} -> {}, \
         no action, Status \"0 workers: none\"",
        restarts(system)
    );
}

const HIDDEN_UNIT: &str = "[Unit]
Description=Perl pool the agent cannot read
[Service]
User=nobody
ExecStart=/usr/bin/perl -I/usr/local/lib/scoreboard-test /usr/local/lib/scoreboard-test/pool.pl /run/hidden/scoreboard 3
RuntimeDirectory=hidden
UMask=0077
# So that systemd takes STATUS= from the agent on the main process's behalf (what
# scoreboardctl enable's drop-in sets; this unit is set up by hand).
NotifyAccess=main
Restart=on-failure
RestartSec=200ms
";

/// A service whose workers (another user, umask 077) make a directory the agent may
/// not open, watched by a services.d file written by hand: unknown, said so with the
/// fix, never restarted; the fix named works.
fn unreadable_pool_is_unknown(system: &System) {
    system.must(&format!(
        "cat > /etc/systemd/system/hidden.service <<'EOF'\n{HIDDEN_UNIT}EOF\n\
         cat > /etc/scoreboard/services.d/hidden.toml <<'EOF'\n\
         unit = \"hidden.service\"\nstuck_after = \"1s\"\nwedged_after = \"3s\"\nEOF\n\
         systemctl daemon-reload && systemctl reload scoreboard-agent && systemctl start hidden"
    ));
    let expected =
        "scoreboard unreadable: permission denied — run: scoreboardctl enable hidden.service";
    let took = system.expect_status("hidden", expected, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(system.property("hidden", "NRestarts"), "0");
    assert_eq!(system.property("hidden", "StatusText"), expected);
    let out = system.run("scoreboardctl status hidden");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("unseen: permission_denied: "), "{stdout}");
    let unseen = system.must(
        "busctl --system get-property io.scoreboard.Agent1 /io/scoreboard/Agent1/service/hidden_2eservice \
         io.scoreboard.Agent1.Service Unseen",
    );
    assert!(unseen.contains("permission_denied"), "{unseen}");
    // The fix the line names. enable leaves a services.d file it did not write alone,
    // and says how to hand it over; then the agent reads the pool from the next start.
    let out = system.run("scoreboardctl enable hidden.service");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("mv /etc/scoreboard/services.d/hidden.toml"),
        "{stderr}"
    );
    system.must(
        "mv /etc/scoreboard/services.d/hidden.toml /etc/scoreboard/hidden.toml.orig && \
         scoreboardctl enable hidden.service --stuck-after 1s --wedged-after 3s && \
         systemctl restart hidden",
    );
    let seen = poll(Duration::from_secs(8), || {
        let status = system.property("hidden", "StatusText");
        status.starts_with("3 workers").then_some(status)
    })
    .unwrap_or_else(|| panic!("{}", system.property("hidden", "StatusText")));
    system.must(
        "systemctl stop hidden && scoreboardctl disable hidden.service; \
         rm -f /etc/systemd/system/hidden.service /etc/scoreboard/services.d/hidden.toml /etc/scoreboard/hidden.toml.orig; \
         systemctl daemon-reload && systemctl reload scoreboard-agent",
    );
    eprintln!(
        "unreadable directory (drwx------ nobody): Status {expected:?} within {took:.1?}, NRestarts 0 \
         after 12 s with wedged_after 3 s, scoreboardctl exit 1; after the named fix: {seen:?}"
    );
}

/// One worker serving requests back to back (50 ms busy, 1 ms idle: the same text at
/// most looks) and one hung beside it: the hung one is signalled, the busy one never.
fn busy_worker_is_not_stuck(system: &System) {
    pool_actions(system, "kill_stuck_after = \"5s\"\nkill_grace = \"5s\"\n");
    let workers = pool_workers(system);
    assert_eq!(workers.len(), 4, "{workers:?}");
    let (flipper, hung) = (workers[0].clone(), workers[1].clone());
    let cursor = system.journal_cursor();
    let started = Instant::now();
    system.must(&format!(
        "echo flip > /run/pool-control.{flipper} && echo hang > /run/pool-control.{hung}"
    ));
    let replaced = poll(Duration::from_secs(12), || {
        (!pool_workers(system).contains(&hung)).then(|| started.elapsed())
    })
    .unwrap_or_else(|| panic!("{hung} not signalled: {}", system.agent_log_since(&cursor)));
    std::thread::sleep(Duration::from_secs(20).saturating_sub(started.elapsed()));
    let log = system.agent_log_since(&cursor);
    assert!(pool_workers(system).contains(&flipper), "{log}");
    assert!(!log.contains(&format!("worker {flipper} stuck")), "{log}");
    assert!(
        log.contains(&format!("sent SIGTERM to pid {hung}")),
        "{log}"
    );
    system.must(&format!(
        "rm -f /run/pool-control.{flipper} /run/pool-control.{hung}"
    ));
    eprintln!(
        "a worker flipping busy 50 ms / idle 1 ms for 20 s: never signalled (kill_stuck_after \
         5 s); the hung one beside it replaced {replaced:.1?} after it hung"
    );
}

/// A stuck worker that ignores SIGTERM; the agent restarted two seconds after the
/// signal: no second SIGTERM, SIGKILL at the first one plus kill_grace.
fn one_signal_across_agent_restart(system: &System) {
    pool_actions(system, "kill_stuck_after = \"2s\"\nkill_grace = \"8s\"\n");
    let victim = pool_workers(system)[0].clone();
    let cursor = system.journal_cursor();
    system.must(&format!("echo stubborn > /run/pool-control.{victim}"));
    let term = format!("sent SIGTERM to pid {victim}");
    let kill = format!("sent SIGKILL to pid {victim}");
    let termed = poll(Duration::from_secs(10), || {
        system
            .agent_log_since(&cursor)
            .contains(&term)
            .then(Instant::now)
    })
    .unwrap_or_else(|| panic!("{}", system.agent_log_since(&cursor)));
    std::thread::sleep(Duration::from_secs(2));
    system.must("systemctl restart scoreboard-agent");
    let killed = poll(Duration::from_secs(15), || {
        system
            .agent_log_since(&cursor)
            .contains(&kill)
            .then(Instant::now)
    })
    .unwrap_or_else(|| panic!("{}", system.agent_log_since(&cursor)));
    let log = system.agent_log_since(&cursor);
    assert_eq!(log.matches(&term).count(), 1, "{log}");
    assert_eq!(log.matches(&kill).count(), 1, "{log}");
    let grace = killed - termed;
    assert!(
        grace >= Duration::from_millis(7500) && grace <= Duration::from_millis(10_500),
        "SIGKILL {grace:?} after SIGTERM, kill_grace 8 s\n{log}"
    );
    system.must(&format!("rm -f /run/pool-control.{victim}"));
    eprintln!(
        "a worker ignoring SIGTERM, the agent restarted 2 s after it: 1 SIGTERM, 1 SIGKILL \
         {grace:.1?} after it (kill_grace 8 s)"
    );
}

/// Moves every saved progress time of a state file an hour back, whatever the field's
/// name (wall-clock milliseconds before, boot-clock milliseconds now).
const SHIFT_SAVED_TIMES: &str = r#"import json, sys
path = sys.argv[1]
state = json.load(open(path))
for worker in state["workers"].values():
    for key in ("since_ms", "progress_boot_ms"):
        if key in worker:
            worker[key] = max(0, worker[key] - 3600000)
json.dump(state, open(path, "w"))
"#;

/// Saved progress times moved an hour back while the agent is stopped (as a clock step
/// or a damaged file would): a remembered time never precedes the process's start, so
/// workers a few seconds old are not stuck for an hour.
fn saved_times_are_bounded(system: &System) {
    pool_settings(
        system,
        "stuck_after = \"10m\"\nkill_stuck_after = \"20m\"\nwedged_after = \"10m\"\n",
    );
    system.must(
        "rm -f /run/pool-control.* && echo hang > /run/pool-control && systemctl restart pool",
    );
    // Until the restarted pool has made its directory, scoreboardctl says it is not running.
    let up = poll(Duration::from_secs(5), || {
        let json: serde_json::Value =
            serde_json::from_str(&system.sh("scoreboardctl status pool --json")).ok()?;
        (json["services"][0]["workers"].as_array()?.len() == 4).then_some(())
    });
    assert!(up.is_some(), "{}", system.property("pool", "StatusText"));
    let workers = pool_workers(system);
    std::thread::sleep(Duration::from_secs(3));
    system.must("systemctl stop scoreboard-agent");
    // Every saved time, whatever its name, an hour earlier.
    system.must(&format!(
        "python3 - /run/scoreboard/pool.service.json <<'EOF'\n{SHIFT_SAVED_TIMES}EOF"
    ));
    let cursor = system.journal_cursor();
    system.must("systemctl start scoreboard-agent");
    std::thread::sleep(Duration::from_secs(4));
    let log = system.agent_log_since(&cursor);
    assert!(action_entries(system, &cursor).is_empty(), "{log}");
    assert_eq!(pool_workers(system), workers, "{log}");
    let json: serde_json::Value =
        serde_json::from_str(&system.must("scoreboardctl status pool --json")).unwrap();
    let oldest = json["services"][0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["unchanged_seconds"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(oldest < 60.0, "{json}");
    system.must("echo work > /run/pool-control");
    eprintln!(
        "saved times an hour back: nothing signalled, the oldest worker unchanged for \
         {oldest:.1} s (bounded by its process's start)"
    );
}

/// Report mode through an empty start and then a real wedge: the wedge reported once,
/// every entry `SCOREBOARD_ACTION=reported` with what acting would do in
/// `SCOREBOARD_WOULD` (watchdog, signal, then kill after the grace); nothing done.
fn report_mode_reports_exactly(system: &System) {
    pool_actions(
        system,
        "wedged_after = \"2s\"\nkill_stuck_after = \"2s\"\nkill_grace = \"3s\"\nactions = \"report\"\n",
    );
    system.must(
        "rm -f /run/pool-control.* && echo silent > /run/pool-control && systemctl restart pool",
    );
    // By time, not by cursor: entries are matched by what they say, and the first one
    // after a cursor has been seen missing from `--after-cursor` views.
    let since = unix_now_seconds() - 1;
    let before = restarts(system);
    std::thread::sleep(Duration::from_secs(4));
    system.must("echo hang > /run/pool-control");
    let would = |entries: &[serde_json::Value], what: &str| {
        entries
            .iter()
            .filter(|e| e["SCOREBOARD_WOULD"] == what)
            .count()
    };
    poll(Duration::from_secs(15), || {
        let entries = action_entries_since(system, since);
        (would(&entries, "watchdog") >= 1 && would(&entries, "kill") >= 4).then_some(())
    })
    .unwrap_or_else(|| panic!("{}", agent_log_since_time(system, since)));
    std::thread::sleep(Duration::from_secs(2));
    let entries = action_entries_since(system, since);
    let log = agent_log_since_time(system, since);
    assert_eq!(would(&entries, "watchdog"), 1, "{log}");
    assert_eq!(would(&entries, "signal"), 4, "{log}");
    assert_eq!(would(&entries, "kill"), 4, "{log}");
    assert!(
        entries.iter().all(|e| e["SCOREBOARD_ACTION"] == "reported"),
        "{log}"
    );
    let wedge = log
        .lines()
        .find(|l| l.contains("would trigger its watchdog"))
        .unwrap();
    assert!(wedge.contains("all 4 workers stuck"), "{wedge}");
    assert_eq!(restarts(system), before);
    assert_eq!(pool_workers(system).len(), 4);
    system.must("echo work > /run/pool-control");
    eprintln!(
        "report mode, 4 s empty then all hung: {} entries, all reported (1 watchdog, 4 signal, \
         4 kill in SCOREBOARD_WOULD), nothing done: {wedge}",
        entries.len()
    );
}

/// The pool, its drop-ins and files go.
fn health_teardown(system: &System) {
    system.must("systemctl stop pool && scoreboardctl disable pool.service");
    system.must(
        "rm -rf /etc/systemd/system/pool.service /etc/systemd/system/scoreboard-agent.service.d/50-kill.conf \
         /run/pool-control* && systemctl daemon-reload && systemctl restart scoreboard-agent",
    );
}

/// A services.d file naming a directory outside the agent's `ReadWritePaths=` (where
/// every reap would fail with EROFS): `--check-config` fails naming the fix, and the
/// running agent refuses it the same way.
fn read_only_directory_is_refused(system: &System) {
    system.must(
        "mkdir -p /var/lib/okpool/scoreboard && \
         printf 'unit = \"okpool.service\"\\ndirectory = \"/var/lib/okpool/scoreboard\"\\n' \
           > /etc/scoreboard/services.d/okpool.toml",
    );
    let out = system.run("scoreboard-agent --check-config");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ReadWritePaths=/var/lib/okpool/scoreboard"),
        "{stderr}"
    );
    let cursor = system.journal_cursor();
    system.must("systemctl reload scoreboard-agent");
    let said = poll(Duration::from_secs(5), || {
        system
            .agent_log_since(&cursor)
            .lines()
            .find(|l| l.contains("is read-only to the agent"))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("{}", system.agent_log_since(&cursor)));
    let unseen = system.must(
        "busctl --system get-property io.scoreboard.Agent1 /io/scoreboard/Agent1/service/okpool_2eservice \
         io.scoreboard.Agent1.Service Unseen",
    );
    assert!(unseen.contains("read_only"), "{unseen}");
    system.must(
        "rm -rf /etc/scoreboard/services.d/okpool.toml /var/lib/okpool && systemctl reload scoreboard-agent",
    );
    eprintln!(
        "a directory under /var/lib: --check-config: {}; the agent: {said}",
        stderr.trim()
    );
}

/// A gunicorn app as its users run it: its own user, `RuntimeDirectory=`, 4 sync
/// workers, the one line in gunicorn.conf.py, enabled with `scoreboardctl enable`.
const GUNICORN_APP: &str = r#"import time
def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or "4"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello\n"]
"#;

fn gunicorn_unit(gunicorn: &str, options: &str) -> String {
    format!(
        "[Unit]\nDescription=A gunicorn app\n[Service]\nUser=nobody\nGroup=nogroup\n\
         RuntimeDirectory=gapp\nWorkingDirectory=/usr/local/lib/gapp\n\
         ExecStart={gunicorn} -c /usr/local/lib/gapp/gunicorn.conf.py --bind 127.0.0.1:18080 \
         {options} app:app\n"
    )
}

/// gapp.service as `gunicorn_unit` makes it, (re)started, enabled already; returns the
/// first Status line that says `expected`.
fn gunicorn_start(system: &System, gunicorn: &str, options: &str, expected: &str) -> String {
    system.must(&format!(
        "cat > /etc/systemd/system/gapp.service <<'EOF'\n{}EOF\n\
         systemctl daemon-reload && systemctl restart gapp",
        gunicorn_unit(gunicorn, options)
    ));
    poll(Duration::from_secs(20), || {
        let status = system.property("gapp", "StatusText");
        (status == expected).then_some(status)
    })
    .unwrap_or_else(|| {
        panic!(
            "{}\n{}",
            system.property("gapp", "StatusText"),
            system.sh("journalctl -u gapp --no-pager -n 20")
        )
    })
}

/// gapp's worker pids, as the agent lists them.
fn gunicorn_workers(system: &System) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(&system.must("scoreboardctl status gapp --json")).unwrap();
    let mut ids: Vec<String> = json["services"][0]["workers"]
        .as_array()
        .map(|workers| {
            workers
                .iter()
                .filter_map(|w| Some(w["id"].as_str()?.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn gunicorn_pools(system: &System) {
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/src/scoreboard");
    system.must(&format!(
        "mkdir -p /usr/local/lib/python3.11/dist-packages /usr/local/lib/gapp && \
         cp -r {} /usr/local/lib/python3.11/dist-packages/ && \
         cat > /usr/local/lib/gapp/app.py <<'EOF'\n{GUNICORN_APP}EOF\n\
         echo 'from scoreboard.gunicorn import *' > /usr/local/lib/gapp/gunicorn.conf.py",
        package.display()
    ));
    let debian = system.must("/usr/bin/python3 -c 'import gunicorn; print(gunicorn.__version__)'");
    // Debian's python3-gunicorn ships the module; its command is in package gunicorn.
    gunicorn_pool(system, "/usr/bin/python3 -m gunicorn", debian.trim());
    // The newest gunicorn from PyPI, in a virtual environment of Debian's python3.
    system.must(
        "/usr/bin/python3 -m venv --system-site-packages /var/lib/gvenv && \
         /var/lib/gvenv/bin/pip install --quiet --upgrade --ignore-installed gunicorn",
    );
    let pypi =
        system.must("/var/lib/gvenv/bin/python -c 'import gunicorn; print(gunicorn.__version__)'");
    gunicorn_pool(system, "/var/lib/gvenv/bin/python -m gunicorn", pypi.trim());
    python_hostile_statuses(system);
    system.must(
        "rm -rf /usr/local/lib/gapp /var/lib/gvenv /usr/local/lib/python3.11/dist-packages/scoreboard",
    );
}

/// A Python worker run as nobody that publishes whatever root writes to a control file.
const PYTHON_SAYER: &str = r#"import os, time
from scoreboard import Scoreboard
board = Scoreboard(os.path.join(os.environ["RUNTIME_DIRECTORY"], "scoreboard"))
board.update("idle")
last = None
while True:
    try:
        with open("/run/pysay-control", "rb") as control:
            said = control.read()
    except FileNotFoundError:
        said = None
    if said is not None and said != last:
        board.update(said)
        last = said
    time.sleep(0.05)
"#;

/// A Python worker's hostile statuses (NUL, assignments, non-UTF-8, 1 MB, terminal
/// escapes) meet the bounds Perl's and Rust's do: the Status line, scoreboardctl and
/// the dead worker's journal line stay one escaped, bounded line; the agent lives.
fn python_hostile_statuses(system: &System) {
    system.must(&format!(
        "rm -f /run/pysay-control && \
         cat > /usr/local/lib/gapp/say.py <<'EOF'\n{PYTHON_SAYER}EOF\n\
         printf '[Service]\\nUser=nobody\\nGroup=nogroup\\nRuntimeDirectory=pysay\\n\
ExecStart=/bin/sh -c \"while :; do /usr/bin/python3 /usr/local/lib/gapp/say.py; sleep 1; done\"\\n' \
           > /etc/systemd/system/pysay.service && \
         systemctl daemon-reload && scoreboardctl enable pysay.service && systemctl start pysay"
    ));
    let agent = system.property("scoreboard-agent", "MainPID");
    system.expect_status("pysay", "1 workers: 1 idle", Duration::from_secs(10));
    let main_pid = system.property("pysay", "MainPID");
    let say = |printf: &str| system.must(&format!("printf '{printf}' > /run/pysay-control"));
    say("busy\\0x GET /");
    system.expect_status("pysay", "1 workers: 1 busy x", Duration::from_secs(3));
    say("busy\\nMAINPID=1\\nREADY=1");
    system.expect_status("pysay", "1 workers: 1 busy", Duration::from_secs(3));
    assert_eq!(system.property("pysay", "MainPID"), main_pid);
    say("\\377\\376 GET /bytes");
    let bytes = poll(Duration::from_secs(3), || {
        let table = system.must("scoreboardctl status pysay");
        table.contains("GET /bytes").then_some(table)
    })
    .expect("a non-UTF-8 status in scoreboardctl");
    system.must("{ printf 'busy '; head -c 1000000 /dev/zero | tr '\\0' x; } > /run/pysay-control");
    let huge = poll(Duration::from_secs(5), || {
        let table = system.must("scoreboardctl status pysay");
        table.contains("busy xxxx").then_some(table)
    })
    .expect("a 1 MB status in scoreboardctl");
    let widest = huge.lines().map(str::len).max().unwrap_or(0);
    // Statuses are cut at 4 KiB on the bus; the table's other columns come on top.
    assert!(widest < 4096 + 100, "a {widest}-byte line in scoreboardctl");
    let rss_kib: u64 = system
        .must(&format!("awk '/VmRSS/ {{print $2}}' /proc/{agent}/status"))
        .trim()
        .parse()
        .unwrap();
    say("busy \\033[2J\\033]0;pwned\\007 GET /escape");
    system.expect_status("pysay", "1 workers: 1 busy", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(500)); // the escape sequence seen
    // The worker dies; its unit (a shell that starts it again) and directory stay, as a
    // pre-fork server's do: the agent reaps the file and says what it was doing.
    let worker = system.must("pgrep -f '^/usr/bin/python3 /usr/local/lib/gapp/say.py'");
    let worker = worker.trim();
    let since = unix_now_seconds();
    system.must(&format!("kill -9 {worker}"));
    let died = poll(Duration::from_secs(10), || {
        agent_log_since_time(system, since)
            .lines()
            .find(|l| {
                l.contains(&format!("worker {worker} died while")) && l.contains("GET /escape")
            })
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("{}", agent_log_since_time(system, since)));
    assert!(
        !died.contains('\x1b') && died.contains("\\x1b[2J"),
        "{died:?}"
    );
    assert_eq!(system.property("scoreboard-agent", "MainPID"), agent);
    system.must(
        "systemctl stop pysay; scoreboardctl disable pysay.service && \
         rm -f /etc/systemd/system/pysay.service /run/pysay-control && systemctl daemon-reload",
    );
    eprintln!(
        "a Python worker as nobody: NUL → \"1 workers: 1 busy x\", assignments → one status \
         (MainPID kept), non-UTF-8 → {:?}, 1 MB → widest scoreboardctl line {widest} B, agent \
         VmRSS {rss_kib} KiB; killed with a terminal escape as its status: {died:?}; agent pid \
         unchanged",
        bytes
            .lines()
            .find(|l| l.contains("GET /bytes"))
            .unwrap_or(""),
    );
}

fn gunicorn_pool(system: &System, gunicorn: &str, version: &str) {
    const SYNC: &str = "--workers 4 --timeout 3";
    system.must(&format!(
        "cat > /etc/systemd/system/gapp.service <<'EOF'\n{}EOF\n\
         systemctl daemon-reload && scoreboardctl enable gapp.service",
        gunicorn_unit(gunicorn, SYNC)
    ));
    let up = gunicorn_start(system, gunicorn, SYNC, "4 workers: 4 idle");
    // A slow request: busy in systemctl status and in scoreboardctl.
    let mut slow = system.spawn("curl -s 'http://127.0.0.1:18080/slow?2'");
    system.expect_status("gapp", "4 workers: 3 idle, 1 busy", Duration::from_secs(3));
    let table = system.must("scoreboardctl status gapp");
    assert!(table.contains("busy GET /slow"), "{table}");
    // What an operator sees, for the guides.
    eprintln!(
        "$ systemctl status gapp\n{}\n$ scoreboardctl status gapp\n{table}",
        system.sh(
            "systemctl status gapp --no-pager --lines=0 | grep -E '^●|Active:|Main PID:|Status:'"
        )
    );
    let _ = slow.wait();
    system.expect_status("gapp", "4 workers: 4 idle", Duration::from_secs(4));
    // SIGKILL of a worker: seen, and gunicorn's replacement appears.
    let ids = gunicorn_workers(system);
    assert_eq!(ids.len(), 4, "{ids:?}");
    let since = unix_now_seconds();
    system.must(&format!("kill -9 {}", ids[0]));
    let replaced = poll(Duration::from_secs(10), || {
        let now = gunicorn_workers(system);
        (now.len() == 4 && !now.contains(&ids[0])).then_some(now)
    });
    assert!(
        replaced.is_some(),
        "{}",
        agent_log_since_time(system, since)
    );
    // gunicorn's --timeout (3 s) aborts a request stuck for 10 s: the agent's line says
    // which request, as the worker's abort hook wrote it.
    let mut stuck = system.spawn("curl -s 'http://127.0.0.1:18080/slow?10'");
    let named = poll(Duration::from_secs(15), || {
        agent_log_since_time(system, since)
            .lines()
            .find(|l| l.contains("died while \"timeout GET /slow\""))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("{}", agent_log_since_time(system, since)));
    let _ = stuck.kill();
    let _ = stuck.wait();
    // The same on the bus, to who may see per-worker details (root here).
    let deaths = system.must(
        "busctl --system call io.scoreboard.Agent1 /io/scoreboard/Agent1/service/gapp_2eservice \
         io.scoreboard.Agent1.Service ListDeaths",
    );
    assert!(
        deaths.contains("\"status\" s \"timeout GET /slow\""),
        "{deaths}"
    );

    // kill_stuck_after, opted into with the drop-in: a worker stuck in a request past
    // it is ended and gunicorn replaces it; the other workers keep their pids. gunicorn's
    // own timeout is out of the way (120 s); its sync worker finishes the request it is
    // in on SIGTERM, so SIGKILL follows after kill_grace.
    const PATIENT: &str = "--workers 4 --timeout 120";
    system.must(
        "printf 'stuck_after = \"2s\"\\nkill_stuck_after = \"2s\"\\nkill_grace = \"2s\"\\n' \
           >> /etc/scoreboard/services.d/gapp.toml",
    );
    // Asked for in the service's file, not yet granted to the agent's unit: refused,
    // with the one command that fixes it; granted, accepted.
    let refused = system.sh("scoreboard-agent --check-config 2>&1; echo exit=$?");
    assert!(
        refused.contains("scoreboardctl grant-kill") && refused.contains("exit=1"),
        "{refused}"
    );
    system.must("scoreboardctl grant-kill");
    let accepted = system.sh("scoreboard-agent --check-config 2>&1; echo exit=$?");
    assert!(accepted.contains("exit=0"), "{accepted}");
    gunicorn_start(system, gunicorn, PATIENT, "4 workers: 4 idle");
    let before = gunicorn_workers(system);
    let since = unix_now_seconds();
    let mut stuck = system.spawn("curl -s 'http://127.0.0.1:18080/slow?60'");
    let stuck_one = poll(Duration::from_secs(5), || {
        let json: serde_json::Value =
            serde_json::from_str(&system.must("scoreboardctl status gapp --json")).ok()?;
        json["services"][0]["workers"]
            .as_array()?
            .iter()
            .find(|w| w["status"].as_str() == Some("busy GET /slow"))
            .and_then(|w| Some(w["id"].as_str()?.to_owned()))
    })
    .expect("a worker busy with GET /slow");
    let after = poll(Duration::from_secs(20), || {
        let now = gunicorn_workers(system);
        (now.len() == 4 && !now.contains(&stuck_one)).then_some(now)
    })
    .unwrap_or_else(|| panic!("{}", agent_log_since_time(system, since)));
    let kept: Vec<&String> = before.iter().filter(|id| **id != stuck_one).collect();
    assert!(
        kept.iter().all(|id| after.contains(id)),
        "before {before:?}, after {after:?}"
    );
    let actions = action_entries_since(system, since);
    let kinds: Vec<&str> = actions
        .iter()
        .filter_map(|e| e["SCOREBOARD_ACTION"].as_str())
        .collect();
    assert_eq!(kinds, ["signal", "kill"], "{actions:?}");
    let _ = stuck.kill();
    let _ = stuck.wait();

    // gthread: one worker, 4 threads, 2 requests in flight: the status says both.
    gunicorn_start(
        system,
        gunicorn,
        "--workers 1 --worker-class gthread --threads 4 --timeout 120",
        "1 workers: 1 idle",
    );
    let mut first = system.spawn("curl -s 'http://127.0.0.1:18080/slow?4'");
    std::thread::sleep(Duration::from_millis(300)); // the second is the newer
    let mut second = system.spawn("curl -s 'http://127.0.0.1:18080/slow?4'");
    let threads = poll(Duration::from_secs(3), || {
        let table = system.must("scoreboardctl status gapp");
        table
            .contains("busy GET /slow (+1 more in flight)")
            .then_some(table)
    })
    .unwrap_or_else(|| panic!("{}", system.must("scoreboardctl status gapp")));
    // The Status line follows within an interval (changes other than joins and deaths
    // wait one).
    system.expect_status("gapp", "1 workers: 1 busy", Duration::from_secs(2));
    let gthread_status = system.property("gapp", "StatusText");
    let _ = first.wait();
    let _ = second.wait();
    system.must(
        "systemctl stop gapp && scoreboardctl disable gapp.service && \
         rm -f /etc/systemd/system/gapp.service && scoreboardctl revoke-kill && \
         systemctl daemon-reload && systemctl restart scoreboard-agent",
    );
    eprintln!(
        "gunicorn {version} ({gunicorn}), 4 sync workers as nobody: {up:?} at start, a slow \
         request as busy, a killed worker replaced; its --timeout in the agent's journal: \
         {named}; --check-config before grant-kill: {:?}; kill_stuck_after 2 s + grace 2 s: \
         {stuck_one} signalled then killed, \
         replaced, 3 others kept ({before:?} -> {after:?}); gthread with 2 requests: \
         {gthread_status:?}, {:?}",
        refused
            .lines()
            .find(|l| l.contains("grant-kill"))
            .unwrap_or(""),
        threads
            .lines()
            .find(|l| l.contains("more in flight"))
            .unwrap_or("")
    );
}
