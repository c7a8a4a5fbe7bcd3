//! `scoreboardctl enable UNIT` and `disable UNIT`: everything a service needs to be
//! watched, in files the administrator can read, and undone exactly.
//!
//! `enable` writes three files and applies them:
//! * `/etc/tmpfiles.d/scoreboard-<name>.conf` — `d /run/<name>/scoreboard 0770 U G -`,
//!   applied at once with `systemd-tmpfiles --create`;
//! * `/etc/systemd/system/<unit>.d/50-scoreboard.conf` — `NotifyAccess=main`, only when
//!   the unit has no `NotifyAccess=` of its own (systemd ignores STATUS= from the agent
//!   on the main process's behalf otherwise);
//! * `/etc/scoreboard/services.d/<name>.toml` — the agent's configuration;
//!
//! then `systemctl daemon-reload` and a reload of the agent. Running it again changes
//! nothing; `disable` removes exactly those files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::config::normalize_unit;

/// Marks the files `enable` writes, so `disable` removes only its own.
const MARK: &str = "# Written by `scoreboardctl enable`; `scoreboardctl disable` removes it.";

/// Where the files go: `/` in real use; a temporary root in tests, where no command runs.
#[derive(Debug, Clone)]
pub struct Target {
    /// The filesystem root the `/etc` paths are under.
    pub root: PathBuf,
    /// Whether to run systemctl and systemd-tmpfiles.
    pub apply: bool,
}

/// What the unit says about itself, from `systemctl show`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFacts {
    /// `User=`, empty for root.
    pub user: String,
    /// `Group=`, empty for the user's group.
    pub group: String,
    /// `NotifyAccess=`.
    pub notify_access: String,
}

/// The files for `unit`, under `root`.
struct Files {
    name: String,
    tmpfiles: PathBuf,
    dropin_dir: PathBuf,
    dropin: PathBuf,
    service: PathBuf,
}

impl Files {
    fn new(root: &Path, unit: &str) -> Files {
        let name = unit.strip_suffix(".service").unwrap_or(unit).to_owned();
        let etc = root.join("etc");
        let dropin_dir = etc.join("systemd/system").join(format!("{unit}.d"));
        Files {
            tmpfiles: etc
                .join("tmpfiles.d")
                .join(format!("scoreboard-{name}.conf")),
            dropin: dropin_dir.join("50-scoreboard.conf"),
            dropin_dir,
            service: etc
                .join("scoreboard/services.d")
                .join(format!("{name}.toml")),
            name,
        }
    }
}

/// The tmpfiles.d line creating the scoreboard directory.
pub fn tmpfiles_line(name: &str, user: &str, group: &str) -> String {
    format!("{MARK}\nd /run/{name}/scoreboard 0770 {user} {group} -\n")
}

/// The drop-in granting the agent's notifications a hearing.
pub fn dropin_text() -> String {
    format!("{MARK}\n[Service]\nNotifyAccess=main\n")
}

/// The agent's configuration for the unit (every other setting at its default).
pub fn service_text(unit: &str) -> String {
    format!("{MARK}\nunit = \"{unit}\"\n")
}

/// `scoreboardctl enable`. Returns the report to print.
pub fn enable(
    target: &Target,
    unit: &str,
    user: Option<&str>,
    group: Option<&str>,
) -> anyhow::Result<String> {
    let unit = normalize_unit(unit).map_err(anyhow::Error::msg)?;
    require_root(target, "enable")?;
    let facts = if target.apply {
        unit_facts(&unit)?
    } else {
        UnitFacts::default()
    };
    let files = Files::new(&target.root, &unit);
    let user = user
        .map(str::to_owned)
        .unwrap_or_else(|| non_empty(&facts.user, "root"));
    let group = group
        .map(str::to_owned)
        .unwrap_or_else(|| non_empty(&facts.group, &user));
    let mut report = String::new();

    let mut writes = vec![(&files.tmpfiles, tmpfiles_line(&files.name, &user, &group))];
    // Our own drop-in counts as "no NotifyAccess= of its own": it is what set "main".
    if is_ours(&files.dropin) || facts.notify_access.is_empty() || facts.notify_access == "none" {
        writes.push((&files.dropin, dropin_text()));
    } else {
        let _ = writeln!(
            report,
            "kept {unit}'s own NotifyAccess={}",
            facts.notify_access
        );
    }
    writes.push((&files.service, service_text(&unit)));
    // All or nothing: refuse before writing anything.
    for (path, _) in &writes {
        if path.exists() && !is_ours(path) {
            bail!(
                "{} exists and was not written by scoreboardctl enable; not overwriting it",
                path.display()
            );
        }
    }
    for (path, text) in &writes {
        write_file(path, text, &mut report)?;
    }

    let tmpfiles = files.tmpfiles.display().to_string();
    run(
        target,
        "systemd-tmpfiles",
        &["--create", &tmpfiles],
        &mut report,
    )?;
    reload(target, &mut report)?;
    let _ = writeln!(
        report,
        "{unit} is watched: its workers write into /run/{}/scoreboard. Restart it for the \
         change to reach running workers and its notify settings: systemctl restart {unit}",
        files.name
    );
    Ok(report)
}

/// `scoreboardctl disable`: removes what `enable` wrote. Returns the report to print.
pub fn disable(target: &Target, unit: &str) -> anyhow::Result<String> {
    let unit = normalize_unit(unit).map_err(anyhow::Error::msg)?;
    require_root(target, "disable")?;
    let files = Files::new(&target.root, &unit);
    let mut report = String::new();
    for path in [&files.tmpfiles, &files.dropin, &files.service] {
        if !path.exists() {
            continue;
        }
        if !is_ours(path) {
            let _ = writeln!(
                report,
                "left {} alone: not written by scoreboardctl enable",
                path.display()
            );
            continue;
        }
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        let _ = writeln!(report, "removed {}", path.display());
    }
    // The drop-in directory goes too when we emptied it.
    let _ = std::fs::remove_dir(&files.dropin_dir);
    reload(target, &mut report)?;
    let _ = writeln!(report, "{unit} is no longer watched");
    Ok(report)
}

fn require_root(target: &Target, verb: &str) -> anyhow::Result<()> {
    if target.apply && !rustix::process::geteuid().is_root() {
        bail!(
            "{verb} must run as root: it writes /etc/tmpfiles.d, /etc/systemd/system and \
             /etc/scoreboard and reloads systemd"
        );
    }
    Ok(())
}

fn non_empty(value: &str, default: &str) -> String {
    if value.is_empty() {
        default.to_owned()
    } else {
        value.to_owned()
    }
}

fn is_ours(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.starts_with(MARK))
}

/// Writes `text` to `path` unless it already holds exactly that.
fn write_file(path: &Path, text: &str, report: &mut String) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        let _ = writeln!(report, "unchanged {}", path.display());
        return Ok(());
    }
    let dir = path.parent().expect("absolute paths");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Atomically: a reader (systemd, the agent) never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    let _ = writeln!(report, "wrote {}", path.display());
    Ok(())
}

/// systemd re-reads units and drop-ins; the agent, if running, re-reads services.d.
fn reload(target: &Target, report: &mut String) -> anyhow::Result<()> {
    run(target, "systemctl", &["daemon-reload"], report)?;
    run(
        target,
        "systemctl",
        &["try-reload-or-restart", "scoreboard-agent.service"],
        report,
    )
}

fn run(target: &Target, program: &str, args: &[&str], report: &mut String) -> anyhow::Result<()> {
    let shown = format!("{program} {}", args.join(" "));
    if !target.apply {
        let _ = writeln!(report, "would run {shown}");
        return Ok(());
    }
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    let _ = writeln!(report, "ran {shown}");
    Ok(())
}

/// `User=`, `Group=` and `NotifyAccess=` of a loaded unit.
fn unit_facts(unit: &str) -> anyhow::Result<UnitFacts> {
    let output = Command::new("systemctl")
        .args(["show", unit, "--property=LoadState,User,Group,NotifyAccess"])
        .output()
        .context("running systemctl show")?;
    if !output.status.success() {
        bail!(
            "systemctl show {unit} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .to_owned()
    };
    if value("LoadState") != "loaded" {
        bail!(
            "{unit} is not a loaded unit (LoadState={}); install it first",
            value("LoadState")
        );
    }
    Ok(UnitFacts {
        user: value("User"),
        group: value("Group"),
        notify_access: value("NotifyAccess"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> (tempfile::TempDir, Target) {
        let tmp = tempfile::tempdir().unwrap();
        let target = Target {
            root: tmp.path().to_owned(),
            apply: false,
        };
        (tmp, target)
    }

    #[test]
    fn enable_writes_three_files_and_is_idempotent() {
        let (tmp, target) = target();
        let report = enable(&target, "demo", Some("www-data"), None).unwrap();
        let etc = tmp.path().join("etc");
        assert_eq!(
            std::fs::read_to_string(etc.join("tmpfiles.d/scoreboard-demo.conf")).unwrap(),
            format!("{MARK}\nd /run/demo/scoreboard 0770 www-data www-data -\n")
        );
        assert!(
            std::fs::read_to_string(etc.join("systemd/system/demo.service.d/50-scoreboard.conf"))
                .unwrap()
                .ends_with("[Service]\nNotifyAccess=main\n")
        );
        let service = etc.join("scoreboard/services.d/demo.toml");
        assert!(
            std::fs::read_to_string(&service)
                .unwrap()
                .ends_with("unit = \"demo.service\"\n")
        );
        assert!(
            report.contains("would run systemctl daemon-reload"),
            "{report}"
        );

        let again = enable(&target, "demo.service", Some("www-data"), None).unwrap();
        assert_eq!(again.matches("unchanged ").count(), 3, "{again}");

        // The agent's configuration it wrote is one the agent accepts.
        std::fs::write(etc.join("scoreboard/agent.toml"), "").unwrap();
        let config = crate::config::Config::load(&etc.join("scoreboard/agent.toml")).unwrap();
        assert_eq!(
            config.services[0].directory,
            Path::new("/run/demo/scoreboard")
        );
    }

    #[test]
    fn disable_removes_exactly_what_enable_wrote() {
        let (tmp, target) = target();
        let etc = tmp.path().join("etc");
        let neighbour = etc.join("systemd/system/demo.service.d/10-admin.conf");
        std::fs::create_dir_all(neighbour.parent().unwrap()).unwrap();
        std::fs::write(&neighbour, "[Service]\nNice=5\n").unwrap();
        enable(&target, "demo", None, None).unwrap();
        let report = disable(&target, "demo").unwrap();
        assert_eq!(report.matches("removed ").count(), 3, "{report}");
        assert!(neighbour.exists());
        assert!(!etc.join("tmpfiles.d/scoreboard-demo.conf").exists());
        assert!(!etc.join("scoreboard/services.d/demo.toml").exists());
        // Nothing left to remove the second time.
        assert_eq!(
            disable(&target, "demo")
                .unwrap()
                .matches("removed ")
                .count(),
            0
        );
    }

    #[test]
    fn files_written_by_someone_else_are_never_overwritten_or_removed() {
        let (tmp, target) = target();
        let mine = tmp.path().join("etc/scoreboard/services.d/demo.toml");
        std::fs::create_dir_all(mine.parent().unwrap()).unwrap();
        std::fs::write(&mine, "unit = \"demo\"\nstuck_after = \"1m\"\n").unwrap();
        let error = enable(&target, "demo", None, None).unwrap_err().to_string();
        assert!(
            error.contains("not written by scoreboardctl enable"),
            "{error}"
        );
        assert!(
            !tmp.path()
                .join("etc/tmpfiles.d/scoreboard-demo.conf")
                .exists(),
            "all or nothing"
        );
        disable(&target, "demo").unwrap();
        assert!(mine.exists());
    }

    #[test]
    fn units_that_are_not_services_are_refused() {
        let (_tmp, target) = target();
        assert!(
            enable(&target, "demo.socket", None, None)
                .unwrap_err()
                .to_string()
                .contains("not a service")
        );
    }
}
