//! An idempotent producer whose send timed out in flight (the broker froze
//! and answered nothing) keeps publishing once the broker answers again.
//! librdkafka then bumps the producer's epoch, since the timed-out batch may
//! or may not have been stored, and sends with the new epoch.
//!
//! With librdkafka alone, against an Apache Kafka broker of the test's own:
//! the broker accepts the bumped epoch (KIP-360), which the broker-outage
//! test (RELIABILITY.md, fault 4) relies on.

use std::time::Duration;

use kafkaesk_tests::{create_topic, unique_prefix, PersistentBroker};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_recovers_from_a_timed_out_send() {
    let broker = PersistentBroker::start("epoch-bump");
    let servers = broker.address();
    let topic = format!("{}events", unique_prefix("epoch-bump"));
    create_topic(&servers, &topic).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "3000")
        .set("request.timeout.ms", "2000")
        .create()
        .unwrap();
    let send = |value: &'static str| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic).payload(value),
                    Duration::from_secs(0),
                )
                .await
                .map_err(|(err, _)| err)
        }
    };
    send("before").await.expect("the first send");

    broker.freeze(true);
    let timed_out = send("frozen").await;
    broker.freeze(false);
    assert!(
        timed_out.is_err(),
        "the frozen broker answered: {timed_out:?}"
    );

    let mut after = send("after").await;
    for _ in 0..5 {
        if after.is_ok() {
            break;
        }
        after = send("after").await;
    }
    let log = broker.log();
    let panics: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("panicked") || line.contains("more or less"))
        .collect();
    assert!(
        after.is_ok(),
        "the producer never published again: {after:?}\nthe broker's panics:\n{}",
        panics.join("\n")
    );
}
