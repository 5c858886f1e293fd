//! Routers: schemas and subscriptions, without any Kafka configuration.
//!
//! A [`Router`] lets a library declare its schemas and handlers without a
//! global application, as Python kafkaesk's `Router` does; an
//! [`Application`](crate::Application) mounts it.
//!
//! ```
//! use kafkaesk::{Router, Subscription};
//!
//! #[kafkaesk::schema("Content", version = 1)]
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! pub struct ContentMessage { pub foo: String }
//!
//! async fn get_messages(data: ContentMessage) {
//!     println!("{}", data.foo);
//! }
//!
//! # fn main() -> Result<(), kafkaesk::Error> {
//! let mut router = Router::new();
//! router.schema::<ContentMessage>()?;
//! router.subscribe(Subscription::new("content.*", get_messages).group("group_id"));
//!
//! let app = kafkaesk::Application::builder()
//!     .kafka_servers(["localhost:9092"])
//!     .mount(router)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! Types and functions annotated with `#[schema]` and `#[subscribe]` are also
//! collected in a global registry; [`Router::from_registry`] gathers them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::handler::{BoxedHandler, Handler};
use crate::ordering::RecordOrder;
use crate::policy::ErrorPolicy;
use crate::position::Position;
use crate::schema::{Schema, SchemaInfo};
use crate::topics::{fnmatch, fnmatch_to_regex};

/// What a subscription consumes: streams matching a pattern, or a fixed list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streams {
    /// An fnmatch pattern over stream names, such as `content.*`. Topics
    /// created after the consumer started are picked up when they match.
    Pattern(String),
    /// An explicit list of stream names.
    List(Vec<String>),
}

impl std::fmt::Display for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Streams::Pattern(p) => f.write_str(p),
            Streams::List(l) => f.write_str(&l.join(",")),
        }
    }
}

impl Streams {
    /// The regular expression a consumer subscribes with, topic prefix included.
    ///
    /// ```
    /// use kafkaesk::Streams;
    /// let list = Streams::List(vec!["a.b".into(), "c".into()]);
    /// assert_eq!(list.regex("p."), r"^(p\.a\.b|p\.c)$");
    /// ```
    pub fn regex(&self, prefix: &str) -> String {
        match self {
            Streams::Pattern(pattern) => fnmatch_to_regex(prefix, pattern),
            Streams::List(list) => {
                let alternatives: Vec<String> = list
                    .iter()
                    .map(|s| {
                        let anchored = fnmatch_to_regex(prefix, s);
                        anchored[1..anchored.len() - 1].to_owned()
                    })
                    .collect();
                format!("^({})$", alternatives.join("|"))
            }
        }
    }

    /// Whether a consumer of these streams under `prefix` reads `topic`.
    ///
    /// ```
    /// use kafkaesk::Streams;
    /// let pattern = Streams::Pattern("orders.*".into());
    /// assert!(pattern.matches_topic("p.", "p.orders.created"));
    /// assert!(!pattern.matches_topic("p.", "orders.created"));
    /// ```
    pub fn matches_topic(&self, prefix: &str, topic: &str) -> bool {
        let Some(stream) = topic.strip_prefix(prefix) else {
            return false;
        };
        match self {
            Streams::Pattern(pattern) => fnmatch(pattern, stream),
            Streams::List(list) => list.iter().any(|s| fnmatch(s, stream)),
        }
    }
}

/// Default number of records a subscription handles at once.
pub const DEFAULT_CONCURRENCY: usize = 1;

/// A handler bound to streams and a consumer group.
///
/// Set its options with the builder methods (`group`, `concurrency`, ...)
/// and read them back with the `get_` methods of the same name, as
/// [`std::process::Command`] does.
///
/// ```
/// use std::time::Duration;
/// use kafkaesk::Subscription;
///
/// async fn on_bytes(raw: Vec<u8>) {}
///
/// let sub = Subscription::new("content.*", on_bytes)
///     .group("content-indexer")
///     .concurrency(10)
///     .timeout(Duration::from_secs(5));
/// assert_eq!(sub.get_name(), "on_bytes");
/// assert_eq!(sub.get_group(), Some("content-indexer"));
/// assert_eq!(sub.get_concurrency(), 10);
/// ```
#[derive(Debug, Clone)]
pub struct Subscription {
    name: Arc<str>,
    streams: Streams,
    group: Option<String>,
    concurrency: usize,
    order: RecordOrder,
    parallel: bool,
    timeout: Option<Duration>,
    on_error: ErrorPolicy,
    exactly_once: bool,
    start: Start,
    partitions: Option<Vec<i32>>,
    without_group: bool,
    handler: BoxedHandler,
}

/// Where a subscription starts, and whether over its group's commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Start {
    /// The position; `None` is the earliest record.
    pub(crate) position: Option<Position>,
    /// Set for a replay: the id recorded with the group's commits, so the
    /// replay happens once.
    pub(crate) replay: Option<String>,
}

impl Subscription {
    /// Subscribes `handler` to the streams matching an fnmatch `pattern`.
    ///
    /// The subscription is named after the handler function (`index` for
    /// `my_crate::orders::index`, and `main::closure` for a closure written
    /// in `main`); that name is the default group. Names must be unique
    /// within an application: give one with [`name`](Self::name) where two
    /// would collide.
    pub fn new<H, Args>(pattern: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Self::with_streams(Streams::Pattern(pattern.into()), handler)
    }

    /// Subscribes `handler` to an explicit list of streams.
    ///
    /// ```
    /// async fn on_bytes(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::for_streams(["orders.created", "orders.paid"], on_bytes);
    /// assert_eq!(sub.get_streams().to_string(), "orders.created,orders.paid");
    /// ```
    pub fn for_streams<H, Args, S>(streams: impl IntoIterator<Item = S>, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
        S: Into<String>,
    {
        Self::with_streams(
            Streams::List(streams.into_iter().map(Into::into).collect()),
            handler,
        )
    }

    fn with_streams<H, Args>(streams: Streams, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Subscription {
            name: Arc::from(handler_name::<H>()),
            streams,
            group: None,
            concurrency: DEFAULT_CONCURRENCY,
            order: RecordOrder::Unordered,
            parallel: false,
            timeout: None,
            on_error: ErrorPolicy::default(),
            exactly_once: false,
            start: Start::default(),
            partitions: None,
            without_group: false,
            handler: BoxedHandler::new(handler),
        }
    }

    /// Sets the consumer group. Defaults to the subscription's name.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets the subscription's name, used in logs, errors and as the default group.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// How many records are handled at once (default 1).
    ///
    /// Handlers that finish without waiting run back to back, up to 64
    /// records between polls of the consumer, whatever the concurrency.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Which records run one after another when several run at once: none
    /// (the default), those with the same key, or those of the same
    /// partition; see [`ordering`](crate::ordering). `#[subscribe(...,
    /// order = "key")]` in the macro.
    pub fn order(mut self, order: RecordOrder) -> Self {
        self.order = order;
        self
    }

    /// Which records run one after another.
    pub fn get_order(&self) -> RecordOrder {
        self.order
    }

    /// Runs each handler as a task of its own on the runtime's worker
    /// threads, so handlers that compute (parse, transform, hash: tens of
    /// microseconds to a millisecond per record) use every core, up to
    /// `concurrency` at once. By default handlers run on the consumer's own
    /// task, which is cheapest for handlers that mostly wait or finish at
    /// once, and uses one core. `#[subscribe(..., parallel = true)]` in the
    /// macro.
    ///
    /// Give the subscription a `concurrency` of at least the number of cores
    /// (a multi-threaded runtime, as `#[tokio::main]` gives). For work of
    /// many milliseconds, call `tokio::task::spawn_blocking` inside the
    /// handler instead: it keeps the worker threads free for the consumer
    /// loop and other tasks. `bench/ANALYSIS.md` measures both.
    ///
    /// ```
    /// async fn fingerprint(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("documents", fingerprint)
    ///     .concurrency(8)
    ///     .parallel();
    /// assert!(sub.get_parallel());
    /// ```
    pub fn parallel(mut self) -> Self {
        self.parallel = true;
        self
    }

    /// Whether handlers run as tasks of their own.
    pub fn get_parallel(&self) -> bool {
        self.parallel
    }

    /// Cancels a handler that runs longer than this. No timeout by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// What happens when the handler fails: stop (the default), skip, retry
    /// or dead-letter. See [`ErrorPolicy`].
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// Runs each batch of records in a transaction: what the handlers
    /// publish through their [`Subscriber`](crate::Subscriber), and what is
    /// dead-lettered, is committed together with the batch's offsets, so
    /// read-committed consumers see each result exactly once, even across a
    /// crash. See [`transaction`](crate::transaction). `#[subscribe(...,
    /// exactly_once = true)]` in the macro.
    ///
    /// The error policy may stop, skip or dead-letter, not retry: a retried
    /// record would run outside its batch's transaction (retry inside the
    /// handler instead). A failing record aborts its batch's transaction,
    /// so the batch's earlier records come back with it.
    ///
    /// Each batch pays for a transaction: about 19 ms on the test broker,
    /// whatever its size (`bench/ANALYSIS.md`). Handlers that wait run in
    /// batches of `concurrency` records, so give them a concurrency that
    /// makes batches worth it.
    ///
    /// ```
    /// async fn enrich(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("orders", enrich).exactly_once();
    /// assert!(sub.get_exactly_once());
    /// ```
    pub fn exactly_once(mut self) -> Self {
        self.exactly_once = true;
        self
    }

    /// Where a group that has no committed offset yet starts: the earliest
    /// record (the default), the latest (only new records), an offset, a
    /// time, or a time ago; see [`position`](crate::position). A group that
    /// has committed goes on from its commits; [`replay_from`](Self::replay_from)
    /// overrides them. `#[subscribe(..., start_at = "-24h")]` in the macro.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kafkaesk::position::Position;
    /// async fn audit(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("orders", audit)
    ///     .start_at(Position::Since(Duration::from_secs(24 * 3600)));
    /// assert_eq!(sub.get_start_at(), Position::Since(Duration::from_secs(86_400)));
    /// ```
    pub fn start_at(mut self, position: Position) -> Self {
        self.start.position = Some(position);
        self
    }

    /// Starts at `position` even where the group has committed offsets: a
    /// replay. It happens once: the first time each partition is assigned,
    /// its offset is moved to the position, committed, and logged, and the
    /// group's commits record the replay (their metadata holds
    /// `kafkaesk-replay:` and the replay's id), so other instances of the
    /// group, and restarts, go on from the commits instead of replaying
    /// again. The id is the position's text (`-24h`); give another with
    /// [`replay_id`](Self::replay_id) to replay from the same position again.
    /// `#[subscribe(..., replay_from = "earliest")]` in the macro.
    ///
    /// A subscription [`without_group`](Self::without_group) has no commits
    /// to replay over: use [`start_at`](Self::start_at).
    ///
    /// ```
    /// use kafkaesk::position::Position;
    /// async fn reindex(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("documents", reindex).replay_from(Position::Earliest);
    /// assert_eq!(sub.get_replay_id(), Some("earliest"));
    /// ```
    pub fn replay_from(mut self, position: Position) -> Self {
        self.start.position = Some(position);
        if self.start.replay.is_none() {
            self.start.replay = Some(position.to_string());
        }
        self
    }

    /// Names a [`replay`](Self::replay_from), so a replay from a position
    /// used before happens again (`#[subscribe(..., replay_id = "incident-42")]`).
    pub fn replay_id(mut self, id: impl Into<String>) -> Self {
        self.start.replay = Some(id.into());
        self
    }

    /// Consumes only these partitions of each stream. The subscription is
    /// then assigned them rather than balanced across the group's members:
    /// every instance consumes all of them, and commits (if it has a group)
    /// to the group. `#[subscribe(..., partitions = [0, 1])]` in the macro.
    ///
    /// ```
    /// async fn shard(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("orders", shard).partitions([0, 2]);
    /// assert_eq!(sub.get_partitions(), Some(&[0, 2][..]));
    /// ```
    pub fn partitions(mut self, partitions: impl IntoIterator<Item = i32>) -> Self {
        let mut partitions: Vec<i32> = partitions.into_iter().collect();
        partitions.sort_unstable();
        partitions.dedup();
        self.partitions = Some(partitions);
        self
    }

    /// Consumes without a consumer group (Liftbridge's subscriptions,
    /// EventStore's catch-up subscriptions): the subscription is assigned
    /// every partition of its streams (or the [chosen](Self::partitions)
    /// ones), starts at its [position](Self::start_at), reads the history
    /// and then follows new records. It commits nothing, so each
    /// application, and each run, sees every message from its position.
    /// Handlers, error policies, concurrency and stopping work as for group
    /// subscriptions; [`Subscriber::commit`](crate::Subscriber::commit),
    /// [`exactly_once`](Self::exactly_once) and [`replay_from`](Self::replay_from)
    /// need a group and are refused. Streams created later that match the
    /// pattern are picked up within `topic.metadata.refresh.interval.ms`
    /// (5 s), from their first record. `#[subscribe(..., without_group = true)]`
    /// in the macro.
    ///
    /// ```
    /// async fn cache(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("prices", cache).without_group();
    /// assert_eq!(sub.get_group(), None);
    /// ```
    pub fn without_group(mut self) -> Self {
        self.without_group = true;
        self
    }

    /// Where the subscription starts when nothing is committed.
    pub fn get_start_at(&self) -> Position {
        self.start.position.unwrap_or(Position::Earliest)
    }

    /// The replay's id, when the subscription replays.
    pub fn get_replay_id(&self) -> Option<&str> {
        self.start.replay.as_deref()
    }

    pub(crate) fn get_start(&self) -> &Start {
        &self.start
    }

    /// The partitions chosen, if any.
    pub fn get_partitions(&self) -> Option<&[i32]> {
        self.partitions.as_deref()
    }

    /// Whether partitions are assigned by kafkaesk (no group, or chosen
    /// partitions) rather than balanced by the group.
    pub(crate) fn assigns_itself(&self) -> bool {
        self.without_group || self.partitions.is_some()
    }

    /// Whether batches run in transactions with their offsets.
    pub fn get_exactly_once(&self) -> bool {
        self.exactly_once
    }

    /// The error policy.
    pub fn get_error_policy(&self) -> &ErrorPolicy {
        &self.on_error
    }

    /// The subscription's name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// The name, shared with the consumer's logs and subscribers.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The consumer group: the one set with [`group`](Self::group), or the
    /// name; `None` [`without_group`](Self::without_group).
    pub fn get_group(&self) -> Option<&str> {
        if self.without_group {
            return None;
        }
        Some(self.group.as_deref().unwrap_or(&self.name))
    }

    /// The streams consumed.
    pub fn get_streams(&self) -> &Streams {
        &self.streams
    }

    /// Records handled at once.
    pub fn get_concurrency(&self) -> usize {
        self.concurrency
    }

    /// The handler timeout.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn handler(&self) -> &BoxedHandler {
        &self.handler
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |reason: &str| {
            Err(Error::InvalidSubscription {
                pattern: self.streams.to_string(),
                reason: reason.to_owned(),
            })
        };
        if self.concurrency == 0 {
            return fail("concurrency must be at least 1");
        }
        if self.timeout == Some(Duration::ZERO) {
            return fail("timeout must be longer than zero");
        }
        if self.get_group() == Some("") {
            return fail("the consumer group is empty");
        }
        if self.without_group {
            if self.group.is_some() {
                return fail("a subscription without a group cannot also name a group");
            }
            if self.exactly_once {
                return fail(
                    "an exactly-once subscription commits its offsets in its transactions, \
                     which needs a consumer group",
                );
            }
            if self.start.replay.is_some() {
                return fail(
                    "a subscription without a group commits nothing, so there is nothing to \
                     replay over: use start_at",
                );
            }
        }
        if let Some(Position::Offset(offset)) = self.start.position {
            if offset < 0 {
                return fail("a start offset cannot be negative");
            }
        }
        if self.start.replay.as_deref() == Some("") {
            return fail("the replay id is empty");
        }
        if let Some(partitions) = &self.partitions {
            if partitions.is_empty() {
                return fail("the list of partitions is empty");
            }
            if partitions.iter().any(|&p| p < 0) {
                return fail("partition numbers cannot be negative");
            }
        }
        if let Some(problem) = self.on_error.problem() {
            return fail(problem);
        }
        if self.exactly_once && self.on_error.retry_after(1).is_some() {
            return fail(
                "an exactly-once subscription cannot retry in the background: the retried \
                 record's output would miss its batch's transaction; retry inside the \
                 handler, or skip or dead-letter",
            );
        }
        match &self.streams {
            Streams::Pattern(p) if p.is_empty() => fail("the pattern is empty"),
            Streams::List(l) if l.is_empty() => fail("the stream list is empty"),
            _ => Ok(()),
        }
    }
}

/// The name of a handler function: `crate::module::index` gives `index`,
/// `crate::module::index::<T>` gives `index`, and a closure written in
/// `crate::main` gives `main::closure`.
fn handler_name<H>() -> String {
    handler_name_of(std::any::type_name::<H>())
}

fn handler_name_of(type_name: &str) -> String {
    // Generic arguments name other types: `index<my::Foo>` is `index`.
    let path = type_name.split('<').next().unwrap_or(type_name);
    let mut segments = path.rsplit("::");
    let last = segments.next().unwrap_or(path);
    if last != "{{closure}}" {
        return last.to_owned();
    }
    let within = segments
        .find(|segment| *segment != "{{closure}}")
        .unwrap_or("handler");
    format!("{within}::closure")
}

/// Schemas and subscriptions.
#[derive(Debug, Clone, Default)]
pub struct Router {
    schemas: Vec<Arc<SchemaInfo>>,
    subscriptions: Vec<Subscription>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Router::default()
    }

    /// Registers a schema type.
    ///
    /// Registering the same type twice is harmless; registering two types under
    /// the same `"Id:version"` is an [`Error::SchemaConflict`].
    pub fn schema<T: Schema>(&mut self) -> Result<&mut Self> {
        self.add_schema(Arc::new(SchemaInfo::of::<T>()?))
    }

    pub(crate) fn add_schema(&mut self, info: Arc<SchemaInfo>) -> Result<&mut Self> {
        if let Some(existing) = self.schemas.iter().find(|s| s.key() == info.key()) {
            if existing.type_id() == info.type_id() {
                return Ok(self);
            }
            return Err(Error::SchemaConflict {
                key: info.key().to_owned(),
                existing: existing.type_name(),
                new: info.type_name(),
            });
        }
        self.schemas.push(info);
        Ok(self)
    }

    /// Adds a subscription.
    pub fn subscribe(&mut self, subscription: Subscription) -> &mut Self {
        self.subscriptions.push(subscription);
        self
    }

    /// Merges another router's schemas and subscriptions into this one.
    pub fn mount(&mut self, other: Router) -> Result<&mut Self> {
        for schema in other.schemas {
            self.add_schema(schema)?;
        }
        self.subscriptions.extend(other.subscriptions);
        Ok(self)
    }

    /// The registered schemas.
    pub fn schemas(&self) -> impl Iterator<Item = &SchemaInfo> {
        self.schemas.iter().map(AsRef::as_ref)
    }

    /// The subscriptions.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// Puts `prefix` before every subscription's consumer group, so that
    /// applications of one router sharing a broker never share a group.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn prefix_groups(&mut self, prefix: &str) {
        for subscription in &mut self.subscriptions {
            if let Some(group) = subscription.get_group() {
                subscription.group = Some(format!("{prefix}{group}"));
            }
        }
    }

    pub(crate) fn schema_infos(&self) -> impl Iterator<Item = &Arc<SchemaInfo>> {
        self.schemas.iter()
    }

    /// Checks every subscription, and that no two share a name.
    pub(crate) fn validate(&self) -> Result<()> {
        let mut names: HashMap<&str, &Subscription> = HashMap::new();
        for subscription in &self.subscriptions {
            subscription.validate()?;
            if let Some(first) = names.insert(subscription.get_name(), subscription) {
                return Err(Error::DuplicateSubscription {
                    name: subscription.get_name().to_owned(),
                    first: first.get_streams().to_string(),
                    second: subscription.get_streams().to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct A {
        x: i32,
    }
    impl Schema for A {
        const ID: &'static str = "Thing";
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct B {
        y: i32,
    }
    impl Schema for B {
        const ID: &'static str = "Thing";
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct B2 {
        y: i32,
    }
    impl Schema for B2 {
        const ID: &'static str = "Thing";
        const VERSION: u32 = 2;
    }

    async fn on_a(_: A) {}

    #[test]
    fn exactly_once_refuses_background_retries_but_not_skips_or_dead_letters() {
        let retrying = Subscription::new("a", on_a)
            .exactly_once()
            .on_error(ErrorPolicy::retry(3, Duration::from_millis(10)));
        let err = retrying.validate().unwrap_err();
        assert!(err.to_string().contains("exactly-once"), "{err}");
        for policy in [ErrorPolicy::skip(), ErrorPolicy::dead_letter("dead")] {
            let sub = Subscription::new("a", on_a).exactly_once().on_error(policy);
            assert!(sub.validate().is_ok());
        }
        assert!(!Subscription::new("a", on_a).get_exactly_once());
    }

    #[test]
    fn topic_lists_become_one_anchored_alternation() {
        let re = Streams::List(vec!["a.b".into(), "c".into()]).regex("p.");
        assert_eq!(re, r"^(p\.a\.b|p\.c)$");
        let re = regex::Regex::new(&re).unwrap();
        assert!(re.is_match("p.a.b") && re.is_match("p.c"));
        assert!(!re.is_match("p.axb") && !re.is_match("p.cd"));
        let list = Streams::List(vec!["a.b".into(), "c".into()]);
        assert!(list.matches_topic("p.", "p.c") && !list.matches_topic("p.", "p.cd"));
    }

    #[test]
    fn same_key_twice_is_a_conflict_naming_both_types() {
        let mut router = Router::new();
        router.schema::<A>().unwrap();
        router.schema::<A>().unwrap();
        let err = router.schema::<B>().unwrap_err();
        let Error::SchemaConflict { key, existing, new } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(key, "Thing:1");
        assert!(existing.ends_with("::A") && new.ends_with("::B"), "{err}");
        router.schema::<B2>().unwrap();
    }

    #[test]
    fn mount_detects_conflicts_across_routers() {
        let mut a = Router::new();
        a.schema::<A>().unwrap();
        let mut b = Router::new();
        b.schema::<B>().unwrap();
        assert!(matches!(a.mount(b), Err(Error::SchemaConflict { .. })));
    }

    async fn generic<T: crate::extract::FromMessage>(_: T) {}

    #[test]
    fn default_names_are_the_function_name_without_generics_or_closures() {
        assert_eq!(
            Subscription::new("a", generic::<Vec<u8>>).get_name(),
            "generic"
        );
        let closure = Subscription::new("a", |_: Vec<u8>| async {});
        assert_eq!(
            closure.get_name(),
            "default_names_are_the_function_name_without_generics_or_closures::closure"
        );
        assert_eq!(handler_name_of("c::m::index<c::Foo<u8>>"), "index");
        assert_eq!(
            handler_name_of("c::main::{{closure}}::{{closure}}"),
            "main::closure"
        );
    }

    #[test]
    fn two_subscriptions_with_one_name_are_refused() {
        let mut router = Router::new();
        router.subscribe(Subscription::new("a.*", on_a));
        router.subscribe(Subscription::new("b.*", on_a).group("other"));
        let err = router.validate().unwrap_err();
        let Error::DuplicateSubscription {
            name,
            first,
            second,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(
            (name.as_str(), first.as_str(), second.as_str()),
            ("on_a", "a.*", "b.*")
        );
        assert!(err.to_string().contains("name"), "{err}");
        router.subscriptions.pop();
        router.subscribe(Subscription::new("b.*", on_a).name("on_a_again"));
        router.validate().unwrap();
    }

    #[test]
    fn subscription_defaults_to_function_name_group() {
        let sub = Subscription::new("a.*", on_a);
        assert_eq!(sub.get_name(), "on_a");
        assert_eq!(sub.get_group(), Some("on_a"));
        assert!(Subscription::new("a", on_a)
            .concurrency(0)
            .validate()
            .is_err());
    }
}
