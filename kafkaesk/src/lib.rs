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
//! → handler, with one circle: a handler may take the [`Application`] that
//! runs it, and the application holds the subscriptions that hold the
//! handlers, so [`subscription`] and [`handling`] live inside [`app`]'s
//! folder, and are re-exported here.
//!
//! | module | concept |
//! |---|---|
//! | [`schema`](mod@schema) | ids, JSON Schemas, validation, the envelope; schema contracts between services |
//! | [`subscription`] | routers and subscriptions: streams, group, order, start position, error policy, rebalance hooks |
//! | [`handling`] | handlers, what their parameters can take, and the [`Subscriber`] they hold |
//! | [`settings`] | the settings, and every librdkafka configuration built from them |
//! | [`app`] | the application: lifecycle, publishing, pauses, health, stream [`admin`] |
//! | [`publish`] | typed and raw publishing, delivery handles, partitioners, transactions |
//! | [`record`] | consumed records and headers |
//! | [`reader`] | reading a stream back: from a position, newest first, to its end |
//! | [`dead_letter`] | the dead-letter contract: headers, the write, replay |
//! | [`observe`] | Prometheus metrics with Python kafkaesk's names; spans and trace propagation |
//! | [`logging`] | shipping `tracing` events to a stream |
//! | [`http`] | `GET /metrics`, `/health` and `/live` over HTTP |
//! | [`export`] | JSON Schema files and the AsyncAPI document |
//! | [`worker`] | the `kafkaesk` command's entry point (feature `worker`, on by default) |
//! | `embedded` | an embedded development broker (feature `embedded-broker`) |
//! | `testing` | a harness for testing handlers (feature `testing`) |
//! | [`error`] | the one error type |
//!
//! Private layers: `consumer` (batch consumers, offsets, commits,
//! rebalances, retries and pauses: what [`Application::run`] runs), `kafka`
//! (the connection, its lazily created clients, the producer with pooled
//! delivery slots, topics, and readers to a partition's end), `native`
//! (the librdkafka calls rust-rdkafka does not make, and the only code that needs to be checked by hand),
//! `sync` (locks that survive poisoning) and `text` (showing bus text safely).

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Lets the macros refer to `::kafkaesk` inside this crate too.
extern crate self as kafkaesk;

pub mod app;
mod consumer;
pub mod dead_letter;
#[cfg(feature = "embedded-broker")]
#[cfg_attr(docsrs, doc(cfg(feature = "embedded-broker")))]
pub mod embedded;
pub mod error;
pub mod export;
pub mod http;
mod kafka;
pub mod logging;
mod native;
pub mod observe;
pub mod publish;
pub mod reader;
pub mod record;
pub mod retry_stream;
pub mod schema;
pub mod settings;
mod sync;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod text;
#[cfg(feature = "worker")]
#[cfg_attr(docsrs, doc(cfg(feature = "worker")))]
pub mod worker;

pub use app::{
    admin, handling, subscription, Application, ApplicationBuilder, ConsumerHealth, Health,
    StuckPartition, SubscriptionStats,
};
pub use dead_letter::Replayed;
pub use error::{Error, Result};
pub use handling::{Json, SchemaId, Subscriber};
pub use observe::metrics::Metrics;
pub use publish::{Delivery, PublishFuture, PublishHandle, Transaction};
pub use record::{Header, Headers, Record};
pub use schema::Schema;
pub use settings::{AckPolicy, Settings};
pub use subscription::{Assigned, ErrorPolicy, Revoked, Router, Streams, Subscription};

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
/// [`Schema`] and is added to the global registry ([`Router::from_registry`] reads it).
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
/// `stall_timeout = 60` reports a partition that makes no progress for that
/// many seconds (logged, and unhealthy in `/health`); `cancel_stalled = true`
/// also cancels a handler that runs that long, so its record goes through
/// the error policy (see [`Subscription::with_stall_timeout`]):
///
/// ```
/// #[kafkaesk::subscribe("orders", stall_timeout = 60, cancel_stalled = true, on_error = "skip")]
/// async fn index(raw: Vec<u8>) -> Result<(), std::io::Error> { Ok(()) }
/// let router = kafkaesk::Router::from_registry().unwrap();
/// assert_eq!(router.subscriptions()[0].stall_timeout(), Some(std::time::Duration::from_secs(60)));
/// assert!(router.subscriptions()[0].cancels_stalled());
/// ```
///
/// `name = "..."` sets the subscription's name, which must be unique within
/// an application (default: the function's name).
///
/// What happens when the handler fails ([`ErrorPolicy`] explains each): `retry = 3`
/// with `backoff = 0.1` (seconds, default 0.1), then `on_error = "stop"`
/// (the default), `on_error = "skip"`, or `dead_letter = "stream"`:
///
/// ```
/// #[kafkaesk::subscribe("orders.*", retry = 3, backoff = 0.2, dead_letter = "orders.dead")]
/// async fn handle(raw: Vec<u8>) -> Result<(), std::io::Error> { Ok(()) }
/// ```
///
/// `retry_in = ["10s", "1m", "10m"]` (delays in `ms`, `s`, `m` or `h`) moves
/// a failed record to a retry stream per delay, so its partition goes on at
/// once, then to `dead_letter` (or `on_error = "skip"`, one of which it
/// needs); see [Retry streams](ErrorPolicy#retry-streams):
///
/// ```
/// #[kafkaesk::subscribe("orders", group = "billing", retry_in = ["10s", "10m"], dead_letter = "orders.dead")]
/// async fn charge(raw: Vec<u8>) -> Result<(), std::io::Error> { Ok(()) }
/// let router = kafkaesk::Router::from_registry().unwrap();
/// assert_eq!(router.subscriptions()[0].retry_streams(), ["billing.charge.retry-10s", "billing.charge.retry-10m"]);
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
/// assert!(router.subscriptions()[0].is_exactly_once());
/// ```
///
/// Where it starts and what it is assigned ([`Position`](subscription::Position) has the positions):
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
/// assert_eq!(sub.group(), None);
/// assert_eq!(sub.start_at(), "-15m".parse().unwrap());
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

    pub use crate::subscription::registry::{SchemaRegistration, SubscriptionRegistration};

    use crate::handling::{FromContext, FromMessage};

    pub const fn assert_from_message<T: FromMessage>() {}
    pub const fn assert_from_context<T: FromContext>() {}
}
