//! Publishing: typed, validated messages and raw bytes.
//!
//! [`Application::publish`] returns a [`Publish`] builder. Awaiting it creates
//! the topic if needed, validates and queues the message, and gives a
//! [`PublishHandle`]; awaiting the handle gives the broker's [`Delivery`].
//! Queuing and acknowledgement are separate so that many messages can be in
//! flight at once:
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
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot::Canceled;
use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use crate::app::Application;
use crate::error::{Error, Result};
use crate::record::Headers;

/// How long a publish waits for room when librdkafka's local queue is full.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the broker stored a published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Full topic name.
    pub topic: String,
    /// Partition the message went to.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// A queued message; await it for the broker's acknowledgement.
///
/// Dropping the handle does not cancel the message. The acknowledgement is
/// then watched in the background, and a failed delivery is logged as an
/// error, so a fire-and-forget publish never fails silently.
pub struct PublishHandle {
    topic: String,
    bytes: usize,
    delivery: Option<DeliveryFuture>,
}

impl std::fmt::Debug for PublishHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishHandle")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn delivery_result(
    topic: &str,
    bytes: usize,
    result: Result<OwnedDeliveryResult, Canceled>,
) -> Result<Delivery> {
    match result {
        Ok(Ok(delivery)) => Ok(Delivery {
            topic: topic.to_owned(),
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Ok(Err((source, _message))) => Err(delivery_error(topic.to_owned(), bytes, source)),
        Err(Canceled) => Err(Error::Delivery {
            topic: topic.to_owned(),
            source: KafkaError::Canceled,
        }),
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
        let Some(delivery) = this.delivery.as_mut() else {
            return Poll::Ready(Err(Error::Delivery {
                topic: this.topic.clone(),
                source: KafkaError::Canceled,
            }));
        };
        match Pin::new(delivery).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                this.delivery = None;
                Poll::Ready(delivery_result(&this.topic, this.bytes, result))
            }
        }
    }
}

impl Drop for PublishHandle {
    fn drop(&mut self) {
        let Some(delivery) = self.delivery.take() else {
            return;
        };
        let topic = std::mem::take(&mut self.topic);
        let bytes = self.bytes;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = delivery_result(&topic, bytes, delivery.await) {
                    tracing::error!(topic = %topic, error = %err, "unawaited publish failed");
                }
            });
        }
    }
}

/// A typed publish being prepared: add a key or headers, then await it.
#[must_use = "nothing is published until the builder is awaited"]
pub struct Publish<'a, T: ?Sized> {
    app: &'a Application,
    stream: &'a str,
    data: &'a T,
    key: Option<Vec<u8>>,
    headers: Headers,
}

impl<'a, T> Publish<'a, T>
where
    T: Serialize + schemars::JsonSchema + Sync + 'static,
{
    pub(crate) fn new(app: &'a Application, stream: &'a str, data: &'a T) -> Self {
        Publish {
            app,
            stream,
            data,
            key: None,
            headers: Headers::new(),
        }
    }

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
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let schema = self.app.schema_info::<T>()?;
            let payload = schema.encode(self.data)?;
            send(
                self.app,
                self.app.settings().topic(self.stream),
                payload,
                self.key,
                self.headers,
                schema.retention(),
            )
            .await
        })
    }
}

/// A raw publish being prepared: bytes as they are, no envelope, no validation.
#[must_use = "nothing is published until the builder is awaited"]
pub struct RawPublish<'a> {
    app: &'a Application,
    topic: String,
    value: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: Headers,
}

impl<'a> RawPublish<'a> {
    pub(crate) fn new(app: &'a Application, stream: &'a str, value: Vec<u8>) -> Self {
        Self::to_topic(app, app.settings().topic(stream), value)
    }

    /// Publishes to `topic` as it is, without the application's prefix.
    pub(crate) fn to_topic(app: &'a Application, topic: String, value: Vec<u8>) -> Self {
        RawPublish {
            app,
            topic,
            value,
            key: None,
            headers: Headers::new(),
        }
    }

    /// Sets the message key.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = Some(key.as_ref().to_vec());
        self
    }

    /// Sets the key from an optional value, as a forwarded record carries it.
    pub fn maybe_key(mut self, key: Option<&[u8]>) -> Self {
        self.key = key.map(<[u8]>::to_vec);
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

impl<'a> IntoFuture for RawPublish<'a> {
    type Output = Result<PublishHandle>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            send(
                self.app,
                self.topic,
                self.value,
                self.key,
                self.headers,
                None,
            )
            .await
        })
    }
}

async fn send(
    app: &Application,
    topic: String,
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: Headers,
    retention: Option<Duration>,
) -> Result<PublishHandle> {
    let clients = app.clients().await?;
    clients.topics.ensure(&topic, retention).await?;

    let mut record = FutureRecord::<[u8], [u8]>::to(&topic).payload(&payload);
    if let Some(key) = &key {
        record = record.key(key);
    }
    if let Some(headers) = headers.to_rdkafka() {
        record = record.headers(headers);
    }
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(1);
    loop {
        match clients.producer.send_result(record) {
            Ok(delivery) => {
                return Ok(PublishHandle {
                    topic: topic.clone(),
                    bytes: payload.len(),
                    delivery: Some(delivery),
                })
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if started.elapsed() < QUEUE_FULL_TIMEOUT =>
            {
                // librdkafka's queue drains as the broker acknowledges; wait for room.
                record = returned;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err((source, _)) => return Err(delivery_error(topic, payload.len(), source)),
        }
    }
}
