//! Partition queues: a subscription reads each partition from its own queue,
//! in batches.
//!
//! librdkafka forwards every assigned partition's records into the
//! consumer's one queue, a fetch response's worth of one partition at a
//! time: with a backlog, thousands of records in a row of one partition.
//! Under [`RecordOrder::Partition`](crate::ordering::RecordOrder::Partition)
//! a partition's records run one at a time, so a subscription that took
//! records from that one queue would run one record at a time while the
//! other partitions' records waited behind the run; under
//! [`RecordOrder::Key`](crate::ordering::RecordOrder::Key) a batch of one
//! partition holds all of that partition's hot keys, and waits for the
//! slowest of them. A subscription instead keeps each partition's records in
//! the partition's own queue, and takes a fair share of each batch from
//! every partition in turn.
//!
//! Records are taken many at a time (`rd_kafka_consume_batch_queue`), as
//! librdkafka's own messages ([`FetchedMessage`]): rdkafka pops one event
//! per message, and the pop, with librdkafka's poll bookkeeping around it,
//! cost more per message than everything else the consumer does outside the
//! handler and the decoding. A partition queue holds records only (and the
//! errors of fetching them): rebalances and commit results still come
//! through the consumer's own queue, which rdkafka serves, and which the
//! consumer reads each turn.
//!
//! A partition is split off before it is assigned (in the rebalance
//! callback, or before a self-assignment), so none of its records reaches the
//! consumer's queue: librdkafka does not forward again, when it starts a
//! partition, a queue the application has forwarded. A partition whose queue
//! cannot be opened keeps sending its records to the consumer's queue, where
//! the consumer still finds them.

use std::ffi::{c_void, CString};
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::task::Poll;

use futures::task::AtomicWaker;
use rdkafka::bindings as rd;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;

use super::offsets::{OffsetBook, TopicPartition};
use super::KafkaConsumer;
use crate::record::{FetchedMessage, PendingRecord, TopicNames};

/// Most records taken from one queue in one call: the size of the array
/// librdkafka fills, on the stack.
const MOST_IN_ONE_CALL: usize = 64;

/// Keeps the records of `partitions`, about to be assigned, in their own
/// queues rather than forwarding them to the consumer's queue.
pub(super) fn keep_apart<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    partitions: &TopicPartitionList,
) {
    let client = consumer.client().native_ptr();
    for element in partitions.elements() {
        let Ok(topic) = CString::new(element.topic()) else {
            continue;
        };
        // SAFETY: `client` is a live consumer for the whole call (borrowed
        // from `consumer`). The handle librdkafka returns only holds a
        // reference to the partition's queue, released by destroying it;
        // the forwarding set on the queue outlives the handle.
        unsafe {
            let queue =
                rd::rd_kafka_queue_get_partition(client, topic.as_ptr(), element.partition());
            if queue.is_null() {
                continue;
            }
            rd::rd_kafka_queue_forward(queue, ptr::null_mut());
            rd::rd_kafka_queue_destroy(queue);
        }
    }
}

/// The queues of a consumer's assigned partitions, taken from in turn.
pub(super) struct PartitionQueues {
    // Dropped first: each queue stops waking `waker` before it goes, and
    // goes before the consumer it belongs to.
    queues: Vec<(TopicPartition, PartitionQueue)>,
    /// Woken by librdkafka when a record reaches an empty queue.
    waker: Arc<AtomicWaker>,
    consumer: Arc<KafkaConsumer>,
    /// The queue whose turn is next.
    turn: usize,
    /// The book's revocation count when the queues last followed it.
    seen_revocations: u64,
}

impl PartitionQueues {
    pub(super) fn new(consumer: Arc<KafkaConsumer>) -> Self {
        PartitionQueues {
            queues: Vec::new(),
            waker: Arc::new(AtomicWaker::new()),
            consumer,
            turn: 0,
            seen_revocations: 0,
        }
    }

    /// Follows the assignment: opens the queues of newly assigned partitions
    /// and closes those of revoked ones. Cheap when nothing changed: between
    /// revocations, the assignment only grows.
    pub(super) fn follow(&mut self, book: &OffsetBook) {
        if book.revocations == self.seen_revocations && book.assigned.len() == self.queues.len() {
            return;
        }
        self.seen_revocations = book.revocations;
        self.queues.retain(|(tp, _)| book.assigned.contains(tp));
        let mut added = false;
        for tp in &book.assigned {
            if self.queues.iter().any(|(open, _)| open == tp) {
                continue;
            }
            match PartitionQueue::open(&self.consumer, tp, &self.waker) {
                Some(queue) => {
                    self.queues.push((tp.clone(), queue));
                    added = true;
                }
                None => tracing::warn!(
                    topic = %tp.0,
                    partition = tp.1,
                    "could not open the partition's queue; its records come through the consumer's"
                ),
            }
        }
        if added {
            self.queues.sort_by(|(a, _), (b, _)| a.cmp(b));
        }
        self.turn = 0;
    }

    /// Moves waiting records into `batch` until it holds `limit`, without
    /// waiting, from each partition in turn. With `fair`, each partition
    /// gets a fair share of the room left, then again while records come, so
    /// that one partition's backlog does not fill a batch that other
    /// partitions' records could run beside (ordered subscriptions, whose
    /// records of one partition or key run one after another). Without it,
    /// each partition fills what room is left, and the next batch starts at
    /// the next partition. Returns the errors librdkafka reported in place
    /// of records (a failed fetch), which take no room.
    ///
    /// `consumer` is the consumer the queues belong to, borrowed for as long
    /// as the records are.
    pub(super) fn take<'c>(
        &mut self,
        consumer: &'c KafkaConsumer,
        batch: &mut Vec<PendingRecord<'c>>,
        limit: usize,
        fair: bool,
        names: &mut TopicNames,
    ) -> Vec<KafkaError> {
        debug_assert!(std::ptr::eq(consumer, &*self.consumer));
        let mut errors = Vec::new();
        let count = self.queues.len();
        while batch.len() < limit && count > 0 {
            let room = limit - batch.len();
            let share = if fair { room.div_ceil(count) } else { room };
            let mut took = 0;
            for step in 0..count {
                let room = limit.saturating_sub(batch.len());
                if room == 0 {
                    break;
                }
                let index = (self.turn + step) % count;
                let queue = &self.queues[index].1;
                // An empty queue's length costs a fraction of a take: its
                // lock, where a take adds librdkafka's poll bookkeeping.
                if !queue.holds_any() {
                    continue;
                }
                let got = queue.take(share.min(room), |message| match message {
                    Ok(message) => batch.push(names.pending(message)),
                    Err(error) => errors.push(error),
                });
                if got > 0 {
                    took += got;
                    self.turn = index + 1;
                }
            }
            if took == 0 || !fair {
                break;
            }
        }
        errors
    }

    /// Waits until a queue holds something to take; never, without queues.
    /// Cancel-safe: nothing is taken.
    pub(super) async fn readable(&self) {
        if self.queues.is_empty() {
            return std::future::pending().await;
        }
        std::future::poll_fn(|cx| {
            // Registered before looking: a record that comes after the look
            // wakes this task.
            self.waker.register(cx.waker());
            if self.queues.iter().any(|(_, queue)| queue.holds_any()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// A handle on one partition's queue, split off from the consumer's.
struct PartitionQueue(NonNull<rd::rd_kafka_queue_t>);

// SAFETY: librdkafka's queue calls lock the queue; the handle may be used
// and destroyed on any thread.
unsafe impl Send for PartitionQueue {}
// SAFETY: as above.
unsafe impl Sync for PartitionQueue {}

impl PartitionQueue {
    /// Opens the queue of `tp`, kept from the consumer's queue, waking
    /// `waker` whenever a record reaches it empty.
    fn open(
        consumer: &KafkaConsumer,
        tp: &TopicPartition,
        waker: &Arc<AtomicWaker>,
    ) -> Option<Self> {
        let topic = CString::new(&*tp.0).ok()?;
        // SAFETY: a live consumer; the returned handle holds a reference to
        // the partition's queue until destroyed (in `drop`).
        let queue = unsafe {
            rd::rd_kafka_queue_get_partition(consumer.client().native_ptr(), topic.as_ptr(), tp.1)
        };
        let queue = PartitionQueue(NonNull::new(queue)?);
        // SAFETY: a live queue. The waker outlives the callback: the
        // queues are dropped before it (see `PartitionQueues`), and `drop`
        // turns the callback off under the queue's lock, which librdkafka
        // holds while it calls it.
        unsafe {
            rd::rd_kafka_queue_forward(queue.0.as_ptr(), ptr::null_mut());
            rd::rd_kafka_queue_cb_event_enable(
                queue.0.as_ptr(),
                Some(wake),
                Arc::as_ptr(waker).cast_mut().cast::<c_void>(),
            );
        }
        Some(queue)
    }

    /// Takes up to `most` records (or errors in their place), without
    /// waiting, and hands each to `each`. Returns how many it took.
    fn take<'c>(
        &self,
        most: usize,
        mut each: impl FnMut(Result<FetchedMessage<'c>, KafkaError>),
    ) -> usize {
        let mut total = 0;
        let mut taken = [ptr::null_mut::<rd::rd_kafka_message_t>(); MOST_IN_ONE_CALL];
        while total < most {
            let wanted = (most - total).min(MOST_IN_ONE_CALL);
            // SAFETY: a live queue, and an array of `wanted` slots for it
            // to fill; a timeout of 0 does not wait.
            let got = unsafe {
                rd::rd_kafka_consume_batch_queue(self.0.as_ptr(), 0, taken.as_mut_ptr(), wanted)
            };
            let Ok(got) = usize::try_from(got) else {
                // -1: not a consumer's queue, which this is.
                break;
            };
            for &message in &taken[..got] {
                if let Some(message) = NonNull::new(message) {
                    // SAFETY: librdkafka handed the message to the
                    // application, and nothing else holds it; the queue
                    // belongs to a consumer that outlives 'c (the caller's
                    // borrow of it).
                    each(unsafe { FetchedMessage::take(message) });
                }
            }
            total += got;
            if got < wanted {
                break;
            }
        }
        total
    }

    /// Whether the queue holds anything: records, or an error in their place.
    fn holds_any(&self) -> bool {
        // SAFETY: a live queue.
        unsafe { rd::rd_kafka_queue_length(self.0.as_ptr()) > 0 }
    }
}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // SAFETY: a live queue, destroyed once, here; the callback is off
        // before the handle (and, after it, the waker) can go.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.0.as_ptr(), None, ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.0.as_ptr());
        }
    }
}

/// librdkafka's callback when a record reaches an empty partition queue;
/// called on one of its threads, with the queue locked.
unsafe extern "C" fn wake(_client: *mut rd::rd_kafka_t, waker: *mut c_void) {
    // SAFETY: the `AtomicWaker` `open` registered, alive while the callback
    // is on (see `PartitionQueue::open`).
    unsafe { &*waker.cast::<AtomicWaker>() }.wake();
}
