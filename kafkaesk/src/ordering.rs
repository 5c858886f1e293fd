//! In what order a subscription's records may run when its `concurrency`
//! lets several run at once (Confluent's Parallel Consumer calls these
//! ordering modes).
//!
//! | order | records that run one after another, in offset order | use it when |
//! |---|---|---|
//! | [`Unordered`](RecordOrder::Unordered) (default) | none: any `concurrency` records at once | records are independent |
//! | [`Key`](RecordOrder::Key) | those with the same key (keyless ones: of the same partition) | what happens to one entity must happen in order |
//! | [`Partition`](RecordOrder::Partition) | those of the same partition | a whole partition is one sequence |
//!
//! Whatever the order, each partition's records start in offset order,
//! commits never pass a record that has not settled, and no record starts
//! after one failed. Under [`Key`](RecordOrder::Key), a record whose key is
//! still running waits for it, and the records behind it wait too (they
//! start in order): with many keys that is rare, and the records of every
//! other key keep running meanwhile; a few hot keys hold the rest back more
//! often. Under [`Partition`](RecordOrder::Partition), each partition's
//! records are read from a queue of the partition's own, and the partitions
//! take turns in every batch, so up to one record per assigned partition
//! runs at once: a consumer of 7 partitions runs 7 records at a time, whatever
//! its `concurrency` above that. A retried record holds its whole partition
//! (see [`policy`](crate::policy)), so retries keep every key in order; and
//! when partitions move to another member, it starts after the last record
//! the previous owner settled, so no record of a key runs before an earlier
//! one has (`tests/key_order_holds_across_rebalances.rs`).
//!
//! ```
//! use kafkaesk::ordering::RecordOrder;
//! async fn charge(raw: Vec<u8>) {}
//! let sub = kafkaesk::Subscription::new("payments", charge)
//!     .concurrency(32)
//!     .order(RecordOrder::Key);
//! assert_eq!(sub.get_order(), RecordOrder::Key);
//! ```

use std::hash::{DefaultHasher, Hash, Hasher};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::record::RecordSource;

/// Which records of a subscription run one after another; see the
/// [module docs](self).
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
    pub(crate) fn lane(self, record: RecordSource<'_>) -> Option<u64> {
        if self == RecordOrder::Unordered {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        record.shared_topic().hash(&mut hasher);
        record.partition().hash(&mut hasher);
        if self == RecordOrder::Key {
            record.key().hash(&mut hasher);
        }
        Some(hasher.finish())
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
