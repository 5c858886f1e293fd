//! Offsets inside a record batch, checked with librdkafka alone: after a
//! batch of three records, a partition's end (the high watermark, from
//! ListOffsets) is 3, and a consumer assigned at offset 1 reads offsets 1 and
//! 2, each once.
//!
//! kafkaesk's positions that look up the end (`latest`, and clamping an
//! offset or a time to it) and a reader's end rest on both. The embedded
//! broker (tansu 0.6.0) gets both wrong when the last batch holds several
//! records (README, "embedded broker vs Apache Kafka"); these tests pin what
//! the test broker, Apache Kafka, does.

use std::time::{Duration, Instant};

use kafkaesk_tests::{create_topic, kafka, unique_prefix};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A topic whose partition 0 holds one batch of three records.
async fn one_batch_of_three() -> String {
    let topic = format!("{}batch", unique_prefix("batch-offsets"));
    create_topic(&kafka(), &topic).await;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("linger.ms", "200")
        .create()
        .unwrap();
    for value in ["a", "b", "c"] {
        producer
            .send(BaseRecord::<(), _>::to(&topic).partition(0).payload(value))
            .map_err(|(err, _)| err)
            .unwrap();
    }
    producer.flush(TIMEOUT).unwrap();
    topic
}

fn consumer() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique_prefix("batch-probe"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap()
}

#[tokio::test]
async fn the_end_of_a_partition_counts_every_record_of_its_last_batch() {
    let topic = one_batch_of_three().await;
    let (low, high) = consumer().fetch_watermarks(&topic, 0, TIMEOUT).unwrap();
    assert_eq!((low, high), (0, 3));
}

#[tokio::test]
async fn a_fetch_from_inside_a_batch_gives_its_later_records_once() {
    let topic = one_batch_of_three().await;
    let consumer = consumer();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(1))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut read = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(record)) => read.push((
                record.offset(),
                String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(err)) => panic!("{err}"),
            None => {}
        }
    }
    assert_eq!(read, vec![(1, "b".to_owned()), (2, "c".to_owned())]);
}
