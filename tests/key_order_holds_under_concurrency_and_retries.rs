//! Ordering modes: with `order = key`, records of one key run one after
//! another in offset order, while other keys run concurrently, through
//! handler failures and background retries; `order = partition` does the same
//! per partition; unordered concurrency does neither. A key whose record is
//! still running holds only its own later records, not the other keys'.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::subscription::RecordOrder;
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

/// Interleaved keys, each round queued at once: batches hold several
/// records, so a retry's pause resumes its partition from inside one.
async fn publish_steps(app: &Application) {
    for seq in 0..PER_KEY {
        let mut deliveries = Vec::new();
        for k in 0..KEYS {
            let key = format!("entity-{k}");
            let step = Step {
                key: key.clone(),
                seq,
            };
            deliveries.push(app.publish("steps", &step).key(key.as_str()).await.unwrap());
        }
        for delivery in deliveries {
            delivery.await.unwrap();
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
    .with_name("steps")
    // A group of its own: the three tests run at once, on one topic each.
    .with_group(format!("{prefix}steps"))
    .with_concurrency(8)
    .with_order(order)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_key_holds_only_its_own_records() {
    let prefix = unique_prefix("busy-key");
    // Per record, when its handler finished, in order of finishing.
    let finished = Arc::new(Mutex::new(Vec::<(String, u32)>::new()));
    let seen = finished.clone();
    let subscription = Subscription::new("steps", move |step: Step| {
        let seen = seen.clone();
        async move {
            let wait = if step.key == "busy" { 400 } else { 5 };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            seen.lock().unwrap().push((step.key, step.seq));
        }
    })
    .with_name("steps")
    .with_group(format!("{prefix}steps"))
    .with_concurrency(8)
    .with_order(RecordOrder::Key);
    let app = app_builder(&prefix)
        .subscribe(subscription)
        .build()
        .unwrap();
    // One partition, so every record waits behind the busy key's second one
    // unless the other keys go around it.
    let mut steps = vec![("busy".to_owned(), 0), ("busy".to_owned(), 1)];
    steps.extend((0..24).map(|n| (format!("other-{}", n % 12), n / 12)));
    for (key, seq) in &steps {
        app.publish(
            "steps",
            &Step {
                key: key.clone(),
                seq: *seq,
            },
        )
        .key(key.as_str())
        .partition(0)
        .wait()
        .await
        .unwrap();
    }
    let total = steps.len();
    assert_eq!(
        app.consume_for(total, Duration::from_secs(60))
            .await
            .unwrap(),
        total
    );
    let finished = std::mem::take(&mut *finished.lock().unwrap());
    let at = |key: &str, seq: u32| {
        finished
            .iter()
            .position(|(k, s)| k == key && *s == seq)
            .unwrap()
    };
    assert!(at("busy", 0) < at("busy", 1), "{finished:?}");
    let others_done = (0..12)
        .flat_map(|k| (0..2).map(move |seq| (format!("other-{k}"), seq)))
        .map(|(key, seq)| at(&key, seq))
        .max()
        .unwrap();
    assert!(
        others_done < at("busy", 0),
        "the other keys waited behind the busy key's second record: {finished:?}"
    );
    for k in 0..12 {
        let key = format!("other-{k}");
        assert!(at(&key, 0) < at(&key, 1), "{finished:?}");
    }
}
