//! Retry streams across a SIGKILL: a worker killed while records wait in
//! its retry streams, then restarted, still handles or dead-letters every
//! record. For an exactly-once subscription, each record's output appears
//! once, however many times it went through a retry stream, and each move
//! to a retry stream is committed with its source offset or not at all.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use kafkaesk::retry_stream::RETRY_ATTEMPT;
use kafkaesk::{ErrorPolicy, Record, Subscriber, Subscription};
use kafkaesk_tests::{
    app_builder, committed_total, read_all, read_all_uncommitted, spawn_with_lines, unique_prefix,
};
use rdkafka::consumer::Consumer;

const PARTITIONS: i32 = 4;
const PREFIX_VAR: &str = "KAFKAESK_RETRY_KILL_PREFIX";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Job {
    pub n: u64,
}

impl kafkaesk::Schema for Job {
    const ID: &'static str = "RetryJob";
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Done {
    pub n: u64,
}

impl kafkaesk::Schema for Done {
    const ID: &'static str = "RetryDone";
}

/// Which retry stream `record` was read from: 0 for the source stream.
fn attempt(record: &Record) -> u64 {
    record
        .headers()
        .get(RETRY_ATTEMPT)
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .filter(|_| record.topic().contains(".retry-"))
        .unwrap_or(0)
}

fn job_of(record: &Record) -> u64 {
    let envelope: serde_json::Value = serde_json::from_slice(record.value()).unwrap();
    envelope["data"]["n"].as_u64().unwrap()
}

/// How many runs job `n` fails before it succeeds: every tenth fails once,
/// every twentieth twice (so it passes through both retry streams), and
/// every thirtieth always (so it is dead-lettered after them).
fn failures(n: u64) -> u64 {
    match n {
        n if n % 30 == 0 => u64::MAX,
        n if n % 20 == 0 => 2,
        n if n % 10 == 0 => 1,
        _ => 0,
    }
}

const JOBS: u64 = 300;
const GROUP: &str = "retrier";

fn at_least_once_app(prefix: &str) -> kafkaesk::Application {
    app_builder(prefix)
        .partitions(PARTITIONS)
        .kafka_setting("session.timeout.ms", "6000")
        .subscribe(
            Subscription::new(
                "jobs",
                |record: Record, subscriber: Subscriber| async move {
                    let n = job_of(&record);
                    let attempt = attempt(&record);
                    if attempt < failures(n) {
                        // Read by the test, to kill the worker while records wait.
                        println!("FAILED {n} attempt {attempt}");
                        return Err(kafkaesk::Error::Stopped);
                    }
                    subscriber.publish("done", &Done { n }).wait().await?;
                    Ok(())
                },
            )
            .with_name(GROUP)
            .with_concurrency(4)
            .on_error(
                ErrorPolicy::retry_in([Duration::from_secs(2), Duration::from_secs(4)])
                    .then_dead_letter("jobs.dead"),
            ),
        )
        .build()
        .unwrap()
}

/// The worker process the test starts and kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the worker process of retry_streams_lose_nothing_across_a_sigkill"]
async fn at_least_once_worker() {
    let prefix = std::env::var(PREFIX_VAR).expect("started by the kill test");
    let _ = tracing_subscriber::fmt()
        .with_env_filter("kafkaesk=info")
        .try_init();
    at_least_once_app(&prefix).consume_forever().await.unwrap();
}

/// A worker process, killed when dropped, so a failing test leaves none
/// behind.
struct Worker(std::process::Child);

impl Worker {
    /// SIGKILL, and waits for it to end.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts this test binary running only the worker test `name`; its output
/// lines come on the returned channel, and are echoed to stderr.
fn start_worker(name: &str, prefix: &str) -> (Worker, std::sync::mpsc::Receiver<String>) {
    let (child, lines) = spawn_with_lines(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("retry_streams_lose_nothing_across_sigkill::{name}"),
                "--ignored",
                "--nocapture",
            ])
            .env(PREFIX_VAR, prefix),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            eprintln!("worker: {line}");
            let _ = tx.send(line);
        }
    });
    (Worker(child), rx)
}

/// The sum of `topic`'s partitions' high watermarks, as `isolation` sees them.
fn end_offsets(topic: &str, isolation: &str) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafkaesk_tests::kafka())
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

/// Waits until `state` gives `Ok`, or fails with the last state it gave.
fn end_offset(topic: &str, partition: i32) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafkaesk_tests::kafka())
        .create()
        .unwrap();
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(5))
        .map(|(_, high)| high)
        .unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, mut state: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    while let Err(state) = state() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {state}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The `n` of every envelope in `topic` (committed records only).
fn jobs_in(topic: &str) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for raw in read_all(topic, Duration::from_secs(3)) {
        let envelope: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        *seen
            .entry(envelope["data"]["n"].as_u64().unwrap())
            .or_default() += 1;
    }
    seen
}

/// Creates `app`'s streams (its retry streams are created by its
/// consumer) and publishes the jobs, every one acknowledged.
async fn publish_jobs(app: &kafkaesk::Application) {
    app.initialize().await.unwrap();
    let mut acks = Vec::new();
    for n in 0..JOBS {
        acks.push(app.publish("jobs", &Job { n }).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_streams_lose_nothing_across_a_sigkill() {
    let prefix = unique_prefix("retry-kill");
    let app = at_least_once_app(&prefix);
    publish_jobs(&app).await;
    let tiers: Vec<String> = app.router().subscriptions()[0]
        .retry_streams()
        .iter()
        .map(|stream| format!("{prefix}{stream}"))
        .collect();

    // Killed once a few records were moved to a retry stream and wait there
    // (for 2 s at least).
    let (mut first, lines) = start_worker("at_least_once_worker", &prefix);
    let mut failed = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while failed < 5 {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the worker fails records");
        failed += usize::from(line.starts_with("FAILED"));
    }
    first.kill(); // SIGKILL
    let waiting =
        end_offsets(&tiers[0], "read_committed") - committed_total(GROUP, &tiers[0], PARTITIONS);
    eprintln!("killed with {waiting} records in the first retry stream not yet retried");

    let (mut second, _lines) = start_worker("at_least_once_worker", &prefix);
    let dead_letters = format!("{prefix}jobs.dead");
    let expected_dead: BTreeSet<u64> = (0..JOBS).filter(|n| failures(*n) == u64::MAX).collect();
    let source = format!("{prefix}jobs");
    wait_for("every job settled", Duration::from_secs(180), || {
        let dead: BTreeSet<u64> = jobs_in(&dead_letters).into_keys().collect();
        let source_committed = committed_total(GROUP, &source, PARTITIONS);
        let tiers_committed: Vec<(i64, i64)> = tiers
            .iter()
            .map(|t| {
                (
                    committed_total(GROUP, t, PARTITIONS),
                    end_offsets(t, "read_committed"),
                )
            })
            .collect();
        if dead == expected_dead
            && source_committed == JOBS as i64
            && tiers_committed.iter().all(|(c, e)| c == e)
        {
            Ok(())
        } else {
            let per_partition: Vec<_> = tiers
                .iter()
                .map(|t| {
                    (
                        kafkaesk_tests::committed_offsets(GROUP, t, PARTITIONS),
                        (0..PARTITIONS)
                            .map(|p| end_offset(t, p))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            Err(format!(
                "dead-lettered {dead:?}, source committed {source_committed}, retry streams \
                 (committed, end) {tiers_committed:?} {per_partition:?}"
            ))
        }
    });
    // The last commits of what was handled are in; nothing else arrives.
    second.kill();

    let done = jobs_in(&format!("{prefix}done"));
    let dead = jobs_in(&dead_letters);
    let lost: Vec<u64> = (0..JOBS)
        .filter(|n| !done.contains_key(n) && !dead.contains_key(n))
        .collect();
    let duplicates: usize = done.values().map(|runs| runs - 1).sum();
    kafkaesk_tests::record_reliability(&kafkaesk_tests::ReliabilityRow {
        key: "6",
        scenario: "Retry streams: SIGKILL of a worker while failed records wait in its retry \
                   streams (2 s, 4 s), then a new worker",
        test:
            "retry_streams_lose_nothing_across_sigkill::retry_streams_lose_nothing_across_a_sigkill",
        messages: JOBS as usize,
        faults: format!("1 SIGKILL with {waiting} records waiting to be retried"),
        lost: lost.len(),
        duplicates,
        bound: "0 lost: every job handled, or dead-lettered after both retry streams".to_owned(),
    });
    assert!(
        lost.is_empty(),
        "jobs neither handled nor dead-lettered: {lost:?}"
    );
    let wrongly_done: Vec<&u64> = done.keys().filter(|n| expected_dead.contains(n)).collect();
    assert!(wrongly_done.is_empty(), "{wrongly_done:?}");
    let twice_through = (0..JOBS).filter(|n| failures(*n) == 2).count() as i64;
    assert!(
        end_offsets(&tiers[1], "read_committed") >= twice_through,
        "the jobs that fail twice went through the second retry stream"
    );
}

const EOS_GROUP: &str = "eos-retrier";

fn exactly_once_app(prefix: &str) -> kafkaesk::Application {
    app_builder(prefix)
        .partitions(PARTITIONS)
        .transactional_id(format!("{prefix}worker"))
        .kafka_setting("session.timeout.ms", "6000")
        .subscribe(
            Subscription::new(
                "jobs",
                |record: Record, subscriber: Subscriber| async move {
                    let n = job_of(&record);
                    // Every seventh fails on its first run, before any output.
                    if n.is_multiple_of(7) && attempt(&record) == 0 {
                        return Err(kafkaesk::Error::Stopped);
                    }
                    subscriber.publish("done", &Done { n }).wait().await?;
                    // Output stored, not yet committed: where the kill should land.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(())
                },
            )
            .with_name(EOS_GROUP)
            .with_concurrency(4)
            .exactly_once()
            .on_error(
                ErrorPolicy::retry_in([Duration::from_secs(1)]).then_dead_letter("jobs.dead"),
            ),
        )
        .build()
        .unwrap()
}

/// The exactly-once worker process the test starts and kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the worker process of exactly_once_retries_are_never_seen_twice"]
async fn exactly_once_worker() {
    let prefix = std::env::var(PREFIX_VAR).expect("started by the kill test");
    exactly_once_app(&prefix).consume_forever().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_retries_are_never_seen_twice() {
    let prefix = unique_prefix("retry-eos");
    let app = exactly_once_app(&prefix);
    publish_jobs(&app).await;
    let tier = format!(
        "{prefix}{}",
        app.router().subscriptions()[0].retry_streams()[0]
    );
    let done = format!("{prefix}done");
    let source = format!("{prefix}jobs");

    // Killed while a transaction is open, after some records were moved.
    let (mut first, _lines) = start_worker("exactly_once_worker", &prefix);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let written = end_offsets(&done, "read_uncommitted");
        let stable = end_offsets(&done, "read_committed");
        if written > stable && stable >= 60 && end_offsets(&tier, "read_committed") > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for output before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill(); // SIGKILL

    let (mut second, _lines) = start_worker("exactly_once_worker", &prefix);
    let poisons: BTreeSet<u64> = (0..JOBS).filter(|n| n.is_multiple_of(7)).collect();
    wait_for("every job handled", Duration::from_secs(180), || {
        let committed = committed_total(EOS_GROUP, &source, PARTITIONS);
        let results = jobs_in(&done).len();
        if committed >= JOBS as i64 && results == JOBS as usize {
            Ok(())
        } else {
            Err(format!("source committed {committed}, {results} results"))
        }
    });
    second.kill();

    let seen = jobs_in(&done);
    let twice: Vec<_> = seen.iter().filter(|(_, &count)| count > 1).collect();
    assert!(twice.is_empty(), "results seen more than once: {twice:?}");
    assert_eq!(seen.len(), JOBS as usize, "every job's result is there");
    // Each poison was moved once in a committed transaction; moves of an
    // aborted one are stored but never read.
    let moved = jobs_in(&tier);
    let moved_twice: Vec<_> = moved.iter().filter(|(_, &count)| count > 1).collect();
    assert!(
        moved_twice.is_empty(),
        "moved more than once: {moved_twice:?}"
    );
    assert_eq!(moved.keys().copied().collect::<BTreeSet<_>>(), poisons);
    let stored = read_all_uncommitted(&tier, Duration::from_secs(3)).len();
    eprintln!(
        "{} poisons moved once each; {stored} moves stored in the retry stream, {} of them \
         committed",
        poisons.len(),
        moved.values().sum::<usize>()
    );
}
