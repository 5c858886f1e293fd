//! A stop after the broker went away is bounded by the `shutdown_timeout`:
//! the last commit is awaited at most that long and logged as not
//! confirmed, the consumer's leave is awaited at most that long, and the run
//! returns. No librdkafka call waits without bound on the way out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesk::{Application, Subscription};
use kafkaesk_tests::{captured_warnings, unique_prefix, PersistentBroker};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Ping {
    pub n: u64,
}

impl kafkaesk::Schema for Ping {
    const ID: &'static str = "GonePing";
}

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_after_the_broker_is_killed_returns_within_the_shutdown_timeouts() {
    let warnings = captured_warnings();
    let mut broker = PersistentBroker::start("gone");
    let prefix = unique_prefix("gone");
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let app = Application::builder()
        .kafka_servers([broker.address()])
        .topic_prefix(&prefix)
        // Long enough that what was handled is still uncommitted at the stop.
        .auto_commit_interval(Duration::from_secs(60))
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .subscribe(
            Subscription::new("pings", move |_: Ping| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
            .with_name("pings")
            .with_group("gone"),
        )
        .build()
        .unwrap();
    app.initialize().await.unwrap();
    let running = {
        let app = app.clone();
        tokio::spawn(async move { app.consume_forever().await })
    };
    app.publish_and_wait("pings", &Ping { n: 1 }).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the ping was never handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    tokio::task::spawn_blocking(move || {
        broker.kill();
        broker
    })
    .await
    .unwrap();
    let stopping = Instant::now();
    app.stop();
    // The commit's wait and the leave's wait, each at most the timeout,
    // and a margin for a loaded machine.
    let bound = 2 * SHUTDOWN_TIMEOUT + Duration::from_secs(5);
    let ended = tokio::time::timeout(bound, running).await;
    let took = stopping.elapsed();
    eprintln!("stopped {took:?} after the stop, with the broker gone");
    ended
        .expect("the run returns within the shutdown timeouts")
        .unwrap()
        .expect("a stop ends the run cleanly, though nothing could be committed");
    let logged = warnings.lock().unwrap().join("\n");
    assert!(
        logged.contains("did not confirm the last commit") && logged.contains(&prefix),
        "the uncommitted offsets are logged:\n{logged}"
    );

    // A message queued with the broker gone: finalize waits for it at most
    // the shutdown timeout (it waited 30 s), and says it was not delivered.
    let queued = app.publish("pings", &Ping { n: 2 }).await.unwrap();
    let finalizing = Instant::now();
    let finalized = tokio::time::timeout(SHUTDOWN_TIMEOUT + Duration::from_secs(5), app.finalize())
        .await
        .expect("finalize returns within the shutdown timeout");
    eprintln!(
        "finalized in {:?} with a message queued",
        finalizing.elapsed()
    );
    assert!(finalized.is_err(), "an unflushed message is an error");
    drop(queued);
}
