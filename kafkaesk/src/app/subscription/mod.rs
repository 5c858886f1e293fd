//! What an application consumes, without any Kafka configuration:
//! [`Subscription`]s (streams, group, concurrency, [ordering](RecordOrder),
//! [start position](Position), [error policy](ErrorPolicy), [rebalance
//! hooks](hooks)) and the
//! [`Router`] that gathers them with the schemas. The `#[subscribe]` and
//! `#[schema]` macros fill a registry that [`Router::from_registry`] reads.

pub mod hooks;
pub(crate) mod ordering;
pub(crate) mod policy;
pub(crate) mod position;
pub(crate) mod registry;
pub(crate) mod router;
mod streams;
#[cfg(test)]
mod tests;

pub use hooks::{Assigned, Revoked, StreamPartition, DEFAULT_REBALANCE_HOOK_TIMEOUT};
pub use ordering::RecordOrder;
pub use policy::{delay_name, ErrorPolicy, FinalAction, Retry, MAX_RETRY_DELAY, MAX_RETRY_STREAMS};
pub use position::Position;
pub use router::Router;
pub use streams::{fnmatch, fnmatch_to_regex, is_pattern, Streams};

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::handling::{BoxedHandler, Handler, IntoHandlerResult};
use hooks::RebalanceHooks;

/// Default number of records a subscription handles at once.
pub const DEFAULT_CONCURRENCY: usize = 1;

/// A handler bound to streams and a consumer group.
///
/// Set its options with the builder methods (`with_group`,
/// `with_concurrency`, ..., and `parallel`, `exactly_once`, `on_error` for
/// the ones without a value to read back), and read them back with the
/// methods of the plain name (`group`, `concurrency`, ..., `is_parallel`,
/// `is_exactly_once`, `error_policy`), as the Rust API guidelines name
/// getters.
///
/// ```
/// use std::time::Duration;
/// use kafkaesk::Subscription;
///
/// async fn on_bytes(raw: Vec<u8>) {}
///
/// let sub = Subscription::new("content.*", on_bytes)
///     .with_group("content-indexer")
///     .with_concurrency(10)
///     .with_timeout(Duration::from_secs(5));
/// assert_eq!(sub.name(), "on_bytes");
/// assert_eq!(sub.group(), Some("content-indexer"));
/// assert_eq!(sub.concurrency(), 10);
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
    stall_timeout: Option<Duration>,
    cancel_stalled: bool,
    on_error: ErrorPolicy,
    exactly_once: bool,
    start: Start,
    partitions: Option<Vec<i32>>,
    without_group: bool,
    hooks: RebalanceHooks,
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
    /// assert_eq!(sub.streams().to_string(), "orders.created,orders.paid");
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
            stall_timeout: None,
            cancel_stalled: false,
            on_error: ErrorPolicy::default(),
            exactly_once: false,
            start: Start::default(),
            partitions: None,
            without_group: false,
            hooks: RebalanceHooks::default(),
            handler: BoxedHandler::new(handler),
        }
    }

    /// Sets the consumer group. Defaults to the subscription's name.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets the subscription's name, used in logs, errors and as the default group.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// How many records are handled at once (default 1).
    ///
    /// Handlers that finish without waiting run back to back, up to 64
    /// records between polls of the consumer, whatever the concurrency.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Which records run one after another when several run at once: none
    /// (the default), those with the same key, or those of the same
    /// partition; see [`ordering`](crate::subscription::RecordOrder). `#[subscribe(...,
    /// order = "key")]` in the macro.
    pub fn with_order(mut self, order: RecordOrder) -> Self {
        self.order = order;
        self
    }

    /// Which records run one after another.
    pub fn order(&self) -> RecordOrder {
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
    ///     .with_concurrency(8)
    ///     .parallel();
    /// assert!(sub.is_parallel());
    /// ```
    pub fn parallel(mut self) -> Self {
        self.parallel = true;
        self
    }

    /// Whether handlers run as tasks of their own.
    pub fn is_parallel(&self) -> bool {
        self.parallel
    }

    /// Cancels a handler that runs longer than this. No timeout by default.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Reports a partition that makes no progress for this long: the
    /// oldest record fetched from it and not settled (handled, skipped or
    /// dead-lettered) has waited that long, in a handler that does not
    /// return or behind one. The partition is logged once with that record,
    /// listed in [`ConsumerHealth::stuck`](crate::ConsumerHealth::stuck),
    /// and turns [`Application::health_check`](crate::Application::health_check)
    /// (and `/health`) unhealthy until it moves. Off by default; the
    /// `kafkaesk_consumer_oldest_unfinished_seconds` gauge shows the wait
    /// either way. Looked at once a second, so it is exact to a second.
    ///
    /// Set it above the longest a record may rightly take, retries by the
    /// [error policy](Self::on_error) included: a partition retrying a record
    /// makes no progress either. A paused partition is never stuck.
    ///
    /// ```
    /// use std::time::Duration;
    /// # async fn index(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("orders", index)
    ///     .with_stall_timeout(Duration::from_secs(60))
    ///     .cancel_stalled();
    /// assert_eq!(sub.stall_timeout(), Some(Duration::from_secs(60)));
    /// ```
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = Some(timeout);
        self
    }

    /// Besides reporting a stuck partition (see
    /// [`with_stall_timeout`](Self::with_stall_timeout)), cancels a handler
    /// once it has run for the stall timeout, as its
    /// [`timeout`](Self::with_timeout) would: its record then goes through
    /// the [error policy](Self::on_error) as a handler timeout. For handlers
    /// that may hang without a timeout of their own; where both are set,
    /// the shorter one cancels.
    pub fn cancel_stalled(mut self) -> Self {
        self.cancel_stalled = true;
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
    /// crash. See [`transaction`](crate::Transaction). `#[subscribe(...,
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
    /// assert!(sub.is_exactly_once());
    /// ```
    pub fn exactly_once(mut self) -> Self {
        self.exactly_once = true;
        self
    }

    /// Where a group that has no committed offset yet starts: the earliest
    /// record (the default), the latest (only new records), an offset, a
    /// time, or a time ago; see [`position`](crate::subscription::Position). A group that
    /// has committed goes on from its commits; [`replay_from`](Self::replay_from)
    /// overrides them. `#[subscribe(..., start_at = "-24h")]` in the macro.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kafkaesk::subscription::Position;
    /// async fn audit(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("orders", audit)
    ///     .with_start_at(Position::Since(Duration::from_secs(24 * 3600)));
    /// assert_eq!(sub.start_at(), Position::Since(Duration::from_secs(86_400)));
    /// ```
    pub fn with_start_at(mut self, position: Position) -> Self {
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
    /// use kafkaesk::subscription::Position;
    /// async fn reindex(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("documents", reindex).replay_from(Position::Earliest);
    /// assert_eq!(sub.replay_id(), Some("earliest"));
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
    pub fn with_replay_id(mut self, id: impl Into<String>) -> Self {
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
    /// let sub = kafkaesk::Subscription::new("orders", shard).with_partitions([0, 2]);
    /// assert_eq!(sub.partitions(), Some(&[0, 2][..]));
    /// ```
    pub fn with_partitions(mut self, partitions: impl IntoIterator<Item = i32>) -> Self {
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
    /// assert_eq!(sub.group(), None);
    /// ```
    pub fn without_group(mut self) -> Self {
        self.without_group = true;
        self
    }

    /// Runs `hook` each time the subscription's consumer is assigned
    /// partitions, before any record of them is fetched: to load their
    /// state, or to [`seek`](Assigned::seek) them. It may return `()` or
    /// `Result<(), E>`; a failure is logged and counted, and the rebalance
    /// goes on without its seeks. See [`hooks`] for when it runs, and
    /// [`with_rebalance_hook_timeout`](Self::with_rebalance_hook_timeout)
    /// for how long it may.
    ///
    /// A subscription that assigns itself its partitions ([`without_group`](Self::without_group),
    /// or [chosen partitions](Self::with_partitions)) runs it as it assigns
    /// them.
    ///
    /// ```
    /// use kafkaesk::subscription::{Assigned, Position};
    /// async fn index(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("orders", index).on_assigned(|assigned: Assigned| async move {
    ///     if assigned.contains("orders", 0) {
    ///         assigned.seek("orders", 0, Position::Earliest)?;
    ///     }
    ///     Ok::<_, kafkaesk::Error>(())
    /// });
    /// assert!(sub.has_rebalance_hooks());
    /// ```
    pub fn on_assigned<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Assigned) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future + Send + 'static,
        Fut::Output: IntoHandlerResult,
    {
        self.hooks.on_assigned = Some(RebalanceHooks::boxed(hook));
        self
    }

    /// Runs `hook` each time partitions are revoked from the subscription's
    /// consumer, once what was handled of them is committed, and as the
    /// consumer stops: to flush their state. It may return `()` or
    /// `Result<(), E>`; a failure is logged and counted, and the rebalance
    /// goes on. See [`hooks`] for when it runs. A subscription that assigns
    /// itself its partitions is never revoked any.
    ///
    /// ```
    /// use kafkaesk::subscription::Revoked;
    /// async fn index(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("orders", index).on_revoked(|revoked: Revoked| async move {
    ///     for p in revoked.partitions() {
    ///         println!("{} moves to another member", p);
    ///     }
    /// });
    /// assert!(sub.has_rebalance_hooks());
    /// ```
    pub fn on_revoked<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Revoked) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future + Send + 'static,
        Fut::Output: IntoHandlerResult,
    {
        self.hooks.on_revoked = Some(RebalanceHooks::boxed(hook));
        self
    }

    /// How long a rebalance hook may run before it is cut, logged and
    /// counted as failed ([`DEFAULT_REBALANCE_HOOK_TIMEOUT`], 30 s, by
    /// default). The consumer polls nothing while a hook runs, so the bound
    /// is also at most half of the consumer's `max.poll.interval.ms` (300 s
    /// by default), past which the broker would take it out of its group.
    ///
    /// ```
    /// use std::time::Duration;
    /// async fn index(raw: Vec<u8>) {}
    /// let sub = kafkaesk::Subscription::new("orders", index)
    ///     .with_rebalance_hook_timeout(Duration::from_secs(5));
    /// assert_eq!(sub.rebalance_hook_timeout(), Duration::from_secs(5));
    /// ```
    pub fn with_rebalance_hook_timeout(mut self, timeout: Duration) -> Self {
        self.hooks.timeout = timeout;
        self
    }

    /// How long a rebalance hook may run.
    pub fn rebalance_hook_timeout(&self) -> Duration {
        self.hooks.timeout
    }

    /// Whether an [`on_assigned`](Self::on_assigned) or
    /// [`on_revoked`](Self::on_revoked) hook is set.
    pub fn has_rebalance_hooks(&self) -> bool {
        self.hooks.any()
    }

    pub(crate) fn rebalance_hooks(&self) -> &RebalanceHooks {
        &self.hooks
    }

    /// Where the subscription starts when nothing is committed.
    pub fn start_at(&self) -> Position {
        self.start.position.unwrap_or(Position::Earliest)
    }

    /// The replay's id, when the subscription replays.
    pub fn replay_id(&self) -> Option<&str> {
        self.start.replay.as_deref()
    }

    pub(crate) fn get_start(&self) -> &Start {
        &self.start
    }

    /// The partitions chosen, if any.
    pub fn partitions(&self) -> Option<&[i32]> {
        self.partitions.as_deref()
    }

    /// Whether partitions are assigned by kafkaesk (no group, or chosen
    /// partitions) rather than balanced by the group.
    pub(crate) fn assigns_itself(&self) -> bool {
        self.without_group || self.partitions.is_some()
    }

    /// Whether batches run in transactions with their offsets.
    pub fn is_exactly_once(&self) -> bool {
        self.exactly_once
    }

    /// The error policy.
    pub fn error_policy(&self) -> &ErrorPolicy {
        &self.on_error
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared with the consumer's logs and subscribers.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The consumer group: the one set with [`group`](Self::group), or the
    /// name; `None` [`without_group`](Self::without_group).
    pub fn group(&self) -> Option<&str> {
        if self.without_group {
            return None;
        }
        Some(self.group.as_deref().unwrap_or(&self.name))
    }

    /// The streams consumed.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Records handled at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The handler timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The retry streams of its [error policy](ErrorPolicy::retry_in), one
    /// per delay, in order: empty without any. Named after the group and
    /// the delay (see [`retry_stream::stream_name`](crate::retry_stream::stream_name)).
    pub fn retry_streams(&self) -> Vec<String> {
        let group = self.group().unwrap_or(&self.name);
        self.on_error
            .retry_delays()
            .iter()
            .map(|delay| crate::retry_stream::stream_name(group, &self.name, *delay))
            .collect()
    }

    /// How long a partition may make no progress before it is reported
    /// stuck (see [`with_stall_timeout`](Self::with_stall_timeout)).
    pub fn stall_timeout(&self) -> Option<Duration> {
        self.stall_timeout
    }

    /// Whether a handler is cancelled once it has run for the stall timeout
    /// (see [`cancel_stalled`](Self::cancel_stalled)).
    pub fn cancels_stalled(&self) -> bool {
        self.cancel_stalled
    }

    /// The longest a handler runs before it is cancelled: its timeout, or
    /// the stall timeout if [`cancel_stalled`](Self::cancel_stalled) and
    /// shorter.
    pub(crate) fn handler_deadline(&self) -> Option<Duration> {
        let stall = self.stall_timeout.filter(|_| self.cancel_stalled);
        match (self.timeout, stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
        if self.hooks.timeout == Duration::ZERO {
            return fail("the rebalance hook timeout must be longer than zero");
        }
        if self.timeout == Some(Duration::ZERO) {
            return fail("timeout must be longer than zero");
        }
        if self.stall_timeout == Some(Duration::ZERO) {
            return fail("stall_timeout must be longer than zero");
        }
        if self.cancel_stalled && self.stall_timeout.is_none() {
            return fail("cancel_stalled needs a stall_timeout");
        }
        if self.group() == Some("") {
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
        if !self.on_error.retry_delays().is_empty() {
            if self.assigns_itself() {
                return fail(
                    "retry streams need a consumer group that is assigned partitions (their \
                     offsets are committed): not without_group, nor chosen partitions",
                );
            }
            if self.order != RecordOrder::Unordered {
                return fail(
                    "a record moved to a retry stream leaves its key's order (the records \
                     behind it are handled first), so retry streams cannot be combined with \
                     order = \"key\" or \"partition\"; retry in place (retry = N) where order \
                     matters",
                );
            }
            for stream in self.retry_streams() {
                if stream.len() > crate::retry_stream::MAX_STREAM_NAME {
                    return fail(
                        "a retry stream's name is too long: give the group a shorter name",
                    );
                }
            }
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
