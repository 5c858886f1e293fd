//! Fault test 3 of issue 6, after Python kafkaesk's
//! `test_consume_every_message_once_during_rebalance`: five applications in
//! one group on a 7-partition topic, each stopped and restarted in turn while
//! a producer publishes. Every message is handled exactly once, because each
//! member commits what it handled before its partitions move: at shutdown and
//! before revocation.
//!
//! On Apache Kafka a handover is clean: the broker never has a partition
//! assigned to two members at once, so any duplicate is kafkaesk's fault,
//! and the test allows none.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::{Application, Record, Subscription};
use kafkaesk_tests::{
    captured_warnings, record_reliability, require_broker, unique_prefix, ReliabilityRow,
};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Tick {
    pub n: u64,
}

impl kafkaesk::Schema for Tick {
    const ID: &'static str = "Tick";
}

/// Every handler run: number, partition, offset and the member that ran it.
type Ledger = Arc<Mutex<Vec<(u64, i32, i64, usize)>>>;

/// When the ledger's entries were made, in ms since the test started, in the
/// same order: to set duplicates against who owned the partition when.
static TIMES: Mutex<Vec<u128>> = Mutex::new(Vec::new());
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_ms() -> u128 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis()
}

/// Partitions each member's consumer had assigned, sampled: (ms, member, partitions).
type Samples = Arc<Mutex<Vec<(u128, usize, Vec<i32>)>>>;

const MEMBERS: usize = 5;
const MESSAGES: u64 = 1000;

fn app_builder(servers: &str, prefix: &str) -> kafkaesk::ApplicationBuilder {
    Application::builder()
        .kafka_servers([servers])
        .topic_prefix(prefix)
        .auto_commit_interval(Duration::from_millis(500))
}

fn member(servers: &str, prefix: &str, group: &str, id: usize, ledger: Ledger) -> Application {
    app_builder(servers, prefix)
        .subscribe(
            Subscription::new("ticks", move |tick: Tick, record: Record| {
                let ledger = ledger.clone();
                async move {
                    // Long enough that a member often has a record in hand
                    // when its partitions are revoked.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let mut ledger = ledger.lock().unwrap();
                    TIMES.lock().unwrap().push(now_ms());
                    ledger.push((tick.n, record.partition(), record.offset(), id));
                }
            })
            .with_name("ticks")
            .with_group(group),
        )
        .build()
        .unwrap()
}

fn start(app: &Application) -> JoinHandle<kafkaesk::Result<()>> {
    let app = app.clone();
    tokio::spawn(async move { app.consume_forever().await })
}

fn handled(ledger: &Ledger) -> BTreeSet<u64> {
    ledger.lock().unwrap().iter().map(|e| e.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliability_every_message_handled_once_while_members_restart_in_turn() {
    let warnings = captured_warnings();
    let started = Instant::now();
    let servers = require_broker();
    let prefix = unique_prefix("rebalance");
    let group = format!("{prefix}group");
    let ledger: Ledger = Arc::default();

    // The first message creates the topic with the default 7 partitions.
    let producer = app_builder(&servers, &prefix).build().unwrap();
    producer
        .publish_and_wait("ticks", &Tick { n: 0 })
        .await
        .unwrap();

    now_ms();
    let live: Arc<Mutex<BTreeMap<usize, Application>>> = Arc::default();
    let mut members: Vec<(Application, JoinHandle<kafkaesk::Result<()>>)> = (0..MEMBERS)
        .map(|id| {
            let app = member(&servers, &prefix, &group, id, ledger.clone());
            live.lock().unwrap().insert(id, app.clone());
            let task = start(&app);
            (app, task)
        })
        .collect();
    let samples: Samples = Arc::default();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (live, samples, sampling) = (live.clone(), samples.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                let apps: Vec<(usize, Application)> = live
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(id, app)| (*id, app.clone()))
                    .collect();
                for (id, app) in apps {
                    let partitions = app
                        .health_check()
                        .await
                        .consumers
                        .iter()
                        .flat_map(|c| c.assigned.iter().map(|(_, p)| *p))
                        .collect();
                    samples.lock().unwrap().push((now_ms(), id, partitions));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !handled(&ledger).contains(&0) {
        assert!(Instant::now() < deadline, "the group never consumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let publisher = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut acks = Vec::new();
            for n in 1..MESSAGES {
                acks.push(producer.publish("ticks", &Tick { n }).await.unwrap());
                if n % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            for ack in acks {
                ack.await.expect("every publish is acknowledged");
            }
        })
    };

    // Each member in turn leaves the group and a new one takes its place,
    // while messages flow.
    let mut restarts = 0;
    for (id, slot) in members.iter_mut().enumerate() {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        live.lock().unwrap().remove(&id);
        slot.0.stop();
        let stopped = std::mem::replace(&mut slot.1, tokio::spawn(async { Ok(()) }));
        stopped
            .await
            .unwrap()
            .expect("a stopped member ends cleanly");
        let app = member(&servers, &prefix, &group, MEMBERS + id, ledger.clone());
        live.lock().unwrap().insert(MEMBERS + id, app.clone());
        let task = start(&app);
        *slot = (app, task);
        restarts += 1;
    }
    publisher.await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(40);
    while handled(&ledger).len() < MESSAGES as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late duplicates would come from a rebalance still settling.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    sampler.await.unwrap();
    for (app, task) in members {
        app.stop();
        task.await.unwrap().expect("members end cleanly");
    }

    let runs = ledger.lock().unwrap().clone();
    let mut by_number: BTreeMap<u64, Vec<(i32, i64, usize)>> = BTreeMap::new();
    for (n, partition, offset, member) in &runs {
        by_number
            .entry(*n)
            .or_default()
            .push((*partition, *offset, *member));
    }
    let lost: Vec<u64> = (0..MESSAGES)
        .filter(|n| !by_number.contains_key(n))
        .collect();
    let duplicated: BTreeMap<u64, Vec<(i32, i64, usize)>> = by_number
        .into_iter()
        .filter(|(_, handled)| handled.len() > 1)
        .collect();
    let duplicates = runs.len() - (MESSAGES as usize - lost.len());

    let times = TIMES.lock().unwrap().clone();
    record_reliability(&ReliabilityRow {
        key: "3",
        scenario: "Rebalance: 5 members on 7 partitions, each restarted in turn while publishing",
        test: "reliability_rebalance::reliability_every_message_handled_once_while_members_restart_in_turn",
        messages: MESSAGES as usize,
        faults: format!("{restarts} member restarts (stop, rejoin)"),
        lost: lost.len(),
        duplicates,
        bound: "0 lost, 0 duplicates".to_owned(),
    });
    eprintln!(
        "rebalance: {} messages, {} runs, {} lost, {} duplicates, {:?}",
        MESSAGES,
        runs.len(),
        lost.len(),
        duplicates,
        started.elapsed()
    );
    assert!(lost.is_empty(), "never handled: {lost:?}");
    let prefix_marker = prefix.trim_end_matches('.');
    let commit_warnings: Vec<String> = warnings
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains("commit") || w.contains(prefix_marker))
        .cloned()
        .collect();
    let duplicated_partitions: BTreeSet<i32> = duplicated
        .values()
        .flat_map(|runs: &Vec<(i32, i64, usize)>| runs.iter().map(|r| r.0))
        .collect();
    let timelines: Vec<String> = duplicated_partitions
        .iter()
        .map(|p| timeline(&runs, &times, &samples.lock().unwrap(), *p))
        .collect();
    assert!(
        duplicated.is_empty(),
        "handled more than once after a clean handover, as number: \
         [(partition, offset, member)]: {duplicated:?}\n\
         commit warnings logged meanwhile (all tests of this process):\n{}\n\
         who owned the partition when, as kafkaesk's rebalance callbacks saw it:\n{}",
        commit_warnings.join("\n"),
        timelines.join("\n")
    );
    assert_eq!(duplicates, 0);
}

/// For `partition`: per member, the intervals (ms) it had the partition
/// assigned, sampled, and when it handled which offsets.
fn timeline(
    runs: &[(u64, i32, i64, usize)],
    times: &[u128],
    samples: &[(u128, usize, Vec<i32>)],
    partition: i32,
) -> String {
    let owned = assigned_intervals(samples, partition);
    let mut handled: BTreeMap<usize, (u128, u128, i64, i64)> = BTreeMap::new();
    for ((_, p, offset, member), at) in runs.iter().zip(times) {
        if *p != partition {
            continue;
        }
        let e = handled
            .entry(*member)
            .or_insert((*at, *at, *offset, *offset));
        *e = (
            e.0.min(*at),
            e.1.max(*at),
            e.2.min(*offset),
            e.3.max(*offset),
        );
    }
    format!(
        "partition {partition}: assigned (member: [(from ms, to ms)]) {owned:?}; \
         handled (member: (first ms, last ms, lowest offset, highest offset)) {handled:?}"
    )
}

/// Per member, the intervals (ms) its samples showed `partition` assigned.
fn assigned_intervals(
    samples: &[(u128, usize, Vec<i32>)],
    partition: i32,
) -> BTreeMap<usize, Vec<(u128, u128)>> {
    let mut owned: BTreeMap<usize, Vec<(u128, u128)>> = BTreeMap::new();
    let mut last_seen: BTreeMap<usize, bool> = BTreeMap::new();
    for (at, member, partitions) in samples {
        let has = partitions.contains(&partition);
        let intervals = owned.entry(*member).or_default();
        match (has, last_seen.get(member).copied().unwrap_or(false)) {
            (true, true) => {
                if let Some(last) = intervals.last_mut() {
                    last.1 = *at;
                }
            }
            (true, false) => intervals.push((*at, *at)),
            _ => {}
        }
        last_seen.insert(*member, has);
    }
    owned
}
