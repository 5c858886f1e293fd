//! Fault test 4 of issue 6: the broker stops for 10 s and starts again on the
//! same ports with the same storage, while a worker consumes and a publisher
//! publishes. Both report unhealthy while it is down and healthy after;
//! every publish either is acknowledged or returns its error to the caller,
//! and every acknowledged message is handled.
//!
//! With kafkaesk's default, idempotent producer nothing fails and nothing is
//! doubled: librdkafka keeps retrying within `message.timeout.ms`, and the
//! broker drops the retries of batches it already has. Without idempotence
//! a retry can write a batch twice.
//!
//! The test runs an Apache Kafka broker of its own: the shared one stays up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesk::{Application, Subscription};
use kafkaesk_tests::{record_reliability, unique_prefix, PersistentBroker, ReliabilityRow};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Beat {
    pub n: u64,
}

impl kafkaesk::Schema for Beat {
    const ID: &'static str = "Beat";
}

const OUTAGE: Duration = Duration::from_secs(10);

/// `idempotent` keeps kafkaesk's idempotent producer; without it the
/// producer is librdkafka's plain one.
fn app(broker: &PersistentBroker, prefix: &str, idempotent: bool) -> kafkaesk::ApplicationBuilder {
    Application::builder()
        .kafka_servers([broker.address()])
        .topic_prefix(prefix)
        .auto_commit_interval(Duration::from_millis(500))
        .kafka_setting("enable.idempotence", idempotent.to_string())
}

/// The broker stopped or started off the async threads: both wait for the process.
async fn blocking(
    mut broker: PersistentBroker,
    change: fn(&mut PersistentBroker),
) -> PersistentBroker {
    tokio::task::spawn_blocking(move || {
        change(&mut broker);
        broker
    })
    .await
    .unwrap()
}

async fn wait_health(apps: &[&Application], healthy: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let mut all = true;
        for app in apps {
            all &= app.health_check().await.is_healthy() == healthy;
        }
        if all {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// kafkaesk's default, idempotent producer: 0 lost, 0 duplicates, 0 errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliability_broker_outage_loses_nothing_and_reports_health() {
    outage(true).await;
}

/// The same outage with `enable.idempotence=false`: still nothing
/// acknowledged is lost, but a retry may be written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliability_broker_outage_without_idempotence_loses_nothing() {
    outage(false).await;
}

async fn outage(idempotent: bool) {
    let started = Instant::now();
    let broker = PersistentBroker::start("outage");
    let prefix = unique_prefix("outage");
    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();

    let publisher = app(&broker, &prefix, idempotent).build().unwrap();
    publisher.initialize().await.unwrap();
    publisher
        .publish_and_wait("beats", &Beat { n: 0 })
        .await
        .unwrap();
    let worker = {
        let handled = handled.clone();
        app(&broker, &prefix, idempotent)
            .subscribe(
                Subscription::new("beats", move |beat: Beat| {
                    let handled = handled.clone();
                    async move { handled.lock().unwrap().push(beat.n) }
                })
                .with_name("beats")
                .with_group("outage"),
            )
            .build()
            .unwrap()
    };
    let consuming = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.consume_forever().await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the worker never consumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(wait_health(&[&worker, &publisher], true, Duration::from_secs(10)).await);

    // Every publish's outcome, as the caller sees it: acknowledged or an error.
    let outcomes: Arc<Mutex<BTreeMap<u64, Result<(), String>>>> = Arc::default();
    let publishing = Arc::new(AtomicBool::new(true));
    let publish_loop = {
        let publisher = publisher.clone();
        let outcomes = outcomes.clone();
        let publishing = publishing.clone();
        tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut n = 1;
            while publishing.load(Ordering::SeqCst) {
                match publisher.publish("beats", &Beat { n }).await {
                    Ok(ack) => {
                        let outcomes = outcomes.clone();
                        acks.push(tokio::spawn(async move {
                            let outcome = ack.await.map(|_| ()).map_err(|e| e.to_string());
                            outcomes.lock().unwrap().insert(n, outcome);
                        }));
                    }
                    Err(err) => {
                        outcomes.lock().unwrap().insert(n, Err(err.to_string()));
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for ack in acks {
                ack.await.unwrap();
            }
            n - 1
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let broker = blocking(broker, PersistentBroker::stop).await;
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let worker_down = worker.health_check().await;
    let publisher_down = publisher.health_check().await;
    assert!(!worker_down.is_healthy(), "{worker_down:?}");
    assert!(!publisher_down.is_healthy(), "{publisher_down:?}");
    assert!(
        worker_down.consumers.iter().all(|c| c.running),
        "the consumer keeps running through the outage: {worker_down:?}"
    );
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    let broker = blocking(broker, PersistentBroker::restart).await;
    let outage = down_at.elapsed();

    assert!(
        wait_health(&[&worker, &publisher], true, Duration::from_secs(30)).await,
        "healthy again after the broker returned: {:?} {:?}",
        worker.health_check().await,
        publisher.health_check().await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    publishing.store(false, Ordering::SeqCst);
    let published = tokio::time::timeout(Duration::from_secs(60), publish_loop)
        .await
        .expect("every publish resolves once the broker is back")
        .unwrap();

    let outcomes = outcomes.lock().unwrap().clone();
    let acknowledged: Vec<u64> = std::iter::once(0)
        .chain(outcomes.iter().filter(|(_, o)| o.is_ok()).map(|(n, _)| *n))
        .collect();
    let errors: Vec<(u64, String)> = outcomes
        .iter()
        .filter_map(|(n, o)| o.clone().err().map(|e| (*n, e)))
        .collect();
    let missing = |handled: &Mutex<Vec<u64>>| -> Vec<u64> {
        let handled = handled.lock().unwrap();
        acknowledged
            .iter()
            .filter(|n| !handled.contains(n))
            .copied()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !missing(&handled).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.stop();
    consuming.await.unwrap().expect("the worker ends cleanly");
    let lost = missing(&handled);
    let runs = handled.lock().unwrap().len();
    let distinct = {
        let mut h = handled.lock().unwrap().clone();
        h.sort_unstable();
        h.dedup();
        h.len()
    };
    drop(broker);

    let duplicates = runs - distinct;
    record_reliability(&ReliabilityRow {
        key: if idempotent { "4" } else { "4b" },
        scenario: if idempotent {
            "Broker outage: Apache Kafka stopped 10 s and restarted, idempotent producer (the default)"
        } else {
            "Broker outage: Apache Kafka stopped 10 s and restarted, enable.idempotence=false"
        },
        test: if idempotent {
            "reliability_broker_outage::reliability_broker_outage_loses_nothing_and_reports_health"
        } else {
            "reliability_broker_outage::reliability_broker_outage_without_idempotence_loses_nothing"
        },
        messages: published as usize + 1,
        faults: format!(
            "broker down {:.1} s; {} publish error(s) returned to the caller",
            outage.as_secs_f64(),
            errors.len()
        ),
        lost: lost.len(),
        duplicates,
        bound: if idempotent {
            "0 lost, 0 duplicates, 0 publish errors".to_owned()
        } else {
            "0 lost of the acknowledged; at least once".to_owned()
        },
    });
    eprintln!(
        "outage: {} published, {} acknowledged, {} errors, {} runs, {} lost, {:?}",
        published + 1,
        acknowledged.len(),
        errors.len(),
        runs,
        lost.len(),
        started.elapsed()
    );
    let mut kinds: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for (n, error) in &errors {
        let kind = kinds.entry(error.as_str()).or_insert((0, *n, *n));
        *kind = (kind.0 + 1, kind.1.min(*n), kind.2.max(*n));
    }
    eprintln!("outage: errors returned to the caller, as error: (count, first, last): {kinds:?}");
    assert!(lost.is_empty(), "acknowledged but never handled: {lost:?}");
    assert_eq!(
        acknowledged.len() + errors.len(),
        published as usize + 1,
        "every publish resolved one way or the other"
    );
    if idempotent {
        assert!(
            errors.is_empty(),
            "librdkafka retries through a 10 s outage: {kinds:?}"
        );
        assert_eq!(duplicates, 0, "an idempotent producer writes nothing twice");
    }
}
