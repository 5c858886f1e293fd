//! `kafkaesk-bench`: kafkaesk against hand-written rdkafka code and Python
//! kafkaesk 0.8.5, on the broker at `KAFKA` (default 127.0.0.1:9092).
//!
//! ```text
//! cargo run -p kafkaesk-bench --release -- --messages 200000 --rounds 3
//! cargo run -p kafkaesk-bench --release -- --quick      # tiny counts, for CI
//! ```
//!
//! Prints a table and writes `BENCHMARKS.md` and the SVG plots it shows, one per
//! scenario, under `bench/plots/` beside it. Every scenario runs the baseline and
//! kafkaesk alternately, `--rounds` times, in fresh topics
//! (`bench-<pid>-r<round>.*`), and reports medians.
//!
//! Built with `--features ruststream`, every Rust scenario also runs RustStream
//! 0.7 (`ruststream` + `ruststream-rdkafka`), the Rust peer of issue 19, as a
//! third side in the same rotation.

mod kafka;
mod plot;
mod python;
mod report;
#[cfg(feature = "ruststream")]
mod ruststream;
mod scenarios;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use kafkaesk_bench::measure::{peak_rss_kib, rss_kib};
use kafkaesk_bench::micro::{self, MicroResult};
use scenarios::consume::{self, ConsumeSpec};
use scenarios::latency::{self, LatencyResult, LatencySpec};
use scenarios::memory::{self, DrainReport, Side};
use scenarios::publish;

/// One measured run: how many messages, how long, how much CPU.
#[derive(Debug, Clone, Copy)]
pub struct RunResult {
    /// Messages in the run.
    pub messages: usize,
    /// Seconds the run took (see each scenario for what is timed).
    pub seconds: f64,
    /// CPU time (user + system) of the process over the run.
    pub cpu: Duration,
}

impl RunResult {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }

    /// CPU microseconds per message.
    pub fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.messages.max(1) as f64
    }
}

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Benchmarks kafkaesk against rdkafka and Python kafkaesk"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: Options,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Drains a topic in this process and prints a JSON report (used by scenario 5).
    #[command(hide = true)]
    Drain(DrainArgs),
    /// Creates a topic and fills it with bench messages, for drains run by
    /// hand (`bench/callgrind.sh` counts each side's instructions that way).
    #[command(hide = true)]
    Fill(FillArgs),
    /// Publishes bench messages to a new topic from this process, for
    /// publishes run by hand (`bench/callgrind.sh publish` counts each side's
    /// instructions that way).
    #[command(hide = true)]
    Publish(PublishArgs),
}

/// What every child run by hand takes: which side, against which broker, on
/// which stream, how many messages.
#[derive(Args, Debug)]
struct ChildArgs {
    /// `baseline`, `kafkaesk`, or `ruststream` when built with that feature.
    #[arg(long, value_enum)]
    side: Side,
    #[arg(long)]
    kafka: String,
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    stream: String,
    #[arg(long)]
    messages: usize,
    #[command(flatten)]
    settings: SettingArgs,
}

#[derive(Args, Debug)]
struct PublishArgs {
    #[command(flatten)]
    child: ChildArgs,
    /// kafkaesk without idempotence, as the baseline's producer.
    #[arg(long)]
    plain: bool,
}

#[derive(Args, Debug)]
struct FillArgs {
    #[arg(long)]
    kafka: String,
    /// Full topic name.
    #[arg(long)]
    topic: String,
    #[arg(long)]
    messages: usize,
}

#[derive(Args, Debug)]
struct DrainArgs {
    #[command(flatten)]
    child: ChildArgs,
    #[arg(long)]
    group: String,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
}

/// librdkafka properties for experiments; none by default.
#[derive(Args, Debug, Clone, Default)]
struct SettingArgs {
    /// A librdkafka property for every client, baseline and kafkaesk (KEY=VALUE, repeatable).
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = kafka::parse_setting)]
    both: Vec<(String, String)>,
    /// A librdkafka property for kafkaesk's clients only, to try a library default
    /// (KEY=VALUE, repeatable).
    #[arg(long = "kafkaesk-setting", value_name = "KEY=VALUE", value_parser = kafka::parse_setting)]
    kafkaesk: Vec<(String, String)>,
}

impl SettingArgs {
    fn extra(&self) -> kafka::ExtraSettings {
        kafka::ExtraSettings {
            both: self.both.clone(),
            kafkaesk: self.kafkaesk.clone(),
        }
    }

    fn install(&self) {
        kafka::set_extra_settings(self.extra());
    }

    /// The same options again, for a child process.
    fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, list) in [
            ("--setting", &self.both),
            ("--kafkaesk-setting", &self.kafkaesk),
        ] {
            for (key, value) in list {
                args.push(flag.to_owned());
                args.push(format!("{key}={value}"));
            }
        }
        args
    }
}

#[derive(Args, Debug, Clone)]
struct Options {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA", default_value = "127.0.0.1:9092")]
    kafka: String,
    /// Messages per consume and publish run (scenarios 1, 2 and 6).
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Times each scenario runs baseline and kafkaesk, alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// kafkaesk consume concurrency settings to try.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    concurrency: Vec<usize>,
    /// Publish rate of the latency scenario, messages per second.
    #[arg(long, default_value_t = 1000)]
    latency_rate: u32,
    /// How long the latency scenario publishes, seconds.
    #[arg(long, default_value_t = 10.0)]
    latency_seconds: f64,
    /// Backlog drained by the memory scenario.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: usize,
    /// Also publish through kafkaesk transactions of this many messages
    /// (0: not). Needs a broker that completes transactions, as Apache Kafka
    /// does and the embedded broker (tansu 0.6.0) does not.
    #[arg(long, default_value_t = 0)]
    transactions: usize,
    /// Skip Python kafkaesk.
    #[arg(long)]
    skip_python: bool,
    /// Messages per Python run (defaults to --messages).
    #[arg(long)]
    python_messages: Option<usize>,
    /// Concurrency of the second Python consume run.
    #[arg(long, default_value_t = 500)]
    python_concurrency: usize,
    /// Virtual environment for Python kafkaesk (created by bench/python/setup.sh).
    #[arg(long, env = "KAFKAESK_BENCH_VENV")]
    venv: Option<PathBuf>,
    /// Messages per round of the broker-free micro-benchmark.
    #[arg(long, default_value_t = 100_000)]
    micro_messages: usize,
    /// Run only these scenarios (comma-separated): consume, publish, python,
    /// latency, memory, micro. All by default.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Scenario>,
    /// Tiny counts for CI: --messages 2000 --rounds 1 --latency-seconds 1
    /// --backlog 5000 --skip-python, output under the target directory.
    #[arg(long)]
    quick: bool,
    /// Where to write the report (default: BENCHMARKS.md at the repository root
    /// for a full run; target/bench-quick/ with --quick, target/bench-partial/
    /// with --only, so a partial run never overwrites the committed report).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Name of the broker, for the report.
    #[arg(
        long,
        env = "KAFKAESK_BENCH_BROKER",
        default_value = "Apache Kafka 4.4.0, one KRaft node (scripts/broker.sh)"
    )]
    broker_name: String,
    /// Give up on one run after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    #[command(flatten)]
    settings: SettingArgs,
}

/// A scenario that `--only` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Consume,
    Publish,
    Python,
    Latency,
    Memory,
    Micro,
}

impl Options {
    fn runs(&self, scenario: Scenario) -> bool {
        self.only.is_empty() || self.only.contains(&scenario)
    }

    fn apply_quick(&mut self) {
        if !self.quick {
            return;
        }
        self.messages = self.messages.min(2000);
        self.rounds = 1;
        self.latency_seconds = self.latency_seconds.min(1.0);
        self.backlog = self.backlog.min(5000);
        self.skip_python = true;
        self.micro_messages = self.micro_messages.min(5000);
    }

    fn repo_root() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
    }

    /// Where the report goes: `--output`, or `BENCHMARKS.md` in it when it
    /// names a directory.
    fn output(&self) -> PathBuf {
        match (&self.output, self.quick) {
            (Some(path), _) if path.is_dir() || path.to_string_lossy().ends_with('/') => {
                path.join("BENCHMARKS.md")
            }
            (Some(path), _) => path.clone(),
            (None, true) => Self::repo_root().join("target/bench-quick/BENCHMARKS.md"),
            (None, false) if !self.only.is_empty() => {
                Self::repo_root().join("target/bench-partial/BENCHMARKS.md")
            }
            (None, false) => Self::repo_root().join("BENCHMARKS.md"),
        }
    }

    fn venv(&self) -> PathBuf {
        self.venv
            .clone()
            .unwrap_or_else(|| Self::repo_root().join("target/bench-python-venv"))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

/// Every number of a benchmark run.
#[derive(Debug, Default)]
pub struct Results {
    /// Baseline consume runs.
    pub consume_baseline: Vec<RunResult>,
    /// kafkaesk consume runs by concurrency.
    pub consume_kafkaesk: BTreeMap<usize, Vec<RunResult>>,
    /// Baseline publish runs.
    pub publish_baseline: Vec<RunResult>,
    /// kafkaesk publish runs (idempotent, its default).
    pub publish_kafkaesk: Vec<RunResult>,
    /// kafkaesk publish runs with `enable.idempotence=false`, for the cost
    /// of idempotence.
    pub publish_kafkaesk_plain: Vec<RunResult>,
    /// kafkaesk publish runs in transactions (`--transactions N`), and N.
    pub publish_kafkaesk_transactional: Vec<RunResult>,
    pub transaction_size: usize,
    /// Python consume runs by label (`default`, `500`).
    pub python_consume: BTreeMap<String, Vec<RunResult>>,
    /// Python publish runs.
    pub python_publish: Vec<RunResult>,
    /// Why Python kafkaesk did not run, or failed.
    pub python_error: Option<String>,
    /// Interpreter and package versions of the Python side.
    pub python_versions: Option<String>,
    /// Baseline latency runs.
    pub latency_baseline: Vec<LatencyResult>,
    /// kafkaesk latency runs.
    pub latency_kafkaesk: Vec<LatencyResult>,
    /// Memory drains.
    pub memory: Vec<DrainReport>,
    /// Broker-free per-message costs.
    pub micro: Option<MicroResult>,
    /// RustStream consume runs by workers (1: its default, one delivery at a time).
    pub consume_ruststream: BTreeMap<usize, Vec<RunResult>>,
    /// RustStream publish runs.
    pub publish_ruststream: Vec<RunResult>,
    /// RustStream latency runs.
    pub latency_ruststream: Vec<LatencyResult>,
    /// RustStream's versions, when it ran.
    pub ruststream_versions: Option<String>,
}

/// One side of a broker scenario, in the order a round runs them.
#[derive(Debug, Clone, Copy)]
enum Runner {
    Baseline,
    /// kafkaesk, with the consume concurrency (1 for publish and latency).
    Kafkaesk(usize),
    /// RustStream, with the consume workers (1 for publish and latency).
    #[cfg(feature = "ruststream")]
    Ruststream(usize),
}

/// The sides of one scenario in round `round`: the baseline, kafkaesk (one run per
/// entry of `concurrency`) and, with the feature, RustStream, as groups rotated
/// by the round so that no side always runs first on a warmer broker.
fn rotation(round: usize, concurrency: &[usize]) -> Vec<Runner> {
    let mut groups: Vec<Vec<Runner>> = vec![
        vec![Runner::Baseline],
        concurrency.iter().copied().map(Runner::Kafkaesk).collect(),
    ];
    #[cfg(feature = "ruststream")]
    groups.push(
        concurrency
            .iter()
            .copied()
            .map(Runner::Ruststream)
            .collect(),
    );
    let len = groups.len();
    groups.rotate_left(round % len);
    groups.concat()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Some(Command::Drain(args)) => {
            args.child.settings.install();
            runtime.block_on(drain(args))
        }
        Some(Command::Fill(args)) => runtime.block_on(async {
            kafka::Admin::new(&args.kafka)?.create(&args.topic).await?;
            kafka::prefill(&args.kafka, &args.topic, args.messages).await
        }),
        Some(Command::Publish(args)) => {
            args.child.settings.install();
            runtime.block_on(publish_once(args))
        }
        None => {
            let mut options = cli.options;
            options.settings.install();
            options.apply_quick();
            // Before the first run, not after the last: a report that cannot
            // be written would lose every figure.
            check_output(&options.output())?;
            runtime.block_on(run(options))
        }
    }
}

/// Fails unless the report can be written at `path`: its folder made, and
/// a file written there.
fn check_output(path: &Path) -> Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "--output {}: a directory named like the report is in the way",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("--output {}: creating {}", path.display(), dir.display()))?;
    let probe = dir.join(format!(".kafkaesk-bench-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "--output {}: cannot write in {}",
            path.display(),
            dir.display()
        )
    })?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// The child side of scenario 5.
async fn drain(args: DrainArgs) -> Result<()> {
    let spec = ConsumeSpec {
        servers: args.child.kafka,
        prefix: args.child.prefix,
        stream: args.child.stream,
        group: args.group,
        messages: args.child.messages,
        timeout: Duration::from_secs(args.timeout_seconds),
    };
    let start_rss_kib = rss_kib().unwrap_or_default();
    let result = match args.child.side {
        Side::Baseline => consume::baseline(&spec).await?,
        Side::Kafkaesk => consume::kafkaesk(&spec, args.concurrency).await?,
        #[cfg(feature = "ruststream")]
        Side::Ruststream => ruststream::consume(&spec, args.concurrency).await?,
    };
    let report = DrainReport {
        side: args.child.side,
        concurrency: args.concurrency,
        messages: result.messages,
        seconds: result.seconds,
        cpu_seconds: result.cpu.as_secs_f64(),
        start_rss_kib,
        peak_rss_kib: peak_rss_kib().context("reading VmHWM from /proc/self/status")?,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// One side's publish of `--messages`, in this process; prints rate and CPU.
async fn publish_once(args: PublishArgs) -> Result<()> {
    let topic = format!("{}{}", args.child.prefix, args.child.stream);
    kafka::Admin::new(&args.child.kafka)?.create(&topic).await?;
    let mode = if args.plain {
        publish::Mode::Plain
    } else {
        publish::Mode::Idempotent
    };
    let run = match args.child.side {
        Side::Baseline => publish::baseline(&args.child.kafka, &topic, args.child.messages).await?,
        Side::Kafkaesk => {
            publish::kafkaesk(
                &args.child.kafka,
                &args.child.prefix,
                &args.child.stream,
                args.child.messages,
                mode,
            )
            .await?
        }
        #[cfg(feature = "ruststream")]
        Side::Ruststream => {
            ruststream::publish(&args.child.kafka, &topic, args.child.messages).await?
        }
    };
    report::progress("publish", &format!("{:?}", args.child.side), &run);
    Ok(())
}

async fn run(options: Options) -> Result<()> {
    let pid = std::process::id();
    let admin = kafka::Admin::new(&options.kafka)?;
    let mut results = Results::default();
    let mut python = if options.skip_python || !options.runs(Scenario::Python) {
        results.python_error = Some("skipped (--skip-python or --only)".to_owned());
        None
    } else {
        match python::Python::setup(&options.venv()) {
            Ok(python) => Some(python),
            Err(err) => {
                eprintln!("python kafkaesk unavailable: {err:#}");
                results.python_error = Some(format!("{err:#}"));
                None
            }
        }
    };
    let python_messages = options.python_messages.unwrap_or(options.messages);
    let timeout = options.timeout();

    for round in 0..options.rounds {
        let prefix = format!("bench-{pid}-r{round}.");
        let mut topics = Vec::new();
        eprintln!("== round {} of {} ({prefix})", round + 1, options.rounds);

        // Scenario 1: consume. Python's consume runs read the same topic.
        let topic = format!("{prefix}consume");
        let consume_runs = options.runs(Scenario::Consume);
        if consume_runs || python.is_some() {
            admin.create(&topic).await?;
            topics.push(topic.clone());
            let messages = if consume_runs { options.messages } else { 0 }
                .max(if python.is_some() { python_messages } else { 0 });
            eprintln!("pre-filling {topic} with {messages} messages");
            kafka::prefill(&options.kafka, &topic, messages).await?;
        }
        let spec = |group: String, messages: usize| ConsumeSpec {
            servers: options.kafka.clone(),
            prefix: prefix.clone(),
            stream: "consume".to_owned(),
            group,
            messages,
            timeout,
        };
        let order = if consume_runs {
            rotation(round, &options.concurrency)
        } else {
            Vec::new()
        };
        for side in order {
            match side {
                Runner::Baseline => {
                    let run = consume::baseline(&spec(format!("{prefix}base"), options.messages))
                        .await
                        .context("consume baseline")?;
                    report::progress("consume", "rdkafka baseline", &run);
                    results.consume_baseline.push(run);
                }
                Runner::Kafkaesk(c) => {
                    let run = consume::kafkaesk(
                        &spec(format!("{prefix}kafkaesk-c{c}"), options.messages),
                        c,
                    )
                    .await
                    .with_context(|| format!("consume kafkaesk concurrency {c}"))?;
                    report::progress("consume", &format!("kafkaesk c={c}"), &run);
                    results.consume_kafkaesk.entry(c).or_default().push(run);
                }
                #[cfg(feature = "ruststream")]
                Runner::Ruststream(c) => {
                    let run = ruststream::consume(
                        &spec(format!("{prefix}ruststream-w{c}"), options.messages),
                        c,
                    )
                    .await
                    .with_context(|| format!("consume RustStream workers {c}"))?;
                    report::progress("consume", &format!("RustStream workers={c}"), &run);
                    results.consume_ruststream.entry(c).or_default().push(run);
                }
            }
        }

        // Scenario 2: publish.
        let base_topic = format!("{prefix}publish-base");
        let kafkaesk_stream = "publish-kafkaesk";
        let publish_runs = options.runs(Scenario::Publish);
        #[cfg(feature = "ruststream")]
        let ruststream_topic = format!("{prefix}publish-ruststream");
        if publish_runs {
            #[allow(unused_mut)]
            let mut names = vec![base_topic.clone(), format!("{prefix}{kafkaesk_stream}")];
            #[cfg(feature = "ruststream")]
            names.push(ruststream_topic.clone());
            for t in names {
                admin.create(&t).await?;
                topics.push(t);
            }
        }
        let order = if publish_runs {
            rotation(round, &[1])
        } else {
            Vec::new()
        };
        for side in order {
            match side {
                Runner::Baseline => {
                    let run = publish::baseline(&options.kafka, &base_topic, options.messages)
                        .await
                        .context("publish baseline")?;
                    report::progress("publish", "rdkafka baseline", &run);
                    results.publish_baseline.push(run);
                }
                Runner::Kafkaesk(_) => {
                    let mut modes = vec![
                        (publish::Mode::Idempotent, "kafkaesk"),
                        (publish::Mode::Plain, "kafkaesk, not idempotent"),
                    ];
                    if options.transactions > 0 {
                        modes.push((
                            publish::Mode::Transactions(options.transactions),
                            "kafkaesk, transactions",
                        ));
                        results.transaction_size = options.transactions;
                    }
                    for (mode, side) in modes {
                        let run = publish::kafkaesk(
                            &options.kafka,
                            &prefix,
                            kafkaesk_stream,
                            options.messages,
                            mode,
                        )
                        .await
                        .with_context(|| format!("publish {side}"))?;
                        report::progress("publish", side, &run);
                        match mode {
                            publish::Mode::Idempotent => results.publish_kafkaesk.push(run),
                            publish::Mode::Plain => results.publish_kafkaesk_plain.push(run),
                            publish::Mode::Transactions(_) => {
                                results.publish_kafkaesk_transactional.push(run)
                            }
                        }
                    }
                }
                #[cfg(feature = "ruststream")]
                Runner::Ruststream(_) => {
                    let run =
                        ruststream::publish(&options.kafka, &ruststream_topic, options.messages)
                            .await
                            .context("publish RustStream")?;
                    report::progress("publish", "RustStream", &run);
                    results.publish_ruststream.push(run);
                }
            }
        }

        // Scenario 6: Python kafkaesk on the same pre-filled topic.
        if let Some(py) = python.as_mut() {
            let py_topic = format!("{prefix}publish-python");
            admin.create(&py_topic).await?;
            topics.push(py_topic);
            match run_python(py, &options, &prefix, python_messages, &mut results) {
                Ok(()) => {}
                Err(err) => {
                    eprintln!("python kafkaesk failed: {err:#}");
                    results.python_error = Some(format!("{err:#}"));
                    python = None;
                }
            }
        }

        // Scenario 4: latency.
        let latency_spec = |side: &str| LatencySpec {
            servers: options.kafka.clone(),
            prefix: prefix.clone(),
            stream: format!("latency-{side}"),
            group: format!("{prefix}latency-{side}"),
            rate: options.latency_rate,
            duration: Duration::from_secs_f64(options.latency_seconds),
        };
        let latency_runs = options.runs(Scenario::Latency);
        if latency_runs {
            for side in ["base", "kafkaesk", "ruststream"] {
                if side == "ruststream" && !cfg!(feature = "ruststream") {
                    continue;
                }
                let t = format!("{prefix}latency-{side}");
                admin.create(&t).await?;
                topics.push(t);
            }
        }
        let order = if latency_runs {
            rotation(round, &[1])
        } else {
            Vec::new()
        };
        for side in order {
            match side {
                Runner::Baseline => {
                    let run = latency::baseline(&latency_spec("base"))
                        .await
                        .context("latency baseline")?;
                    report::latency_progress("rdkafka baseline", &run);
                    results.latency_baseline.push(run);
                }
                Runner::Kafkaesk(_) => {
                    let run = latency::kafkaesk(&latency_spec("kafkaesk"))
                        .await
                        .context("latency kafkaesk")?;
                    report::latency_progress("kafkaesk", &run);
                    results.latency_kafkaesk.push(run);
                }
                #[cfg(feature = "ruststream")]
                Runner::Ruststream(_) => {
                    let run = ruststream::latency(&latency_spec("ruststream"))
                        .await
                        .context("latency RustStream")?;
                    report::latency_progress("RustStream", &run);
                    results.latency_ruststream.push(run);
                }
            }
        }

        admin.delete(&topics).await;
    }

    if options.runs(Scenario::Memory) {
        memory_scenario(&options, &admin, &mut results).await?;
    }
    if options.runs(Scenario::Micro) {
        // Scenario 3: per-message cost without a broker.
        let (messages, rounds) = (options.micro_messages, options.rounds.max(3));
        eprintln!("micro-benchmark: {messages} messages x {rounds} rounds");
        results.micro = Some(
            tokio::task::spawn_blocking(move || micro::measure_all(messages, rounds))
                .await
                .context("the micro-benchmark")?,
        );
    }

    results.python_versions = python.and_then(|p| p.versions);
    #[cfg(feature = "ruststream")]
    {
        results.ruststream_versions = Some(ruststream::versions());
    }
    let summary = options_summary(&options);
    let context = report::Context::gather(&options.broker_name);
    println!("{}", report::terminal_table(&results, &summary));
    let output = options.output();
    report::write(&output, &results, &context, &summary)?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// Scenario 5, once: the backlog is large.
async fn memory_scenario(
    options: &Options,
    admin: &kafka::Admin,
    results: &mut Results,
) -> Result<()> {
    let pid = std::process::id();
    let timeout = options.timeout();
    let prefix = format!("bench-{pid}-mem.");
    let topic = format!("{prefix}backlog");
    admin.create(&topic).await?;
    eprintln!("pre-filling {topic} with {} messages", options.backlog);
    kafka::prefill(&options.kafka, &topic, options.backlog).await?;
    let best = stats::best_concurrency(results).unwrap_or(1);
    #[allow(unused_mut)]
    let mut sides = vec![(Side::Baseline, 1), (Side::Kafkaesk, best)];
    #[cfg(feature = "ruststream")]
    sides.push((
        Side::Ruststream,
        stats::best_ruststream_workers(results).unwrap_or(1),
    ));
    for (side, concurrency) in sides {
        let spec = ConsumeSpec {
            servers: options.kafka.clone(),
            prefix: prefix.clone(),
            stream: "backlog".to_owned(),
            group: format!("{prefix}{side:?}").to_lowercase(),
            messages: options.backlog,
            timeout,
        };
        let extra_args = options.settings.to_args();
        let report = tokio::task::spawn_blocking(move || {
            memory::run_child(side, &spec, concurrency, &extra_args)
        })
        .await
        .context("the memory scenario's child")??;
        report::memory_progress(&report);
        results.memory.push(report);
    }
    admin.delete(&[topic]).await;
    Ok(())
}

fn run_python(
    py: &mut python::Python,
    options: &Options,
    prefix: &str,
    messages: usize,
    results: &mut Results,
) -> Result<()> {
    let common = |stream: &str| {
        vec![
            "--kafka".to_owned(),
            options.kafka.clone(),
            "--prefix".to_owned(),
            prefix.to_owned(),
            "--stream".to_owned(),
            stream.to_owned(),
            "--messages".to_owned(),
            messages.to_string(),
        ]
    };
    for (label, concurrency) in [
        ("default".to_owned(), None),
        (
            options.python_concurrency.to_string(),
            Some(options.python_concurrency),
        ),
    ] {
        let mut args = vec!["consume".to_owned()];
        args.extend(common("consume"));
        args.extend(["--group".to_owned(), format!("{prefix}python-{label}")]);
        if let Some(c) = concurrency {
            args.extend(["--concurrency".to_owned(), c.to_string()]);
        }
        let run = py.run(&args, options.timeout())?;
        report::progress("consume", &format!("python kafkaesk c={label}"), &run);
        results.python_consume.entry(label).or_default().push(run);
    }
    let mut args = vec!["publish".to_owned()];
    args.extend(common("publish-python"));
    let run = py.run(&args, options.timeout())?;
    report::progress("publish", "python kafkaesk", &run);
    results.python_publish.push(run);
    Ok(())
}

/// The options a reader needs to reproduce the run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The command line, as run.
    pub command: String,
    /// Messages per consume/publish run.
    pub messages: usize,
    /// Rounds.
    pub rounds: usize,
    /// Python messages per run.
    pub python_messages: usize,
    /// Python's second concurrency.
    pub python_concurrency: usize,
    /// Latency rate and duration.
    pub latency_rate: u32,
    /// Latency duration, seconds.
    pub latency_seconds: f64,
    /// Backlog of the memory scenario.
    pub backlog: usize,
    /// Micro-benchmark messages per round.
    pub micro_messages: usize,
    /// Whether this was a --quick run.
    pub quick: bool,
    /// The `--setting`s and `--kafkaesk-setting`s of the run.
    pub settings: kafka::ExtraSettings,
}

fn options_summary(options: &Options) -> Summary {
    let args: Vec<String> = std::env::args().skip(1).collect();
    Summary {
        command: format!(
            "cargo run -p kafkaesk-bench --release{} -- {}",
            if cfg!(feature = "ruststream") {
                " --features ruststream"
            } else {
                ""
            },
            args.join(" ")
        )
        .trim_end()
        .to_owned(),
        messages: options.messages,
        rounds: options.rounds,
        python_messages: options.python_messages.unwrap_or(options.messages),
        python_concurrency: options.python_concurrency,
        latency_rate: options.latency_rate,
        latency_seconds: options.latency_seconds,
        backlog: options.backlog,
        micro_messages: options.micro_messages,
        quick: options.quick,
        settings: options.settings.extra(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        Cli::try_parse_from(std::iter::once("kafkaesk-bench").chain(args.iter().copied()))
            .unwrap()
            .options
    }

    #[test]
    fn an_output_directory_gets_the_report_inside_and_a_bad_path_fails_before_any_run() {
        let dir = std::env::temp_dir().join(format!("kafkaesk-bench-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let given = dir.to_string_lossy().into_owned();
        let output = options(&["--output", &given]).output();
        assert_eq!(output, dir.join("BENCHMARKS.md"));
        check_output(&output).unwrap();
        // A directory not made yet, named with a trailing slash.
        let later = format!("{given}/later/");
        let output = options(&["--output", &later]).output();
        assert_eq!(output, dir.join("later").join("BENCHMARKS.md"));
        check_output(&output).unwrap();
        assert!(dir.join("later").is_dir());
        // A directory where the report would go.
        std::fs::create_dir_all(dir.join("taken").join("BENCHMARKS.md")).unwrap();
        let err = check_output(&dir.join("taken").join("BENCHMARKS.md")).unwrap_err();
        assert!(err.to_string().contains("in the way"), "{err}");
        // A folder that cannot be made: under a file.
        std::fs::write(dir.join("file"), "").unwrap();
        assert!(check_output(&dir.join("file").join("BENCHMARKS.md")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
