//! The application: a router plus Kafka settings, and its lifecycle.
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
//! The settings and their defaults are listed in [`settings`](crate::settings).
//!
//! An [`Application`] is a handle: clones share everything. This module holds
//! its core (settings, router, clients, hooks, lifecycle) and the
//! [builder](ApplicationBuilder). What it does lives with each role:
//! publishing in [`publish`](crate::publish), running consumers in
//! [`run`](Application::run) and [`consume_for`](Application::consume_for), dead-letter replay in
//! [`dead_letter`](crate::dead_letter).
//!
//! The application's [`subscription`]s and their [`handling`] live in this
//! folder too, because the three refer to each other: the application holds
//! the subscriptions, a subscription holds its handler, and a handler may
//! take the [`Application`] that runs it (an extractor). That is the crate's
//! one import circle, and it stays inside this folder; both are re-exported
//! at the crate root (`kafkaesk::subscription`, `kafkaesk::handling`).

pub mod admin;
mod builder;
pub mod control;
pub mod handling;
mod monitor;
pub(crate) mod registration;
mod run_state;
pub mod subscription;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde::Serialize;

pub use crate::observe::journal::{RecordOutcome, Settled};
pub use builder::ApplicationBuilder;

use crate::observe::journal;
pub use monitor::{ConsumerHealth, Health, StuckPartition, SubscriptionStats};

pub(crate) use builder::Hook;
pub(crate) use control::{PauseState, SubscriptionControl};
pub(crate) use monitor::SubscriptionMonitor;
pub(crate) use run_state::RunState;

use crate::error::{Error, Result};
use crate::kafka::clients::Connection;
use crate::observe::metrics::Metrics;
use crate::publish::Transaction;
use crate::publish::{Delivery, Publish, Publisher, RawPublish};
use crate::schema::SchemaCatalog;
use crate::settings::Settings;
use crate::subscription::Router;
use crate::sync::{lock, read_lock, write_lock};
use monitor::Monitor;

/// How long [`Application::flush`] waits.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// A router plus Kafka configuration: publishes messages and runs consumers.
///
/// Cheap to clone; clones share clients and state. Handlers can take it as a parameter.
#[derive(Clone)]
pub struct Application {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    router: RwLock<Router>,
    schemas: SchemaCatalog,
    on_initialize: Vec<Hook>,
    on_finalize: Mutex<Vec<Hook>>,
    runs: RunState,
    monitor: Monitor,
    /// Every record settled and every message stored, for the test harness.
    journal: journal::MaybeJournal,
    controls: control::Controls,
    /// The application this one became when it was reconfigured: every
    /// handle, including those made before, acts on it from then on.
    successor: OnceLock<Application>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("settings", self.settings())
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
        metrics: Metrics,
        journal: journal::MaybeJournal,
    ) -> Self {
        Application {
            inner: Arc::new(Inner {
                monitor: Monitor::new(metrics.clone(), journal.clone()),
                controls: control::Controls::default(),
                connection: Connection::new(settings, metrics, journal.clone()),
                journal,
                schemas: SchemaCatalog::new(router.schema_infos()),
                router: RwLock::new(router),
                on_initialize,
                on_finalize: Mutex::new(on_finalize),
                runs: RunState::default(),
                successor: OnceLock::new(),
            }),
        }
    }

    /// The current state: this application's, or that of what it was
    /// reconfigured into.
    fn inner(&self) -> &Inner {
        let mut inner = &*self.inner;
        while let Some(next) = inner.successor.get() {
            inner = &*next.inner;
        }
        inner
    }

    /// Changes the settings of this application, and of every clone of it,
    /// made before or after: a [`KafkaLayer`](crate::logging::KafkaLayer), a
    /// hook or a handler holding the application uses the new settings from
    /// then on. Schemas, subscriptions and hooks are kept. The `kafkaesk`
    /// command applies its flags this way.
    ///
    /// Clients made with the old settings are not used again. Fails with
    /// [`Error::InvalidSetting`] when the new settings are invalid, and
    /// while the application runs.
    ///
    /// ```
    /// let app = kafkaesk::Application::builder().build().unwrap();
    /// let earlier = app.clone();
    /// app.reconfigure(|s| s.kafka_servers = vec!["k:9092".into()]).unwrap();
    /// assert_eq!(earlier.settings().kafka_servers, ["k:9092"]);
    /// ```
    pub fn reconfigure(&self, change: impl FnOnce(&mut Settings)) -> Result<()> {
        let inner = self.inner();
        if inner.runs.is_running() {
            return Err(Error::InvalidSetting {
                name: "settings".to_owned(),
                reason: "cannot change while the application runs; stop it first".to_owned(),
            });
        }
        let mut settings = inner.connection.settings().clone();
        change(&mut settings);
        settings.validate()?;
        let next = Application::from_parts(
            settings,
            self.router(),
            inner.on_initialize.clone(),
            lock(&inner.on_finalize).clone(),
            inner.connection.metrics().clone(),
            inner.journal.clone(),
        );
        inner
            .successor
            .set(next)
            .map_err(|_| Error::InvalidSetting {
                name: "settings".to_owned(),
                reason: "the application is being reconfigured elsewhere at the same time"
                    .to_owned(),
            })
    }

    /// The application's settings.
    pub fn settings(&self) -> &Settings {
        self.inner().connection.settings()
    }

    /// Merges a router into a built application. Its subscriptions are run by
    /// the next `run` or `consume_for`.
    ///
    /// Fails on a schema conflict, an invalid subscription, or a subscription
    /// named like one the application has.
    pub fn mount(&self, router: Router) -> Result<()> {
        let inner = self.inner();
        let mut current = write_lock(&inner.router);
        let mut merged = current.clone();
        merged.mount(router)?;
        merged.validate()?;
        inner.schemas.replace(merged.schema_infos());
        *current = merged;
        Ok(())
    }

    /// A copy of the application's router.
    pub fn router(&self) -> Router {
        read_lock(&self.inner().router).clone()
    }

    /// The connection: settings and lazily created clients.
    pub(crate) fn connection(&self) -> &Connection {
        &self.inner().connection
    }

    /// What a publish draws on.
    pub(crate) fn publisher(&self) -> Publisher<'_> {
        let inner = self.inner();
        Publisher {
            connection: &inner.connection,
            schemas: &inner.schemas,
            via: None,
        }
    }

    /// The metrics the application records into; see [`metrics`](crate::observe::metrics).
    /// A reconfigured application keeps recording into the same ones.
    pub fn metrics(&self) -> &Metrics {
        self.inner().connection.metrics()
    }

    /// The journal of settled records and stored messages, if kept.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn journal(&self) -> Option<&Arc<journal::Journal>> {
        self.inner().journal.as_ref()
    }

    /// The hooks run when it initializes and when it finalizes, for an
    /// application built from this one.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn hooks(&self) -> (Vec<Hook>, Vec<Hook>) {
        let inner = self.inner();
        (
            inner.on_initialize.clone(),
            lock(&inner.on_finalize).clone(),
        )
    }

    /// The runs in progress and their stop.
    pub(crate) fn runs(&self) -> &RunState {
        &self.inner().runs
    }

    /// The handle a consumer of `subscription` writes its counters and state through.
    pub(crate) fn monitor(&self, subscription: &str, group: &str) -> SubscriptionMonitor {
        self.inner().monitor.subscription(subscription, group)
    }

    /// What the application keeps for `subscription` across runs: pauses,
    /// and the partitions placed at its start position.
    pub(crate) fn control(&self, subscription: &str) -> Arc<SubscriptionControl> {
        self.inner().controls.get(subscription)
    }

    /// Connects, creates every stream the schemas name, registers the
    /// schemas on the bus (see [`schema::contract`](crate::schema::contract)), then runs the `on_initialize`
    /// hooks. Called by [`run`](Self::run); call it yourself
    /// before [`consume_for`](Self::consume_for) if you need the streams to exist.
    pub async fn initialize(&self) -> Result<()> {
        let inner = self.inner();
        let clients = inner.connection.clients().await?;
        inner.connection.check(Duration::from_secs(10)).await?;
        for schema in inner.schemas.all() {
            for stream in schema.streams() {
                let topic = self.settings().topic(stream);
                clients.topics.ensure(&topic, schema.retention()).await?;
            }
        }
        self.register_schemas().await?;
        for hook in &inner.on_initialize {
            hook(self.clone()).await?;
        }
        Ok(())
    }

    /// Fails with [`Error::BrokerUnreachable`] unless a broker answers within `timeout`.
    pub async fn check_connection(&self, timeout: Duration) -> Result<()> {
        self.connection().check(timeout).await
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
        lock(&self.inner().on_finalize).push(builder::hook(hook));
    }

    /// Stops running consumers, runs the `on_finalize` hooks and flushes the
    /// producer, waiting at most `shutdown_timeout` for the broker to
    /// acknowledge what is queued (a message still unacknowledged then fails
    /// with a logged error: nothing is dropped silently).
    pub async fn finalize(&self) -> Result<()> {
        self.stop();
        let mut first_error = None;
        let hooks = lock(&self.inner().on_finalize).clone();
        for hook in &hooks {
            if let Err(err) = hook(self.clone()).await {
                first_error.get_or_insert(err);
            }
        }
        let within = self.settings().shutdown_timeout;
        if let Err(err) = self.connection().flush(within).await {
            first_error.get_or_insert(err);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Asks running consumers to stop, including a [`run`](Self::run) that
    /// is still initializing. Does nothing when nothing runs.
    pub fn stop(&self) {
        self.runs().stop();
    }

    /// Whether the producer reaches a broker and every consumer is running.
    pub async fn health_check(&self) -> Health {
        let inner = self.inner();
        // A worker that has only consumed so far has no producer yet; once a
        // run has started, the check makes it. Before, there is nothing to check.
        let producer =
            if inner.connection.clients_if_ready().is_some() || inner.monitor.has_consumers() {
                inner
                    .connection
                    .metadata(None, Duration::from_secs(5))
                    .await
                    .is_ok()
            } else {
                false
            };
        Health {
            producer,
            consumers: inner.monitor.consumers(),
        }
    }

    /// The state of every consumer of the current run: the part of
    /// [`health_check`](Self::health_check) that asks no broker.
    pub(crate) fn consumer_health(&self) -> Vec<ConsumerHealth> {
        self.inner().monitor.consumers()
    }

    /// Counters of every subscription that has run, by subscription name.
    pub fn stats(&self) -> HashMap<String, SubscriptionStats> {
        self.inner().monitor.stats()
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
        self.publisher().publish(stream, data)
    }

    /// Publishes `data` and waits for the broker's acknowledgement.
    pub async fn publish_and_wait<T>(&self, stream: &str, data: &T) -> Result<Delivery>
    where
        T: Serialize + schemars::JsonSchema + Sync + 'static,
    {
        self.publish(stream, data).await?.await
    }

    /// Publishes bytes as they are, without envelope or validation.
    pub fn raw_publish<'a>(&'a self, stream: &'a str, value: impl Into<Vec<u8>>) -> RawPublish<'a> {
        self.publisher().raw(stream, value.into())
    }

    /// Begins a transaction: what is published through it becomes visible
    /// all at once when it commits, or never. See [`transaction`](crate::Transaction).
    pub async fn transaction(&self) -> Result<Transaction<'_>> {
        Transaction::begin(self.publisher()).await
    }

    /// Waits until every queued message is acknowledged or has failed, at
    /// most 30 s; [`Error::Kafka`] with a timed-out code after that, the
    /// messages still queued.
    pub async fn flush(&self) -> Result<()> {
        let connection = self.connection();
        connection.clients().await?;
        connection.flush(FLUSH_TIMEOUT).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let app = Application::builder()
            .kafka_servers(["k:9092"])
            .kafka_setting("sasl.password", "hunter2")
            .build()
            .unwrap();
        let text = format!("{app:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn reconfiguring_reaches_every_clone() {
        let app = Application::builder().topic_prefix("a.").build().unwrap();
        let earlier = app.clone();
        app.reconfigure(|s| s.topic_prefix = "b.".into()).unwrap();
        earlier
            .reconfigure(|s| s.kafka_servers = vec!["k:9092".into()])
            .unwrap();
        for handle in [&app, &earlier] {
            assert_eq!(handle.settings().topic_prefix, "b.");
            assert_eq!(handle.settings().kafka_servers, ["k:9092"]);
        }
        let err = app.reconfigure(|s| s.partitions = 0).unwrap_err();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{err}");
    }
}
