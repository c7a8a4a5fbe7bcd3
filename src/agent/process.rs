//! What the agent's process asks of the system before it runs: its Unix signal
//! handlers (shutdown and reload) and its open-file limit.

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::warn;

/// SIGTERM or SIGINT as the shutdown, SIGHUP as reloads: how the binary runs [`run`].
pub fn signals() -> anyhow::Result<(impl Future<Output = ()>, mpsc::UnboundedReceiver<()>)> {
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (reload, reloads) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            if reload.send(()).is_err() {
                break;
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    Ok((shutdown, reloads))
}

/// Raises the soft limit on open files to the hard limit: a long-lived reader holds one
/// descriptor per worker, and systemd's default soft limit is 1,024.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            warn!("raising the open-file limit: {e}");
        }
    }
}
