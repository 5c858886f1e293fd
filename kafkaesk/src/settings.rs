//! The application's settings, and every librdkafka configuration built from them.
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `kafka_servers` | none | bootstrap servers; an application without them reports [`Error::AppNotConfigured`] when used |
//! | `topic_prefix` | `""` | prepended to every stream name to form the topic |
//! | `kafka_settings` | empty | librdkafka properties passed through, e.g. `security.protocol`, `sasl.*`, `ssl.*` |
//! | `replication_factor` | min(number of servers, 3) | for topics kafkaesk creates |
//! | `partitions` | 7 | for topics kafkaesk creates |
//! | `auto_commit` | on | commit handled offsets every `auto_commit_interval`, on rebalance and at shutdown |
//! | `auto_commit_interval` | 5 s | |
//! | `api_version` | `auto` | broker API version; anything else disables version probing and is used as `broker.version.fallback` |
//! | `shutdown_timeout` | 5 s | how long in-flight handlers may run after a stop before they are cancelled |
//! | `ack_policy` | [`AckPolicy::All`] | how many brokers store a message before its publish succeeds; `All` also makes the producer idempotent |
//! | `transactional_id` | `kafkaesk-HOST-PID-TIME` | prefix of this instance's transactional ids (see [`transaction`](crate::Transaction)); give each instance a stable one of its own |
//! | `schema_contracts` | [`SchemaContracts::Warn`] | register the schemas on the bus at `initialize`, and warn about conflicts (`Enforce`: refuse to start on one; `Off`: neither) |
//! | `service_name` | the executable's name | the service the schemas are registered under |
//!
//! This module is the only place where producer, admin and consumer
//! configurations are assembled: kafkaesk's defaults are applied where the
//! user's `kafka_settings` do not set the same property, and the properties
//! kafkaesk manages itself (`group.id`, `enable.auto.commit`,
//! `enable.auto.offset.store`) are refused in `kafka_settings`.
//!
//! Values of secret properties (passwords, keys, tokens) never appear in
//! `Debug` output, logs or errors: see [`is_secret_setting`].

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use crate::error::{Error, Result};

/// The stream of `topic` under `prefix`: see [`Settings::stream`].
pub(crate) fn stream_of<'t>(prefix: &str, topic: &'t str) -> &'t str {
    topic.strip_prefix(prefix).unwrap_or(topic)
}

/// librdkafka properties that kafkaesk sets itself and users may not.
const MANAGED: [&str; 3] = ["group.id", "enable.auto.commit", "enable.auto.offset.store"];

/// Whether a librdkafka property's value is a secret, never shown in Debug
/// output, logs or errors.
///
/// ```
/// assert!(kafkaesk::settings::is_secret_setting("sasl.password"));
/// assert!(!kafkaesk::settings::is_secret_setting("sasl.username"));
/// ```
pub fn is_secret_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("passphrase")
        || key.contains("secret")
        || key.contains("jaas")
        || key.contains("credential")
        || key.ends_with(".key.pem")
        || key.contains("sasl.oauthbearer.config")
        || key.contains("token")
}

/// librdkafka properties with secret values replaced by `***`, for display.
pub fn redacted(settings: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    settings
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret_setting(k) { "***" } else { v };
            (k.as_str(), shown)
        })
        .collect()
}

/// The application's Kafka settings. See the [module docs](self) for defaults.
#[derive(Clone)]
pub struct Settings {
    /// Bootstrap servers, `host:port`.
    pub kafka_servers: Vec<String>,
    /// Prepended to every stream name.
    pub topic_prefix: String,
    /// librdkafka properties passed through as they are.
    pub kafka_settings: BTreeMap<String, String>,
    /// Replication factor of created topics; `None` means min(servers, 3).
    pub replication_factor: Option<i32>,
    /// Partitions of created topics.
    pub partitions: i32,
    /// Commit handled offsets automatically.
    pub auto_commit: bool,
    /// How often offsets are committed automatically.
    pub auto_commit_interval: Duration,
    /// Broker API version, or `auto`.
    pub api_version: String,
    /// How long in-flight handlers may run after a stop.
    pub shutdown_timeout: Duration,
    /// How many brokers must store a message before its publish succeeds,
    /// unless a publish says otherwise.
    pub ack_policy: AckPolicy,
    /// Prefix of the transactional ids of this instance's transactions and
    /// exactly-once subscriptions; see [`transaction`](crate::Transaction).
    /// `None` makes one per process.
    pub transactional_id: Option<String>,
    /// What [`initialize`](crate::Application::initialize) does about the
    /// schema contracts on the bus (see [`contracts`](crate::schema::contract)).
    pub schema_contracts: SchemaContracts,
    /// The name this service registers its schemas under; `None` is the
    /// executable's name.
    pub service_name: Option<String>,
}

/// What an application does about schema contracts at
/// [`initialize`](crate::Application::initialize): see
/// [`contracts`](crate::schema::contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaContracts {
    /// Register the schemas, and refuse to start on a conflict with another
    /// service. Incompatible versions are warned about. Anyone who can
    /// write the schemas stream can then keep a service from starting:
    /// choose it where the stream's ACLs admit only your services.
    Enforce,
    /// Register the schemas, and warn about conflicts and incompatible
    /// versions (the default): start-up does not depend on what any
    /// client wrote on the stream, and `kafkaesk schemas --check` fails a
    /// CI pipeline on a conflict.
    #[default]
    Warn,
    /// Neither register nor compare.
    Off,
}

impl std::str::FromStr for SchemaContracts {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "enforce" => Ok(SchemaContracts::Enforce),
            "warn" => Ok(SchemaContracts::Warn),
            "off" => Ok(SchemaContracts::Off),
            other => Err(Error::InvalidSetting {
                name: "schema_contracts".to_owned(),
                reason: format!("`{other}` is not one of enforce, warn, off"),
            }),
        }
    }
}

/// How many brokers must store a message before its publish succeeds:
/// Liftbridge's ack policies, mapped to Kafka's `acks`.
///
/// | policy | `acks` | a publish succeeds when | a retried send |
/// |---|---|---|---|
/// | [`All`](AckPolicy::All) (default) | `all` | every in-sync replica stored it | is never duplicated: the producer is idempotent |
/// | [`Leader`](AckPolicy::Leader) | `1` | the partition's leader stored it; lost if the leader fails before a replica copies it | may be stored twice |
/// | [`None`](AckPolicy::None) | `0` | it is queued in this process; the handle does not wait for the broker at all | may be lost or stored twice, silently |
///
/// With `None` the delivery's partition and offset are `-1`: the broker says
/// nothing back. A failure to send is still logged as an error.
///
/// ```
/// let app = kafkaesk::Application::builder()
///     .ack_policy(kafkaesk::AckPolicy::Leader)
///     .build()
///     .unwrap();
/// assert_eq!(app.settings().ack_policy, kafkaesk::AckPolicy::Leader);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AckPolicy {
    /// Fire and forget: no acknowledgement.
    None,
    /// The partition leader's acknowledgement.
    Leader,
    /// Every in-sync replica's acknowledgement, with an idempotent producer.
    #[default]
    All,
}

impl AckPolicy {
    /// Kafka's `acks` for the policy.
    pub fn acks(self) -> &'static str {
        match self {
            AckPolicy::None => "0",
            AckPolicy::Leader => "1",
            AckPolicy::All => "all",
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kafka_servers: Vec::new(),
            topic_prefix: String::new(),
            kafka_settings: BTreeMap::new(),
            replication_factor: None,
            partitions: 7,
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            api_version: "auto".to_owned(),
            shutdown_timeout: Duration::from_secs(5),
            ack_policy: AckPolicy::default(),
            transactional_id: None,
            schema_contracts: SchemaContracts::default(),
            service_name: None,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("kafka_servers", &self.kafka_servers)
            .field("topic_prefix", &self.topic_prefix)
            .field("kafka_settings", &redacted(&self.kafka_settings))
            .field("replication_factor", &self.replication_factor)
            .field("partitions", &self.partitions)
            .field("auto_commit", &self.auto_commit)
            .field("auto_commit_interval", &self.auto_commit_interval)
            .field("api_version", &self.api_version)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("ack_policy", &self.ack_policy)
            .field("transactional_id", &self.transactional_id)
            .field("schema_contracts", &self.schema_contracts)
            .field("service_name", &self.service_name)
            .finish()
    }
}

impl Settings {
    /// The name this service registers its schemas under: `service_name`,
    /// or the executable's file name.
    pub fn effective_service_name(&self) -> String {
        self.service_name.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "unknown".to_owned())
        })
    }

    /// The replication factor used for created topics.
    pub fn effective_replication_factor(&self) -> i32 {
        self.replication_factor
            .unwrap_or_else(|| self.kafka_servers.len().clamp(1, 3) as i32)
    }

    /// The topic for a stream: `topic_prefix + stream`.
    pub fn topic(&self, stream: &str) -> String {
        format!("{}{}", self.topic_prefix, stream)
    }

    /// The stream of a topic: the topic without `topic_prefix` (the topic
    /// itself when it lacks the prefix). The inverse of [`topic`](Self::topic).
    pub fn stream<'t>(&self, topic: &'t str) -> &'t str {
        stream_of(&self.topic_prefix, topic)
    }

    /// Checks every value; the error names the setting and what to fix.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name: &str, reason: &str| {
            Err(Error::InvalidSetting {
                name: name.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if self.partitions < 1 {
            return invalid("partitions", "must be at least 1");
        }
        if matches!(self.replication_factor, Some(n) if n < 1) {
            return invalid("replication_factor", "must be at least 1");
        }
        if self.auto_commit_interval.is_zero() {
            return invalid("auto_commit_interval", "must be longer than zero");
        }
        if self.kafka_servers.iter().any(|s| s.trim().is_empty()) {
            return invalid("kafka_servers", "contains an empty server address");
        }
        if let Some(reserved) = MANAGED
            .iter()
            .find(|key| self.kafka_settings.contains_key(**key))
        {
            return invalid(
                "kafka_settings",
                &format!(
                    "`{reserved}` is managed by kafkaesk; use the subscription's group and \
                     the `auto_commit` setting instead"
                ),
            );
        }
        if let Some(acks) = ["acks", "request.required.acks"]
            .iter()
            .find(|key| self.kafka_settings.contains_key(**key))
        {
            return invalid(
                "kafka_settings",
                &format!(
                    "`{acks}` is chosen by the ack policy; set `ack_policy` (AckPolicy::All, \
                     Leader or None) for the application, or per publish"
                ),
            );
        }
        if self.kafka_settings.contains_key("transactional.id") {
            return invalid(
                "kafka_settings",
                "`transactional.id` is given to each transactional producer by kafkaesk; set \
                 `transactional_id`, the prefix of this instance's ids, instead",
            );
        }
        if matches!(&self.transactional_id, Some(id) if id.trim().is_empty()) {
            return invalid(
                "transactional_id",
                "is empty; leave it unset or name the instance",
            );
        }
        Ok(())
    }

    /// What producers, consumers and admin clients share: servers, API
    /// version and the user's properties, less those librdkafka reads only
    /// in the other kind of client (it warns of each it ignores).
    fn client_config(&self, kind: ClientKind) -> Result<ClientConfig> {
        if self.kafka_servers.is_empty() {
            return Err(Error::AppNotConfigured(
                "no Kafka servers; set `kafka_servers` (or --kafka-servers / KAFKAESK_KAFKA_SERVERS)"
                    .to_owned(),
            ));
        }
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.kafka_servers.join(","));
        if self.api_version != "auto" {
            config.set("api.version.request", "false");
            config.set("broker.version.fallback", &self.api_version);
        }
        for (key, value) in &self.kafka_settings {
            if kind.reads(key) {
                config.set(key, value);
            }
        }
        Ok(config)
    }

    /// Sets `key` unless the user's `kafka_settings` do.
    fn default_to(&self, config: &mut ClientConfig, key: &str, value: &str) {
        if !self.kafka_settings.contains_key(key) {
            config.set(key, value);
        }
    }

    /// The configuration of the producer for `acks`.
    pub(crate) fn producer_config(&self, acks: AckPolicy) -> Result<ClientConfig> {
        let mut config = self.client_config(ClientKind::Producer)?;
        // Small batches, sent soon: good for throughput and latency alike.
        self.default_to(&mut config, "linger.ms", "5");
        // Keys where the Java client and aiokafka put them (see
        // `publish::partition`).
        self.default_to(&mut config, "partitioner", "murmur2_random");
        config.set("acks", acks.acks());
        match acks {
            // A retried send is never stored twice, nor out of order.
            AckPolicy::All => self.default_to(&mut config, "enable.idempotence", "true"),
            // Idempotence needs acks=all.
            AckPolicy::Leader | AckPolicy::None => {
                config.set("enable.idempotence", "false");
            }
        }
        // Statistics are read by consumers only (for their lag); nothing
        // would read the producer's.
        config.set("statistics.interval.ms", "0");
        Ok(config)
    }

    /// The configuration of a transactional producer with `id`: acks from
    /// every in-sync replica and idempotence, as transactions require.
    pub(crate) fn transactional_config(&self, id: &str) -> Result<ClientConfig> {
        let mut config = self.producer_config(AckPolicy::All)?;
        config.set("enable.idempotence", "true");
        config.set("transactional.id", id);
        Ok(config)
    }

    /// The admin client's configuration: topics are created by kafkaesk, never
    /// by the broker on first use.
    pub(crate) fn admin_config(&self) -> Result<ClientConfig> {
        // librdkafka's admin clients are producers.
        let mut config = self.client_config(ClientKind::Producer)?;
        config.set("allow.auto.create.topics", "false");
        config.set("statistics.interval.ms", "0");
        Ok(config)
    }

    /// A configuration for throw-away diagnostic clients.
    pub(crate) fn diagnostic_config(&self) -> Result<ClientConfig> {
        // The diagnostic client is a consumer (see `clients`).
        self.client_config(ClientKind::Consumer)
    }

    /// A subscription's consumer in `group`: offsets are stored and committed
    /// by kafkaesk only, once records are handled.
    ///
    /// `per_partition_queues` is for a consumer that reads each partition
    /// from the partition's own queue (an ordered subscription), where
    /// librdkafka's prefetch bound holds for each partition on its own.
    pub(crate) fn consumer_config(
        &self,
        group: &str,
        per_partition_queues: bool,
    ) -> Result<ClientConfig> {
        let mut config = self.client_config(ClientKind::Consumer)?;
        config.set("group.id", group);
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        self.default_to(&mut config, "auto.offset.reset", "earliest");
        // Messages of aborted transactions are never handled, and those of
        // open ones wait for their commit (librdkafka's default, made explicit).
        self.default_to(&mut config, "isolation.level", "read_committed");
        self.default_to(&mut config, "topic.metadata.refresh.interval.ms", "5000");
        // Bound the prefetch so a backlog never grows the heap: for all the
        // partitions of a queue they forward to, or for each partition that
        // keeps its own queue, so a share of it there (7 partitions of an
        // ordered subscription prefetch up to 28 MB, not 112 MB).
        let prefetch_kbytes = if per_partition_queues {
            "4096"
        } else {
            "16384"
        };
        self.default_to(&mut config, "queued.max.messages.kbytes", prefetch_kbytes);
        // With the prefetch full, librdkafka waits this long before fetching
        // again (1 s by default), which stalls a consumer that drains its
        // queue quickly; the check is local and cheap.
        self.default_to(&mut config, "fetch.queue.backoff.ms", "10");
        // Statistics carry each partition's lag, for `kafkaesk_consumer_lag`.
        self.default_to(&mut config, "statistics.interval.ms", "5000");
        Ok(config)
    }

    /// [`reader_config`](Self::reader_config), reading committed records
    /// only whatever `kafka_settings` say: readers and expected-offset checks
    /// must never see what a transaction may still abort.
    pub(crate) fn committed_reader_config(&self, group: &str) -> Result<ClientConfig> {
        let mut config = self.reader_config(group)?;
        config.set("isolation.level", "read_committed");
        Ok(config)
    }

    /// A consumer that reads a topic to its end once, in `group`, reporting
    /// the end of each partition.
    pub(crate) fn reader_config(&self, group: &str) -> Result<ClientConfig> {
        let mut config = self.client_config(ClientKind::Consumer)?;
        config.set("group.id", group);
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        config.set("enable.partition.eof", "true");
        config.set("statistics.interval.ms", "0");
        self.default_to(&mut config, "auto.offset.reset", "earliest");
        Ok(config)
    }
}

/// Which kind of librdkafka client a configuration is for.
#[derive(Clone, Copy)]
enum ClientKind {
    Producer,
    Consumer,
}

impl ClientKind {
    /// Whether this kind of client reads `property`: false for those
    /// librdkafka's CONFIGURATION.md marks as the other kind's only.
    fn reads(self, property: &str) -> bool {
        match self {
            ClientKind::Producer => !CONSUMER_ONLY.contains(&property),
            ClientKind::Consumer => !PRODUCER_ONLY.contains(&property),
        }
    }
}

/// Properties only consumers read (`C` in librdkafka 2.12's CONFIGURATION.md).
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.offset.reset",
    "consume.callback.max.messages",
];

/// Properties only producers read (`P` in librdkafka 2.12's CONFIGURATION.md).
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: &str, value: &str) -> Settings {
        Settings {
            kafka_servers: vec!["k:9092".into()],
            kafka_settings: BTreeMap::from([(key.to_owned(), value.to_owned())]),
            ..Settings::default()
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut settings = with("sasl.password", "hunter2");
        settings
            .kafka_settings
            .insert("ssl.key.password".into(), "hunter3".into());
        settings
            .kafka_settings
            .insert("sasl.username".into(), "alice".into());
        let text = format!("{settings:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("hunter3"),
            "{text}"
        );
        assert!(text.contains("alice"), "{text}");
    }

    #[test]
    fn each_kind_of_client_gets_only_the_properties_it_reads() {
        let mut settings = with("fetch.wait.max.ms", "5");
        settings
            .kafka_settings
            .insert("linger.ms".into(), "20".into());
        settings
            .kafka_settings
            .insert("socket.timeout.ms".into(), "7000".into());
        let consumer = settings.consumer_config("g", false).unwrap();
        let producer = settings.producer_config(AckPolicy::All).unwrap();
        let admin = settings.admin_config().unwrap();
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("5"));
        assert_eq!(consumer.get("linger.ms"), None);
        assert_eq!(producer.get("fetch.wait.max.ms"), None);
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(admin.get("fetch.wait.max.ms"), None);
        for config in [&consumer, &producer, &admin] {
            assert_eq!(config.get("socket.timeout.ms"), Some("7000"));
        }
    }

    #[test]
    fn a_consumer_of_partition_queues_prefetches_a_share_per_partition() {
        let plain = with("linger.ms", "5");
        let shared = plain.consumer_config("g", false).unwrap();
        let per_partition = plain.consumer_config("g", true).unwrap();
        assert_eq!(shared.get("queued.max.messages.kbytes"), Some("16384"));
        assert_eq!(
            per_partition.get("queued.max.messages.kbytes"),
            Some("4096")
        );
        let chosen = with("queued.max.messages.kbytes", "1024");
        for per_partition_queues in [false, true] {
            let config = chosen.consumer_config("g", per_partition_queues).unwrap();
            assert_eq!(config.get("queued.max.messages.kbytes"), Some("1024"));
        }
    }

    #[test]
    fn no_servers_is_app_not_configured() {
        assert!(matches!(
            Settings::default().producer_config(AckPolicy::All),
            Err(Error::AppNotConfigured(_))
        ));
    }

    #[test]
    fn replication_factor_defaults_to_servers_capped_at_three() {
        let settings = |n: usize| Settings {
            kafka_servers: (0..n).map(|i| format!("k{i}:9092")).collect(),
            ..Settings::default()
        };
        assert_eq!(settings(1).effective_replication_factor(), 1);
        assert_eq!(settings(5).effective_replication_factor(), 3);
    }

    #[test]
    fn managed_librdkafka_properties_are_refused() {
        for key in MANAGED {
            let err = with(key, "x").validate().unwrap_err();
            assert!(matches!(err, Error::InvalidSetting { .. }), "{err}");
        }
    }

    #[test]
    fn user_properties_win_over_kafkaesk_defaults_but_not_managed_ones() {
        let settings = with("auto.offset.reset", "latest");
        let config = settings.consumer_config("g", false).unwrap();
        assert_eq!(config.get("auto.offset.reset"), Some("latest"));
        assert_eq!(config.get("group.id"), Some("g"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("10"));
        let producer = with("linger.ms", "50")
            .producer_config(AckPolicy::All)
            .unwrap();
        assert_eq!(producer.get("linger.ms"), Some("50"));
        let admin = Settings::default();
        assert!(admin.admin_config().is_err());
    }

    #[test]
    fn producers_place_keys_like_java_and_are_idempotent_when_all_replicas_ack() {
        let settings = with("linger.ms", "5");
        let all = settings.producer_config(AckPolicy::All).unwrap();
        assert_eq!(all.get("partitioner"), Some("murmur2_random"));
        assert_eq!(all.get("acks"), Some("all"));
        assert_eq!(all.get("enable.idempotence"), Some("true"));
        let leader = settings.producer_config(AckPolicy::Leader).unwrap();
        assert_eq!(leader.get("acks"), Some("1"));
        assert_eq!(leader.get("enable.idempotence"), Some("false"));
        let none = settings.producer_config(AckPolicy::None).unwrap();
        assert_eq!(none.get("acks"), Some("0"));
        let chosen = with("partitioner", "consistent_random")
            .producer_config(AckPolicy::All)
            .unwrap();
        assert_eq!(chosen.get("partitioner"), Some("consistent_random"));
        for acks in ["acks", "request.required.acks"] {
            let err = with(acks, "1").validate().unwrap_err();
            assert!(err.to_string().contains("ack_policy"), "{err}");
        }
    }

    #[test]
    fn transactional_producers_get_their_id_and_all_acks_and_consumers_read_committed() {
        let settings = with("acks", "1");
        let config = settings.transactional_config("svc-1-0").unwrap();
        assert_eq!(config.get("transactional.id"), Some("svc-1-0"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        let plain = with("linger.ms", "5");
        let consumer = plain.consumer_config("g", false).unwrap();
        assert_eq!(consumer.get("isolation.level"), Some("read_committed"));
        assert_eq!(
            plain
                .producer_config(AckPolicy::All)
                .unwrap()
                .get("transactional.id"),
            None
        );
    }

    #[test]
    fn transactional_ids_are_chosen_by_the_prefix_setting() {
        let err = with("transactional.id", "x").validate().unwrap_err();
        assert!(err.to_string().contains("`transactional_id`"), "{err}");
        let mut empty = with("linger.ms", "5");
        empty.transactional_id = Some("  ".into());
        let err = empty.validate().unwrap_err();
        assert!(err.to_string().contains("transactional_id"), "{err}");
    }
}
