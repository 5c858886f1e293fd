//! Topic management: names and creation through the admin API.
//!
//! kafkaesk never relies on broker-side auto-creation, which many clusters
//! disable. Before the first publish to a topic, and for every stream a schema
//! names, the topic is created with the application's partitions and
//! replication factor and the schema's retention (`retention.ms`). Existence
//! is cached, and concurrent first publishes create a topic once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::observe::metrics::{Metrics, PublishSeries};
use crate::sync::{lock, read_lock, write_lock};

/// How long a created topic's partition leaders may take to serve it.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(15);
/// One metadata or offsets request while waiting for them.
const LEADER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks a full topic name against Kafka's rules, so a bad stream name fails
/// with a message instead of a broker error code.
pub(crate) fn validate_topic_name(topic: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::Topic {
            topic: topic.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if topic.is_empty() {
        return fail("topic name is empty");
    }
    if topic.len() > 249 {
        return fail("topic names are at most 249 characters");
    }
    if topic == "." || topic == ".." {
        return fail("topic name cannot be `.` or `..`");
    }
    if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return fail("topic names may only contain ASCII letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

/// Creates topics on demand and remembers which exist.
pub(crate) struct TopicManager {
    admin: Arc<AdminClient<DefaultClientContext>>,
    partitions: i32,
    replication_factor: i32,
    known: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    /// Streams whose topic exists, with the full topic name and its publish
    /// metrics: what every publish after the first looks up, once, without
    /// locking `known` or allocating the name again.
    /// Stream names come from the application, so a fast hasher is safe.
    ready_streams: RwLock<HashMap<String, Arc<PublishSeries>, foldhash::fast::RandomState>>,
    request_timeout: Duration,
    metrics: Metrics,
    /// Partition counts of topics that partitioners asked about.
    partition_counts: RwLock<HashMap<Arc<str>, Arc<TopicPartitions>>>,
}

/// How a stream is created by [`Application::create_stream`](crate::Application::create_stream):
/// partitions, replication, retention, compaction and any other topic
/// configuration. Unset, partitions and replication are the application's.
///
/// ```
/// use std::time::Duration;
/// use kafkaesk::admin::StreamOptions;
///
/// let options = StreamOptions::new()
///     .partitions(3)
///     .retention(Duration::from_secs(7 * 86400))
///     .retention_bytes(1 << 30)
///     .compacted()
///     .config("min.insync.replicas", "1");
/// assert_eq!(options.get_config("cleanup.policy"), Some("compact"));
/// assert_eq!(options.get_config("retention.bytes"), Some("1073741824"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    configs: Vec<(String, String)>,
}

impl StreamOptions {
    /// The application's partitions and replication, the broker's defaults
    /// for the rest.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many partitions.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// How many copies of each partition.
    pub fn replication_factor(mut self, factor: i32) -> Self {
        self.replication_factor = Some(factor);
        self
    }

    /// Deletes records older than this (`retention.ms`).
    pub fn retention(self, retention: Duration) -> Self {
        self.config("retention.ms", retention.as_millis().to_string())
    }

    /// Deletes the oldest records beyond this many bytes per partition
    /// (`retention.bytes`).
    pub fn retention_bytes(self, bytes: u64) -> Self {
        self.config("retention.bytes", bytes.to_string())
    }

    /// Keeps only the last record of each key (`cleanup.policy=compact`).
    pub fn compacted(self) -> Self {
        self.config("cleanup.policy", "compact")
    }

    /// Any other topic configuration; a later value of the same key wins.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.configs.retain(|(k, _)| *k != key);
        self.configs.push((key, value.into()));
        self
    }

    /// The value `key` is set to, if any.
    pub fn get_config(&self, key: &str) -> Option<&str> {
        self.configs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// How long a topic's partition count is trusted before it is asked again:
/// partitions can be added to a topic while it is used.
const PARTITION_COUNT_TTL: Duration = Duration::from_secs(60);

/// A topic's partition count, and its round-robin position.
pub(crate) struct TopicPartitions {
    count: i32,
    next: AtomicU32,
    fetched: std::time::Instant,
}

impl TopicPartitions {
    pub(crate) fn count(&self) -> i32 {
        self.count
    }

    /// The next partition in turn.
    pub(crate) fn next_round_robin(&self) -> i32 {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        // The count is positive, so the remainder fits in an i32.
        (turn % self.count as u32) as i32
    }
}

impl TopicManager {
    /// The admin client, for metadata requests that must not create a topic.
    pub(crate) fn admin(&self) -> Arc<AdminClient<DefaultClientContext>> {
        self.admin.clone()
    }

    pub(crate) fn new(
        admin: AdminClient<DefaultClientContext>,
        partitions: i32,
        replication_factor: i32,
        metrics: Metrics,
    ) -> Self {
        TopicManager {
            admin: Arc::new(admin),
            partitions,
            replication_factor,
            known: Mutex::new(HashMap::new()),
            ready_streams: RwLock::new(HashMap::default()),
            request_timeout: Duration::from_secs(30),
            metrics,
            partition_counts: RwLock::new(HashMap::new()),
        }
    }

    /// `topic`'s partition count, if known and recent.
    pub(crate) fn cached_partitions(&self, topic: &str) -> Option<Arc<TopicPartitions>> {
        read_lock(&self.partition_counts)
            .get(topic)
            .filter(|p| p.fetched.elapsed() < PARTITION_COUNT_TTL)
            .cloned()
    }

    /// Remembers that `topic` has `count` partitions, keeping its
    /// round-robin position.
    pub(crate) fn remember_partitions(&self, topic: &Arc<str>, count: usize) {
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        let mut known = write_lock(&self.partition_counts);
        let next = known
            .get(topic)
            .map_or(0, |old| old.next.load(Ordering::Relaxed));
        let fresh = Arc::new(TopicPartitions {
            count,
            next: AtomicU32::new(next),
            fetched: std::time::Instant::now(),
        });
        known.insert(topic.clone(), fresh);
    }

    /// The topic of `stream`, with its publish metrics, if it is known to
    /// exist.
    pub(crate) fn ready_stream(&self, stream: &str) -> Option<Arc<PublishSeries>> {
        read_lock(&self.ready_streams).get(stream).cloned()
    }

    /// Makes sure the topic of `stream` exists, and remembers it for
    /// [`ready_stream`](Self::ready_stream).
    pub(crate) async fn ensure_stream(
        &self,
        stream: &str,
        topic: String,
        retention: Option<Duration>,
    ) -> Result<Arc<PublishSeries>> {
        self.ensure(&topic, retention).await?;
        let series = self.metrics.publishing(&Arc::from(topic));
        let mut ready = write_lock(&self.ready_streams);
        Ok(ready.entry(stream.to_owned()).or_insert(series).clone())
    }

    /// Makes sure `topic` exists, creating it once with `retention` if needed.
    pub(crate) async fn ensure(&self, topic: &str, retention: Option<Duration>) -> Result<()> {
        let cell = {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cell) = known.get(topic) {
                if cell.initialized() {
                    return Ok(());
                }
                cell.clone()
            } else {
                let cell = Arc::new(OnceCell::new());
                known.insert(topic.to_owned(), cell.clone());
                cell
            }
        };
        // A failed creation leaves the cell empty, so the next publish tries again.
        cell.get_or_try_init(|| self.create(topic, retention))
            .await
            .map(|_| ())
    }

    async fn create(&self, topic: &str, retention: Option<Duration>) -> Result<()> {
        let mut options = StreamOptions::new();
        if let Some(retention) = retention {
            options = options.retention(retention);
        }
        self.create_with(topic, &options, false).await
    }

    /// Creates `topic` with `options` (the application's partitions and
    /// replication factor where they name none). An existing topic is fine
    /// unless `exclusive`.
    pub(crate) async fn create_with(
        &self,
        topic: &str,
        options: &StreamOptions,
        exclusive: bool,
    ) -> Result<()> {
        validate_topic_name(topic)?;
        let partitions = options.partitions.unwrap_or(self.partitions);
        let mut new_topic = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(
                options
                    .replication_factor
                    .unwrap_or(self.replication_factor),
            ),
        );
        for (key, value) in &options.configs {
            new_topic = new_topic.set(key, value);
        }
        let opts = AdminOptions::new().request_timeout(Some(self.request_timeout));
        let request = self.admin.create_topics([&new_topic], &opts);
        let results = self
            .metrics
            .time_kafka_action("sync_create_topics", request)
            .await
            .map_err(|err| Error::Topic {
                topic: topic.to_owned(),
                reason: format!("create request failed: {err}"),
            })?;
        for result in results {
            match result {
                Ok(_) => tracing::debug!(topic, partitions, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if exclusive => {
                    return Err(Error::Topic {
                        topic: topic.to_owned(),
                        reason: "it already exists".to_owned(),
                    })
                }
                // Perhaps created a moment ago by another process: its
                // leaders may not serve yet either.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    // Without the right to create, the topic may still exist.
                    if self.exists(topic).await {
                        return Ok(());
                    }
                    return Err(Error::Topic {
                        topic: topic.to_owned(),
                        reason: format!(
                            "cannot create it ({code}); create it by hand or grant the \
                             CREATE permission"
                        ),
                    });
                }
            }
        }
        self.wait_for_leaders(topic).await;
        Ok(())
    }

    /// Waits, at most [`LEADERS_TIMEOUT`], until the leader of every
    /// partition of `topic` answers for it.
    ///
    /// A creation returns once the controller stored the topic; each broker
    /// learns of it a little later. On a cluster, a first publish may meet a
    /// leader that does not serve the partition yet and fail with "not
    /// leader" while the next publish, already in flight, succeeds: the
    /// broker takes any first sequence number from a producer it has no
    /// state for, and librdkafka's idempotent producer then counts the
    /// failed message as stored ("implicitly acked by subsequent batch
    /// success"), reporting offset -1001 for a record no broker has. Seen
    /// on three brokers (`tests/cluster`). So nothing is published to a
    /// topic kafkaesk created before its leaders answer.
    async fn wait_for_leaders(&self, topic: &str) {
        let admin = self.admin.clone();
        let topic = topic.to_owned();
        let waited = tokio::task::spawn_blocking(move || {
            let client = admin.inner();
            let started = std::time::Instant::now();
            loop {
                let ready = client
                    .fetch_metadata(Some(&topic), LEADER_PROBE_TIMEOUT)
                    .ok()
                    .and_then(|metadata| {
                        let found = metadata.topics().iter().find(|t| t.name() == topic)?;
                        let partitions = found.partitions();
                        let led = !partitions.is_empty()
                            && partitions
                                .iter()
                                .all(|p| p.leader() >= 0 && p.error().is_none());
                        // A leader answers a partition's offsets only once it serves it.
                        let serving = led
                            && partitions.iter().all(|p| {
                                client
                                    .fetch_watermarks(&topic, p.id(), LEADER_PROBE_TIMEOUT)
                                    .is_ok()
                            });
                        Some(serving)
                    })
                    .unwrap_or(false);
                if ready || started.elapsed() >= LEADERS_TIMEOUT {
                    return (ready, topic, started.elapsed());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await;
        if let Ok((false, topic, waited)) = waited {
            tracing::warn!(
                topic,
                waited = ?waited,
                "the topic's partition leaders did not all answer in time; publishing anyway"
            );
        }
    }

    /// Deletes `topic`, and forgets that it existed.
    pub(crate) async fn delete(&self, stream: &str, topic: &str) -> Result<()> {
        let opts = AdminOptions::new().request_timeout(Some(self.request_timeout));
        let results = self
            .admin
            .delete_topics(&[topic], &opts)
            .await
            .map_err(|err| Error::Topic {
                topic: topic.to_owned(),
                reason: format!("delete request failed: {err}"),
            })?;
        lock(&self.known).remove(topic);
        write_lock(&self.ready_streams).remove(stream);
        write_lock(&self.partition_counts).remove(topic);
        for result in results {
            if let Err((_, code)) = result {
                return Err(Error::Topic {
                    topic: topic.to_owned(),
                    reason: format!("cannot delete it ({code})"),
                });
            }
        }
        Ok(())
    }

    async fn exists(&self, topic: &str) -> bool {
        let admin = self.admin.clone();
        let topic = topic.to_owned();
        let timeout = self.request_timeout;
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(Some(&topic), timeout)
                .map(|md| {
                    md.topics()
                        .iter()
                        .any(|t| t.name() == topic && t.error().is_none())
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_checked() {
        assert!(validate_topic_name("content.edited-1_x").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
