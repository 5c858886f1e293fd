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
use crate::policy::ErrorPolicy;
use crate::registry;
use crate::schema::{Schema, SchemaInfo};

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

/// Default number of records a subscription handles at once.
pub const DEFAULT_CONCURRENCY: usize = 1;

/// A handler bound to streams and a consumer group.
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
/// assert_eq!(sub.group_id(), "content-indexer");
/// ```
#[derive(Debug, Clone)]
pub struct Subscription {
    name: Arc<str>,
    streams: Streams,
    group: Option<String>,
    concurrency: usize,
    timeout: Option<Duration>,
    on_error: ErrorPolicy,
    handler: BoxedHandler,
}

impl Subscription {
    /// Subscribes `handler` to the streams matching an fnmatch `pattern`.
    ///
    /// The subscription is named after the handler function; that name is the
    /// default group.
    pub fn new<H, Args>(pattern: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Self::with_streams(Streams::Pattern(pattern.into()), handler)
    }

    /// Subscribes `handler` to an explicit list of streams.
    pub fn streams<H, Args, S>(streams: impl IntoIterator<Item = S>, handler: H) -> Self
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
            timeout: None,
            on_error: ErrorPolicy::default(),
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

    /// The error policy.
    pub fn error_policy(&self) -> &ErrorPolicy {
        &self.on_error
    }

    /// The subscription's name.
    pub fn subscription_name(&self) -> &str {
        &self.name
    }

    /// The name, shared with the consumer's logs and subscribers.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The consumer group.
    pub fn group_id(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// The streams consumed.
    pub fn stream_spec(&self) -> &Streams {
        &self.streams
    }

    /// Records handled at once.
    pub fn concurrency_limit(&self) -> usize {
        self.concurrency
    }

    /// The handler timeout.
    pub fn handler_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Decodes `record` and runs the handler on it once, as a consumer would,
    /// without a broker: for tests, fuzzing and benchmarks of handlers.
    ///
    /// Returns `Ok(())` when the handler succeeded, [`Error::Unhandled`] when
    /// the record cannot be decoded into what the handler takes, and
    /// [`Error::Handler`], [`Error::HandlerPanic`] or [`Error::HandlerTimeout`]
    /// when it failed. No error policy applies and nothing is committed;
    /// [`Subscriber::commit`](crate::Subscriber::commit) returns
    /// [`Error::Stopped`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use kafkaesk::{Application, Headers, Record, Subscription};
    ///
    /// #[kafkaesk::schema("Content")]
    /// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// pub struct Content { pub foo: String }
    ///
    /// async fn index(data: Content) {}
    ///
    /// let app = Application::builder().build().unwrap();
    /// let sub = Subscription::new("content", index);
    /// let good = Record::new("content", 0, 0, None, Some(br#"{"schema":"Content:1","data":{"foo":"x"}}"#.to_vec()), Headers::new(), None);
    /// assert!(sub.handle_record(&app, good).await.is_ok());
    /// let bad = Record::new("content", 0, 1, None, Some(b"not json".to_vec()), Headers::new(), None);
    /// assert!(matches!(sub.handle_record(&app, bad).await, Err(kafkaesk::Error::Unhandled { .. })));
    /// # }
    /// ```
    pub async fn handle_record(
        &self,
        app: &crate::Application,
        record: crate::Record,
    ) -> Result<()> {
        crate::consumer::handle_detached(app, self, record).await
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
        if self.group_id().is_empty() {
            return fail("the consumer group is empty");
        }
        if let Some(problem) = self.on_error.problem() {
            return fail(problem);
        }
        match &self.streams {
            Streams::Pattern(p) if p.is_empty() => fail("the pattern is empty"),
            Streams::List(l) if l.is_empty() => fail("the stream list is empty"),
            _ => Ok(()),
        }
    }
}

/// The name of a handler function: `crate::module::index` gives `index`.
fn handler_name<H>() -> String {
    let full = std::any::type_name::<H>();
    if full.contains("{{closure}}") {
        return "handler".to_owned();
    }
    full.rsplit("::").next().unwrap_or(full).to_owned()
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

    /// Every schema and subscription registered with `#[schema]` and `#[subscribe]`
    /// in the crates linked into this program.
    pub fn from_registry() -> Result<Self> {
        let mut router = Router::new();
        for schema in registry::schemas() {
            router.add_schema(Arc::new((schema.compile)()?))?;
        }
        for subscription in registry::subscriptions() {
            router.subscribe((subscription.build)());
        }
        Ok(router)
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

    pub(crate) fn schema_map(&self) -> HashMap<std::any::TypeId, Arc<SchemaInfo>> {
        self.schemas
            .iter()
            .map(|s| (s.type_id(), s.clone()))
            .collect()
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

    #[test]
    fn subscription_defaults_to_function_name_group() {
        let sub = Subscription::new("a.*", on_a);
        assert_eq!(sub.subscription_name(), "on_a");
        assert_eq!(sub.group_id(), "on_a");
        assert!(Subscription::new("a", on_a)
            .concurrency(0)
            .validate()
            .is_err());
    }
}
