//! The offset book of one consumer (kept right across rebalances by the
//! consumer's [`RebalanceContext`](super::rebalance::RebalanceContext)).
//!
//! The book holds, per partition, the next offset to read after what was
//! handled or skipped (`processed`) and what the broker last confirmed as
//! committed. Before partitions are revoked, their processed offsets are
//! committed, and the book forgets them: their records belong to the next
//! owner. A revocation count lets background work (retries) find out
//! cheaply that its partition was revoked since it began.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rdkafka::{Offset, TopicPartitionList};

/// A topic (shared name) and a partition.
pub(crate) type TopicPartition = (Arc<str>, i32);

/// Offsets shared between the consumer loop and librdkafka's rebalance callbacks.
#[derive(Default)]
pub(crate) struct OffsetBook {
    /// Next offset to read, per partition, for records handled or skipped.
    pub(crate) processed: HashMap<TopicPartition, i64>,
    /// What the broker last confirmed as committed.
    committed: HashMap<TopicPartition, i64>,
    pub(crate) assigned: HashSet<TopicPartition>,
    /// How many revocations happened, so the consumer loop notices one cheaply.
    pub(crate) revocations: u64,
    /// The revocation count at each partition's latest revocation.
    revoked_at: HashMap<TopicPartition, u64>,
    /// Partitions paused by [`Application::pause`](crate::Application::pause)
    /// and its kin (not by retries).
    pub(crate) paused: HashSet<TopicPartition>,
    /// Per partition, the offsets of records being moved to a retry stream
    /// whose write the broker has not acknowledged: its processed offset
    /// stays at the first, so nothing past it is committed before the move
    /// is safe. The records behind it are handled meanwhile.
    fences: HashMap<TopicPartition, BTreeSet<i64>>,
    /// Per fenced partition, where its processed offset goes once every
    /// fence is lifted.
    past_fences: HashMap<TopicPartition, i64>,
    /// What every commit carries as metadata: a replay's mark.
    pub(crate) commit_metadata: Option<String>,
    /// The offsets of the latest commit the broker refused or never
    /// answered, per partition, so a wait for one commit learns that it
    /// failed, and not that an older one did.
    failed: HashMap<TopicPartition, i64>,
}

impl OffsetBook {
    /// Processed offsets the broker has not confirmed, of every partition or
    /// of `only` those.
    pub(crate) fn uncommitted(&self, only: Option<&HashSet<TopicPartition>>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &self.processed {
            if only.is_some_and(|set| !set.contains(tp)) {
                continue;
            }
            if self.committed.get(tp) != Some(offset) {
                // Offsets come from librdkafka, so the partition is valid.
                let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset));
            }
        }
        self.mark(&tpl);
        tpl
    }

    /// Gives the commits of `tpl` the subscription's metadata, if it has any.
    pub(crate) fn mark(&self, tpl: &TopicPartitionList) {
        if let Some(metadata) = &self.commit_metadata {
            for mut elem in tpl.elements() {
                elem.set_metadata(metadata);
            }
        }
    }

    /// Whether the partition is assigned and was not revoked since the
    /// revocation count was `generation`.
    pub(crate) fn owns(&self, tp: &TopicPartition, generation: u64) -> bool {
        self.assigned.contains(tp) && self.revoked_at.get(tp).is_none_or(|&at| at <= generation)
    }

    /// Records what the broker confirmed as committed.
    pub(crate) fn confirm(&mut self, tpl: &TopicPartitionList) {
        for elem in tpl.elements() {
            if let Offset::Offset(offset) = elem.offset() {
                self.committed
                    .insert((Arc::from(elem.topic()), elem.partition()), offset);
            }
        }
    }

    /// Records that the commit of `tpl` failed.
    pub(crate) fn commit_failed(&mut self, tpl: &TopicPartitionList) {
        for elem in tpl.elements() {
            if let Offset::Offset(offset) = elem.offset() {
                self.failed
                    .insert((Arc::from(elem.topic()), elem.partition()), offset);
            }
        }
    }

    /// Forgets the failures of `tpl`'s partitions, as `tpl` is sent again.
    pub(crate) fn forget_failures(&mut self, tpl: &TopicPartitionList) {
        for elem in tpl.elements() {
            self.failed
                .remove(&(Arc::from(elem.topic()), elem.partition()));
        }
    }

    /// Whether a commit of one of `tpl`'s offsets failed (an older commit
    /// of lower offsets failing does not count) and was not confirmed
    /// since.
    pub(crate) fn failed_to_commit(&self, tpl: &TopicPartitionList) -> bool {
        tpl.elements().iter().any(|elem| {
            let tp = (Arc::from(elem.topic()), elem.partition());
            let Offset::Offset(offset) = elem.offset() else {
                return false;
            };
            self.failed.get(&tp) == Some(&offset) && self.committed.get(&tp) != Some(&offset)
        })
    }

    /// Whether every offset of `tpl` is confirmed as committed, or belongs
    /// to a partition revoked since (its new owner commits it).
    pub(crate) fn confirmed(&self, tpl: &TopicPartitionList) -> bool {
        tpl.elements().iter().all(|elem| {
            let tp = (Arc::from(elem.topic()), elem.partition());
            !self.assigned.contains(&tp)
                || matches!(elem.offset(), Offset::Offset(o) if self.committed.get(&tp) == Some(&o))
        })
    }

    /// Moves a partition's processed offset forward to `next`, if the
    /// partition is still assigned: a record of a partition revoked meanwhile
    /// belongs to another member now.
    pub(crate) fn advance(&mut self, tp: TopicPartition, next: i64) {
        if !self.assigned.contains(&tp) {
            return;
        }
        let next = match self.fences.get(&tp).and_then(BTreeSet::first) {
            Some(&fence) => {
                let past = self.past_fences.entry(tp.clone()).or_insert(next);
                *past = (*past).max(next);
                next.min(fence)
            }
            None => next,
        };
        let entry = self.processed.entry(tp).or_insert(next);
        *entry = (*entry).max(next);
    }

    /// Holds the partition's processed offset at `offset` until
    /// [`unfence`](Self::unfence): a record moved to a retry stream, whose
    /// write is not acknowledged yet.
    pub(crate) fn fence(&mut self, tp: TopicPartition, offset: i64) {
        if self.assigned.contains(&tp) {
            self.fences.entry(tp).or_default().insert(offset);
        }
    }

    /// Lifts the fence at `offset`: the move was acknowledged. The
    /// partition's processed offset goes as far as its records settled
    /// meanwhile allow.
    pub(crate) fn unfence(&mut self, tp: &TopicPartition, offset: i64) {
        let Some(fences) = self.fences.get_mut(tp) else {
            // Revoked since: its new owner reads the record again.
            return;
        };
        fences.remove(&offset);
        let first = fences.first().copied();
        if first.is_none() {
            self.fences.remove(tp);
        }
        let Some(past) = self.past_fences.get(tp).copied() else {
            return;
        };
        let next = first.map_or(past, |fence| past.min(fence));
        if first.is_none() {
            self.past_fences.remove(tp);
        }
        let entry = self.processed.entry(tp.clone()).or_insert(next);
        *entry = (*entry).max(next);
    }

    pub(super) fn revoke(&mut self, revoked: &HashSet<TopicPartition>) {
        self.revocations += 1;
        let generation = self.revocations;
        for tp in revoked {
            self.revoked_at.insert(tp.clone(), generation);
            self.processed.remove(tp);
            self.fences.remove(tp);
            self.past_fences.remove(tp);
            self.committed.remove(tp);
            self.assigned.remove(tp);
            self.paused.remove(tp);
        }
    }

    pub(crate) fn assigned_sorted(&self) -> Vec<(String, i32)> {
        sorted(&self.assigned)
    }

    pub(crate) fn paused_sorted(&self) -> Vec<(String, i32)> {
        sorted(&self.paused)
    }
}

fn sorted(partitions: &HashSet<TopicPartition>) -> Vec<(String, i32)> {
    let mut v: Vec<_> = partitions
        .iter()
        .map(|(t, p)| (t.to_string(), *p))
        .collect();
    v.sort();
    v
}

/// A list of one partition, for pause and resume.
pub(crate) fn partition_list(tp: &TopicPartition) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    tpl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_being_moved_holds_the_commit_until_its_write_is_acknowledged() {
        let tp: TopicPartition = ("t".into(), 0);
        let mut book = OffsetBook::default();
        book.assigned.insert(tp.clone());
        book.advance(tp.clone(), 5);
        // Records 5..=9 settle; 6 and 8 are being moved.
        book.fence(tp.clone(), 6);
        book.fence(tp.clone(), 8);
        book.advance(tp.clone(), 10);
        assert_eq!(book.processed.get(&tp), Some(&6));
        book.unfence(&tp, 8);
        assert_eq!(
            book.processed.get(&tp),
            Some(&6),
            "6 is not acknowledged yet"
        );
        book.unfence(&tp, 6);
        assert_eq!(book.processed.get(&tp), Some(&10));
        // Later records move it on as before.
        book.advance(tp.clone(), 12);
        assert_eq!(book.processed.get(&tp), Some(&12));
        // A revoked partition forgets its fences.
        book.fence(tp.clone(), 12);
        book.revoke(&HashSet::from([tp.clone()]));
        book.unfence(&tp, 12);
        assert_eq!(book.processed.get(&tp), None);
    }

    #[test]
    fn a_partition_revoked_since_a_generation_is_no_longer_owned() {
        let tp: TopicPartition = ("t".into(), 0);
        let mut book = OffsetBook::default();
        book.assigned.insert(tp.clone());
        assert!(book.owns(&tp, 0));
        book.revoke(&HashSet::from([tp.clone()]));
        book.assigned.insert(tp.clone());
        assert!(
            !book.owns(&tp, 0),
            "revoked after retries began at generation 0"
        );
        assert!(
            book.owns(&tp, 1),
            "assigned again before generation 1 began"
        );
        book.assigned.remove(&tp);
        assert!(!book.owns(&tp, 1));
    }

    #[test]
    fn a_failed_commit_counts_for_its_own_offsets_only() {
        let mut book = OffsetBook::default();
        book.assigned.insert(("t".into(), 0));
        book.advance(("t".into(), 0), 5);
        let older = book.uncommitted(None);
        book.advance(("t".into(), 0), 9);
        let last = book.uncommitted(None);
        // The older, periodic commit fails: the last one may still land.
        book.commit_failed(&older);
        assert!(!book.failed_to_commit(&last));
        book.commit_failed(&last);
        assert!(book.failed_to_commit(&last));
        // Sent again and confirmed: no longer failed.
        book.confirm(&last);
        assert!(!book.failed_to_commit(&last));
    }

    #[test]
    fn only_changed_offsets_are_committed() {
        let mut book = OffsetBook::default();
        book.assigned.insert(("t".into(), 0));
        book.assigned.insert(("t".into(), 1));
        book.advance(("t".into(), 0), 5);
        book.advance(("t".into(), 1), 7);
        book.committed.insert(("t".into(), 1), 7);
        let tpl = book.uncommitted(None);
        assert_eq!(tpl.count(), 1);
        assert!(!book.confirmed(&tpl));
        book.confirm(&tpl);
        assert!(book.confirmed(&tpl));
        assert_eq!(book.uncommitted(None).count(), 0);
    }

    #[test]
    fn offsets_never_go_back_and_skip_unassigned_partitions() {
        let mut book = OffsetBook::default();
        book.assigned.insert(("t".into(), 0));
        book.advance(("t".into(), 0), 9);
        book.advance(("t".into(), 0), 4);
        book.advance(("t".into(), 1), 3);
        assert_eq!(book.processed.get(&("t".into(), 0)), Some(&9));
        assert!(!book.processed.contains_key(&("t".into(), 1)));
    }
}
