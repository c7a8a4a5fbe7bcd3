//! The agent on D-Bus, against private `dbus-daemon`s (no systemd needed): what
//! clients see (introspection, properties, methods, D-Bus signals, coalescing under a storm
//! of deaths), scoreboardctl as a client, metrics scraped over HTTP and checked by
//! promtool, and the shipped bus policy enforced on a system-like bus.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rustix::process::Signal;
use scoreboard_testkit::bus::{
    MANAGER_INTERFACE, MANAGER_PATH, NAME, SERVICE_INTERFACE as SERVICE,
};
use scoreboard_testkit::{
    Agent, AgentDir, Bus, Holder, NotifySocket, as_root_or_skip, memory_kib, testkit_binary,
    wait_until,
};

const AGENT: &str = env!("CARGO_BIN_EXE_scoreboard-agent");
const WEB: &str = "/io/scoreboard/Agent1/service/web_2eservice";

/// An agent on a private session bus watching `web` in a temp dir.
struct Setup {
    dir: AgentDir,
    bus: Bus,
    agent: Option<Agent>,
}

impl Setup {
    fn new(settings: &str) -> Setup {
        Setup::with_env(settings, &[], Bus::session())
    }

    /// With `env` set for the agent (a notify socket, a watchdog, another address for
    /// `bus`), on `bus`.
    fn with_env(settings: &str, env: &[(&str, &str)], bus: Bus) -> Setup {
        let dir = AgentDir::new(&format!(
            "bus = \"session\"\ninterval = \"200ms\"\n{settings}"
        ));
        std::fs::create_dir(dir.path("web")).unwrap();
        dir.service(
            "web",
            &dir.path("web"),
            "notify = \"none\"\nstuck_after = \"1h\"\n",
        );
        let mut command = dir.agent_command(Path::new(AGENT));
        command
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .envs(env.iter().copied());
        let agent = Agent::spawn_logged(&mut command, &dir.path("agent.log"));
        let setup = Setup {
            dir,
            bus,
            agent: Some(agent),
        };
        wait_until(
            Duration::from_secs(10),
            "the agent to take its name",
            || setup.busctl(&["status", NAME]).status.success(),
        );
        setup
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path(relative)
    }

    fn busctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.bus.address))
            .args(args)
            .output()
            .unwrap()
    }

    fn busctl_ok(&self, args: &[&str]) -> String {
        let out = self.busctl(args);
        assert!(
            out.status.success(),
            "busctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn property(&self, name: &str) -> String {
        self.busctl_ok(&["get-property", NAME, WEB, SERVICE, name])
            .trim()
            .to_owned()
    }

    /// Waits until web's `Total` is `total`.
    fn wait_for_total(&self, total: usize, within: Duration) {
        let expected = format!("u {total}");
        wait_until(within, format_args!("Total {expected}"), || {
            self.property("Total") == expected
        });
    }

    fn scoreboardctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_scoreboardctl"))
            .args(args)
            .arg("--config")
            .arg(self.dir.config())
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus.address)
            .output()
            .unwrap()
    }

    async fn connection(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.bus.address.as_str())
            .build()
            .await
            .unwrap()
    }
}

/// `count` live workers (ids w0…) in one process.
fn hold(dir: &Path, count: usize) -> Holder {
    Holder::start(dir, count, "w")
}

#[test]
fn introspection_documents_every_member() {
    let setup = Setup::new("");
    let xml = setup.busctl_ok(&["introspect", "--xml-interface", NAME, WEB]);
    for member in [
        "<method name=\"ListWorkers\">",
        "<method name=\"GetWorker\">",
        "<property name=\"Summary\" type=\"s\" access=\"read\"/>",
        "<property name=\"Counts\" type=\"a{su}\" access=\"read\"/>",
        "<property name=\"Total\" type=\"u\" access=\"read\"/>",
        "<property name=\"Stuck\" type=\"u\" access=\"read\"/>",
        "<signal name=\"WorkerAdded\">",
        "<signal name=\"WorkerReaped\">",
        "<arg type=\"a(sssdb)\" direction=\"out\"/>",
        "Every live worker: (id, state, status, seconds since the status changed, stuck).",
        "Workers that left (reaped after dying, or exited and removed their file),",
    ] {
        assert!(xml.contains(member), "{member} missing from\n{xml}");
    }
    // Unit and Directory never change, and say so.
    assert!(
        xml.contains("org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"const\""),
        "{xml}"
    );
    // Nothing is writable.
    assert!(!xml.contains("access=\"readwrite\"") && !xml.contains("access=\"write\""));
    let manager = setup.busctl_ok(&["introspect", "--xml-interface", NAME, MANAGER_PATH]);
    for member in [
        "<method name=\"ListServices\">",
        "<property name=\"Services\" type=\"a(so)\"",
        "<signal name=\"ServiceAdded\">",
        "<signal name=\"ServiceRemoved\">",
    ] {
        assert!(manager.contains(member), "{member} missing from\n{manager}");
    }
}

/// Properties.Set as root (nothing in the way but the agent): a property that exists is
/// read-only, as the D-Bus specification names it; one that does not is unknown. On
/// objects added by a reload as well.
#[test]
fn setting_a_property_is_refused_as_read_only() {
    let setup = Setup::new("");
    // The error's name, as dbus-send prints it (busctl prints only the message).
    let set = |path: &str, interface: &str, property: &str| {
        let out = Command::new("dbus-send")
            .arg(format!("--bus={}", setup.bus.address))
            .args(["--print-reply", &format!("--dest={NAME}"), path])
            .arg("org.freedesktop.DBus.Properties.Set")
            .arg(format!("string:{interface}"))
            .arg(format!("string:{property}"))
            .arg("variant:string:hacked")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let refused = set(WEB, SERVICE, "Summary");
    assert!(
        refused.contains(
            "org.freedesktop.DBus.Error.PropertyReadOnly: \
             io.scoreboard.Agent1.Service.Summary is read-only"
        ),
        "{refused}"
    );
    let refused = set(MANAGER_PATH, MANAGER_INTERFACE, "Services");
    assert!(
        refused.contains("org.freedesktop.DBus.Error.PropertyReadOnly"),
        "{refused}"
    );
    let unknown = set(WEB, SERVICE, "Nope");
    assert!(
        unknown.contains("org.freedesktop.DBus.Error.UnknownProperty"),
        "{unknown}"
    );
    let unknown = set(WEB, "io.example.Nope", "Summary");
    assert!(
        unknown.contains("org.freedesktop.DBus.Error.UnknownInterface"),
        "{unknown}"
    );
    // busctl, as a user would try it.
    let out = setup.busctl(&["set-property", NAME, WEB, SERVICE, "Total", "u", "7"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("Total is read-only"), "{stderr}");
    // Reading is as before.
    assert_eq!(setup.property("Total"), "u 0");
    assert_eq!(setup.property("Unit"), "s \"web.service\"");
    let all = setup.busctl_ok(&[
        "call",
        NAME,
        WEB,
        "org.freedesktop.DBus.Properties",
        "GetAll",
        "s",
        SERVICE,
    ]);
    assert!(
        all.starts_with("a{sv} ")
            && all.contains("\"Summary\" s \"0 workers: none\"")
            && all.contains("\"Unit\" s \"web.service\""),
        "{all}"
    );

    // A service added by a reload.
    std::fs::create_dir(setup.path("jobs")).unwrap();
    setup
        .dir
        .service("jobs", &setup.path("jobs"), "notify = \"none\"\n");
    setup.agent.as_ref().unwrap().signal(Signal::HUP);
    let jobs = "/io/scoreboard/Agent1/service/jobs_2eservice";
    wait_until(Duration::from_secs(10), "jobs.service on the bus", || {
        setup
            .busctl(&["get-property", NAME, jobs, SERVICE, "Unit"])
            .status
            .success()
    });
    let refused = set(jobs, SERVICE, "Summary");
    assert!(
        refused.contains("org.freedesktop.DBus.Error.PropertyReadOnly"),
        "{refused}"
    );
}

#[test]
fn properties_and_methods_follow_workers_starting_and_dying() {
    let setup = Setup::new("");
    assert_eq!(setup.property("Total"), "u 0");
    assert_eq!(
        setup
            .busctl_ok(&[
                "call",
                NAME,
                MANAGER_PATH,
                MANAGER_INTERFACE,
                "ListServices"
            ])
            .trim(),
        format!("a(so) 1 \"web.service\" \"{WEB}\"")
    );

    let mut holder = hold(&setup.path("web"), 8);
    setup.wait_for_total(8, Duration::from_secs(5));
    assert_eq!(setup.property("Summary"), "s \"8 workers: 6 idle, 2 busy\"");
    assert_eq!(setup.property("Counts"), "a{su} 2 \"busy\" 2 \"idle\" 6");
    assert_eq!(setup.property("Stuck"), "u 0");
    assert_eq!(setup.property("Unit"), "s \"web.service\"");
    let workers = setup.busctl_ok(&["call", NAME, WEB, SERVICE, "ListWorkers"]);
    assert!(
        workers.starts_with("a(sssdb) 8 \"w0\" \"busy\" \"busy GET /\" "),
        "{workers}"
    );
    let one = setup.busctl_ok(&["call", NAME, WEB, SERVICE, "GetWorker", "s", "w1"]);
    assert!(
        one.starts_with("sssdb \"w1\" \"idle\" \"idle\" ") && one.trim().ends_with("false"),
        "{one}"
    );
    let missing = setup.busctl(&["call", NAME, WEB, SERVICE, "GetWorker", "s", "nope"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no live worker \"nope\""),
        "{missing:?}"
    );

    let none = setup.busctl_ok(&["call", NAME, WEB, SERVICE, "ListDeaths"]);
    assert_eq!(none.trim(), "aa{sv} 0");

    holder.kill9();
    setup.wait_for_total(0, Duration::from_secs(5));
    assert_eq!(setup.property("Summary"), "s \"0 workers: none\"");
    // What each was doing when it died, for who may see per-worker details.
    let deaths = setup.busctl_ok(&["call", NAME, WEB, SERVICE, "ListDeaths"]);
    assert!(deaths.starts_with("aa{sv} 8 "), "{deaths}");
    assert!(deaths.contains("\"id\" s \"w0\""), "{deaths}");
    assert_eq!(
        deaths.matches("\"status\" s \"busy GET /\"").count(),
        2,
        "{deaths}"
    );
    assert_eq!(
        deaths.matches("\"status\" s \"idle\"").count(),
        6,
        "{deaths}"
    );
    assert_eq!(
        deaths.matches("\"stood_seconds\" d ").count(),
        8,
        "{deaths}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_storm_of_deaths_is_a_bounded_number_of_messages() {
    let setup = Setup::new("");
    let connection = setup.connection().await;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path(WEB)
        .build()
        .unwrap();
    let mut stream =
        zbus::MessageStream::for_match_rule(rule, &connection, std::num::NonZeroUsize::new(10_000))
            .await
            .unwrap();

    // Counting starts with the subscription: workers joining are part of the storm.
    let storm = Instant::now();
    let mut holder = hold(&setup.path("web"), 1000);
    let mut added = 0;
    let mut added_messages = 0;
    let mut reaped = 0;
    let mut reaped_messages = 0;
    let mut properties_changed = 0;
    let mut killed = false;
    while storm.elapsed() < Duration::from_secs(8) && reaped < 1000 {
        if added == 1000 && !killed {
            holder.kill9();
            killed = true;
        }
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        else {
            continue;
        };
        let header = message.header();
        match header.member().map(|m| m.as_str()) {
            Some("WorkerAdded") => {
                added_messages += 1;
                added += message.body().deserialize::<Vec<String>>().unwrap().len();
            }
            Some("WorkerReaped") => {
                reaped_messages += 1;
                reaped += message.body().deserialize::<Vec<String>>().unwrap().len();
            }
            Some("PropertiesChanged") => properties_changed += 1,
            _ => {}
        }
    }
    let seconds = storm.elapsed().as_secs_f64();
    eprintln!(
        "1,000 workers started then killed at once: {added} added in {added_messages} D-Bus signals, \
         {reaped} reaped in {reaped_messages} D-Bus signals, {properties_changed} PropertiesChanged over {seconds:.1} s"
    );
    assert_eq!((added, reaped), (1000, 1000));
    // Batches go out at most every 100 ms, however many workers come or go in between;
    // property changes at most once per 200 ms tick.
    let batches = (seconds / 0.1).ceil() + 1.0;
    assert!(
        f64::from(added_messages) <= batches && f64::from(reaped_messages) <= batches,
        "{added_messages} {reaped_messages} in {seconds} s"
    );
    assert!(
        f64::from(properties_changed) <= (seconds / 0.2).ceil() + 2.0,
        "{properties_changed}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_reload_announces_added_and_removed_services() {
    let setup = Setup::new("");
    let connection = setup.connection().await;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path(MANAGER_PATH)
        .build()
        .unwrap();
    let mut stream = zbus::MessageStream::for_match_rule(rule, &connection, None)
        .await
        .unwrap();
    std::fs::write(
        setup.path("services.d/jobs.toml"),
        "unit = \"jobs\"\nnotify = \"none\"\n",
    )
    .unwrap();
    std::fs::remove_file(setup.path("services.d/web.toml")).unwrap();
    setup.agent.as_ref().unwrap().signal(Signal::HUP);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("D-Bus signals")
            .unwrap()
            .unwrap();
        let member = message.header().member().unwrap().to_string();
        if member == "PropertiesChanged" {
            seen.push(member);
        } else {
            let (unit, _path): (String, zbus::OwnedObjectPath) =
                message.body().deserialize().unwrap();
            seen.push(format!("{member} {unit}"));
        }
    }
    assert!(
        seen.contains(&"ServiceRemoved web.service".to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"ServiceAdded jobs.service".to_owned()),
        "{seen:?}"
    );
    let services = setup.busctl_ok(&[
        "get-property",
        NAME,
        MANAGER_PATH,
        MANAGER_INTERFACE,
        "Services",
    ]);
    assert_eq!(
        services.trim(),
        "a(so) 1 \"jobs.service\" \"/io/scoreboard/Agent1/service/jobs_2eservice\""
    );
}

#[test]
fn scoreboardctl_reads_the_agent_and_falls_back_without_it() {
    let mut setup = Setup::new("");
    let _holder = hold(&setup.path("web"), 3);
    setup.wait_for_total(3, Duration::from_secs(5));
    let out = setup.scoreboardctl(&["status", "web", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["source"], "agent");
    let service = &json["services"][0];
    assert_eq!(service["summary"], "3 workers: 2 idle, 1 busy");
    assert_eq!(service["workers"].as_array().unwrap().len(), 3);
    assert!(service["workers"][0]["unchanged_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(service["workers"][0]["stuck"], false);
    let table = String::from_utf8(setup.scoreboardctl(&["status", "web"]).stdout).unwrap();
    assert!(
        table.starts_with("● web.service — 3 workers: 2 idle, 1 busy\n"),
        "{table}"
    );
    assert!(
        table.contains("  w0  busy   ") && table.contains("  no     busy GET /"),
        "{table}"
    );
    let list = String::from_utf8(setup.scoreboardctl(&["list"]).stdout).unwrap();
    assert_eq!(
        list,
        "UNIT         WORKERS  SUMMARY\nweb.service  3        3 workers: 2 idle, 1 busy\n"
    );
    let watch = String::from_utf8(
        setup
            .scoreboardctl(&["watch", "--count", "1", "--interval", "0"])
            .stdout,
    )
    .unwrap();
    assert!(
        watch.starts_with("scoreboard — 1 services, from the agent\n"),
        "{watch}"
    );

    // No agent: a clear message, and the directories read directly.
    setup.agent.take().unwrap().kill9();
    let out = setup.scoreboardctl(&["status", "web", "--json"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(
            "no agent answers on the session bus (nothing owns io.scoreboard.Agent1 there: \
             scoreboard-agent is not running); reading the scoreboard directories directly"
        ),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["source"], "directory");
    assert_eq!(json["services"][0]["summary"], "3 workers: 2 idle, 1 busy");
    assert_eq!(
        json["services"][0]["workers"][0]["stuck"],
        serde_json::Value::Null
    );

    // No agent, and a directory the caller may not read: it says the agent is not
    // answering before it says what the directory refused.
    if as_root_or_skip("the unprivileged fallback") {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: PathBuf, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        mode(setup.dir.root().to_owned(), 0o755);
        mode(setup.path("web"), 0o700);
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_scoreboardctl"))
            .args(["status", "web", "--config"])
            .arg(setup.path("agent.toml"))
            .env("DBUS_SESSION_BUS_ADDRESS", &setup.bus.address)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        let said = |text: &str| stderr.find(text);
        assert!(
            said("no agent answers on the session bus").is_some()
                && said("no agent answers") < said("Permission denied"),
            "{stderr}"
        );
        // Once each, and what to do about it.
        assert_eq!(stderr.matches("Permission denied").count(), 1, "{stderr}");
        assert!(
            stderr.contains("cannot read web.service's scoreboard directly: ")
                && stderr.contains("start the agent")
                && stderr.contains("or run scoreboardctl as root or as the service's user"),
            "{stderr}"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str, accept: Option<&str>) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

fn promtool_check(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian: prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_are_scraped_over_http_and_pass_promtool() {
    let port = free_port();
    let textfile = tempfile::tempdir().unwrap();
    let textfile_path = textfile.path().join("scoreboard.prom");
    let setup = Setup::new(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\ntextfile = \"{}\"\n",
        textfile_path.display()
    ));
    let mut holder = hold(&setup.path("web"), 4);
    setup.wait_for_total(4, Duration::from_secs(5));
    holder.kill9();
    setup.wait_for_total(0, Duration::from_secs(5));
    let _again = hold(&setup.path("web"), 2);
    setup.wait_for_total(2, Duration::from_secs(5));
    // The textfile is written from the registry every interval: once it shows the pool,
    // so does the registry.
    let latest = [
        "scoreboard_workers{unit=\"web.service\",state=\"idle\"} 1",
        "scoreboard_workers{unit=\"web.service\",state=\"busy\"} 1",
        "scoreboard_reaped_total{unit=\"web.service\"} 4",
    ];
    wait_until(Duration::from_secs(5), "the metrics of 2 workers", || {
        let file = std::fs::read_to_string(&textfile_path).unwrap_or_default();
        latest.iter().all(|line| file.contains(line))
    });

    // What Prometheus asks for: OpenMetrics.
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (head, body) = http_get(port, "/metrics", Some(accept));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    for line in [
        "scoreboard_workers{unit=\"web.service\",state=\"idle\"} 1",
        "scoreboard_workers{unit=\"web.service\",state=\"busy\"} 1",
        "scoreboard_stuck_workers{unit=\"web.service\"} 0",
        "# TYPE scoreboard_reaped counter",
        "scoreboard_reaped_total{unit=\"web.service\"} 4",
        "# TYPE scoreboard_sweep_duration_seconds histogram",
        "# UNIT scoreboard_sweep_duration_seconds seconds",
        "# EOF",
    ] {
        assert!(body.contains(line), "{line} missing from\n{body}");
    }

    // What curl and promtool get: the Prometheus text format, the same samples.
    let (head, text) = http_get(port, "/metrics", None);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(text.contains("# TYPE scoreboard_reaped_total counter\nscoreboard_reaped_total{unit=\"web.service\"} 4"), "{text}");
    promtool_check(&text);

    // The textfile for node_exporter, rewritten every interval.
    let file = std::fs::read_to_string(&textfile_path).unwrap();
    assert!(
        file.contains("scoreboard_workers{unit=\"web.service\",state=\"idle\"} 1"),
        "{file}"
    );
    promtool_check(&file);

    let (head, _) = http_get(port, "/other", None);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

/// The shipped policy, on a bus configured like Debian's system bus: root owns the
/// name; an unprivileged user reads summaries and lists services, gets per-worker details
/// only if it could read the scoreboard directory itself, and can neither own the name
/// nor set anything. (The policy's other owner, the packaged agent's user `scoreboard`,
/// exists only where the package made it: the end-to-end suite checks that one.)
#[test]
fn the_bus_policy_lets_anyone_read_and_only_root_own() {
    if !as_root_or_skip("the policy test (as root and as nobody)") {
        return;
    }
    let dir = AgentDir::new("bus = \"system\"\n");
    std::fs::set_permissions(
        dir.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let web = dir.path("web");
    dir.service("web", &web, "notify = \"none\"\n");
    let socket = dir.path("system_bus_socket");
    let policy =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/dbus/io.scoreboard.Agent1.conf");
    let config = dir.path("system.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
            socket = socket.display(),
            policy = policy.display()
        ),
    )
    .unwrap();
    let bus = Bus::with_config(&config);
    let agent = Agent::spawn(
        dir.agent_command(Path::new(AGENT))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address),
    );
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "busctl",
            ])
            .arg(format!("--address={}", bus.address))
            .args(args)
            .output()
            .unwrap()
    };
    wait_until(
        Duration::from_secs(10),
        "root to own the name under the policy",
        || as_nobody(&["status", NAME]).status.success(),
    );
    // A live worker in a directory of mode 0770, root's, group 1234.
    std::fs::create_dir(&web).unwrap();
    std::fs::set_permissions(&web, std::os::unix::fs::PermissionsExt::from_mode(0o770)).unwrap();
    std::os::unix::fs::chown(&web, Some(0), Some(1234)).unwrap();
    let _worker = live_worker(&web, b"w1", b"busy GET /?token=secret");
    wait_until(Duration::from_secs(5), "Total u 1, read by nobody", || {
        String::from_utf8_lossy(&as_nobody(&["get-property", NAME, WEB, SERVICE, "Total"]).stdout)
            .trim()
            == "u 1"
    });

    let list = as_nobody(&[
        "call",
        NAME,
        MANAGER_PATH,
        MANAGER_INTERFACE,
        "ListServices",
    ]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    for args in [
        &["get-property", NAME, WEB, SERVICE, "Summary"][..],
        &["introspect", NAME, WEB][..],
        &[
            "call",
            NAME,
            WEB,
            "org.freedesktop.DBus.Properties",
            "GetAll",
            "s",
            SERVICE,
        ][..],
    ] {
        let out = as_nobody(args);
        assert!(
            out.status.success(),
            "nobody: busctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Per-worker details: not for nobody, who could not read the directory. (dbus-send
    // prints the error's name and message; busctl only "Access denied".)
    for call in [
        vec!["io.scoreboard.Agent1.Service.ListWorkers"],
        vec!["io.scoreboard.Agent1.Service.GetWorker", "string:w1"],
        vec!["io.scoreboard.Agent1.Service.ListDeaths"],
    ] {
        let out = Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "dbus-send",
            ])
            .arg(format!("--bus={}", bus.address))
            .args(["--print-reply", &format!("--dest={NAME}"), WEB])
            .args(&call)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && stderr.contains("org.freedesktop.DBus.Error.AccessDenied")
                && stderr.contains("uid 65534 may not read per-worker details")
                && !String::from_utf8_lossy(&out.stdout).contains("secret"),
            "nobody: {call:?}: {stderr}"
        );
    }
    // scoreboardctl as nobody says so, and still shows the summary.
    let ctl = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_scoreboardctl"))
        .args(["status", "web", "--config"])
        .arg(dir.config())
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&ctl.stdout),
        String::from_utf8_lossy(&ctl.stderr),
    );
    assert!(ctl.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("● web.service — 1 workers: 1 busy"),
        "{stdout}"
    );
    assert!(!stdout.contains("secret"), "{stdout}");
    assert!(stderr.contains("per-worker details not shown"), "{stderr}");
    // A member of the directory's group (a supplementary group) may; so may root.
    let as_member = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--groups=1234",
            "busctl",
        ])
        .arg(format!("--address={}", bus.address))
        .args(["call", NAME, WEB, SERVICE, "ListWorkers"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&as_member.stdout).contains("token=secret"),
        "group member: {}",
        String::from_utf8_lossy(&as_member.stderr)
    );
    let as_root = Command::new("busctl")
        .arg(format!("--address={}", bus.address))
        .args(["call", NAME, WEB, SERVICE, "GetWorker", "s", "w1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&as_root.stdout).contains("token=secret"));
    let set = as_nobody(&[
        "call",
        NAME,
        WEB,
        "org.freedesktop.DBus.Properties",
        "Set",
        "ssv",
        SERVICE,
        "Summary",
        "s",
        "hacked",
    ]);
    assert!(!set.status.success());
    assert!(
        String::from_utf8_lossy(&set.stderr).contains("Access denied"),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let own = as_nobody(&[
        "call",
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "RequestName",
        "su",
        NAME,
        "0",
    ]);
    assert!(!own.status.success());
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("Access denied"),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    // Still root's.
    let status = as_nobody(&["status", NAME]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("PID={}", agent.pid())));
}

/// A live worker file in `dir` named `status_<name>` holding `status`; live while the
/// returned file (holding its lock) is.
fn live_worker(dir: &Path, name: &[u8], status: &[u8]) -> std::fs::File {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = vec![0; scoreboard::frame::frame_len(status.len())];
    scoreboard::frame::encode_into(&mut bytes, status);
    let mut file_name = b"status_".to_vec();
    file_name.extend_from_slice(name);
    let path = dir.join(std::ffi::OsStr::from_bytes(&file_name));
    // Locked before it takes its name, as writers do: the agent reaps unlocked files.
    let staged = dir.join("staged.tmp");
    std::fs::write(&staged, bytes).unwrap();
    let file = std::fs::File::open(&staged).unwrap();
    file.lock().unwrap();
    std::fs::rename(&staged, &path).unwrap();
    file
}

/// web's `PropertiesChanged` D-Bus signals from now on.
async fn property_changes(connection: &zbus::Connection) -> zbus::MessageStream {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path(WEB)
        .member("PropertiesChanged")
        .build()
        .unwrap();
    zbus::MessageStream::for_match_rule(rule, connection, None)
        .await
        .unwrap()
}

/// Waits for a `PropertiesChanged` whose `Counts` pass `check`.
async fn wait_for_counts(
    changes: &mut zbus::MessageStream,
    what: &str,
    check: impl Fn(&BTreeMap<String, u32>) -> bool,
) {
    let within = Duration::from_secs(5);
    let seen = async {
        while let Some(message) = changes.next().await {
            let (_, changed, _): (String, BTreeMap<String, zbus::OwnedVariant>, Vec<String>) =
                message.unwrap().body().deserialize().unwrap();
            if let Some(counts) = changed.get("Counts") {
                let counts = BTreeMap::<String, u32>::try_from(counts.clone()).unwrap();
                if check(&counts) {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(within, seen)
        .await
        .unwrap_or_else(|_| panic!("no PropertiesChanged with Counts {what} within {within:?}"));
}

/// NUL bytes and names that are not UTF-8: dbus-daemon drops a peer that sends such a
/// string, so they must never reach the bus as they are — and such a worker is still
/// counted, listed and found by the id ListWorkers shows.
#[tokio::test(flavor = "current_thread")]
async fn a_workers_bytes_cannot_take_the_agent_off_the_bus() {
    let setup = Setup::new("");
    let connection = setup.connection().await;
    let mut changes = property_changes(&connection).await;
    let dir = setup.path("web");
    let _nul = live_worker(&dir, b"w1", b"busy\0x GET /\0");
    let _odd = live_worker(&dir, b"\xff\n", b"idle\0");
    setup.wait_for_total(2, Duration::from_secs(5));
    // The agent has sent PropertiesChanged with those states, and the bus passed it on.
    wait_for_counts(&mut changes, "holding the NUL state", |counts| {
        counts.contains_key("busy\\x00x")
    })
    .await;
    let service = scoreboard_agent::bus::ServiceProxy::builder(&connection)
        .path(WEB)
        .build()
        .await
        .unwrap();
    let mut workers = service.list_workers().await.unwrap();
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = workers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["\\\\xff\\n", "w1"]);
    assert_eq!(workers[1].state, "busy\\x00x");
    assert_eq!(workers[1].status, "busy\\x00x GET /\\x00");
    let odd = service.get_worker(&workers[0].id).await.unwrap();
    assert_eq!(odd.status, "idle\\x00");
    assert_eq!(
        service.summary().await.unwrap(),
        "2 workers: 1 busy x, 1 idle"
    );
    // Still on the bus, name and all.
    assert!(setup.busctl(&["status", NAME]).status.success());
    assert_eq!(setup.property("Total"), "u 2");
}

/// Four clients of uid 65534 keeping 120 ListWorkers calls each in flight against 3,000
/// workers: the agent's loop keeps pinging its watchdog, its memory stays bounded, the
/// flood is told LimitsExceeded past its budget, and others are answered normally.
#[test]
fn a_flood_of_calls_neither_starves_nor_bloats_the_agent() {
    if !as_root_or_skip("the flood test (it floods as another user)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(&tmp.path().join("notify"));
    // Read from the start: an agent whose datagrams nobody reads would block sending.
    let recorder = notify.record();
    let notify_path = notify.path().display().to_string();
    let setup = Setup::with_env(
        "",
        &[
            ("NOTIFY_SOCKET", &notify_path),
            ("WATCHDOG_USEC", "2000000"),
        ],
        Bus::open_to_all(),
    );
    // uid 65534 may read this scoreboard: the flood gets real answers, then refusals.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(setup.dir.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pid = setup.agent.as_ref().unwrap().pid();
    let _holder = hold(&setup.path("web"), 3000);
    setup.wait_for_total(3000, Duration::from_secs(10));
    let started = Instant::now();
    let flood = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(testkit_binary())
        .args(["test-flood", "--session", "--path", WEB, "--seconds", "5"])
        .env("DBUS_SESSION_BUS_ADDRESS", &setup.bus.address)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Another (non-root) user meanwhile: its own budget, answered despite the flood.
    std::thread::sleep(Duration::from_secs(2));
    let other = Command::new("setpriv")
        .args(["--reuid=1", "--regid=1", "--clear-groups", "dbus-send"])
        .arg(format!("--bus={}", setup.bus.address))
        .args(["--print-reply", &format!("--dest={NAME}"), WEB])
        .arg(format!("{SERVICE}.GetWorker"))
        .arg("string:w7")
        .output()
        .unwrap();
    assert!(
        other.status.success() && String::from_utf8_lossy(&other.stdout).contains("\"w7\""),
        "uid 1 during the flood: {}",
        String::from_utf8_lossy(&other.stderr)
    );
    let mut peak_rss_kib = 0u64;
    while started.elapsed() < Duration::from_secs(5) {
        let (rss, _) = memory_kib(pid);
        assert!(rss > 0, "the agent is gone");
        peak_rss_kib = peak_rss_kib.max(rss);
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = flood.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (worst, _) = recorder.watchdog_gaps(started);
    eprintln!("flood: {report}; agent peak RSS {peak_rss_kib} KiB; worst watchdog gap {worst:?}");
    assert!(
        worst < Duration::from_secs(2),
        "the watchdog (2 s) would have fired: {worst:?}"
    );
    assert!(peak_rss_kib < 64 * 1024, "{peak_rss_kib} KiB");
    assert!(report["replies"].as_u64().unwrap() > 0, "{report}");
    // One user, however many connections: at most 50,000 records (16 answers of 3,000)
    // in each one-second window the flood touched.
    let windows = report["seconds"].as_f64().unwrap().ceil() as u64 + 1;
    assert!(
        report["replies"].as_u64().unwrap() <= 16 * windows,
        "{report}"
    );
    assert!(
        report["limited"].as_u64().unwrap() > 0,
        "no budget was enforced: {report}"
    );
    // And afterwards, a normal caller is answered.
    let list = setup.busctl_ok(&["call", NAME, WEB, SERVICE, "ListWorkers"]);
    assert!(
        list.starts_with("a(sssdb) 3000 "),
        "{}",
        &list[..list.len().min(80)]
    );
}

/// The bus daemon goes away and comes back at the same address (`systemctl restart
/// dbus`): the agent says so once, reconnects, takes its name again and serves its
/// objects as before; meanwhile its loop goes on.
#[test]
fn the_agent_comes_back_to_a_restarted_bus() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("bus");
    let config = tmp.path().join("bus.conf");
    std::fs::write(
        &config,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><include>/usr/share/dbus-1/session.conf</include>\
             <listen>unix:path={}</listen></busconfig>\n",
            socket.display()
        ),
    )
    .unwrap();
    let bus = Bus::with_config(&config);
    // Without the daemon's guid, which a new daemon at the same address changes.
    let address = format!("unix:path={}", socket.display());
    let mut setup = Setup::with_env(
        "",
        &[("RUST_LOG", "info"), ("DBUS_SESSION_BUS_ADDRESS", &address)],
        bus,
    );
    let _holder = hold(&setup.path("web"), 5);
    let total = || {
        let out = Command::new("busctl")
            .arg(format!("--address={address}"))
            .args(["get-property", NAME, WEB, SERVICE, "Total"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    wait_until(Duration::from_secs(10), "Total u 5", || total() == "u 5");

    // The daemon dies; once the agent has noticed, a new one listens at the same address.
    let log = setup.path("agent.log");
    let log = || std::fs::read_to_string(&log).unwrap();
    drop(std::mem::replace(&mut setup.bus, Bus::session()));
    let _ = std::fs::remove_file(&socket);
    wait_until(Duration::from_secs(5), "the agent to lose the bus", || {
        log().contains("lost the session bus connection")
    });
    let restarted = Instant::now();
    setup.bus = Bus::with_config(&config);
    wait_until(
        Duration::from_secs(10),
        "the agent back on the new bus",
        || total() == "u 5",
    );
    let took = restarted.elapsed();
    eprintln!("the bus restarted: the agent's objects were back in {took:?}");
    let text = log();
    assert_eq!(
        text.matches("lost the session bus connection").count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("reconnected to the session bus").count(),
        1,
        "{text}"
    );
}

/// Twelve workers whose status is 1 MiB of a control byte, escaped four times longer:
/// uncut, `Counts` alone would pass the bus daemon's 32 MiB message limit and it would
/// drop the agent. States are cut to a word, statuses on the bus to 4 KiB.
#[tokio::test(flavor = "current_thread")]
async fn huge_statuses_and_states_stay_within_the_bus_limits() {
    let setup = Setup::new("");
    let connection = setup.connection().await;
    let mut changes = property_changes(&connection).await;
    let dir = setup.path("web");
    let _held: Vec<std::fs::File> = (0..12)
        .map(|n| {
            let mut status = vec![1u8; 1 << 20];
            status[0] = b'a' + n as u8; // distinct states
            live_worker(&dir, format!("w{n}").as_bytes(), &status)
        })
        .collect();
    setup.wait_for_total(12, Duration::from_secs(5));
    wait_for_counts(&mut changes, "of 12 workers", |counts| {
        counts.values().sum::<u32>() == 12
    })
    .await;
    let service = scoreboard_agent::bus::ServiceProxy::builder(&connection)
        .path(WEB)
        .build()
        .await
        .unwrap();
    let workers = service.list_workers().await.unwrap();
    assert_eq!(workers.len(), 12);
    for worker in &workers {
        assert!(worker.state.len() <= 4 * 64, "{}", worker.state.len());
        assert!(worker.status.len() <= 4096 + 3, "{}", worker.status.len());
    }
    // Read ones (within the 4 MiB byte budget) are cut; the rest are alive, unread.
    let read = workers.iter().find(|w| !w.status.is_empty()).unwrap();
    let one = service.get_worker(&read.id).await.unwrap();
    assert!(one.status.ends_with('…'));
    // Still on the bus, name and all, after PropertiesChanged with those states.
    assert!(setup.busctl(&["status", NAME]).status.success());
    assert_eq!(setup.property("Total"), "u 12");
}

/// A caller's 30 MiB argument costs the agent no 30 MiB: the message is read off the
/// socket through a fixed buffer and dropped before anything is allocated for it, said
/// once in the log; the agent answers the next call as before.
#[tokio::test(flavor = "current_thread")]
async fn a_huge_call_is_refused_before_it_costs_memory() {
    let setup = Setup::new("");
    let _holder = hold(&setup.path("web"), 10);
    setup.wait_for_total(10, Duration::from_secs(10));
    let pid = setup.agent.as_ref().unwrap().pid();
    let connection = setup.connection().await;
    let huge = "x".repeat(30 << 20);
    let body = (huge.as_str(),);
    for _ in 0..3 {
        let call = connection.call_method(Some(NAME), WEB, Some(SERVICE), "GetWorker", &body);
        // Unanswered: the caller's own timeout ends it.
        assert!(
            tokio::time::timeout(Duration::from_secs(2), call)
                .await
                .is_err(),
            "a 30 MiB call was answered"
        );
    }
    let (rss, peak) = memory_kib(pid);
    assert!(
        peak < 24 * 1024,
        "VmHWM {peak} KiB after three 30 MiB calls (VmRSS {rss} KiB)"
    );
    let log = std::fs::read_to_string(setup.path("agent.log")).unwrap();
    assert_eq!(
        log.matches("refused a D-Bus message of").count(),
        1,
        "{log}"
    );
    // The next, ordinary call is answered.
    let reply = connection
        .call_method(Some(NAME), WEB, Some(SERVICE), "GetWorker", &("w3",))
        .await
        .unwrap();
    let (id, ..): (String, String, String, f64, bool) = reply.body().deserialize().unwrap();
    assert_eq!(id, "w3");
    eprintln!("three 30 MiB GetWorker calls: refused unanswered, VmHWM {peak} KiB");
}
