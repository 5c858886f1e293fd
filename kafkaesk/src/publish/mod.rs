//! Publishing: typed, validated messages and raw bytes.
//!
//! [`Application::publish`](crate::Application::publish) returns a [`Publish`] builder. Awaiting it creates
//! the topic if needed, validates and queues the message, and gives a
//! [`PublishHandle`]; awaiting the handle gives the broker's [`Delivery`].
//! Queuing and acknowledgement are separate so that many messages can be in
//! flight at once. Once a stream's topic is known to exist, queuing finishes
//! within the first poll, without allocating beyond the message itself:
//!
//! ```no_run
//! # #[kafkaesk::schema("Content")]
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # pub struct ContentMessage { pub foo: String }
//! # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
//! let mut acks = Vec::new();
//! for i in 0..100 {
//!     let data = ContentMessage { foo: i.to_string() };
//!     acks.push(app.publish("content.edited", &data).await?);
//! }
//! for ack in acks {
//!     ack.await?;
//! }
//! # Ok(()) }
//! ```

//!
//! # Where a message goes, and what acknowledges it
//!
//! A keyed message goes where the Java client and aiokafka (under Python
//! kafkaesk) put the same key: see [`partition`](self#partitions) below. Each
//! publish can also choose:
//!
//! - [`partition`](Publish::partition): this partition, whatever the key;
//! - [`partitioner`](Publish::partitioner): [`Partitioner::RoundRobin`] or a
//!   [`Partitioner::custom`] function of the key and the partition count;
//! - [`ack_policy`](Publish::ack_policy): how many brokers must store it (see
//!   [`AckPolicy`](crate::AckPolicy)), instead of the application's;
//! - [`timeout`](Publish::timeout): how long to wait for the acknowledgement.
//!
//! ```no_run
//! # #[kafkaesk::schema("Content")]
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # pub struct ContentMessage { pub foo: String }
//! # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
//! use std::time::Duration;
//! use kafkaesk::AckPolicy;
//!
//! let data = ContentMessage { foo: "bar".into() };
//! let delivery = app
//!     .publish("content.edited", &data)
//!     .key("doc-42")
//!     .ack_policy(AckPolicy::Leader)
//!     .timeout(Duration::from_secs(2))
//!     .wait()
//!     .await?;
//! assert_eq!(delivery.partition, kafkaesk::publish::key_partition(b"doc-42", 7));
//! # Ok(()) }
//! ```
//!
//! # Partitions
//!
//! By default a keyed message goes to murmur2 of its key, sign bit cleared,
//! modulo the partition count: the Java client's and aiokafka's placement,
//! so a Python kafkaesk service and a Rust one that publish the same key to
//! the same topic use the same partition and per-key order holds between
//! them. kafkaesk sets librdkafka's `partitioner=murmur2_random` for this
//! (librdkafka's own default, CRC32-based, puts most keys elsewhere);
//! `kafka_settings` may choose another. Keyless messages spread at random.
//! [`key_partition`] computes the partition of a key.

use serde::Serialize;

use crate::kafka::clients::Connection;
use crate::kafka::producer::Producer;
use crate::record::Headers;
use crate::schema::SchemaCatalog;

mod builders;
pub(crate) mod expected;
mod handle;
mod partition;
mod send;
pub(crate) mod transaction;

#[cfg(feature = "testing")]
pub(crate) use builders::builder_methods;
pub use builders::{Publish, RawPublish};
pub use handle::{Delivery, PublishFuture, PublishHandle};
pub use partition::{key_partition, murmur2, Partitioner, PickPartition, AIOKAFKA_MURMUR2};
use send::{Destination, Options};
pub use transaction::Transaction;

/// What publishing draws on: the connection, and the schemas by type. An
/// application lends it to each publish.
#[derive(Clone, Copy)]
pub(crate) struct Publisher<'a> {
    pub(crate) connection: &'a Connection,
    pub(crate) schemas: &'a SchemaCatalog,
    /// The transactional producer of the transaction publishing, if any.
    pub(crate) via: Option<&'a Producer>,
}

impl<'a> Publisher<'a> {
    /// The same publisher, sending through `producer`'s open transaction.
    pub(crate) fn within(self, producer: Option<&'a Producer>) -> Self {
        Publisher {
            via: producer,
            ..self
        }
    }

    /// A typed publish of `data` to `stream`.
    pub(crate) fn publish<T>(self, stream: &'a str, data: &'a T) -> Publish<'a, T>
    where
        T: Serialize + schemars::JsonSchema + Sync + 'static,
    {
        Publish {
            publisher: self,
            stream,
            data,
            key: None,
            headers: Headers::new(),
            options: Options::default(),
        }
    }

    /// A raw publish of `value` to `stream`.
    pub(crate) fn raw(self, stream: &'a str, value: Vec<u8>) -> RawPublish<'a> {
        RawPublish::new(self, Destination::Stream(stream), value)
    }

    /// A raw publish of `value` to the existing `topic` as it is, without
    /// the application's prefix. The topic is never created.
    pub(crate) fn raw_to_existing_topic(self, topic: String, value: Vec<u8>) -> RawPublish<'a> {
        RawPublish::new(self, Destination::ExistingTopic(topic), value)
    }
}
