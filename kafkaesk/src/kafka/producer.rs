//! The producer behind [`publish`](crate::publish): librdkafka's producer with
//! delivery reports that allocate nothing per message.
//!
//! rdkafka's `FutureProducer` allocates a oneshot channel and boxes its sender
//! for every message, and librdkafka's polling thread frees the box. Profiles
//! of the publish benchmark put those allocations, and the allocator's lock
//! contended between the publishing thread and the polling thread, at about a
//! quarter of the publishing thread's time. Here a message in flight borrows a
//! slot from a pool (`slots`) that grows a chunk at a time and is reused; the
//! delivery report fills the slot and wakes whoever awaits it.
//!
//! When a [`Delivering`] is dropped before its report, the report itself
//! logs a failure and frees the slot, so a fire-and-forget publish never
//! fails silently and needs no task.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::Client;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, TopicPartitionList};

pub(crate) use crate::native::produce::Outbound;
use crate::native::produce::{self, TopicHandles};
use crate::native::slots::{self, Delivered, SlotRef, Slots};
use crate::observe::journal::MaybeJournal;
use crate::observe::metrics::{kafka_error_label, ClientErrorMetrics, DeliveryMetrics, Metrics};

/// A librdkafka producer whose deliveries are awaited through pooled slots.
/// Clones share the producer.
#[derive(Clone)]
pub(crate) struct Producer {
    inner: Arc<Shared>,
}

struct Shared {
    /// Declared first, so the handles are destroyed before the producer.
    topics: TopicHandles,
    producer: ThreadedProducer<Reports>,
}

/// The delivery of one queued message; resolves with its report.
pub(crate) type Delivering = slots::Delivering<KafkaError>;

impl slots::Canceled for KafkaError {
    fn canceled() -> Self {
        KafkaError::Canceled
    }
}

impl Producer {
    /// Creates the producer and its polling thread; delivery reports and
    /// client errors are recorded into `metrics`, and deliveries into
    /// `journal` if there is one.
    pub(crate) fn create(
        config: &ClientConfig,
        metrics: &Metrics,
        journal: MaybeJournal,
    ) -> KafkaResult<Self> {
        let reports = Reports {
            slots: Arc::new(Slots::default()),
            metrics: metrics.deliveries(),
            errors: metrics.client_errors("producer"),
            journal,
        };
        Ok(Producer {
            inner: Arc::new(Shared {
                topics: TopicHandles::default(),
                producer: ThreadedProducer::from_config_and_context(config, reports)?,
            }),
        })
    }

    /// Queues `message`; the returned [`Delivering`] resolves with its report.
    /// Fails at once when librdkafka refuses it, for instance with a full queue.
    pub(crate) fn send(&self, message: Outbound<'_>) -> Result<Delivering, KafkaError> {
        let producer = &self.inner.producer;
        let slots = &producer.context().slots;
        let slot = slots.acquire();
        let journal = &producer.context().journal;
        if let Some(journal) = journal {
            journal.sending();
        }
        let queued = produce::produce(
            producer.client().native_ptr(),
            &self.inner.topics,
            &message,
            slot.to_opaque(),
        );
        match queued {
            Ok(()) => Ok(Delivering::new(slots.clone(), slot)),
            Err(err) => {
                // librdkafka did not take the message, so no report will come.
                slots.release(slot);
                if let Some(journal) = journal {
                    journal.not_sent();
                }
                Err(err)
            }
        }
    }

    /// The client, for metadata requests.
    pub(crate) fn client(&self) -> &Client<Reports> {
        self.inner.producer.client()
    }

    /// Waits until every queued message is reported, or `timeout` passes.
    pub(crate) fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.inner.producer.flush(timeout)
    }

    // The transactional calls, for a producer made with a `transactional.id`.
    // Each blocks until the transaction coordinator answers: call them off
    // the async threads.

    pub(crate) fn init_transactions(&self, timeout: Duration) -> KafkaResult<()> {
        self.inner.producer.init_transactions(timeout)
    }

    pub(crate) fn begin_transaction(&self) -> KafkaResult<()> {
        self.inner.producer.begin_transaction()
    }

    pub(crate) fn send_offsets_to_transaction(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
        timeout: Duration,
    ) -> KafkaResult<()> {
        self.inner
            .producer
            .send_offsets_to_transaction(offsets, group, timeout)
    }

    pub(crate) fn commit_transaction(&self, timeout: Duration) -> KafkaResult<()> {
        self.inner.producer.commit_transaction(timeout)
    }

    pub(crate) fn abort_transaction(&self, timeout: Duration) -> KafkaResult<()> {
        self.inner.producer.abort_transaction(timeout)
    }
}

/// The producer's context: it fills the slot of every delivery report, and
/// records it; it counts the client's errors.
pub(crate) struct Reports {
    slots: Arc<Slots<KafkaError>>,
    metrics: DeliveryMetrics,
    errors: ClientErrorMetrics,
    journal: MaybeJournal,
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(&error, reason);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = SlotRef<KafkaError>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: SlotRef<KafkaError>) {
        let report = match result {
            Ok(message) => {
                let delivered = Delivered {
                    partition: message.partition(),
                    offset: message.offset(),
                };
                self.metrics.delivered(
                    message.topic(),
                    delivered.partition,
                    delivered.offset,
                    produce::latency(message),
                );
                if let Some(journal) = &self.journal {
                    journal.stored(message.topic(), delivered.partition, delivered.offset);
                }
                Ok(delivered)
            }
            Err((err, message)) => {
                self.metrics
                    .failed(message.topic(), &kafka_error_label(err));
                if let Some(journal) = &self.journal {
                    journal.not_sent();
                }
                Err(err.clone())
            }
        };
        self.slots.complete(slot, report);
    }
}

impl Drop for Reports {
    /// librdkafka is gone: no report will come for what is still waiting.
    fn drop(&mut self) {
        self.slots.cancel_waiting();
    }
}
