//! What a publish returns: the [`PublishHandle`] that resolves with the
//! broker's [`Delivery`], and the [`PublishFuture`] that queues first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Error, Result};
use crate::kafka::producer::Delivering;

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
    pub(super) topic: Arc<str>,
    pub(super) bytes: usize,
    pub(super) delivery: Delivering,
    pub(super) wait: Wait,
}

/// What awaiting a [`PublishHandle`] waits for.
pub(super) enum Wait {
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
pub(super) fn delivery_error(topic: String, bytes: usize, source: KafkaError) -> Error {
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
    pub(super) fn finished(mut self, delivery: Delivery) -> Self {
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

/// The future of an awaited [`Publish`](super::Publish) or [`RawPublish`](super::RawPublish); it gives the
/// [`PublishHandle`] once the message is queued.
///
/// When the topic is already known to exist and librdkafka's queue has room,
/// which is every publish to a stream after its first, the message is queued
/// before the first poll returns and nothing is boxed. A first publish to a
/// stream (the topic may have to be created) and a full queue take a slower,
/// boxed path.
#[must_use = "nothing is queued until the future is awaited"]
pub struct PublishFuture<'a>(pub(super) PublishState<'a>);

pub(super) enum PublishState<'a> {
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
    pub(super) fn done(result: Result<PublishHandle>) -> Self {
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
