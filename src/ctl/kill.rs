//! `scoreboardctl grant-kill` and `revoke-kill`: the drop-in that lets the agent signal
//! stuck workers (`kill_stuck_after`), which belong to other users; and what `enable`
//! says or does about it.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};

use super::enable::{EnableTarget, HealthOptions, MARK, read_ours, require_root, run, write_file};
use crate::io::systemd::Systemd;

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
    reload_and_restart_agent(target, &mut report)?;
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
    reload_and_restart_agent(target, &mut report)?;
    let _ = writeln!(
        report,
        "scoreboard-agent.service no longer has CAP_KILL from scoreboardctl: stuck workers \
         are refused, never signalled"
    );
    Ok(report)
}

/// What `enable` says or does, after the rest, about `kill_stuck_after`'s privileges: `grant` installs
/// the drop-in; otherwise, unless the agent has them already (our drop-in, or systemd
/// says so), the exact command to run.
pub(super) fn after_enable(
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

/// systemd reloaded and the agent restarted (if it runs): capabilities are given at a
/// process's start, so a changed drop-in takes effect only then.
fn reload_and_restart_agent(target: &EnableTarget, report: &mut String) -> anyhow::Result<()> {
    run(target, "systemctl", &["daemon-reload"], report)?;
    run(
        target,
        "systemctl",
        &["try-restart", "scoreboard-agent.service"],
        report,
    )
}
