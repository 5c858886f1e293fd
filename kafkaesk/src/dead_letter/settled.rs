//! What a replay has settled in one partition of a dead-letter stream, kept
//! in the commits of the replay group, so that no record is republished
//! twice and none that a filter left out is lost.
//!
//! A replay that republishes every record could commit the offset after
//! the last one, as consumers do. A filtered replay cannot: committing past
//! a record it left out would make every later replay skip it. So a commit
//! holds two things:
//!
//! - its offset: every record below it is settled (republished or
//!   refused), or there is no record there;
//! - its metadata: the settled offsets at or above it, as ranges, written
//!   `kafkaesk-replay-settled:1:GAP+LEN,GAP+LEN,...`, each gap counted from
//!   the end of the range before it (from the commit for the first).
//!
//! A replay starts at the commit, skips the offsets the ranges name, and
//! commits the first record it left out (or the end of what it read) with
//! the ranges beyond it. Offsets it read no record at (transaction markers,
//! compacted records) between settled records count as settled, so ranges
//! stay few; only the alternation of records left and settled makes them
//! many. Kafka bounds metadata (`offset.metadata.max.bytes`, 4096 by
//! default), so the ranges are too: at [`MAX_METADATA`] bytes the replay
//! stops settling records past the first left one in that partition, and
//! leaves them for a later replay.

/// What the metadata of a replay commit starts with.
const MARK: &str = "kafkaesk-replay-settled:1:";

/// The longest metadata a replay commits, in bytes: under Kafka's default
/// `offset.metadata.max.bytes` (4096), with room to spare.
pub(crate) const MAX_METADATA: usize = 2048;

/// The most a range adds to the metadata: two 19-digit numbers, `+` and `,`.
const MAX_RANGE_TEXT: usize = 40;

/// The settled offsets of one partition, and what this replay read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Where this replay starts: every offset below is settled or empty.
    start: i64,
    /// Settled offsets at or above `start`, as sorted, disjoint,
    /// non-adjacent half-open ranges.
    ranges: Vec<(i64, i64)>,
    /// The first record this replay left unsettled.
    first_open: Option<i64>,
    /// The offset after the last record this replay read (`start` before
    /// the first).
    read_to: i64,
}

impl Settled {
    /// The state a commit at `offset` with `metadata` describes, for a
    /// partition whose first stored offset is `low`; `None` for `offset`
    /// when the group has no commit. `Err` when the metadata is not a
    /// replay's: replaying then could republish what was replayed.
    pub(crate) fn from_commit(
        offset: Option<i64>,
        metadata: &str,
        low: i64,
    ) -> Result<Settled, String> {
        let committed = offset.unwrap_or(low);
        let mut ranges = Vec::new();
        if !metadata.is_empty() {
            let body = metadata
                .strip_prefix(MARK)
                .ok_or_else(|| "its commit metadata is not a replay's mark".to_owned())?;
            let mut cursor = committed;
            for pair in body.split(',').filter(|p| !p.is_empty()) {
                let bad = || format!("its commit metadata is not a replay's mark (`{pair}`)");
                let (gap, len) = pair.split_once('+').ok_or_else(bad)?;
                let gap: i64 = gap.parse().map_err(|_| bad())?;
                let len: i64 = len.parse().map_err(|_| bad())?;
                if gap < 0 || len <= 0 {
                    return Err(bad());
                }
                let from = cursor.checked_add(gap).ok_or_else(bad)?;
                let to = from.checked_add(len).ok_or_else(bad)?;
                ranges.push((from, to));
                cursor = to;
            }
        }
        // Records below the partition's start are gone: nothing to replay.
        let start = committed.max(low);
        let mut settled = Settled {
            start,
            ranges,
            first_open: None,
            read_to: start,
        };
        settled.ranges.retain(|&(_, to)| to > start);
        settled.fold();
        Ok(settled)
    }

    /// The offset to read from.
    pub(crate) fn start(&self) -> i64 {
        self.start
    }

    /// Whether the record at `offset` was settled by an earlier replay (or
    /// this one).
    pub(crate) fn contains(&self, offset: i64) -> bool {
        offset < self.start
            || self
                .ranges
                .iter()
                .any(|&(from, to)| from <= offset && offset < to)
    }

    /// Whether this replay can settle the record at `offset` and still
    /// remember it within [`MAX_METADATA`].
    pub(crate) fn has_room_for(&self, offset: i64) -> bool {
        match self.first_open {
            // It moves the commit itself.
            None => true,
            Some(_) if self.contains(offset) => true,
            Some(_) => self.metadata_len() + MAX_RANGE_TEXT <= MAX_METADATA,
        }
    }

    /// Notes the record read at `offset`: `settled` when it was settled
    /// now or before, not when it was left for a later replay.
    pub(crate) fn read(&mut self, offset: i64, settled: bool) {
        if settled {
            if self.first_open.is_some() {
                // Offsets between the last record read and this one hold
                // no record: settled as well, so ranges join up.
                self.insert(self.read_to.min(offset), offset.saturating_add(1));
            }
        } else if self.first_open.is_none() {
            self.first_open = Some(offset);
        }
        self.read_to = self.read_to.max(offset.saturating_add(1));
    }

    /// The offset after the last record read.
    pub(crate) fn read_to(&self) -> i64 {
        self.read_to
    }

    /// The commit that remembers this state: its offset and metadata.
    pub(crate) fn commit(&self) -> (i64, String) {
        let mut offset = self.first_open.unwrap_or(self.read_to);
        let mut ranges: Vec<(i64, i64)> = Vec::with_capacity(self.ranges.len());
        for &(from, to) in &self.ranges {
            if to <= offset {
                continue;
            }
            if from <= offset && ranges.is_empty() {
                offset = to;
                continue;
            }
            ranges.push((from.max(offset), to));
        }
        (offset, encode(offset, &ranges))
    }

    /// How many offsets in `from..to` this state does not count as
    /// settled: records not yet replayed (or offsets without one).
    pub(crate) fn unsettled_in(&self, from: i64, to: i64) -> u64 {
        let from = from.max(self.start);
        if to <= from {
            return 0;
        }
        let covered: i64 = self
            .ranges
            .iter()
            .map(|&(a, b)| (b.min(to) - a.max(from)).max(0))
            .sum();
        u64::try_from(to - from - covered).unwrap_or(0)
    }

    fn metadata_len(&self) -> usize {
        self.commit().1.len()
    }

    /// Adds the range `from..to`, merging it with its neighbours.
    fn insert(&mut self, from: i64, to: i64) {
        if to <= from {
            return;
        }
        let (mut from, mut to) = (from, to);
        self.ranges.retain(|&(a, b)| {
            let touches = a <= to && from <= b;
            if touches {
                from = from.min(a);
                to = to.max(b);
            }
            !touches
        });
        let at = self.ranges.partition_point(|&(a, _)| a < from);
        self.ranges.insert(at, (from, to));
        self.fold();
    }

    /// Moves the start over ranges that begin at it (only before this
    /// replay read anything, when the start is still the commit).
    fn fold(&mut self) {
        while let Some(&(from, to)) = self.ranges.first() {
            if from > self.start || self.read_to > self.start {
                break;
            }
            self.start = self.start.max(to);
            self.read_to = self.start;
            self.ranges.remove(0);
        }
    }
}

/// The metadata of a commit at `offset` with the settled `ranges` above it.
fn encode(offset: i64, ranges: &[(i64, i64)]) -> String {
    if ranges.is_empty() {
        return String::new();
    }
    let mut text = String::from(MARK);
    let mut cursor = offset;
    for (i, &(from, to)) in ranges.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("{}+{}", from - cursor, to - from));
        cursor = to;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_of_everything_commits_past_it_without_metadata() {
        let mut s = Settled::from_commit(None, "", 0).unwrap();
        for offset in 0..5 {
            s.read(offset, true);
        }
        assert_eq!(s.commit(), (5, String::new()));
    }

    #[test]
    fn records_left_out_hold_the_commit_and_settled_ones_go_in_the_metadata() {
        let mut s = Settled::from_commit(Some(10), "", 0).unwrap();
        s.read(10, true);
        s.read(11, false); // left by a filter
        s.read(12, true);
        s.read(13, true);
        s.read(14, false);
        s.read(16, true); // 15 holds no record
        let (offset, metadata) = s.commit();
        assert_eq!(offset, 11);
        assert_eq!(metadata, "kafkaesk-replay-settled:1:1+2,1+2");

        // The next replay starts at 11 and skips what was settled.
        let mut next = Settled::from_commit(Some(offset), &metadata, 0).unwrap();
        assert_eq!(next.start(), 11);
        assert!(!next.contains(11));
        assert!(next.contains(12) && next.contains(13) && next.contains(16));
        assert!(!next.contains(14) && !next.contains(17));
        assert_eq!(next.unsettled_in(11, 17), 2);
        // This time it settles 11 and 14: the commit moves past them all.
        for offset in 11..=16 {
            if offset != 15 {
                next.read(offset, true);
            }
        }
        assert_eq!(next.commit(), (17, String::new()));
    }

    #[test]
    fn a_commit_followed_by_a_settled_range_starts_after_it() {
        let s = Settled::from_commit(Some(4), "kafkaesk-replay-settled:1:0+3,2+1", 0).unwrap();
        assert_eq!(s.start(), 7);
        assert!(s.contains(9) && !s.contains(8));
        // Below the partition's start, nothing is left.
        let s = Settled::from_commit(Some(4), "kafkaesk-replay-settled:1:5+1", 20).unwrap();
        assert_eq!(s.start(), 20);
        assert_eq!(s.commit(), (20, String::new()));
    }

    #[test]
    fn metadata_that_is_not_a_replays_is_refused() {
        for bad in [
            "kafkaesk-replay:abc",
            "kafkaesk-replay-settled:1:x+1",
            "kafkaesk-replay-settled:1:1+0",
            "kafkaesk-replay-settled:1:-1+2",
            "kafkaesk-replay-settled:1:9223372036854775807+9",
        ] {
            assert!(Settled::from_commit(Some(0), bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_metadata_stays_within_its_bound() {
        let mut s = Settled::from_commit(Some(0), "", 0).unwrap();
        let mut offset = 0;
        let mut settled_beyond = 0;
        // Alternate left and settled records until there is no room.
        loop {
            s.read(offset, false);
            offset += 1;
            if !s.has_room_for(offset) {
                break;
            }
            s.read(offset, true);
            settled_beyond += 1;
            offset += 1;
        }
        let (commit, metadata) = s.commit();
        assert_eq!(commit, 0);
        assert!(metadata.len() <= MAX_METADATA, "{}", metadata.len());
        assert!(settled_beyond > 100, "{settled_beyond}");
        let back = Settled::from_commit(Some(commit), &metadata, 0).unwrap();
        assert!(back.contains(1) && !back.contains(2));
    }
}
