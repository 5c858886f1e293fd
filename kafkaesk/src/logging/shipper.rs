//! The shipping thread, the state it shares with the layer, and flushing.

use std::cell::Cell;
use std::future::IntoFuture;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::dispatcher::WeakDispatch;
use tracing::instrument::WithSubscriber;
use tracing::Dispatch;

use super::fields::Entry;
use super::record::{HostInfo, LogRecord};
use super::{DEFAULT_FLUSH_TIMEOUT, DEFAULT_QUEUE_CAPACITY};
use crate::app::Application;
use crate::error::Error;
use crate::observe::metrics::LogQueueStats;
use crate::publish::PublishHandle;
use crate::sync::lock;

const THREAD_NAME: &str = "kafkaesk-logging";

/// How often each kind of warning may be written.
const WARNING_INTERVAL: Duration = Duration::from_secs(30);

/// Records handed to librdkafka and not yet acknowledged. Bounds the memory
/// a broker outage costs beyond the queue, since librdkafka would otherwise
/// take 100,000 of them before pushing back.
const MAX_IN_FLIGHT: usize = 1024;

/// Longest pause between attempts to publish while the broker is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

thread_local! {
    static SHIPPING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread publishes logs: its events are kafkaesk's and
/// librdkafka's work on them, and shipping them would feed itself.
pub(super) fn on_shipping_thread() -> bool {
    SHIPPING.try_with(Cell::get).unwrap_or(false)
}

fn mark_shipping_thread() {
    SHIPPING.with(|shipping| shipping.set(true));
}

type WarningSink = Arc<dyn Fn(&str) + Send + Sync>;

fn stderr_sink() -> WarningSink {
    Arc::new(|warning: &str| {
        // Nowhere left to report a failing stderr.
        let _ = writeln!(std::io::stderr().lock(), "{warning}");
    })
}

/// Lets one warning through per [`WARNING_INTERVAL`], from any thread.
struct RateLimit {
    start: Instant,
    /// Milliseconds after `start` of the last warning; `u64::MAX` before the first.
    last: AtomicU64,
}

impl RateLimit {
    fn new() -> Self {
        RateLimit {
            start: Instant::now(),
            last: AtomicU64::new(u64::MAX),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn allow(&self) -> bool {
        self.allow_at(self.now_ms())
    }

    fn allow_at(&self, now_ms: u64) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        let due =
            last == u64::MAX || now_ms.saturating_sub(last) >= WARNING_INTERVAL.as_millis() as u64;
        // Of threads racing past the check, only one writes the warning.
        due && self
            .last
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// What the layer, its guards and the shipping thread share.
pub(super) struct Shared {
    stream: String,
    pub(super) host: HostInfo,
    capacity: AtomicUsize,
    flush_timeout: Mutex<Duration>,
    warnings: Mutex<WarningSink>,
    dispatch: OnceLock<WeakDispatch>,
    queued: AtomicU64,
    dropped: AtomicU64,
    unreported_drops: AtomicU64,
    shipped: AtomicU64,
    failed: AtomicU64,
    drop_warnings: RateLimit,
    failure_warnings: RateLimit,
    progress_lock: Mutex<()>,
    progress: Condvar,
    progress_async: tokio::sync::Notify,
}

impl Shared {
    pub(super) fn new(stream: String) -> Self {
        Shared {
            stream,
            host: HostInfo::current(),
            capacity: AtomicUsize::new(DEFAULT_QUEUE_CAPACITY),
            flush_timeout: Mutex::new(DEFAULT_FLUSH_TIMEOUT),
            warnings: Mutex::new(stderr_sink()),
            dispatch: OnceLock::new(),
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            unreported_drops: AtomicU64::new(0),
            shipped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            drop_warnings: RateLimit::new(),
            failure_warnings: RateLimit::new(),
            progress_lock: Mutex::new(()),
            progress: Condvar::new(),
            progress_async: tokio::sync::Notify::new(),
        }
    }

    pub(super) fn stream(&self) -> &str {
        &self.stream
    }

    pub(super) fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    pub(super) fn set_flush_timeout(&self, timeout: Duration) {
        *lock(&self.flush_timeout) = timeout;
    }

    fn flush_timeout(&self) -> Duration {
        *lock(&self.flush_timeout)
    }

    pub(super) fn set_warnings(&self, sink: WarningSink) {
        *lock(&self.warnings) = sink;
    }

    pub(super) fn set_dispatch(&self, dispatch: &Dispatch) {
        // The first subscriber the layer joins is the one it lives in.
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    pub(super) fn warn(&self, warning: &str) {
        // Cloned out so that a slow sink does not hold the lock.
        let sink = lock(&self.warnings).clone();
        sink(warning);
    }

    fn warn_failure(&self, warning: &str) {
        if self.failure_warnings.allow() {
            self.warn(warning);
        }
    }

    pub(super) fn note_queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn note_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported_drops.fetch_add(1, Ordering::Relaxed);
        self.report_drops();
    }

    fn report_drops(&self) {
        self.report_drops_at(self.drop_warnings.now_ms());
    }

    fn report_drops_at(&self, now_ms: u64) {
        if self.unreported_drops.load(Ordering::Relaxed) == 0
            || !self.drop_warnings.allow_at(now_ms)
        {
            return;
        }
        let count = self.unreported_drops.swap(0, Ordering::Relaxed);
        self.warn(&format!(
            "kafkaesk logging: the queue of log records for stream `{}` is full ({} records); \
             dropped {count} record(s) since the last report. Drops are reported at most every \
             {} s.",
            self.stream,
            self.capacity.load(Ordering::Relaxed),
            WARNING_INTERVAL.as_secs()
        ));
    }

    fn finish(&self, shipped: u64, failed: u64) {
        self.shipped.fetch_add(shipped, Ordering::Relaxed);
        self.failed.fetch_add(failed, Ordering::Relaxed);
        // Taking the lock orders this wake-up after a waiter's check.
        drop(lock(&self.progress_lock));
        self.progress.notify_all();
        self.progress_async.notify_waiters();
    }

    fn finished(&self) -> u64 {
        self.shipped.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    fn stats(&self) -> LogStats {
        LogStats {
            queued: self.queued.load(Ordering::Relaxed),
            shipped: self.shipped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn flush_blocking(&self, timeout: Duration) -> bool {
        let target = self.queued.load(Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        let mut guard = lock(&self.progress_lock);
        loop {
            if self.finished() >= target {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return false;
            }
            guard = match self.progress.wait_timeout(guard, remaining) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    async fn flush_async(&self, timeout: Duration) -> bool {
        let target = self.queued.load(Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let progressed = self.progress_async.notified();
            tokio::pin!(progressed);
            // Registered before the check, so a wake-up in between is not lost.
            progressed.as_mut().enable();
            if self.finished() >= target {
                return true;
            }
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                return self.finished() >= target;
            }
        }
    }

    fn warn_unflushed(&self, timeout: Duration) {
        let stats = self.stats();
        self.warn(&format!(
            "kafkaesk logging: {} log record(s) for stream `{}` were not delivered within {:?}",
            stats.pending(),
            self.stream,
            timeout
        ));
    }
}

impl LogQueueStats for Shared {
    fn stream(&self) -> &str {
        &self.stream
    }

    fn depth(&self) -> u64 {
        self.stats().pending()
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Makes `app`'s [`finalize`](Application::finalize) flush this layer's
/// queue, for at most its flush timeout. Records still undelivered then are
/// reported as a warning; finalizing goes on.
pub(super) fn flush_on_finalize(app: &Application, shared: &Arc<Shared>) {
    // Weak: the application must not keep a dropped layer's queue alive.
    let layer = Arc::downgrade(shared);
    app.on_finalize(move |_| {
        let layer = layer.clone();
        async move {
            if let Some(layer) = layer.upgrade() {
                let timeout = layer.flush_timeout();
                if !layer.flush_async(timeout).await {
                    layer.warn_unflushed(timeout);
                }
            }
            Ok(())
        }
    });
}

/// Counters of a [`KafkaLayer`](super::KafkaLayer) since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records accepted into the queue.
    pub queued: u64,
    /// Records the broker acknowledged.
    pub shipped: u64,
    /// Records that could not be published or were not acknowledged.
    pub failed: u64,
    /// Records dropped because the queue was full or shipping had stopped.
    pub dropped: u64,
}

impl LogStats {
    /// Records queued and not yet shipped or failed.
    pub fn pending(&self) -> u64 {
        self.queued.saturating_sub(self.shipped + self.failed)
    }
}

/// Flushes a [`KafkaLayer`](super::KafkaLayer)'s queue when dropped, waiting
/// at most its flush timeout (5 s unless set with
/// [`with_flush_timeout`](super::KafkaLayer::with_flush_timeout)).
///
/// Keep it alive as long as the program logs, like `tracing-appender`'s
/// guard: records queued after the last flush are lost when the process
/// exits. Dropping it blocks the dropping thread for that bounded wait.
#[must_use = "dropping the guard flushes at once; keep it until the program ends"]
pub struct FlushGuard {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushGuard")
            .field("stream", &self.shared.stream)
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl FlushGuard {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        FlushGuard { shared }
    }

    /// Blocks until every record queued before the call is acknowledged by
    /// the broker or has failed, or `timeout` passes. True when all were.
    ///
    /// In async code, prefer [`flush_async`](Self::flush_async).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush_blocking(timeout)
    }

    /// [`flush`](Self::flush) without blocking the runtime's thread.
    pub async fn flush_async(&self, timeout: Duration) -> bool {
        self.shared.flush_async(timeout).await
    }

    /// The layer's counters so far.
    pub fn stats(&self) -> LogStats {
        self.shared.stats()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let timeout = self.shared.flush_timeout();
        if !self.shared.flush_blocking(timeout) {
            self.shared.warn_unflushed(timeout);
        }
    }
}

/// Starts the shipping thread and returns the sending end of its queue, or
/// `None` when no thread could be started.
pub(super) fn start(app: Application, shared: Arc<Shared>) -> Option<mpsc::Sender<Entry>> {
    let (sender, receiver) = mpsc::channel(shared.capacity.load(Ordering::Relaxed).max(1));
    let thread_shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || {
            mark_shipping_thread();
            let shared = thread_shared;
            // Its blocking threads work for the shipping too (metadata lookups),
            // so their events are not shipped either.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(THREAD_NAME)
                .on_thread_start(mark_shipping_thread)
                .build();
            match runtime {
                Ok(runtime) => {
                    runtime.block_on(run(app, shared, receiver));
                    // Do not wait for a metadata lookup that may take its full timeout.
                    runtime.shutdown_background();
                }
                Err(err) => shared.warn(&format!(
                    "kafkaesk logging: cannot start the runtime that ships logs: {err}"
                )),
            }
        });
    match spawned {
        Ok(_) => Some(sender),
        Err(err) => {
            shared.warn(&format!(
                "kafkaesk logging: cannot start the thread that ships logs: {err}"
            ));
            None
        }
    }
}

type InFlight = (PublishHandle, OwnedSemaphorePermit);

async fn run(app: Application, shared: Arc<Shared>, mut queue: mpsc::Receiver<Entry>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let (acks, pending_acks) = mpsc::unbounded_channel::<InFlight>();
    let tracker = tokio::spawn(track_acks(pending_acks, shared.clone()));
    loop {
        let entry = match tokio::time::timeout(WARNING_INTERVAL, queue.recv()).await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(_idle) => {
                // Drops that stopped before the next logging call reported them.
                shared.report_drops();
                continue;
            }
        };
        let record = entry.into_record(&shared.host);
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        match publish(&app, &shared, &record, &queue).await {
            ShipOutcome::Queued(handle) => {
                // The tracker outlives this loop, so the send cannot fail.
                let _ = acks.send((handle, permit));
            }
            ShipOutcome::Rejected => shared.finish(0, 1),
            ShipOutcome::Abandoned => {
                let mut lost = 1;
                while queue.try_recv().is_ok() {
                    lost += 1;
                }
                shared.finish(0, lost);
                shared.warn(&format!(
                    "kafkaesk logging: the log layer for stream `{}` was dropped while its \
                     broker was unreachable; {lost} record(s) were not shipped",
                    shared.stream
                ));
                break;
            }
        }
    }
    drop(acks);
    let _ = tracker.await;
    shared.report_drops();
}

enum ShipOutcome {
    Queued(PublishHandle),
    /// The record itself cannot be published; it is dropped.
    Rejected,
    /// The broker stayed unreachable after the layer was dropped.
    Abandoned,
}

/// Errors that publishing the same record again cannot fix.
fn is_permanent(err: &Error) -> bool {
    match err {
        Error::Validation { .. }
        | Error::Serialize { .. }
        | Error::InvalidSchema { .. }
        | Error::AppNotConfigured(_) => true,
        Error::Delivery { source, .. } => !matches!(
            source,
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
        ),
        _ => false,
    }
}

/// Publishes one record, retrying for as long as the broker is unreachable:
/// meanwhile the queue fills to its bound, and later records are dropped.
async fn publish(
    app: &Application,
    shared: &Shared,
    record: &LogRecord,
    queue: &mpsc::Receiver<Entry>,
) -> ShipOutcome {
    let mut backoff = Duration::from_millis(100);
    let mut failing_since: Option<Instant> = None;
    loop {
        let attempt = app
            .publish(&shared.stream, record)
            .key(&shared.host.hostname)
            .into_future();
        // kafkaesk's events while publishing reach the layer's own subscriber,
        // whose console shows them and whose layer skips them on this thread.
        let result = match shared.dispatch.get().and_then(WeakDispatch::upgrade) {
            Some(dispatch) => attempt.with_subscriber(dispatch).await,
            None => attempt.await,
        };
        match result {
            Ok(handle) => return ShipOutcome::Queued(handle),
            Err(err) if is_permanent(&err) => {
                shared.warn_failure(&format!(
                    "kafkaesk logging: dropped a log record that cannot be published to stream \
                     `{}`: {err}",
                    shared.stream
                ));
                return ShipOutcome::Rejected;
            }
            Err(err) => {
                let failing_for = failing_since.get_or_insert_with(Instant::now).elapsed();
                // Once the layer is gone, only a flush could still be waiting,
                // and it waits no longer than the flush timeout.
                if queue.is_closed() && failing_for >= shared.flush_timeout() {
                    return ShipOutcome::Abandoned;
                }
                shared.warn_failure(&format!(
                    "kafkaesk logging: cannot publish log records to stream `{}`, retrying: {err}",
                    shared.stream
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Waits for acknowledgements in publishing order, which is delivery order
/// within the records' one partition.
async fn track_acks(mut in_flight: mpsc::UnboundedReceiver<InFlight>, shared: Arc<Shared>) {
    while let Some((handle, permit)) = in_flight.recv().await {
        let delivered = handle.await;
        drop(permit);
        match delivered {
            Ok(_) => shared.finish(1, 0),
            Err(err) => {
                shared.finish(0, 1);
                shared.warn_failure(&format!(
                    "kafkaesk logging: a log record was not delivered to stream `{}`: {err}",
                    shared.stream
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_warning_through_per_interval() {
        let limit = RateLimit::new();
        assert!(limit.allow_at(1_000));
        assert!(!limit.allow_at(1_001));
        assert!(!limit.allow_at(30_999));
        assert!(limit.allow_at(31_000));
        assert!(!limit.allow_at(31_000));
    }

    #[test]
    fn drops_between_reports_are_counted_together() {
        let shared = Shared::new("logs".into());
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = seen.clone();
        shared.set_warnings(Arc::new(move |w: &str| {
            sink.lock().unwrap().push(w.to_owned())
        }));
        for _ in 0..5 {
            shared.note_dropped();
        }
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(seen.lock().unwrap()[0].contains("dropped 1 record(s)"));
        shared.report_drops_at(10_000);
        assert_eq!(seen.lock().unwrap().len(), 1, "within the interval");
        let after_interval = shared.drop_warnings.last.load(Ordering::Relaxed) + 30_000;
        shared.report_drops_at(after_interval);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].contains("dropped 4 record(s)"), "{seen:?}");
        assert_eq!(shared.unreported_drops.load(Ordering::Relaxed), 0);
        assert_eq!(shared.stats().dropped, 5);
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        assert!(is_permanent(&Error::AppNotConfigured("x".into())));
        assert!(!is_permanent(&Error::Timeout(Duration::from_secs(1))));
        assert!(!is_permanent(&Error::Delivery {
            topic: "t".into(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
        }));
        assert!(is_permanent(&Error::Delivery {
            topic: "t".into(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        }));
    }
}
