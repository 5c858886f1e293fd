//! Stream administration and cluster metadata: Liftbridge's `CreateStream`,
//! `DeleteStream` and `FetchMetadata`, for Kafka topics.
//!
//! ```no_run
//! # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
//! use std::time::Duration;
//! use kafkaesk::topics::StreamOptions;
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
//! librdkafka's metadata does not say which broker is the controller, so
//! [`BrokerInfo`] leaves it out.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::app::Application;
use crate::error::{Error, Result};
use crate::topics::StreamOptions;

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
        let streams = tokio::task::spawn_blocking(move || -> Result<Vec<StreamInfo>> {
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
            Ok(streams)
        })
        .await
        .map_err(|_| Error::Stopped)??;
        Ok(ClusterMetadata { brokers, streams })
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

    /// A consumer in `group` that only asks for offsets: it never joins the
    /// group nor commits.
    fn offsets_consumer(&self, group: &str) -> Result<BaseConsumer> {
        Ok(self.settings().reader_config(group)?.create()?)
    }
}
