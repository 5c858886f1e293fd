//! The series publishing records into: per topic as messages are queued, per
//! partition as their delivery reports come.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter, IntGauge};

use super::{partition_label, Families, NO_ERROR};
use crate::sync::{lock, read_lock, write_lock};

/// One topic's publish series, looked up once per topic.
pub(crate) struct PublishSeries {
    families: Arc<Families>,
    topic: Arc<str>,
    queued: IntCounter,
    queue_time: Histogram,
}

impl PublishSeries {
    /// The full topic name.
    pub(crate) fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// A message was queued after `elapsed`.
    pub(crate) fn queued(&self, elapsed: Duration) {
        self.queued.inc();
        self.queue_time.observe(elapsed.as_secs_f64());
    }

    /// A message could not be queued; `error` names why.
    pub(crate) fn refused(&self, error: &str) {
        self.families
            .publish_messages
            .with_label_values(&[&self.topic, error])
            .inc();
    }
}

/// Publish series by topic.
#[derive(Default)]
pub(super) struct SeriesByTopic(RwLock<HashMap<Arc<str>, Arc<PublishSeries>>>);

impl SeriesByTopic {
    pub(super) fn get(&self, families: &Arc<Families>, topic: &Arc<str>) -> Arc<PublishSeries> {
        if let Some(series) = read_lock(&self.0).get(&**topic) {
            return series.clone();
        }
        let label: &str = topic;
        let series = Arc::new(PublishSeries {
            families: families.clone(),
            topic: topic.clone(),
            queued: families
                .publish_messages
                .with_label_values(&[label, NO_ERROR]),
            queue_time: families.publish_messages_time.with_label_values(&[label]),
        });
        write_lock(&self.0)
            .entry(topic.clone())
            .or_insert(series)
            .clone()
    }
}

/// What a producer's delivery reports record into. Reports come on
/// librdkafka's polling thread, one at a time, so the lock is uncontended.
pub(crate) struct DeliveryMetrics {
    families: Arc<Families>,
    /// Looked up once per delivery, on librdkafka's polling thread; topic
    /// names come from the application, not from peers, so a fast hasher is
    /// safe here.
    topics: Mutex<HashMap<String, TopicDeliveries, foldhash::fast::RandomState>>,
    /// Deliveries slower than [`SLOW_DELIVERY`] since the last warning, and
    /// when that was.
    slow: Mutex<(u64, Option<Instant>)>,
}

/// A delivery this slow is logged: the leader was lost or cut off, and
/// librdkafka waited for the request to time out or the leader to move.
const SLOW_DELIVERY: Duration = Duration::from_secs(5);
/// At most one slow-delivery warning this often, with the count since.
const SLOW_WARNING_EVERY: Duration = Duration::from_secs(10);

struct TopicDeliveries {
    time: Histogram,
    /// Per partition: delivered messages and the last offset.
    partitions: Vec<Option<(IntCounter, IntGauge)>>,
}

impl TopicDeliveries {
    /// Counts a message of `topic` stored at `partition` and `offset`.
    fn record(
        &mut self,
        families: &Families,
        topic: &str,
        partition: i32,
        offset: i64,
        latency: Duration,
    ) {
        let Ok(index) = usize::try_from(partition) else {
            return;
        };
        if self.partitions.len() <= index {
            self.partitions.resize(index + 1, None);
        }
        let (delivered, last_offset) = self.partitions[index].get_or_insert_with(|| {
            let partition = partition_label(partition);
            (
                families
                    .published_messages
                    .with_label_values(&[topic, &partition, NO_ERROR]),
                families
                    .produced_topic_offset
                    .with_label_values(&[topic, &partition]),
            )
        });
        delivered.inc();
        // Unknown (-1) when nothing acknowledged it (`AckPolicy::None`).
        if offset >= 0 {
            last_offset.set(offset);
        }
        self.time.observe(latency.as_secs_f64());
    }
}

impl DeliveryMetrics {
    pub(super) fn new(families: Arc<Families>) -> Self {
        DeliveryMetrics {
            families,
            topics: Mutex::new(HashMap::default()),
            slow: Mutex::new((0, None)),
        }
    }

    /// Logs a delivery slower than [`SLOW_DELIVERY`], at most once every
    /// [`SLOW_WARNING_EVERY`]: librdkafka retries through a lost leader
    /// without an error, so without this a stalled partition is silent.
    fn slow(&self, topic: &str, partition: i32, latency: Duration) {
        let mut slow = lock(&self.slow);
        slow.0 += 1;
        if slow.1.is_some_and(|at| at.elapsed() < SLOW_WARNING_EVERY) {
            return;
        }
        tracing::warn!(
            topic,
            partition,
            latency = ?latency,
            slow_deliveries = slow.0,
            "a publish waited {latency:.1?} for the broker's acknowledgement (a lost or \
             unreachable leader?); kafkaesk_published_messages_time has the distribution"
        );
        *slow = (0, Some(Instant::now()));
    }

    /// A message of `topic` was stored at `partition` and `offset`,
    /// `latency` after it was queued.
    pub(crate) fn delivered(&self, topic: &str, partition: i32, offset: i64, latency: Duration) {
        if partition < 0 {
            return;
        }
        if latency >= SLOW_DELIVERY {
            self.slow(topic, partition, latency);
        }
        let mut topics = lock(&self.topics);
        if let Some(deliveries) = topics.get_mut(topic) {
            deliveries.record(&self.families, topic, partition, offset, latency);
            return;
        }
        let time = self
            .families
            .published_messages_time
            .with_label_values(&[topic]);
        topics
            .entry(topic.to_owned())
            .or_insert(TopicDeliveries {
                time,
                partitions: Vec::new(),
            })
            .record(&self.families, topic, partition, offset, latency);
    }

    /// A message of `topic` failed; `error` names why. Python labels the
    /// partition of a failure `-1`.
    pub(crate) fn failed(&self, topic: &str, error: &str) {
        self.families
            .published_messages
            .with_label_values(&[topic, "-1", error])
            .inc();
    }
}
