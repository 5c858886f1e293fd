//! Event sourcing with kafkaesk: account events are published to a stream,
//! and the balances are rebuilt by reading the stream back from the start,
//! with no consumer group and nothing committed, as Message DB's `read`
//! does. The latest event of one account comes from `last_for_key`.
//!
//! ```text
//! KAFKA=127.0.0.1:9092 cargo run -p replay -- --seed   # publish sample events, then rebuild
//! KAFKA=127.0.0.1:9092 cargo run -p replay             # rebuild from what the stream holds
//! ```
//!
//! The stream is `accounts` under the topic prefix from
//! `KAFKAESK_TOPIC_PREFIX` (default `replay.`).

use std::collections::BTreeMap;

use kafkaesk::Application;

/// Something that happened to an account; the key is the account.
#[kafkaesk::schema("AccountEvent", version = 1)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct AccountEvent {
    pub account: String,
    /// Cents: positive for a deposit, negative for a withdrawal.
    pub amount: i64,
}

const STREAM: &str = "accounts";

async fn seed(app: &Application) -> kafkaesk::Result<()> {
    let events = [
        ("alice", 10_000),
        ("bob", 2_000),
        ("alice", -3_000),
        ("bob", 550),
    ];
    for (account, amount) in events {
        let event = AccountEvent {
            account: account.to_owned(),
            amount,
        };
        app.publish(STREAM, &event).key(account).wait().await?;
    }
    Ok(())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::var("KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let prefix = std::env::var("KAFKAESK_TOPIC_PREFIX").unwrap_or_else(|_| "replay.".into());
    let app = Application::builder()
        .kafka_servers(servers.split(','))
        .topic_prefix(prefix)
        .build()?;
    if std::env::args().any(|arg| arg == "--seed") {
        seed(&app).await?;
    }

    let mut balances: BTreeMap<String, i64> = BTreeMap::new();
    let mut skipped = 0;
    for item in app.reader(STREAM).read::<AccountEvent>().await? {
        match item {
            Ok(item) => *balances.entry(item.data.account).or_default() += item.data.amount,
            // Kept in its place by the reader: report it, never drop it silently.
            Err(err) => {
                skipped += 1;
                eprintln!("skipped: {err}");
            }
        }
    }
    for (account, cents) in &balances {
        println!("{account}: {}.{:02}", cents / 100, cents.rem_euclid(100));
    }
    if skipped > 0 {
        println!("{skipped} record(s) could not be read as AccountEvent");
    }
    if let Some(last) = app
        .reader(STREAM)
        .last_for_key::<AccountEvent>("alice")
        .await?
    {
        let last = last?;
        println!(
            "alice's last event: {} cents at {}",
            last.data.amount,
            last.record.position()
        );
    }
    Ok(())
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
