//! The replay: dead letters back to the topics they came from, each at most
//! once, by the rules of the [module docs](super#replay).
//!
//! [`Application::replay_dead_letters`] and the `kafkaesk dead-letters
//! STREAM replay` command both run a [`DeadLetterReplay`]; they differ in
//! how they decide which topic a subscription could have consumed
//! ([`ReplayTargets`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::app::Application;
use crate::error::{Error, Result};
use crate::kafka::clients::TopicState;
use crate::kafka::partition_end::{self, ReadToEnd};
use crate::record::{printable, Headers, Record, TopicNames};
use crate::subscription::{FinalAction, Router};
use crate::sync::off_the_worker;

use super::settled::Settled;
use super::{
    fails_for_good, forward, DeadLetterFilter, DLQ_GROUP, DLQ_HEADER_PREFIX, DLQ_OFFSET,
    DLQ_PARTITION, DLQ_SUBSCRIPTION, DLQ_TOPIC,
};

/// Topics replay never writes to, besides names starting with `_`: Kafka
/// Connect's defaults.
const INTERNAL_TOPICS: [&str; 3] = ["connect-configs", "connect-offsets", "connect-status"];

/// Streams under the prefix that are kafkaesk's own.
const KAFKAESK_STREAMS: &str = "kafkaesk.";

/// The start of the replay groups' names: `kafkaesk-replay.<topic>`.
const REPLAY_GROUP_PREFIX: &str = "kafkaesk-replay.";

/// The longest consumer group name [`ReplayTargets::CommittedGroups`]
/// looks up: a header can be as long as the record.
const MAX_GROUP_NAME: usize = 255;

/// The longest topic name Kafka accepts.
const MAX_TOPIC_NAME: usize = 249;

/// How many answers of the broker (topics that exist, groups' commits) a
/// replay remembers: hostile records could name a new one each.
const MAX_CACHED: usize = 1024;

/// How long the broker has to answer a lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A replay without a timeout still ends, in 30 years.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 86_400);

/// What [`Application::replay_dead_letters`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records republished to their source topic.
    pub republished: usize,
    /// Records refused and left in the dead-letter stream: not written by
    /// kafkaesk, ambiguous, or naming a topic their subscription could not
    /// have consumed. Each is logged with its position and the reason.
    pub refused: usize,
}

/// How far a [`DeadLetterReplay`] got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Records republished to their source topic.
    pub republished: usize,
    /// Records refused: logged with the reason, not replayed, and not tried
    /// again by later replays.
    pub refused: usize,
    /// Records left for a later replay: those the filter did not select,
    /// and, once the replay ended, those it did not reach (after its limit,
    /// a stop or a failure). Counted by offsets where not read, so an upper
    /// bound on compacted or transactional streams.
    pub left: u64,
}

/// What a [`DeadLetterReplay`] did, and why it ended early if it did.
#[derive(Debug)]
pub struct ReplayReport {
    /// The records republished, refused and left.
    pub counts: ReplayCounts,
    /// Why the replay stopped before the end of the stream (its limit
    /// aside): [`Error::Timeout`], [`Error::Stopped`] for its stop signal,
    /// or the broker's error. What it settled before is committed.
    pub interrupted: Option<Error>,
}

/// How a replay decides that a dead letter's subscription could have
/// consumed the topic its `kafkaesk-dlq-topic` names; the other rules of
/// the [module docs](super#replay) hold either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayTargets {
    /// `kafkaesk-dlq-subscription` names a subscription of the replaying
    /// application whose streams match the topic (under the application's
    /// prefix). [`Application::replay_dead_letters`] uses this rule.
    #[default]
    Subscriptions,
    /// For a replay without the application's subscriptions (the
    /// `kafkaesk dead-letters` command): the consumer group that
    /// `kafkaesk-dlq-group` names has committed an offset past the record
    /// (beyond `kafkaesk-dlq-offset`) in the partition that
    /// `kafkaesk-dlq-partition` names. Only a group that consumed that
    /// partition has such a commit, and kafkaesk commits a dead-lettered
    /// record once its dead letter is written. Records without these
    /// headers (a subscription without a group) are refused, and so are
    /// groups named `kafkaesk-replay.*` (replays' own bookkeeping) and
    /// groups whose commits have expired (`offsets.retention.minutes`).
    /// The application's dead-letter streams other than the one replayed
    /// are unknown here: only the one replayed is refused as a target.
    CommittedGroups,
}

/// A replay of a dead-letter stream: which records, how they are
/// checked, and for how long. Made by [`Application::dead_letter_replay`],
/// started by [`run`](DeadLetterReplay::run).
///
/// Records are read from the commit of the group
/// `kafkaesk-replay.<topic>` to the end of each partition as of the start.
/// Each record the filter selects is republished or refused, and then
/// settled: no later replay handles it again. Records the filter does not
/// select stay for later replays, however many settled records follow
/// them (see the commit format in `dead_letter/settled.rs`, and the
/// [module docs](super#replay-once)). What was settled is committed every
/// second and at the end, also when the replay stops early; a process
/// killed between a republish and the next commit republishes up to a
/// second's records again. Run one replay of a stream at a time.
pub struct DeadLetterReplay<'a> {
    app: &'a Application,
    stream: String,
    filter: DeadLetterFilter,
    limit: Option<usize>,
    targets: ReplayTargets,
    timeout: Option<Duration>,
    stop: Option<Stop<'a>>,
    progress: Option<OnProgress<'a>>,
    progress_every: Duration,
    refusals: Option<OnRefusal<'a>>,
}

/// What ends a replay early when it completes.
type Stop<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Told the counts so far, every `progress_every`.
type OnProgress<'a> = Box<dyn FnMut(&ReplayCounts) + Send + 'a>;

/// Told each refused record and why.
type OnRefusal<'a> = Box<dyn FnMut(&Record, &str) + Send + 'a>;

impl std::fmt::Debug for DeadLetterReplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterReplay")
            .field("stream", &self.stream)
            .field("filter", &self.filter)
            .field("limit", &self.limit)
            .field("targets", &self.targets)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<'a> DeadLetterReplay<'a> {
    /// Only the records `filter` selects; the others stay for later
    /// replays.
    pub fn filter(mut self, filter: DeadLetterFilter) -> Self {
        self.filter = filter;
        self
    }

    /// At most `n` selected records (republished or refused), then stop.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// How the replay decides where a record may go back to
    /// ([`ReplayTargets::Subscriptions`] by default).
    pub fn targets(mut self, targets: ReplayTargets) -> Self {
        self.targets = targets;
        self
    }

    /// End with [`Error::Timeout`] in [`ReplayReport::interrupted`] after
    /// `timeout` (no limit by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// End with [`Error::Stopped`] in [`ReplayReport::interrupted`] when
    /// `stop` completes, such as on a signal.
    pub fn stop_on(mut self, stop: impl Future<Output = ()> + Send + 'a) -> Self {
        self.stop = Some(Box::pin(stop));
        self
    }

    /// Calls `progress` with the counts so far every `every`, after the
    /// commit of what was settled.
    pub fn on_progress(
        mut self,
        every: Duration,
        progress: impl FnMut(&ReplayCounts) + Send + 'a,
    ) -> Self {
        self.progress = Some(Box::new(progress));
        self.progress_every = every;
        self
    }

    /// Calls `refused` with each refused record and the reason (which
    /// quotes the record's headers: print it with
    /// [`printable`](crate::record::printable)). Refusals are logged at
    /// error level either way.
    pub fn on_refusal(mut self, refused: impl FnMut(&Record, &str) + Send + 'a) -> Self {
        self.refusals = Some(Box::new(refused));
        self
    }

    /// Replays, and reports what it did.
    pub async fn run(mut self) -> ReplayReport {
        let mut run = match Run::start(self.app, &self.stream).await {
            Ok(run) => run,
            Err(err) => {
                return ReplayReport {
                    counts: ReplayCounts::default(),
                    interrupted: Some(err),
                }
            }
        };
        let ended = run.replay(&mut self).await;
        // Commit what was settled, even when stopping early, so a second
        // replay does not publish it twice.
        let committed = run.commit();
        let mut counts = run.counts;
        counts.left = counts.left.saturating_add(run.not_reached());
        ReplayReport {
            counts,
            interrupted: ended.and(committed).err(),
        }
    }
}

/// One partition of the dead-letter stream during a replay.
struct Partition {
    /// Its end as of the start: later records wait for the next replay.
    end: i64,
    settled: Settled,
    /// The commit read at the start, or last made.
    committed: (i64, String),
    /// Read to its end, or no longer read.
    done: bool,
}

/// A replay under way.
struct Run<'a> {
    app: &'a Application,
    topic: String,
    consumer: StreamConsumer<ReadToEnd>,
    partitions: HashMap<i32, Partition>,
    counts: ReplayCounts,
    /// Whether each target topic can be written.
    existing: HashMap<String, std::result::Result<(), String>>,
    /// Each (group, topic, partition)'s committed offset.
    commits: HashMap<(String, String, i32), Option<i64>>,
}

impl<'a> Run<'a> {
    /// Reads the replay group's commits and the partitions' ends, and
    /// assigns what is left to read.
    async fn start(app: &'a Application, stream: &str) -> Result<Run<'a>> {
        let settings = app.settings();
        let topic = settings.topic(stream);
        let count = app
            .connection()
            .partition_count(&topic, "dead-letter stream")
            .await?;
        // One group per dead-letter topic: its commits remember what was replayed.
        let config = settings.reader_config(&format!("{REPLAY_GROUP_PREFIX}{topic}"))?;
        let consumer: StreamConsumer<ReadToEnd> = config.create_with_context(ReadToEnd)?;
        let ids: Vec<i32> = (0..count).filter_map(|p| i32::try_from(p).ok()).collect();
        let mut asked = TopicPartitionList::new();
        for &partition in &ids {
            asked.add_partition(&topic, partition);
        }
        // Waits on the broker: off the async worker.
        let (committed, watermarks) = off_the_worker(|| -> Result<_> {
            let committed = consumer.committed_offsets(asked, LOOKUP_TIMEOUT)?;
            let mut watermarks = Vec::with_capacity(ids.len());
            for &partition in &ids {
                watermarks.push(consumer.fetch_watermarks(&topic, partition, LOOKUP_TIMEOUT)?);
            }
            Ok((committed, watermarks))
        })?;
        let mut partitions = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for (&id, (low, high)) in ids.iter().zip(watermarks) {
            let elem = committed.find_partition(&topic, id);
            let offset = elem.as_ref().and_then(|e| match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
            let metadata = elem
                .as_ref()
                .map(|e| e.metadata().to_owned())
                .unwrap_or_default();
            let settled =
                Settled::from_commit(offset, &metadata, low).map_err(|why| Error::Topic {
                    topic: topic.clone(),
                    reason: format!(
                        "partition {id} of the replay group `{REPLAY_GROUP_PREFIX}{topic}`: {why}; \
                         not replaying, so as not to republish a record twice (reset the \
                         group's offsets to replay that partition again)"
                    ),
                })?;
            let done = settled.start() >= high;
            if !done {
                assignment.add_partition_offset(&topic, id, Offset::Offset(settled.start()))?;
            }
            // Without a commit, nothing needs committing until a record is read.
            let committed = match offset {
                Some(offset) => (offset, metadata),
                None => settled.commit(),
            };
            partitions.insert(
                id,
                Partition {
                    end: high,
                    settled,
                    committed,
                    done,
                },
            );
        }
        if assignment.count() > 0 {
            consumer.assign(&assignment)?;
        }
        Ok(Run {
            app,
            topic,
            consumer,
            partitions,
            counts: ReplayCounts::default(),
            existing: HashMap::new(),
            commits: HashMap::new(),
        })
    }

    /// Reads and settles records until the end of every partition, the
    /// limit, the stop, the timeout or an error that may pass.
    async fn replay(&mut self, replay: &mut DeadLetterReplay<'_>) -> Result<()> {
        let timeout = replay.timeout.unwrap_or(FOREVER);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stop = replay
            .stop
            .take()
            .unwrap_or_else(|| Box::pin(std::future::pending()));
        let every = if replay.progress_every.is_zero() {
            Duration::from_secs(1)
        } else {
            replay.progress_every
        };
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let router = self.app.router();
        let prefix = self.app.settings().topic_prefix.clone();
        let mut topic_names = TopicNames::default();
        let mut handled = 0usize;
        loop {
            if self.partitions.values().all(|p| p.done) {
                return Ok(());
            }
            let message = tokio::select! {
                biased;
                () = &mut stop => return Err(Error::Stopped),
                _ = ticks.tick() => {
                    self.commit()?;
                    if let Some(progress) = &mut replay.progress {
                        progress(&self.counts);
                    }
                    continue;
                }
                message = tokio::time::timeout_at(deadline, self.consumer.recv()) => message,
            };
            let record = match message {
                Err(_) => return Err(Error::Timeout(timeout)),
                Ok(Err(KafkaError::PartitionEOF(partition))) => {
                    if let Some(p) = self.partitions.get_mut(&partition) {
                        p.done = true;
                    }
                    continue;
                }
                Ok(Err(err)) => return Err(Error::Kafka(err)),
                Ok(Ok(message)) => topic_names.record(&message),
            };
            let (id, offset) = (record.partition(), record.offset());
            let Some(partition) = self.partitions.get_mut(&id) else {
                continue;
            };
            if partition.done {
                continue;
            }
            if offset >= partition.end {
                // Dead-lettered since the start: the next replay's.
                self.finish(id);
                continue;
            }
            if partition.settled.contains(offset) {
                partition.settled.read(offset, true);
            } else if !replay.filter.matches(&record) {
                partition.settled.read(offset, false);
                self.counts.left += 1;
            } else if !partition.settled.has_room_for(offset) {
                tracing::warn!(
                    record = %record.position(),
                    "dead-letter replay: the commit of partition {id} cannot remember more \
                     records replayed past the first one left; the rest of the partition is \
                     left for a later replay (replay the records left first)"
                );
                self.finish(id);
                continue;
            } else {
                let target = self
                    .target(replay.targets, &router, &prefix, &record)
                    .await?;
                let refusal = match target {
                    Ok(source) => {
                        let publish = self
                            .app
                            .publisher()
                            .raw_to_existing_topic(source, record.value().to_vec());
                        match forward(publish, &record, &original_headers(&record)).await {
                            Ok(()) => None,
                            Err(err) if fails_for_good(&err) => {
                                Some(format!("republishing it failed for good: {err}"))
                            }
                            // It may pass: the next replay tries this record again.
                            Err(err) => return Err(err),
                        }
                    }
                    Err(reason) => Some(reason),
                };
                match refusal {
                    None => self.counts.republished += 1,
                    Some(reason) => {
                        self.counts.refused += 1;
                        // The reason quotes the record's headers.
                        tracing::error!(
                            record = %record.position(),
                            "dead letter not replayed: {}; it stays in {}",
                            printable(&reason),
                            self.topic
                        );
                        if let Some(refused) = &mut replay.refusals {
                            refused(&record, &reason);
                        }
                    }
                }
                if let Some(p) = self.partitions.get_mut(&id) {
                    p.settled.read(offset, true);
                }
                handled += 1;
                if replay.limit.is_some_and(|limit| handled >= limit) {
                    return Ok(());
                }
            }
            if let Some(p) = self.partitions.get_mut(&id) {
                if p.settled.read_to() >= p.end {
                    self.finish(id);
                }
            }
        }
    }

    /// Stops reading partition `id`.
    fn finish(&mut self, id: i32) {
        if let Some(p) = self.partitions.get_mut(&id) {
            p.done = true;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.topic, id);
            // Only saves fetching what is not read: a failure changes nothing.
            let _ = self.consumer.pause(&tpl);
        }
    }

    /// Where `record` goes back to (`Ok(Err(why))`: refused), or an error
    /// that may pass, which ends the replay before the record.
    async fn target(
        &mut self,
        targets: ReplayTargets,
        router: &Router,
        prefix: &str,
        record: &Record,
    ) -> Result<std::result::Result<String, String>> {
        let source = match targets {
            ReplayTargets::Subscriptions => replay_target(router, prefix, &self.topic, record),
            ReplayTargets::CommittedGroups => match group_claim(prefix, &self.topic, record) {
                Ok(claim) => match self.committed(&claim).await? {
                    Ok(()) => Ok(claim.topic),
                    Err(why) => Err(why),
                },
                Err(why) => Err(why),
            },
        };
        let source = match source {
            Ok(source) => source,
            Err(why) => return Ok(Err(why)),
        };
        if let Some(known) = self.existing.get(&source) {
            return Ok(known.clone().map(|()| source));
        }
        let found = target_exists(self.app, &source).await?;
        if self.existing.len() >= MAX_CACHED {
            self.existing.clear();
        }
        self.existing.insert(source.clone(), found.clone());
        Ok(found.map(|()| source))
    }

    /// Whether the claim's group committed past its record.
    async fn committed(&mut self, claim: &GroupClaim) -> Result<std::result::Result<(), String>> {
        let key = (claim.group.clone(), claim.topic.clone(), claim.partition);
        let committed = match self.commits.get(&key) {
            Some(committed) => *committed,
            None => {
                let config = self.app.settings().reader_config(&claim.group)?;
                let consumer = partition_end::reader(&config)?;
                let mut asked = TopicPartitionList::new();
                asked.add_partition(&claim.topic, claim.partition);
                let answer = tokio::task::spawn_blocking(move || {
                    consumer.committed_offsets(asked, LOOKUP_TIMEOUT)
                })
                .await
                .map_err(|_| Error::Stopped)?;
                let answer = match answer {
                    Ok(answer) => answer,
                    Err(err) => {
                        return match err.rdkafka_error_code() {
                            Some(
                                code @ (RDKafkaErrorCode::GroupAuthorizationFailed
                                | RDKafkaErrorCode::InvalidGroupId
                                | RDKafkaErrorCode::TopicAuthorizationFailed
                                | RDKafkaErrorCode::UnknownTopicOrPartition),
                            ) => Ok(Err(format!(
                                "the commits of group `{}` cannot be read: {code}",
                                claim.group
                            ))),
                            _ => Err(Error::Kafka(err)),
                        }
                    }
                };
                let committed = answer
                    .find_partition(&claim.topic, claim.partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    });
                if self.commits.len() >= MAX_CACHED {
                    self.commits.clear();
                }
                self.commits.insert(key, committed);
                committed
            }
        };
        Ok(match committed {
            Some(at) if at > claim.offset => Ok(()),
            Some(at) => Err(format!(
                "group `{}` committed offset {at} of `{}` partition {}, not past the record's \
                 offset {}: it did not consume the record there",
                claim.group, claim.topic, claim.partition, claim.offset
            )),
            None => Err(format!(
                "group `{}` has no commit on `{}` partition {}, so it could not have consumed \
                 the record there",
                claim.group, claim.topic, claim.partition
            )),
        })
    }

    /// Commits what changed since the last commit, and waits for the
    /// broker's answer.
    fn commit(&mut self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        let mut made = Vec::new();
        for (&id, p) in &self.partitions {
            let commit = p.settled.commit();
            if commit != p.committed && commit.0 >= 0 {
                tpl.add_partition_offset(&self.topic, id, Offset::Offset(commit.0))?;
                if let Some(mut elem) = tpl.find_partition(&self.topic, id) {
                    elem.set_metadata(commit.1.as_str());
                }
                made.push((id, commit));
            }
        }
        if made.is_empty() {
            return Ok(());
        }
        off_the_worker(|| self.consumer.commit(&tpl, CommitMode::Sync))?;
        for (id, commit) in made {
            if let Some(p) = self.partitions.get_mut(&id) {
                p.committed = commit;
            }
        }
        Ok(())
    }

    /// Records not read up to each partition's end as of the start, less
    /// those settled before.
    fn not_reached(&self) -> u64 {
        self.partitions
            .values()
            .map(|p| p.settled.unsettled_in(p.settled.read_to(), p.end))
            .sum()
    }
}

/// Whether replay can write to `topic`: `Ok(Ok(()))` when it exists,
/// `Ok(Err(why))` when it does not, or may not be read or written for
/// good, and `Err` when the broker's answer may change (a leader being
/// elected, no broker answering). The lookup never creates the topic.
async fn target_exists(app: &Application, topic: &str) -> Result<std::result::Result<(), String>> {
    let missing = || Ok(Err(format!("topic `{topic}` does not exist")));
    match app.connection().topic_state(topic).await? {
        TopicState::Exists(_) => Ok(Ok(())),
        TopicState::Missing
        | TopicState::Error(
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
        ) => missing(),
        TopicState::Error(
            code @ (RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::InvalidTopic),
        ) => Ok(Err(format!("topic `{topic}`: {code}"))),
        TopicState::Error(code) => Err(Error::Topic {
            topic: topic.to_owned(),
            reason: format!("cannot be looked up now ({code}); replay again later"),
        }),
    }
}

/// Why replay must not write to `topic`, if it must not: the dead-letter
/// stream `replaying` (a full topic name), the dead-letter streams of
/// `router`'s subscriptions when there is one, kafkaesk's own streams,
/// internal topics.
fn protected(
    router: Option<&Router>,
    prefix: &str,
    replaying: &str,
    topic: &str,
) -> Option<String> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_NAME {
        // Also bounds what a replay remembers of the topics it looked up.
        return Some(format!(
            "it is not a topic name (1 to {MAX_TOPIC_NAME} characters)"
        ));
    }
    let stream = topic.strip_prefix(prefix);
    if topic == replaying {
        return Some("it names the dead-letter stream being replayed".to_owned());
    }
    let dead_letter_stream = router.and_then(|router| {
        router
            .subscriptions()
            .iter()
            .find_map(|s| match s.error_policy().final_action() {
                FinalAction::DeadLetter(dead) if Some(dead.as_str()) == stream => Some(s.name()),
                _ => None,
            })
    });
    if let Some(name) = dead_letter_stream {
        return Some(format!(
            "it names the dead-letter stream of subscription `{name}`"
        ));
    }
    if stream.is_some_and(|s| s.starts_with(KAFKAESK_STREAMS)) {
        return Some("it names one of kafkaesk's own streams".to_owned());
    }
    let internal = |name: &str| name.starts_with('_') || INTERNAL_TOPICS.contains(&name);
    if internal(topic) || stream.is_some_and(internal) {
        return Some("it names an internal topic".to_owned());
    }
    None
}

/// kafkaesk's headers of `record`, by name; `Err` when one appears twice.
fn kafkaesk_headers(record: &Record) -> std::result::Result<HashMap<&str, Option<&[u8]>>, String> {
    let mut ours: HashMap<&str, Option<&[u8]>> = HashMap::new();
    for header in record.headers().iter() {
        if header.key.starts_with(DLQ_HEADER_PREFIX)
            && ours
                .insert(header.key.as_str(), header.value.as_deref())
                .is_some()
        {
            return Err(format!(
                "`{}` appears twice, so the record is ambiguous",
                header.key
            ));
        }
    }
    Ok(ours)
}

/// The text of kafkaesk's header `key` among `ours`.
fn header_text<'r>(
    ours: &HashMap<&str, Option<&'r [u8]>>,
    key: &str,
) -> std::result::Result<&'r str, String> {
    let value = ours
        .get(key)
        .copied()
        .flatten()
        .ok_or_else(|| format!("no `{key}` header: not a kafkaesk dead letter"))?;
    std::str::from_utf8(value).map_err(|_| format!("`{key}` is not UTF-8"))
}

/// Where a dead letter of the dead-letter topic `replaying` goes back to
/// under [`ReplayTargets::Subscriptions`], or why it does not (its
/// existence aside).
fn replay_target(
    router: &Router,
    prefix: &str,
    replaying: &str,
    record: &Record,
) -> std::result::Result<String, String> {
    let ours = kafkaesk_headers(record)?;
    let topic = header_text(&ours, DLQ_TOPIC)?;
    let name = header_text(&ours, DLQ_SUBSCRIPTION)?;
    let Some(subscription) = router.subscriptions().iter().find(|s| s.name() == name) else {
        return Err(format!(
            "it names subscription `{name}`, which this application does not have"
        ));
    };
    if !subscription.streams().matches_topic(prefix, topic) {
        return Err(format!(
            "subscription `{name}` (streams `{}`, prefix `{prefix}`) could not have consumed \
             topic `{topic}`",
            subscription.streams()
        ));
    }
    if let Some(why) = protected(Some(router), prefix, replaying, topic) {
        return Err(format!("replay never writes to `{topic}`: {why}"));
    }
    Ok(topic.to_owned())
}

/// What a dead letter says of where it was consumed, for
/// [`ReplayTargets::CommittedGroups`].
#[derive(Debug, PartialEq, Eq)]
struct GroupClaim {
    topic: String,
    group: String,
    partition: i32,
    offset: i64,
}

/// The claim of a dead letter of `replaying`, checked for everything but
/// the group's commits and the topic's existence.
fn group_claim(
    prefix: &str,
    replaying: &str,
    record: &Record,
) -> std::result::Result<GroupClaim, String> {
    let ours = kafkaesk_headers(record)?;
    let topic = header_text(&ours, DLQ_TOPIC)?;
    header_text(&ours, DLQ_SUBSCRIPTION)?;
    let group = header_text(&ours, DLQ_GROUP).map_err(|why| {
        format!("{why} (a subscription without a group): nothing shows it consumed `{topic}`")
    })?;
    let number = |key: &str| -> std::result::Result<i64, String> {
        header_text(&ours, key)?
            .parse()
            .map_err(|_| format!("`{key}` is not a number"))
    };
    let partition = i32::try_from(number(DLQ_PARTITION)?)
        .map_err(|_| format!("`{DLQ_PARTITION}` is out of range"))?;
    let offset = number(DLQ_OFFSET)?;
    if group.is_empty() || group.len() > MAX_GROUP_NAME {
        return Err(format!(
            "`{DLQ_GROUP}` is empty or longer than {MAX_GROUP_NAME} bytes"
        ));
    }
    if group.starts_with(REPLAY_GROUP_PREFIX) {
        return Err(format!(
            "it names group `{group}`, a replay's own group, which handles no records"
        ));
    }
    if let Some(why) = protected(None, prefix, replaying, topic) {
        return Err(format!("replay never writes to `{topic}`: {why}"));
    }
    Ok(GroupClaim {
        topic: topic.to_owned(),
        group: group.to_owned(),
        partition,
        offset,
    })
}

/// The record's headers without kafkaesk's dead-letter headers.
fn original_headers(record: &Record) -> Headers {
    let mut headers = Headers::new();
    for header in record.headers().iter() {
        if !header.key.starts_with(DLQ_HEADER_PREFIX) {
            headers.push(header.clone());
        }
    }
    headers
}

impl Application {
    /// A replay of the dead-letter `stream`, to configure and
    /// [`run`](DeadLetterReplay::run): filtered, limited, with progress.
    ///
    /// ```no_run
    /// # async fn demo(app: kafkaesk::Application) {
    /// use kafkaesk::dead_letter::DeadLetterFilter;
    /// let report = app
    ///     .dead_letter_replay("orders.dead")
    ///     .filter(DeadLetterFilter::default().error_contains("timed out"))
    ///     .run()
    ///     .await;
    /// println!("{:?}", report.counts);
    /// # }
    /// ```
    pub fn dead_letter_replay(&self, stream: &str) -> DeadLetterReplay<'_> {
        DeadLetterReplay {
            app: self,
            stream: stream.to_owned(),
            filter: DeadLetterFilter::default(),
            limit: None,
            targets: ReplayTargets::Subscriptions,
            timeout: None,
            stop: None,
            progress: None,
            progress_every: Duration::from_secs(1),
            refusals: None,
        }
    }

    /// Republishes every record in the dead-letter `stream` to the topic it was
    /// consumed from, untouched (value, key and original headers; the
    /// `kafkaesk-dlq-*` headers are removed).
    ///
    /// Only records that this application's subscriptions could have
    /// dead-lettered go back; the others are refused and stay (see the
    /// [`dead_letter`](crate::dead_letter#replay) docs for the rules).
    ///
    /// Reads until the end of every partition of the dead-letter stream, then
    /// commits in the group `kafkaesk-replay.<topic>`, so a second call only
    /// replays what was dead-lettered since (or left by a filtered
    /// [`dead_letter_replay`](Application::dead_letter_replay)). Fails with
    /// [`Error::Timeout`] if that takes longer than `timeout` (what was
    /// republished by then is committed), and with [`Error::Topic`] if the
    /// stream does not exist.
    ///
    /// ```no_run
    /// # async fn demo(app: kafkaesk::Application) -> Result<(), kafkaesk::Error> {
    /// let replayed = app.replay_dead_letters("orders.dead", std::time::Duration::from_secs(60)).await?;
    /// println!("{} records are back on their topics", replayed.republished);
    /// # Ok(()) }
    /// ```
    pub async fn replay_dead_letters(&self, stream: &str, timeout: Duration) -> Result<Replayed> {
        let report = self.dead_letter_replay(stream).timeout(timeout).run().await;
        match report.interrupted {
            Some(err) => Err(err),
            None => Ok(Replayed {
                republished: report.counts.republished,
                refused: report.counts.refused,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Subscription;

    async fn handle(_: Vec<u8>) {}

    /// The worker spawns replays: their futures must be `Send`.
    #[allow(dead_code)]
    fn replays_are_send(app: &Application) {
        fn send<T: Send>(_: T) {}
        send(app.replay_dead_letters("s", Duration::ZERO));
        send(app.dead_letter_replay("s").stop_on(async {}).run());
    }

    fn record(headers: Headers) -> Record {
        Record::new(
            "p.orders.dead",
            0,
            4,
            None,
            Some(b"x".to_vec()),
            headers,
            None,
        )
    }

    fn router() -> Router {
        let mut router = Router::new();
        router.subscribe(Subscription::new("orders.*", handle).with_name("orders"));
        router.subscribe(
            Subscription::new("*", handle)
                .with_name("everything")
                .on_error(crate::ErrorPolicy::dead_letter("everything.dead")),
        );
        router
    }

    fn kafkaesk_headers(topic: &str) -> Headers {
        Headers::new()
            .with(DLQ_TOPIC, topic)
            .with(DLQ_SUBSCRIPTION, "orders")
            .with(super::super::DLQ_ATTEMPTS, "1")
    }

    #[test]
    fn renamed_incoming_headers_do_not_steer_a_replay() {
        let forged = Headers::new()
            .with(DLQ_TOPIC, "p.payments")
            .with("trace", "t-1");
        let source = Record::new("p.orders.created", 2, 9, None, None, forged, None);
        let error = Error::Stopped;
        let headers = super::super::dead_letter_headers(
            &source,
            &super::super::Failure {
                error: &error,
                attempts: 1,
                subscription: "orders",
                group: Some("g"),
            },
        );
        assert_eq!(
            replay_target(&router(), "p.", "p.orders.dead", &record(headers)),
            Ok("p.orders.created".into())
        );
    }

    #[test]
    fn replay_refuses_what_kafkaesk_did_not_write() {
        let router = router();
        let target = |headers| replay_target(&router, "p.", "p.orders.dead", &record(headers));
        assert_eq!(
            target(kafkaesk_headers("p.orders.paid")),
            Ok("p.orders.paid".into())
        );
        // Two sets: ambiguous.
        let twice = kafkaesk_headers("p.orders.paid").with(DLQ_TOPIC, "p.payments");
        assert!(target(twice).unwrap_err().contains("twice"));
        // A topic the subscription could not have consumed.
        assert!(target(kafkaesk_headers("p.payments"))
            .unwrap_err()
            .contains("could not"));
        assert!(target(kafkaesk_headers("orders.paid"))
            .unwrap_err()
            .contains("could not"));
        // No subscription, or one the application does not have.
        let anonymous = Headers::new().with(DLQ_TOPIC, "p.orders.paid");
        assert!(target(anonymous)
            .unwrap_err()
            .contains("not a kafkaesk dead letter"));
        let stranger = Headers::new()
            .with(DLQ_TOPIC, "p.orders.paid")
            .with(DLQ_SUBSCRIPTION, "other");
        assert!(target(stranger).unwrap_err().contains("does not have"));
    }

    #[test]
    fn replay_never_writes_to_dead_letter_kafkaesk_or_internal_topics() {
        let router = router();
        let target = |topic: &str| {
            let headers = Headers::new()
                .with(DLQ_TOPIC, topic)
                .with(DLQ_SUBSCRIPTION, "everything");
            replay_target(&router, "p.", "p.orders.dead", &record(headers))
        };
        assert_eq!(target("p.payments"), Ok("p.payments".into()));
        let long = format!("p.{}", "x".repeat(300));
        for (topic, why) in [
            (long.as_str(), "not a topic name"),
            ("p.orders.dead", "being replayed"),
            ("p.everything.dead", "subscription `everything`"),
            ("p.kafkaesk.schemas", "kafkaesk's own"),
            ("p._schemas", "internal"),
            ("p.__consumer_offsets", "internal"),
            ("p.connect-configs", "internal"),
        ] {
            let refused = target(topic).unwrap_err();
            assert!(refused.contains(why), "{topic}: {refused}");
        }
        // Without a prefix, Kafka's own names as they are.
        let headers = Headers::new()
            .with(DLQ_TOPIC, "__consumer_offsets")
            .with(DLQ_SUBSCRIPTION, "everything");
        assert!(replay_target(&router, "", "dead", &record(headers))
            .unwrap_err()
            .contains("internal"));
    }

    #[test]
    fn a_claim_by_group_needs_every_header_and_a_plain_group() {
        let full = || {
            kafkaesk_headers("p.orders.paid")
                .with(DLQ_GROUP, "billing")
                .with(DLQ_PARTITION, "3")
                .with(DLQ_OFFSET, "41")
        };
        let claim = |headers| group_claim("p.", "p.orders.dead", &record(headers));
        assert_eq!(
            claim(full()),
            Ok(GroupClaim {
                topic: "p.orders.paid".into(),
                group: "billing".into(),
                partition: 3,
                offset: 41,
            })
        );
        let no_group = kafkaesk_headers("p.orders.paid")
            .with(DLQ_PARTITION, "3")
            .with(DLQ_OFFSET, "41");
        assert!(claim(no_group).unwrap_err().contains("without a group"));
        let mut replay_group = full();
        replay_group.remove(DLQ_GROUP);
        let replay_group = replay_group.with(DLQ_GROUP, "kafkaesk-replay.p.orders.dead");
        assert!(claim(replay_group).unwrap_err().contains("replay's own"));
        let mut bad_offset = full();
        bad_offset.remove(DLQ_OFFSET);
        let bad_offset = bad_offset.with(DLQ_OFFSET, "forty");
        assert!(claim(bad_offset).unwrap_err().contains("not a number"));
        let mut binary = full();
        binary.remove(DLQ_TOPIC);
        let binary = binary.with(DLQ_TOPIC, [0xff, 0xfe]);
        assert!(claim(binary).unwrap_err().contains("not UTF-8"));
        let mut internal = full();
        internal.remove(DLQ_TOPIC);
        let internal = internal.with(DLQ_TOPIC, "p.orders.dead");
        assert!(claim(internal).unwrap_err().contains("being replayed"));
    }

    #[test]
    fn replayed_records_lose_only_kafkaesk_headers() {
        let headers = kafkaesk_headers("p.orders.paid")
            .with("trace", "t")
            .with("previous-kafkaesk-dlq-topic", "x");
        let kept: Vec<String> = original_headers(&record(headers))
            .iter()
            .map(|h| h.key.clone())
            .collect();
        assert_eq!(kept, ["trace", "previous-kafkaesk-dlq-topic"]);
    }
}
