//! Fault test 5 of issue 6: a handler that would run longer than the
//! group's `max.poll.interval.ms`.
//!
//! Left alone, such a handler gets its member taken out of the group by
//! librdkafka, and on Apache Kafka the member's commits are fenced from then
//! on: the record and those handled with it come back to the next owner
//! (or the same member after it rejoins), and if the record is slow every
//! time, it cycles through the group for good (RELIABILITY.md, "Slow
//! handlers"). What kafkaesk offers against that, and this test proves, is
//! the subscription `timeout` below `max.poll.interval.ms` with an error
//! policy: the slow run is cut, the policy settles the record (here: skip),
//! the member is never evicted, and nothing is lost, handled twice or looped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::{Application, ErrorPolicy, Subscription};
use kafkaesk_tests::{
    captured_warnings, record_reliability, require_broker, unique_prefix, ReliabilityRow,
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
/// The subscription's `timeout`: below `MAX_POLL_INTERVAL`, with room for
/// the records handled before the slow one in its batch.
const TIMEOUT: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliability_handler_slower_than_max_poll_interval_is_cut_by_its_timeout() {
    let warnings = captured_warnings();
    let started = Instant::now();
    let servers = require_broker();
    let prefix = unique_prefix("slow");
    let runs: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();

    let publisher = Application::builder()
        .kafka_servers([servers.as_str()])
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
            .kafka_servers([servers.as_str()])
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
                .with_name("tasks")
                .with_group("slow")
                .with_timeout(TIMEOUT)
                .on_error(ErrorPolicy::skip()),
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
    // Long enough for an eviction, had the timeout not cut the slow run.
    tokio::time::sleep(MAX_POLL_INTERVAL + Duration::from_secs(3)).await;
    let skipped = worker.stats().get("tasks").map_or(0, |stats| stats.skipped);
    worker.stop();
    consuming.await.unwrap().expect("the worker ends cleanly");

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
        scenario: "Slow handler: a 9 s run with max.poll.interval.ms at 7 s, cut by a 4 s timeout (policy: skip)",
        test: "reliability_slow_handler::reliability_handler_slower_than_max_poll_interval_is_cut_by_its_timeout",
        messages: MESSAGES as usize,
        faults: format!(
            "1 handler timeout, {skipped} skipped, {} eviction(s)",
            evictions.len()
        ),
        lost,
        duplicates,
        bound: "0 lost, 0 duplicates, 0 evictions; the slow record runs once".to_owned(),
    });
    assert_eq!(lost, 0, "{per_message:?}");
    assert!(
        evictions.is_empty(),
        "the timeout cuts the run before max.poll.interval.ms: {evictions:?}"
    );
    assert_eq!(
        per_message[&SLOW], 1,
        "the slow record ran again: {timeline:?}"
    );
    assert_eq!(skipped, 1, "the slow record is skipped by the policy");
    assert_eq!(duplicates, 0, "{timeline:?}");
}
