//! Numbered messages and a handler that prints where each one came from: the
//! crate the fault tests in `kafkaesk-cli/tests/crash_and_restart.rs` run with
//! the `kafkaesk` command, kill and restart. Those tests are its tests.
//!
//! ```text
//! kafkaesk examples/counter --kafka-servers 127.0.0.1:9092 --topic-prefix demo.
//! ```
//!
//! Every handled message prints `handled <n> at <topic>[<partition>]@<offset>`,
//! so a test reading the output knows which numbers were handled, how often,
//! and from which offsets. `COUNTER_HANDLE_MS` makes each handler take that
//! long, so a test can stop a worker while a backlog is still being consumed.

use std::sync::OnceLock;
use std::time::Duration;

use kafkaesk::Record;

/// A numbered message.
#[kafkaesk::schema("Number", version = 1, streams = ["numbers"])]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Number {
    /// Its number, unique within a test.
    pub n: u64,
}

/// The consumer group of [`count`].
pub const GROUP: &str = "counter";

fn handle_time() -> Duration {
    static TIME: OnceLock<Duration> = OnceLock::new();
    *TIME.get_or_init(|| {
        let millis = std::env::var("COUNTER_HANDLE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Duration::from_millis(millis)
    })
}

/// Reports every number it handles, with its position.
#[kafkaesk::subscribe("numbers", group = "counter")]
pub async fn count(number: Number, record: Record) {
    let delay = handle_time();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    println!(
        "handled {} at {}[{}]@{}",
        number.n,
        record.topic(),
        record.partition(),
        record.offset()
    );
}
