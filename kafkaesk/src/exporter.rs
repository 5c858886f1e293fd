//! `GET /metrics` and `GET /health` over HTTP, for Prometheus and for a
//! Kubernetes liveness probe.
//!
//! The `kafkaesk` command serves them with `--metrics-addr HOST:PORT` (or
//! `KAFKAESK_METRICS_ADDR`); without it, nothing listens. A service with an
//! HTTP server of its own can answer the same from
//! [`Metrics::encode`](crate::Metrics::encode) and
//! [`Application::health_check`] instead (see [`metrics`](crate::metrics)).
//!
//! - `GET /metrics`: every metric of the application's registry, in
//!   Prometheus's text format.
//! - `GET /health`: `200` with a JSON body when the producer reaches a broker
//!   and every consumer runs and reads, `503` with the same body otherwise:
//!   `{"healthy":false,"producer":true,"consumers":[{"subscription":"index","group":"indexer","running":false,"assigned":[],"paused":[],"stalled":null}]}`.
//!   `stalled` is the fetch error that keeps a running consumer from reading,
//!   if one does.
//!
//! The server speaks just enough HTTP/1.1 for scrapers and probes: one
//! request per connection, `GET` and `HEAD` only, requests up to 8 KiB read
//! within 10 s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kafkaesk::Error> {
//! let app = kafkaesk::Application::builder().build()?;
//! let server = kafkaesk::exporter::serve(&app, "0.0.0.0:9464").await?;
//! println!("metrics on http://{}/metrics", server.local_addr());
//! app.run().await
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::task::JoinHandle;

use crate::app::{Application, Health};
use crate::error::{Error, Result};

/// The longest request read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A running metrics and health server; dropping it stops the server.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `addr` and serves `app`'s `/metrics` and `/health` until the
/// returned server is dropped.
///
/// Fails with [`Error::InvalidSetting`] (`metrics_addr`) when the address
/// cannot be bound, saying why.
pub async fn serve(app: &Application, addr: impl ToSocketAddrs) -> Result<MetricsServer> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| Error::InvalidSetting {
            name: "metrics_addr".to_owned(),
            reason: format!("cannot listen there: {err}"),
        })?;
    let local_addr = listener.local_addr().map_err(|err| Error::InvalidSetting {
        name: "metrics_addr".to_owned(),
        reason: err.to_string(),
    })?;
    tracing::info!(address = %local_addr, "serving /metrics and /health");
    let app = app.clone();
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let app = app.clone();
                    tokio::spawn(async move {
                        if let Err(err) = answer(&app, stream).await {
                            tracing::debug!(error = %err, "metrics request failed");
                        }
                    });
                }
                Err(err) => {
                    // Out of file descriptors, typically: wait, do not spin.
                    tracing::warn!(error = %err, "metrics server cannot accept connections");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(MetricsServer { local_addr, task })
}

/// A response: status line, content type, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        }
    }
}

async fn answer(app: &Application, mut stream: TcpStream) -> std::io::Result<()> {
    let request = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(request) => request?,
        Err(_) => return Ok(()),
    };
    let (head_only, response) = match parse_request_line(&request) {
        Ok((method, path)) => (method == "HEAD", route(app, path).await),
        Err(response) => (false, response),
    };
    let head = format!(
        "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(response.body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// Reads up to the end of the request's head, or [`MAX_REQUEST`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while request.len() < MAX_REQUEST && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    Ok(request)
}

/// The method and path of a request, or the response to a bad one.
fn parse_request_line(request: &[u8]) -> std::result::Result<(&str, &str), Response> {
    let bad = || Response::text("400 Bad Request", "bad request");
    let line_end = request
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(bad)?;
    let line = std::str::from_utf8(&request[..line_end]).map_err(|_| bad())?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad());
    }
    if method != "GET" && method != "HEAD" {
        return Err(Response::text(
            "405 Method Not Allowed",
            "only GET and HEAD are served",
        ));
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok((method, path))
}

async fn route(app: &Application, path: &str) -> Response {
    match path {
        "/metrics" => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: app.metrics().encode(),
        },
        "/health" => {
            let health = app.health_check().await;
            Response {
                status: if health.is_healthy() {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                },
                content_type: "application/json",
                body: health_json(&health),
            }
        }
        _ => Response::text("404 Not Found", "not found; try /metrics or /health"),
    }
}

fn partitions_json(partitions: &[(String, i32)]) -> Vec<serde_json::Value> {
    partitions
        .iter()
        .map(|(topic, partition)| json!({"topic": topic, "partition": partition}))
        .collect()
}

/// The body of `GET /health`.
fn health_json(health: &Health) -> String {
    let mut consumers: Vec<_> = health.consumers.iter().collect();
    consumers.sort_by(|a, b| a.subscription.cmp(&b.subscription));
    let consumers: Vec<_> = consumers
        .into_iter()
        .map(|c| {
            json!({
                "subscription": c.subscription,
                "group": c.group,
                "running": c.running,
                "assigned": partitions_json(&c.assigned),
                "paused": partitions_json(&c.paused),
                "stalled": c.stalled,
            })
        })
        .collect();
    json!({
        "healthy": health.is_healthy(),
        "producer": health.producer,
        "consumers": consumers,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ConsumerHealth;

    #[test]
    fn request_lines_are_parsed_and_bad_ones_refused() {
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").ok(),
            Some(("GET", "/metrics"))
        );
        let status = |r: &[u8]| parse_request_line(r).err().map(|r| r.status);
        assert_eq!(
            status(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some("405 Method Not Allowed")
        );
        assert_eq!(status(b"GET /metrics\r\n\r\n"), Some("400 Bad Request"));
        assert_eq!(status(b"garbage"), Some("400 Bad Request"));
        assert_eq!(status(b"\xff\xfe /x HTTP/1.1\r\n"), Some("400 Bad Request"));
    }

    #[test]
    fn health_names_each_consumer() {
        let health = Health {
            producer: true,
            consumers: vec![ConsumerHealth {
                subscription: "index".into(),
                group: "indexer".into(),
                running: false,
                assigned: vec![("t".into(), 0), ("t".into(), 1)],
                paused: vec![("t".into(), 1)],
                stalled: None,
            }],
        };
        let body: serde_json::Value = serde_json::from_str(&health_json(&health)).unwrap();
        assert_eq!(body["healthy"], false);
        assert_eq!(body["consumers"][0]["subscription"], "index");
        assert_eq!(body["consumers"][0]["assigned"][0]["partition"], 0);
        assert_eq!(body["consumers"][0]["paused"][0]["partition"], 1);
    }
}
