//! The series one subscription's consumer records into.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::local::LocalHistogram;
use prometheus::{Histogram, IntCounter, IntGauge};

use super::{partition_label, Families, NO_ERROR};
use crate::sync::lock;

/// What the consumer of one subscription records into. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ConsumerMetrics {
    inner: Arc<ConsumerSeries>,
}

struct ConsumerSeries {
    families: Arc<Families>,
    subscription: String,
    group: String,
    health: IntGauge,
    retries: IntCounter,
    /// The partitions seen so far; a consumer has few, so they are searched
    /// in order.
    partitions: Mutex<Vec<PartitionSeries>>,
}

/// One partition's series, looked up once.
struct PartitionSeries {
    topic: Arc<str>,
    partition: i32,
    handled: IntCounter,
    batch_size: Histogram,
    /// Lead times of the batch being recorded, added to the shared
    /// histogram when it ends: one atomic update a batch, not four a record.
    lead_time: LocalHistogram,
    offset: IntGauge,
    /// `kafkaesk_consumed_message_elapsed_time` of batches starting here,
    /// made by the first such batch.
    elapsed: Option<Histogram>,
    /// Records of the batch being recorded.
    in_batch: u64,
    /// Of those, the ones handled.
    handled_in_batch: u64,
    /// The offset of the batch's last record here.
    last_offset: i64,
}

impl ConsumerMetrics {
    pub(super) fn new(families: Arc<Families>, subscription: &str, group: &str) -> Self {
        ConsumerMetrics {
            inner: Arc::new(ConsumerSeries {
                health: families.consumer_health.with_label_values(&[group]),
                retries: families
                    .handler_retries
                    .with_label_values(&[subscription, group]),
                families,
                subscription: subscription.to_owned(),
                group: group.to_owned(),
                partitions: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Sets `kafkaesk_consumer_health`.
    pub(crate) fn health(&self, running: bool) {
        self.inner.health.set(i64::from(running));
    }

    /// A partition was assigned (`event` `assigned`) or revoked (`revoked`).
    pub(crate) fn rebalanced(&self, topic: &str, partition: i32, event: &str) {
        let families = &self.inner.families;
        let label = partition_label(partition);
        families
            .consumer_rebalanced
            .with_label_values(&[&self.inner.group, &label, event])
            .inc();
        if event == "revoked" {
            // Another member reports this partition's lag now.
            let _ = families
                .consumer_lag
                .remove_label_values(&[&self.inner.group, topic, &label]);
        }
    }

    /// One batch's handlers took `elapsed`; Python labels it with the
    /// subscription and the batch's first partition.
    pub(crate) fn batch_elapsed(&self, topic: &Arc<str>, partition: i32, elapsed: Duration) {
        let mut partitions = lock(&self.inner.partitions);
        let index = series_index(&mut partitions, &self.inner, topic, partition, None);
        let series = &mut partitions[index];
        let metrics = &self.inner;
        series
            .elapsed
            .get_or_insert_with(|| {
                let python_partition = format!(
                    "TopicPartition(topic='{}', partition={partition})",
                    series.topic
                );
                metrics
                    .families
                    .consumed_message_elapsed_time
                    .with_label_values(&[
                        metrics.subscription.as_str(),
                        metrics.group.as_str(),
                        python_partition.as_str(),
                    ])
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Starts recording the settling of one batch.
    pub(crate) fn batch(&self) -> BatchRecorder<'_> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        BatchRecorder {
            metrics: &self.inner,
            partitions: lock(&self.inner.partitions),
            now_ms,
            last: None,
        }
    }

    /// A failed handler run is retried.
    pub(crate) fn retried(&self) {
        self.inner.retries.inc();
    }

    /// A record was skipped: `unhandled` (not decodable), `error_policy`, or
    /// `dead_letter_too_large` (its dead letter did not fit).
    pub(crate) fn skipped(&self, reason: &str) {
        self.inner
            .families
            .skipped_messages
            .with_label_values(&[&self.inner.subscription, &self.inner.group, reason])
            .inc();
    }

    /// librdkafka reported `error` in place of records.
    pub(crate) fn fetch_failed(&self, error: &rdkafka::error::KafkaError) {
        self.inner
            .families
            .fetch_errors
            .with_label_values(&[
                &self.inner.subscription,
                &self.inner.group,
                &super::kafka_error_label(error),
            ])
            .inc();
    }

    /// A failed record was published to `stream`.
    pub(crate) fn dead_lettered(&self, stream: &str) {
        self.inner
            .families
            .dead_lettered_messages
            .with_label_values(&[&self.inner.subscription, &self.inner.group, stream])
            .inc();
    }

    pub(crate) fn retried_later(&self, stream: &str) {
        self.inner
            .families
            .retried_later_messages
            .with_label_values(&[&self.inner.subscription, &self.inner.group, stream])
            .inc();
    }

    /// Sets how long a partition has waited on its oldest unsettled record.
    pub(crate) fn oldest_unfinished(&self, topic: &str, partition: i32, waited: Duration) {
        self.inner
            .families
            .oldest_unfinished
            .with_label_values(&[&self.inner.subscription, topic, &partition_label(partition)])
            .set(waited.as_secs_f64());
    }

    /// Removes a partition's oldest-unfinished gauge: it left the consumer.
    pub(crate) fn forget_oldest_unfinished(&self, topic: &str, partition: i32) {
        let partition = partition_label(partition);
        // An error only says that the series was never set.
        let _ = self.inner.families.oldest_unfinished.remove_label_values(&[
            &self.inner.subscription,
            topic,
            &partition,
        ]);
    }

    /// Sets a partition's lag.
    pub(crate) fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.inner
            .families
            .consumer_lag
            .with_label_values(&[&self.inner.group, topic, &partition_label(partition)])
            .set(lag);
    }
}

/// Records the records of one batch as they settle. What every record adds
/// to (counts, lead times, the offset) is gathered per partition and written
/// to the shared series once, when the recorder is dropped.
pub(crate) struct BatchRecorder<'a> {
    metrics: &'a ConsumerSeries,
    partitions: MutexGuard<'a, Vec<PartitionSeries>>,
    /// Now, in milliseconds since the epoch, as record timestamps are.
    now_ms: f64,
    /// The index of the last partition recorded: records come in runs.
    last: Option<usize>,
}

impl BatchRecorder<'_> {
    /// A record settled; `error` is [`NO_ERROR`] when it was handled.
    /// `timestamp` is its timestamp in milliseconds since the epoch.
    pub(crate) fn record(
        &mut self,
        topic: &Arc<str>,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        error: &str,
    ) {
        let index = self.index(topic, partition);
        let series = &mut self.partitions[index];
        series.in_batch += 1;
        series.last_offset = offset;
        if let Some(timestamp) = timestamp {
            // Clocks of producers and consumers differ; never negative.
            let lead = ((self.now_ms - timestamp as f64) / 1000.0).max(0.0);
            series.lead_time.observe(lead);
        }
        if error == NO_ERROR {
            series.handled_in_batch += 1;
        } else {
            self.metrics
                .families
                .consumed_messages
                .with_label_values(&[
                    &**topic,
                    &partition_label(partition),
                    error,
                    &self.metrics.group,
                ])
                .inc();
        }
    }

    fn index(&mut self, topic: &Arc<str>, partition: i32) -> usize {
        // Records come in runs of one partition, with the consumer's names.
        if let Some(last) = self.last.filter(|&i| {
            self.partitions
                .get(i)
                .is_some_and(|s| s.partition == partition && Arc::ptr_eq(&s.topic, topic))
        }) {
            return last;
        }
        let index = series_index(
            &mut self.partitions,
            self.metrics,
            topic,
            partition,
            self.last,
        );
        self.last = Some(index);
        index
    }
}

/// The index of the series of `topic` and `partition`, added if new; `last`
/// is tried first.
fn series_index(
    partitions: &mut Vec<PartitionSeries>,
    metrics: &ConsumerSeries,
    topic: &Arc<str>,
    partition: i32,
    last: Option<usize>,
) -> usize {
    // Records share their consumer's topic names, so the pointers match
    // first; the text is compared only for a name made elsewhere.
    let matches = |s: &PartitionSeries| {
        s.partition == partition && (Arc::ptr_eq(&s.topic, topic) || *s.topic == **topic)
    };
    if let Some(last) = last.filter(|&i| partitions.get(i).is_some_and(matches)) {
        return last;
    }
    if let Some(index) = partitions.iter().position(matches) {
        return index;
    }
    let families = &metrics.families;
    let group = metrics.group.as_str();
    let label = partition_label(partition);
    let consumed = [&**topic, group, label.as_str()];
    partitions.push(PartitionSeries {
        topic: topic.clone(),
        partition,
        handled: families
            .consumed_messages
            .with_label_values(&[&**topic, &label, NO_ERROR, group]),
        batch_size: families
            .consumed_messages_batch_size
            .with_label_values(&consumed),
        lead_time: families
            .message_lead_time
            .with_label_values(&consumed)
            .local(),
        offset: families
            .consumed_topic_offset
            .with_label_values(&[group, &label, &**topic]),
        elapsed: None,
        in_batch: 0,
        handled_in_batch: 0,
        last_offset: 0,
    });
    partitions.len() - 1
}

impl Drop for BatchRecorder<'_> {
    fn drop(&mut self) {
        for series in self.partitions.iter_mut().filter(|s| s.in_batch > 0) {
            series.batch_size.observe(series.in_batch as f64);
            series.handled.inc_by(series.handled_in_batch);
            series.offset.set(series.last_offset);
            series.lead_time.flush();
            series.in_batch = 0;
            series.handled_in_batch = 0;
        }
    }
}
