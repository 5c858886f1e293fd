//! Ordering modes through rebalances: while records flow, a second member
//! joins the group and then the first one leaves, so partitions move twice
//! with records in hand, failing first attempts and retries pending. Per key
//! (`order = key`) and per partition (`order = partition`, read through
//! partition queues), no member runs two records of a lane at once, and no
//! record finishes before every earlier record of its key has finished.
//! Redeliveries after a move are allowed (at least once) but never skip.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::subscription::RecordOrder;
use kafkaesk::{Application, ErrorPolicy, Subscriber, Subscription};
use kafkaesk_tests::{app_builder, unique_prefix};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct KeyedStep {
    pub key: String,
    pub seq: u32,
}

impl kafkaesk::Schema for KeyedStep {
    const ID: &'static str = "KeyedStep";
}

const KEYS: u32 = 12;
const PER_KEY: u32 = 40;

#[derive(Default)]
struct Ledger {
    /// Per member, the lanes (key or partition) of the handlers running.
    running: HashMap<(usize, String), ()>,
    /// Handlers that started while their member ran another of their lane.
    overlaps: Vec<String>,
    /// Finished records in the order they finished: key, seq, member.
    finished: Vec<(String, u32, usize)>,
    attempts: HashMap<(String, u32), u32>,
}

fn member(
    prefix: &str,
    group: &str,
    order: RecordOrder,
    id: usize,
    ledger: Arc<Mutex<Ledger>>,
) -> Application {
    let subscription =
        Subscription::new("steps", move |step: KeyedStep, subscriber: Subscriber| {
            let ledger = ledger.clone();
            async move {
                let lane = match order {
                    RecordOrder::Partition => subscriber.record().partition().to_string(),
                    _ => step.key.clone(),
                };
                let attempt = {
                    let mut ledger = ledger.lock().unwrap();
                    if ledger.running.insert((id, lane.clone()), ()).is_some() {
                        ledger.overlaps.push(format!("{lane} on member {id}"));
                    }
                    let attempt = ledger
                        .attempts
                        .entry((step.key.clone(), step.seq))
                        .or_default();
                    *attempt += 1;
                    *attempt
                };
                // Long enough that members hold records when partitions move;
                // different per record, so later records would overtake.
                let wait = 4 + (step.seq * 7 + step.key.len() as u32 * 3) % 9;
                tokio::time::sleep(Duration::from_millis(u64::from(wait))).await;
                let mut ledger = ledger.lock().unwrap();
                ledger.running.remove(&(id, lane));
                if (step.seq * KEYS + step.key.len() as u32) % 11 == 5 && attempt == 1 {
                    return Err(std::io::Error::other("first attempt fails"));
                }
                ledger.finished.push((step.key, step.seq, id));
                Ok(())
            }
        })
        .with_name("steps")
        .with_group(group)
        .with_concurrency(8)
        .with_order(order)
        .on_error(ErrorPolicy::retry(3, Duration::from_millis(20)));
    app_builder(prefix).subscribe(subscription).build().unwrap()
}

fn start(app: &Application) -> JoinHandle<kafkaesk::Result<()>> {
    let app = app.clone();
    tokio::spawn(async move { app.consume_forever().await })
}

fn distinct_finished(ledger: &Mutex<Ledger>) -> usize {
    let ledger = ledger.lock().unwrap();
    let distinct: HashSet<(&String, u32)> =
        ledger.finished.iter().map(|(k, s, _)| (k, *s)).collect();
    distinct.len()
}

/// Publishes every step, interleaving keys, over a few seconds: each round
/// of keys is queued at once, so batches hold several records and members
/// taking partitions over start from inside them.
async fn publish_steps(app: Application) {
    for seq in 0..PER_KEY {
        let mut deliveries = Vec::with_capacity(KEYS as usize);
        for k in 0..KEYS {
            let key = format!("entity-{k}");
            let step = KeyedStep {
                key: key.clone(),
                seq,
            };
            deliveries.push(app.publish("steps", &step).key(key.as_str()).await.unwrap());
        }
        for delivery in deliveries {
            delivery.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

async fn run_across_rebalances(order: RecordOrder) {
    let prefix = unique_prefix("order-rebalance");
    let group = format!("{prefix}steps");
    let ledger: Arc<Mutex<Ledger>> = Arc::default();

    let publisher = app_builder(&prefix).build().unwrap();
    // The stream exists (7 partitions) before anyone joins.
    publisher
        .create_stream("steps", kafkaesk::admin::StreamOptions::new().partitions(7))
        .await
        .unwrap();
    let first = member(&prefix, &group, order, 0, ledger.clone());
    let first_run = start(&first);
    let publishing = tokio::spawn(publish_steps(publisher.clone()));

    let total = (KEYS * PER_KEY) as usize;
    let until = |count: usize, within: Duration| {
        let ledger = ledger.clone();
        async move {
            let deadline = Instant::now() + within;
            while distinct_finished(&ledger) < count {
                assert!(
                    Instant::now() < deadline,
                    "only {} of {count} records finished",
                    distinct_finished(&ledger)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until(total / 5, Duration::from_secs(60)).await;
    let second = member(&prefix, &group, order, 1, ledger.clone());
    let second_run = start(&second);
    until(total / 2, Duration::from_secs(60)).await;
    first.stop();
    first_run
        .await
        .unwrap()
        .expect("the first member ends cleanly");
    publishing.await.unwrap();
    until(total, Duration::from_secs(90)).await;
    second.stop();
    second_run
        .await
        .unwrap()
        .expect("the second member ends cleanly");

    let ledger = ledger.lock().unwrap();
    assert!(
        ledger.overlaps.is_empty(),
        "lanes overlapped: {:?}",
        ledger.overlaps
    );
    // Every record finishes only after every earlier record of its key.
    let mut done: HashMap<&str, u32> = HashMap::new();
    let mut redelivered = 0;
    for (key, seq, member) in &ledger.finished {
        let next = done.entry(key.as_str()).or_default();
        assert!(
            *seq <= *next,
            "{key} #{seq} finished on member {member} before #{next}: {:?}",
            ledger.finished
        );
        if *seq == *next {
            *next += 1;
        } else {
            redelivered += 1;
        }
    }
    assert!(done.values().all(|&next| next == PER_KEY), "{done:?}");
    let by_member = |id| ledger.finished.iter().filter(|f| f.2 == id).count();
    assert!(
        by_member(0) > 0 && by_member(1) > 0,
        "partitions never moved: member 0 finished {}, member 1 {} ({redelivered} redelivered)",
        by_member(0),
        by_member(1)
    );
    let retried = ledger.attempts.values().filter(|&&a| a > 1).count();
    assert!(retried > 0, "no record was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_holds_while_partitions_move() {
    run_across_rebalances(RecordOrder::Key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_holds_while_partitions_move() {
    run_across_rebalances(RecordOrder::Partition).await;
}
