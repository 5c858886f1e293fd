//! `handler-modes`: how kafkaesk's handler modes scale, on the broker at
//! `KAFKA` (default 127.0.0.1:9092), every side with `fetch.wait.max.ms=5`.
//!
//! - **CPU-bound handlers**: each record costs about 50 µs of CPU. Handlers
//!   on the consumer's task (the default) against `parallel` subscriptions,
//!   whose handlers are tasks of their own on the runtime's worker threads.
//! - **Per-key ordering**: each record waits 10 ms (I/O), 1,000 distinct keys
//!   on 7 partitions. Unordered concurrency against `order = key` and
//!   `order = partition`, at the same concurrency; and `order = key` with
//!   one hot key that carries every 100th record, whose records must run one
//!   after another while the other keys' records go around them.
//!
//! ```text
//! cargo run -p kafkaesk-bench --release --bin handler-modes -- [RECORDS] [ROUNDS] [ONLY]
//! ```
//!
//! `ONLY` runs the scenarios whose names contain it.
//!
//! Each round publishes the records once per scenario to a fresh topic and
//! times consuming them all, from the first record handled to the last (so
//! joining the group is not counted); the table gives medians over the
//! rounds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesk::subscription::RecordOrder;
use kafkaesk::{Application, Subscription};
use kafkaesk_bench::measure::median;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Task {
    n: u32,
}

impl kafkaesk::Schema for Task {
    const ID: &'static str = "HandlerModesTask";
}

/// What a record costs a CPU-bound handler.
const CPU_COST: Duration = Duration::from_micros(50);

/// How a scenario's handler behaves.
#[derive(Clone, Copy)]
enum Load {
    /// Computes for this long.
    Cpu(Duration),
    /// Waits this long.
    Io(Duration),
}

struct Scenario {
    name: &'static str,
    load: Load,
    concurrency: usize,
    parallel: bool,
    order: RecordOrder,
    /// Every this many records share one key; the others cycle through
    /// 1,000 keys.
    hot_every: Option<u32>,
}

/// The key of the `n`th record published for `scenario`.
fn key(scenario: &Scenario, n: u32) -> String {
    match scenario.hot_every {
        Some(every) if n % every == 0 => "hot".to_owned(),
        _ => format!("key-{}", n % 1000),
    }
}

fn servers() -> String {
    std::env::var("KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn app(prefix: &str, subscription: Option<Subscription>) -> anyhow::Result<Application> {
    let mut builder = Application::builder()
        .kafka_servers([servers()])
        .topic_prefix(prefix)
        .kafka_setting("fetch.wait.max.ms", "5");
    if let Some(subscription) = subscription {
        builder = builder.subscribe(subscription);
    }
    Ok(builder.build()?)
}

/// When the first and the last record were handled, in ns after a start.
#[derive(Default)]
struct Span {
    first: AtomicU64,
    last: AtomicU64,
}

impl Span {
    fn handled(&self, since: Instant) {
        // Never 0, so 0 can mean "none yet".
        let at = since.elapsed().as_nanos() as u64 + 1;
        let _ = self
            .first
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
        self.last.fetch_max(at, Ordering::Relaxed);
    }

    fn seconds(&self) -> f64 {
        let first = self.first.load(Ordering::Relaxed);
        let last = self.last.load(Ordering::Relaxed);
        last.saturating_sub(first) as f64 / 1e9
    }
}

/// Publishes `records` with 1,000 distinct keys, then times consuming them
/// all under `scenario`; returns records per second between the first and
/// the last record handled.
async fn round(scenario: &Scenario, records: u32, round: usize) -> anyhow::Result<f64> {
    let prefix = format!(
        "bench-modes-{}-{}-r{round}.",
        std::process::id(),
        scenario.name
    );
    let publisher = app(&prefix, None)?;
    for n in 0..records {
        let key = key(scenario, n);
        publisher
            .publish("tasks", &Task { n })
            .key(key.as_str())
            .await?;
    }
    publisher.flush().await?;

    let load = scenario.load;
    let span = Arc::new(Span::default());
    let since = Instant::now();
    let handled = span.clone();
    let mut subscription = Subscription::new("tasks", move |_: Task| {
        let handled = handled.clone();
        async move {
            match load {
                Load::Cpu(cost) => {
                    let until = Instant::now() + cost;
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }
                Load::Io(wait) => tokio::time::sleep(wait).await,
            }
            handled.handled(since);
        }
    })
    .with_name("tasks")
    .with_group(format!("{prefix}tasks"))
    .with_concurrency(scenario.concurrency)
    .with_order(scenario.order);
    if scenario.parallel {
        subscription = subscription.parallel();
    }
    let consumer = app(&prefix, Some(subscription))?;
    let consumed = consumer
        .consume_for(records as usize, Duration::from_secs(600))
        .await?;
    // The first record's own time is not in the span: count the others.
    let seconds = span.seconds();
    anyhow::ensure!(
        consumed == records as usize,
        "{}: consumed {consumed} of {records}",
        scenario.name
    );
    Ok(f64::from(records - 1) / seconds)
}

/// The machine's ceiling for the CPU-bound scenarios: `records` spins of
/// `cost` on every core, with no Kafka and no framework; records per second.
fn cpu_ceiling(records: u32, cost: Duration) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..records / threads {
                    let until = Instant::now() + cost;
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }
            });
        }
    });
    f64::from(records / threads * threads) / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u32 = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let only = args.next().unwrap_or_default();
    let cpu = Load::Cpu(CPU_COST);
    let io = Load::Io(Duration::from_millis(10));
    let scenarios = [
        Scenario {
            name: "cpu-inline-c1",
            load: cpu,
            concurrency: 1,
            parallel: false,
            order: RecordOrder::Unordered,
            hot_every: None,
        },
        Scenario {
            name: "cpu-inline-c8",
            load: cpu,
            concurrency: 8,
            parallel: false,
            order: RecordOrder::Unordered,
            hot_every: None,
        },
        Scenario {
            name: "cpu-parallel-c8",
            load: cpu,
            concurrency: 8,
            parallel: true,
            order: RecordOrder::Unordered,
            hot_every: None,
        },
        Scenario {
            name: "cpu-parallel-c64",
            load: cpu,
            concurrency: 64,
            parallel: true,
            order: RecordOrder::Unordered,
            hot_every: None,
        },
        Scenario {
            name: "io-unordered-c64",
            load: io,
            concurrency: 64,
            parallel: false,
            order: RecordOrder::Unordered,
            hot_every: None,
        },
        Scenario {
            name: "io-key-c64",
            load: io,
            concurrency: 64,
            parallel: false,
            order: RecordOrder::Key,
            hot_every: None,
        },
        Scenario {
            name: "io-key-hot-c64",
            load: io,
            concurrency: 64,
            parallel: false,
            order: RecordOrder::Key,
            hot_every: Some(100),
        },
        Scenario {
            name: "io-partition-c64",
            load: io,
            concurrency: 64,
            parallel: false,
            order: RecordOrder::Partition,
            hot_every: None,
        },
    ];
    println!(
        "{} cores; {records} records per run, {rounds} rounds, medians",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| scenario | records/s |");
    println!("|---|---:|");
    let ceilings: Vec<f64> = (0..rounds)
        .map(|_| cpu_ceiling(records, CPU_COST))
        .collect();
    println!("| cpu-ceiling-no-kafka | {:.0} |", median(&ceilings));
    for scenario in scenarios.iter().filter(|s| s.name.contains(only.as_str())) {
        // The I/O scenarios wait 10 ms a record: fewer records keep them short.
        let count = match scenario.load {
            Load::Cpu(_) => records,
            Load::Io(_) => records / 4,
        };
        let mut rates = Vec::with_capacity(rounds);
        for r in 0..rounds {
            rates.push(round(scenario, count, r).await?);
        }
        println!("| {} | {:.0} |", scenario.name, median(&rates));
    }
    Ok(())
}
