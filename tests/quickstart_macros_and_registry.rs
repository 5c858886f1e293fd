//! The README's quickstart, run for real. This is the only module of the test
//! binary that uses `#[subscribe]`, because the registry is global.

use std::sync::Mutex;
use std::time::Duration;

use kafkaesk_tests::{app_builder, topic_config, unique_prefix};

#[kafkaesk::schema("Content", version = 1, retention = 86400, streams = ["content.edited"])]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ContentMessage {
    pub foo: String,
}

/// (topic, foo, trace-id header) of every handled message.
type Seen = (String, String, Option<Vec<u8>>);

static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

#[kafkaesk::subscribe("content.*", group = "content-indexer")]
async fn index(
    data: ContentMessage,
    subscriber: kafkaesk::Subscriber,
) -> Result<(), kafkaesk::Error> {
    let record = subscriber.record();
    SEEN.lock().unwrap().push((
        record.topic().to_owned(),
        data.foo.clone(),
        record.headers().get("trace-id").map(<[u8]>::to_vec),
    ));
    if record.topic().ends_with("content.edited") {
        // Carries the consumed record's headers.
        subscriber.publish("content.indexed", &data).await?;
    }
    Ok(())
}

#[test]
fn macro_implements_schema_with_its_arguments() {
    use kafkaesk::Schema;
    assert_eq!(ContentMessage::ID, "Content");
    assert_eq!(ContentMessage::VERSION, 1);
    assert_eq!(ContentMessage::RETENTION, Some(Duration::from_secs(86400)));
    assert_eq!(ContentMessage::STREAMS, &["content.edited"]);
    let router = kafkaesk::Router::from_registry().unwrap();
    assert_eq!(router.subscriptions().len(), 1);
    let sub = &router.subscriptions()[0];
    assert_eq!(sub.name(), "index");
    assert_eq!(sub.group(), Some("content-indexer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_app_creates_streams_consumes_and_propagates_headers() {
    let prefix = unique_prefix("quickstart");
    let app = app_builder(&prefix)
        .with_registry()
        .unwrap()
        .build()
        .unwrap();
    app.initialize().await.unwrap();
    let edited = format!("{prefix}content.edited");
    assert_eq!(
        topic_config(&edited, "retention.ms").await.as_deref(),
        Some("86400000")
    );

    app.publish("content.edited", &ContentMessage { foo: "bar".into() })
        .header("trace-id", "t-1")
        .wait()
        .await
        .unwrap();
    assert_eq!(
        app.consume_for(2, Duration::from_secs(40)).await.unwrap(),
        2
    );
    app.finalize().await.unwrap();

    let mut seen: Vec<_> = SEEN
        .lock()
        .unwrap()
        .iter()
        .filter(|(topic, _, _)| topic.starts_with(&prefix))
        .cloned()
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (edited, "bar".into(), Some(b"t-1".to_vec())),
            (
                format!("{prefix}content.indexed"),
                "bar".into(),
                Some(b"t-1".to_vec())
            ),
        ]
    );
}
