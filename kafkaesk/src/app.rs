//! The application: a router plus Kafka configuration, and its lifecycle.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kafkaesk::Error> {
//! let app = kafkaesk::Application::builder()
//!     .kafka_servers(["localhost:9092"])
//!     .topic_prefix("dev.")
//!     .kafka_setting("security.protocol", "plaintext")
//!     .with_registry()? // every #[schema] and #[subscribe] linked in
//!     .build()?;
//! app.run().await // until SIGINT or SIGTERM
//! # }
//! ```
//!
//! # Settings
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

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use serde::Serialize;
use tokio::sync::{watch, OnceCell};
use tokio::task::JoinSet;

use crate::consumer::{self, RunControl};
use crate::error::{Error, Result};
use crate::producer::Producer;
use crate::publish::{Publish, RawPublish};
use crate::router::{Router, Subscription};
use crate::schema::SchemaInfo;
use crate::topics::TopicManager;

/// librdkafka properties whose values never appear in Debug output, logs or errors.
pub(crate) fn is_secret_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("passphrase")
        || key.contains("secret")
        || key.contains("jaas")
        || key.contains("credential")
        || key.ends_with(".key.pem")
        || key == "ssl.key.pem"
        || key.contains("sasl.oauthbearer.config")
        || key.contains("token")
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
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted: BTreeMap<&str, &str> = self
            .kafka_settings
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_setting(k) { "***" } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("Settings")
            .field("kafka_servers", &self.kafka_servers)
            .field("topic_prefix", &self.topic_prefix)
            .field("kafka_settings", &redacted)
            .field("replication_factor", &self.replication_factor)
            .field("partitions", &self.partitions)
            .field("auto_commit", &self.auto_commit)
            .field("auto_commit_interval", &self.auto_commit_interval)
            .field("api_version", &self.api_version)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

impl Settings {
    /// The replication factor used for created topics.
    pub fn effective_replication_factor(&self) -> i32 {
        self.replication_factor
            .unwrap_or_else(|| self.kafka_servers.len().clamp(1, 3) as i32)
    }

    /// The topic for a stream: `topic_prefix + stream`.
    pub fn topic(&self, stream: &str) -> String {
        format!("{}{}", self.topic_prefix, stream)
    }

    /// librdkafka configuration shared by producers, consumers and admin clients.
    pub(crate) fn client_config(&self) -> Result<ClientConfig> {
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
            config.set(key, value);
        }
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
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
        for reserved in ["group.id", "enable.auto.commit", "enable.auto.offset.store"] {
            if self.kafka_settings.contains_key(reserved) {
                return invalid(
                    "kafka_settings",
                    &format!(
                        "`{reserved}` is managed by kafkaesk; use the subscription's group and \
                         the `auto_commit` setting instead"
                    ),
                );
            }
        }
        Ok(())
    }
}

type Hook =
    Arc<dyn Fn(Application) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// Builds an [`Application`].
///
/// ```
/// use std::time::Duration;
///
/// let app = kafkaesk::Application::builder()
///     .kafka_servers(["a:9092", "b:9092"])
///     .topic_prefix("test.")
///     .auto_commit_interval(Duration::from_secs(1))
///     .build()
///     .unwrap();
/// assert_eq!(app.settings().effective_replication_factor(), 2);
/// ```
#[must_use]
#[derive(Default)]
pub struct ApplicationBuilder {
    settings: Settings,
    router: Router,
    pending_error: Option<Error>,
    on_initialize: Vec<Hook>,
    on_finalize: Vec<Hook>,
}

impl ApplicationBuilder {
    /// Sets the bootstrap servers.
    pub fn kafka_servers<S: Into<String>>(mut self, servers: impl IntoIterator<Item = S>) -> Self {
        self.settings.kafka_servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the topic prefix.
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.topic_prefix = prefix.into();
        self
    }

    /// Adds librdkafka properties, passed through as they are.
    pub fn kafka_settings<K: Into<String>, V: Into<String>>(
        mut self,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in settings {
            self.settings.kafka_settings.insert(k.into(), v.into());
        }
        self
    }

    /// Adds one librdkafka property.
    pub fn kafka_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings
            .kafka_settings
            .insert(key.into(), value.into());
        self
    }

    /// Sets the replication factor of created topics.
    pub fn replication_factor(mut self, factor: i32) -> Self {
        self.settings.replication_factor = Some(factor);
        self
    }

    /// Sets the partitions of created topics.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.settings.partitions = partitions;
        self
    }

    /// Turns automatic offset commits on or off.
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.settings.auto_commit = on;
        self
    }

    /// Sets how often offsets are committed automatically.
    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.settings.auto_commit_interval = interval;
        self
    }

    /// Sets the broker API version (`auto` by default).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.settings.api_version = version.into();
        self
    }

    /// Sets how long in-flight handlers may run after a stop.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Replaces all settings at once.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Merges a router's schemas and subscriptions. A schema conflict is
    /// reported by [`build`](Self::build).
    pub fn mount(mut self, router: Router) -> Self {
        if let Err(err) = self.router.mount(router) {
            self.pending_error.get_or_insert(err);
        }
        self
    }

    /// Adds a single subscription.
    pub fn subscribe(mut self, subscription: Subscription) -> Self {
        self.router.subscribe(subscription);
        self
    }

    /// Mounts everything registered with `#[schema]` and `#[subscribe]`.
    pub fn with_registry(self) -> Result<Self> {
        let router = Router::from_registry()?;
        Ok(self.mount(router))
    }

    /// Runs `hook` when the application initializes, after its clients exist.
    pub fn on_initialize<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Application) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.on_initialize
            .push(Arc::new(move |app| Box::pin(hook(app))));
        self
    }

    /// Runs `hook` when the application finalizes, before its producer is flushed.
    pub fn on_finalize<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Application) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.on_finalize
            .push(Arc::new(move |app| Box::pin(hook(app))));
        self
    }

    /// Checks the settings and builds the application. Nothing connects yet.
    pub fn build(self) -> Result<Application> {
        if let Some(err) = self.pending_error {
            return Err(err);
        }
        self.settings.validate()?;
        for sub in self.router.subscriptions() {
            sub.validate()?;
        }
        Ok(Application::from_parts(
            self.settings,
            self.router,
            self.on_initialize,
            self.on_finalize,
        ))
    }
}

pub(crate) struct Clients {
    pub(crate) producer: Producer,
    pub(crate) topics: TopicManager,
}

struct Inner {
    settings: Settings,
    router: RwLock<Router>,
    schemas: RwLock<HashMap<TypeId, Arc<SchemaInfo>>>,
    clients: OnceCell<Clients>,
    stop: watch::Sender<bool>,
    on_initialize: Vec<Hook>,
    on_finalize: Mutex<Vec<Hook>>,
    stats: Mutex<HashMap<String, Arc<SubscriptionCounters>>>,
    consumers: Mutex<HashMap<String, ConsumerHealth>>,
    initialized: AtomicBool,
}

/// Counters of one subscription, shared with its consumer.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionCounters {
    pub(crate) handled: AtomicU64,
    pub(crate) unhandled: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
}

/// What one subscription has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Records handed to the handler that returned successfully.
    pub handled: u64,
    /// Records that could not be decoded and were skipped.
    pub unhandled: u64,
    /// Records whose handler failed, panicked or timed out, after any retries.
    pub failed: u64,
    /// Retries of failed handlers (see [`ErrorPolicy`](crate::ErrorPolicy)).
    pub retried: u64,
    /// Failed records skipped and committed by the error policy.
    pub skipped: u64,
    /// Failed records published to a dead-letter stream and committed.
    pub dead_lettered: u64,
}

/// The state of one subscription's consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHealth {
    /// Subscription name.
    pub subscription: String,
    /// Consumer group.
    pub group: String,
    /// Whether the consumer loop is running.
    pub running: bool,
    /// Partitions currently assigned, as `(topic, partition)`.
    pub assigned: Vec<(String, i32)>,
}

/// The result of [`Application::health_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether the producer reached a broker just now.
    pub producer: bool,
    /// Every consumer started by the current run.
    pub consumers: Vec<ConsumerHealth>,
}

impl Health {
    /// True when the producer is usable and every consumer is running.
    pub fn is_healthy(&self) -> bool {
        self.producer && self.consumers.iter().all(|c| c.running)
    }
}

/// A router plus Kafka configuration: publishes messages and runs consumers.
///
/// Cheap to clone; clones share clients and state. Handlers can take it as a parameter.
#[derive(Clone)]
pub struct Application {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Starts building an application.
    pub fn builder() -> ApplicationBuilder {
        ApplicationBuilder::default()
    }

    fn from_parts(
        settings: Settings,
        router: Router,
        on_initialize: Vec<Hook>,
        on_finalize: Vec<Hook>,
    ) -> Self {
        let (stop, _) = watch::channel(false);
        Application {
            inner: Arc::new(Inner {
                schemas: RwLock::new(router.schema_map()),
                router: RwLock::new(router),
                settings,
                clients: OnceCell::new(),
                stop,
                on_initialize,
                on_finalize: Mutex::new(on_finalize),
                stats: Mutex::new(HashMap::new()),
                consumers: Mutex::new(HashMap::new()),
                initialized: AtomicBool::new(false),
            }),
        }
    }

    /// A new application with the same schemas, subscriptions and hooks, and
    /// settings changed by `change`. It shares no clients with this one.
    ///
    /// ```
    /// let app = kafkaesk::Application::builder().build().unwrap();
    /// let app = app.reconfigure(|s| s.kafka_servers = vec!["k:9092".into()]).unwrap();
    /// assert_eq!(app.settings().kafka_servers, ["k:9092"]);
    /// ```
    pub fn reconfigure(&self, change: impl FnOnce(&mut Settings)) -> Result<Application> {
        let mut settings = self.inner.settings.clone();
        change(&mut settings);
        settings.validate()?;
        Ok(Application::from_parts(
            settings,
            self.router(),
            self.inner.on_initialize.clone(),
            lock(&self.inner.on_finalize).clone(),
        ))
    }

    /// The application's settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Merges a router into a built application. Its subscriptions are run by
    /// the next `run` or `consume_for`.
    pub fn mount(&self, router: Router) -> Result<()> {
        for sub in router.subscriptions() {
            sub.validate()?;
        }
        let mut current = write_lock(&self.inner.router);
        let mut merged = current.clone();
        merged.mount(router)?;
        *write_lock(&self.inner.schemas) = merged.schema_map();
        *current = merged;
        Ok(())
    }

    /// A copy of the application's router.
    pub fn router(&self) -> Router {
        read_lock(&self.inner.router).clone()
    }

    /// The schema used to publish `T`: its registration, or `"<TypeName>:1"`.
    pub(crate) fn schema_info<T: Serialize + schemars::JsonSchema + 'static>(
        &self,
    ) -> Result<Arc<SchemaInfo>> {
        let type_id = TypeId::of::<T>();
        if let Some(info) = read_lock(&self.inner.schemas).get(&type_id) {
            return Ok(info.clone());
        }
        let info = Arc::new(SchemaInfo::unregistered::<T>()?);
        let mut schemas = write_lock(&self.inner.schemas);
        Ok(schemas.entry(type_id).or_insert(info).clone())
    }

    /// The producer and topic manager, if a publish already created them.
    pub(crate) fn clients_if_ready(&self) -> Option<&Clients> {
        self.inner.clients.get()
    }

    /// The producer and topic manager, created on first use.
    pub(crate) async fn clients(&self) -> Result<&Clients> {
        self.inner
            .clients
            .get_or_try_init(|| async {
                let settings = &self.inner.settings;
                let mut producer_config = settings.client_config()?;
                // Small batches, sent soon: good for throughput and latency alike.
                set_default(
                    &mut producer_config,
                    &settings.kafka_settings,
                    "linger.ms",
                    "5",
                );
                let producer = Producer::create(&producer_config)?;
                let mut admin_config = settings.client_config()?;
                admin_config.set("allow.auto.create.topics", "false");
                let admin: AdminClient<DefaultClientContext> = admin_config.create()?;
                Ok(Clients {
                    producer,
                    topics: TopicManager::new(
                        admin,
                        settings.partitions,
                        settings.effective_replication_factor(),
                    ),
                })
            })
            .await
    }

    /// Connects and creates every stream the schemas name, then runs the
    /// `on_initialize` hooks. Called by [`run`](Self::run); call it yourself
    /// before [`consume_for`](Self::consume_for) if you need the streams to exist.
    pub async fn initialize(&self) -> Result<()> {
        let clients = self.clients().await?;
        self.check_connection(Duration::from_secs(10)).await?;
        let schemas: Vec<Arc<SchemaInfo>> =
            read_lock(&self.inner.schemas).values().cloned().collect();
        for schema in schemas {
            for stream in schema.streams() {
                let topic = self.inner.settings.topic(stream);
                clients.topics.ensure(&topic, schema.retention()).await?;
            }
        }
        for hook in &self.inner.on_initialize {
            hook(self.clone()).await?;
        }
        self.inner.initialized.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Fails with [`Error::BrokerUnreachable`] unless a broker answers within `timeout`.
    pub async fn check_connection(&self, timeout: Duration) -> Result<()> {
        let producer = self.clients().await?.producer.clone();
        let servers = self.inner.settings.kafka_servers.join(",");
        let answered = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|_| ())
        })
        .await
        .map_err(|_| Error::Stopped)?;
        let Err(err) = answered else {
            return Ok(());
        };
        // fetch_metadata only says the transport failed; librdkafka's error
        // callback knows why (refused certificate, failed authentication...).
        let config = self.inner.settings.client_config()?;
        let cause = tokio::task::spawn_blocking(move || connection_failure_cause(config))
            .await
            .ok()
            .flatten();
        let reason = match cause {
            Some(cause) => format!(
                "{err}: {cause}{}",
                fix_for_cause(&cause, &self.inner.settings.kafka_settings)
            ),
            None => err.to_string(),
        };
        Err(Error::BrokerUnreachable { servers, reason })
    }

    /// Adds a hook that [`finalize`](Self::finalize) runs, after those given to
    /// the builder, before the producer is flushed. For components that get a
    /// built application, such as [`logging::KafkaLayer`](crate::logging::KafkaLayer),
    /// which flushes its queue this way.
    pub fn on_finalize<F, Fut>(&self, hook: F)
    where
        F: Fn(Application) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        lock(&self.inner.on_finalize).push(Arc::new(move |app| Box::pin(hook(app))));
    }

    /// Stops running consumers, runs the `on_finalize` hooks and flushes the producer.
    pub async fn finalize(&self) -> Result<()> {
        self.stop();
        let mut first_error = None;
        let hooks = lock(&self.inner.on_finalize).clone();
        for hook in &hooks {
            if let Err(err) = hook(self.clone()).await {
                first_error.get_or_insert(err);
            }
        }
        if self.inner.clients.initialized() {
            if let Err(err) = self.flush().await {
                first_error.get_or_insert(err);
            }
        }
        self.inner.initialized.store(false, Ordering::SeqCst);
        first_error.map_or(Ok(()), Err)
    }

    /// Queues `data` for `stream` and returns a handle to the broker's acknowledgement.
    ///
    /// The data is validated against its schema first; invalid data is an
    /// [`Error::Validation`] and nothing is sent. Add a key or headers with the
    /// returned builder:
    ///
    /// ```no_run
    /// # #[kafkaesk::schema("Content")]
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # pub struct ContentMessage { pub foo: String }
    /// # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
    /// let data = ContentMessage { foo: "bar".into() };
    /// let ack = app.publish("content.edited", &data).key("doc-1").header("trace", "abc").await?;
    /// let delivery = ack.await?; // partition and offset
    /// # Ok(()) }
    /// ```
    pub fn publish<'a, T>(&'a self, stream: &'a str, data: &'a T) -> Publish<'a, T>
    where
        T: Serialize + schemars::JsonSchema + Sync + 'static,
    {
        Publish::new(self, stream, data)
    }

    /// Publishes `data` and waits for the broker's acknowledgement.
    pub async fn publish_and_wait<T>(&self, stream: &str, data: &T) -> Result<crate::Delivery>
    where
        T: Serialize + schemars::JsonSchema + Sync + 'static,
    {
        self.publish(stream, data).await?.await
    }

    /// Publishes bytes as they are, without envelope or validation.
    pub fn raw_publish<'a>(&'a self, stream: &'a str, value: impl Into<Vec<u8>>) -> RawPublish<'a> {
        RawPublish::new(self, stream, value.into())
    }

    /// Republishes every record in the dead-letter `stream` to the topic it was
    /// consumed from, untouched (value, key and original headers; the
    /// `kafkaesk-dlq-*` headers are removed), and returns how many were
    /// republished.
    ///
    /// Reads until the end of every partition of the dead-letter stream, then
    /// commits in the group `kafkaesk-replay.<topic>`, so a second call only
    /// replays what was dead-lettered since. Fails with [`Error::Timeout`] if
    /// that takes longer than `timeout` (what was republished by then is
    /// committed), and with [`Error::Topic`] if the stream does not exist.
    ///
    /// ```no_run
    /// # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
    /// let replayed = app.replay_dead_letters("orders.dead", std::time::Duration::from_secs(60)).await?;
    /// println!("{replayed} records are back on their topics");
    /// # Ok(()) }
    /// ```
    pub async fn replay_dead_letters(&self, stream: &str, timeout: Duration) -> Result<usize> {
        crate::policy::replay(self, stream, timeout).await
    }

    /// Waits until every queued message is acknowledged or has failed.
    pub async fn flush(&self) -> Result<()> {
        let producer = self.clients().await?.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await
            .map_err(|_| Error::Stopped)?
            .map_err(Error::Kafka)
    }

    /// Runs every subscription until `num_messages` records were consumed in
    /// total or `timeout` passed, and returns how many were consumed.
    ///
    /// A handler error stops all consumers and is returned.
    pub async fn consume_for(&self, num_messages: usize, timeout: Duration) -> Result<usize> {
        self.consume(Some(num_messages), Some(timeout), false).await
    }

    /// Runs every subscription until [`stop`](Self::stop) is called or a handler fails.
    pub async fn consume_forever(&self) -> Result<()> {
        self.consume(None, None, false).await.map(|_| ())
    }

    /// Initializes, consumes until SIGINT, SIGTERM, [`stop`](Self::stop) or a
    /// handler error, then finalizes: in-flight handlers finish (or are cancelled
    /// after `shutdown_timeout`), offsets are committed and the producer is flushed.
    pub async fn run(&self) -> Result<()> {
        self.initialize().await?;
        let consumed = self.consume(None, None, true).await;
        let finalized = self.finalize().await;
        consumed.and(finalized)
    }

    /// Asks running consumers to stop.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Whether the producer reaches a broker and every consumer is running.
    pub async fn health_check(&self) -> Health {
        // A worker that has only consumed so far has no producer yet; once a
        // run has started, the check makes it. Before, there is nothing to check.
        let started = !lock(&self.inner.consumers).is_empty();
        let clients = match self.inner.clients.get() {
            Some(clients) => Some(clients),
            None if started => self.clients().await.ok(),
            None => None,
        };
        let producer = match clients {
            Some(clients) => {
                let producer = clients.producer.clone();
                tokio::task::spawn_blocking(move || {
                    producer
                        .client()
                        .fetch_metadata(None, Duration::from_secs(5))
                        .is_ok()
                })
                .await
                .unwrap_or(false)
            }
            None => false,
        };
        let consumers = lock(&self.inner.consumers).values().cloned().collect();
        Health {
            producer,
            consumers,
        }
    }

    /// Counters of every subscription that has run, by subscription name.
    pub fn stats(&self) -> HashMap<String, SubscriptionStats> {
        lock(&self.inner.stats)
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    SubscriptionStats {
                        handled: c.handled.load(Ordering::Relaxed),
                        unhandled: c.unhandled.load(Ordering::Relaxed),
                        failed: c.failed.load(Ordering::Relaxed),
                        retried: c.retried.load(Ordering::Relaxed),
                        skipped: c.skipped.load(Ordering::Relaxed),
                        dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
                    },
                )
            })
            .collect()
    }

    pub(crate) fn counters(&self, subscription: &str) -> Arc<SubscriptionCounters> {
        lock(&self.inner.stats)
            .entry(subscription.to_owned())
            .or_default()
            .clone()
    }

    pub(crate) fn set_consumer_health(&self, health: ConsumerHealth) {
        lock(&self.inner.consumers).insert(health.subscription.clone(), health);
    }

    pub(crate) fn update_consumer_health(
        &self,
        subscription: &str,
        f: impl FnOnce(&mut ConsumerHealth),
    ) {
        if let Some(h) = lock(&self.inner.consumers).get_mut(subscription) {
            f(h);
        }
    }

    async fn consume(
        &self,
        limit: Option<usize>,
        timeout: Option<Duration>,
        signals: bool,
    ) -> Result<usize> {
        // The producer and admin client are created on first use: a worker
        // that only consumes never needs them, and an idle producer still
        // costs a polling thread.
        let subscriptions = self.router().subscriptions().to_vec();
        let mut app_stop = self.inner.stop.subscribe();
        app_stop.borrow_and_update();
        // A stop that arrived before this run must not end it at once.
        self.inner.stop.send_replace(false);

        let (run_stop, _) = watch::channel(false);
        let run_stop = Arc::new(run_stop);
        let counter = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for subscription in subscriptions {
            let control = RunControl {
                stop: run_stop.subscribe(),
                stop_all: run_stop.clone(),
                consumed: counter.clone(),
                limit,
            };
            tasks.spawn(consumer::run_subscription(
                self.clone(),
                subscription,
                control,
            ));
        }
        if tasks.is_empty() {
            tracing::warn!("no subscriptions to consume; waiting for a stop");
        }

        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let sleep_until_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep_until_deadline);
        let shutdown_signal = async {
            if signals {
                shutdown_signal().await
            } else {
                std::future::pending().await
            }
        };
        tokio::pin!(shutdown_signal);

        let mut first_error: Option<Error> = None;
        let mut stopping = false;
        loop {
            if tasks.is_empty() && (stopping || limit.is_some() || first_error.is_some()) {
                break;
            }
            tokio::select! {
                joined = tasks.join_next(), if !tasks.is_empty() => {
                    match joined {
                        Some(Ok(Ok(()))) => {}
                        Some(Ok(Err(err))) => {
                            first_error.get_or_insert(err);
                            run_stop.send_replace(true);
                            stopping = true;
                        }
                        Some(Err(join_error)) => {
                            first_error.get_or_insert(Error::AppNotConfigured(format!(
                                "a consumer task ended abnormally: {join_error}"
                            )));
                            run_stop.send_replace(true);
                            stopping = true;
                        }
                        None => {}
                    }
                }
                changed = app_stop.changed(), if !stopping => {
                    if changed.is_err() || *app_stop.borrow_and_update() {
                        run_stop.send_replace(true);
                        stopping = true;
                    }
                }
                () = &mut sleep_until_deadline, if !stopping => {
                    run_stop.send_replace(true);
                    stopping = true;
                }
                () = &mut shutdown_signal, if !stopping => {
                    tracing::info!("shutdown signal received; stopping consumers");
                    run_stop.send_replace(true);
                    stopping = true;
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(counter.load(Ordering::SeqCst)),
        }
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

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, _facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as Level;
        if matches!(
            level,
            Level::Emerg | Level::Alert | Level::Critical | Level::Error | Level::Warning
        ) {
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
fn connection_failure_cause(config: ClientConfig) -> Option<String> {
    use rdkafka::consumer::Consumer as _;
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

fn set_default(config: &mut ClientConfig, user: &BTreeMap<String, String>, key: &str, value: &str) {
    if !user.contains_key(key) {
        config.set(key, value);
    }
}

pub(crate) fn set_default_setting(
    config: &mut ClientConfig,
    settings: &Settings,
    key: &str,
    value: &str,
) {
    set_default(config, &settings.kafka_settings, key, value);
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let app = Application::builder()
            .kafka_servers(["k:9092"])
            .kafka_setting("sasl.password", "hunter2")
            .kafka_setting("ssl.key.password", "hunter3")
            .kafka_setting("sasl.username", "alice")
            .build()
            .unwrap();
        let text = format!("{app:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("hunter3"),
            "{text}"
        );
        assert!(text.contains("alice"), "{text}");
    }

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

    #[test]
    fn no_servers_is_app_not_configured() {
        let app = Application::builder().build().unwrap();
        assert!(matches!(
            app.settings().client_config(),
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
        let err = Application::builder()
            .kafka_servers(["k:9092"])
            .kafka_setting("enable.auto.commit", "true")
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{err}");
    }
}
