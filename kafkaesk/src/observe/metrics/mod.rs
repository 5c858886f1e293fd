//! Prometheus metrics, named as Python kafkaesk names them.
//!
//! Every [`Application`](crate::Application) records into a [`Metrics`]: its
//! own by default, or one given to
//! [`ApplicationBuilder::metrics`](crate::ApplicationBuilder::metrics), for
//! instance registered in a registry the service already serves. The
//! `kafkaesk` command serves them with `--metrics-addr` (see
//! [`exporter`](crate::http)).
//!
//! # Python kafkaesk's metrics
//!
//! Names, types, label names and histogram buckets are those of Python
//! kafkaesk's `kafkaesk/metrics.py`, so dashboards and alerts keep working
//! when a service moves to Rust. Python's `prometheus_client` adds `_total`
//! to counter names when it exposes them; so do we, so the exposed names are
//! the same (`kafkaesk_consumed_messages_total`).
//!
//! | metric | type | labels | recorded |
//! |---|---|---|---|
//! | `kafkaesk_kafka_action_total`, `kafkaesk_kafka_action_time` | counter, histogram | `type`, `error` / `type` | `producer_start`, `producer_flush`, `sync_create_topics`, `sync_consumer_connect`, as Python names them; and `rebalance_on_assigned`, `rebalance_on_revoked` for the [rebalance hooks](crate::subscription::hooks) |
//! | `kafkaesk_publish_messages_total`, `kafkaesk_publish_messages_time` | counter, histogram | `stream_id`, `error` / `stream_id` | each publish, as it is queued |
//! | `kafkaesk_published_messages_total`, `kafkaesk_published_messages_time` | counter, histogram | `stream_id`, `partition`, `error` / `stream_id` | each delivery report, awaited or not |
//! | `kafkaesk_produced_topic_offset` | gauge | `stream_id`, `partition` | the offset of the last delivery |
//! | `kafkaesk_consumed_messages_total` | counter | `stream_id`, `partition`, `error`, `group_id` | each settled record |
//! | `kafkaesk_consumed_messages_batch_size` | histogram | `stream_id`, `group_id`, `partition` | records of a partition in one batch |
//! | `kafkaesk_consumed_message_elapsed_time` | histogram | `stream_id`, `group_id`, `partition` | the time one batch's handlers took |
//! | `kafkaesk_consumed_topic_offset` | gauge | `group_id`, `partition`, `stream_id` | the offset of the last settled record |
//! | `kafkaesk_message_lead_time` | histogram | `stream_id`, `group_id`, `partition` | from a record's timestamp to its settling |
//! | `kafkaesk_consumer_rebalanced_total` | counter | `group_id`, `partition`, `event` | each partition assigned or revoked |
//! | `kafkaesk_consumer_health` | gauge | `group_id` | 1 while the consumer runs, 0 once it stopped, while a fetch error repeats, or while a partition is stuck past the `stall_timeout` |
//!
//! Label values follow Python, odd ones included:
//! - `stream_id` is the full topic name (with the application's prefix),
//!   except in `kafkaesk_consumed_message_elapsed_time`, where it is the
//!   subscription's name and `partition` is the batch's first partition
//!   written as Python writes it, `TopicPartition(topic='t', partition=0)`.
//! - `error` is `none` on success. A failed delivery is labelled with
//!   librdkafka's error code (`MessageTimedOut`) and `partition` `-1`. A
//!   record that cannot be decoded is `UnhandledMessage`; a handler that
//!   returned an error, `exception` (Rust errors carry no class name); a
//!   panic, `panic`; a timeout, `pending`, as Python labels a handler still
//!   running at its timeout. A kafka action that failed is `exception`.
//! - Python's lead-time buckets list `60` twice; a Prometheus histogram cannot
//!   have the same bucket twice, so it appears once. The series are the same.
//! - Python exposes a `_created` sample for each counter and histogram; we do
//!   not. No kafkaesk dashboard queries it.
//!
//! # Beyond Python
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `kafkaesk_consumer_lag` | gauge | `group_id`, `stream_id`, `partition`: the partition's high watermark (last stable offset under `read_committed`) minus the group's committed offset, from librdkafka's statistics every `statistics.interval.ms` (5 s by default; set it in `kafka_settings`). A partition appears once the group has committed on it, and leaves when it is revoked |
//! | `kafkaesk_handler_retries_total` | counter | `subscription`, `group_id` |
//! | `kafkaesk_skipped_messages_total` | counter | `subscription`, `group_id`, `reason` (`unhandled`: could not be decoded; `error_policy`: failed and skipped; `dead_letter_too_large`: failed, and its dead letter did not fit) |
//! | `kafkaesk_dead_lettered_messages_total` | counter | `subscription`, `group_id`, `dead_letter_stream` |
//! | `kafkaesk_retry_stream_messages_total` | counter | `subscription`, `group_id`, `retry_stream`: failed records moved to a retry stream (see [Retry streams](crate::ErrorPolicy#retry-streams)) |
//! | `kafkaesk_consumer_fetch_errors_total` | counter | `subscription`, `group_id`, `error` (librdkafka's code, `NotImplemented`): errors reported in place of records; one that repeats for 10 s also sets `kafkaesk_consumer_health` to 0 (see [`consumer`](crate::Application::run)) |
//! | `kafkaesk_kafka_client_errors_total` | counter | `client` (`producer`, `consumer`), `error` (librdkafka's code, `BrokerTransportFailure`): errors librdkafka reports about its connections, such as a broker lost or a request timed out. librdkafka retries through them, so they fail nothing by themselves; each is also logged (target `librdkafka`) |
//! | `kafkaesk_consumer_oldest_unfinished_seconds` | gauge | `subscription`, `stream_id`, `partition`: how long the partition has waited on its oldest record fetched and not settled (handled, skipped or dead-lettered), counted from its fetch or from the partition's last progress, whichever is later; 0 while it has none, and while a pause holds it. Looked at once a second; past the subscription's [`stall_timeout`](crate::Subscription::with_stall_timeout) the consumer reports unhealthy |
//! | `kafkaesk_log_queue_depth` | gauge | `stream`: log records queued and not yet shipped |
//! | `kafkaesk_log_records_dropped_total` | counter | `stream`: log records dropped because the queue was full |
//!
//! # Cost
//!
//! Recording is a few atomic additions per record. Each consumer and the
//! producer keep the series of the partitions they see, so the label lookup
//! is paid once per partition, not per message. The `prometheus` crate was
//! chosen over `metrics` with `metrics-exporter-prometheus` for that reason:
//! its histograms are fixed buckets updated in place, where the exporter's
//! histograms queue every sample until a scrape.
//!
//! # Serving them from your own server
//!
//! ```
//! let app = kafkaesk::Application::builder().build().unwrap();
//! // In an HTTP handler of your own:
//! let body: String = app.metrics().encode();
//! assert!(body.is_empty() || body.contains("kafkaesk_"));
//! // Or gather them into a registry you already serve:
//! let registry = kafkaesk::observe::metrics::prometheus::Registry::new();
//! let metrics = kafkaesk::Metrics::registered_in(&registry).unwrap();
//! let app = kafkaesk::Application::builder().metrics(metrics).build().unwrap();
//! ```

mod client;
mod consume;
mod log_queue;
mod publish;

use std::sync::Arc;
use std::time::Duration;

pub use prometheus;
use prometheus::core::Collector;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

pub(crate) use client::ClientErrorMetrics;
pub(crate) use consume::ConsumerMetrics;
pub(crate) use log_queue::LogQueueStats;
pub(crate) use publish::{DeliveryMetrics, PublishSeries};

/// The `error` label of a success, as Python writes it.
pub(crate) const NO_ERROR: &str = "none";
/// The `error` label of a failure with no better name, as Python writes it.
pub(crate) const GENERAL_ERROR: &str = "exception";

/// `prometheus_client`'s default buckets, which Python kafkaesk's
/// histograms use unless they say otherwise.
const PYTHON_DEFAULT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const BATCH_SIZE_BUCKETS: [f64; 9] = [1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
/// Python's lead-time buckets, with its second `60` removed.
const LEAD_TIME_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// kafkaesk's metrics, in a Prometheus registry. Cheap to clone; clones
/// record into the same series.
///
/// ```
/// let metrics = kafkaesk::Metrics::new();
/// let app = kafkaesk::Application::builder()
///     .metrics(metrics.clone())
///     .build()
///     .unwrap();
/// assert!(app.metrics().encode().len() == metrics.encode().len());
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

pub(crate) struct Families {
    registry: Registry,
    kafka_action: IntCounterVec,
    kafka_action_time: HistogramVec,
    pub(crate) publish_messages: IntCounterVec,
    pub(crate) publish_messages_time: HistogramVec,
    pub(crate) published_messages: IntCounterVec,
    pub(crate) published_messages_time: HistogramVec,
    pub(crate) produced_topic_offset: IntGaugeVec,
    pub(crate) consumed_messages: IntCounterVec,
    pub(crate) consumed_messages_batch_size: HistogramVec,
    pub(crate) consumed_message_elapsed_time: HistogramVec,
    pub(crate) consumed_topic_offset: IntGaugeVec,
    pub(crate) message_lead_time: HistogramVec,
    pub(crate) consumer_rebalanced: IntCounterVec,
    pub(crate) consumer_health: IntGaugeVec,
    pub(crate) consumer_lag: IntGaugeVec,
    pub(crate) handler_retries: IntCounterVec,
    pub(crate) skipped_messages: IntCounterVec,
    pub(crate) dead_lettered_messages: IntCounterVec,
    pub(crate) retried_later_messages: IntCounterVec,
    pub(crate) fetch_errors: IntCounterVec,
    pub(crate) client_errors: IntCounterVec,
    pub(crate) oldest_unfinished: GaugeVec,
    log_queues: log_queue::LogQueues,
    publish_series: publish::SeriesByTopic,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// kafkaesk's metrics in a registry of their own.
    pub fn new() -> Self {
        // Registering fresh collectors in a fresh registry cannot conflict.
        Metrics::registered_in(&Registry::new())
            .expect("kafkaesk's metric names are valid and unique")
    }

    /// kafkaesk's metrics, registered in `registry`: a service that already
    /// serves a registry gets them there. Fails when `registry` already holds
    /// a metric of the same name, for instance kafkaesk's metrics of another
    /// application: give both applications the same `Metrics` instead.
    pub fn registered_in(registry: &Registry) -> prometheus::Result<Self> {
        let families = Families::new(registry.clone())?;
        Ok(Metrics {
            inner: Arc::new(families),
        })
    }

    /// The registry the metrics are in.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Every metric of the registry in Prometheus's text format, as
    /// `GET /metrics` answers.
    pub fn encode(&self) -> String {
        let families = self.inner.registry.gather();
        // The text encoder fails only on invalid families, which registration
        // already refused.
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }

    /// Records one kafka action (`type` as Python names them) that took
    /// `elapsed` and succeeded or not.
    pub(crate) fn kafka_action(&self, action: &str, elapsed: Duration, ok: bool) {
        let error = if ok { NO_ERROR } else { GENERAL_ERROR };
        let families = &self.inner;
        families
            .kafka_action
            .with_label_values(&[action, error])
            .inc();
        families
            .kafka_action_time
            .with_label_values(&[action])
            .observe(elapsed.as_secs_f64());
    }

    /// Runs `action` and records it as the kafka action `kind`.
    pub(crate) async fn time_kafka_action<T, E>(
        &self,
        kind: &str,
        action: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let result = action.await;
        self.kafka_action(kind, started.elapsed(), result.is_ok());
        result
    }

    /// The series one topic's publishes record into.
    pub(crate) fn publishing(&self, topic: &Arc<str>) -> Arc<PublishSeries> {
        self.inner.publish_series.get(&self.inner, topic)
    }

    /// What a producer's delivery reports record into.
    pub(crate) fn deliveries(&self) -> DeliveryMetrics {
        DeliveryMetrics::new(self.inner.clone())
    }

    /// Where the errors of a `client` (`producer` or `consumer`) are counted.
    pub(crate) fn client_errors(&self, client: &'static str) -> ClientErrorMetrics {
        ClientErrorMetrics::new(self.inner.clone(), client)
    }

    /// What the consumer of `subscription` in `group` records into.
    pub(crate) fn consumer(&self, subscription: &str, group: &str) -> ConsumerMetrics {
        ConsumerMetrics::new(self.inner.clone(), subscription, group)
    }

    /// Adds a log queue to `kafkaesk_log_queue_depth` and
    /// `kafkaesk_log_records_dropped_total`, while it lives.
    pub(crate) fn watch_log_queue(&self, queue: std::sync::Weak<dyn LogQueueStats>) {
        self.inner.log_queues.watch(queue);
    }
}

/// Registers `collector` in `registry` and gives it back.
fn registered<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    registered(registry, HistogramVec::new(opts, labels)?)
}

impl Families {
    fn new(registry: Registry) -> prometheus::Result<Self> {
        let r = &registry;
        let default = &PYTHON_DEFAULT_BUCKETS;
        let consumed = ["stream_id", "group_id", "partition"];
        let by_subscription = ["subscription", "group_id"];
        let log_queues = registered(r, log_queue::LogQueues::new()?)?;
        Ok(Families {
            kafka_action: counter(
                r,
                "kafkaesk_kafka_action_total",
                "Perform action on kafka",
                &["type", "error"],
            )?,
            kafka_action_time: histogram(
                r,
                "kafkaesk_kafka_action_time",
                "Time taken to perform kafka action",
                &["type"],
                default,
            )?,
            publish_messages: counter(
                r,
                "kafkaesk_publish_messages_total",
                "Number of messages attempted to be published",
                &["stream_id", "error"],
            )?,
            publish_messages_time: histogram(
                r,
                "kafkaesk_publish_messages_time",
                "Time taken for a message to be queued for publishing (in seconds)",
                &["stream_id"],
                default,
            )?,
            published_messages: counter(
                r,
                "kafkaesk_published_messages_total",
                "Number of published messages",
                &["stream_id", "partition", "error"],
            )?,
            published_messages_time: histogram(
                r,
                "kafkaesk_published_messages_time",
                "Time taken for a message to be published (in seconds)",
                &["stream_id"],
                default,
            )?,
            produced_topic_offset: gauge(
                r,
                "kafkaesk_produced_topic_offset",
                "Offset for produced messages a the topic",
                &["stream_id", "partition"],
            )?,
            consumed_messages: counter(
                r,
                "kafkaesk_consumed_messages_total",
                "Number of consumed messages",
                &["stream_id", "partition", "error", "group_id"],
            )?,
            consumed_messages_batch_size: histogram(
                r,
                "kafkaesk_consumed_messages_batch_size",
                "Size of message batches consumed",
                &consumed,
                &BATCH_SIZE_BUCKETS,
            )?,
            consumed_message_elapsed_time: histogram(
                r,
                "kafkaesk_consumed_message_elapsed_time",
                "Processing time for consumed message (in seconds)",
                &consumed,
                default,
            )?,
            consumed_topic_offset: gauge(
                r,
                "kafkaesk_consumed_topic_offset",
                "Offset for consumed messages in a topic",
                &["group_id", "partition", "stream_id"],
            )?,
            message_lead_time: histogram(
                r,
                "kafkaesk_message_lead_time",
                "Time that the message has been waiting to be handled by a consumer (in seconds)",
                &consumed,
                &LEAD_TIME_BUCKETS,
            )?,
            consumer_rebalanced: counter(
                r,
                "kafkaesk_consumer_rebalanced_total",
                "Consumer rebalances",
                &["group_id", "partition", "event"],
            )?,
            consumer_health: gauge(
                r,
                "kafkaesk_consumer_health",
                "Liveness probe for the consumer",
                &["group_id"],
            )?,
            consumer_lag: gauge(
                r,
                "kafkaesk_consumer_lag",
                "Records of a partition after the group's committed offset",
                &["group_id", "stream_id", "partition"],
            )?,
            handler_retries: counter(
                r,
                "kafkaesk_handler_retries_total",
                "Handler runs retried by the error policy",
                &by_subscription,
            )?,
            skipped_messages: counter(
                r,
                "kafkaesk_skipped_messages_total",
                "Records skipped: not decodable, or failed and skipped by the error policy",
                &["subscription", "group_id", "reason"],
            )?,
            dead_lettered_messages: counter(
                r,
                "kafkaesk_dead_lettered_messages_total",
                "Failed records published to a dead-letter stream",
                &["subscription", "group_id", "dead_letter_stream"],
            )?,
            retried_later_messages: counter(
                r,
                "kafkaesk_retry_stream_messages_total",
                "Failed records moved to a retry stream, to run again once due",
                &["subscription", "group_id", "retry_stream"],
            )?,
            fetch_errors: counter(
                r,
                "kafkaesk_consumer_fetch_errors_total",
                "Errors librdkafka reported in place of records (a batch it cannot read)",
                &["subscription", "group_id", "error"],
            )?,
            client_errors: counter(
                r,
                "kafkaesk_kafka_client_errors_total",
                "Errors librdkafka reported about its connections (a broker lost, a request timed out); it retries through them",
                &["client", "error"],
            )?,
            oldest_unfinished: registered(
                r,
                GaugeVec::new(
                    Opts::new(
                        "kafkaesk_consumer_oldest_unfinished_seconds",
                        "How long a partition has waited on its oldest record fetched and not settled",
                    ),
                    &["subscription", "stream_id", "partition"],
                )?,
            )?,
            log_queues,
            publish_series: publish::SeriesByTopic::default(),
            registry,
        })
    }
}

/// The `error` label of a failed Kafka request: librdkafka's error code
/// (`MessageTimedOut`).
pub(crate) fn kafka_error_label(err: &rdkafka::error::KafkaError) -> String {
    match err.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => GENERAL_ERROR.to_owned(),
    }
}

/// A partition number as a label value.
fn partition_label(partition: i32) -> String {
    partition.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exposed_with_python_names() {
        let metrics = Metrics::new();
        metrics.kafka_action("producer_start", Duration::from_millis(3), true);
        let text = metrics.encode();
        assert!(
            text.contains(r#"kafkaesk_kafka_action_total{error="none",type="producer_start"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kafkaesk_kafka_action_time_bucket{type="producer_start",le="0.005"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"le="0.075""#),
            "Python's default buckets: {text}"
        );
    }

    #[test]
    fn two_metrics_cannot_share_a_registry() {
        let registry = Registry::new();
        Metrics::registered_in(&registry).unwrap();
        assert!(Metrics::registered_in(&registry).is_err());
    }
}
