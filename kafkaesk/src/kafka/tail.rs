//! A partition read back from a given offset towards its start, newest
//! first: what the [`reader`](crate::reader)'s backward reads and the
//! [expected-offset](crate::publish::expected) check share.
//!
//! Kafka reads forward only, so the tail is read in windows that grow
//! fourfold, each read forward and reversed, until enough records are found
//! or the partition's start is reached. Records of aborted transactions and
//! transaction markers are skipped by the read-committed consumer, so they
//! take offsets in a window but never appear in it.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::kafka::partition_end::EndReader;
use crate::record::{Record, TopicNames};

/// Offsets read first; each later window is four times the one before.
const FIRST_WINDOW: i64 = 16;

/// How long a window's read may go without a record or the partition's end.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The newest `wanted` records of `partition` of `topic` below offset
/// `below` and at or above `low`, newest first; with `key`, only records
/// with that key. `consumer` is reassigned along the way.
pub(crate) fn newest_below(
    consumer: &EndReader,
    topic: &str,
    partition: i32,
    (low, below): (i64, i64),
    wanted: usize,
    key: Option<&[u8]>,
) -> Result<Vec<Record>> {
    let mut names = TopicNames::default();
    let mut found = Vec::new();
    let mut end = below;
    let mut window = FIRST_WINDOW;
    while end > low && found.len() < wanted {
        let from = end.saturating_sub(window).max(low);
        let mut chunk = read_between(consumer, &mut names, topic, partition, from, end)?;
        if let Some(key) = key {
            chunk.retain(|record| record.key() == Some(key));
        }
        chunk.reverse();
        found.extend(chunk);
        end = from;
        window = window.saturating_mul(4);
    }
    found.truncate(wanted);
    Ok(found)
}

/// The records of one partition from `from` up to `below` (exclusive).
fn read_between(
    consumer: &EndReader,
    names: &mut TopicNames,
    topic: &str,
    partition: i32,
    from: i64,
    below: i64,
) -> Result<Vec<Record>> {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    let mut last_progress = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            None if last_progress.elapsed() > STALL_TIMEOUT => {
                return Err(Error::Timeout(STALL_TIMEOUT))
            }
            None => {}
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let record = names.record(&message);
                if record.offset() >= below {
                    return Ok(records);
                }
                let last = record.offset().saturating_add(1) >= below;
                records.push(record);
                if last {
                    return Ok(records);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(records),
            Some(Err(err)) => return Err(Error::Kafka(err)),
        }
    }
}
