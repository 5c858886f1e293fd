//! Stream administration and cluster metadata: Liftbridge's `CreateStream`,
//! `DeleteStream` and `FetchMetadata`, for Kafka topics.
//!
//! ```no_run
//! # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
//! use std::time::Duration;
//! use kafkaesk::admin::StreamOptions;
//!
//! app.create_stream("accounts", StreamOptions::new().partitions(3).compacted()).await?;
//! let cluster = app.cluster_metadata().await?;
//! for stream in &cluster.streams {
//!     for p in &stream.partitions {
//!         println!("{}[{}] leader {} holds offsets {}..{}", stream.topic, p.id, p.leader, p.low, p.high);
//!     }
//! }
//! for lag in app.group_lag("accounts-projector", "accounts").await? {
//!     println!("partition {}: committed {:?}, lag {}", lag.partition, lag.committed, lag.lag);
//! }
//! app.delete_stream("accounts").await?;
//! # Ok(()) }
//! ```
//!
//! [`stream_configs`](Application::stream_configs) reads the streams'
//! retention and cleanup policy; [`consumer_groups`](Application::consumer_groups)
//! lists the broker's groups and [`group_streams`](Application::group_streams)
//! where a group is in every stream it committed offsets on (what
//! `kafkaesk groups` prints).
//!
//! The controller comes from the DescribeCluster request (Kafka 2.8 and
//! later, and tansu): librdkafka's metadata does not name it.

pub use crate::kafka::topics::StreamOptions;

use crate::native::controller;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use crate::app::Application;
use crate::error::{Error, Result};
use crate::kafka::partition_end::{self, EndReader};

/// How long a metadata or offsets request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Its node id.
    pub id: i32,
    /// The host it advertises.
    pub host: String,
    /// The port it advertises.
    pub port: i32,
}

/// One partition of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition number.
    pub id: i32,
    /// The broker leading it (-1: none).
    pub leader: i32,
    /// The brokers holding a copy.
    pub replicas: Vec<i32>,
    /// The copies in sync with the leader.
    pub in_sync_replicas: Vec<i32>,
    /// The first offset still stored.
    pub low: i64,
    /// The offset the next record gets.
    pub high: i64,
}

/// A stream (a topic under the application's prefix) and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream's name: the topic without the prefix.
    pub stream: String,
    /// The full topic name.
    pub topic: String,
    /// Its partitions, in order.
    pub partitions: Vec<PartitionInfo>,
}

/// The brokers, and the streams under the application's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Every broker.
    pub brokers: Vec<BrokerInfo>,
    /// The node id of the broker that is the cluster's controller, when the
    /// broker answers DescribeCluster and names one.
    pub controller: Option<i32>,
    /// Every topic under the prefix, by name.
    pub streams: Vec<StreamInfo>,
}

/// Where a group is in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next it reads), if it has one.
    pub committed: Option<i64>,
    /// The partition's end.
    pub high: i64,
    /// Records between the commit (or the partition's start) and the end.
    pub lag: i64,
}

/// A stream's retention and cleanup, as its topic's configuration says
/// (the topic's own value or the broker's default). `None`: the broker did
/// not report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The stream's name: the topic without the prefix.
    pub stream: String,
    /// The full topic name.
    pub topic: String,
    /// `retention.ms`: how long records are kept; -1 is forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: how many bytes a partition keeps; -1 is no limit.
    pub retention_bytes: Option<i64>,
    /// `cleanup.policy`: `delete`, `compact` or `compact,delete`.
    pub cleanup_policy: Option<String>,
}

/// A consumer group the broker knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroup {
    /// The group id.
    pub name: String,
    /// What the broker says of it, e.g. `Stable`, `Empty` (may be empty).
    pub state: String,
    /// `consumer` for Kafka consumers; empty for groups that only commit.
    pub protocol_type: String,
    /// How many members it has now.
    pub members: usize,
}

/// Where a consumer group is in one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLag {
    /// The stream's name: the topic without the prefix.
    pub stream: String,
    /// The full topic name.
    pub topic: String,
    /// Every partition of the stream, in order, committed to or not.
    pub partitions: Vec<PartitionLag>,
}

impl StreamLag {
    /// Records between the group's commits and the ends, over all partitions.
    pub fn total_lag(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }
}

impl Application {
    /// Creates `stream` with `options`; fails with [`Error::Topic`] when it
    /// exists already. See [`StreamOptions`].
    pub async fn create_stream(&self, stream: &str, options: StreamOptions) -> Result<()> {
        let topic = self.settings().topic(stream);
        let clients = self.connection().clients().await?;
        clients.topics.create_with(&topic, &options, true).await
    }

    /// Deletes `stream` and every record in it.
    pub async fn delete_stream(&self, stream: &str) -> Result<()> {
        let topic = self.settings().topic(stream);
        let clients = self.connection().clients().await?;
        clients.topics.delete(stream, &topic).await
    }

    /// The brokers, and every stream under the application's prefix with its
    /// partitions' leaders, replicas and watermarks.
    pub async fn cluster_metadata(&self) -> Result<ClusterMetadata> {
        let metadata = self.connection().metadata(None, REQUEST_TIMEOUT).await?;
        let prefix = self.settings().topic_prefix.clone();
        let brokers = metadata
            .brokers()
            .iter()
            .map(|b| BrokerInfo {
                id: b.id(),
                host: b.host().to_owned(),
                port: b.port(),
            })
            .collect();
        let mut streams: Vec<StreamInfo> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && t.name().starts_with(&prefix))
            .map(|t| StreamInfo {
                stream: t.name()[prefix.len()..].to_owned(),
                topic: t.name().to_owned(),
                partitions: t
                    .partitions()
                    .iter()
                    .map(|p| PartitionInfo {
                        id: p.id(),
                        leader: p.leader(),
                        replicas: p.replicas().to_vec(),
                        in_sync_replicas: p.isr().to_vec(),
                        low: 0,
                        high: 0,
                    })
                    .collect(),
            })
            .collect();
        let consumer = self.offsets_consumer("kafkaesk-metadata")?;
        let (controller, streams) = tokio::task::spawn_blocking(move || -> Result<_> {
            // Brokers older than Kafka 2.8 do not know the request: the rest
            // of the metadata still stands.
            let controller = match controller::controller(&consumer, REQUEST_TIMEOUT) {
                Ok(controller) => controller,
                Err(err) => {
                    tracing::debug!(error = %err, "no controller: DescribeCluster failed");
                    None
                }
            };
            for stream in &mut streams {
                stream.partitions.sort_by_key(|p| p.id);
                for partition in &mut stream.partitions {
                    let (low, high) =
                        consumer.fetch_watermarks(&stream.topic, partition.id, REQUEST_TIMEOUT)?;
                    partition.low = low;
                    partition.high = high;
                }
            }
            streams.sort_by(|a, b| a.topic.cmp(&b.topic));
            Ok((controller, streams))
        })
        .await
        .map_err(|_| Error::Stopped)??;
        Ok(ClusterMetadata {
            brokers,
            controller,
            streams,
        })
    }

    /// Where consumer `group` is in each partition of `stream`, and how far
    /// behind the end.
    pub async fn group_lag(&self, group: &str, stream: &str) -> Result<Vec<PartitionLag>> {
        let topic = self.settings().topic(stream);
        let count = self.connection().partition_count(&topic, "stream").await?;
        let consumer = self.offsets_consumer(group)?;
        tokio::task::spawn_blocking(move || {
            let mut partitions = TopicPartitionList::new();
            for partition in 0..count {
                partitions.add_partition(&topic, i32::try_from(partition).unwrap_or(i32::MAX));
            }
            let committed = consumer.committed_offsets(partitions, REQUEST_TIMEOUT)?;
            let mut lags = Vec::new();
            for elem in committed.elements() {
                let (low, high) =
                    consumer.fetch_watermarks(&topic, elem.partition(), REQUEST_TIMEOUT)?;
                let committed = match elem.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                };
                lags.push(PartitionLag {
                    partition: elem.partition(),
                    committed,
                    high,
                    lag: (high - committed.unwrap_or(low)).max(0),
                });
            }
            lags.sort_by_key(|lag| lag.partition);
            Ok(lags)
        })
        .await
        .map_err(|_| Error::Stopped)?
    }

    /// The retention and cleanup policy of each stream, in the order given.
    /// A stream that does not exist, or whose configuration the broker
    /// refuses to give, is an [`Error::Topic`].
    pub async fn stream_configs<S: AsRef<str>>(
        &self,
        streams: impl IntoIterator<Item = S>,
    ) -> Result<Vec<StreamConfig>> {
        let settings = self.settings();
        let topics: Vec<(String, String)> = streams
            .into_iter()
            .map(|s| (s.as_ref().to_owned(), settings.topic(s.as_ref())))
            .collect();
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        // Some brokers (tansu) describe a topic that does not exist as one
        // without configuration, so existence is checked first.
        let metadata = self.connection().metadata(None, REQUEST_TIMEOUT).await?;
        if let Some((_, topic)) = topics.iter().find(|(_, topic)| {
            !metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none())
        }) {
            return Err(Error::Topic {
                topic: topic.clone(),
                reason: "the stream does not exist".to_owned(),
            });
        }
        let admin: AdminClient<DefaultClientContext> = settings.admin_config()?.create()?;
        let specifiers: Vec<ResourceSpecifier<'_>> = topics
            .iter()
            .map(|(_, topic)| ResourceSpecifier::Topic(topic))
            .collect();
        let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
        let results = admin
            .describe_configs(&specifiers, &options)
            .await
            .map_err(|err| Error::Topic {
                topic: topics
                    .iter()
                    .map(|(_, t)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                reason: format!("cannot describe its configuration: {err}"),
            })?;
        // librdkafka answers each resource in the order asked.
        topics
            .into_iter()
            .zip(results)
            .map(|((stream, topic), result)| {
                let resource = result.map_err(|code| Error::Topic {
                    topic: topic.clone(),
                    reason: format!("cannot describe its configuration ({code})"),
                })?;
                let entries: HashMap<&str, Option<&str>> = resource
                    .entries
                    .iter()
                    .map(|e| (e.name.as_str(), e.value.as_deref()))
                    .collect();
                let number = |key: &str| {
                    entries
                        .get(key)
                        .copied()
                        .flatten()
                        .and_then(|v| v.trim().parse().ok())
                };
                Ok(StreamConfig {
                    retention_ms: number("retention.ms"),
                    retention_bytes: number("retention.bytes"),
                    cleanup_policy: entries
                        .get("cleanup.policy")
                        .copied()
                        .flatten()
                        .map(str::to_owned),
                    stream,
                    topic,
                })
            })
            .collect()
    }

    /// Every consumer group the broker knows, by name.
    pub async fn consumer_groups(&self) -> Result<Vec<ConsumerGroup>> {
        let consumer = self.offsets_consumer("kafkaesk-groups")?;
        tokio::task::spawn_blocking(move || {
            let list = consumer.fetch_group_list(None, REQUEST_TIMEOUT)?;
            let mut groups: Vec<ConsumerGroup> = list
                .groups()
                .iter()
                .map(|g| ConsumerGroup {
                    name: g.name().to_owned(),
                    state: g.state().to_owned(),
                    protocol_type: g.protocol_type().to_owned(),
                    members: g.members().len(),
                })
                .collect();
            groups.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(groups)
        })
        .await
        .map_err(|_| Error::Stopped)?
    }

    /// Where consumer `group` is in every stream under the prefix that it
    /// committed an offset on (in any partition), by stream name. Streams it
    /// never committed on are left out.
    pub async fn group_streams(&self, group: &str) -> Result<Vec<StreamLag>> {
        let metadata = self.connection().metadata(None, REQUEST_TIMEOUT).await?;
        let prefix = self.settings().topic_prefix.clone();
        let mut asked = TopicPartitionList::new();
        for topic in metadata.topics() {
            if topic.error().is_some() || !topic.name().starts_with(&prefix) {
                continue;
            }
            for partition in topic.partitions() {
                asked.add_partition(topic.name(), partition.id());
            }
        }
        if asked.count() == 0 {
            return Ok(Vec::new());
        }
        let consumer = self.offsets_consumer(group)?;
        tokio::task::spawn_blocking(move || {
            let committed = consumer.committed_offsets(asked, REQUEST_TIMEOUT)?;
            let mut by_topic: HashMap<String, Vec<(i32, Option<i64>)>> = HashMap::new();
            for elem in committed.elements() {
                let offset = match elem.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                };
                by_topic
                    .entry(elem.topic().to_owned())
                    .or_default()
                    .push((elem.partition(), offset));
            }
            let mut streams = Vec::new();
            for (topic, partitions) in by_topic {
                if partitions.iter().all(|(_, offset)| offset.is_none()) {
                    continue;
                }
                let mut lags = Vec::with_capacity(partitions.len());
                for (partition, committed) in partitions {
                    let (low, high) =
                        consumer.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)?;
                    lags.push(PartitionLag {
                        partition,
                        committed,
                        high,
                        lag: (high - committed.unwrap_or(low)).max(0),
                    });
                }
                lags.sort_by_key(|lag| lag.partition);
                streams.push(StreamLag {
                    stream: topic[prefix.len()..].to_owned(),
                    topic,
                    partitions: lags,
                });
            }
            streams.sort_by(|a, b| a.topic.cmp(&b.topic));
            Ok(streams)
        })
        .await
        .map_err(|_| Error::Stopped)?
    }

    /// A consumer in `group` that only asks for offsets: it never joins the
    /// group nor commits.
    fn offsets_consumer(&self, group: &str) -> Result<EndReader> {
        Ok(partition_end::reader(
            &self.settings().reader_config(group)?,
        )?)
    }
}
