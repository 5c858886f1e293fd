//! # kafkaesk
//!
//! Declarative, JSON-Schema-validated pub/sub for Apache Kafka: the Rust
//! counterpart of Python's [kafkaesk](https://github.com/onna/kafkaesk),
//! wire-compatible with it.
//!
//! Annotate message types with [`#[schema]`](macro@schema) and async handlers
//! with [`#[subscribe]`](macro@subscribe); publish typed messages, validated
//! against their JSON Schema before they leave; run the handlers with
//! [`Application::run`] or the `kafkaesk` command.
//!
//! ```no_run
//! #[kafkaesk::schema("Content", version = 1, retention = 86400, streams = ["content.edited"])]
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! pub struct ContentMessage {
//!     pub foo: String,
//! }
//!
//! #[kafkaesk::subscribe("content.*", group = "content-indexer")]
//! async fn index(data: ContentMessage, subscriber: kafkaesk::Subscriber) -> Result<(), kafkaesk::Error> {
//!     // Carries the consumed record's headers.
//!     subscriber.publish("content.indexed", &data).await?;
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), kafkaesk::Error> {
//!     let app = kafkaesk::Application::builder()
//!         .kafka_servers(["localhost:9092"])
//!         .with_registry()?
//!         .build()?;
//!     app.publish_and_wait("content.edited", &ContentMessage { foo: "bar".into() }).await?;
//!     app.run().await
//! }
//! ```
//!
//! Messages travel in Python kafkaesk's envelope,
//! `{"schema":"Content:1","data":{...}}`, and are consumed at least once:
//! make handlers idempotent.
//!
//! # The modules, one concept each
//!
//! Data flows one way: macros → registry → router → application → consumer
//! → handler.
//!
//! | module | concept |
//! |---|---|
//! | [`schema`](mod@schema) | ids, JSON Schemas, validation, the envelope |
//! | [`router`] | routers and subscriptions, without Kafka configuration |
//! | [`settings`] | the settings, and every librdkafka configuration built from them |
//! | [`app`] | the application: settings, router, hooks, lifecycle, health and counters |
//! | [`publish`] | typed and raw publishing, delivery handles |
//! | [`consumer`] | batch consumers, commits, retries; `run` and `consume_for` |
//! | [`invoke`](crate::invoke) | running a handler once on a record: timeout, panics, outcome |
//! | [`policy`] | what happens when a handler fails (decisions only) |
//! | [`dead_letter`] | the dead-letter contract: headers, the write, replay |
//! | [`extract`] and [`handler`] | what handlers can take, and what they are |
//! | [`subscriber`] | what a handler holds to publish, forward and commit |
//! | [`topics`] | topic names, patterns and creation |
//! | [`record`] | consumed records and headers |
//! | [`logging`] | shipping `tracing` events to a stream |
//! | [`metrics`] | Prometheus metrics with Python kafkaesk's names |
//! | [`exporter`] | `GET /metrics` and `GET /health` over HTTP |
//! | [`propagation`] | handler spans, and traces through headers (feature `opentelemetry`) |
//! | [`worker`] | the `kafkaesk` command's entry point (feature `worker`, on by default) |
//! | `broker` | an embedded development broker (feature `embedded-broker`) |
//! | `testing` | a harness for testing handlers against an embedded broker (feature `testing`) |
//! | [`error`] | the one error type |
//!
//! Private plumbing: `clients` (the lazily created producer and admin
//! client, metadata, connection diagnostics), `producer` (librdkafka's
//! producer with pooled delivery slots), `registry` (what the macros submit)
//! and `sync`.

#![warn(missing_docs)]

// Lets the macros refer to `::kafkaesk` inside this crate too.
extern crate self as kafkaesk;

pub mod admin;
pub mod app;
#[cfg(feature = "embedded-broker")]
pub mod broker;
mod clients;
pub mod consumer;
pub mod contract;
pub mod dead_letter;
pub mod error;
pub mod export;
pub mod exporter;
pub mod extract;
pub mod handler;
mod host;
pub mod invoke;
pub(crate) mod journal;
pub mod logging;
pub mod metrics;
pub mod ordering;
mod partition_end;
pub mod policy;
pub mod position;
mod producer;
pub mod propagation;
pub mod publish;
pub mod reader;
pub mod record;
mod registry;
pub mod router;
pub mod schema;
pub mod settings;
pub mod subscriber;
mod sync;
mod tail;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;
pub mod transaction;
#[cfg(feature = "worker")]
pub mod worker;

pub use app::{Application, ApplicationBuilder, Health, SubscriptionStats};
pub use dead_letter::Replayed;
pub use error::{Error, Result};
pub use extract::{Json, SchemaId};
pub use metrics::Metrics;
pub use policy::ErrorPolicy;
pub use publish::{Delivery, PublishFuture, PublishHandle};
pub use record::{Header, Headers, Record};
pub use router::{Router, Streams, Subscription};
pub use schema::Schema;
pub use settings::{AckPolicy, Settings};
pub use subscriber::Subscriber;
pub use transaction::Transaction;

/// Registers a struct or enum as a message schema.
///
/// ```
/// #[kafkaesk::schema("Content", version = 2, retention = 86400, streams = ["content.edited"])]
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// pub struct ContentMessage { pub foo: String }
/// ```
///
/// Arguments: the id (required), `version` (default 1), `retention` in
/// seconds, and `streams` to create when the application initializes. The
/// type must derive `Serialize`, `Deserialize` and `JsonSchema`. It implements
/// [`Schema`] and is added to the global [registry].
pub use kafkaesk_macros::schema;

/// Registers an async function as a subscription handler.
///
/// ```
/// # #[kafkaesk::schema("Content")]
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # pub struct ContentMessage { pub foo: String }
/// #[kafkaesk::subscribe("content.*", group = "indexer", concurrency = 10, timeout = 5)]
/// async fn index(data: ContentMessage) -> Result<(), kafkaesk::Error> {
///     Ok(())
/// }
/// ```
///
/// Arguments: an fnmatch pattern, or `streams = ["a", "b"]` for a list;
/// `group` (default: the function's name); `concurrency` (default 1);
/// `timeout` in seconds (fractions allowed, no timeout by default).
///
/// `name = "..."` sets the subscription's name, which must be unique within
/// an application (default: the function's name).
///
/// What happens when the handler fails ([`policy`] explains each): `retry = 3`
/// with `backoff = 0.1` (seconds, default 0.1), then `on_error = "stop"`
/// (the default), `on_error = "skip"`, or `dead_letter = "stream"`:
///
/// ```
/// #[kafkaesk::subscribe("orders.*", retry = 3, backoff = 0.2, dead_letter = "orders.dead")]
/// async fn handle(raw: Vec<u8>) -> Result<(), std::io::Error> { Ok(()) }
/// ```
///
/// `exactly_once = true` commits each batch's output and offsets in one
/// transaction (see [`Subscription::exactly_once`]):
///
/// ```
/// #[kafkaesk::subscribe("orders", exactly_once = true, dead_letter = "orders.dead")]
/// async fn enrich(raw: Vec<u8>, subscriber: kafkaesk::Subscriber) -> Result<(), kafkaesk::Error> {
///     let _ = (raw, subscriber);
///     Ok(())
/// }
/// let router = kafkaesk::Router::from_registry().unwrap();
/// assert!(router.subscriptions()[0].get_exactly_once());
/// ```
///
/// Where it starts and what it is assigned ([`position`] has the positions):
/// `start_at = "latest"` (or `"earliest"`, the default, an offset `"42"`, a
/// UTC time `"2026-12-03T10:00:00Z"`, a time ago `"-24h"`) where the group
/// has no commit; `replay_from = "-24h"` over the group's commits, once
/// (`replay_id = "..."` to replay from the same position again);
/// `partitions = [0, 1]` for chosen partitions; `without_group = true` to
/// consume without a consumer group (see [`Subscription::without_group`]).
/// A position that does not parse fails the build:
///
/// ```
/// #[kafkaesk::subscribe("prices", without_group = true, start_at = "-15m", partitions = [0])]
/// async fn cache(raw: Vec<u8>) {}
/// let router = kafkaesk::Router::from_registry().unwrap();
/// let sub = &router.subscriptions()[0];
/// assert_eq!(sub.get_group(), None);
/// assert_eq!(sub.get_start_at(), "-15m".parse().unwrap());
/// ```
///
/// ```compile_fail
/// #[kafkaesk::subscribe("prices", start_at = "yesterday")]
/// async fn cache(raw: Vec<u8>) {}
/// ```
///
/// The function stays callable as it is. A parameter that cannot be
/// extracted is a compile error pointing at that parameter.
pub use kafkaesk_macros::subscribe;

/// The README's code blocks, compiled as doctests so the quickstart stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

#[doc(hidden)]
pub mod __private {
    pub use inventory;

    pub use crate::registry::{SchemaRegistration, SubscriptionRegistration};

    use crate::extract::{FromContext, FromMessage};

    pub const fn assert_from_message<T: FromMessage>() {}
    pub const fn assert_from_context<T: FromContext>() {}
}
