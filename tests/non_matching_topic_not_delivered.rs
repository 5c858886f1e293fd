use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::{Record, Subscription};
use kafkaesk_tests::{app_builder, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Note {
    pub text: String,
}

impl kafkaesk::Schema for Note {
    const ID: &'static str = "Note";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_topics_matching_the_pattern_are_consumed() {
    let prefix = unique_prefix("nomatch");
    let topics = Arc::new(Mutex::new(Vec::new()));
    let sink = topics.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("foo.*", move |record: Record| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(record.topic().to_owned()) }
            })
            .with_group("nomatch"),
        )
        .build()
        .unwrap();
    for stream in ["bar.x", "foox", "foo.y"] {
        app.publish_and_wait(
            stream,
            &Note {
                text: stream.into(),
            },
        )
        .await
        .unwrap();
    }
    // Ask for more than can match; the run ends at the timeout.
    let consumed = app.consume_for(3, Duration::from_secs(10)).await.unwrap();
    assert_eq!(consumed, 1);
    assert_eq!(*topics.lock().unwrap(), vec![format!("{prefix}foo.y")]);
}
