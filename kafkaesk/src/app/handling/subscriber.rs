//! [`Subscriber`]: what a handler holds to publish, forward and commit.

use std::sync::{Arc, Weak};

use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::app::Application;
use crate::error::{Error, Result};
use crate::kafka::producer::Producer;
use crate::observe::propagation;
use crate::publish::{Publish, Publisher, RawPublish};
use crate::record::{Headers, Record};

/// Commits offsets on the consumer a handler runs under.
pub(crate) trait CommitOffsets: Send + Sync {
    /// Commits `offsets` and waits for the broker's answer; refused for a
    /// consumer without a group.
    fn commit_sync(&self, offsets: &TopicPartitionList) -> Result<()>;
}

/// What a handler's context draws on besides the record: the application,
/// the subscription's name and its consumer.
#[derive(Clone)]
pub(crate) struct HandlerScope {
    pub(crate) app: Application,
    pub(crate) name: Arc<str>,
    /// Weak: a handler that keeps its subscriber must not keep the consumer open.
    pub(crate) consumer: Option<Weak<dyn CommitOffsets>>,
    /// The producer of an exactly-once subscription's open transaction.
    pub(crate) transaction: Option<Producer>,
}

impl HandlerScope {
    /// A scope without a consumer, where commits fail with [`Error::Stopped`].
    pub(crate) fn detached(app: Application, name: Arc<str>) -> Self {
        HandlerScope {
            app,
            name,
            consumer: None,
            transaction: None,
        }
    }

    /// What the handlers publish through: the subscription's transaction
    /// when it is exactly-once.
    pub(crate) fn publisher(&self) -> Publisher<'_> {
        self.app.publisher().within(self.transaction.as_ref())
    }

    /// The subscriber a handler sees for `record`.
    pub(crate) fn subscriber(&self, record: Record) -> Subscriber {
        Subscriber {
            scope: self.clone(),
            record,
        }
    }
}

/// The consumer handling the current record, as a handler sees it.
///
/// Publish from a handler with [`publish`](Self::publish) to carry the
/// consumed record's headers along, forward records with
/// [`forward`](Self::forward), and commit by hand with [`commit`](Self::commit)
/// when `auto_commit` is off.
#[derive(Clone)]
pub struct Subscriber {
    scope: HandlerScope,
    record: Record,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("subscription", &self.scope.name)
            .field("record", &self.record.position())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// The application.
    pub fn app(&self) -> &Application {
        &self.scope.app
    }

    /// The record being handled.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The stream the record came from: its topic without the application's prefix.
    pub fn stream(&self) -> &str {
        self.app().settings().stream(self.record.topic())
    }

    /// The subscription's name.
    pub fn subscription(&self) -> &str {
        &self.scope.name
    }

    /// Publishes new data carrying the consumed record's headers. In an
    /// [exactly-once](crate::Subscription::exactly_once) subscription it is
    /// part of the batch's transaction.
    pub fn publish<'a, T>(&'a self, stream: &'a str, data: &'a T) -> Publish<'a, T>
    where
        T: Serialize + schemars::JsonSchema + Sync + 'static,
    {
        self.scope
            .publisher()
            .publish(stream, data)
            .headers(&propagation::forwarded(self.record.headers()))
    }

    /// Republishes `record` to `stream` untouched: same value and key, its
    /// headers plus `extra`.
    pub fn forward<'a>(
        &'a self,
        stream: &'a str,
        record: &Record,
        extra: &Headers,
    ) -> RawPublish<'a> {
        self.scope
            .publisher()
            .raw(stream, record.value().to_vec())
            .maybe_key(record.key())
            .headers(&propagation::forwarded(record.headers()))
            .headers(extra)
    }

    /// Commits the current record's offset (the next offset to read is the one after it).
    ///
    /// For applications with `auto_commit` off. With concurrency above 1,
    /// commit only once every earlier record of the partition is handled.
    /// Fails with [`Error::Stopped`] once the consumer has closed, and with
    /// [`Error::InvalidSetting`] in an exactly-once subscription, whose
    /// offsets are committed with its transactions, and in one without a
    /// group, which commits nothing.
    pub async fn commit(&self) -> Result<()> {
        if self.scope.transaction.is_some() {
            return Err(Error::InvalidSetting {
                name: "exactly_once".to_owned(),
                reason: "an exactly-once subscription commits its offsets with its \
                         transactions; do not commit by hand"
                    .to_owned(),
            });
        }
        let consumer = self
            .scope
            .consumer
            .as_ref()
            .and_then(Weak::upgrade)
            .ok_or(Error::Stopped)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            self.record.topic(),
            self.record.partition(),
            Offset::Offset(self.record.offset().saturating_add(1)),
        )?;
        tokio::task::spawn_blocking(move || consumer.commit_sync(&tpl))
            .await
            .map_err(|_| Error::Stopped)?
    }

    /// Pauses this handler's subscription, every partition, from the next
    /// record on: see [`control`](crate::app::control). Resume it with
    /// [`Application::resume`] (through [`app`](Self::app)).
    pub fn pause(&self) -> Result<()> {
        self.scope.app.pause(&self.scope.name)
    }

    /// Pauses the partition of the record being handled: its next records
    /// wait until [`Application::resume_partitions`] (or
    /// [`Application::resume`]) resumes it; the other partitions go on.
    pub fn pause_partition(&self) -> Result<()> {
        self.scope
            .app
            .pause_partitions(&self.scope.name, [(self.stream(), self.record.partition())])
    }
}
