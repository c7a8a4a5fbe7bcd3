//! Who may read per-worker details: whoever could read the scoreboard directory
//! themselves.
//!
//! Statuses hold what workers are doing — URLs with tokens, user names — and the
//! directory's mode (usually 0770 of the service's user) already says who may see
//! them. The agent reads every directory with its own rights, so over the bus it must
//! not answer more than the filesystem would: per-worker details go to root, to the
//! directory's owner, to members of its group (supplementary groups included) and to
//! others only as far as the mode lets each class list the directory (`r` and `x`).
//! Aggregates (summary, counts) are what systemd shows everyone in `systemctl status`
//! and stay public. The caller's identity is what the bus daemon vouches for
//! (`GetConnectionCredentials`), never what the caller says.
//!
//! Only the mode bits are consulted, not ACL entries: a user let in by an ACL alone is
//! refused here (and may read the directory directly). Erring on the side of refusing.

use std::fmt;

/// A bus client, as the bus daemon identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `UnixUserID`.
    pub uid: u32,
    /// `UnixGroupIDs`: primary and supplementary groups (empty if the bus daemon does not
    /// say, and then only the user and "others" classes apply).
    pub gids: Vec<u32>,
}

/// A directory's owner, group and mode, as `stat` says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirAccess {
    /// `st_uid`.
    pub uid: u32,
    /// `st_gid`.
    pub gid: u32,
    /// `st_mode`'s permission bits.
    pub mode: u32,
}

/// Why a caller was refused: the message of `org.freedesktop.DBus.Error.AccessDenied`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    caller: Caller,
    dir: DirAccess,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "uid {} may not read per-worker details: the scoreboard directory is mode {:04o}, \
             owner uid {}, group gid {}, and only those who could read it themselves may \
             (root, its owner, its group, others as its mode allows); the summary is public",
            self.caller.uid, self.dir.mode, self.dir.uid, self.dir.gid
        )
    }
}

/// The rule: the permission class the caller falls in (owner, else group, else others,
/// as the kernel picks it) must have both read and search on the directory.
pub fn may_read(caller: &Caller, dir: DirAccess) -> Result<(), Refused> {
    if caller.uid == 0 {
        return Ok(());
    }
    let class_bits = if caller.uid == dir.uid {
        (dir.mode >> 6) & 0o7
    } else if caller.gids.contains(&dir.gid) {
        (dir.mode >> 3) & 0o7
    } else {
        dir.mode & 0o7
    };
    if class_bits & 0o5 == 0o5 {
        Ok(())
    } else {
        Err(Refused {
            caller: caller.clone(),
            dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: u32, gids: &[u32]) -> Caller {
        Caller {
            uid,
            gids: gids.to_vec(),
        }
    }

    const SERVICE_DIR: DirAccess = DirAccess {
        uid: 1000,
        gid: 2000,
        mode: 0o770,
    };

    #[test]
    fn root_the_owner_and_the_group_may_read_a_0770_directory() {
        assert!(may_read(&caller(0, &[]), SERVICE_DIR).is_ok());
        assert!(may_read(&caller(1000, &[1000]), SERVICE_DIR).is_ok());
        assert!(may_read(&caller(1001, &[1001, 2000]), SERVICE_DIR).is_ok());
        let refused = may_read(&caller(65534, &[65534]), SERVICE_DIR).unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains("uid 65534") && message.contains("0770"),
            "{message}"
        );
    }

    #[test]
    fn the_class_the_kernel_picks_decides_even_against_the_caller() {
        // The owner without read is refused although others may read: as the kernel.
        let odd = DirAccess {
            mode: 0o075,
            ..SERVICE_DIR
        };
        assert!(may_read(&caller(1000, &[]), odd).is_err());
        assert!(may_read(&caller(5, &[2000]), odd).is_ok());
        assert!(may_read(&caller(5, &[]), odd).is_ok());
        // Listing needs both read and search.
        let search_only = DirAccess {
            mode: 0o711,
            ..SERVICE_DIR
        };
        assert!(may_read(&caller(5, &[2000]), search_only).is_err());
        let world = DirAccess {
            mode: 0o755,
            ..SERVICE_DIR
        };
        assert!(may_read(&caller(5, &[]), world).is_ok());
    }
}
