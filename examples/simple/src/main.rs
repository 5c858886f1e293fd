//! One schema, one subscription and a publisher: the Publish and Subscribe
//! sections of Python kafkaesk's README, in Rust.
//!
//! ```text
//! cargo run -p simple                                 # start the worker, publish 5, run until Ctrl-C
//! cargo run -p simple -- --count 100 --once           # start the worker, publish 100, handle them, exit
//! KAFKA=127.0.0.1:9092 cargo run -p simple            # against a broker of yours
//! ```
//!
//! Reads the broker from `KAFKA`. Without it, the example starts an embedded
//! in-memory broker (the `embedded-broker` feature, on by default), so it runs
//! with nothing installed. An optional topic prefix comes from
//! `KAFKAESK_TOPIC_PREFIX`.

use std::time::Duration;

use kafkaesk::{Application, Record};

// `streams`: created at `initialize`, so the worker subscribes to a stream
// that exists and its group forms before the first message.
#[kafkaesk::schema("Content", version = 1, retention = 86400, streams = ["content.edited.Resource"])]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ContentMessage {
    pub foo: String,
}

#[kafkaesk::subscribe("content.*", group = "example-content-group")]
async fn get_messages(data: ContentMessage, record: Record) {
    // The producer stamps each record when it is published.
    let after = record
        .timestamp()
        .map(|published| format!(", {} ms after it was published", now_ms() - published))
        .unwrap_or_default();
    println!(
        "handled {:?} from {}[{}]@{}{after}",
        data.foo,
        record.topic(),
        record.partition(),
        record.offset()
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

struct Options {
    count: usize,
    once: bool,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        count: 5,
        once: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => {
                let value = args.next().ok_or("--count needs a number")?;
                options.count = value
                    .parse()
                    .map_err(|_| format!("--count needs a number, not {value:?}"))?;
            }
            "--once" => options.once = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --count N and --once"
                ))
            }
        }
    }
    Ok(options)
}

/// Settings for the broker at `KAFKA`.
fn settings_for(servers: &str) -> kafkaesk::Settings {
    kafkaesk::Settings {
        kafka_servers: servers.split(',').map(str::to_owned).collect(),
        ..kafkaesk::Settings::default()
    }
}

/// Settings for the broker at `KAFKA`, or for an embedded one that lives as
/// long as the returned guard (with the short fetch wait it asks of its
/// clients, since it holds every fetch for all of it).
#[cfg(feature = "embedded-broker")]
async fn broker() -> Result<
    (
        kafkaesk::Settings,
        Option<kafkaesk::embedded::EmbeddedBroker>,
    ),
    kafkaesk::Error,
> {
    if let Ok(servers) = std::env::var("KAFKA") {
        return Ok((settings_for(&servers), None));
    }
    let broker = kafkaesk::embedded::EmbeddedBroker::start(([127, 0, 0, 1], 0).into()).await?;
    println!(
        "embedded broker on {} (in memory, for development; set KAFKA=host:port for a real one)",
        broker.bootstrap_servers()
    );
    let mut settings = kafkaesk::Settings::default();
    broker.configure(&mut settings);
    Ok((settings, Some(broker)))
}

/// Settings for the broker at `KAFKA` (default `127.0.0.1:9092`).
#[cfg(not(feature = "embedded-broker"))]
async fn broker() -> Result<(kafkaesk::Settings, Option<()>), kafkaesk::Error> {
    let servers = std::env::var("KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    Ok((settings_for(&servers), None))
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
    let (settings, _broker) = broker().await?;
    let app = Application::builder()
        .settings(settings)
        .topic_prefix(std::env::var("KAFKAESK_TOPIC_PREFIX").unwrap_or_default())
        .with_registry()?
        .build()?;
    app.initialize().await?;

    // The worker first, as a service runs: each message is handled moments
    // after it is published (the first waits for the group to form).
    let worker = tokio::spawn({
        let app = app.clone();
        let once = options.once.then_some(options.count);
        async move {
            match once {
                Some(count) => app.consume_for(count, Duration::from_secs(60)).await,
                None => app.run().await.map(|()| 0),
            }
        }
    });
    for i in 0..options.count {
        let data = ContentMessage {
            foo: format!("bar {i}"),
        };
        let delivery = app
            .publish_and_wait("content.edited.Resource", &data)
            .await?;
        println!(
            "published {:?} to {}[{}]@{}",
            data.foo, delivery.topic, delivery.partition, delivery.offset
        );
        // A few messages a moment apart, so each one's latency shows on its
        // own; many go out as fast as they are acknowledged.
        if options.count <= 10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if !options.once {
        println!("worker running; press Ctrl-C to stop");
    }
    let handled = worker.await??;
    if options.once {
        app.finalize().await?;
        println!("done: handled {handled} of {}", options.count);
        if handled < options.count {
            return Err(format!("only {handled} of {} messages arrived", options.count).into());
        }
    }
    Ok(())
}
