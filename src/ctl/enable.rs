//! `scoreboardctl enable UNIT` and `disable UNIT`: everything a service needs to be
//! watched, in files the administrator can read, and undone exactly.
//!
//! `enable` writes three files and applies them:
//! * `/etc/tmpfiles.d/scoreboard-<name>.conf` — the scoreboard directory, owned by the
//!   service's user, and an ACL letting the agent's user ([`AGENT_USER`]) reap in it and
//!   read every worker's file, whatever the workers' umask:
//!   ```text
//!   d /run/<name>/scoreboard 0770 USER GROUP -
//!   a+ /run/<name>/scoreboard - - - - user:scoreboard:rwx,default:user:scoreboard:r
//!   ```
//!   applied at once with `systemd-tmpfiles --create`;
//! * `/etc/systemd/system/<unit>.d/50-scoreboard.conf` — `ExecStartPre=` applying that
//!   file again right before each start (a service's `RuntimeDirectory=` is wiped and
//!   made anew then, scoreboard and ACL with it), and `NotifyAccess=main`, only when the
//!   unit has no `NotifyAccess=` of its own (systemd ignores STATUS= from the agent on
//!   the main process's behalf otherwise);
//! * `/etc/scoreboard/services.d/<name>.toml` — the agent's configuration;
//!
//! then `systemctl daemon-reload` and a reload of the agent. Running it again changes
//! nothing; `disable` removes exactly those files, and neither touches a file it did
//! not write.
//!
//! Nothing is interpolated raw: users and groups must be names or ids ([`check_account`]),
//! paths go through [`quote_path`] (and [`quote_glob`] where tmpfiles.d takes a glob),
//! the TOML through its serializer. What cannot be written safely is refused before
//! anything is written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::config::{check_directory, normalize_unit};
use crate::io::systemd::{NotifyAccess, Systemd, UnitSettings};

/// Marks the files `enable` writes, so `disable` removes only its own.
const MARK: &str = "# Written by `scoreboardctl enable`; `scoreboardctl disable` removes it.";

/// The system user the agent runs as (created by the package's sysusers.d snippet); the
/// ACL `enable` writes names it.
pub const AGENT_USER: &str = "scoreboard";

/// The mode of every file `enable` writes.
const FILE_MODE: u32 = 0o644;

/// The `NotifyAccess=` our drop-in sets when the unit has none of its own: the agent
/// speaks for the main process.
const OUR_NOTIFY_ACCESS: NotifyAccess = NotifyAccess::Main;

/// Where the files go: `/` in real use; a temporary root in tests, where no command runs.
#[derive(Debug, Clone)]
pub struct EnableTarget {
    /// The filesystem root the `/etc` paths are under.
    pub root: PathBuf,
    /// Whether to run systemctl and systemd-tmpfiles.
    pub apply: bool,
}

impl EnableTarget {
    /// The real root, or (`--root`, hidden) a test's, where nothing is run.
    pub fn at(root: Option<PathBuf>) -> EnableTarget {
        match root {
            Some(root) => EnableTarget { root, apply: false },
            None => EnableTarget {
                root: PathBuf::from("/"),
                apply: true,
            },
        }
    }
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
            tmpfiles: etc.join(tmpfiles_relative(&name)),
            dropin: dropin_dir.join("50-scoreboard.conf"),
            dropin_dir,
            service: etc
                .join("scoreboard/services.d")
                .join(format!("{name}.toml")),
            name,
        }
    }
}

/// `tmpfiles.d/scoreboard-<name>.conf`, under `/etc`.
fn tmpfiles_relative(name: &str) -> String {
    format!("tmpfiles.d/scoreboard-{name}.conf")
}

/// Bytes written as they are in a systemd path. None is special to tmpfiles.d, to unit
/// files' command lines or to glob(3).
fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"/_.:@-".contains(&byte)
}

/// `path` as a field of a tmpfiles.d line (a path that is not a glob) or a word of a
/// unit file's command line; an error for a path holding anything else than
/// `[A-Za-z0-9/_.:@-]`, `\` and `%`, which is all a unit name may hold.
///
/// A backslash is written `\\` and not `\x5c`: systemd 252 (Debian 12) reads the
/// tmpfiles.d path field with shell-like unquoting only, where `\x5c` is `x5c`; newer
/// versions and unit files read C escapes. `\\` is one backslash in all of them. `%` is
/// written `%%`: both expand specifiers after unescaping, so an escape would still start
/// one. Whitespace, quotes, control characters (a newline would start a line of its own)
/// and the rest have no spelling every version reads the same way, so they are refused.
pub fn quote_path(path: &str) -> Result<String, String> {
    let mut quoted = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '%' => quoted.push_str("%%"),
            c if c.is_ascii() && plain(c as u8) => quoted.push(c),
            c => {
                return Err(format!(
                    "{path:?} holds {c:?}, which enable does not write into systemd's files \
                     (a path may hold [A-Za-z0-9/_.:@-], \\ and %)"
                ));
            }
        }
    }
    Ok(quoted)
}

/// `path` as the path field of a tmpfiles.d line that takes a glob (`a+`): the path is
/// matched by glob(3), for which a backslash escapes the next character, so it is
/// doubled for glob before being quoted for tmpfiles.d (`\\\\` in the file). The
/// other glob characters (`*?[]{}`) are refused by [`quote_path`].
pub fn quote_glob(path: &str) -> Result<String, String> {
    quote_path(&path.replace('\\', "\\\\"))
}

/// Refuses a user or group (`what`, e.g. "--user") that is neither a name nor an id.
///
/// A name follows shadow-utils' rule, `[a-z_][a-z0-9_-]*[$]?` of at most 32 bytes,
/// relaxed as systemd relaxes it for `User=` (upper case, and dots as in directory
/// services' "first.last"): a unit's `User=WebApp` is one systemd runs, so refusing it
/// would refuse reasonable units. No character allowed is special in a tmpfiles.d field,
/// and a name cannot be `-` (tmpfiles.d's "the default") nor start with a digit. An id
/// is decimal without a sign, below 4294967295 and not 65535 (both mean "no user" to
/// the kernel and to systemd).
pub fn check_account(what: &str, value: &str) -> Result<(), String> {
    const RULE: &str = "a name is a letter or _, then letters, digits, _ . -, optionally \
                        ending in $, at most 32 bytes; an id is a decimal number below \
                        4294967295, not 65535";
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.parse::<u32>() {
            Ok(id) if id != u32::MAX && id != 65535 => Ok(()),
            _ => Err(format!("{what} {value:?} is not a valid id: {RULE}")),
        };
    }
    let name = value.strip_suffix('$').unwrap_or(value);
    let mut bytes = name.bytes();
    let valid = value.len() <= 32
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !valid {
        return Err(format!(
            "{what} {value:?} is not a user or group name: {RULE}"
        ));
    }
    Ok(())
}

/// The tmpfiles.d file: the scoreboard directory for `name` (the unit without
/// `.service`), owned by `user` and `group`, and the agent's ACL on it.
///
/// The default ACL makes every file a worker creates there readable by the agent
/// whatever the worker's umask: with a default ACL the kernel does not apply the umask,
/// only the mode the file is created with (0666 for workers, here and in Perl).
pub fn tmpfiles_text(name: &str, user: &str, group: &str) -> Result<String, String> {
    check_account("user", user)?;
    check_account("group", group)?;
    let directory = format!("/run/{name}/scoreboard");
    // What the agent would refuse to watch (`systemd` → /run/systemd/scoreboard) is not
    // made either.
    check_directory(&directory)?;
    let path = quote_path(&directory)?;
    let glob = quote_glob(&directory)?;
    Ok(format!(
        "{MARK}\nd {path} 0770 {user} {group} -\n\
         a+ {glob} - - - - user:{AGENT_USER}:rwx,default:user:{AGENT_USER}:r\n"
    ))
}

/// The drop-in: the tmpfiles.d file for `name` applied again right before each start,
/// and `notify_access` when the unit needs ours.
///
/// `+`: systemd-tmpfiles runs as root, whatever the unit's `User=` and sandboxing. `-`:
/// a failure (an ACL the filesystem refuses, the agent's user missing) is logged in the
/// journal and the service still starts, without the agent's access, rather than a
/// monitoring add-on keeping the service down.
pub fn dropin_text(name: &str, notify_access: Option<NotifyAccess>) -> Result<String, String> {
    let tmpfiles = quote_path(&format!("/etc/{}", tmpfiles_relative(name)))?;
    let mut text = format!(
        "{MARK}\n[Service]\n\
         # RuntimeDirectory= is made anew at each start: give the scoreboard back its ACL.\n\
         ExecStartPre=-+/usr/bin/systemd-tmpfiles --create {tmpfiles}\n"
    );
    if let Some(notify_access) = notify_access {
        let _ = writeln!(text, "NotifyAccess={notify_access}");
    }
    Ok(text)
}

/// services.d/<name>.toml, written by the toml crate so that any unit name it holds is
/// read back as the same unit.
#[derive(Serialize)]
struct ServiceFile<'a> {
    unit: &'a str,
    #[serde(flatten)]
    health: &'a HealthOptions,
}

/// `enable`'s health-action options, written as the service file's keys of the same
/// names (see README "Health actions"); all off unless given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HealthOptions {
    /// `stuck_after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck_after: Option<String>,
    /// `wedged_after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wedged_after: Option<String>,
    /// `kill_stuck_after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_stuck_after: Option<String>,
    /// `kill_signal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_signal: Option<String>,
    /// `kill_grace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_grace: Option<String>,
    /// `actions` ("act" or "report").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<String>,
}

/// The agent's configuration for the unit (every setting not given at its default),
/// checked as the agent will read it.
pub fn service_text(unit: &str, health: &HealthOptions) -> anyhow::Result<String> {
    let body = toml::to_string(&ServiceFile { unit, health })
        .with_context(|| format!("writing the configuration of {unit}"))?;
    let text = format!("{MARK}\n{body}");
    crate::config::parse_service(&text, Path::new("the options given"))?;
    Ok(text)
}

/// `scoreboardctl enable`. Returns the report to print.
pub fn enable(
    target: &EnableTarget,
    unit: &str,
    user: Option<&str>,
    group: Option<&str>,
    health: &HealthOptions,
    grant_kill: bool,
) -> anyhow::Result<String> {
    let unit = normalize_unit(unit).map_err(anyhow::Error::msg)?;
    // Refused before asking for root or systemd: a typo is said as such.
    service_text(&unit, health)?;
    if let Some(user) = user {
        check_account("--user", user).map_err(anyhow::Error::msg)?;
    }
    if let Some(group) = group {
        check_account("--group", group).map_err(anyhow::Error::msg)?;
    }
    require_root(target, "enable")?;
    let facts = if target.apply {
        // The agent runs as its own user, not root: what is written here (and the
        // directories made for it) must be readable by it whatever root's umask, 077
        // on hardened systems included. Nothing written is secret.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        unit_settings(&unit)?
    } else {
        UnitSettings::default()
    };
    let mut report = enable_with(target, &unit, user, group, &facts, health)?;
    kill_privileges(target, health, grant_kill, &mut report)?;
    Ok(report)
}

/// The primary group (its gid, which tmpfiles.d takes as it takes a name) of `user`, a
/// name or uid, from `/etc/passwd` under `root`.
fn primary_group(root: &std::path::Path, user: &str) -> Option<String> {
    use std::io::Read as _;
    let mut passwd = String::new();
    std::fs::File::open(root.join("etc/passwd"))
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut passwd)
        .ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let (name, uid, gid) = (fields.first()?, fields.get(2)?, fields.get(3)?);
        let matches = *name == user || *uid == user;
        (matches && gid.bytes().all(|b| b.is_ascii_digit()) && !gid.is_empty())
            .then(|| (*gid).to_owned())
    })
}

/// `enable` of a normalized `unit` whose settings systemd said are `facts`.
fn enable_with(
    target: &EnableTarget,
    unit: &str,
    user: Option<&str>,
    group: Option<&str>,
    facts: &UnitSettings,
    health: &HealthOptions,
) -> anyhow::Result<String> {
    let files = Files::new(&target.root, unit);
    let user = match user {
        Some(user) => user.to_owned(),
        None if facts.user.is_empty() => "root".to_owned(),
        None => {
            check_account(&format!("User= of {unit}"), &facts.user)
                .map_err(|e| anyhow::anyhow!("{e}; pass --user"))?;
            facts.user.clone()
        }
    };
    let group = match group {
        Some(group) => group.to_owned(),
        // As systemd does without Group=: the user's primary group (Debian's nobody is
        // in nogroup, not in a group named nobody).
        None if facts.group.is_empty() => {
            primary_group(&target.root, &user).unwrap_or_else(|| user.clone())
        }
        None => {
            check_account(&format!("Group= of {unit}"), &facts.group)
                .map_err(|e| anyhow::anyhow!("{e}; pass --group"))?;
            facts.group.clone()
        }
    };
    let mut report = String::new();

    // Our own NotifyAccess= counts as "no NotifyAccess= of its own": it is what systemd
    // reports while our drop-in is there.
    let ours = format!("NotifyAccess={OUR_NOTIFY_ACCESS}");
    let ours_sets_it =
        read_ours(&files.dropin).is_some_and(|text| text.lines().any(|line| line == ours));
    let notify_access =
        (ours_sets_it || facts.notify_access == NotifyAccess::None).then_some(OUR_NOTIFY_ACCESS);
    if notify_access.is_none() {
        let _ = writeln!(
            report,
            "kept {unit}'s own NotifyAccess={}",
            facts.notify_access
        );
    }
    let refuse = |e: String| anyhow::anyhow!("cannot enable {unit}: {e}");
    let writes = [
        (
            &files.tmpfiles,
            tmpfiles_text(&files.name, &user, &group).map_err(refuse)?,
        ),
        (
            &files.dropin,
            dropin_text(&files.name, notify_access).map_err(refuse)?,
        ),
        (&files.service, service_text(unit, health)?),
    ];
    // All or nothing: refuse before writing anything.
    for (path, _) in &writes {
        if path.exists() && read_ours(path).is_none() {
            bail!(
                "{0} exists and was not written by scoreboardctl enable; not overwriting it. \
                 To let enable manage it, move it aside (mv {0} {0}.orig) and run enable \
                 again with the settings it held as options (--stuck-after, --wedged-after, …); \
                 or keep it and leave enable out",
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
pub fn disable(target: &EnableTarget, unit: &str) -> anyhow::Result<String> {
    let unit = normalize_unit(unit).map_err(anyhow::Error::msg)?;
    require_root(target, "disable")?;
    let files = Files::new(&target.root, &unit);
    let mut report = String::new();
    for path in [&files.tmpfiles, &files.dropin, &files.service] {
        if !path.exists() {
            continue;
        }
        if read_ours(path).is_none() {
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

/// The drop-in `grant-kill` writes for the agent's unit, under `/etc`.
const KILL_DROPIN: &str = "systemd/system/scoreboard-agent.service.d/50-kill.conf";

/// What `kill_stuck_after` needs of the agent's unit beyond the shipped one, each line
/// with the reason it is there.
pub fn kill_dropin_text() -> String {
    format!(
        "{MARK}\n\
         # kill_stuck_after: the agent signals stuck workers, processes of other users.\n\
         [Service]\n\
         # CAP_KILL: pidfd_send_signal(2) to another user's process. CAP_SYS_ADMIN as the\n\
         # shipped unit has it (STATUS= on a main process's behalf).\n\
         AmbientCapabilities=CAP_SYS_ADMIN CAP_KILL\n\
         CapabilityBoundingSet=CAP_SYS_ADMIN CAP_KILL\n\
         # /proc/PID/cgroup, /proc/PID/status and /proc/locks of the workers: checked\n\
         # before each signal, so that only the unit's own worker holding its file is hit.\n\
         ProtectProc=default\n\
         ProcSubset=all\n"
    )
}

/// What granting does, for messages and `--help`.
pub const KILL_GRANT_EFFECT: &str = "lets scoreboard-agent send SIGTERM/SIGKILL to processes of \
     other users: adds CAP_KILL and the process table to scoreboard-agent.service";

/// `scoreboardctl grant-kill`: the agent's drop-in for `kill_stuck_after`, then systemd
/// reloaded and the agent restarted (capabilities are given at start). Returns the
/// report to print.
pub fn grant_kill(target: &EnableTarget) -> anyhow::Result<String> {
    require_root(target, "grant-kill")?;
    let path = target.root.join("etc").join(KILL_DROPIN);
    if path.exists() && read_ours(&path).is_none() {
        bail!(
            "{} exists and was not written by scoreboardctl; not overwriting it",
            path.display()
        );
    }
    let mut report = String::new();
    write_file(&path, &kill_dropin_text(), &mut report)?;
    run(target, "systemctl", &["daemon-reload"], &mut report)?;
    run(
        target,
        "systemctl",
        &["try-restart", "scoreboard-agent.service"],
        &mut report,
    )?;
    let _ = writeln!(report, "granted: {KILL_GRANT_EFFECT}");
    Ok(report)
}

/// `scoreboardctl revoke-kill`: removes what `grant-kill` wrote, then systemd reloaded
/// and the agent restarted. Returns the report to print.
pub fn revoke_kill(target: &EnableTarget) -> anyhow::Result<String> {
    require_root(target, "revoke-kill")?;
    let path = target.root.join("etc").join(KILL_DROPIN);
    let mut report = String::new();
    if path.exists() && read_ours(&path).is_none() {
        let _ = writeln!(
            report,
            "left {} alone: not written by scoreboardctl",
            path.display()
        );
        return Ok(report);
    }
    if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        let _ = writeln!(report, "removed {}", path.display());
        if let Some(dir) = path.parent() {
            // The drop-in directory goes too when we emptied it.
            let _ = std::fs::remove_dir(dir);
        }
    }
    run(target, "systemctl", &["daemon-reload"], &mut report)?;
    run(
        target,
        "systemctl",
        &["try-restart", "scoreboard-agent.service"],
        &mut report,
    )?;
    let _ = writeln!(
        report,
        "scoreboard-agent.service no longer has CAP_KILL from scoreboardctl: stuck workers \
         are refused, never signalled"
    );
    Ok(report)
}

/// What `enable` says or does about `kill_stuck_after`'s privileges: `grant` installs
/// the drop-in; otherwise, unless the agent has them already (our drop-in, or systemd
/// says so), the exact command to run.
fn kill_privileges(
    target: &EnableTarget,
    health: &HealthOptions,
    grant: bool,
    report: &mut String,
) -> anyhow::Result<()> {
    if health.kill_stuck_after.is_none() {
        return Ok(());
    }
    if grant {
        report.push_str(&grant_kill(target)?);
        return Ok(());
    }
    let ours = read_ours(&target.root.join("etc").join(KILL_DROPIN)).is_some();
    if ours || (target.apply && agent_may_kill()) {
        return Ok(());
    }
    let _ = writeln!(
        report,
        "kill_stuck_after does nothing until scoreboard-agent may signal the workers; to \
         let it ({KILL_GRANT_EFFECT}), run: {}",
        crate::config::KILL_GRANT_COMMAND
    );
    Ok(())
}

/// Whether systemd says the agent's unit grants what `kill_stuck_after` needs (a
/// drop-in written by hand, say).
fn agent_may_kill() -> bool {
    let unit =
        crate::ctl::block_on(async { Systemd::system().await.ok()?.agent_unit().await.ok()? });
    unit.ok().flatten().is_some_and(|unit| {
        let privileges = crate::config::AgentPrivileges::of_unit(
            unit.capability_bounding_set,
            unit.ambient_capabilities,
            &unit.protect_proc,
            &unit.proc_subset,
        );
        privileges.cap_kill && privileges.sees_processes
    })
}

fn require_root(target: &EnableTarget, verb: &str) -> anyhow::Result<()> {
    if target.apply && !rustix::process::geteuid().is_root() {
        bail!(
            "{verb} must run as root: it writes /etc/tmpfiles.d, /etc/systemd/system and \
             /etc/scoreboard and reloads systemd"
        );
    }
    Ok(())
}

/// The text of `path` when `enable` wrote it.
fn read_ours(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .filter(|text| text.starts_with(MARK))
}

/// Writes `text` to `path` unless it already holds exactly that.
fn write_file(path: &Path, text: &str, report: &mut String) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        let _ = writeln!(report, "unchanged {}", path.display());
        return Ok(());
    }
    let dir = path.parent().expect("absolute paths");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Whole: a reader (systemd, the agent) never sees half a file. 0644: the agent,
    // which runs as its own user, reads services.d; nothing written is secret.
    crate::io::atomic::write(path, text.as_bytes(), FILE_MODE)
        .with_context(|| format!("writing {}", path.display()))?;
    let _ = writeln!(report, "wrote {}", path.display());
    Ok(())
}

/// systemd re-reads units and drop-ins; the agent, if running, re-reads services.d.
fn reload(target: &EnableTarget, report: &mut String) -> anyhow::Result<()> {
    run(target, "systemctl", &["daemon-reload"], report)?;
    run(
        target,
        "systemctl",
        &["try-reload-or-restart", "scoreboard-agent.service"],
        report,
    )
}

fn run(
    target: &EnableTarget,
    program: &str,
    args: &[&str],
    report: &mut String,
) -> anyhow::Result<()> {
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

/// `User=`, `Group=` and `NotifyAccess=` of a loaded unit, asked of systemd over
/// D-Bus as the agent asks it.
fn unit_settings(unit: &str) -> anyhow::Result<UnitSettings> {
    let settings = crate::ctl::block_on(async {
        Systemd::system()
            .await
            .context("connecting to the system bus")?
            .unit_settings(unit)
            .await
    })??;
    if settings.load_state != "loaded" {
        bail!(
            "{unit} is not a loaded unit (LoadState={}); install it first",
            settings.load_state
        );
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> (tempfile::TempDir, EnableTarget) {
        let tmp = tempfile::tempdir().unwrap();
        let target = EnableTarget {
            root: tmp.path().to_owned(),
            apply: false,
        };
        (tmp, target)
    }

    fn read(root: &Path, relative: &str) -> String {
        std::fs::read_to_string(root.join(relative)).unwrap()
    }

    /// Every file under `root`, relative.
    fn written(root: &Path) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    #[test]
    fn health_options_are_written_as_keys_and_checked_before_anything_is_written() {
        let (tmp, target) = target();
        let health = HealthOptions {
            stuck_after: Some("1m".into()),
            wedged_after: Some("2m".into()),
            kill_stuck_after: Some("10m".into()),
            kill_signal: Some("QUIT".into()),
            kill_grace: Some("30s".into()),
            actions: Some("report".into()),
        };
        enable(&target, "demo", None, None, &health, false).unwrap();
        let text = read(tmp.path(), "etc/scoreboard/services.d/demo.toml");
        assert_eq!(
            text,
            format!(
                "{MARK}\nunit = \"demo.service\"\nstuck_after = \"1m\"\nwedged_after = \"2m\"\n\
                 kill_stuck_after = \"10m\"\nkill_signal = \"QUIT\"\nkill_grace = \"30s\"\n\
                 actions = \"report\"\n"
            )
        );
        let service = crate::config::parse_service(&text, Path::new("demo.toml")).unwrap();
        assert_eq!(
            service.health_actions.kill_signal,
            crate::config::KillSignal::Quit
        );

        let (tmp, target) = self::target();
        for bad in [
            HealthOptions {
                kill_stuck_after: Some("10m".into()),
                ..HealthOptions::default()
            },
            HealthOptions {
                kill_signal: Some("STOP".into()),
                ..HealthOptions::default()
            },
            HealthOptions {
                wedged_after: Some("soon".into()),
                ..HealthOptions::default()
            },
        ] {
            let message = format!(
                "{:#}",
                enable(&target, "demo", None, None, &bad, false).unwrap_err()
            );
            assert!(message.contains("the options given"), "{message}");
        }
        assert!(written(tmp.path()).is_empty(), "{:?}", written(tmp.path()));
    }

    #[test]
    fn enable_writes_three_files_and_is_idempotent() {
        let (tmp, target) = target();
        let report = enable(
            &target,
            "demo",
            Some("www-data"),
            None,
            &HealthOptions::default(),
            false,
        )
        .unwrap();
        assert_eq!(
            read(tmp.path(), "etc/tmpfiles.d/scoreboard-demo.conf"),
            format!(
                "{MARK}\n\
                 d /run/demo/scoreboard 0770 www-data www-data -\n\
                 a+ /run/demo/scoreboard - - - - user:scoreboard:rwx,default:user:scoreboard:r\n"
            )
        );
        assert_eq!(
            read(
                tmp.path(),
                "etc/systemd/system/demo.service.d/50-scoreboard.conf"
            ),
            format!(
                "{MARK}\n[Service]\n\
                 # RuntimeDirectory= is made anew at each start: give the scoreboard back its ACL.\n\
                 ExecStartPre=-+/usr/bin/systemd-tmpfiles --create /etc/tmpfiles.d/scoreboard-demo.conf\n\
                 NotifyAccess=main\n"
            )
        );
        assert_eq!(
            read(tmp.path(), "etc/scoreboard/services.d/demo.toml"),
            format!("{MARK}\nunit = \"demo.service\"\n")
        );
        assert!(
            report.contains("would run systemctl daemon-reload"),
            "{report}"
        );

        let again = enable(
            &target,
            "demo.service",
            Some("www-data"),
            None,
            &HealthOptions::default(),
            false,
        )
        .unwrap();
        assert_eq!(again.matches("unchanged ").count(), 3, "{again}");

        // The agent's configuration it wrote is one the agent accepts.
        let agent = tmp.path().join("etc/scoreboard/agent.toml");
        std::fs::write(&agent, "").unwrap();
        let config = crate::config::Config::load(&agent).unwrap();
        assert_eq!(
            config.services[0].directory,
            Path::new("/run/demo/scoreboard")
        );
    }

    #[test]
    fn a_unit_with_its_own_notify_access_keeps_it_and_still_gets_the_exec_start_pre() {
        let (tmp, target) = target();
        let dropin = "etc/systemd/system/demo.service.d/50-scoreboard.conf";
        let own = UnitSettings {
            notify_access: NotifyAccess::All,
            ..UnitSettings::default()
        };
        let report = enable_with(
            &target,
            "demo.service",
            None,
            None,
            &own,
            &HealthOptions::default(),
        )
        .unwrap();
        assert!(
            report.contains("kept demo.service's own NotifyAccess=all"),
            "{report}"
        );
        let text = read(tmp.path(), dropin);
        assert!(text.contains("\nExecStartPre=-+/usr/bin/systemd-tmpfiles --create "));
        assert!(!text.contains("NotifyAccess"), "{text}");
        let again = enable_with(
            &target,
            "demo.service",
            None,
            None,
            &own,
            &HealthOptions::default(),
        )
        .unwrap();
        assert_eq!(again.matches("unchanged ").count(), 3, "{again}");

        // A unit without one gets ours, and keeps it when systemctl show then reports
        // it as the unit's.
        let (tmp, target) = self::target();
        enable_with(
            &target,
            "demo.service",
            None,
            None,
            &UnitSettings::default(),
            &HealthOptions::default(),
        )
        .unwrap();
        assert!(read(tmp.path(), dropin).ends_with("\nNotifyAccess=main\n"));
        let ours = UnitSettings {
            notify_access: NotifyAccess::Main,
            ..UnitSettings::default()
        };
        let again = enable_with(
            &target,
            "demo.service",
            None,
            None,
            &ours,
            &HealthOptions::default(),
        )
        .unwrap();
        assert_eq!(again.matches("unchanged ").count(), 3, "{again}");
        assert!(!again.contains("kept"), "{again}");
    }

    #[test]
    fn without_group_the_users_primary_group_owns_the_scoreboard() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        assert_eq!(
            primary_group(root.path(), "nobody").as_deref(),
            Some("65534")
        );
        assert_eq!(
            primary_group(root.path(), "65534").as_deref(),
            Some("65534")
        );
        assert_eq!(primary_group(root.path(), "www"), None);
    }

    #[test]
    fn the_units_user_and_group_are_the_default_owner() {
        let (tmp, target) = target();
        let facts = UnitSettings {
            user: "web".into(),
            group: "www".into(),
            ..UnitSettings::default()
        };
        enable_with(
            &target,
            "demo.service",
            None,
            None,
            &facts,
            &HealthOptions::default(),
        )
        .unwrap();
        assert!(
            read(tmp.path(), "etc/tmpfiles.d/scoreboard-demo.conf")
                .contains("\nd /run/demo/scoreboard 0770 web www -\n")
        );
        let only_user = UnitSettings {
            user: "1001".into(),
            ..UnitSettings::default()
        };
        enable_with(
            &target,
            "demo.service",
            None,
            None,
            &only_user,
            &HealthOptions::default(),
        )
        .unwrap();
        assert!(
            read(tmp.path(), "etc/tmpfiles.d/scoreboard-demo.conf")
                .contains("\nd /run/demo/scoreboard 0770 1001 1001 -\n")
        );
        enable_with(
            &target,
            "demo.service",
            None,
            None,
            &UnitSettings::default(),
            &HealthOptions::default(),
        )
        .unwrap();
        assert!(
            read(tmp.path(), "etc/tmpfiles.d/scoreboard-demo.conf")
                .contains("\nd /run/demo/scoreboard 0770 root root -\n")
        );
    }

    #[test]
    fn users_and_groups_are_names_or_ids() {
        for good in [
            "www-data",
            "_apt",
            "nobody",
            "systemd-network",
            "WebApp",
            "first.last",
            "machine$",
            "a",
            &"a".repeat(32),
            &format!("{}$", "a".repeat(31)),
            "0",
            "1000",
            "65534",
            "4294967294",
        ] {
            assert_eq!(check_account("--user", good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            "-",
            "-x",
            ".x",
            "1abc",
            "$",
            "a$b",
            "a b",
            "a\tb",
            "x -\nR /",
            "a\n",
            "a\\b",
            "a%b",
            "a:b",
            "a/b",
            "a,b",
            "a\"b",
            "é",
            &"a".repeat(33),
            &format!("{}$", "a".repeat(32)),
            "4294967295",
            "65535",
            "4294967296",
            "99999999999999999999",
            "+1",
            "-1",
        ] {
            let message = check_account("--user", bad).unwrap_err();
            assert!(
                message.starts_with(&format!("--user {bad:?} is not a "))
                    && message.contains("at most 32 bytes"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_user_or_group_that_is_not_one_is_refused_before_anything_is_written() {
        let (tmp, target) = target();
        let message = enable(
            &target,
            "demo",
            Some("x -\nR /"),
            None,
            &HealthOptions::default(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("--user \"x -\\nR /\""), "{message}");
        let message = enable(
            &target,
            "demo",
            None,
            Some("g g"),
            &HealthOptions::default(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("--group \"g g\""), "{message}");
        // What systemctl show said is held to the same rule.
        let facts = UnitSettings {
            user: "web\nR /".into(),
            ..UnitSettings::default()
        };
        let message = enable_with(
            &target,
            "demo.service",
            None,
            None,
            &facts,
            &HealthOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("User= of demo.service") && message.contains("pass --user"),
            "{message}"
        );
        let facts = UnitSettings {
            group: "%".into(),
            ..UnitSettings::default()
        };
        let message = enable_with(
            &target,
            "demo.service",
            None,
            None,
            &facts,
            &HealthOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("Group= of demo.service"), "{message}");
        assert_eq!(written(tmp.path()), Vec::<String>::new());
    }

    #[test]
    fn a_unit_whose_scoreboard_would_be_a_system_directory_is_refused() {
        let (tmp, target) = target();
        for unit in ["systemd", "user"] {
            let message = enable(&target, unit, None, None, &HealthOptions::default(), false)
                .unwrap_err()
                .to_string();
            assert!(
                message.contains(&format!("is inside /run/{unit},")),
                "{message}"
            );
        }
        assert_eq!(written(tmp.path()), Vec::<String>::new());
    }

    #[test]
    fn paths_are_quoted_for_systemd_or_refused() {
        assert_eq!(
            quote_path("/run/web@1:x-y_z.v/sb").unwrap(),
            "/run/web@1:x-y_z.v/sb"
        );
        assert_eq!(quote_path("/run/a\\x2db%n").unwrap(), "/run/a\\\\x2db%%n");
        assert_eq!(
            quote_glob("/run/a\\x2db%n").unwrap(),
            "/run/a\\\\\\\\x2db%%n"
        );
        for bad in [
            " ", "\n", "\r", "\t", "\0", "\"", "'", "$", ";", "*", "?", "[", "]", "{", "}", "#",
            "é", "\u{2028}",
        ] {
            let path = format!("/run/a{bad}b");
            let message = quote_path(&path).unwrap_err();
            assert!(
                message.starts_with(&format!("{path:?} holds ")),
                "{message}"
            );
            assert!(quote_glob(&path).is_err());
        }
    }

    #[test]
    fn the_tmpfiles_file_has_exactly_its_lines_whatever_the_input() {
        assert_eq!(
            tmpfiles_text("web", "www-data", "www").unwrap(),
            format!(
                "{MARK}\n\
                 d /run/web/scoreboard 0770 www-data www -\n\
                 a+ /run/web/scoreboard - - - - user:scoreboard:rwx,default:user:scoreboard:r\n"
            )
        );
        let hostile: Vec<String> = (0..=0x7f_u8)
            .map(|b| char::from(b).to_string())
            .chain(["é", "\u{85}", "\u{2028}", " -\nR /", "\\n", "%n"].map(String::from))
            .collect();
        let mut accepted = 0;
        for piece in &hostile {
            for (name, user) in [
                (format!("we{piece}b"), "u".to_owned()),
                ("web".to_owned(), format!("u{piece}")),
            ] {
                let Ok(text) = tmpfiles_text(&name, &user, "g") else {
                    continue;
                };
                accepted += 1;
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines.len(), 3, "{text:?}");
                assert_eq!(lines[0], MARK);
                let d: Vec<&str> = lines[1].split_whitespace().collect();
                assert_eq!(d.len(), 6, "{text:?}");
                assert_eq!(
                    (d[0], d[2], d[3], d[4], d[5]),
                    ("d", "0770", &*user, "g", "-")
                );
                let a: Vec<&str> = lines[2].split_whitespace().collect();
                assert_eq!(a.len(), 7, "{text:?}");
                assert_eq!(a[0], "a+");
                assert_eq!(
                    a[6], "user:scoreboard:rwx,default:user:scoreboard:r",
                    "{text:?}"
                );
            }
        }
        assert!(accepted > 60, "{accepted}");
    }

    #[test]
    fn a_backslash_in_a_unit_name_is_written_so_that_everything_reads_it_back() {
        let (tmp, target) = target();
        // systemd-escape's spelling of "web-pool" in an instance name.
        let unit = "web\\x2dpool.service";
        enable(
            &target,
            unit,
            Some("web"),
            None,
            &HealthOptions::default(),
            false,
        )
        .unwrap();
        let name = "web\\x2dpool";
        assert_eq!(
            read(
                tmp.path(),
                &format!("etc/tmpfiles.d/scoreboard-{name}.conf")
            ),
            format!(
                "{MARK}\n\
                 d /run/web\\\\x2dpool/scoreboard 0770 web web -\n\
                 a+ /run/web\\\\\\\\x2dpool/scoreboard - - - - user:scoreboard:rwx,default:user:scoreboard:r\n"
            )
        );
        let dropin = read(
            tmp.path(),
            &format!("etc/systemd/system/{unit}.d/50-scoreboard.conf"),
        );
        assert!(
            dropin.contains(
                "\nExecStartPre=-+/usr/bin/systemd-tmpfiles --create /etc/tmpfiles.d/scoreboard-web\\\\x2dpool.conf\n"
            ),
            "{dropin}"
        );
        // The agent reads the configuration back as the same unit.
        let agent = tmp.path().join("etc/scoreboard/agent.toml");
        std::fs::write(&agent, "").unwrap();
        let config = crate::config::Config::load(&agent).unwrap();
        assert_eq!(config.services[0].unit, unit);
        assert_eq!(
            config.services[0].directory,
            Path::new("/run/web\\x2dpool/scoreboard")
        );
        assert_eq!(
            enable(
                &target,
                unit,
                Some("web"),
                None,
                &HealthOptions::default(),
                false
            )
            .unwrap()
            .matches("unchanged ")
            .count(),
            3
        );
    }

    /// The quoting as systemd-tmpfiles itself reads it, when it is installed: the
    /// directory made has the name meant, and the ACL line (a glob) finds it.
    #[test]
    fn systemd_tmpfiles_reads_the_quoted_paths_as_meant() {
        let tmp = tempfile::tempdir().unwrap();
        let directory = tmp.path().join("web\\x2dpool%n");
        let directory = directory.to_str().unwrap();
        let (Ok(path), Ok(glob)) = (quote_path(directory), quote_glob(directory)) else {
            eprintln!("skipped: the temporary directory {directory} is not quotable");
            return;
        };
        let conf = tmp.path().join("test.conf");
        std::fs::write(
            &conf,
            format!("d {path} 0700 - - -\na+ {glob} - - - - user:65534:r\n"),
        )
        .unwrap();
        let output = match Command::new("systemd-tmpfiles")
            .arg("--create")
            .arg(&conf)
            .output()
        {
            Ok(output) => output,
            Err(e) => {
                eprintln!("skipped: systemd-tmpfiles: {e}");
                return;
            }
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(Path::new(directory).is_dir(), "{stderr}");
        let mut made: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        made.sort();
        assert_eq!(made, ["test.conf", "web\\x2dpool%n"], "{stderr}");
        if stderr.contains("Operation not supported") {
            eprintln!("ACL not checked: the filesystem has none: {stderr}");
            return;
        }
        assert!(output.status.success(), "{stderr}");
        let mut names = vec![0; 1024];
        let len = rustix::fs::listxattr(directory, &mut names).unwrap();
        let names = String::from_utf8_lossy(&names[..len]);
        assert!(names.contains("system.posix_acl_access"), "{names:?}");
    }

    #[test]
    fn disable_removes_exactly_what_enable_wrote() {
        let (tmp, target) = target();
        let etc = tmp.path().join("etc");
        let neighbour = etc.join("systemd/system/demo.service.d/10-admin.conf");
        std::fs::create_dir_all(neighbour.parent().unwrap()).unwrap();
        std::fs::write(&neighbour, "[Service]\nNice=5\n").unwrap();
        enable(
            &target,
            "demo",
            None,
            None,
            &HealthOptions::default(),
            false,
        )
        .unwrap();
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
        let error = enable(
            &target,
            "demo",
            None,
            None,
            &HealthOptions::default(),
            false,
        )
        .unwrap_err()
        .to_string();
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
            enable(
                &target,
                "demo.socket",
                None,
                None,
                &HealthOptions::default(),
                false
            )
            .unwrap_err()
            .to_string()
            .contains("not a service")
        );
    }

    #[test]
    fn kill_stuck_after_says_the_command_or_grants_with_the_flag() {
        let (tmp, target) = target();
        let health = HealthOptions {
            stuck_after: Some("1m".into()),
            kill_stuck_after: Some("2m".into()),
            ..HealthOptions::default()
        };
        let report = enable(&target, "demo", None, None, &health, false).unwrap();
        assert!(report.contains("run: scoreboardctl grant-kill"), "{report}");
        let dropin = "etc/systemd/system/scoreboard-agent.service.d/50-kill.conf";
        assert!(!tmp.path().join(dropin).exists());
        // Without kill_stuck_after nothing is said.
        let (_tmp, quiet) = self::target();
        let report = enable(&quiet, "demo", None, None, &HealthOptions::default(), false).unwrap();
        assert!(!report.contains("grant-kill"), "{report}");

        let report = enable(&target, "demo", None, None, &health, true).unwrap();
        assert!(
            report.contains("granted: lets scoreboard-agent send"),
            "{report}"
        );
        assert!(
            report.contains("would run systemctl try-restart scoreboard-agent.service"),
            "{report}"
        );
        let text = read(tmp.path(), dropin);
        assert_eq!(text, kill_dropin_text());
        for line in [
            "AmbientCapabilities=CAP_SYS_ADMIN CAP_KILL",
            "CapabilityBoundingSet=CAP_SYS_ADMIN CAP_KILL",
            "ProtectProc=default",
            "ProcSubset=all",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}: {text}");
        }
        // Granted once, nothing more to say.
        let report = enable(&target, "demo", None, None, &health, false).unwrap();
        assert!(!report.contains("grant-kill"), "{report}");
    }

    #[test]
    fn grant_and_revoke_kill_touch_only_their_own_drop_in() {
        let (tmp, target) = target();
        let dropin = tmp
            .path()
            .join("etc/systemd/system/scoreboard-agent.service.d/50-kill.conf");
        grant_kill(&target).unwrap();
        assert!(dropin.exists());
        assert!(grant_kill(&target).unwrap().contains("unchanged "));
        let report = revoke_kill(&target).unwrap();
        assert!(report.contains("removed "), "{report}");
        assert!(!dropin.exists());
        std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
        std::fs::write(&dropin, "[Service]\nAmbientCapabilities=CAP_KILL\n").unwrap();
        assert!(grant_kill(&target).is_err());
        assert!(revoke_kill(&target).unwrap().contains("left "));
        assert!(dropin.exists());
    }
}
