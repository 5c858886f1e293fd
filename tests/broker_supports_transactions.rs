//! What kafkaesk's transactions need from the broker, checked with
//! librdkafka alone: a transaction commits, an aborted one stays hidden from
//! read-committed readers, and registering a producer fences an older one
//! with the same transactional id at once.
//!
//! Apache Kafka, the test broker, passes all three. The embedded broker
//! (tansu 0.6.0) fails all three, since it does not implement EndTxn
//! (RELIABILITY.md, "The test broker and the embedded one").

use std::time::{Duration, Instant};

use kafkaesk_tests::{create_topic, kafka, unique_prefix};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

fn transactional_producer(id: &str) -> ThreadedProducer<DefaultProducerContext> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("transactional.id", id)
        .create()
        .unwrap();
    producer.init_transactions(TIMEOUT).expect("InitProducerId");
    producer
}

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, value: &str) {
    producer
        .send(BaseRecord::<(), _>::to(topic).payload(value))
        .map_err(|(err, _)| err)
        .unwrap();
}

/// Partition 0 of `topic` as a read-committed consumer sees it: the values,
/// up to the end.
fn read_committed(topic: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique_prefix("probe-reader"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut values = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(record)) => {
                values.push(String::from_utf8_lossy(record.payload().unwrap_or_default()).into())
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return values,
            Some(Err(err)) => panic!("reading {topic}: {err}"),
            None => {}
        }
    }
    panic!("{topic} did not reach its end within {TIMEOUT:?}: {values:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_completes_a_transaction() {
    let prefix = unique_prefix("end-txn");
    let topic = format!("{prefix}probe");
    create_topic(&kafka(), &topic).await;
    let producer = transactional_producer(&format!("{prefix}id"));
    producer.begin_transaction().unwrap();
    send(&producer, &topic, "one");
    producer.commit_transaction(TIMEOUT).expect("EndTxn");
    assert_eq!(read_committed(&topic), ["one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_hides_aborted_transactions_from_read_committed_readers() {
    let prefix = unique_prefix("aborted");
    let topic = format!("{prefix}probe");
    create_topic(&kafka(), &topic).await;
    let producer = transactional_producer(&format!("{prefix}id"));
    producer.begin_transaction().unwrap();
    send(&producer, &topic, "aborted");
    producer.flush(TIMEOUT).unwrap();
    producer.abort_transaction(TIMEOUT).expect("EndTxn(abort)");
    producer.begin_transaction().unwrap();
    send(&producer, &topic, "committed");
    producer
        .commit_transaction(TIMEOUT)
        .expect("EndTxn(commit)");
    assert_eq!(read_committed(&topic), ["committed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_fences_an_older_producer_with_the_same_id() {
    let prefix = unique_prefix("fence");
    let topic = format!("{prefix}probe");
    create_topic(&kafka(), &topic).await;
    let id = format!("{prefix}id");
    let old = transactional_producer(&id);
    old.begin_transaction().unwrap();
    send(&old, &topic, "zombie");
    old.flush(TIMEOUT).unwrap();
    let new = transactional_producer(&id);
    let started = Instant::now();
    let fenced = old.commit_transaction(TIMEOUT);
    match fenced {
        Err(rdkafka::error::KafkaError::Transaction(err)) => assert!(
            err.is_fatal() || err.txn_requires_abort(),
            "the old producer's commit failed, but not as fenced: {err}"
        ),
        other => panic!("the old producer's commit was not fenced: {other:?}"),
    }
    assert!(
        started.elapsed() < TIMEOUT,
        "the fence took the whole timeout"
    );
    new.begin_transaction().unwrap();
    send(&new, &topic, "current");
    new.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(read_committed(&topic), ["current"]);
}
