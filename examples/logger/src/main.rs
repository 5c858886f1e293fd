//! Log shipping: Python kafkaesk's `examples/logger.py` in Rust. A `tracing`
//! event with a `user` field goes to the `logging.test` stream through
//! [`KafkaLayer`], and a typed subscription reads it back and prints it.
//!
//! ```text
//! scripts/broker.sh && cargo run -p logger
//! ```
//!
//! Reads the broker from `KAFKA` (default `127.0.0.1:9092`) and an optional
//! topic prefix from `KAFKAESK_TOPIC_PREFIX`. The console shows what
//! `RUST_LOG` asks for (`warn` by default), independently of what is shipped.

use std::time::Duration;

use kafkaesk::logging::{KafkaLayer, LogRecord};
use kafkaesk::Application;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{fmt, EnvFilter};

#[kafkaesk::subscribe("logging.test", group = "example.logging.consumer")]
async fn consume(data: LogRecord) {
    // Printed, not logged: a logged line would be shipped to this very stream.
    match serde_json::to_string(&data) {
        Ok(json) => println!("consumed {json}"),
        Err(err) => eprintln!("cannot print the record: {err}"),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::var("KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let app = Application::builder()
        .kafka_servers(servers.split(','))
        .topic_prefix(std::env::var("KAFKAESK_TOPIC_PREFIX").unwrap_or_default())
        .with_registry()?
        .build()?;
    // Set up (streams, schema registrations) before the layer is installed,
    // so kafkaesk's own DEBUG events of it are not shipped ahead of ours.
    app.initialize().await?;

    let kafka = KafkaLayer::new(&app, "logging.test").with_max_level(tracing::Level::DEBUG);
    let logs = kafka.flush_guard();
    let console = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(console),
        )
        .with(kafka)
        .init();

    tracing::debug!(user = "kafkaesk", "Log Message");
    if !logs.flush_async(Duration::from_secs(30)).await {
        return Err(format!("the log record was not delivered: {:?}", logs.stats()).into());
    }

    let consumed = app.consume_for(1, Duration::from_secs(60)).await?;
    app.finalize().await?;
    if consumed < 1 {
        return Err("the log record did not come back".into());
    }
    Ok(())
}
