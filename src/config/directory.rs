//! Which directories may be a scoreboard: absolute, in normal form, outside the
//! system's own trees, and one per service.

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::Deserialize;

use super::Service;

/// `directory`: a scoreboard directory that passed [`check_directory`].
#[derive(Debug)]
pub(super) struct Directory(pub(super) PathBuf);

impl<'de> Deserialize<'de> for Directory {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        check_directory(&text).map_err(serde::de::Error::custom)?;
        Ok(Directory(text.into()))
    }
}

/// Directories that are never a scoreboard themselves: the agent renames and removes
/// dead workers' `status_*` files in a scoreboard with its own privileges, so it must
/// not be pointed at a directory the system or every user shares.
pub(super) const SYSTEM_DIRECTORIES: [&str; 23] = [
    "/",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/root",
    "/home",
    "/var",
    "/run",
    "/tmp",
    "/var/tmp",
    "/srv",
    "/opt",
    "/var/lib",
    "/var/log",
    "/run/user",
    "/run/systemd",
];

/// Trees a scoreboard never lives in, at any depth: the system's own files, kernel
/// interfaces, systemd's runtime state and users' runtime directories. (Every top-level
/// `/lib*` — lib32, lib64, libx32 — counts as well.) A scoreboard lives in a service's
/// own directory, e.g. `/run/<service>/scoreboard` or `/var/lib/<service>/scoreboard`.
const SYSTEM_TREES: [&str; 10] = [
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/run/systemd",
    "/run/user",
];

/// Refuses a scoreboard directory that is not absolute, not in normal form (the error
/// says the normal form), or a system directory or inside one (see
/// `SYSTEM_DIRECTORIES` and `SYSTEM_TREES`).
///
/// Normal form is required rather than computed: a directory is compared with others
/// (two services may not share one) and with the system trees as text, and `..` or a
/// doubled slash would make that comparison lie.
pub fn check_directory(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!("directory {text:?} must be an absolute path"));
    }
    let normal = lexical_normal(text);
    if normal != text {
        return Err(format!(
            "directory {text:?} is not in normal form (no \".\" or \"..\" components, no \
             repeated or trailing slashes): write {normal:?}"
        ));
    }
    let path = Path::new(text);
    let tree = SYSTEM_TREES
        .iter()
        .copied()
        .find(|tree| path.starts_with(tree))
        .or_else(|| {
            let first = text[1..].split('/').next().unwrap_or("");
            first.starts_with("lib").then(|| &text[..=first.len()])
        });
    if SYSTEM_DIRECTORIES.contains(&text) || tree == Some(text) {
        return Err(format!(
            "directory {text:?} is a system directory; a scoreboard needs a directory of its \
             own, e.g. /run/<service>/scoreboard"
        ));
    }
    if let Some(tree) = tree {
        return Err(format!(
            "directory {text:?} is inside {tree}, where a scoreboard never belongs; use the \
             service's own, e.g. /run/<service>/scoreboard"
        ));
    }
    Ok(())
}

/// `path` with `.` components, repeated and trailing slashes removed and `..` applied
/// lexically (`/run/a/../b` is `/run/b`; `..` at the root stays at the root).
fn lexical_normal(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Refuses two services sharing a scoreboard directory, or one's inside the other's:
/// the agent would count the same workers twice, or reap in the other's directory.
/// Directories are in normal form ([`check_directory`]), so comparing components is
/// enough; sorted, a directory is followed by everything inside it, so checking
/// neighbours finds every overlap.
pub(super) fn check_overlaps(services: &[Service]) -> anyhow::Result<()> {
    let mut by_directory: Vec<&Service> = services.iter().collect();
    by_directory.sort_by(|a, b| a.directory.cmp(&b.directory));
    for pair in by_directory.windows(2) {
        let [outer, inner] = pair else { continue };
        if !inner.directory.starts_with(&outer.directory) {
            continue;
        }
        let relation = if inner.directory == outer.directory {
            "is also"
        } else {
            "is inside"
        };
        bail!(
            "{}: directory {} of {} {relation} {}, the directory of {} in {}; each service \
             needs a scoreboard directory of its own",
            inner.source.display(),
            inner.directory.display(),
            inner.unit,
            outer.directory.display(),
            outer.unit,
            outer.source.display()
        );
    }
    Ok(())
}

/// `/run/<unit name without .service>/scoreboard`.
pub fn default_directory(unit: &str) -> PathBuf {
    let name = unit.strip_suffix(".service").unwrap_or(unit);
    Path::new("/run").join(name).join("scoreboard")
}
