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

#[cfg(test)]
use super::kill::{grant_kill, kill_dropin_text, revoke_kill};
use crate::config::{check_directory, normalize_unit};
use crate::io::systemd::{NotifyAccess, Systemd, UnitSettings};

/// Marks the files `enable` writes, so `disable` removes only its own.
pub(super) const MARK: &str =
    "# Written by `scoreboardctl enable`; `scoreboardctl disable` removes it.";

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
/// names (see docs/operating.md, "Health actions"); all off unless given.
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
    super::kill::after_enable(target, health, grant_kill, &mut report)?;
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

pub(super) fn require_root(target: &EnableTarget, verb: &str) -> anyhow::Result<()> {
    if target.apply && !rustix::process::geteuid().is_root() {
        bail!(
            "{verb} must run as root: it writes /etc/tmpfiles.d, /etc/systemd/system and \
             /etc/scoreboard and reloads systemd"
        );
    }
    Ok(())
}

/// The text of `path` when `enable` wrote it.
pub(super) fn read_ours(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .filter(|text| text.starts_with(MARK))
}

/// Writes `text` to `path` unless it already holds exactly that.
pub(super) fn write_file(path: &Path, text: &str, report: &mut String) -> anyhow::Result<()> {
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

pub(super) fn run(
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
mod tests;
