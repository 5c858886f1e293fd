use std::time::Duration;

use kafkaesk_tests::{app_builder, topic_config, unique_prefix};
use rdkafka::producer::Producer;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Kept {
    pub id: u32,
}

impl kafkaesk::Schema for Kept {
    const ID: &'static str = "Kept";
    const RETENTION: Option<Duration> = Some(Duration::from_secs(3600));
    const STREAMS: &'static [&'static str] = &["kept.early"];
}

fn partitions(topic: &str) -> usize {
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafkaesk_tests::kafka())
        .create()
        .unwrap();
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0].partitions().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_created_at_start_and_on_publish_with_retention() {
    let prefix = unique_prefix("retention");
    let mut router = kafkaesk::Router::new();
    router.schema::<Kept>().unwrap();
    let app = app_builder(&prefix).mount(router).build().unwrap();

    app.initialize().await.unwrap();
    let early = format!("{prefix}kept.early");
    assert_eq!(
        topic_config(&early, "retention.ms").await.as_deref(),
        Some("3600000")
    );
    assert_eq!(partitions(&early), 7);

    app.publish_and_wait("kept.later", &Kept { id: 1 })
        .await
        .unwrap();
    let later = format!("{prefix}kept.later");
    assert_eq!(
        topic_config(&later, "retention.ms").await.as_deref(),
        Some("3600000")
    );
    app.finalize().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_publishes_create_the_topic_once() {
    let prefix = unique_prefix("concurrent");
    let app = app_builder(&prefix).partitions(3).build().unwrap();
    let publishes = (0..20).map(|id| {
        let app = app.clone();
        async move { app.publish_and_wait("burst", &Kept { id }).await }
    });
    for result in futures::future::join_all(publishes).await {
        result.unwrap();
    }
    assert_eq!(partitions(&format!("{prefix}burst")), 3);
}
