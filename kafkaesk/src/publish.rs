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
use crate::metrics::{kafka_error_label, Metrics, GENERAL_ERROR};
use crate::producer::{Delivering, Outbound};
use crate::propagation;
use crate::record::Headers;
use crate::schema::SchemaCatalog;

/// How long a publish waits for room when librdkafka's local queue is full.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(60);

/// What publishing draws on: the connection, and the schemas by type. An
/// application lends it to each publish.
#[derive(Clone, Copy)]
pub(crate) struct Publisher<'a> {
    pub(crate) connection: &'a Connection,
    pub(crate) schemas: &'a SchemaCatalog,
}

impl<'a> Publisher<'a> {
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
        }
    }

    /// A raw publish of `value` to `stream`.
    pub(crate) fn raw(self, stream: &'a str, value: Vec<u8>) -> RawPublish<'a> {
        RawPublish::new(self, Destination::Stream(stream), value)
    }

    /// A raw publish of `value` to `topic` as it is, without the application's prefix.
    pub(crate) fn raw_to_topic(self, topic: String, value: Vec<u8>) -> RawPublish<'a> {
        RawPublish::new(self, Destination::Topic(topic), value)
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

impl Future for PublishHandle {
    type Output = Result<Delivery>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.delivery.poll_report(cx).map(|report| match report {
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
    key: Option<Vec<u8>>,
    headers: Headers,
}

impl<'a, T> Publish<'a, T>
where
    T: Serialize + schemars::JsonSchema + Sync + 'static,
{
    /// Sets the message key, which picks the partition.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = Some(key.as_ref().to_vec());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.insert(key, value);
        self
    }

    /// Adds headers.
    pub fn headers(mut self, headers: &Headers) -> Self {
        self.headers.extend(headers);
        self
    }

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
            },
        }
    }

    /// Sets the message key.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.message.key = Some(key.as_ref().to_vec());
        self
    }

    /// Sets the key from an optional value, as a forwarded record carries it.
    pub fn maybe_key(mut self, key: Option<&[u8]>) -> Self {
        self.message.key = key.map(<[u8]>::to_vec);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.message.headers.insert(key, value);
        self
    }

    /// Adds headers.
    pub fn headers(mut self, headers: &Headers) -> Self {
        self.message.headers.extend(headers);
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
    /// A full topic name, as it is.
    Topic(String),
}

/// A message ready for librdkafka.
struct Outgoing {
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: Headers,
}

/// What one attempt to hand a message to librdkafka gave.
enum Enqueued {
    Queued(PublishHandle),
    /// librdkafka's local queue is full; try again once it drains.
    QueueFull,
    Failed(Error),
}

/// Hands `message` to librdkafka, and records a publish that began at
/// `started` as queued or refused.
fn enqueue(
    clients: &Clients,
    metrics: &Metrics,
    topic: &Arc<str>,
    message: &Outgoing,
    started: Instant,
) -> Enqueued {
    let enqueued = try_enqueue(clients, topic, message);
    let series = metrics.publishing(topic);
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

fn try_enqueue(clients: &Clients, topic: &Arc<str>, message: &Outgoing) -> Enqueued {
    let outbound = Outbound {
        topic,
        payload: &message.payload,
        key: message.key.as_deref(),
        headers: message.headers.to_rdkafka(),
    };
    match clients.producer.send(outbound) {
        Ok(delivery) => Enqueued::Queued(PublishHandle {
            topic: topic.clone(),
            bytes: message.payload.len(),
            delivery,
        }),
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => Enqueued::QueueFull,
        Err(source) => Enqueued::Failed(delivery_error(
            topic.to_string(),
            message.payload.len(),
            source,
        )),
    }
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
        (Destination::Stream(stream), Some(clients)) => clients
            .topics
            .ready_stream(stream)
            .map(|topic| (clients, topic)),
        _ => None,
    };
    if let Some((clients, topic)) = ready {
        match enqueue(clients, connection.metrics(), &topic, &message, started) {
            Enqueued::Queued(handle) => return PublishFuture::done(Ok(handle)),
            Enqueued::Failed(err) => return PublishFuture::done(Err(err)),
            Enqueued::QueueFull => {}
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
    message: Outgoing,
    started: Instant,
) -> Result<PublishHandle> {
    let clients = connection.clients().await?;
    let topic: Arc<str> = match destination {
        Destination::Stream(stream) => {
            let topic = connection.settings().topic(stream);
            clients
                .topics
                .ensure_stream(stream, topic, retention)
                .await?
        }
        Destination::Topic(topic) => {
            clients.topics.ensure(&topic, retention).await?;
            Arc::from(topic)
        }
    };
    let mut backoff = Duration::from_millis(1);
    loop {
        match enqueue(clients, connection.metrics(), &topic, &message, started) {
            Enqueued::Queued(handle) => return Ok(handle),
            Enqueued::Failed(err) => return Err(err),
            Enqueued::QueueFull if started.elapsed() < QUEUE_FULL_TIMEOUT => {
                // librdkafka's queue drains as the broker acknowledges; wait for room.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Enqueued::QueueFull => {
                connection.metrics().publishing(&topic).refused("QueueFull");
                return Err(delivery_error(
                    topic.to_string(),
                    message.payload.len(),
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                ));
            }
        }
    }
}
