//! `test-flood`: what a hostile local user does to a bus service — many connections,
//! each keeping many `ListWorkers` calls in flight.

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use scoreboard_testkit::bus::list_workers;

/// `clients` connections to the system (or session) bus, each keeping `in_flight`
/// `ListWorkers` calls to `path` in flight for `seconds`.
pub struct Flood {
    pub session: bool,
    pub path: String,
    pub clients: usize,
    pub in_flight: usize,
    pub seconds: u64,
}

/// What a flood got back, printed as one JSON object.
#[derive(Debug, Default)]
struct Report {
    /// Calls answered with the workers.
    replies: u64,
    /// Calls refused with LimitsExceeded.
    limited: u64,
    /// Calls refused with AccessDenied.
    denied: u64,
    /// Other errors (timeouts, disconnections).
    failed: u64,
}

impl Flood {
    /// Runs it; returns the report as JSON: replies, limited, denied, failed, seconds.
    pub async fn run(&self) -> anyhow::Result<serde_json::Value> {
        let until = tokio::time::Instant::now() + Duration::from_secs(self.seconds);
        let started = Instant::now();
        let mut connections = Vec::with_capacity(self.clients);
        for _ in 0..self.clients {
            let connection = if self.session {
                zbus::Connection::session().await?
            } else {
                zbus::Connection::system().await?
            };
            connections.push(connection);
        }
        let mut report = Report::default();
        let mut calls = FuturesUnordered::new();
        let call = |connection: zbus::Connection| async move {
            list_workers(&connection, &self.path).await
        };
        for connection in &connections {
            for _ in 0..self.in_flight {
                calls.push(call(connection.clone()));
            }
        }
        let mut next = 0;
        while let Some(result) = calls.next().await {
            match result {
                Ok(_) => report.replies += 1,
                Err(zbus::Error::FDO(e)) => match *e {
                    zbus::fdo::Error::LimitsExceeded(_) => report.limited += 1,
                    zbus::fdo::Error::AccessDenied(_) => report.denied += 1,
                    _ => report.failed += 1,
                },
                Err(_) => report.failed += 1,
            }
            if tokio::time::Instant::now() < until {
                calls.push(call(connections[next % connections.len()].clone()));
                next += 1;
            }
        }
        Ok(serde_json::json!({
            "replies": report.replies,
            "limited": report.limited,
            "denied": report.denied,
            "failed": report.failed,
            "seconds": started.elapsed().as_secs_f64(),
        }))
    }
}
