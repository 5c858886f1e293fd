//! [`ApplicationBuilder`]: settings, routers and hooks, checked once by `build`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::Application;
use crate::error::{Error, Result};
use crate::observe::metrics::Metrics;
use crate::settings::{AckPolicy, Settings};
use crate::subscription::{Router, Subscription};

/// A function the application runs when it initializes or finalizes.
pub(crate) type Hook =
    Arc<dyn Fn(Application) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

pub(crate) fn hook<F, Fut>(f: F) -> Hook
where
    F: Fn(Application) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    Arc::new(move |app| Box::pin(f(app)))
}

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
    metrics: Option<Metrics>,
    journal: crate::observe::journal::MaybeJournal,
}

impl ApplicationBuilder {
    /// Sets the bootstrap servers.
    pub fn kafka_servers<S: Into<String>>(mut self, servers: impl IntoIterator<Item = S>) -> Self {
        self.settings.kafka_servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets how many brokers must store a message before a publish succeeds
    /// (default [`AckPolicy::All`], with an idempotent producer).
    pub fn ack_policy(mut self, acks: AckPolicy) -> Self {
        self.settings.ack_policy = acks;
        self
    }

    /// Sets the prefix of this instance's transactional ids (see
    /// [`transaction`](crate::Transaction)). Give each instance a stable
    /// one, such as its pod name, so that a restarted instance aborts what
    /// its crashed predecessor left open at once.
    pub fn transactional_id(mut self, prefix: impl Into<String>) -> Self {
        self.settings.transactional_id = Some(prefix.into());
        self
    }

    /// Sets what [`initialize`](crate::Application::initialize) does about
    /// schema contracts on the bus (default [`SchemaContracts::Warn`](crate::settings::SchemaContracts)).
    pub fn schema_contracts(mut self, contracts: crate::settings::SchemaContracts) -> Self {
        self.settings.schema_contracts = contracts;
        self
    }

    /// Sets the name this service registers its schemas under (default:
    /// the executable's name).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.settings.service_name = Some(name.into());
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

    /// Merges a router's schemas and subscriptions. A schema conflict, or two
    /// subscriptions with one name, is reported by [`build`](Self::build).
    pub fn mount(mut self, router: Router) -> Self {
        if let Err(err) = self.router.mount(router) {
            self.pending_error.get_or_insert(err);
        }
        self
    }

    /// Records into `metrics` instead of a registry of the application's
    /// own: to share one registry between applications, or to put kafkaesk's
    /// metrics in a registry the service already serves.
    ///
    /// ```
    /// let metrics = kafkaesk::Metrics::new();
    /// let app = kafkaesk::Application::builder().metrics(metrics).build().unwrap();
    /// ```
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
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
        self.on_initialize.push(self::hook(hook));
        self
    }

    /// Runs `hook` when the application finalizes, before its producer is flushed.
    pub fn on_finalize<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Application) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.on_finalize.push(self::hook(hook));
        self
    }

    /// Keeps a journal of settled records and stored messages in `journal`.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn journal(mut self, journal: Arc<crate::observe::journal::Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Adds hooks taken from another application.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn hooks(mut self, on_initialize: Vec<Hook>, on_finalize: Vec<Hook>) -> Self {
        self.on_initialize.extend(on_initialize);
        self.on_finalize.extend(on_finalize);
        self
    }

    /// Checks the settings and subscriptions, and builds the application.
    /// Nothing connects yet.
    ///
    /// Fails with [`Error::DuplicateSubscription`] when two subscriptions
    /// share a name: the name keys the default consumer group, the counters
    /// and the health of a subscription.
    pub fn build(self) -> Result<Application> {
        if let Some(err) = self.pending_error {
            return Err(err);
        }
        self.settings.validate()?;
        self.router.validate()?;
        Ok(Application::from_parts(
            self.settings,
            self.router,
            self.on_initialize,
            self.on_finalize,
            self.metrics.unwrap_or_default(),
            self.journal,
        ))
    }
}
