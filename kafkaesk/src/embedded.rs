//! An embedded Kafka-protocol broker, for development runs with nothing installed.
//!
//! Enabled by the `embedded-broker` cargo feature (on by default in the
//! `kafkaesk` command, off by default in this library). It runs the
//! [tansu](https://crates.io/crates/tansu) broker, an Apache Kafka-compatible
//! broker, inside the current process with in-memory storage:
//!
//! ```no_run
//! # async fn demo() -> Result<(), kafkaesk::Error> {
//! let broker = kafkaesk::embedded::EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).await?;
//! let mut settings = kafkaesk::Settings::default();
//! broker.configure(&mut settings);
//! let app = kafkaesk::Application::builder().settings(settings).build()?;
//! # Ok(()) }
//! ```
//!
//! [`configure`](EmbeddedBroker::configure) also sets what clients of this
//! broker should use: it holds every fetch for the consumer's whole
//! `fetch.wait.max.ms` (librdkafka's 500 ms) even when records are there,
//! so kafkaesk lowers that to 10 ms for it. The worker (`kafkaesk` without
//! `--kafka-servers`) does this itself.
//!
//! # Limits
//!
//! - Data lives only as long as the process: every topic, message and
//!   committed offset is gone when it exits.
//! - One node, no replication, no authentication or TLS.
//! - It is for development and examples, not production. Point
//!   `--kafka-servers` at a real cluster for anything that matters.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// How long the broker may take to accept connections after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A broker running inside this process until it is dropped.
#[derive(Debug)]
pub struct EmbeddedBroker {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts a broker listening on `listen`. Port 0 picks a free port; the
    /// chosen address is [`address`](Self::address).
    ///
    /// Must be called inside a multi-threaded tokio runtime, which then runs
    /// the broker. Fails with [`Error::EmbeddedBroker`] when the address is
    /// taken or the broker does not start.
    pub async fn start(listen: SocketAddr) -> Result<Self> {
        let address = concrete_address(listen)?;
        let url = url::Url::parse(&format!("tcp://{address}"))
            .map_err(|err| broker_error(format!("bad listener address {address}: {err}")))?;
        let storage = url::Url::parse("memory://kafkaesk/")
            .map_err(|err| broker_error(format!("bad storage url: {err}")))?;
        let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(tansu_broker::NODE_ID)
            .cluster_id("kafkaesk-embedded")
            .incarnation_id(uuid::Uuid::new_v4())
            .advertised_listener(url.clone())
            .storage(storage)
            .listener(url)
            .silent(true)
            .build()
            .await
            .map_err(|err| broker_error(format!("cannot build the broker: {err:?}")))?;

        let started = tokio::time::Instant::now();
        let task = tokio::spawn(async move {
            if let Err(err) = broker.serve(started).await {
                tracing::error!(error = ?err, "embedded broker stopped");
            }
        });
        let embedded = EmbeddedBroker { address, task };
        embedded.wait_until_ready().await?;
        Ok(embedded)
    }

    async fn wait_until_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if self.task.is_finished() {
                return Err(broker_error(format!(
                    "it stopped before listening on {}; is the address in use?",
                    self.address
                )));
            }
            let address = self.address;
            let connected = tokio::task::spawn_blocking(move || {
                TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
            })
            .await
            .unwrap_or(false);
            if connected {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(broker_error(format!(
                    "it did not listen on {} within {READY_TIMEOUT:?}",
                    self.address
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The address the broker listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bootstrap servers string for clients, `host:port`.
    pub fn bootstrap_servers(&self) -> String {
        self.address.to_string()
    }

    /// librdkafka properties that clients of this broker should use, where
    /// they do not set their own: a short `fetch.wait.max.ms`, since the
    /// broker holds every fetch for all of it.
    pub fn client_settings(&self) -> &'static [(&'static str, &'static str)] {
        CLIENT_SETTINGS
    }

    /// Points `settings` at this broker, and adds its
    /// [`client_settings`](Self::client_settings) where `settings` has none
    /// of its own.
    pub fn configure(&self, settings: &mut crate::Settings) {
        settings.kafka_servers = vec![self.bootstrap_servers()];
        for (key, value) in CLIENT_SETTINGS {
            settings
                .kafka_settings
                .entry((*key).to_owned())
                .or_insert_with(|| (*value).to_owned());
        }
    }
}

/// See [`EmbeddedBroker::client_settings`]. `cargo run -p simple -- --count
/// 50 --once` (start the broker, publish 50, handle them, stop) took 1.0 s
/// with 10 ms against 1.5 s with librdkafka's 500 ms; an idle consumer asks
/// once per 10 ms instead.
pub(crate) const CLIENT_SETTINGS: &[(&str, &str)] = &[("fetch.wait.max.ms", "10")];

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resolves port 0 to a free port: the broker advertises the address it is
/// given, so it must be the real one.
fn concrete_address(listen: SocketAddr) -> Result<SocketAddr> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    TcpListener::bind(listen)
        .and_then(|probe| probe.local_addr())
        .map_err(|err| broker_error(format!("cannot find a free port on {}: {err}", listen.ip())))
}

fn broker_error(reason: String) -> Error {
    Error::EmbeddedBroker(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn configured_settings_point_at_the_broker_and_keep_the_users_fetch_wait() {
        let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut settings = crate::Settings::default();
        broker.configure(&mut settings);
        assert_eq!(settings.kafka_servers, [broker.bootstrap_servers()]);
        assert_eq!(settings.kafka_settings["fetch.wait.max.ms"], "10");
        let mut own = crate::Settings::default();
        own.kafka_settings
            .insert("fetch.wait.max.ms".into(), "100".into());
        broker.configure(&mut own);
        assert_eq!(own.kafka_settings["fetch.wait.max.ms"], "100");
    }

    #[test]
    fn port_zero_becomes_a_real_port() {
        let address = concrete_address("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(address.port(), 0);
        assert_eq!(address.ip().to_string(), "127.0.0.1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_started_broker_answers_metadata_requests() {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let servers = broker.bootstrap_servers();
        let metadata = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .create()
                .unwrap();
            consumer
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|m| m.brokers().len())
        })
        .await
        .unwrap();
        assert_eq!(metadata.unwrap(), 1);
    }
}
