//! The application's connection: its settings, and the producer and admin
//! client created from them on first use.
//!
//! A worker that only consumes never creates them, and an idle producer still
//! costs a polling thread, so nothing connects until something publishes,
//! creates a topic or checks the connection. Metadata requests block in
//! librdkafka; [`Connection::metadata`] runs them off the async threads.
//!
//! When a broker cannot be reached, [`Connection::check`] asks a throw-away
//! client why, in librdkafka's words, and adds what to change where
//! librdkafka's own words do not say it (an untrusted certificate, a broker
//! that requires authentication).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::kafka::producer::Producer;
use crate::kafka::topics::TopicManager;
use crate::observe::journal::MaybeJournal;
use crate::observe::metrics::Metrics;
use crate::settings::{AckPolicy, Settings};
use crate::sync::lock;

/// The producers and the topic manager.
pub(crate) struct Clients {
    /// The producer of the application's ack policy.
    pub(crate) producer: Producer,
    pub(crate) topics: TopicManager,
    /// Producers of other ack policies, made when a publish first asks:
    /// `acks` is a producer's setting, not a message's.
    others: Mutex<HashMap<AckPolicy, Producer>>,
    settings: Settings,
    metrics: Metrics,
    journal: MaybeJournal,
    /// Transactional producers between transactions, for the next ones.
    idle_transactional: Mutex<Vec<Producer>>,
    /// How many transactional ids this instance made under its own
    /// `transactional_id` prefix: the next id's number.
    transactional_ids: AtomicU64,
    /// Per expected-offset writer id, the producer registered with it; the
    /// lock makes this process's writers of a partition take turns.
    partition_writers: Mutex<HashMap<String, PartitionWriter>>,
}

/// The registered producer of one partition's expected-offset writes, if any.
pub(crate) type PartitionWriter = Arc<tokio::sync::Mutex<Option<Producer>>>;

/// How long a transactional producer waits for the coordinator to register
/// it (and to abort what a previous producer with its id left open).
const INIT_TRANSACTIONS_TIMEOUT: Duration = Duration::from_secs(30);

impl Clients {
    /// A transactional producer for one transaction: an idle one, or a new
    /// one with the next id of this instance. Give it back with
    /// [`reuse_transactional`](Self::reuse_transactional) once its
    /// transaction ended cleanly.
    pub(crate) async fn transactional_producer(&self) -> Result<Producer> {
        if let Some(producer) = lock(&self.idle_transactional).pop() {
            return Ok(producer);
        }
        // Without a prefix of its own, every application of the process
        // shares the process's prefix, so they share one count too: two
        // applications must never register the same id, or each would fence
        // the other's transactions.
        static UNPREFIXED: AtomicU64 = AtomicU64::new(0);
        let count = match self.settings.transactional_id {
            Some(_) => &self.transactional_ids,
            None => &UNPREFIXED,
        };
        let number = count.fetch_add(1, Ordering::Relaxed);
        self.transactional_producer_with_id(&self.transactional_id(&number.to_string()))
            .await
    }

    /// The expected-offset writer of transactional id `id`.
    pub(crate) fn partition_writer(&self, id: &str) -> PartitionWriter {
        lock(&self.partition_writers)
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// Keeps `producer`, whose transaction ended, for the next transaction.
    pub(crate) fn reuse_transactional(&self, producer: Producer) {
        lock(&self.idle_transactional).push(producer);
    }

    /// This instance's transactional id ending in `suffix`.
    pub(crate) fn transactional_id(&self, suffix: &str) -> String {
        let prefix = self
            .settings
            .transactional_id
            .as_deref()
            .unwrap_or_else(|| instance_prefix());
        format!("{prefix}-{suffix}")
    }

    /// A new producer with transactional id `id`, registered with the
    /// coordinator: a previous producer with the same id is fenced, and what
    /// it left open is aborted.
    pub(crate) async fn transactional_producer_with_id(&self, id: &str) -> Result<Producer> {
        let config = self.settings.transactional_config(id)?;
        let producer = Producer::create(&config, &self.metrics, self.journal.clone())?;
        let registering = producer.clone();
        tokio::task::spawn_blocking(move || {
            registering.init_transactions(INIT_TRANSACTIONS_TIMEOUT)
        })
        .await
        .map_err(|_| Error::Stopped)?
        .map_err(|source| Error::transaction("init", source))?;
        Ok(producer)
    }

    /// The producer for `acks` (the application's policy when `None`).
    pub(crate) fn producer(&self, acks: Option<AckPolicy>) -> Result<Cow<'_, Producer>> {
        match acks {
            Some(acks) if acks != self.settings.ack_policy => {
                let mut others = lock(&self.others);
                if let Some(producer) = others.get(&acks) {
                    return Ok(Cow::Owned(producer.clone()));
                }
                let config = self.settings.producer_config(acks)?;
                let producer = Producer::create(&config, &self.metrics, self.journal.clone())?;
                others.insert(acks, producer.clone());
                Ok(Cow::Owned(producer))
            }
            _ => Ok(Cow::Borrowed(&self.producer)),
        }
    }

    /// The ack policy a publish asking for `acks` gets.
    pub(crate) fn ack_policy(&self, acks: Option<AckPolicy>) -> AckPolicy {
        acks.unwrap_or(self.settings.ack_policy)
    }

    /// Every producer made so far.
    fn producers(&self) -> Vec<Producer> {
        let mut producers = vec![self.producer.clone()];
        producers.extend(lock(&self.others).values().cloned());
        producers
    }
}

/// The transactional-id prefix of this process when the settings name none:
/// host, process id and start time, unique among running instances.
fn instance_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!(
            "kafkaesk-{}-{}-{started}",
            crate::native::host::hostname(),
            std::process::id()
        )
    })
}

/// Settings plus the clients made from them, created on first use.
pub(crate) struct Connection {
    settings: Settings,
    metrics: Metrics,
    /// Told of every message the producers queue and store.
    journal: MaybeJournal,
    clients: OnceCell<Clients>,
}

/// What the broker says of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicState {
    /// It exists, with this many partitions.
    Exists(usize),
    /// It is not listed, or has no partitions.
    Missing,
    /// The broker answered this error for it.
    Error(RDKafkaErrorCode),
}

impl Connection {
    pub(crate) fn new(settings: Settings, metrics: Metrics, journal: MaybeJournal) -> Self {
        Connection {
            settings,
            metrics,
            journal,
            clients: OnceCell::new(),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The metrics publishing and the clients record into.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The clients, if something already created them.
    pub(crate) fn clients_if_ready(&self) -> Option<&Clients> {
        self.clients.get()
    }

    /// The clients, created on first use.
    pub(crate) async fn clients(&self) -> Result<&Clients> {
        self.clients
            .get_or_try_init(|| {
                self.metrics.time_kafka_action("producer_start", async {
                    let settings = &self.settings;
                    let producer = Producer::create(
                        &settings.producer_config(settings.ack_policy)?,
                        &self.metrics,
                        self.journal.clone(),
                    )?;
                    let admin: AdminClient<DefaultClientContext> =
                        settings.admin_config()?.create()?;
                    Ok(Clients {
                        producer,
                        topics: TopicManager::new(
                            admin,
                            settings.partitions,
                            settings.effective_replication_factor(),
                            self.metrics.clone(),
                        ),
                        others: Mutex::new(HashMap::new()),
                        settings: settings.clone(),
                        metrics: self.metrics.clone(),
                        journal: self.journal.clone(),
                        idle_transactional: Mutex::new(Vec::new()),
                        transactional_ids: AtomicU64::new(0),
                        partition_writers: Mutex::new(HashMap::new()),
                    })
                })
            })
            .await
    }

    /// The cluster's metadata (of one topic, or of all), asked off the
    /// async threads. All topics through the producer, whose connection it
    /// checks; one topic through the admin client, which never asks the
    /// broker to create it (a producer's metadata request does, where the
    /// broker has `auto.create.topics.enable`, its default).
    pub(crate) async fn metadata(
        &self,
        topic: Option<&str>,
        timeout: Duration,
    ) -> Result<Metadata> {
        let clients = self.clients().await?;
        let fetched = match topic.map(str::to_owned) {
            None => {
                let producer = clients.producer.clone();
                tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
                    .await
            }
            Some(topic) => {
                let admin = clients.topics.admin();
                tokio::task::spawn_blocking(move || {
                    admin.inner().fetch_metadata(Some(&topic), timeout)
                })
                .await
            }
        };
        fetched.map_err(|_| Error::Stopped)?.map_err(Error::from)
    }

    /// What the broker says of `topic`, asked without creating it.
    pub(crate) async fn topic_state(&self, topic: &str) -> Result<TopicState> {
        let metadata = self.metadata(Some(topic), Duration::from_secs(10)).await?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(TopicState::Missing);
        };
        Ok(match found.error() {
            Some(err) => TopicState::Error(RDKafkaErrorCode::from(err)),
            None if found.partitions().is_empty() => TopicState::Missing,
            None => TopicState::Exists(found.partitions().len()),
        })
    }

    /// How many partitions `topic` has; [`Error::Topic`] with `what` in the
    /// reason when it does not exist or cannot be read.
    pub(crate) async fn partition_count(&self, topic: &str, what: &str) -> Result<usize> {
        let reason = match self.topic_state(topic).await? {
            TopicState::Exists(count) => return Ok(count),
            TopicState::Missing => format!("the {what} does not exist"),
            TopicState::Error(code) => format!("the {what} cannot be read: {code}"),
        };
        Err(Error::Topic {
            topic: topic.to_owned(),
            reason,
        })
    }

    /// Fails with [`Error::BrokerUnreachable`] unless a broker answers within
    /// `timeout`; the error says why, and what to change where that is known.
    pub(crate) async fn check(&self, timeout: Duration) -> Result<()> {
        let err = match self.metadata(None, timeout).await {
            Ok(_) => return Ok(()),
            Err(Error::Kafka(err)) => err,
            Err(other) => return Err(other),
        };
        // fetch_metadata only says the transport failed; librdkafka's error
        // callback knows why (refused certificate, failed authentication...).
        let config = self.settings.diagnostic_config()?;
        let cause = tokio::task::spawn_blocking(move || connection_failure_cause(config))
            .await
            .ok()
            .flatten();
        let reason = match cause {
            Some(cause) => format!(
                "{err}: {cause}{}",
                fix_for_cause(&cause, &self.settings.kafka_settings)
            ),
            None => err.to_string(),
        };
        Err(Error::BrokerUnreachable {
            servers: self.settings.kafka_servers.join(","),
            reason,
        })
    }

    /// Waits until every queued message is acknowledged or has failed, or
    /// `timeout` passed; does nothing if no producer was created.
    pub(crate) async fn flush(&self, timeout: Duration) -> Result<()> {
        let Some(clients) = self.clients_if_ready() else {
            return Ok(());
        };
        let producers = clients.producers();
        let flush = async {
            tokio::task::spawn_blocking(move || {
                producers
                    .iter()
                    .try_for_each(|producer| producer.flush(timeout))
            })
            .await
            .map_err(|_| Error::Stopped)?
            .map_err(Error::Kafka)
        };
        self.metrics
            .time_kafka_action("producer_flush", flush)
            .await
    }
}

/// Collects what librdkafka reports through its error and log callbacks.
#[derive(Default)]
struct ErrorCapture {
    error: Mutex<Option<String>>,
    /// The first warning logged: a broker that drops the connection is only
    /// logged ("Disconnected"), while the error says every broker is down.
    warning: Mutex<Option<String>>,
}

impl ErrorCapture {
    /// The most specific cause reported so far.
    fn cause(&self) -> Option<String> {
        let error = lock(&self.error).clone();
        match error {
            Some(error) if !is_all_brokers_down(&error) => Some(error),
            error => lock(&self.warning).clone().or(error),
        }
    }

    fn is_specific(&self) -> bool {
        self.cause()
            .is_some_and(|cause| !is_all_brokers_down(&cause))
    }
}

impl rdkafka::ClientContext for ErrorCapture {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // Transport errors come after the specific ones (SSL, SASL), so the
        // first is kept, unless it only says that every broker is down.
        let mut cause = lock(&self.error);
        if cause.as_deref().is_none_or(is_all_brokers_down) {
            *cause = Some(format!("{error}: {reason}"));
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as Level;
        // librdkafka logs a broker closing the connection as a warning while
        // requests are in flight, and as information (facility FAIL) when
        // none is: either way it is the cause the error event leaves out.
        let failure = matches!(
            level,
            Level::Emerg | Level::Alert | Level::Critical | Level::Error | Level::Warning
        ) || (facility == "FAIL" && matches!(level, Level::Notice | Level::Info));
        if failure {
            lock(&self.warning).get_or_insert_with(|| message.to_owned());
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ErrorCapture {}

/// What to change for a connection failure librdkafka describes, where its
/// own words do not always say (its certificate hint depends on the version
/// and on which of its errors arrives first).
fn fix_for_cause(cause: &str, settings: &BTreeMap<String, String>) -> &'static str {
    let plaintext = settings
        .get("security.protocol")
        .is_none_or(|protocol| protocol.eq_ignore_ascii_case("plaintext"));
    if cause.contains("certificate verify failed") && !cause.contains("ssl.ca.location") {
        "; the broker's certificate was not trusted: set `ssl.ca.location` to the CA that signed it"
    } else if plaintext && cause.contains("Disconnected") && cause.contains("in state UP") {
        // A broker that requires SASL or TLS drops a plaintext client's first
        // request, and librdkafka can only say that the connection went away.
        "; the broker closed the connection after accepting it, as brokers that require \
         authentication or TLS do: set `security.protocol` (`sasl_plaintext`, `ssl` or \
         `sasl_ssl`) and the matching `sasl.*` or `ssl.*` settings"
    } else {
        ""
    }
}

fn is_all_brokers_down(cause: &str) -> bool {
    cause.contains("brokers are down")
}

/// Connects a throw-away client to find out why connecting fails, in
/// librdkafka's words; `None` when it gives no reason within a few seconds.
fn connection_failure_cause(mut config: ClientConfig) -> Option<String> {
    use rdkafka::consumer::Consumer as _;
    // Whatever the application's own subscriber lets through: rdkafka would
    // otherwise take the level from it, and without one hear only errors.
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Info);
    let client: rdkafka::consumer::BaseConsumer<ErrorCapture> =
        config.create_with_context(ErrorCapture::default()).ok()?;
    let _ = client.fetch_metadata(None, Duration::from_secs(3));
    // Error events reach the context only while the client is polled.
    for _ in 0..10 {
        if client.context().is_specific() {
            break;
        }
        let _ = client.poll(Duration::from_millis(100));
    }
    client.context().cause()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untrusted_certificate_names_the_setting_to_fix() {
        let cause =
            "ssl://b:9093/bootstrap: error:0A000086:SSL routines::certificate verify failed";
        let plaintext = BTreeMap::new();
        assert!(fix_for_cause(cause, &plaintext).contains("ssl.ca.location"));
        assert_eq!(
            fix_for_cause("Connect to ipv4#127.0.0.1:1 failed", &plaintext),
            ""
        );
    }

    #[test]
    fn a_plaintext_client_dropped_after_connecting_is_told_about_sasl_and_tls() {
        let cause = "BrokerTransportFailure (Local: Broker transport failure): \
             127.0.0.1:9092/bootstrap: Disconnected: connection reset by peer \
             (after 0ms in state UP)";
        let plaintext = BTreeMap::new();
        assert!(fix_for_cause(cause, &plaintext).contains("security.protocol"));
        let sasl = BTreeMap::from([("security.protocol".to_owned(), "SASL_PLAINTEXT".to_owned())]);
        assert_eq!(fix_for_cause(cause, &sasl), "", "already set: no hint");
        assert!(is_all_brokers_down("1/1 brokers are down"));
    }
}
