//! Part 3 of issue 32: a subscription's `on_assigned` and `on_revoked` hooks
//! run around its assignments, with Python kafkaesk's
//! `ConsumerRebalanceListener` guarantees.
//!
//! Member A starts alone on a 4-partition stream holding records: its
//! `on_assigned` sees all 4 partitions before its handler runs on any
//! record. Member B joins: A's `on_revoked` sees the partitions it loses
//! once their handled records are committed (the group's commits are read
//! from inside the hook; commits are otherwise 5 minutes apart, so only the
//! commit before the revocation can have made them), and B's `on_assigned`
//! sees its partitions before B handles any of their records. B's hook
//! seeks its first partition back to an offset A has committed past, and
//! B's first record of that partition is at that offset. Every record is
//! handled at least once across A and B, and each member's last hook, as
//! it stops, is its `on_revoked`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::subscription::Position;
use kafkaesk::{Application, Assigned, Record, Revoked, Subscription};
use kafkaesk_tests::{app_builder, committed_offsets, unique_prefix};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Numbered {
    pub partition: i32,
    pub n: u32,
}

impl kafkaesk::Schema for Numbered {
    const ID: &'static str = "HookNumbered";
}

const STREAM: &str = "numbers";
const PARTITIONS: i32 = 4;
/// Records published to each partition before B joins, and again after.
const PER_ROUND: u32 = 5;
/// Where B's hook starts its first partition: before what A committed.
const SEEK_TO: i64 = 2;

#[derive(Debug, Clone)]
enum Event {
    Assigned {
        member: char,
        /// (stream, partition)
        partitions: Vec<(String, i32)>,
    },
    Revoked {
        member: char,
        partitions: Vec<(String, i32)>,
        /// The group's committed offsets of the revoked partitions, read
        /// while the hook ran.
        committed: BTreeMap<i32, i64>,
    },
    Handled {
        member: char,
        partition: i32,
        offset: i64,
    },
}

type Log = Arc<Mutex<Vec<Event>>>;

fn member(prefix: &str, group: &str, name: char, log: &Log, seek: Option<i64>) -> Application {
    let topic = format!("{prefix}{STREAM}");
    let (handled, assigned_log, revoked_log) = (log.clone(), log.clone(), log.clone());
    let group_of_hook = group.to_owned();
    let subscription = Subscription::new(STREAM, move |_: Numbered, record: Record| {
        let log = handled.clone();
        async move {
            log.lock().unwrap().push(Event::Handled {
                member: name,
                partition: record.partition(),
                offset: record.offset(),
            });
        }
    })
    .with_name("numbers")
    .with_group(group)
    .on_assigned(move |assigned: Assigned| {
        let log = assigned_log.clone();
        async move {
            let partitions: Vec<(String, i32)> = assigned
                .partitions()
                .iter()
                .map(|p| (p.stream.clone(), p.partition))
                .collect();
            if let (Some(offset), Some((stream, partition))) = (seek, partitions.first()) {
                assigned.seek(stream, *partition, Position::Offset(offset))?;
            }
            log.lock().unwrap().push(Event::Assigned {
                member: name,
                partitions,
            });
            Ok::<_, kafkaesk::Error>(())
        }
    })
    .on_revoked(move |revoked: Revoked| {
        let log = revoked_log.clone();
        let (group, topic) = (group_of_hook.clone(), topic.clone());
        async move {
            let partitions: Vec<(String, i32)> = revoked
                .partitions()
                .iter()
                .map(|p| (p.stream.clone(), p.partition))
                .collect();
            let committed =
                tokio::task::spawn_blocking(move || committed_offsets(&group, &topic, PARTITIONS))
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|(p, _)| partitions.iter().any(|(_, q)| q == p))
                    .collect();
            log.lock().unwrap().push(Event::Revoked {
                member: name,
                partitions,
                committed,
            });
        }
    });
    app_builder(prefix)
        // Only the commit before a revocation (and the last one at a stop)
        // commits within the test.
        .auto_commit_interval(Duration::from_secs(300))
        .subscribe(subscription)
        .build()
        .unwrap()
}

fn start(app: &Application) -> JoinHandle<kafkaesk::Result<()>> {
    let app = app.clone();
    tokio::spawn(async move { app.consume_forever().await })
}

async fn publish_round(app: &Application, round: u32) {
    for partition in 0..PARTITIONS {
        for i in 0..PER_ROUND {
            let n = round * PER_ROUND + i;
            app.publish(STREAM, &Numbered { partition, n })
                .partition(partition)
                .wait()
                .await
                .unwrap();
        }
    }
}

fn handled(events: &[Event], member: Option<char>) -> BTreeSet<(i32, i64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Handled {
                member: m,
                partition,
                offset,
            } if member.is_none_or(|want| want == *m) => Some((*partition, *offset)),
            _ => None,
        })
        .collect()
}

/// Waits until `done` holds of the log's events, failing with `what` at
/// the deadline. `done` gets the events with the log locked: it must not
/// lock it again.
async fn wait_for(log: &Log, what: &str, done: impl Fn(&[Event]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if done(&log.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; events: {:#?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn numbers(partitions: &[(String, i32)]) -> Vec<i32> {
    partitions.iter().map(|(_, p)| *p).collect()
}

fn assignments(events: &[Event], member: char) -> Vec<Vec<i32>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Assigned {
                member: m,
                partitions,
            } if *m == member => Some(numbers(partitions)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_hooks_run_around_assignment() {
    let prefix = unique_prefix("rebalance-hooks");
    let group = format!("{prefix}numbers");
    let log: Log = Arc::default();
    let all: Vec<i32> = (0..PARTITIONS).collect();

    let publisher = app_builder(&prefix).build().unwrap();
    publisher
        .create_stream(
            STREAM,
            kafkaesk::admin::StreamOptions::new().partitions(PARTITIONS),
        )
        .await
        .unwrap();
    publish_round(&publisher, 0).await;

    // A alone: all four partitions, every record.
    let a = member(&prefix, &group, 'A', &log, None);
    let a_run = start(&a);
    let first_round = (PARTITIONS * PER_ROUND as i32) as usize;
    wait_for(&log, "A handling the first round", |events| {
        handled(events, Some('A')).len() == first_round
    })
    .await;

    // B joins; A gives up partitions and keeps the others.
    let b = member(&prefix, &group, 'B', &log, Some(SEEK_TO));
    let b_run = start(&b);
    wait_for(&log, "the group settling on A and B", |events| {
        let (a_sets, b_sets) = (assignments(events, 'A'), assignments(events, 'B'));
        a_sets.len() >= 2 && !b_sets.is_empty()
    })
    .await;
    publish_round(&publisher, 1).await;

    let events_now = log.lock().unwrap().clone();
    let b_first = assignments(&events_now, 'B').remove(0);
    let sought = b_first[0];
    let everything: BTreeSet<(i32, i64)> = (0..PARTITIONS)
        .flat_map(|p| (0..i64::from(2 * PER_ROUND)).map(move |o| (p, o)))
        .collect();
    wait_for(&log, "every record handled", |events| {
        handled(events, None).is_superset(&everything)
    })
    .await;

    for app in [&a, &b] {
        app.stop();
    }
    a_run.await.unwrap().expect("A ends cleanly");
    b_run.await.unwrap().expect("B ends cleanly");
    let events = log.lock().unwrap().clone();

    // A's first hook saw every partition, before A handled anything.
    match &events[0] {
        Event::Assigned {
            member: 'A',
            partitions,
        } => {
            assert_eq!(numbers(partitions), all);
            assert!(partitions.iter().all(|(stream, _)| stream == STREAM));
        }
        other => panic!("the first event is not A's assignment: {other:?}"),
    }

    // No member handled a record of a partition before its on_assigned
    // gave it the partition, nor after its on_revoked took it.
    let mut owned: HashMap<char, BTreeSet<i32>> = HashMap::new();
    let mut first_of: HashMap<(char, i32), i64> = HashMap::new();
    for event in &events {
        match event {
            Event::Assigned { member, partitions } => {
                owned
                    .entry(*member)
                    .or_default()
                    .extend(numbers(partitions));
            }
            Event::Revoked {
                member, partitions, ..
            } => {
                let set = owned.entry(*member).or_default();
                for p in numbers(partitions) {
                    set.remove(&p);
                }
            }
            Event::Handled {
                member,
                partition,
                offset,
            } => {
                assert!(
                    owned.get(member).is_some_and(|s| s.contains(partition)),
                    "{member} handled {partition}@{offset} outside its hooks: {events:#?}"
                );
                first_of.entry((*member, *partition)).or_insert(*offset);
            }
        }
    }

    // A's on_revoked saw the partitions it lost, with everything it handled
    // of them already committed.
    let a_sets = assignments(&events, 'A');
    let (a_kept, b_got) = (&a_sets[1], &b_first);
    let first_revoke = events
        .iter()
        .find_map(|e| match e {
            Event::Revoked {
                member: 'A',
                partitions,
                committed,
            } => Some((numbers(partitions), committed.clone())),
            _ => None,
        })
        .expect("A's on_revoked ran when B joined");
    let (revoked, committed) = first_revoke;
    assert!(
        b_got.iter().all(|p| revoked.contains(p)),
        "A's on_revoked ({revoked:?}) misses partitions B got ({b_got:?})"
    );
    let expected: BTreeMap<i32, i64> = revoked.iter().map(|&p| (p, i64::from(PER_ROUND))).collect();
    assert_eq!(
        committed, expected,
        "at A's on_revoked, its handled records were committed"
    );

    // The group's partitions were split between A and B.
    let mut split: Vec<i32> = a_kept.iter().chain(b_got).copied().collect();
    split.sort_unstable();
    assert_eq!(split, all, "A kept {a_kept:?}, B got {b_got:?}");
    assert!(!b_got.is_empty() && !a_kept.is_empty());

    // B's seek took effect: its first record of that partition is at the
    // offset sought, although A had committed past it.
    assert_eq!(
        first_of.get(&('B', sought)),
        Some(&SEEK_TO),
        "B's first record of partition {sought}"
    );
    // And nothing was lost.
    assert!(handled(&events, None).is_superset(&everything));

    // Stopping revoked what each member still had, through its on_revoked.
    for name in ['A', 'B'] {
        let last_hook = events.iter().rev().find_map(|e| match e {
            Event::Assigned { member, .. } if *member == name => Some("assigned"),
            Event::Revoked { member, .. } if *member == name => Some("revoked"),
            _ => None,
        });
        assert_eq!(
            last_hook,
            Some("revoked"),
            "{name}'s last hook as it stopped"
        );
    }
}
