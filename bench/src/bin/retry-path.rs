//! `retry-path`: what a source partition's throughput costs while 1 % of
//! its records fail once, on the broker at `KAFKA` (default
//! 127.0.0.1:9092), every side with `fetch.wait.max.ms=5`.
//!
//! One partition, records of 200 B, default concurrency, and a handler that
//! returns at once (no await point), so the consume loop is what is timed.
//! Every 100th record fails on its first run and succeeds when run again:
//!
//! - **no failures**: the baseline.
//! - **1 % retry streams**: `ErrorPolicy::retry_in([5 s]).then_dead_letter`;
//!   a failed record is moved to the retry stream and the partition goes on.
//!   A record is known to be the retry by its topic and its
//!   `kafkaesk-retry-attempt` header. The same with `linger.ms=0` shows what
//!   the producer's linger adds to each move.
//! - **1 % in-place retry**: `ErrorPolicy::retry(1, backoff)`, which pauses
//!   the partition for the backoff. At 1 % failing that is slow, so it runs
//!   on a tenth of the records with a 1 s backoff, and on a hundredth with
//!   5 s, the retry streams' delay.
//!
//! ```text
//! cargo run -p kafkaesk-bench --release --bin retry-path -- [RECORDS] [ROUNDS] [ONLY]
//! ```
//!
//! `ONLY` runs the scenarios whose names contain it.
//!
//! Each round publishes the records to a fresh topic and times the source
//! partition: from the first source record handled to the last handler run
//! on a source record (the first run of a failing record included, and for
//! in-place retries the retry too). Retries from a retry stream are not in
//! that span: when the last one finished is reported apart, as is the gap
//! after every 100th record (the failing ones) before the next source
//! record starts, and what the failures added to the source partition's
//! time per failed record, against the baseline. Then, apart from any
//! consumer, one acknowledged write of such a record (what a move to a
//! retry stream waits for) is timed, with the default `linger.ms` and 0.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::retry_stream::RETRY_ATTEMPT;
use kafkaesk::{Application, ErrorPolicy, Record, Subscription};
use kafkaesk_bench::measure::median;

/// Every this many records, one fails on its first run.
const FAIL_EVERY: u32 = 100;

/// The size of each record's value.
const RECORD_BYTES: usize = 200;

/// The retry stream's delay.
const RETRY_DELAY: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Policy {
    /// Nothing fails.
    Baseline,
    /// Failures go to a retry stream; with the producer's `linger.ms` if set.
    RetryStream { linger_ms: Option<u32> },
    /// Failures are retried in place after this backoff.
    InPlace(Duration),
}

struct Scenario {
    name: &'static str,
    policy: Policy,
    /// Runs on `RECORDS / divisor` records.
    divisor: u32,
}

fn servers() -> String {
    std::env::var("KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn app(
    prefix: &str,
    linger_ms: Option<u32>,
    subscription: Option<Subscription>,
) -> anyhow::Result<Application> {
    let mut builder = Application::builder()
        .kafka_servers([servers()])
        .topic_prefix(prefix)
        // One partition: the partition is what is measured.
        .partitions(1)
        .kafka_setting("fetch.wait.max.ms", "5");
    if let Some(linger) = linger_ms {
        builder = builder.kafka_setting("linger.ms", linger.to_string());
    }
    if let Some(subscription) = subscription {
        builder = builder.subscribe(subscription);
    }
    Ok(builder.build()?)
}

/// Nanoseconds after `since`, never 0, so 0 can mean "none yet".
fn stamp(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64 + 1
}

/// What the handler saw in one round.
struct Seen {
    since: Instant,
    /// The first and the last handler run on a source record.
    first: AtomicU64,
    last: AtomicU64,
    /// When the last retry from a retry stream finished.
    last_retry: AtomicU64,
    /// Records that succeeded.
    succeeded: AtomicU64,
    /// Per record: how many times it failed, and how many times it ran
    /// again after failing (two bits each way would do; a byte each is
    /// simpler and small).
    failures: Vec<AtomicU8>,
    reruns: Vec<AtomicU8>,
    /// When a 100th record's source run ended, until the next source
    /// record starts.
    marked: AtomicU64,
    /// The gaps after 100th records, in ns.
    gaps: Mutex<Vec<u64>>,
}

impl Seen {
    fn new(records: u32) -> Self {
        Seen {
            since: Instant::now(),
            first: AtomicU64::new(0),
            last: AtomicU64::new(0),
            last_retry: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failures: (0..records).map(|_| AtomicU8::new(0)).collect(),
            reruns: (0..records).map(|_| AtomicU8::new(0)).collect(),
            marked: AtomicU64::new(0),
            gaps: Mutex::new(Vec::new()),
        }
    }

    /// Handles `record`, read from `source` (the source topic) or a retry
    /// stream; fails the first run of every 100th record when `fail`.
    fn handle(&self, record: &Record, source: &str, fail: bool) -> Result<(), std::io::Error> {
        let n: usize = std::str::from_utf8(&record.value()[..10])
            .ok()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| std::io::Error::other("no record number"))?;
        let now = stamp(self.since);
        let from_source = record.topic() == source;
        if from_source {
            let _ = self
                .first
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            self.last.fetch_max(now, Ordering::Relaxed);
            let marked = self.marked.swap(0, Ordering::Relaxed);
            if marked != 0 {
                self.gaps.lock().unwrap().push(now - marked);
            }
        } else {
            // A retry stream: the header says which one.
            let attempt = record.headers().get(RETRY_ATTEMPT);
            if attempt != Some(&b"1"[..]) {
                return Err(std::io::Error::other(format!(
                    "record {n} from {} with attempt {attempt:?}",
                    record.topic()
                )));
            }
        }
        let failed_before = self.failures[n].load(Ordering::Relaxed) > 0;
        if failed_before {
            self.reruns[n].fetch_add(1, Ordering::Relaxed);
        }
        let result = if fail && n % FAIL_EVERY as usize == 0 && !failed_before {
            self.failures[n].fetch_add(1, Ordering::Relaxed);
            Err(std::io::Error::other("fails on its first run"))
        } else {
            self.succeeded.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        if !from_source {
            self.last_retry
                .fetch_max(stamp(self.since), Ordering::Relaxed);
        } else if n % FAIL_EVERY as usize == 0 && !failed_before {
            self.marked.store(stamp(self.since), Ordering::Relaxed);
        }
        result
    }
}

/// The figures of one round.
struct RoundResult {
    /// Records per second of the source partition.
    rate: f64,
    /// Seconds from the first source record handled to the last.
    source_seconds: f64,
    /// Seconds from the first source record handled to the last retry from
    /// a retry stream, if there were any.
    retries_done: Option<f64>,
    /// The median gap after a 100th record before the next source record,
    /// in ms.
    gap_ms: f64,
}

/// Publishes `records` and consumes them under `scenario`.
async fn round(scenario: &Scenario, records: u32, round: usize) -> anyhow::Result<RoundResult> {
    let slug: String = scenario
        .name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let prefix = format!("bench-retry-{}-{slug}-r{round}.", std::process::id());
    let publisher = app(&prefix, None, None)?;
    for n in 0..records {
        let mut value = format!("{n:010}").into_bytes();
        value.resize(RECORD_BYTES, b'.');
        publisher.raw_publish("tasks", value).await?;
    }
    publisher.flush().await?;

    // The group is unique to the round too: a member left behind by an
    // earlier round cannot delay this one's join.
    let group = format!("retry-path-{}-{slug}-r{round}", std::process::id());
    let source = format!("{prefix}tasks");
    let seen = Arc::new(Seen::new(records));
    let fail = !matches!(scenario.policy, Policy::Baseline);
    let mut subscription = Subscription::new("tasks", {
        let seen = seen.clone();
        let source = source.clone();
        move |record: Record| {
            let result = seen.handle(&record, &source, fail);
            async move { result }
        }
    })
    .with_name(group.clone())
    .with_group(group.clone());
    let mut linger = None;
    match scenario.policy {
        Policy::Baseline => {}
        Policy::RetryStream { linger_ms } => {
            linger = linger_ms;
            subscription = subscription
                .on_error(ErrorPolicy::retry_in([RETRY_DELAY]).then_dead_letter("tasks.dead"));
            anyhow::ensure!(subscription.retry_streams() == [format!("{group}.retry-5s")]);
        }
        Policy::InPlace(backoff) => {
            subscription = subscription.on_error(ErrorPolicy::retry(1, backoff));
        }
    }
    let consumer = app(&prefix, linger, Some(subscription))?;
    let run = tokio::spawn({
        let consumer = consumer.clone();
        async move { consumer.consume_forever().await }
    });
    let deadline = Instant::now() + Duration::from_secs(1800);
    while seen.succeeded.load(Ordering::Relaxed) < u64::from(records) {
        anyhow::ensure!(
            Instant::now() < deadline && !run.is_finished(),
            "{}: {} of {records} succeeded; {:?}",
            scenario.name,
            seen.succeeded.load(Ordering::Relaxed),
            consumer.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    consumer.stop();
    run.await??;

    let failing = if fail {
        records.div_ceil(FAIL_EVERY) as usize
    } else {
        0
    };
    let failed: usize = seen
        .failures
        .iter()
        .map(|f| usize::from(f.load(Ordering::Relaxed)))
        .sum();
    let reran_once = seen
        .reruns
        .iter()
        .filter(|r| r.load(Ordering::Relaxed) == 1)
        .count();
    let reran = seen
        .reruns
        .iter()
        .filter(|r| r.load(Ordering::Relaxed) > 0)
        .count();
    anyhow::ensure!(
        failed == failing && reran_once == failing && reran == failing,
        "{}: {failing} should fail once and run once more; {failed} failed, \
         {reran_once} ran once more, {reran} ran again at all",
        scenario.name
    );
    let stats = &consumer.stats()[&group];
    let moved = match scenario.policy {
        Policy::RetryStream { .. } => stats.retried_later,
        Policy::InPlace(_) => stats.retried,
        Policy::Baseline => 0,
    };
    anyhow::ensure!(
        moved == failing as u64 && stats.dead_lettered == 0,
        "{}: stats {stats:?}, {failing} failing",
        scenario.name
    );

    let first = seen.first.load(Ordering::Relaxed);
    let last = seen.last.load(Ordering::Relaxed);
    let source_seconds = last.saturating_sub(first) as f64 / 1e9;
    let last_retry = seen.last_retry.load(Ordering::Relaxed);
    let gaps: Vec<f64> = seen
        .gaps
        .lock()
        .unwrap()
        .iter()
        .map(|&ns| ns as f64 / 1e6)
        .collect();
    Ok(RoundResult {
        // The first record's own time is not in the span: count the others.
        rate: f64::from(records - 1) / source_seconds,
        source_seconds,
        retries_done: (last_retry != 0).then(|| last_retry.saturating_sub(first) as f64 / 1e9),
        gap_ms: median(&gaps),
    })
}

/// The median time of one acknowledged write of a record like the
/// scenarios', one at a time, as a move to a retry stream makes it; in ms.
async fn acknowledged_write(linger_ms: Option<u32>, writes: u32) -> anyhow::Result<f64> {
    let prefix = format!(
        "bench-retry-{}-ackwrite-l{}.",
        std::process::id(),
        linger_ms.map_or("default".to_owned(), |l| l.to_string())
    );
    let publisher = app(&prefix, linger_ms, None)?;
    // The first write creates the topic and connects: not timed.
    publisher
        .raw_publish("writes", vec![b'.'; RECORD_BYTES])
        .wait()
        .await?;
    let mut times = Vec::with_capacity(writes as usize);
    for _ in 0..writes {
        let started = Instant::now();
        publisher
            .raw_publish("writes", vec![b'.'; RECORD_BYTES])
            .wait()
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&times))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u32 = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let only = args.next().unwrap_or_default();
    let scenarios = [
        Scenario {
            name: "no failures",
            policy: Policy::Baseline,
            divisor: 1,
        },
        Scenario {
            name: "1 % retry streams",
            policy: Policy::RetryStream { linger_ms: None },
            divisor: 1,
        },
        Scenario {
            name: "1 % retry streams, linger.ms=0",
            policy: Policy::RetryStream { linger_ms: Some(0) },
            divisor: 1,
        },
        Scenario {
            name: "1 % in-place retry, 1 s",
            policy: Policy::InPlace(Duration::from_secs(1)),
            divisor: 10,
        },
        Scenario {
            name: "1 % in-place retry, 5 s",
            policy: Policy::InPlace(RETRY_DELAY),
            divisor: 100,
        },
    ];
    println!(
        "{} cores; {records} records of {RECORD_BYTES} B on one partition, every \
         {FAIL_EVERY}th failing once; retry stream delay {RETRY_DELAY:?}; {rounds} rounds, medians",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| scenario | records | source records/s | × baseline | source span s | \
         source time added per failed record ms | last retry done s | \
         gap after a 100th record ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut baseline = None;
    for scenario in scenarios.iter().filter(|s| s.name.contains(only.as_str())) {
        let count = records / scenario.divisor;
        let mut results = Vec::with_capacity(rounds);
        for r in 0..rounds {
            results.push(round(scenario, count, r).await?);
        }
        let pick = |f: fn(&RoundResult) -> f64| median(&results.iter().map(f).collect::<Vec<_>>());
        let rate = pick(|r| r.rate);
        if matches!(scenario.policy, Policy::Baseline) {
            baseline = Some(rate);
        }
        // Six places: in-place retries read 0.000 at three.
        let ratio = baseline.map_or("–".to_owned(), |b| format!("{:.6}", rate / b));
        let retries = match scenario.policy {
            Policy::RetryStream { .. } => {
                format!("{:.2}", pick(|r| r.retries_done.unwrap_or(f64::NAN)))
            }
            _ => "–".to_owned(),
        };
        let source_seconds = pick(|r| r.source_seconds);
        // What the failures added to the source partition's time, against
        // the baseline's time for as many records.
        let failing = count.div_ceil(FAIL_EVERY);
        let added = match baseline {
            Some(b) if !matches!(scenario.policy, Policy::Baseline) => format!(
                "{:.2}",
                (source_seconds - f64::from(count - 1) / b) * 1e3 / f64::from(failing)
            ),
            _ => "–".to_owned(),
        };
        println!(
            "| {} | {count} | {rate:.0} | {ratio} | {source_seconds:.2} | {added} | {retries} | {:.3} |",
            scenario.name,
            pick(|r| r.gap_ms),
        );
    }
    if "acknowledged write".contains(only.as_str()) {
        for linger in [None, Some(0)] {
            let ms = acknowledged_write(linger, 200).await?;
            println!(
                "acknowledged write of one {RECORD_BYTES} B record, linger.ms={}: median {ms:.2} ms of 200",
                linger.map_or("default (5)".to_owned(), |l| l.to_string())
            );
        }
    }
    Ok(())
}
