//! The log-shipping queues' depth and drops, read from the queues when the
//! registry is gathered, so logging itself records nothing twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::sync::lock;

/// What a log queue tells the metrics.
pub(crate) trait LogQueueStats: Send + Sync {
    /// The stream it ships to.
    fn stream(&self) -> &str;
    /// Records queued and not yet shipped or failed.
    fn depth(&self) -> u64;
    /// Records dropped so far.
    fn dropped(&self) -> u64;
}

/// The collector of every watched log queue.
#[derive(Clone)]
pub(super) struct LogQueues {
    depth: IntGaugeVec,
    dropped: IntCounterVec,
    queues: Arc<Mutex<Vec<Weak<dyn LogQueueStats>>>>,
}

impl LogQueues {
    pub(super) fn new() -> prometheus::Result<Self> {
        Ok(LogQueues {
            depth: IntGaugeVec::new(
                Opts::new(
                    "kafkaesk_log_queue_depth",
                    "Log records queued for shipping and not yet shipped",
                ),
                &["stream"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "kafkaesk_log_records_dropped_total",
                    "Log records dropped because the shipping queue was full",
                ),
                &["stream"],
            )?,
            queues: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub(super) fn watch(&self, queue: Weak<dyn LogQueueStats>) {
        lock(&self.queues).push(queue);
    }
}

impl Collector for LogQueues {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.depth.desc();
        descs.extend(self.dropped.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Per stream: several layers may ship to one stream.
        let mut streams: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        {
            let mut queues = lock(&self.queues);
            queues.retain(|queue| queue.strong_count() > 0);
            for queue in queues.iter().filter_map(Weak::upgrade) {
                let entry = streams.entry(queue.stream().to_owned()).or_default();
                entry.0 += queue.depth();
                entry.1 += queue.dropped();
            }
        }
        self.depth.reset();
        self.dropped.reset();
        for (stream, (depth, dropped)) in &streams {
            self.depth
                .with_label_values(&[stream])
                .set(i64::try_from(*depth).unwrap_or(i64::MAX));
            self.dropped.with_label_values(&[stream]).inc_by(*dropped);
        }
        let mut families = self.depth.collect();
        families.extend(self.dropped.collect());
        families
    }
}
