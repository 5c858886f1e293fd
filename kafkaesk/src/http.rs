//! `GET /metrics` and `GET /health` over HTTP, for Prometheus and for a
//! Kubernetes liveness probe.
//!
//! The `kafkaesk` command serves them with `--metrics-addr HOST:PORT` (or
//! `KAFKAESK_METRICS_ADDR`); without it, nothing listens. A service with an
//! HTTP server of its own can answer the same from
//! [`Metrics::encode`](crate::Metrics::encode) and
//! [`Application::health_check`] instead (see [`metrics`](crate::observe::metrics)).
//!
//! - `GET /metrics`: every metric of the application's registry, in
//!   Prometheus's text format.
//! - `GET /health`: `200` with a JSON body when the producer reaches a broker
//!   and every consumer runs and reads, `503` with the same body otherwise:
//!   `{"healthy":false,"producer":true,"consumers":[{"subscription":"index","group":"indexer","running":false,"assigned":[],"paused":[],"stalled":null,"stuck":[]}]}`.
//!   `stalled` is the fetch error that keeps a running consumer from reading,
//!   if one does; `stuck` lists the partitions that made no progress for the
//!   subscription's `stall_timeout`, each with `topic`, `partition`, `offset`
//!   (the record it waits on) and `seconds`.
//! - `GET /live`: the same body, `503` only when the producer reaches no
//!   broker or a consumer stopped, not for a stalled or stuck one: for a
//!   liveness probe, as a restart does not get a consumer past a batch it
//!   cannot read, and a handler that hangs on a record hangs again on it
//!   after a restart (`cancel_stalled` gets the consumer past it). `/health` is for readiness probes and alerts.
//!
//! The server speaks just enough HTTP/1.1 for scrapers and probes: one
//! request per connection, `GET` and `HEAD` only, requests up to 8 KiB read
//! within 5 s, responses taken within 5 s, 64 connections at once, and a
//! broker check behind `/health` reused for 2 s (see [`serve`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kafkaesk::Error> {
//! let app = kafkaesk::Application::builder().build()?;
//! let server = kafkaesk::http::serve(&app, "0.0.0.0:9464").await?;
//! println!("metrics on http://{}/metrics", server.local_addr());
//! app.run().await
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::app::{Application, Health};
use crate::error::{Error, Result};

/// The longest request read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once. Each holds a file
/// descriptor, which librdkafka needs for its brokers.
const MAX_CONNECTIONS: usize = 64;
/// How long a `/health` answer's broker check is reused: every check asks
/// the broker for the cluster's metadata.
const HEALTH_REUSED_FOR: Duration = Duration::from_secs(2);

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

    /// Stops listening, and returns once the port is closed (dropping the
    /// server stops it too, a moment later). Connections being answered
    /// finish on their own, within their timeouts.
    pub async fn stop(mut self) {
        self.task.abort();
        // Cancelled: the listener is dropped by then.
        let _ = (&mut self.task).await;
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
/// The port is bounded, as it may face anything on the network: at most 64
/// connections at once (more are closed as they come), 5 s to send a
/// request and 5 s to take the response, and `/health` reuses its broker
/// check for 2 s, so a flood of probes does not become a flood of metadata
/// requests.
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
    let server = Arc::new(Server {
        app: app.clone(),
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        producer_checked: tokio::sync::Mutex::new(None),
    });
    let task = tokio::spawn(async move {
        let mut refused_since_warning = 0u64;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let Ok(permit) = server.connections.clone().try_acquire_owned() else {
                        // Closed unanswered: answering could wait on the
                        // client too.
                        drop(stream);
                        refused_since_warning += 1;
                        if refused_since_warning == 1 {
                            tracing::warn!(
                                limit = MAX_CONNECTIONS,
                                "metrics server: too many connections at once; closing new ones"
                            );
                        }
                        continue;
                    };
                    if server.connections.available_permits() > MAX_CONNECTIONS / 2 {
                        refused_since_warning = 0;
                    }
                    let server = server.clone();
                    tokio::spawn(async move {
                        if let Err(err) = server.answer(stream).await {
                            tracing::debug!(error = %err, "metrics request failed");
                        }
                        drop(permit);
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

/// What the server's connections share.
struct Server {
    app: Application,
    connections: Arc<Semaphore>,
    /// The last broker check of `/health`: when, and whether the producer
    /// reached a broker. Locked across a check, so concurrent probes wait
    /// for one check rather than each making one.
    producer_checked: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl Server {
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
    ) -> std::io::Result<()> {
        let request = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
            Ok(request) => request?,
            Err(_) => return Ok(()),
        };
        let (head_only, response) = match parse_request_line(&request) {
            Ok((method, path)) => (method == "HEAD", self.route(path).await),
            Err(response) => (false, response),
        };
        let head = format!(
            "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            response.status,
            response.content_type,
            response.body.len()
        );
        let write = async {
            stream.write_all(head.as_bytes()).await?;
            if !head_only {
                stream.write_all(response.body.as_bytes()).await?;
            }
            stream.shutdown().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(written) => written,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not take the response in time",
            )),
        }
    }

    async fn route(&self, path: &str) -> Response {
        match path {
            "/metrics" => Response {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: self.app.metrics().encode(),
            },
            "/health" | "/live" => {
                let health = self.health().await;
                let up = if path == "/live" {
                    health.is_live()
                } else {
                    health.is_healthy()
                };
                Response {
                    status: if up {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    },
                    content_type: "application/json",
                    body: health_json(&health),
                }
            }
            _ => Response::text("404 Not Found", "not found; try /metrics, /health or /live"),
        }
    }

    /// The application's health, with a broker check at most
    /// [`HEALTH_REUSED_FOR`] old; the consumers' state is always current.
    async fn health(&self) -> Health {
        let mut checked = self.producer_checked.lock().await;
        match *checked {
            Some((at, producer)) if at.elapsed() < HEALTH_REUSED_FOR => Health {
                producer,
                consumers: self.app.consumer_health(),
            },
            _ => {
                let health = self.app.health_check().await;
                *checked = Some((Instant::now(), health.producer));
                health
            }
        }
    }
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

/// Reads up to the end of the request's head, or [`MAX_REQUEST`] bytes.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
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
                "stuck": c.stuck.iter().map(|s| json!({
                    "topic": s.topic,
                    "partition": s.partition,
                    "offset": s.offset,
                    "seconds": s.for_time.as_secs(),
                })).collect::<Vec<_>>(),
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

    fn server() -> Server {
        Server {
            app: Application::builder().build().unwrap(),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            producer_checked: tokio::sync::Mutex::new(None),
        }
    }

    #[tokio::test]
    async fn a_client_that_does_not_take_the_response_is_dropped_after_the_write_timeout() {
        let server = server();
        // Room for 16 bytes each way: the response head alone does not fit.
        let (mut client, served) = tokio::io::duplex(16);
        // The request goes in as the server reads it; the client is kept,
        // never reading.
        let client = tokio::spawn(async move {
            client
                .write_all(b"GET /health HTTP/1.1\r\n\r\n")
                .await
                .unwrap();
            client
        });
        let started = Instant::now();
        let answered = server.answer(served).await;
        assert_eq!(answered.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= WRITE_TIMEOUT);
        drop(client.await.unwrap());
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_read_timeout() {
        let server = server();
        let (client, served) = tokio::io::duplex(1024);
        let started = Instant::now();
        server.answer(served).await.unwrap();
        assert!(started.elapsed() >= READ_TIMEOUT);
        drop(client);
    }

    #[tokio::test]
    async fn the_broker_check_behind_health_is_reused_for_two_seconds() {
        let server = server();
        // As if a check had just found the broker: reused, though this
        // application has no broker at all.
        *server.producer_checked.lock().await = Some((Instant::now(), true));
        assert!(server.health().await.producer);
        tokio::time::sleep(HEALTH_REUSED_FOR).await;
        assert!(!server.health().await.producer, "checked again");
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_at_once() {
        let app = Application::builder().build().unwrap();
        let running = serve(&app, "127.0.0.1:0").await.unwrap();
        let addr = running.local_addr();
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut refused = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), refused.read_to_end(&mut buf))
            .await
            .expect("closed at once, not held");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?} {buf:?}");
        // One slot freed: served again.
        drop(idle.pop());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    }

    #[test]
    fn a_stalled_consumer_is_unhealthy_but_live() {
        let mut health = Health {
            producer: true,
            consumers: vec![ConsumerHealth {
                subscription: "index".into(),
                group: "indexer".into(),
                running: true,
                assigned: vec![],
                paused: vec![],
                stalled: Some("Local: Not implemented".into()),
                stuck: vec![],
            }],
        };
        assert!(!health.is_healthy());
        assert!(health.is_live());
        health.consumers[0].running = false;
        assert!(!health.is_live());
    }

    #[test]
    fn a_stuck_partition_makes_the_consumer_unhealthy_but_live() {
        let health = Health {
            producer: true,
            consumers: vec![ConsumerHealth {
                subscription: "index".into(),
                group: "indexer".into(),
                running: true,
                assigned: vec![("t".into(), 0)],
                paused: vec![],
                stalled: None,
                stuck: vec![crate::StuckPartition {
                    topic: "t".into(),
                    partition: 0,
                    offset: 41,
                    for_time: std::time::Duration::from_secs(31),
                }],
            }],
        };
        assert!(!health.is_healthy());
        assert!(health.is_live());
        let body: serde_json::Value = serde_json::from_str(&health_json(&health)).unwrap();
        assert_eq!(body["consumers"][0]["stuck"][0]["offset"], 41);
        assert_eq!(body["consumers"][0]["stuck"][0]["seconds"], 31);
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
                stuck: vec![],
            }],
        };
        let body: serde_json::Value = serde_json::from_str(&health_json(&health)).unwrap();
        assert_eq!(body["healthy"], false);
        assert_eq!(body["consumers"][0]["subscription"], "index");
        assert_eq!(body["consumers"][0]["assigned"][0]["partition"], 0);
        assert_eq!(body["consumers"][0]["paused"][0]["partition"], 1);
    }
}
