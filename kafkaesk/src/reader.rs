//! Reading streams back, without a consumer group: Message DB's `read` and
//! `read_last_message`, photon-pump's `get` and `iter`.
//!
//! [`Application::reader`] reads one stream, or every stream matching an
//! fnmatch pattern (like Message DB's categories), typed as a handler's
//! first parameter is ([`FromMessage`]: a schema type, `Json<T>`,
//! `serde_json::Value`, `Vec<u8>` or [`Record`]). It commits nothing and
//! joins no group, so any number of readers see every message.
//!
//! ```no_run
//! # #[kafkaesk::schema("Order")]
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # pub struct Order { pub id: u64 }
//! # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
//! use futures::StreamExt;
//! use kafkaesk::reader::Position;
//! use std::time::Duration;
//!
//! // Everything up to now, oldest first.
//! for item in app.reader("orders").read::<Order>().await? {
//!     let item = item?; // an undecodable record is an error item, in its place
//!     println!("{} at {}", item.data.id, item.record.position());
//! }
//! // The last ten of the last hour, newest first.
//! let recent = app
//!     .reader("orders")
//!     .from(Position::Since(Duration::from_secs(3600)))
//!     .backward()
//!     .limit(10)
//!     .read::<Order>()
//!     .await?;
//! // The latest order for a key, and every order from now on.
//! let latest = app.reader("orders").last_for_key::<Order>(b"customer-7").await?;
//! let mut live = app.reader("orders").from(Position::Latest).follow().iter::<Order>();
//! while let Some(item) = live.next().await {
//!     println!("{}", item?.data.id);
//! }
//! # Ok(()) }
//! ```
//!
//! # Order
//!
//! Kafka orders records within a partition only. Across partitions (and
//! streams) a reader gives them by timestamp, then partition, then offset
//! (backward: the reverse), which is the order they were published in when
//! the producers' clocks agree. Once a following reader has caught up, it
//! gives records as they arrive.
//!
//! # Positions
//!
//! [`Position`] says where reading starts: the earliest record, the latest
//! (only what comes next), an offset (in every partition read), a point in
//! time or a time ago, found with the broker's offsets-for-times lookup.
//! Reading forward stops at the end as of the call unless it
//! [`follow`](Reader::follow)s; reading [`backward`](Reader::backward) starts
//! before the position (the end by default) and goes back to the start.
//! Records of open or aborted transactions are never read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{BoxStream, StreamExt};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::app::Application;
use crate::error::{Error, Result};
use crate::handling::HandlerScope;
use crate::handling::{FromMessage, MessageContext};
use crate::kafka::partition_end::{self, EndReader};
use crate::kafka::tail;
use crate::record::{Record, RecordSource, TopicNames};
use crate::subscription::Streams;

/// How long one metadata, watermark or time lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read to the end may go without a record or an end-of-partition
/// before it gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Items buffered between the reading thread and the stream's consumer.
const CHANNEL_CAPACITY: usize = 1024;

pub use crate::subscription::Position;

/// A record read back: its data, decoded as asked, and the record itself
/// (topic, partition, offset, timestamp, key, headers).
#[derive(Debug, Clone)]
pub struct Item<T> {
    /// The decoded record.
    pub data: T,
    /// The record: position, timestamp, key, headers and raw value.
    pub record: Record,
}

/// A read being prepared; see the [module docs](self).
#[must_use = "a reader reads nothing until `read`, `iter`, `last` or `last_for_key`"]
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    app: &'a Application,
    options: ReadOptions,
}

/// What a reader reads, and how.
#[derive(Debug, Clone)]
struct ReadOptions {
    streams: Streams,
    from: Option<Position>,
    backward: bool,
    limit: Option<usize>,
    partitions: Option<Vec<i32>>,
    follow: bool,
}

impl Application {
    /// Reads a stream, or every stream matching an fnmatch pattern, back
    /// from the broker; see [`reader`](crate::reader).
    pub fn reader(&self, streams: impl Into<String>) -> Reader<'_> {
        Reader {
            app: self,
            options: ReadOptions {
                streams: Streams::Pattern(streams.into()),
                from: None,
                backward: false,
                limit: None,
                partitions: None,
                follow: false,
            },
        }
    }
}

impl<'a> Reader<'a> {
    /// Where to start (default: [`Position::Earliest`] forward,
    /// [`Position::Latest`] backward).
    pub fn from(mut self, position: Position) -> Self {
        self.options.from = Some(position);
        self
    }

    /// Reads newest first, from the position back to the start.
    pub fn backward(mut self) -> Self {
        self.options.backward = true;
        self
    }

    /// Gives at most `n` items (error items included).
    pub fn limit(mut self, n: usize) -> Self {
        self.options.limit = Some(n);
        self
    }

    /// Reads only these partitions of each stream.
    pub fn partitions(mut self, partitions: impl IntoIterator<Item = i32>) -> Self {
        self.options.partitions = Some(partitions.into_iter().collect());
        self
    }

    /// After the end as of the call, goes on with records as they are
    /// published, until the stream is dropped. Forward only.
    pub fn follow(mut self) -> Self {
        self.options.follow = true;
        self
    }

    /// Reads to the end as of the call (or the [`limit`](Self::limit)), and
    /// gives every item in order. A record that cannot be decoded as `T` is
    /// an [`Error::Undecodable`] item in its place.
    pub async fn read<T: FromMessage>(self) -> Result<Vec<Result<Item<T>>>> {
        if self.options.follow {
            return Err(Error::InvalidSetting {
                name: "follow".to_owned(),
                reason: "a read that follows never ends; use `iter` to follow".to_owned(),
            });
        }
        let scope = reader_scope(self.app);
        let records = self.records(None).await?;
        Ok(records
            .into_iter()
            .map(|record| decode(&scope, record))
            .collect())
    }

    /// The last record of the stream(s) (of the chosen partitions), if any.
    pub async fn last<T: FromMessage>(self) -> Result<Option<Result<Item<T>>>> {
        let mut newest = self
            .backward()
            .limit(1)
            .from(Position::Latest)
            .read()
            .await?;
        Ok(newest.pop())
    }

    /// The last record with `key`, if any.
    pub async fn last_for_key<T: FromMessage>(
        self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<Result<Item<T>>>> {
        let scope = reader_scope(self.app);
        let reader = self.backward().from(Position::Latest).limit(1);
        let found = reader.records(Some(key.as_ref().to_vec())).await?;
        Ok(found
            .into_iter()
            .next()
            .map(|record| decode(&scope, record)))
    }

    /// The items as an async stream, read on a thread of their own. Forward,
    /// it ends at the end as of the call, or follows; backward, it ends at
    /// the start.
    pub fn iter<T: FromMessage>(self) -> BoxStream<'static, Result<Item<T>>> {
        let scope = reader_scope(self.app);
        let limit = self.options.limit.unwrap_or(usize::MAX);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Record>>(CHANNEL_CAPACITY);
        let app = self.app.clone();
        let options = self.options;
        tokio::spawn(async move {
            let plan = match options.plan(&app).await {
                Ok(plan) => plan,
                Err(err) => {
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            };
            let sent = tokio::task::spawn_blocking(move || {
                let send = |record: Result<Record>| tx.blocking_send(record).is_ok();
                if options.backward {
                    match read_backward(plan, options.limit, None) {
                        Ok(records) => records.into_iter().map(Ok).all(send),
                        Err(err) => send(Err(err)),
                    }
                } else {
                    read_forward(plan, options.follow, || !tx.is_closed(), send)
                }
            })
            .await;
            if sent.is_err() {
                tracing::warn!("a reader's thread ended abnormally");
            }
        });
        futures::stream::unfold(
            (rx, scope, 0usize),
            move |(mut rx, scope, given)| async move {
                if given >= limit {
                    return None;
                }
                let item = match rx.recv().await? {
                    Ok(record) => decode(&scope, record),
                    Err(err) => Err(err),
                };
                Some((item, (rx, scope, given + 1)))
            },
        )
        .boxed()
    }

    /// Every record up to the limit, forward to the end or backward to the
    /// start (only those with `key`, backward), in order.
    async fn records(self, key: Option<Vec<u8>>) -> Result<Vec<Record>> {
        let limit = self.options.limit;
        let backward = self.options.backward;
        let plan = self.options.plan(self.app).await?;
        tokio::task::spawn_blocking(move || {
            if backward {
                return read_backward(plan, limit, key.as_deref());
            }
            let mut records = Vec::new();
            let mut failure = None;
            read_forward(
                plan,
                false,
                || true,
                |record| match record {
                    Ok(record) => {
                        records.push(record);
                        limit.is_none_or(|limit| records.len() < limit)
                    }
                    Err(err) => {
                        failure = Some(err);
                        false
                    }
                },
            );
            failure.map_or(Ok(records), Err)
        })
        .await
        .map_err(|_| Error::Stopped)?
    }
}

impl ReadOptions {
    /// The partitions to read and where, found off the async threads.
    async fn plan(&self, app: &Application) -> Result<ReadPlan> {
        if self.follow && self.backward {
            return Err(Error::InvalidSetting {
                name: "follow".to_owned(),
                reason: "a backward read cannot follow new records; read forward to follow"
                    .to_owned(),
            });
        }
        let settings = app.settings();
        let config =
            settings.committed_reader_config(&format!("kafkaesk-reader-{}", std::process::id()))?;
        let prefix = settings.topic_prefix.clone();
        let streams = self.streams.clone();
        let chosen = self.partitions.clone();
        let backward = self.backward;
        let from = self.from.unwrap_or(if backward {
            Position::Latest
        } else {
            Position::Earliest
        });
        tokio::task::spawn_blocking(move || {
            let consumer = partition_end::reader(&config)?;
            let metadata = consumer.fetch_metadata(None, LOOKUP_TIMEOUT)?;
            let mut ranges = Vec::new();
            for topic in metadata.topics() {
                if !streams.matches_topic(&prefix, topic.name()) {
                    continue;
                }
                for partition in topic.partitions() {
                    let id = partition.id();
                    if chosen.as_ref().is_some_and(|c| !c.contains(&id)) {
                        continue;
                    }
                    let (low, high) =
                        consumer.fetch_watermarks(topic.name(), id, LOOKUP_TIMEOUT)?;
                    let start = match (backward, from) {
                        // Backward from an offset includes it.
                        (true, Position::Offset(offset)) => crate::subscription::position::within(
                            offset.saturating_add(1),
                            (low, high),
                        ),
                        _ => {
                            from.resolve(&consumer, topic.name(), id, (low, high), LOOKUP_TIMEOUT)?
                        }
                    };
                    ranges.push(Range {
                        topic: Arc::from(topic.name()),
                        partition: id,
                        low,
                        start,
                        end: high,
                    });
                }
            }
            if ranges.is_empty() {
                return Err(Error::Topic {
                    topic: format!("{prefix}{streams}"),
                    reason: "no stream matches, or none of the chosen partitions exists".to_owned(),
                });
            }
            ranges.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            Ok(ReadPlan { consumer, ranges })
        })
        .await
        .map_err(|_| Error::Stopped)?
    }
}

/// The application a reader decodes with: its handler scope, without a
/// consumer.
fn reader_scope(app: &Application) -> HandlerScope {
    HandlerScope::detached(app.clone(), Arc::from("reader"))
}

/// Decodes `record` as `T`, as a handler's first parameter would be.
fn decode<T: FromMessage>(scope: &HandlerScope, record: Record) -> Result<Item<T>> {
    let mut context = MessageContext::new(RecordSource::Owned(&record), scope);
    match T::from_message(&mut context) {
        Ok(data) => Ok(Item { data, record }),
        Err(rejection) => Err(Error::Undecodable {
            position: record.position(),
            reason: rejection.reason().to_owned(),
        }),
    }
}

/// One partition to read: its start and, as of the plan, its end.
#[derive(Debug, Clone)]
struct Range {
    topic: Arc<str>,
    partition: i32,
    low: i64,
    start: i64,
    /// The high watermark when the read began: the forward read's end.
    end: i64,
}

/// The partitions to read, and the consumer to read them with.
struct ReadPlan {
    consumer: EndReader,
    ranges: Vec<Range>,
}

/// Reads every range forward from its start, giving records to `give` in
/// order (timestamp, partition, offset) until each range's end, then, when
/// `follow`ing, as they arrive. Stops when `give` returns false, or when
/// `wanted` does (asked between polls, so a dropped stream ends its thread
/// while nothing arrives).
fn read_forward(
    plan: ReadPlan,
    follow: bool,
    wanted: impl Fn() -> bool,
    mut give: impl FnMut(Result<Record>) -> bool,
) -> bool {
    let ReadPlan { consumer, ranges } = plan;
    let mut assignment = TopicPartitionList::new();
    for range in &ranges {
        if assignment
            .add_partition_offset(&range.topic, range.partition, Offset::Offset(range.start))
            .is_err()
        {
            return give(Err(Error::Topic {
                topic: range.topic.to_string(),
                reason: format!("partition {} cannot be read", range.partition),
            }));
        }
    }
    if let Err(err) = consumer.assign(&assignment) {
        return give(Err(Error::Kafka(err)));
    }
    let mut merge = Merge::new(&ranges);
    let mut names = TopicNames::default();
    let mut last_progress = Instant::now();
    loop {
        while let Some(record) = merge.next_in_order() {
            if !give(Ok(record)) {
                return false;
            }
        }
        if merge.all_done() && !follow {
            return true;
        }
        if !wanted() {
            return false;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if !merge.all_done() && last_progress.elapsed() > STALL_TIMEOUT {
                    return give(Err(Error::Timeout(STALL_TIMEOUT)));
                }
            }
            Some(Ok(message)) => {
                last_progress = Instant::now();
                merge.push(names.record(&message));
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                last_progress = Instant::now();
                // librdkafka says the partition, not the topic: the one whose
                // position reached its end. With several topics, every range
                // of that partition number at its end is done.
                merge.reached_end(partition, &consumer);
            }
            Some(Err(err)) => {
                if !give(Err(Error::Kafka(err))) {
                    return false;
                }
            }
        }
    }
}

/// The per-partition buffers of a forward read, merged in order.
struct Merge {
    lanes: Vec<Lane>,
    /// Once every lane reached its end: records go out as they arrive.
    caught_up: bool,
}

struct Lane {
    topic: Arc<str>,
    partition: i32,
    end: i64,
    done: bool,
    buffered: VecDeque<Record>,
}

impl Merge {
    fn new(ranges: &[Range]) -> Self {
        let lanes = ranges
            .iter()
            .map(|range| Lane {
                topic: range.topic.clone(),
                partition: range.partition,
                end: range.end,
                done: range.start >= range.end,
                buffered: VecDeque::new(),
            })
            .collect();
        Merge {
            lanes,
            caught_up: false,
        }
    }

    fn lane(&mut self, topic: &str, partition: i32) -> Option<&mut Lane> {
        self.lanes
            .iter_mut()
            .find(|lane| lane.partition == partition && &*lane.topic == topic)
    }

    fn push(&mut self, record: Record) {
        let (topic, partition, offset) = (
            record.topic().to_owned(),
            record.partition(),
            record.offset(),
        );
        if let Some(lane) = self.lane(&topic, partition) {
            if offset.saturating_add(1) >= lane.end {
                lane.done = true;
            }
            lane.buffered.push_back(record);
        }
    }

    /// Marks done the lanes of `partition` whose position reached their end.
    fn reached_end(&mut self, partition: i32, consumer: &EndReader) {
        let positions = consumer.position().ok();
        for lane in self.lanes.iter_mut().filter(|l| l.partition == partition) {
            let position = positions
                .as_ref()
                .and_then(|p| p.find_partition(&lane.topic, partition))
                .and_then(|elem| elem.offset().to_raw());
            // An end-of-partition for a lane with no position yet is its own.
            if position.is_none_or(|position| position >= lane.end) {
                lane.done = true;
            }
        }
    }

    fn all_done(&self) -> bool {
        self.lanes
            .iter()
            .all(|lane| lane.done && lane.buffered.is_empty())
    }

    /// The next record in order, once it is known that no earlier one can
    /// still arrive: every lane not at its end has a record buffered.
    fn next_in_order(&mut self) -> Option<Record> {
        if !self.caught_up
            && self
                .lanes
                .iter()
                .all(|lane| lane.done && lane.buffered.is_empty())
        {
            self.caught_up = true;
        }
        let ready = self.caught_up
            || self
                .lanes
                .iter()
                .all(|lane| lane.done || !lane.buffered.is_empty());
        if !ready {
            return None;
        }
        let lane = self
            .lanes
            .iter_mut()
            .filter(|lane| !lane.buffered.is_empty())
            .min_by_key(|lane| {
                let head = &lane.buffered[0];
                (
                    head.timestamp().unwrap_or(-1),
                    head.partition(),
                    head.offset(),
                )
            })?;
        lane.buffered.pop_front()
    }
}

/// Reads each range backward from its start (exclusive), and gives the
/// newest `limit` records of all of them, newest first: the ones with `key`
/// only, when given.
fn read_backward(plan: ReadPlan, limit: Option<usize>, key: Option<&[u8]>) -> Result<Vec<Record>> {
    let ReadPlan { consumer, ranges } = plan;
    let wanted = limit.unwrap_or(usize::MAX);
    let mut all = Vec::new();
    for range in &ranges {
        all.extend(tail::newest_below(
            &consumer,
            &range.topic,
            range.partition,
            (range.low, range.start),
            wanted,
            key,
        )?);
    }
    all.sort_by_key(|record| {
        std::cmp::Reverse((
            record.timestamp().unwrap_or(-1),
            record.partition(),
            record.offset(),
        ))
    });
    all.truncate(wanted);
    Ok(all)
}
