//! The ledger of a cluster fault test: per key, when it was published and
//! what the publisher was told (the partition and offset acknowledged, or
//! the error), every handler run with its partition, offset and time, and
//! the group's committed offsets as sampled from the brokers. [`Ledger::audit`]
//! turns it into the figures the tests assert and the table reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the broker said it stored a key (partition, offset), or the error
/// the publisher was given.
pub type Placement = Result<(i32, i64), String>;

/// What happened to one published key.
#[derive(Debug, Clone)]
struct Publish {
    called: Instant,
    answer: Option<(Instant, Placement)>,
}

/// One handler run.
#[derive(Debug, Clone, Copy)]
struct Run {
    key: u64,
    partition: i32,
    offset: i64,
    at: Instant,
}

/// The ledger; every method takes `&self`, for the publisher's, the
/// handlers' and the sampler's threads at once.
#[derive(Debug, Default)]
pub struct Ledger {
    published: Mutex<BTreeMap<u64, Publish>>,
    runs: Mutex<Vec<Run>>,
    /// (when seen, partition, committed offset), in the order sampled.
    commits: Mutex<Vec<(Instant, i32, i64)>>,
}

/// The audit of a ledger.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// Keys published (each publish call once).
    pub published: usize,
    /// Keys the broker acknowledged.
    pub acknowledged: usize,
    /// Publishes that returned an error to the caller: (key, error).
    pub errors: Vec<(u64, String)>,
    /// Publishes never answered.
    pub unanswered: Vec<u64>,
    /// Acknowledged keys no handler ever ran for.
    pub lost: Vec<u64>,
    /// Handler runs in all.
    pub runs: usize,
    /// Handler runs beyond the first for a key.
    pub duplicates: usize,
    /// Runs of a key again after the group had committed past its offset:
    /// a duplicate that at-least-once does not allow.
    pub below_commit: Vec<String>,
    /// Keys handled at a partition and offset other than the acknowledged
    /// one: the log holds them twice (a producer's retry stored again).
    pub stored_twice: Vec<u64>,
    /// Acknowledged keys whose offset the group had not committed at the end.
    pub uncommitted: Vec<u64>,
    /// The longest a publish waited for its answer.
    pub publish_stall: Duration,
    /// The longest an acknowledged key waited for its first handler run.
    pub consume_stall: Duration,
}

impl Ledger {
    /// `key` is about to be published.
    pub fn called(&self, key: u64) {
        self.published.lock().unwrap().insert(
            key,
            Publish {
                called: Instant::now(),
                answer: None,
            },
        );
    }

    /// The publisher was told `outcome` for `key`.
    pub fn answered(&self, key: u64, outcome: Placement) {
        if let Some(publish) = self.published.lock().unwrap().get_mut(&key) {
            publish.answer = Some((Instant::now(), outcome));
        }
    }

    /// A handler ran for `key`, read at `partition` and `offset`.
    pub fn handled(&self, key: u64, partition: i32, offset: i64) {
        self.runs.lock().unwrap().push(Run {
            key,
            partition,
            offset,
            at: Instant::now(),
        });
    }

    /// The brokers said the group's committed offset of `partition` is `offset`.
    pub fn committed(&self, partition: i32, offset: i64) {
        self.commits
            .lock()
            .unwrap()
            .push((Instant::now(), partition, offset));
    }

    /// Acknowledged keys that no handler ran for yet.
    pub fn unhandled(&self) -> Vec<u64> {
        let handled: std::collections::HashSet<u64> =
            self.runs.lock().unwrap().iter().map(|r| r.key).collect();
        self.acknowledged()
            .into_iter()
            .filter(|(key, _)| !handled.contains(key))
            .map(|(key, _)| key)
            .collect()
    }

    /// Every acknowledged key with where it was stored.
    pub fn acknowledged(&self) -> Vec<(u64, (i32, i64))> {
        self.published
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(key, p)| match &p.answer {
                Some((_, Ok(place))) => Some((*key, *place)),
                _ => None,
            })
            .collect()
    }

    /// The figures, with `final_commits` the group's committed offset of
    /// each partition once the worker stopped.
    pub fn audit(&self, final_commits: &HashMap<i32, i64>) -> Audit {
        let published = self.published.lock().unwrap().clone();
        let mut runs = self.runs.lock().unwrap().clone();
        runs.sort_by_key(|r| r.at);
        let mut audit = Audit {
            published: published.len(),
            runs: runs.len(),
            ..Audit::default()
        };

        // Per partition: the highest committed offset seen by each moment.
        let mut seen: HashMap<i32, Vec<(Instant, i64)>> = HashMap::new();
        for (at, partition, offset) in self.commits.lock().unwrap().iter() {
            let line = seen.entry(*partition).or_default();
            let highest = line.last().map_or(*offset, |(_, h)| (*h).max(*offset));
            line.push((*at, highest));
        }
        let committed_before = |partition: i32, at: Instant| -> Option<i64> {
            let line = seen.get(&partition)?;
            let before = line.partition_point(|(seen_at, _)| *seen_at < at);
            before.checked_sub(1).map(|i| line[i].1)
        };

        let mut places: HashMap<u64, Vec<(i32, i64)>> = HashMap::new();
        let mut first_run: HashMap<u64, Run> = HashMap::new();
        for run in &runs {
            places
                .entry(run.key)
                .or_default()
                .push((run.partition, run.offset));
            if let Some(first) = first_run.get(&run.key) {
                audit.duplicates += 1;
                if let Some(committed) = committed_before(run.partition, run.at) {
                    if run.offset < committed {
                        audit.below_commit.push(format!(
                            "key {} at {}/{} ran again {:?} after its first run, \
                             though the group had committed {committed}",
                            run.key,
                            run.partition,
                            run.offset,
                            run.at - first.at
                        ));
                    }
                }
            } else {
                first_run.insert(run.key, *run);
            }
        }

        for (key, publish) in &published {
            let Some((answered, outcome)) = &publish.answer else {
                audit.unanswered.push(*key);
                continue;
            };
            audit.publish_stall = audit
                .publish_stall
                .max(answered.saturating_duration_since(publish.called));
            let (partition, offset) = match outcome {
                Ok(place) => *place,
                Err(error) => {
                    audit.errors.push((*key, error.clone()));
                    continue;
                }
            };
            audit.acknowledged += 1;
            match first_run.get(key) {
                None => audit.lost.push(*key),
                Some(run) => {
                    audit.consume_stall = audit
                        .consume_stall
                        .max(run.at.saturating_duration_since(*answered));
                    if places[key]
                        .iter()
                        .any(|place| *place != (partition, offset))
                    {
                        audit.stored_twice.push(*key);
                    }
                }
            }
            if final_commits.get(&partition).is_none_or(|c| *c <= offset) {
                audit.uncommitted.push(*key);
            }
        }
        audit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_again_below_a_commit_seen_before_it_is_flagged() {
        let ledger = Ledger::default();
        ledger.called(1);
        ledger.answered(1, Ok((0, 5)));
        ledger.called(2);
        ledger.answered(2, Ok((0, 6)));
        ledger.handled(1, 0, 5);
        ledger.handled(2, 0, 6);
        // Committed up to 6: key 1 (offset 5) is done, key 2 is not.
        ledger.committed(0, 6);
        std::thread::sleep(Duration::from_millis(2));
        ledger.handled(2, 0, 6);
        ledger.handled(1, 0, 5);
        let audit = ledger.audit(&HashMap::from([(0, 7)]));
        assert_eq!(audit.duplicates, 2);
        assert_eq!(audit.below_commit.len(), 1, "{audit:?}");
        assert!(audit.below_commit[0].starts_with("key 1 "));
        assert!(audit.lost.is_empty() && audit.uncommitted.is_empty());
    }

    #[test]
    fn acknowledged_and_unhandled_is_lost_and_uncommitted() {
        let ledger = Ledger::default();
        ledger.called(1);
        ledger.answered(1, Ok((2, 0)));
        ledger.called(2);
        ledger.answered(2, Err("timed out".into()));
        let audit = ledger.audit(&HashMap::new());
        assert_eq!(audit.lost, vec![1]);
        assert_eq!(audit.uncommitted, vec![1]);
        assert_eq!(audit.errors.len(), 1);
        assert_eq!(audit.acknowledged, 1);
    }
}
