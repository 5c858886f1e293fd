//! Concurrent handlers, with slow messages moved aside: Python kafkaesk's
//! `examples/parallel.py` idea.
//!
//! `work` handles up to 10 messages at once. A message whose work takes more
//! than 5 s is forwarded, untouched, to `slow.<stream>` with a `slow: true`
//! header, so it does not hold up the fast ones. `slow_work` handles those
//! one at a time, with no time limit.
//!
//! ```text
//! scripts/broker.sh && cargo run -p parallel                  # publish 20 (2 slow), run until Ctrl-C
//! cargo run -p parallel -- --count 20 --slow 2 --once         # exit when all are handled
//! ```

use std::time::Duration;

use kafkaesk::{Application, Headers, Subscriber};

/// How long a message may take in the fast lane.
const FAST_LANE_LIMIT: Duration = Duration::from_secs(5);

/// A unit of work that takes `millis` to process.
#[kafkaesk::schema("Job", version = 1)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Job {
    pub id: u32,
    pub millis: u64,
}

async fn process(job: &Job) {
    tokio::time::sleep(Duration::from_millis(job.millis)).await;
}

#[kafkaesk::subscribe("jobs.*", group = "parallel-fast", concurrency = 10)]
async fn work(job: Job, subscriber: Subscriber) -> Result<(), kafkaesk::Error> {
    if tokio::time::timeout(FAST_LANE_LIMIT, process(&job))
        .await
        .is_ok()
    {
        println!("handled job {} in the fast lane", job.id);
        return Ok(());
    }
    let slow_stream = format!("slow.{}", subscriber.stream());
    let headers = Headers::new().with("slow", "true");
    subscriber
        .forward(&slow_stream, subscriber.record(), &headers)
        .await?
        .await?;
    println!("forwarded job {} to {slow_stream}", job.id);
    Ok(())
}

#[kafkaesk::subscribe("slow.jobs.*", group = "parallel-slow", concurrency = 1)]
async fn slow_work(job: Job, subscriber: Subscriber) {
    let slow = subscriber.record().headers().get("slow") == Some(&b"true"[..]);
    process(&job).await;
    println!("handled slow job {} (slow header: {slow})", job.id);
}

struct Options {
    count: u32,
    slow: u32,
    once: bool,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        count: 20,
        slow: 2,
        once: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<u32, String> {
            let value = args.next().ok_or(format!("{flag} needs a number"))?;
            value
                .parse()
                .map_err(|_| format!("{flag} needs a number, not {value:?}"))
        };
        match arg.as_str() {
            "--count" => options.count = number("--count")?,
            "--slow" => options.slow = number("--slow")?,
            "--once" => options.once = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --count N, --slow N and --once"
                ))
            }
        }
    }
    if options.slow > options.count {
        return Err("--slow cannot exceed --count".into());
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let servers = std::env::var("KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let app = Application::builder()
        .kafka_servers(servers.split(','))
        .topic_prefix(std::env::var("KAFKAESK_TOPIC_PREFIX").unwrap_or_default())
        .with_registry()?
        .build()?;
    app.initialize().await?;

    for id in 0..options.count {
        // The last `slow` jobs take longer than the fast lane allows.
        let millis = if id >= options.count - options.slow {
            FAST_LANE_LIMIT.as_millis() as u64 + 1_000
        } else {
            200
        };
        app.publish("jobs.batch", &Job { id, millis }).await?;
    }
    app.flush().await?;
    println!(
        "published {} jobs, {} of them slow",
        options.count, options.slow
    );

    if options.once {
        let expected = (options.count + options.slow) as usize;
        let handled = app.consume_for(expected, Duration::from_secs(120)).await?;
        app.finalize().await?;
        println!("done: {handled} records handled");
        if handled < expected {
            return Err(format!("only {handled} of {expected} records arrived").into());
        }
        Ok(())
    } else {
        println!("worker running; press Ctrl-C to stop");
        Ok(app.run().await?)
    }
}
