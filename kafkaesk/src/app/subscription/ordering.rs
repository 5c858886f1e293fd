//! Which records of a subscription run one after another: documented on
//! [`RecordOrder`].

use std::hash::{DefaultHasher, Hash, Hasher};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::record::RecordSource;

/// Which records of a subscription run one after another.
///
/// In what order a subscription's records may run when its `concurrency`
/// lets several run at once (Confluent's Parallel Consumer calls these
/// ordering modes).
///
/// | order | records that run one after another, in offset order | use it when |
/// |---|---|---|
/// | [`Unordered`](RecordOrder::Unordered) (default) | none: any `concurrency` records at once | records are independent |
/// | [`Key`](RecordOrder::Key) | those with the same key (keyless ones: of the same partition) | what happens to one entity must happen in order |
/// | [`Partition`](RecordOrder::Partition) | those of the same partition | a whole partition is one sequence |
///
/// Whatever the order, commits never pass a record that has not settled, and
/// no record starts after one failed. Records of one lane (a key, or a
/// partition) start in offset order, each once the one before it finished;
/// the records of other lanes go around a busy one, so a hot key holds only
/// its own records. A subscription reads each partition from a queue of the
/// partition's own (librdkafka hands them over a fetch's worth of one
/// partition at a time), and an ordered one takes a fair share of each batch
/// from every partition, so its batches mix partitions, and with them keys;
/// and while handlers wait, a batch takes a few times `concurrency` records
/// and starts each as a slot and its lane free. Under
/// [`Partition`](RecordOrder::Partition) up to one record per assigned
/// partition runs at once: a consumer of 7 partitions runs 7 records at a
/// time, whatever its `concurrency` above that, and goes as fast as its
/// busiest partition allows.
///
/// A record of another key handled ahead of a waiting one does not move
/// its partition's commit past the waiting one: if the batch ends before the
/// waiting record starts (a stop, a pause, a failure), the commit stays
/// before it, and a restart may handle the later record again. A retried
/// record holds its whole partition (see [`policy`](crate::ErrorPolicy)), so
/// retries keep every key in order; and when partitions move to another
/// member, it starts after the last record the previous owner settled, so no
/// record of a key runs before an earlier one has
/// (`tests/key_order_holds_across_rebalances.rs`).
///
/// ```
/// use kafkaesk::subscription::RecordOrder;
/// async fn charge(raw: Vec<u8>) {}
/// let sub = kafkaesk::Subscription::new("payments", charge)
///     .with_concurrency(32)
///     .with_order(RecordOrder::Key);
/// assert_eq!(sub.order(), RecordOrder::Key);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordOrder {
    /// Any records at once, up to the concurrency.
    #[default]
    Unordered,
    /// Records with the same key one after another.
    Key,
    /// Records of the same partition one after another.
    Partition,
}

impl RecordOrder {
    /// The lane of a record: records of one lane run one after another.
    /// `None` when records run in any order.
    #[inline]
    pub(crate) fn lane(self, record: RecordSource<'_>) -> Option<u64> {
        // Checked where the consumer calls: unordered records pay no call.
        if self == RecordOrder::Unordered {
            return None;
        }
        Some(self.ordered_lane(record))
    }

    fn ordered_lane(self, record: RecordSource<'_>) -> u64 {
        let mut hasher = DefaultHasher::new();
        record.shared_topic().hash(&mut hasher);
        record.partition().hash(&mut hasher);
        if self == RecordOrder::Key {
            record.key().hash(&mut hasher);
        }
        hasher.finish()
    }
}

impl FromStr for RecordOrder {
    type Err = Error;

    /// `unordered`, `key` or `partition`.
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "unordered" => Ok(RecordOrder::Unordered),
            "key" => Ok(RecordOrder::Key),
            "partition" => Ok(RecordOrder::Partition),
            other => Err(Error::InvalidSetting {
                name: "order".to_owned(),
                reason: format!("`{other}` is not one of unordered, key, partition"),
            }),
        }
    }
}
