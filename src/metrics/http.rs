//! `GET /metrics` over plain HTTP: one request per connection, the head bounded in size
//! and time, OpenMetrics for those who ask for it, the Prometheus text format otherwise.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use super::Metrics;

/// Content types of the two formats.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("accepting a metrics connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(&mut stream, &metrics).await {
                debug!("metrics request from {peer}: {e}");
            }
        });
    }
}

/// One request, one response, then the connection closes. Only the request line
/// matters; the rest of the head is read (up to 8 KiB, for 5 s at most) and ignored.
async fn answer(stream: &mut tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        std::io::Result::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), read_head)
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    // Prometheus asks for OpenMetrics in Accept; curl and older scrapers get the
    // Prometheus text format.
    let wants_openmetrics = String::from_utf8_lossy(&head)
        .lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("accept:"))
        .any(|line| line.contains("application/openmetrics-text"));
    let (status, content_type, body) = match (method, target) {
        (b"GET", b"/metrics") if wants_openmetrics => ("200 OK", OPENMETRICS, metrics.encode()),
        (b"GET", b"/metrics") => ("200 OK", PROMETHEUS_TEXT, metrics.encode_prometheus_text()),
        (b"GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
