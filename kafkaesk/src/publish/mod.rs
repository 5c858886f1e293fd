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
//!   [`AckPolicy`]), instead of the application's;
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

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use crate::clients::{Clients, Connection};
use crate::error::{Error, Result};
use crate::metrics::{kafka_error_label, PublishSeries, GENERAL_ERROR};
use crate::producer::{Delivering, Outbound, Producer};
use crate::propagation;
use crate::record::Headers;
use crate::schema::SchemaCatalog;
use crate::settings::AckPolicy;

pub mod expected;
mod partition;

pub use partition::{key_partition, murmur2, Partitioner, PickPartition, AIOKAFKA_MURMUR2};

/// How long a publish waits for room when librdkafka's local queue is full.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Where the broker stored a published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Full topic name.
    pub topic: Arc<str>,
    /// Partition the message went to.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// A queued message; await it for the broker's acknowledgement.
///
/// Dropping the handle does not cancel the message. A failed delivery is then
/// logged as an error when its report comes, so a fire-and-forget publish
/// never fails silently.
pub struct PublishHandle {
    topic: Arc<str>,
    bytes: usize,
    delivery: Delivering,
    wait: Wait,
}

/// What awaiting a [`PublishHandle`] waits for.
enum Wait {
    /// The delivery report.
    Report,
    /// Nothing: the message is queued, and [`AckPolicy::None`] asks no more.
    Queued,
    /// Nothing more: the delivery was awaited already (an expected-offset
    /// write commits only once its message is stored).
    Finished(Delivery),
    /// The delivery report, for at most `timeout` from `started`.
    Until {
        timeout: Duration,
        started: Instant,
        /// Made at the first poll, inside the runtime.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl std::fmt::Debug for PublishHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishHandle")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// A failed delivery; a message over a size limit gets its own error, which
/// says what to change.
fn delivery_error(topic: String, bytes: usize, source: KafkaError) -> Error {
    let too_large = matches!(
        source,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    if too_large {
        Error::MessageTooLarge {
            topic,
            bytes,
            source,
        }
    } else {
        Error::Delivery { topic, source }
    }
}

impl PublishHandle {
    /// The handle of a message whose delivery was already awaited.
    fn finished(mut self, delivery: Delivery) -> Self {
        self.wait = Wait::Finished(delivery);
        self
    }
}

impl Future for PublishHandle {
    type Output = Result<Delivery>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Wait::Finished(delivery) = &this.wait {
            return Poll::Ready(Ok(delivery.clone()));
        }
        if let Wait::Queued = this.wait {
            // Dropping the handle leaves the report to the log.
            return Poll::Ready(Ok(Delivery {
                topic: this.topic.clone(),
                partition: -1,
                offset: -1,
            }));
        }
        let report = this.delivery.poll_report(cx);
        if let (
            Poll::Pending,
            Wait::Until {
                timeout,
                started,
                sleep,
            },
        ) = (&report, &mut this.wait)
        {
            let sleep = sleep.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep_until((*started + *timeout).into()))
            });
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Error::DeliveryTimeout {
                    topic: this.topic.to_string(),
                    timeout: *timeout,
                }));
            }
        }
        report.map(|report| match report {
            Ok(delivered) => Ok(Delivery {
                topic: this.topic.clone(),
                partition: delivered.partition,
                offset: delivered.offset,
            }),
            Err(source) => Err(delivery_error(this.topic.to_string(), this.bytes, source)),
        })
    }
}

impl Drop for PublishHandle {
    fn drop(&mut self) {
        if self.delivery.is_settled() {
            return;
        }
        let topic = self.topic.clone();
        let bytes = self.bytes;
        self.delivery.abandon(move |source| {
            let err = delivery_error(topic.to_string(), bytes, source);
            tracing::error!(topic = %topic, error = %err, "unawaited publish failed");
        });
    }
}

/// The future of an awaited [`Publish`] or [`RawPublish`]; it gives the
/// [`PublishHandle`] once the message is queued.
///
/// When the topic is already known to exist and librdkafka's queue has room,
/// which is every publish to a stream after its first, the message is queued
/// before the first poll returns and nothing is boxed. A first publish to a
/// stream (the topic may have to be created) and a full queue take a slower,
/// boxed path.
#[must_use = "nothing is queued until the future is awaited"]
pub struct PublishFuture<'a>(PublishState<'a>);

enum PublishState<'a> {
    Done(Option<Result<PublishHandle>>),
    Waiting(Pin<Box<dyn Future<Output = Result<PublishHandle>> + Send + 'a>>),
}

impl std::fmt::Debug for PublishFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0 {
            PublishState::Done(_) => "done",
            PublishState::Waiting(_) => "waiting",
        };
        f.debug_tuple("PublishFuture").field(&state).finish()
    }
}

impl PublishFuture<'_> {
    fn done(result: Result<PublishHandle>) -> Self {
        PublishFuture(PublishState::Done(Some(result)))
    }
}

impl Future for PublishFuture<'_> {
    type Output = Result<PublishHandle>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            PublishState::Done(result) => Poll::Ready(
                result
                    .take()
                    .expect("PublishFuture polled after it completed"),
            ),
            PublishState::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

/// A typed publish being prepared: add a key or headers, then await it.
#[must_use = "nothing is published until the builder is awaited"]
pub struct Publish<'a, T: ?Sized> {
    publisher: Publisher<'a>,
    stream: &'a str,
    data: &'a T,
    // Set through `builder_methods`, by the test harness's builder too.
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) headers: Headers,
    pub(crate) options: Options,
}

/// Builder methods of every publish builder (the typed and the raw one, and
/// the test harness's): the key and headers, where the message goes, what
/// acknowledges it, how long to wait. One definition, so that an option
/// added here reaches every builder.
macro_rules! builder_methods {
    (options: $($options:ident).+; key: $($key:ident).+; headers: $($headers:ident).+) => {
        /// Sets the message key, which picks the partition.
        pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
            self.$($key).+ = Some(key.as_ref().to_vec());
            self
        }

        /// Adds a header.
        pub fn header(mut self, key: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
            self.$($headers).+.insert(key, value);
            self
        }

        /// Adds headers.
        pub fn headers(mut self, headers: &$crate::record::Headers) -> Self {
            self.$($headers).+.extend(headers);
            self
        }

        /// Sends to this partition, whatever the key and the partitioner. A
        /// partition the topic does not have fails the publish.
        pub fn partition(mut self, partition: i32) -> Self {
            self.$($options).+.partition = Some(partition);
            self
        }

        /// Picks the partition with `partitioner` instead of by key (see
        /// [`Partitioner`](crate::publish::Partitioner)).
        pub fn partitioner(mut self, partitioner: $crate::publish::Partitioner) -> Self {
            self.$($options).+.partitioner = Some(partitioner);
            self
        }

        /// Waits for this acknowledgement instead of the application's
        /// [`ack_policy`](crate::Settings::ack_policy).
        pub fn ack_policy(mut self, acks: $crate::settings::AckPolicy) -> Self {
            self.$($options).+.acks = Some(acks);
            self
        }

        /// Writes only if `partition`'s last message is at `offset` (`-1`:
        /// the partition holds none); otherwise nothing is written and the
        /// publish fails with [`Error::ExpectedOffset`](crate::Error::ExpectedOffset), which carries the
        /// offset it is at. The check and the write are one transaction,
        /// fenced against other writers: see [`expected`](crate::publish::expected)
        /// for how, and what it costs.
        ///
        /// ```no_run
        /// # #[kafkaesk::schema("Content")]
        /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        /// # pub struct ContentMessage { pub foo: String }
        /// # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
        /// let first = ContentMessage { foo: "created".into() };
        /// let written = app.publish("doc-42", &first).expected_offset(0, -1).wait().await?;
        /// let next = ContentMessage { foo: "edited".into() };
        /// match app.publish("doc-42", &next).expected_offset(0, written.offset).wait().await {
        ///     Ok(_) => {}
        ///     Err(kafkaesk::Error::ExpectedOffset { actual, .. }) => {
        ///         println!("someone wrote first, at {actual}: read again and retry");
        ///     }
        ///     Err(err) => return Err(err),
        /// }
        /// # Ok(()) }
        /// ```
        pub fn expected_offset(mut self, partition: i32, offset: i64) -> Self {
            self.$($options).+.expected = Some((partition, offset));
            self
        }

        /// Waits at most this long for the acknowledgement, then fails with
        /// [`Error::DeliveryTimeout`](crate::Error::DeliveryTimeout). The message is not recalled: it may
        /// still be stored, until librdkafka's `message.timeout.ms` (5
        /// minutes by default) gives up on it.
        pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.$($options).+.timeout = Some(timeout);
            self
        }
    };
}
// For the test harness's builder.
#[cfg(feature = "testing")]
pub(crate) use builder_methods;

impl<'a, T> Publish<'a, T>
where
    T: Serialize + schemars::JsonSchema + Sync + 'static,
{
    builder_methods!(options: options; key: key; headers: headers);

    /// Publishes and waits for the broker's acknowledgement.
    pub async fn wait(self) -> Result<Delivery> {
        self.await?.await
    }
}

impl<'a, T> IntoFuture for Publish<'a, T>
where
    T: Serialize + schemars::JsonSchema + Sync + 'static,
{
    type Output = Result<PublishHandle>;
    type IntoFuture = PublishFuture<'a>;

    fn into_future(mut self) -> PublishFuture<'a> {
        propagation::inject(&mut self.headers);
        let encoded = self
            .publisher
            .schemas
            .of::<T>()
            .and_then(|schema| Ok((schema.encode(self.data)?, schema.retention())));
        match encoded {
            Ok((payload, retention)) => send(
                self.publisher.connection,
                Destination::Stream(self.stream),
                retention,
                Outgoing {
                    payload,
                    key: self.key,
                    headers: self.headers,
                    options: self.options,
                    via: self.publisher.via.cloned(),
                },
            ),
            Err(err) => PublishFuture::done(Err(err)),
        }
    }
}

/// A raw publish being prepared: bytes as they are, no envelope, no validation.
#[must_use = "nothing is published until the builder is awaited"]
pub struct RawPublish<'a> {
    connection: &'a Connection,
    destination: Destination<'a>,
    message: Outgoing,
}

impl<'a> RawPublish<'a> {
    fn new(publisher: Publisher<'a>, destination: Destination<'a>, value: Vec<u8>) -> Self {
        RawPublish {
            connection: publisher.connection,
            destination,
            message: Outgoing {
                payload: value,
                key: None,
                headers: Headers::new(),
                options: Options::default(),
                via: publisher.via.cloned(),
            },
        }
    }

    builder_methods!(options: message.options; key: message.key; headers: message.headers);

    /// Sets the key from an optional value, as a forwarded record carries it.
    pub fn maybe_key(mut self, key: Option<&[u8]>) -> Self {
        self.message.key = key.map(<[u8]>::to_vec);
        self
    }

    /// Publishes and waits for the broker's acknowledgement.
    pub async fn wait(self) -> Result<Delivery> {
        self.await?.await
    }
}

impl<'a> IntoFuture for RawPublish<'a> {
    type Output = Result<PublishHandle>;
    type IntoFuture = PublishFuture<'a>;

    fn into_future(mut self) -> PublishFuture<'a> {
        propagation::inject(&mut self.message.headers);
        send(self.connection, self.destination, None, self.message)
    }
}

/// Where a message goes.
enum Destination<'a> {
    /// A stream: the application's prefix comes first.
    Stream(&'a str),
    /// A full topic name, as it is, of a topic that exists: it is never
    /// created (dead-letter replay writes only where topics are).
    ExistingTopic(String),
}

/// A message ready for librdkafka.
struct Outgoing {
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: Headers,
    options: Options,
    /// The transaction's producer, when published in one.
    via: Option<Producer>,
}

/// What a publish chose beyond the message itself.
#[derive(Default)]
pub(crate) struct Options {
    // Set through `builder_methods`, from the test harness's builder too.
    pub(crate) partition: Option<i32>,
    pub(crate) partitioner: Option<Partitioner>,
    pub(crate) acks: Option<AckPolicy>,
    pub(crate) timeout: Option<Duration>,
    /// The partition, and the offset its last message must be at.
    pub(crate) expected: Option<(i32, i64)>,
}

impl Options {
    /// Whether the partition is picked here, from the topic's partition count.
    fn needs_partition_count(&self) -> bool {
        self.partition.is_none()
            && matches!(
                self.partitioner,
                Some(Partitioner::RoundRobin | Partitioner::Custom(_))
            )
    }
}

/// What one attempt to hand a message to librdkafka gave.
enum Enqueued {
    Queued(PublishHandle),
    /// librdkafka's local queue is full; try again once it drains.
    QueueFull,
    Failed(Error),
}

/// Hands `message` to librdkafka, and records a publish that began at
/// `started` as queued or refused in `series`, its topic's.
fn enqueue(
    clients: &Clients,
    series: &PublishSeries,
    message: &Outgoing,
    partition: Option<i32>,
    started: Instant,
) -> Enqueued {
    let enqueued = try_enqueue(clients, series.topic(), message, partition);
    match &enqueued {
        Enqueued::Queued(_) => series.queued(started.elapsed()),
        Enqueued::QueueFull => {}
        Enqueued::Failed(err) => series.refused(&refusal_label(err)),
    }
    enqueued
}

/// The `error` label of a publish librdkafka refused.
fn refusal_label(err: &Error) -> String {
    match err {
        Error::Delivery { source, .. } | Error::MessageTooLarge { source, .. } => {
            kafka_error_label(source)
        }
        _ => GENERAL_ERROR.to_owned(),
    }
}

/// Hands `message` to librdkafka through its transaction's producer, or the
/// producer of its ack policy.
fn try_enqueue(
    clients: &Clients,
    topic: &Arc<str>,
    message: &Outgoing,
    partition: Option<i32>,
) -> Enqueued {
    let via = message.via.as_ref();
    let failed = |source| {
        Enqueued::Failed(delivery_error(
            topic.to_string(),
            message.payload.len(),
            source,
        ))
    };
    let options = &message.options;
    let producer = match (via, options.acks) {
        (Some(_), Some(acks)) if acks != AckPolicy::All => {
            return Enqueued::Failed(Error::InvalidSetting {
                name: "ack_policy".to_owned(),
                reason: format!(
                    "a transaction's messages are acknowledged by every in-sync replica; \
                     {acks:?} cannot apply inside one"
                ),
            })
        }
        (Some(producer), _) => Cow::Borrowed(producer),
        (None, acks) => match clients.producer(acks) {
            Ok(producer) => producer,
            Err(err) => return Enqueued::Failed(err),
        },
    };
    let outbound = Outbound {
        topic,
        partition,
        payload: &message.payload,
        key: message.key.as_deref(),
        headers: &message.headers,
    };
    let acks = match via {
        Some(_) => AckPolicy::All,
        None => clients.ack_policy(options.acks),
    };
    let wait = match (acks, options.timeout) {
        (AckPolicy::None, _) => Wait::Queued,
        (_, Some(timeout)) => Wait::Until {
            timeout,
            started: Instant::now(),
            sleep: None,
        },
        (_, None) => Wait::Report,
    };
    match producer.send(outbound) {
        Ok(delivery) => Enqueued::Queued(PublishHandle {
            topic: topic.clone(),
            bytes: message.payload.len(),
            delivery,
            wait,
        }),
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => Enqueued::QueueFull,
        Err(source) => failed(source),
    }
}

/// Where a message's partition comes from.
enum Placement {
    /// This partition, or librdkafka's partitioner (by key) when `None`.
    Chosen(Option<i32>),
    /// The partitioner needs the topic's partition count, not known yet.
    NeedsCount,
}

/// The partition of `message`: its own, or its partitioner's.
fn place(clients: &Clients, topic: &Arc<str>, message: &Outgoing) -> Result<Placement> {
    let options = &message.options;
    if !options.needs_partition_count() {
        return Ok(Placement::Chosen(options.partition));
    }
    let Some(partitions) = clients.topics.cached_partitions(topic) else {
        return Ok(Placement::NeedsCount);
    };
    let count = partitions.count();
    let partition = match &options.partitioner {
        Some(Partitioner::RoundRobin) => partitions.next_round_robin(),
        Some(Partitioner::Custom(pick)) => {
            let picked = pick(message.key.as_deref(), count);
            if !(0..count).contains(&picked) {
                return Err(Error::InvalidSetting {
                    name: "partitioner".to_owned(),
                    reason: format!(
                        "the custom partitioner picked partition {picked} of `{topic}`, which has \
                         partitions 0 to {}",
                        count - 1
                    ),
                });
            }
            picked
        }
        Some(Partitioner::ByKey) | None => return Ok(Placement::Chosen(None)),
    };
    Ok(Placement::Chosen(Some(partition)))
}

/// Queues `message`: at once when the producer exists, the topic is known and
/// there is room, otherwise through [`send_slowly`].
fn send<'a>(
    connection: &'a Connection,
    destination: Destination<'a>,
    retention: Option<Duration>,
    message: Outgoing,
) -> PublishFuture<'a> {
    let started = Instant::now();
    let ready = match (&destination, connection.clients_if_ready()) {
        _ if message.options.expected.is_some() => None,
        (Destination::Stream(stream), Some(clients)) => clients
            .topics
            .ready_stream(stream)
            .map(|series| (clients, series)),
        _ => None,
    };
    if let Some((clients, series)) = ready {
        match place(clients, series.topic(), &message) {
            Err(err) => return PublishFuture::done(Err(err)),
            Ok(Placement::NeedsCount) => {}
            Ok(Placement::Chosen(partition)) => {
                match enqueue(clients, &series, &message, partition, started) {
                    Enqueued::Queued(handle) => return PublishFuture::done(Ok(handle)),
                    Enqueued::Failed(err) => return PublishFuture::done(Err(err)),
                    Enqueued::QueueFull => {}
                }
            }
        }
    }
    PublishFuture(PublishState::Waiting(Box::pin(send_slowly(
        connection,
        destination,
        retention,
        message,
        started,
    ))))
}

/// Creates the producer and the topic if needed, then queues `message`,
/// waiting for room while librdkafka's queue is full.
async fn send_slowly(
    connection: &Connection,
    destination: Destination<'_>,
    retention: Option<Duration>,
    mut message: Outgoing,
    started: Instant,
) -> Result<PublishHandle> {
    let clients = connection.clients().await?;
    let series = match destination {
        Destination::Stream(stream) => {
            let topic = connection.settings().topic(stream);
            clients
                .topics
                .ensure_stream(stream, topic, retention)
                .await?
        }
        Destination::ExistingTopic(topic) => connection.metrics().publishing(&Arc::from(topic)),
    };
    let topic = series.topic();
    if let Some(expected) = message.options.expected {
        if message.via.is_some() {
            return Err(Error::InvalidSetting {
                name: "expected_offset".to_owned(),
                reason: "an expected-offset write is a transaction of its own; publish it \
                         outside the transaction"
                    .to_owned(),
            });
        }
        let settings = connection.settings();
        return expected::write(clients, settings, &series, &mut message, expected, started).await;
    }
    if message.options.needs_partition_count() && clients.topics.cached_partitions(topic).is_none()
    {
        let count = connection.partition_count(topic, "topic").await?;
        clients.topics.remember_partitions(topic, count);
    }
    let partition = match place(clients, topic, &message)? {
        Placement::Chosen(partition) => partition,
        // Just remembered: `partition_count` fails for a topic without partitions.
        Placement::NeedsCount => None,
    };
    let mut backoff = Duration::from_millis(1);
    loop {
        match enqueue(clients, &series, &message, partition, started) {
            Enqueued::Queued(handle) => return Ok(handle),
            Enqueued::Failed(err) => return Err(err),
            Enqueued::QueueFull if started.elapsed() < QUEUE_FULL_TIMEOUT => {
                // librdkafka's queue drains as the broker acknowledges; wait for room.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Enqueued::QueueFull => {
                series.refused("QueueFull");
                return Err(delivery_error(
                    topic.to_string(),
                    message.payload.len(),
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                ));
            }
        }
    }
}
