//! Records compressed with each codec Kafka has (gzip, snappy, lz4 and
//! zstd), written by a plain librdkafka producer as another service would,
//! are all handled. Without zstd in kafkaesk's librdkafka, a zstd batch
//! was answered `_NOT_IMPLEMENTED` and fetched again forever: 0 of its
//! records were handled, and the consumer looked healthy.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::Subscription;
use kafkaesk_tests::{app_builder, create_topic, kafka, unique_prefix};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct CodecItem {
    pub n: u32,
}

impl kafkaesk::Schema for CodecItem {
    const ID: &'static str = "CodecItem";
}

const CODECS: [&str; 4] = ["gzip", "snappy", "lz4", "zstd"];
const PER_CODEC: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_every_compression_codec_are_handled() {
    let prefix = unique_prefix("codecs");
    let topic = format!("{prefix}items");
    create_topic(&kafka(), &topic).await;
    for (c, codec) in (0u32..).zip(CODECS) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka())
            .set("compression.codec", codec)
            // Several records to a batch, as a busy producer writes them.
            .set("linger.ms", "50")
            .create()
            .unwrap_or_else(|err| panic!("a {codec} producer: {err}"));
        let sends: Vec<_> = (0..PER_CODEC)
            .map(|i| {
                let payload = serde_json::json!({
                    "schema": "CodecItem:1",
                    "data": {"n": c * PER_CODEC + i},
                })
                .to_string();
                let producer = producer.clone();
                let topic = topic.clone();
                async move {
                    producer
                        .send(
                            FutureRecord::<(), _>::to(&topic).payload(&payload),
                            Duration::from_secs(10),
                        )
                        .await
                }
            })
            .collect();
        for sent in futures::future::join_all(sends).await {
            sent.unwrap_or_else(|(err, _)| panic!("a {codec} record: {err}"));
        }
    }

    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let sink = seen.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("items", move |item: CodecItem| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().insert(item.n);
                }
            })
            .with_name("codec-items"),
        )
        .build()
        .unwrap();
    let total = CODECS.len() as u32 * PER_CODEC;
    let handled = app
        .consume_for(total as usize, Duration::from_secs(60))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let missing: Vec<(&str, u32)> = (0..total)
        .filter(|n| !seen.contains(n))
        .map(|n| (CODECS[(n / PER_CODEC) as usize], n))
        .collect();
    assert!(
        missing.is_empty(),
        "never handled, as (codec, n): {missing:?}"
    );
    assert_eq!(handled, total as usize);
}
