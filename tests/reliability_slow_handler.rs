//! Fault test 5 of issue 6: a handler slower than the group's
//! `max.poll.interval.ms`. librdkafka then takes the member out of the group
//! and it rejoins at its next poll. The test bounds what that costs: every
//! message is handled, the slow one is not retried in a loop (no livelock),
//! and what is handled again is bounded (no duplicate storm).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::{Application, Subscription};
use kafkaesk_tests::{
    captured_warnings, record_reliability, unique_prefix, PersistentBroker, ReliabilityRow,
};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Task {
    pub n: u64,
}

impl kafkaesk::Schema for Task {
    const ID: &'static str = "Task";
}

const MESSAGES: u64 = 20;
const SLOW: u64 = 5;
/// librdkafka's minimum is 1 ms, but it must be at least `session.timeout.ms`.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(7);
const SLOW_HANDLER: Duration = Duration::from_secs(9);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliability_handler_slower_than_max_poll_interval_neither_livelocks_nor_storms() {
    let warnings = captured_warnings();
    let started = Instant::now();
    let broker = PersistentBroker::start("slow");
    let prefix = unique_prefix("slow");
    let runs: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();

    let publisher = Application::builder()
        .kafka_servers([broker.address()])
        .topic_prefix(&prefix)
        .partitions(1)
        .build()
        .unwrap();
    for n in 0..MESSAGES {
        publisher
            .publish_and_wait("tasks", &Task { n })
            .await
            .unwrap();
    }

    let worker = {
        let runs = runs.clone();
        Application::builder()
            .kafka_servers([broker.address()])
            .topic_prefix(&prefix)
            .auto_commit_interval(Duration::from_millis(500))
            .kafka_settings([
                (
                    "max.poll.interval.ms",
                    MAX_POLL_INTERVAL.as_millis().to_string(),
                ),
                ("session.timeout.ms", "6000".to_owned()),
                ("heartbeat.interval.ms", "1000".to_owned()),
            ])
            .subscribe(
                Subscription::new("tasks", move |task: Task| {
                    let runs = runs.clone();
                    async move {
                        runs.lock().unwrap().push((task.n, Instant::now()));
                        if task.n == SLOW {
                            tokio::time::sleep(SLOW_HANDLER).await;
                        }
                    }
                })
                .name("tasks")
                .group("slow"),
            )
            .build()
            .unwrap()
    };
    let consuming = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.consume_forever().await })
    };
    let deadline = Instant::now() + Duration::from_secs(45);
    let all_handled = |runs: &Mutex<Vec<(u64, Instant)>>| {
        let runs = runs.lock().unwrap();
        (0..MESSAGES).all(|n| runs.iter().any(|(m, _)| *m == n))
    };
    while !all_handled(&runs) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Long enough for a second eviction, if the slow message came back.
    tokio::time::sleep(MAX_POLL_INTERVAL + Duration::from_secs(3)).await;
    worker.stop();
    consuming.await.unwrap().expect("the worker ends cleanly");
    drop(broker);

    let runs = runs.lock().unwrap().clone();
    let mut per_message: BTreeMap<u64, usize> = BTreeMap::new();
    for (n, _) in &runs {
        *per_message.entry(*n).or_default() += 1;
    }
    let lost = (0..MESSAGES)
        .filter(|n| !per_message.contains_key(n))
        .count();
    let duplicates = runs.len() - per_message.len();
    let timeline: Vec<(u64, u128)> = runs
        .iter()
        .map(|(n, at)| (*n, at.duration_since(started).as_millis()))
        .collect();
    let evictions: Vec<String> = warnings
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains("maximum poll interval"))
        .cloned()
        .collect();
    eprintln!("slow handler: librdkafka evictions: {evictions:?}");
    eprintln!(
        "slow handler: {MESSAGES} messages, {} runs, {lost} lost, {duplicates} duplicates, {:?}; \
         runs as (n, ms): {timeline:?}",
        runs.len(),
        started.elapsed()
    );
    record_reliability(&ReliabilityRow {
        key: "5",
        scenario: "Slow handler: one handler run (9 s) longer than max.poll.interval.ms (7 s)",
        test: "reliability_slow_handler::reliability_handler_slower_than_max_poll_interval_neither_livelocks_nor_storms",
        messages: MESSAGES as usize,
        faults: "1 poll-interval eviction".to_owned(),
        lost,
        duplicates,
        bound: "slow message run <= 2 times; duplicates <= 1".to_owned(),
    });
    assert_eq!(lost, 0, "{per_message:?}");
    assert!(
        !evictions.is_empty(),
        "the slow handler outlasted max.poll.interval.ms, so librdkafka left the group"
    );
    assert!(
        per_message[&SLOW] <= 2,
        "the slow message keeps coming back: {timeline:?}"
    );
    assert!(duplicates <= 1, "{timeline:?}");
}
