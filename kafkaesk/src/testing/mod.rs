//! A harness for testing handlers: the production application, run against
//! a real Kafka-protocol broker inside the test process.
//!
//! Enabled by the `testing` cargo feature, for dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! kafkaesk = { version = "0.1", features = ["testing"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! A test starts the application's subscriptions (its routers, or the
//! registry), publishes, and asserts on what happened once it has settled:
//!
//! ```
//! # #[kafkaesk::schema("Order", streams = ["orders"])]
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # pub struct Order { pub id: u64 }
//! #[kafkaesk::subscribe("orders", group = "billing")]
//! async fn bill(order: Order) -> Result<(), std::io::Error> {
//!     if order.id == 0 {
//!         return Err(std::io::Error::other("order 0 cannot be billed"));
//!     }
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), kafkaesk::Error> {
//! use kafkaesk::testing::TestHarness;
//!
//! let harness = TestHarness::with_registry().await?;
//! let published = harness.publish("orders", &Order { id: 7 }).key("7").await?;
//! assert!(published.outcome("bill").unwrap().is_handled());
//! assert_eq!(harness.stats("bill")?.handled, 1);
//! # Ok(()) }
//! ```
//!
//! # Settled, without sleeps
//!
//! [`TestHarness::publish`] returns once the record is *settled*: every
//! subscription consuming its stream is done with it (handled, failed after
//! its retries, skipped, dead-lettered, or stopped its consumer), and so is
//! everything the handlers published in turn, down the chain. It waits on
//! the application's journal of settled records (see
//! [`settle`](self#how-waiting-works)), not on a clock. A record no
//! subscription consumes settles at once. When something does not settle
//! within the [timeout](TestHarnessBuilder::settle_timeout), or the
//! application's consumers stop first, the publish fails with
//! [`Error::NotSettled`], which names each subscription and record still
//! pending.
//!
//! # Isolation and speed
//!
//! Each harness has a topic prefix of its own (`test-<n>-<pid>.` before the
//! application's own prefix), and puts it before each subscription's
//! consumer group too: tests running at once share no stream and no group.
//!
//! Every harness of a test process runs against one broker, started by the
//! first test that needs it (on a thread and runtime of its own, so that it
//! outlives the test that started it) and reused by the others: fifty tests
//! start one broker. [`TestHarnessBuilder::dedicated_broker`] starts a
//! broker for one harness instead, dropped with it.
//!
//! The embedded broker cannot run transactions, so exactly-once code is
//! tested against Apache Kafka: set `KAFKA=host:port` when running the tests
//! (or call [`TestHarnessBuilder::kafka_servers`]), and every harness runs
//! there instead, each still under a prefix of its own.
//!
//! Topics are created with one partition unless
//! [`partitions`](TestHarnessBuilder::partitions) says otherwise, and the
//! embedded broker's fast client settings apply
//! ([`EmbeddedBroker::configure`](crate::embedded::EmbeddedBroker::configure)).
//! Schemas are not registered on the bus
//! ([`contracts`](crate::schema::contract)): each harness is a bus of its own.
//!
//! # Limits
//!
//! - Subscriptions start where their groups have no commit: a subscription
//!   that starts at the `latest` record only sees what is published after
//!   its consumer was assigned its partitions, which may be after a
//!   harness's first publish.
//! - Messages of aborted transactions never settle.
//! - On the embedded broker, transactions, `exactly_once` subscriptions and
//!   `expected_offset` fail (see the README's "embedded broker and Apache
//!   Kafka").
//!
//! # How waiting works
//!
//! An application the harness builds keeps a journal: every message its
//! producers queue (until the broker acknowledges it), and every record each
//! subscription settles, with its [`RecordOutcome`]. Handlers queue what they
//! publish before they return, so a record's consequences are in the journal
//! before the record is settled. The harness waits until no message awaits
//! its acknowledgement and every stored message is settled by every
//! subscription consuming it, waking on each journal entry.

mod broker;
mod wait;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::app::admin::PartitionLag;
pub use crate::app::{RecordOutcome, Settled};
use crate::error::{Error, Result};
use crate::handling::FromMessage;
use crate::observe::journal::Journal;
use crate::publish::{Delivery, Publish};
use crate::reader::Item;
use crate::subscription::Router;
use crate::sync::lock;
use crate::{Application, Metrics, SubscriptionStats};
use broker::TestBroker;
use wait::Consumers;

/// How long a harness waits for records to settle by default.
pub const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often consumers look for new topics under a harness: a stream first
/// published to after the consumers started (a dead-letter stream, a stream
/// no schema names) is consumed this long after at most.
const METADATA_REFRESH_MS: &str = "200";

/// Harnesses made by this process so far: the next one's number.
static HARNESSES: AtomicU64 = AtomicU64::new(0);

/// An application running its subscriptions against a test broker; see the
/// [module docs](self).
///
/// Dropping it stops the consumers; [`stop`](Self::stop) stops them and
/// waits, and returns how their run ended.
pub struct TestHarness {
    app: Application,
    journal: Arc<Journal>,
    consumers: Consumers,
    /// The harness's own prefix, before the application's topic prefix and
    /// its groups.
    prefix: String,
    settle_timeout: Duration,
    run: Mutex<Option<JoinHandle<Result<()>>>>,
    /// Kept for the harness's lifetime: a dedicated broker stops when dropped.
    _broker: TestBroker,
}

impl std::fmt::Debug for TestHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHarness")
            .field("app", &self.app)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TestHarness`].
///
/// ```no_run
/// # async fn demo() -> Result<(), kafkaesk::Error> {
/// use std::time::Duration;
/// use kafkaesk::testing::TestHarness;
///
/// let harness = TestHarness::builder()
///     .with_registry()?
///     .settle_timeout(Duration::from_secs(5))
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct TestHarnessBuilder {
    router: Router,
    app: Option<Application>,
    pending_error: Option<Error>,
    dedicated_broker: bool,
    kafka_servers: Option<Vec<String>>,
    settle_timeout: Duration,
    partitions: i32,
}

impl Default for TestHarnessBuilder {
    fn default() -> Self {
        TestHarnessBuilder {
            router: Router::new(),
            app: None,
            pending_error: None,
            dedicated_broker: false,
            kafka_servers: None,
            settle_timeout: DEFAULT_SETTLE_TIMEOUT,
            partitions: 1,
        }
    }
}

impl TestHarnessBuilder {
    /// Runs everything registered with `#[schema]` and `#[subscribe]`.
    pub fn with_registry(self) -> Result<Self> {
        Ok(self.mount(Router::from_registry()?))
    }

    /// Runs a router's schemas and subscriptions.
    pub fn mount(mut self, router: Router) -> Self {
        if let Err(err) = self.router.mount(router) {
            self.pending_error.get_or_insert(err);
        }
        self
    }

    /// Runs what a production application runs: its router, its settings
    /// (librdkafka properties, commit and shutdown settings, its topic
    /// prefix after the harness's) and its hooks. Its servers are replaced
    /// by the test broker's, and its partitions by the harness's.
    ///
    /// ```no_run
    /// # fn app() -> Result<kafkaesk::Application, kafkaesk::Error> { unimplemented!() }
    /// # async fn demo() -> Result<(), kafkaesk::Error> {
    /// let harness = kafkaesk::testing::TestHarness::builder().app(&app()?).start().await?;
    /// # Ok(()) }
    /// ```
    pub fn app(mut self, app: &Application) -> Self {
        self = self.mount(app.router());
        self.app = Some(app.clone());
        self
    }

    /// Starts a broker for this harness alone, instead of sharing the test
    /// process's. It stops when the harness is dropped. Needs a
    /// multi-threaded runtime: `#[tokio::test(flavor = "multi_thread")]`.
    pub fn dedicated_broker(mut self) -> Self {
        self.dedicated_broker = true;
        self
    }

    /// Runs against the Kafka brokers at `servers` instead of an embedded
    /// broker: for what the embedded broker cannot do (transactions,
    /// `exactly_once` subscriptions, `expected_offset`). Without this, a
    /// harness runs against `KAFKA` (`host:port[,host:port...]`) when that
    /// environment variable is set.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), kafkaesk::Error> {
    /// let harness = kafkaesk::testing::TestHarness::builder()
    ///     .with_registry()?
    ///     .kafka_servers(["127.0.0.1:9092"])
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn kafka_servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kafka_servers = Some(servers.into_iter().map(Into::into).collect());
        self
    }

    /// How long [`publish`](TestHarness::publish) and
    /// [`settle`](TestHarness::settle) wait for records to settle
    /// ([`DEFAULT_SETTLE_TIMEOUT`] unless set).
    pub fn settle_timeout(mut self, timeout: Duration) -> Self {
        self.settle_timeout = timeout;
        self
    }

    /// The partitions of the streams the application creates (1 unless set).
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Starts the broker (or reuses the process's), creates the schemas'
    /// streams, runs the `on_initialize` hooks and starts the consumers.
    pub async fn start(self) -> Result<TestHarness> {
        if let Some(err) = self.pending_error {
            return Err(err);
        }
        let servers = self.kafka_servers.or_else(servers_from_env);
        let broker = match servers {
            _ if self.dedicated_broker => TestBroker::dedicated().await?,
            Some(servers) => TestBroker::External(servers),
            None => TestBroker::shared().await?,
        };
        let number = HARNESSES.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("test-{number}-{}.", std::process::id());

        let (mut settings, hooks) = match &self.app {
            Some(app) => (app.settings().clone(), app.hooks()),
            None => (crate::Settings::default(), (Vec::new(), Vec::new())),
        };
        broker.configure(&mut settings);
        settings.topic_prefix = format!("{prefix}{}", settings.topic_prefix);
        settings.partitions = self.partitions;
        settings.replication_factor = Some(1);
        // Each harness is a bus of its own (its prefix), with no other
        // service to compare schemas with; registering would only cost time.
        settings.schema_contracts = crate::settings::SchemaContracts::Off;
        settings
            .kafka_settings
            .entry("topic.metadata.refresh.interval.ms".to_owned())
            .or_insert_with(|| METADATA_REFRESH_MS.to_owned());

        let mut router = self.router;
        router.prefix_groups(&prefix);
        let consumers = Consumers::new(&router, &settings.topic_prefix);
        let journal = Arc::new(Journal::default());
        let app = Application::builder()
            .settings(settings)
            .mount(router)
            .metrics(Metrics::new())
            .hooks(hooks.0, hooks.1)
            .journal(journal.clone())
            .build()?;
        app.initialize().await?;

        // Entered before the consumers start, so a stop right after `start`
        // reaches them.
        app.runs().enter();
        let running = app.clone();
        let run = tokio::spawn(async move {
            let _leave = LeaveRun(running.clone());
            let result = running.consume_forever().await;
            if let Some(journal) = running.journal() {
                journal.run_ended(&result);
            }
            result
        });
        Ok(TestHarness {
            app,
            journal,
            consumers,
            prefix,
            settle_timeout: self.settle_timeout,
            run: Mutex::new(Some(run)),
            _broker: broker,
        })
    }
}

/// The brokers in `KAFKA`, if it is set and names any.
fn servers_from_env() -> Option<Vec<String>> {
    let value = std::env::var("KAFKA").ok()?;
    let servers: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .map(str::to_owned)
        .collect();
    (!servers.is_empty()).then_some(servers)
}

/// Ends the harness's run when its task ends, however it ends.
struct LeaveRun(Application);

impl Drop for LeaveRun {
    fn drop(&mut self) {
        self.0.runs().leave();
    }
}

impl TestHarness {
    /// A harness builder.
    pub fn builder() -> TestHarnessBuilder {
        TestHarnessBuilder::default()
    }

    /// Starts a harness running everything registered with `#[schema]` and
    /// `#[subscribe]`, on the test process's shared broker.
    pub async fn with_registry() -> Result<Self> {
        Self::builder().with_registry()?.start().await
    }

    /// Starts a harness running what `app` runs (see
    /// [`TestHarnessBuilder::app`]), on the test process's shared broker.
    pub async fn for_app(app: &Application) -> Result<Self> {
        Self::builder().app(app).start().await
    }

    /// The application under test, to publish without waiting, read streams
    /// back or pause subscriptions.
    pub fn app(&self) -> &Application {
        &self.app
    }

    /// The prefix of this harness's topics and groups, before the
    /// application's own topic prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Publishes `data` to `stream` and waits until it has settled, with
    /// everything it set off (see the [module docs](self)). Add a key or
    /// headers before awaiting, as with [`Application::publish`].
    ///
    /// ```no_run
    /// # #[kafkaesk::schema("Order")]
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # pub struct Order { pub id: u64 }
    /// # async fn demo(harness: kafkaesk::testing::TestHarness) -> Result<(), kafkaesk::Error> {
    /// let published = harness.publish("orders", &Order { id: 1 }).key("1").header("tenant", "t1").await?;
    /// assert_eq!(published.outcome("bill").and_then(|o| o.error()), Some("card declined"));
    /// # Ok(()) }
    /// ```
    pub fn publish<'a, T>(&'a self, stream: &'a str, data: &'a T) -> HarnessPublish<'a, T>
    where
        T: Serialize + schemars::JsonSchema + Sync + 'static,
    {
        HarnessPublish {
            harness: self,
            stream,
            publish: self.app.publish(stream, data),
        }
    }

    /// Waits until everything published so far (by the harness, by
    /// handlers, through [`app`](Self::app)) has settled.
    pub async fn settle(&self) -> Result<()> {
        wait::until_settled(&self.journal, &self.consumers, self.settle_timeout).await
    }

    /// How each subscription settled the record `delivery` of `stream`.
    pub fn outcomes_of(&self, stream: &str, delivery: &Delivery) -> Vec<Settled> {
        self.journal.read(|state| {
            state
                .settled
                .iter()
                .filter(|s| {
                    s.stream == stream
                        && s.partition == delivery.partition
                        && s.offset == delivery.offset
                })
                .cloned()
                .collect()
        })
    }

    /// Every record the subscription named `subscription` has settled, in
    /// the order it settled them.
    pub fn outcomes(&self, subscription: &str) -> Result<Vec<Settled>> {
        self.known(subscription)?;
        Ok(self.journal.read(|state| {
            state
                .settled
                .iter()
                .filter(|s| s.subscription == subscription)
                .cloned()
                .collect()
        }))
    }

    /// The counters of the subscription named `subscription`.
    pub fn stats(&self, subscription: &str) -> Result<SubscriptionStats> {
        self.known(subscription)?;
        Ok(self.app.stats().remove(subscription).unwrap_or_default())
    }

    fn known(&self, subscription: &str) -> Result<()> {
        let router = self.app.router();
        let names: Vec<&str> = router.subscriptions().iter().map(|s| s.name()).collect();
        if names.contains(&subscription) {
            Ok(())
        } else {
            Err(Error::UnknownSubscription {
                name: subscription.to_owned(),
                known: names.join(", "),
            })
        }
    }

    /// Every message of `stream`, oldest first, decoded as `T` (a schema
    /// type, `Json<T>`, `serde_json::Value`, `Vec<u8>` or
    /// [`Record`](crate::Record)), with its record: key, headers, position.
    /// Empty when nothing was published to it. An undecodable message fails
    /// the read.
    ///
    /// ```no_run
    /// # #[kafkaesk::schema("Shipment")]
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # pub struct Shipment { pub order: u64 }
    /// # async fn demo(harness: kafkaesk::testing::TestHarness) -> Result<(), kafkaesk::Error> {
    /// let shipped = harness.published::<Shipment>("shipments").await?;
    /// assert_eq!(shipped[0].data.order, 1);
    /// assert_eq!(shipped[0].record.key(), Some(&b"1"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn published<T: FromMessage>(&self, stream: &str) -> Result<Vec<Item<T>>> {
        let topic = self.app.settings().topic(stream);
        let exists = self
            .app
            .connection()
            .metadata(Some(&topic), Duration::from_secs(10))
            .await?
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if !exists {
            return Ok(Vec::new());
        }
        self.app
            .reader(stream)
            .read::<T>()
            .await?
            .into_iter()
            .collect()
    }

    /// Where the consumer group `group` (as the application names it) is in
    /// each partition of `stream`. Consumers commit every
    /// `auto_commit_interval` and when they stop: [`stop`](Self::stop) the
    /// harness first to read their final commits.
    pub async fn committed(&self, group: &str, stream: &str) -> Result<Vec<PartitionLag>> {
        self.app
            .group_lag(&format!("{}{group}", self.prefix), stream)
            .await
    }

    /// Stops the consumers, waits for them to commit and close, runs the
    /// `on_finalize` hooks, and returns how their run ended: the handler
    /// error that stopped them, if one did.
    pub async fn stop(&self) -> Result<()> {
        self.app.stop();
        let run = lock(&self.run).take();
        let ended = match run {
            Some(run) => run.await.map_err(|err| Error::ConsumerCrashed {
                subscription: "(test harness)".to_owned(),
                reason: err.to_string(),
            })?,
            None => Ok(()),
        };
        let finalized = self.app.finalize().await;
        ended.and(finalized)
    }
}

impl Drop for TestHarness {
    fn drop(&mut self) {
        self.app.stop();
    }
}

/// A publish through a [`TestHarness`]: add a key or headers, then await
/// it to publish and wait until it has settled.
#[must_use = "nothing is published until it is awaited"]
pub struct HarnessPublish<'a, T: ?Sized> {
    harness: &'a TestHarness,
    stream: &'a str,
    publish: Publish<'a, T>,
}

impl<T> HarnessPublish<'_, T>
where
    T: Serialize + schemars::JsonSchema + Sync + 'static,
{
    crate::publish::builder_methods!(
        options: publish.options;
        key: publish.key;
        headers: publish.headers
    );
}

impl<'a, T> IntoFuture for HarnessPublish<'a, T>
where
    T: Serialize + schemars::JsonSchema + Sync + 'static,
{
    type Output = Result<Published>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Published>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let delivery = self.publish.wait().await?;
            self.harness.settle().await?;
            let outcomes = self.harness.outcomes_of(self.stream, &delivery);
            Ok(Published {
                stream: self.stream.to_owned(),
                delivery,
                outcomes,
            })
        })
    }
}

/// A message published through a [`TestHarness`], once settled.
#[derive(Debug, Clone)]
pub struct Published {
    /// The stream it went to.
    pub stream: String,
    /// Where it was stored.
    pub delivery: Delivery,
    /// How each subscription consuming it settled it.
    pub outcomes: Vec<Settled>,
}

impl Published {
    /// How the subscription named `subscription` settled it; `None` if that
    /// subscription does not consume it.
    pub fn outcome(&self, subscription: &str) -> Option<&RecordOutcome> {
        self.outcomes
            .iter()
            .find(|s| s.subscription == subscription)
            .map(|s| &s.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorPolicy, Subscriber, Subscription};

    #[crate::schema("HarnessNote", streams = ["notes"])]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Note {
        text: String,
    }

    fn note(text: &str) -> Note {
        Note {
            text: text.to_owned(),
        }
    }

    fn router(subscriptions: impl IntoIterator<Item = Subscription>) -> Router {
        let mut router = Router::new();
        router.schema::<Note>().unwrap();
        for subscription in subscriptions {
            router.subscribe(subscription);
        }
        router
    }

    async fn relay(note: Note, subscriber: Subscriber) -> Result<()> {
        subscriber.publish("relayed", &note).await?;
        Ok(())
    }

    async fn refuse(note: Note) -> std::result::Result<(), std::io::Error> {
        Err(std::io::Error::other(format!("refused {}", note.text)))
    }

    #[tokio::test]
    async fn a_publish_waits_for_what_its_handlers_published_in_turn() {
        let harness = TestHarness::builder()
            .mount(router([
                Subscription::new("notes", relay).with_name("relay"),
                Subscription::new("relayed", refuse)
                    .with_name("refuse")
                    .on_error(ErrorPolicy::skip()),
            ]))
            .start()
            .await
            .unwrap();
        let published = harness.publish("notes", &note("hi")).await.unwrap();
        assert_eq!(
            published.outcome("relay"),
            Some(&RecordOutcome::Handled { attempts: 1 })
        );
        // Settled by the second handler before the publish returned.
        let downstream = harness.outcomes("refuse").unwrap();
        assert_eq!(downstream.len(), 1, "{downstream:?}");
        assert_eq!(downstream[0].stream, "relayed");
        assert_eq!(
            downstream[0].outcome,
            RecordOutcome::Skipped {
                error: "refused hi".into(),
                attempts: 1
            }
        );
        assert!(harness.outcomes("nobody").is_err());
    }

    #[tokio::test]
    async fn a_record_no_subscription_consumes_settles_at_once() {
        let harness = TestHarness::builder()
            .mount(router([
                Subscription::new("relayed", refuse).with_name("refuse")
            ]))
            .start()
            .await
            .unwrap();
        let published = harness.publish("notes", &note("hi")).await.unwrap();
        assert!(published.outcomes.is_empty());
        assert_eq!(published.delivery.offset, 0);
    }

    #[tokio::test]
    async fn what_does_not_settle_in_time_is_named() {
        let harness = TestHarness::builder()
            .mount(router([
                Subscription::new("notes", relay).with_name("relay")
            ]))
            .settle_timeout(Duration::from_millis(300))
            .start()
            .await
            .unwrap();
        harness.app().pause("relay").unwrap();
        let err = harness.publish("notes", &note("hi")).await.unwrap_err();
        match &err {
            Error::NotSettled { why, pending } => {
                assert_eq!(why, "within 300ms");
                assert_eq!(pending, &["relay has not settled notes[0]@0"]);
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("relay has not settled notes[0]@0"));
        harness.app().resume("relay").unwrap();
        harness.settle().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_that_stops_the_consumer_is_an_outcome_and_ends_the_run() {
        let harness = TestHarness::builder()
            .mount(router([
                Subscription::new("notes", refuse).with_name("refuse")
            ]))
            .dedicated_broker()
            .start()
            .await
            .unwrap();
        let published = harness.publish("notes", &note("a")).await.unwrap();
        assert_eq!(
            published.outcome("refuse"),
            Some(&RecordOutcome::Stopped {
                error: "refused a".into(),
                attempts: 1
            })
        );
        // Nothing consumes any more: a later record never settles.
        let err = harness.publish("notes", &note("b")).await.unwrap_err();
        assert!(
            matches!(&err, Error::NotSettled { why, .. } if why.contains("refused a")),
            "{err}"
        );
        let ended = harness.stop().await.unwrap_err();
        assert!(matches!(ended, Error::Handler { .. }), "{ended}");
    }
}
