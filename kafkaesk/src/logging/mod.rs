//! Log shipping: a [`tracing_subscriber::Layer`] that publishes every event to
//! a stream, the Rust counterpart of Python kafkaesk's `kafkaesk.ext.logging`.
//!
//! Every service's logs land in Kafka with the same shape. [`KafkaLayer`]
//! turns each [`tracing`] event into a [`LogRecord`] and publishes it as a
//! normal kafkaesk message, `{"schema":"PydanticLogModel:1","data":{...}}`, so
//! any kafkaesk consumer can subscribe to it with a typed model: Rust with
//! [`LogRecord`], Python with `kafkaesk.ext.logging.PydanticLogModel`.
//!
//! # Example
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! use tracing_subscriber::{fmt, EnvFilter};
//!
//! # #[tokio::main] async fn main() -> Result<(), kafkaesk::Error> {
//! let app = kafkaesk::Application::builder()
//!     .kafka_servers(["localhost:9092"])
//!     .build()?;
//!
//! // `app.finalize()` (and so `app.run()`) flushes the queued logs too.
//! let kafka = kafkaesk::logging::KafkaLayer::new(&app, "logging.test")
//!     .with_max_level(tracing::Level::INFO);
//! // Flushes what is still queued when `main` returns, waiting at most 5 s.
//! let _logs = kafka.flush_guard();
//! tracing_subscriber::registry()
//!     // Human-readable console, filtered by RUST_LOG on its own.
//!     .with(fmt::layer().with_filter(EnvFilter::from_default_env()))
//!     // Structured records in Kafka, INFO and above.
//!     .with(kafka)
//!     .init();
//!
//! tracing::info!(user = "kafkaesk", "Log Message");
//! app.finalize().await
//! # }
//! ```
//!
//! # Each record
//!
//! `data` holds the fields Python's handler writes, plus the event's own:
//!
//! | field | value |
//! |---|---|
//! | `timestamp` | when the event happened, UTC, ISO 8601 (`2024-05-01T12:34:56.123456Z`) |
//! | `logger` | the event's target (`my_service::orders`); for `log` records bridged by `tracing-log`, the `log` target |
//! | `severity` | `TRACE`, `DEBUG`, `INFO`, `WARNING` or `ERROR` |
//! | `level` | `5`, `10`, `20`, `30` or `40`, as Python's `logging` numbers them |
//! | `message` | the event's message (empty without one) |
//! | `exception` | when a field holds an error (`error = &err as &dyn std::error::Error`): its type, see below; else `null` |
//! | `stack` | that error's message and its `source()` chain, one `Caused by:` line each; else `null` |
//! | `trace` | a backtrace of the logging call, when backtraces are on (`RUST_BACKTRACE` or `RUST_LIB_BACKTRACE`) and the event holds an error; else `null` |
//! | `hostname` | the machine's host name |
//! | `service` | the host name without its last two `-` parts when it has at least two dashes, as a Kubernetes pod's name (`my-svc-5d8f9-abcde` gives `my-svc`); without the last part when it has one dash; `unknown` otherwise |
//! | `namespace` | the Kubernetes namespace, read once from the service account's namespace file; `null` outside Kubernetes |
//! | `cluster` | the `CLUSTER` environment variable when the layer was made; `null` when unset |
//! | anything else | every field of the event and of the spans around it |
//!
//! Fields keep their types: integers and floats stay numbers, booleans stay
//! booleans, strings stay strings. A field recorded with `?value` (`Debug`) or
//! `%value` (`Display`) whose text is a JSON object or array is shipped as that
//! object or array; [`json`] records any `Serialize` value that way:
//!
//! ```
//! #[derive(serde::Serialize)]
//! struct Order { id: u64, items: Vec<String> }
//!
//! let order = Order { id: 7, items: vec!["book".into()] };
//! tracing::info!(order = kafkaesk::logging::json(&order), retries = 2, paid = true, "order placed");
//! // data: {"order":{"id":7,"items":["book"]},"retries":2,"paid":true,"message":"order placed",...}
//! ```
//!
//! Other `Debug` and `Display` values are shipped as their text. Span fields
//! come first, from the outermost span in; an inner span's field and then the
//! event's own replace one of the same name. A field named like one of the
//! fixed fields above (`level = 3`) is shipped with a trailing underscore
//! (`level_`), so the record keeps its shape.
//!
//! The `exception` of an error is its type where it can be known (the common
//! standard library errors, `serde_json::Error` and [`kafkaesk::Error`](crate::Error)),
//! else the name its `Debug` output starts with (the type for structs, the
//! variant for enums), else `Error`: Rust's `dyn Error` carries no type name.
//!
//! Records are keyed by the host name, so one process's records share a
//! partition and arrive in the order they were logged.
//!
//! # Behaviour
//!
//! - **Logging never waits for Kafka.** A logging call formats the event and
//!   puts it in a bounded queue (10,000 records; [`KafkaLayer::with_queue_capacity`]).
//!   A background thread, started with the first event, publishes from it.
//!   Events may come from any thread, inside or outside a tokio runtime.
//! - **A full queue drops records.** The count is reported on stderr (or to
//!   [`KafkaLayer::with_warnings_to`]) at most once every 30 seconds, and in
//!   [`FlushGuard::stats`].
//! - **The broker may go away.** The application keeps running, records wait in
//!   the queue up to its bound and are dropped after; shipping resumes when
//!   the broker is back. Records that librdkafka could not deliver within its
//!   `message.timeout.ms` are counted as failed.
//! - **Shipping does not feed itself.** Events emitted on the shipping thread
//!   (kafkaesk publishing the logs, creating the topic) are not shipped, and
//!   neither are events of the `rdkafka` and `librdkafka` targets, which
//!   librdkafka's threads emit for every client and cannot be told apart. The
//!   console layers still see all of them. What the application itself logs
//!   is shipped, so a handler of the log stream must not log each record it
//!   consumes at a shipped level: that would ship it again, forever.
//! - **Flushing has a bounded wait.** [`FlushGuard::flush`] waits until
//!   everything queued so far is acknowledged by the broker or has failed;
//!   dropping the guard does the same with [`KafkaLayer::with_flush_timeout`]
//!   (default 5 s), and so does [`Application::finalize`](crate::Application::finalize)
//!   (and with it `run`) of the application the layer was made with.
//! - **The level shipped is the layer's own.** [`KafkaLayer::with_max_level`]
//!   is a [per-layer filter]: other layers, such as the console, keep theirs.
//!   A global filter (`registry().with(EnvFilter)` outside any layer) still
//!   applies to every layer.
//!
//! [per-layer filter]: tracing_subscriber::layer#per-layer-filtering

mod fields;
mod record;
mod shipper;

use std::any::TypeId;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::filter::{Filtered, LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::app::Application;
use crate::subscription::Router;

pub use fields::{json, JsonDisplay};
pub use record::LogRecord;
pub use shipper::{FlushGuard, LogStats};

use fields::{Entry, FieldVisitor, SpanFields};
use shipper::Shared;

/// Default bound of the queue between logging calls and the shipping thread.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// Default bounded wait of [`FlushGuard`]'s drop and of the flush at
/// [`Application::finalize`](crate::Application::finalize).
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Targets never shipped: librdkafka's threads log under them for every
/// client, the log shipper's included, so shipping them could feed itself.
const EXCLUDED_TARGETS: [&str; 2] = ["rdkafka", "librdkafka"];

/// A [`Layer`] that publishes every event it is enabled for to a kafkaesk stream.
///
/// See the [module docs](self) for the record's fields and the layer's
/// behaviour. `S` is the subscriber it is added to, inferred by
/// [`with`](tracing_subscriber::layer::SubscriberExt::with).
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// # fn demo(app: kafkaesk::Application) {
/// let kafka = kafkaesk::logging::KafkaLayer::new(&app, "logging.test")
///     .with_max_level(tracing::Level::DEBUG)
///     .with_queue_capacity(50_000);
/// let guard = kafka.flush_guard();
/// tracing_subscriber::registry().with(kafka).init();
/// # }
/// ```
pub struct KafkaLayer<S> {
    inner: Filtered<Shipper, Targets, S>,
}

impl<S> std::fmt::Debug for KafkaLayer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = &self.inner.inner().shared;
        f.debug_struct("KafkaLayer")
            .field("stream", &shared.stream())
            .field("filter", self.inner.filter())
            .finish_non_exhaustive()
    }
}

fn level_filter(level: LevelFilter) -> Targets {
    EXCLUDED_TARGETS
        .iter()
        .fold(Targets::new().with_default(level), |targets, target| {
            targets.with_target(*target, LevelFilter::OFF)
        })
}

impl<S> KafkaLayer<S> {
    /// A layer that publishes to `stream` with `app`, every level included.
    ///
    /// Registers [`LogRecord`]'s schema, `PydanticLogModel:1`, with the
    /// application. Nothing connects and no thread starts until the first
    /// event.
    pub fn new(app: &Application, stream: impl Into<String>) -> Self {
        let shared = Arc::new(Shared::new(stream.into()));
        let mut router = Router::new();
        let registered = router
            .schema::<LogRecord>()
            .map(|_| ())
            .and_then(|()| app.mount(router));
        if let Err(err) = registered {
            shared.warn(&format!(
                "kafkaesk logging: cannot register the log schema ({err}); records are \
                 published under their type name instead"
            ));
        }
        shipper::flush_on_finalize(app, &shared);
        let stats: Arc<dyn crate::observe::metrics::LogQueueStats> = shared.clone();
        app.metrics().watch_log_queue(Arc::downgrade(&stats));
        let shipper = Shipper {
            shared,
            app: app.clone(),
            sender: OnceLock::new(),
        };
        KafkaLayer {
            inner: Filtered::new(shipper, level_filter(LevelFilter::TRACE)),
        }
    }

    /// Ships only events (and span fields) at `level` or more severe, whatever
    /// other layers do.
    ///
    /// ```
    /// # fn demo(app: kafkaesk::Application) {
    /// let kafka = kafkaesk::logging::KafkaLayer::<tracing_subscriber::Registry>::new(&app, "logs")
    ///     .with_max_level(tracing::Level::WARN);
    /// # }
    /// ```
    pub fn with_max_level(mut self, level: impl Into<LevelFilter>) -> Self {
        *self.inner.filter_mut() = level_filter(level.into());
        self
    }

    /// Sets how many records may wait for the shipping thread before new ones
    /// are dropped (at least 1). Takes effect when the first event is shipped.
    pub fn with_queue_capacity(self, capacity: usize) -> Self {
        self.inner.inner().shared.set_capacity(capacity.max(1));
        self
    }

    /// Sets how long dropping a [`FlushGuard`] and the application's
    /// `finalize` wait for queued records to be delivered.
    pub fn with_flush_timeout(self, timeout: Duration) -> Self {
        self.inner.inner().shared.set_flush_timeout(timeout);
        self
    }

    /// Sends the layer's own warnings (dropped records, publishing failures)
    /// to `sink` instead of stderr.
    ///
    /// They never go through `tracing`, where they could be shipped and
    /// warned about again. `sink` is called from logging threads and from the
    /// shipping thread, at most once every 30 seconds per kind of warning.
    pub fn with_warnings_to(self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.inner.inner().shared.set_warnings(Arc::new(sink));
        self
    }

    /// A guard that flushes the queue when dropped, and flushes or reports
    /// [`stats`](FlushGuard::stats) on demand. Any number can exist.
    pub fn flush_guard(&self) -> FlushGuard {
        FlushGuard::new(self.inner.inner().shared.clone())
    }
}

// Every method goes to the per-layer filter, which keeps the level filter
// out of other layers' way; `downcast_raw` included, which is how the
// subscriber discovers that this layer carries its own filter.
impl<S> Layer<S> for KafkaLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_record(&self, span: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.inner.on_event(event, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(std::ptr::from_ref(self).cast());
        }
        // SAFETY: forwarded unchanged; `Filtered` upholds the contract for
        // the types it answers to, and it lives as long as `self`.
        unsafe { self.inner.downcast_raw(id) }
    }
}

/// The unfiltered layer inside [`KafkaLayer`]: captures events and queues them.
struct Shipper {
    shared: Arc<Shared>,
    app: Application,
    /// Started by the first event, so that configuring the layer and building
    /// it outside a runtime costs nothing. `None` when the thread could not start.
    sender: OnceLock<Option<tokio::sync::mpsc::Sender<Entry>>>,
}

impl Shipper {
    fn enqueue(&self, entry: Entry) {
        let sender = self
            .sender
            .get_or_init(|| shipper::start(self.app.clone(), self.shared.clone()));
        match sender {
            Some(sender) => match sender.try_send(entry) {
                Ok(()) => self.shared.note_queued(),
                Err(_) => self.shared.note_dropped(),
            },
            None => self.shared.note_dropped(),
        }
    }
}

impl<S> Layer<S> for Shipper
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.shared.set_dispatch(subscriber);
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if shipper::on_shipping_thread() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut visitor = FieldVisitor::for_span();
        attrs.record(&mut visitor);
        // `replace`, not `insert`: two of these layers share the registry's span.
        span.extensions_mut()
            .replace(SpanFields(visitor.into_fields()));
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if shipper::on_shipping_thread() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut visitor = FieldVisitor::for_span();
        values.record(&mut visitor);
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(SpanFields(fields)) => fields.extend(visitor.into_fields()),
            None => {
                extensions.insert(SpanFields(visitor.into_fields()));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if shipper::on_shipping_thread() {
            return;
        }
        self.enqueue(Entry::capture(event, &ctx));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing_subscriber::prelude::*;

    use super::*;

    fn unreachable_app() -> Application {
        Application::builder()
            .kafka_servers(["127.0.0.1:1"])
            .build()
            .unwrap()
    }

    #[test]
    fn full_queue_drops_and_warns_once() {
        let app = unreachable_app();
        let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = warnings.clone();
        let layer = KafkaLayer::new(&app, "logs")
            .with_queue_capacity(10)
            .with_flush_timeout(Duration::from_millis(10))
            .with_warnings_to(move |w| sink.lock().unwrap().push(w.to_owned()));
        let guard = layer.flush_guard();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for i in 0..1000 {
                tracing::info!(i, "event");
            }
        });
        let stats = guard.stats();
        assert_eq!(stats.queued + stats.dropped, 1000, "{stats:?}");
        // The shipping thread holds at most one record while the queue holds 10.
        assert!(stats.dropped >= 989, "{stats:?}");
        let warnings = warnings.lock().unwrap();
        let drops: Vec<_> = warnings.iter().filter(|w| w.contains("full")).collect();
        assert_eq!(drops.len(), 1, "{warnings:?}");
        assert!(drops[0].contains("10 records"), "{warnings:?}");
    }

    #[test]
    fn level_filter_is_per_layer() {
        // Counts this thread's events only: the shipping thread logs through
        // the same dispatcher (its publishes, the unreachable broker), and
        // the console must see those too, but they are not this test's.
        #[derive(Clone)]
        struct Count(Arc<Mutex<usize>>, std::thread::ThreadId);
        impl<S: Subscriber> Layer<S> for Count {
            fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
                if std::thread::current().id() == self.1 {
                    *self.0.lock().unwrap() += 1;
                }
            }
        }
        let console = Count(Arc::default(), std::thread::current().id());
        let app = unreachable_app();
        let layer = KafkaLayer::new(&app, "logs")
            .with_max_level(tracing::Level::WARN)
            .with_flush_timeout(Duration::from_millis(10))
            .with_warnings_to(|_| {});
        let guard = layer.flush_guard();
        let subscriber = tracing_subscriber::registry()
            .with(console.clone())
            .with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("console only");
            tracing::info!("console only");
            tracing::warn!("both");
            tracing::info!(target: "librdkafka", "console only");
            tracing::error!(target: "rdkafka::client", "console only");
        });
        assert_eq!(*console.0.lock().unwrap(), 5);
        let stats = guard.stats();
        assert_eq!(stats.queued + stats.dropped, 1, "{stats:?}");
    }
}
