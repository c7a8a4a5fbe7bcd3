//! What this process may do to other users' processes, read from `/proc/self`: for the
//! agent's start-up warning about health actions it cannot carry out.

use crate::config::AgentPrivileges;

/// The agent's own privileges now: its effective capabilities (`CapEff:` of
/// `/proc/self/status`) and the options `/proc` is mounted with (`ProtectProc=` and
/// `ProcSubset=` become `hidepid=` and `subset=` of the agent's own `/proc`). What
/// cannot be read counts as not granted.
pub fn own() -> AgentPrivileges {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    AgentPrivileges::of_process(effective_capabilities(&status), &proc_options(&mountinfo))
}

/// `CapEff:` of a `/proc/PID/status` text; 0 when absent.
fn effective_capabilities(status: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// The super options of the `proc` mounted on `/proc`, from a `mountinfo` text:
/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS…] - FSTYPE SOURCE SUPEROPTIONS`.
fn proc_options(mountinfo: &str) -> String {
    mountinfo
        .lines()
        // The last mount on /proc is the one seen.
        .rev()
        .find_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let mut fields = fs.split(' ');
            let fstype = fields.next()?;
            let _source = fields.next()?;
            let options = fields.next()?;
            (mount.split(' ').nth(4) == Some("/proc") && fstype == "proc").then_some(options)
        })
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_and_the_proc_mount_are_read_as_the_kernel_writes_them() {
        let status =
            "Name:\tscoreboard-agent\nCapInh:\t0000000000000000\nCapEff:\t0000000000200020\n";
        assert_eq!(effective_capabilities(status), 0x20_0020);
        assert_eq!(effective_capabilities("Name:\tx\n"), 0);
        let mountinfo = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n\
                         900 22 0:60 / /proc rw,nosuid - proc proc rw,hidepid=invisible,subset=pid\n\
                         23 1 0:22 / /sys rw - sysfs sysfs rw\n";
        assert_eq!(proc_options(mountinfo), "rw,hidepid=invisible,subset=pid");
        let agent = AgentPrivileges::of_process(0x20_0020, &proc_options(mountinfo));
        assert!(agent.cap_kill);
        assert!(!agent.sees_processes);
    }
}
