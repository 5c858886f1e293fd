//! The pool of delivery slots: a message in flight borrows a slot, its
//! delivery report fills it and wakes whoever awaits it. Std only, and
//! generic over the error, so that Miri can check it on its own
//! (`scripts/miri.sh`): its raw pointers cross librdkafka as opaques.
//!
//! A slot goes `Free` → `Waiting` (queued) → `Done` (reported) → `Free`
//! (result taken). When its [`Delivering`] gives up before the report, the
//! slot becomes `Abandoned`, and the report calls the failure hook and frees
//! the slot.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Slots allocated at once when the pool runs dry.
const SLOTS_PER_CHUNK: usize = 1024;

/// An error type with a value for a wait that ended without a report.
pub(crate) trait Canceled {
    /// The error of a wait ended without a report.
    fn canceled() -> Self;
}

/// Where the broker stored a message: partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// What a delivery report said.
pub(crate) type Report<E> = Result<Delivered, E>;

/// The delivery of one queued message; resolves with its report.
pub(crate) struct Delivering<E> {
    slots: Arc<Slots<E>>,
    slot: SlotRef<E>,
    settled: bool,
}

impl<E: Canceled + Send + 'static> Delivering<E> {
    /// The delivery of the message queued with `slot`, from `slots`.
    pub(crate) fn new(slots: Arc<Slots<E>>, slot: SlotRef<E>) -> Self {
        Delivering {
            slots,
            slot,
            settled: false,
        }
    }

    /// Polls for the report. After it gave `Ready`, polls give `Canceled`.
    pub(crate) fn poll_report(&mut self, cx: &mut Context<'_>) -> Poll<Report<E>> {
        if self.settled {
            return Poll::Ready(Err(E::canceled()));
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
                Poll::Ready(Err(E::canceled()))
            }
        }
    }

    /// Whether the report was taken (or the wait abandoned).
    pub(crate) fn is_settled(&self) -> bool {
        self.settled
    }

    /// Gives up waiting. If the report says the message failed, `on_failure`
    /// is called with the error, now or when the report comes.
    pub(crate) fn abandon(&mut self, on_failure: impl FnOnce(E) + Send + 'static) {
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
enum State<E> {
    Free,
    /// Queued; the waker of whoever awaits the report.
    Waiting(Option<Waker>),
    /// Queued, nobody waits; called if the report is a failure.
    Abandoned(Box<dyn FnOnce(E) + Send>),
    /// Reported, not yet taken.
    Done(Report<E>),
}

struct Slot<E> {
    state: Mutex<State<E>>,
}

/// A slot in one of the pool's chunks.
///
/// Chunks are boxed slices that are never moved or freed before the pool, and
/// every holder of a `SlotRef` also holds the pool (`Delivering::slots`,
/// `Reports::slots`), so the pointer stays valid while it is used.
pub(crate) struct SlotRef<E>(NonNull<Slot<E>>);

// Not derived: a derive would ask `E: Clone`.
impl<E> Clone for SlotRef<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for SlotRef<E> {}

// SAFETY: the slot is shared through its mutex only; see `SlotRef`.
unsafe impl<E: Send> Send for SlotRef<E> {}
// SAFETY: as for `Send`.
unsafe impl<E: Send> Sync for SlotRef<E> {}

impl<E> SlotRef<E> {
    fn state(&self) -> MutexGuard<'_, State<E>> {
        // SAFETY: see the type's documentation.
        let slot = unsafe { self.0.as_ref() };
        slot.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn to_opaque(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// # Safety
    /// `opaque` must come from [`to_opaque`](Self::to_opaque) of a slot whose
    /// pool is still alive.
    pub(crate) unsafe fn from_opaque(opaque: usize) -> Self {
        // SAFETY: a slot pointer is never null (it came from `NonNull`).
        SlotRef(unsafe { NonNull::new_unchecked(opaque as *mut Slot<E>) })
    }
}

/// The pool of slots.
pub(crate) struct Slots<E> {
    pool: Mutex<Pool<E>>,
}

impl<E> Default for Slots<E> {
    fn default() -> Self {
        Slots {
            pool: Mutex::new(Pool {
                free: Vec::new(),
                chunks: Vec::new(),
            }),
        }
    }
}

struct Pool<E> {
    free: Vec<SlotRef<E>>,
    chunks: Vec<Box<[Slot<E>]>>,
}

impl<E: Canceled> Slots<E> {
    fn pool(&self) -> MutexGuard<'_, Pool<E>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free slot, now `Waiting`.
    pub(crate) fn acquire(&self) -> SlotRef<E> {
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
    pub(crate) fn release(&self, slot: SlotRef<E>) {
        self.pool().free.push(slot);
    }

    /// Stores a report: wakes the waiter, or frees an abandoned slot.
    pub(crate) fn complete(&self, slot: SlotRef<E>, report: Report<E>) {
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
    pub(crate) fn cancel_waiting(&self) {
        // Collected first: completing an abandoned slot takes the pool's lock.
        let waiting: Vec<SlotRef<E>> = {
            let pool = self.pool();
            pool.chunks
                .iter()
                .flat_map(|chunk| chunk.iter())
                .map(|slot| SlotRef(NonNull::from(slot)))
                .filter(|slot| matches!(*slot.state(), State::Waiting(_) | State::Abandoned(_)))
                .collect()
        };
        for slot in waiting {
            self.complete(slot, Err(E::canceled()));
        }
    }
}

impl<E> Pool<E> {
    /// Adds a chunk of slots; returns one of them, the rest go to `free`.
    fn grow(&mut self) -> SlotRef<E> {
        let chunk: Box<[Slot<E>]> = (0..SLOTS_PER_CHUNK)
            .map(|_| Slot {
                state: Mutex::new(State::Free),
            })
            .collect();
        // Stored before any pointer is taken into it: moving a `Box`
        // asserts it is unique, which would invalidate pointers taken
        // before (Stacked Borrows; Miri checks it).
        self.chunks.push(chunk);
        let Some(chunk) = self.chunks.last() else {
            unreachable!("a chunk was just pushed");
        };
        self.free.extend(
            chunk[1..]
                .iter()
                .rev()
                .map(|slot| SlotRef(NonNull::from(slot))),
        );
        SlotRef(NonNull::from(&chunk[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// The error of these tests: the pool knows nothing of librdkafka's.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Failure {
        Canceled,
        TooLarge,
    }

    impl Canceled for Failure {
        fn canceled() -> Self {
            Failure::Canceled
        }
    }

    type TestSlots = Slots<Failure>;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn delivering(slots: &Arc<TestSlots>) -> Delivering<Failure> {
        Delivering::new(slots.clone(), slots.acquire())
    }

    fn free_slots(slots: &TestSlots) -> usize {
        slots.pool().free.len()
    }

    #[test]
    fn a_report_wakes_the_waiter_and_the_slot_is_reused() {
        let slots = Arc::new(TestSlots::default());
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
            Poll::Ready(Err(Failure::Canceled))
        ));
        // The pool hands the same slot out again: no new chunk.
        let again = slots.acquire();
        assert_eq!(again.0, delivering.slot.0);
        assert_eq!(slots.pool().chunks.len(), 1);
    }

    #[test]
    fn an_abandoned_failure_is_reported_and_frees_the_slot() {
        let slots = Arc::new(TestSlots::default());
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut ok = delivering(&slots);
        let mut failed = delivering(&slots);
        for delivering in [&mut ok, &mut failed] {
            let failures = failures.clone();
            delivering.abandon(move |err| failures.lock().unwrap().push(err));
        }
        slots.complete(
            ok.slot,
            Ok(Delivered {
                partition: 0,
                offset: 1,
            }),
        );
        slots.complete(failed.slot, Err(Failure::TooLarge));
        assert_eq!(failures.lock().unwrap().len(), 1);
        assert_eq!(free_slots(&slots), SLOTS_PER_CHUNK);
    }

    #[test]
    fn a_failure_reported_before_abandoning_is_still_reported() {
        let slots = Arc::new(TestSlots::default());
        let mut delivering = delivering(&slots);
        slots.complete(delivering.slot, Err(Failure::Canceled));
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
        let slots = Arc::new(TestSlots::default());
        let mut delivering = delivering(&slots);
        slots.cancel_waiting();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            delivering.poll_report(&mut cx),
            Poll::Ready(Err(Failure::Canceled))
        ));
    }

    #[test]
    fn the_pool_grows_by_chunks() {
        let slots = TestSlots::default();
        let held: Vec<SlotRef<Failure>> =
            (0..SLOTS_PER_CHUNK + 1).map(|_| slots.acquire()).collect();
        assert_eq!(slots.pool().chunks.len(), 2);
        let mut addresses: Vec<usize> = held.iter().map(|slot| slot.to_opaque()).collect();
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), SLOTS_PER_CHUNK + 1);
    }
}
