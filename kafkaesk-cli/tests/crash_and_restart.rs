//! Fault tests 1 and 2 of issue 6: a `kafkaesk` worker running
//! `examples/counter` is killed (SIGKILL) or stopped (SIGTERM) while it
//! consumes numbered messages, and a new one takes over.
//!
//! After a crash every number is still handled, and the only duplicates are
//! records at or after the offsets committed before the kill. After a
//! graceful stop nothing is lost and nothing is handled twice.
//!
//! A worker resuming from a committed offset after a crash resumes inside a
//! record batch, which the test broker (Apache Kafka) serves from that
//! offset on.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafkaesk_tests::{
    committed_offsets_at, record_reliability, require_broker, spawn_with_lines, unique_prefix,
    ReliabilityRow,
};

/// One at a time: each test runs two workers of its own, and two cores do
/// not run two such tests within their time bounds.
static SERIAL: Mutex<()> = Mutex::new(());

const PARTITIONS: i32 = 7;

/// A crashed member stays in the group until its session times out; a short
/// session lets the new worker take its partitions within seconds.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

fn settings() -> String {
    format!(
        r#"{{"session.timeout.ms":"{}","heartbeat.interval.ms":"1000"}}"#,
        SESSION_TIMEOUT.as_millis()
    )
}

/// One handler run, as the worker printed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Run {
    n: u64,
    partition: i32,
    offset: i64,
}

/// `handled <n> at <topic>[<partition>]@<offset>`.
fn parse_run(line: &str) -> Option<Run> {
    let rest = line.strip_prefix("handled ")?;
    let (n, rest) = rest.split_once(" at ")?;
    let (_, rest) = rest.rsplit_once('[')?;
    let (partition, offset) = rest.split_once("]@")?;
    Some(Run {
        n: n.parse().ok()?,
        partition: partition.parse().ok()?,
        offset: offset.trim().parse().ok()?,
    })
}

/// A running `kafkaesk examples/counter`; killed when dropped.
struct Worker {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    runs: Vec<Run>,
}

impl Worker {
    fn start(kafka: &str, prefix: &str, handle_ms: u64) -> Worker {
        let counter = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/counter");
        let mut command = Command::new(env!("CARGO_BIN_EXE_kafkaesk"));
        command
            .arg(counter)
            .args(["--kafka-servers", kafka, "--topic-prefix", prefix])
            .args(["--kafka-settings", &settings()])
            .env_remove("KAFKAESK_KAFKA_SERVERS")
            .env("COUNTER_HANDLE_MS", handle_ms.to_string());
        let (child, lines) = spawn_with_lines(&mut command);
        Worker {
            child,
            lines,
            seen: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Reads output for up to `wait`; true if a line contains `needle`.
    fn read(&mut self, wait: Duration, needle: Option<&str>) -> bool {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            else {
                continue;
            };
            if let Some(run) = parse_run(&line) {
                self.runs.push(run);
            } else {
                self.seen.push(line.clone());
            }
            if needle.is_some_and(|needle| line.contains(needle)) {
                return true;
            }
        }
        false
    }

    /// Waits for an assignment of at least one partition: the worker logs
    /// `partitions assigned ... partitions=<n>` on every assignment, and an
    /// empty one (`partitions=0`) is not the one awaited.
    fn wait_for_partitions(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if !self.read(left, Some("partitions assigned")) {
                break;
            }
            let assigned = self.seen.last().and_then(|line| {
                let (_, n) = line.split_once("partitions=")?;
                let digits = n.split(|c: char| !c.is_ascii_digit()).next()?;
                digits.parse::<usize>().ok()
            });
            if assigned.is_some_and(|n| n > 0) {
                return;
            }
        }
        panic!(
            "no assignment of any partition within {timeout:?}; output:\n{}",
            self.seen.join("\n")
        );
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        assert!(
            self.read(timeout, Some(needle)),
            "no line with {needle:?} within {timeout:?}; output:\n{}",
            self.seen.join("\n")
        );
    }

    /// Sends `signal`, waits for the exit and reads what was printed before it.
    fn signal(&mut self, signal: i32) -> Option<i32> {
        // SAFETY: signalling our own child process, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = self.child.wait().expect("wait for kafkaesk");
        // The reader threads end at EOF, closing the channel.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            match parse_run(&line) {
                Some(run) => self.runs.push(run),
                None => self.seen.push(line),
            }
        }
        status.code()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `numbers` from another thread, `per_second` at a time (all at
/// once if 0), each acknowledged by the broker.
fn publish(
    kafka: &str,
    prefix: &str,
    numbers: std::ops::Range<u64>,
    per_second: u64,
) -> std::thread::JoinHandle<()> {
    let app = kafkaesk::Application::builder()
        .kafka_servers([kafka])
        .topic_prefix(prefix)
        .build()
        .unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut acks = Vec::new();
            for n in numbers {
                let number = counter::Number { n };
                acks.push(app.publish("numbers", &number).await.unwrap());
                if per_second > 0 && n % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(10_000 / per_second)).await;
                }
            }
            for ack in acks {
                ack.await.expect("published");
            }
        });
    })
}

fn topic_exists(kafka: &str, prefix: &str) {
    // Created with 7 partitions before any worker subscribes.
    let mut router = kafkaesk::Router::new();
    router.schema::<counter::Number>().unwrap();
    let app = kafkaesk::Application::builder()
        .kafka_servers([kafka])
        .topic_prefix(prefix)
        .mount(router)
        .build()
        .unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(app.initialize())
            .unwrap();
    })
    .join()
    .unwrap();
}

fn by_number(runs: &[Run]) -> BTreeMap<u64, Vec<Run>> {
    let mut map: BTreeMap<u64, Vec<Run>> = BTreeMap::new();
    for run in runs {
        map.entry(run.n).or_default().push(*run);
    }
    map
}

fn wait_until_all_handled(worker: &mut Worker, earlier: &[Run], total: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let all: Vec<Run> = earlier.iter().chain(&worker.runs).copied().collect();
        let missing = (0..total)
            .filter(|n| !by_number(&all).contains_key(n))
            .count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} numbers never handled within {timeout:?}; output:\n{}",
            worker.seen.join("\n")
        );
        worker.read(Duration::from_millis(500), None);
    }
}

#[test]
fn sigkill_then_restart_handles_every_number_and_duplicates_only_uncommitted_offsets() {
    const TOTAL: u64 = 1500;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = require_broker();
    let prefix = unique_prefix("crash");
    let topic = format!("{prefix}numbers");
    topic_exists(&kafka, &prefix);

    let mut first = Worker::start(&kafka, &prefix, 10);
    // The first run builds the runner; later runs start at once.
    first.wait_for("partitions assigned", Duration::from_secs(900));
    let started = Instant::now();
    publish(&kafka, &prefix, 0..TOTAL, 0).join().unwrap();

    // Kill it once something is committed and more has been handled since.
    let committed = loop {
        first.read(Duration::from_millis(300), None);
        let committed: HashMap<i32, i64> =
            committed_offsets_at(&kafka, counter::GROUP, &topic, PARTITIONS)
                .into_iter()
                .collect();
        let committed_sum: i64 = committed.values().sum();
        if committed_sum > 0 && first.runs.len() as i64 > committed_sum + 50 {
            break committed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "no commit while consuming: {} handled; output:\n{}",
            first.runs.len(),
            first.seen.join("\n")
        );
    };
    assert_eq!(first.signal(libc::SIGKILL), None, "killed by the signal");
    let before_kill = first.runs.clone();
    let committed_at = |partition: i32| committed.get(&partition).copied().unwrap_or(0);
    let uncommitted_before_kill = before_kill
        .iter()
        .filter(|run| run.offset >= committed_at(run.partition))
        .count();

    // The new worker joins once the killed member's session is over, so the
    // group it joins has no dead member left and the handover takes one
    // rebalance (joining earlier works too: the coordinator then waits for
    // the dead member's session to end). The killed member's last heartbeat
    // preceded the kill, so its session is over `SESSION_TIMEOUT` after it,
    // whatever the load; two more seconds cover a heartbeat in flight.
    std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(2));
    let mut second = Worker::start(&kafka, &prefix, 0);
    second.wait_for_partitions(Duration::from_secs(120));
    wait_until_all_handled(&mut second, &before_kill, TOTAL, Duration::from_secs(60));
    assert_eq!(second.signal(libc::SIGTERM), Some(0), "{:?}", second.seen);
    let elapsed = started.elapsed();

    let all: Vec<Run> = before_kill.iter().chain(&second.runs).copied().collect();
    let handled = by_number(&all);
    let lost = (0..TOTAL).filter(|n| !handled.contains_key(n)).count();
    let duplicates = all.len() - handled.len();
    record_reliability(&ReliabilityRow {
        key: "1",
        scenario: "Crash: SIGKILL of a `kafkaesk` worker mid-stream, then a new worker",
        test: "kafkaesk-cli crash_and_restart::sigkill_then_restart_handles_every_number_and_duplicates_only_uncommitted_offsets",
        messages: TOTAL as usize,
        faults: "1 SIGKILL".to_owned(),
        lost,
        duplicates,
        bound: format!(
            "<= {uncommitted_before_kill} (handled after the last commit), all at uncommitted offsets"
        ),
    });
    eprintln!(
        "crash: {TOTAL} messages, {} handled before the kill ({uncommitted_before_kill} after \
         the last commit), {} after, {lost} lost, {duplicates} duplicates, {elapsed:?}",
        before_kill.len(),
        second.runs.len()
    );

    assert_eq!(lost, 0);
    // The new worker starts at the committed offsets: nothing committed is handled again.
    let rehandled_committed: Vec<&Run> = second
        .runs
        .iter()
        .filter(|run| run.offset < committed_at(run.partition))
        .collect();
    assert!(
        rehandled_committed.is_empty(),
        "handled again although committed before the kill ({committed:?}): {rehandled_committed:?}"
    );
    for (n, runs) in handled.iter().filter(|(_, runs)| runs.len() > 1) {
        for run in runs {
            assert!(
                run.offset >= committed_at(run.partition),
                "{n} duplicated from a committed offset: {runs:?}, committed {committed:?}"
            );
        }
    }
    assert!(
        duplicates <= uncommitted_before_kill,
        "{duplicates} duplicates, but only {uncommitted_before_kill} records were handled after \
         the last commit"
    );
}

#[test]
fn sigterm_then_restart_while_publishing_loses_and_duplicates_nothing() {
    const TOTAL: u64 = 1000;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = require_broker();
    let prefix = unique_prefix("graceful");
    let topic = format!("{prefix}numbers");
    topic_exists(&kafka, &prefix);

    let mut first = Worker::start(&kafka, &prefix, 2);
    first.wait_for("partitions assigned", Duration::from_secs(900));
    let started = Instant::now();
    let publisher = publish(&kafka, &prefix, 0..TOTAL, 100);

    first.read(Duration::from_secs(3), None);
    assert_eq!(first.signal(libc::SIGTERM), Some(0), "{:?}", first.seen);
    let before_stop = first.runs.clone();
    assert!(
        !before_stop.is_empty() && (before_stop.len() as u64) < TOTAL,
        "stopped while messages flow: {} handled",
        before_stop.len()
    );

    let mut second = Worker::start(&kafka, &prefix, 2);
    publisher.join().unwrap();
    wait_until_all_handled(&mut second, &before_stop, TOTAL, Duration::from_secs(60));
    // Anything handled twice would show up now, not later: the backlog is empty.
    second.read(Duration::from_secs(1), None);
    assert_eq!(second.signal(libc::SIGTERM), Some(0), "{:?}", second.seen);
    let elapsed = started.elapsed();

    let all: Vec<Run> = before_stop.iter().chain(&second.runs).copied().collect();
    let handled = by_number(&all);
    let lost = (0..TOTAL).filter(|n| !handled.contains_key(n)).count();
    let duplicated: Vec<&Vec<Run>> = handled.values().filter(|runs| runs.len() > 1).collect();
    let duplicates = all.len() - handled.len();
    record_reliability(&ReliabilityRow {
        key: "2",
        scenario: "Graceful restart: SIGTERM of a `kafkaesk` worker while publishing, then a new worker",
        test: "kafkaesk-cli crash_and_restart::sigterm_then_restart_while_publishing_loses_and_duplicates_nothing",
        messages: TOTAL as usize,
        faults: "1 SIGTERM".to_owned(),
        lost,
        duplicates,
        bound: "0 lost, 0 duplicates".to_owned(),
    });
    eprintln!(
        "graceful: {TOTAL} messages, {} handled before the stop, {} after, {lost} lost, \
         {duplicates} duplicates, {elapsed:?}",
        before_stop.len(),
        second.runs.len()
    );
    assert_eq!(lost, 0);
    assert!(duplicated.is_empty(), "handled twice: {duplicated:?}");
    let committed: i64 = committed_offsets_at(&kafka, counter::GROUP, &topic, PARTITIONS)
        .iter()
        .map(|(_, offset)| offset)
        .sum();
    assert_eq!(committed, TOTAL as i64, "everything handled is committed");
}
