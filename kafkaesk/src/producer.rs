//! The producer behind [`publish`](crate::publish): librdkafka's producer with
//! delivery reports that allocate nothing per message.
//!
//! rdkafka's `FutureProducer` allocates a oneshot channel and boxes its sender
//! for every message, and librdkafka's polling thread frees the box. Profiles
//! of the publish benchmark put those allocations, and the allocator's lock
//! contended between the publishing thread and the polling thread, at about a
//! quarter of the publishing thread's time. Here a message in flight borrows a
//! [`Slot`] from a pool that grows a chunk at a time and is reused; the
//! delivery report fills the slot and wakes whoever awaits it.
//!
//! A slot goes `Free` → `Waiting` (queued) → `Done` (reported) → `Free`
//! (result taken). When its [`Delivering`] is dropped before the report, the
//! slot becomes `Abandoned` and the report itself logs a failure and frees the
//! slot, so a fire-and-forget publish never fails silently and needs no task.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rdkafka::client::Client;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, TopicPartitionList};

use crate::journal::MaybeJournal;
use crate::metrics::{kafka_error_label, DeliveryMetrics};
use crate::record::Headers;

mod native;

/// Slots allocated at once when the pool runs dry.
const SLOTS_PER_CHUNK: usize = 1024;

/// A librdkafka producer whose deliveries are awaited through pooled slots.
/// Clones share the producer.
#[derive(Clone)]
pub(crate) struct Producer {
    inner: Arc<Shared>,
}

struct Shared {
    /// Declared first, so the handles are destroyed before the producer.
    topics: native::TopicHandles,
    producer: ThreadedProducer<Reports>,
}

/// Where the broker stored a message: partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// What a delivery report said.
pub(crate) type Report = Result<Delivered, KafkaError>;

/// A message to queue.
pub(crate) struct Outbound<'a> {
    pub(crate) topic: &'a Arc<str>,
    /// The partition, or the partitioner's choice when `None`.
    pub(crate) partition: Option<i32>,
    pub(crate) payload: &'a [u8],
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) headers: &'a Headers,
}

impl Producer {
    /// Creates the producer and its polling thread; delivery reports are
    /// recorded into `metrics`, and into `journal` if there is one.
    pub(crate) fn create(
        config: &ClientConfig,
        metrics: DeliveryMetrics,
        journal: MaybeJournal,
    ) -> KafkaResult<Self> {
        let reports = Reports {
            slots: Arc::new(Slots::default()),
            metrics,
            journal,
        };
        Ok(Producer {
            inner: Arc::new(Shared {
                topics: native::TopicHandles::default(),
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
        let queued = native::produce(
            producer.client().native_ptr(),
            &self.inner.topics,
            &message,
            slot.to_opaque(),
        );
        match queued {
            Ok(()) => Ok(Delivering {
                slots: slots.clone(),
                slot,
                settled: false,
            }),
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
/// records it.
pub(crate) struct Reports {
    slots: Arc<Slots>,
    metrics: DeliveryMetrics,
    journal: MaybeJournal,
}

/// How long librdkafka held `message`, from the send to its report.
fn latency(message: &BorrowedMessage<'_>) -> Duration {
    // SAFETY: the message is a live delivery report, borrowed for the call.
    let micros = unsafe { rdkafka::bindings::rd_kafka_message_latency(message.ptr()) };
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
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
                    latency(message),
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
        // SAFETY: `opaque` came from `SlotRef::to_opaque` in `Producer::send`,
        // and the slot's chunk lives as long as `self.slots`.
        let slot = unsafe { SlotRef::from_opaque(opaque) };
        self.slots.complete(slot, report);
    }
}

impl Drop for Reports {
    /// librdkafka is gone: no report will come for what is still waiting.
    fn drop(&mut self) {
        self.slots.cancel_waiting();
    }
}

/// The delivery of one queued message; resolves with its report.
pub(crate) struct Delivering {
    slots: Arc<Slots>,
    slot: SlotRef,
    settled: bool,
}

impl Delivering {
    /// Polls for the report. After it gave `Ready`, polls give `Canceled`.
    pub(crate) fn poll_report(&mut self, cx: &mut Context<'_>) -> Poll<Report> {
        if self.settled {
            return Poll::Ready(Err(KafkaError::Canceled));
        }
        let mut state = self.slot.state();
        match std::mem::replace(&mut *state, State::Free) {
            State::Waiting(waker) => {
                let waker = match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => waker,
                    _ => cx.waker().clone(),
                };
                *state = State::Waiting(Some(waker));
                Poll::Pending
            }
            State::Done(report) => {
                drop(state);
                self.settled = true;
                self.slots.release(self.slot);
                Poll::Ready(report)
            }
            // A slot held by a `Delivering` is Waiting or Done; anything else
            // would be a bug here, and is reported rather than hung on.
            other => {
                *state = other;
                self.settled = true;
                Poll::Ready(Err(KafkaError::Canceled))
            }
        }
    }

    /// Whether the report was taken (or the wait abandoned).
    pub(crate) fn is_settled(&self) -> bool {
        self.settled
    }

    /// Gives up waiting. If the report says the message failed, `on_failure`
    /// is called with the error, now or when the report comes.
    pub(crate) fn abandon(&mut self, on_failure: impl FnOnce(KafkaError) + Send + 'static) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let mut state = self.slot.state();
        match std::mem::replace(&mut *state, State::Free) {
            State::Waiting(_) => *state = State::Abandoned(Box::new(on_failure)),
            State::Done(report) => {
                drop(state);
                self.slots.release(self.slot);
                if let Err(err) = report {
                    on_failure(err);
                }
            }
            other => *state = other,
        }
    }
}

/// The state of one message in flight.
enum State {
    Free,
    /// Queued; the waker of whoever awaits the report.
    Waiting(Option<Waker>),
    /// Queued, nobody waits; called if the report is a failure.
    Abandoned(Box<dyn FnOnce(KafkaError) + Send>),
    /// Reported, not yet taken.
    Done(Report),
}

struct Slot {
    state: Mutex<State>,
}

/// A slot in one of the pool's chunks.
///
/// Chunks are boxed slices that are never moved or freed before the pool, and
/// every holder of a `SlotRef` also holds the pool (`Delivering::slots`,
/// `Reports::slots`), so the pointer stays valid while it is used.
#[derive(Clone, Copy)]
struct SlotRef(NonNull<Slot>);

// SAFETY: the slot is shared through its mutex only; see `SlotRef`.
unsafe impl Send for SlotRef {}
// SAFETY: as for `Send`.
unsafe impl Sync for SlotRef {}

impl SlotRef {
    fn state(&self) -> MutexGuard<'_, State> {
        // SAFETY: see the type's documentation.
        let slot = unsafe { self.0.as_ref() };
        slot.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn to_opaque(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// # Safety
    /// `opaque` must come from [`to_opaque`](Self::to_opaque) of a slot whose
    /// pool is still alive.
    unsafe fn from_opaque(opaque: usize) -> Self {
        // SAFETY: a slot pointer is never null (it came from `NonNull`).
        SlotRef(unsafe { NonNull::new_unchecked(opaque as *mut Slot) })
    }
}

/// The pool of slots.
#[derive(Default)]
struct Slots {
    pool: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    free: Vec<SlotRef>,
    chunks: Vec<Box<[Slot]>>,
}

impl Slots {
    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free slot, now `Waiting`.
    fn acquire(&self) -> SlotRef {
        let slot = {
            let mut pool = self.pool();
            match pool.free.pop() {
                Some(slot) => slot,
                None => pool.grow(),
            }
        };
        *slot.state() = State::Waiting(None);
        slot
    }

    /// Returns a slot whose state is `Free` to the pool.
    fn release(&self, slot: SlotRef) {
        self.pool().free.push(slot);
    }

    /// Stores a report: wakes the waiter, or frees an abandoned slot.
    fn complete(&self, slot: SlotRef, report: Report) {
        let mut state = slot.state();
        match std::mem::replace(&mut *state, State::Free) {
            State::Waiting(waker) => {
                *state = State::Done(report);
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            State::Abandoned(on_failure) => {
                drop(state);
                self.release(slot);
                if let Err(err) = report {
                    on_failure(err);
                }
            }
            // A second report for one message: keep the first.
            other => *state = other,
        }
    }

    /// Ends every wait with `Canceled`.
    fn cancel_waiting(&self) {
        // Collected first: completing an abandoned slot takes the pool's lock.
        let waiting: Vec<SlotRef> = {
            let pool = self.pool();
            pool.chunks
                .iter()
                .flat_map(|chunk| chunk.iter())
                .map(|slot| SlotRef(NonNull::from(slot)))
                .filter(|slot| matches!(*slot.state(), State::Waiting(_) | State::Abandoned(_)))
                .collect()
        };
        for slot in waiting {
            self.complete(slot, Err(KafkaError::Canceled));
        }
    }
}

impl Pool {
    /// Adds a chunk of slots; returns one of them, the rest go to `free`.
    fn grow(&mut self) -> SlotRef {
        let chunk: Box<[Slot]> = (0..SLOTS_PER_CHUNK)
            .map(|_| Slot {
                state: Mutex::new(State::Free),
            })
            .collect();
        self.free.extend(
            chunk[1..]
                .iter()
                .rev()
                .map(|slot| SlotRef(NonNull::from(slot))),
        );
        let first = SlotRef(NonNull::from(&chunk[0]));
        self.chunks.push(chunk);
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn delivering(slots: &Arc<Slots>) -> Delivering {
        Delivering {
            slots: slots.clone(),
            slot: slots.acquire(),
            settled: false,
        }
    }

    fn free_slots(slots: &Slots) -> usize {
        slots.pool().free.len()
    }

    #[test]
    fn a_report_wakes_the_waiter_and_the_slot_is_reused() {
        let slots = Arc::new(Slots::default());
        let mut delivering = delivering(&slots);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(delivering.poll_report(&mut cx).is_pending());
        let delivered = Delivered {
            partition: 3,
            offset: 42,
        };
        slots.complete(delivering.slot, Ok(delivered));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(free_slots(&slots), SLOTS_PER_CHUNK - 1);
        match delivering.poll_report(&mut cx) {
            Poll::Ready(Ok(report)) => assert_eq!(report, delivered),
            other => panic!("expected the delivery, got {other:?}"),
        }
        assert_eq!(free_slots(&slots), SLOTS_PER_CHUNK);
        assert!(matches!(
            delivering.poll_report(&mut cx),
            Poll::Ready(Err(KafkaError::Canceled))
        ));
        // The pool hands the same slot out again: no new chunk.
        let again = slots.acquire();
        assert_eq!(again.0, delivering.slot.0);
        assert_eq!(slots.pool().chunks.len(), 1);
    }

    #[test]
    fn an_abandoned_failure_is_reported_and_frees_the_slot() {
        let slots = Arc::new(Slots::default());
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut ok = delivering(&slots);
        let mut failed = delivering(&slots);
        for delivering in [&mut ok, &mut failed] {
            let failures = failures.clone();
            delivering.abandon(move |err| failures.lock().unwrap().push(err.to_string()));
        }
        slots.complete(
            ok.slot,
            Ok(Delivered {
                partition: 0,
                offset: 1,
            }),
        );
        slots.complete(
            failed.slot,
            Err(KafkaError::MessageProduction(
                rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge,
            )),
        );
        assert_eq!(failures.lock().unwrap().len(), 1);
        assert_eq!(free_slots(&slots), SLOTS_PER_CHUNK);
    }

    #[test]
    fn a_failure_reported_before_abandoning_is_still_reported() {
        let slots = Arc::new(Slots::default());
        let mut delivering = delivering(&slots);
        slots.complete(delivering.slot, Err(KafkaError::Canceled));
        let failures = Arc::new(AtomicUsize::new(0));
        let counted = failures.clone();
        delivering.abandon(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(failures.load(Ordering::SeqCst), 1);
        assert_eq!(free_slots(&slots), SLOTS_PER_CHUNK);
    }

    #[test]
    fn closing_the_producer_cancels_what_still_waits() {
        let slots = Arc::new(Slots::default());
        let mut delivering = delivering(&slots);
        slots.cancel_waiting();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            delivering.poll_report(&mut cx),
            Poll::Ready(Err(KafkaError::Canceled))
        ));
    }

    #[test]
    fn the_pool_grows_by_chunks() {
        let slots = Slots::default();
        let held: Vec<SlotRef> = (0..SLOTS_PER_CHUNK + 1).map(|_| slots.acquire()).collect();
        assert_eq!(slots.pool().chunks.len(), 2);
        let mut addresses: Vec<usize> = held.iter().map(|slot| slot.to_opaque()).collect();
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), SLOTS_PER_CHUNK + 1);
    }
}
