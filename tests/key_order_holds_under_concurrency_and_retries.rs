//! Ordering modes: with `order = key`, records of one key run one after
//! another in offset order, while other keys run concurrently, through
//! handler failures and background retries; `order = partition` does the same
//! per partition; unordered concurrency does neither.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::ordering::RecordOrder;
use kafkaesk::{Application, ErrorPolicy, Subscriber, Subscription};
use kafkaesk_tests::{app_builder, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Step {
    pub key: String,
    pub seq: u32,
}

impl kafkaesk::Schema for Step {
    const ID: &'static str = "Step";
}

const KEYS: u32 = 12;
const PER_KEY: u32 = 20;

#[derive(Default)]
struct Observed {
    /// Per lane (key or partition), whether a handler of it is running.
    running: HashSet<String>,
    /// Handlers that started while another of their lane ran.
    overlaps: usize,
    /// Per key, the sequence numbers in the order their handlers finished.
    finished: HashMap<String, Vec<u32>>,
    attempts: HashMap<(String, u32), u32>,
    /// Most handlers running at once.
    most_at_once: usize,
    at_once: usize,
}

/// Interleaved keys, one record per batch: a retry pauses its partition,
/// and resuming fetches from inside the last batch, which tansu 0.6 answers
/// with nothing (`broker_lists_offsets_inside_batches`).
async fn publish_steps(app: &Application) {
    for seq in 0..PER_KEY {
        for k in 0..KEYS {
            let key = format!("entity-{k}");
            app.publish(
                "steps",
                &Step {
                    key: key.clone(),
                    seq,
                },
            )
            .key(key.as_str())
            .wait()
            .await
            .unwrap();
        }
    }
}

/// Runs every step with `order` at concurrency 8; handlers wait a little,
/// and every 7th record fails on its first attempt and is retried.
async fn run(order: RecordOrder) -> Observed {
    let prefix = unique_prefix("key-order");
    let observed = Arc::new(Mutex::new(Observed::default()));
    let seen = observed.clone();
    let subscription = Subscription::new("steps", move |step: Step, subscriber: Subscriber| {
        let seen = seen.clone();
        async move {
            let lane = match order {
                RecordOrder::Partition => subscriber.record().partition().to_string(),
                _ => step.key.clone(),
            };
            let attempt = {
                let mut seen = seen.lock().unwrap();
                if !seen.running.insert(lane.clone()) {
                    seen.overlaps += 1;
                }
                seen.at_once += 1;
                seen.most_at_once = seen.most_at_once.max(seen.at_once);
                let attempt = seen
                    .attempts
                    .entry((step.key.clone(), step.seq))
                    .or_default();
                *attempt += 1;
                *attempt
            };
            // Different waits per record, so later records would overtake.
            let wait = 1 + (step.seq * 7 + step.key.len() as u32 * 3) % 6;
            tokio::time::sleep(Duration::from_millis(u64::from(wait))).await;
            let mut seen = seen.lock().unwrap();
            seen.running.remove(&lane);
            seen.at_once -= 1;
            if (step.seq * KEYS + step.key.len() as u32) % 7 == 3 && attempt == 1 {
                return Err(std::io::Error::other("first attempt fails"));
            }
            seen.finished.entry(step.key).or_default().push(step.seq);
            Ok(())
        }
    })
    .name("steps")
    // A group of its own: the three tests run at once, on one topic each.
    .group(format!("{prefix}steps"))
    .concurrency(8)
    .order(order)
    .on_error(ErrorPolicy::retry(3, Duration::from_millis(20)));
    let app = app_builder(&prefix)
        .subscribe(subscription)
        .build()
        .unwrap();
    publish_steps(&app).await;
    let total = (KEYS * PER_KEY) as usize;
    assert_eq!(
        app.consume_for(total, Duration::from_secs(90))
            .await
            .unwrap(),
        total
    );
    let stats = app.stats();
    assert!(stats["steps"].retried > 0, "{stats:?}");
    // The application still holds the handler, and with it a clone.
    let mut guard = observed.lock().unwrap();
    std::mem::take(&mut *guard)
}

fn in_order(observed: &Observed) -> bool {
    observed.finished.len() == KEYS as usize
        && observed
            .finished
            .values()
            .all(|seqs| *seqs == (0..PER_KEY).collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_one_key_run_in_order_while_keys_run_concurrently() {
    let observed = run(RecordOrder::Key).await;
    assert_eq!(observed.overlaps, 0, "two records of one key ran at once");
    assert!(in_order(&observed), "{:?}", observed.finished);
    assert!(observed.most_at_once > 1, "keys ran one at a time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_one_partition_run_in_order() {
    let observed = run(RecordOrder::Partition).await;
    assert_eq!(
        observed.overlaps, 0,
        "two records of one partition ran at once"
    );
    assert!(in_order(&observed), "{:?}", observed.finished);
    // Each partition is read from its own queue, so partitions run at once
    // although librdkafka fetched them in runs of one partition.
    assert!(observed.most_at_once > 1, "partitions ran one at a time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_concurrency_lets_one_key_overtake_itself() {
    let observed = run(RecordOrder::Unordered).await;
    assert!(
        observed.overlaps > 0,
        "unordered never ran a key twice at once"
    );
}
