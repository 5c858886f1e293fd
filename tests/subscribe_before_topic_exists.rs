use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::Subscription;
use kafkaesk_tests::{app_builder, unique_prefix};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Late {
    pub id: u32,
}

impl kafkaesk::Schema for Late {
    const ID: &'static str = "Late";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_picks_up_a_topic_created_after_the_consumer_started() {
    let prefix = unique_prefix("late");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("late.*", move |data: Late| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(data) }
            })
            .with_group("late"),
        )
        .build()
        .unwrap();

    let consumer = tokio::spawn({
        let app = app.clone();
        async move { app.consume_for(1, Duration::from_secs(40)).await }
    });
    // Let the consumer join its group while no matching topic exists.
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.publish_and_wait("late.created", &Late { id: 7 })
        .await
        .unwrap();

    assert_eq!(consumer.await.unwrap().unwrap(), 1);
    assert_eq!(*seen.lock().unwrap(), vec![Late { id: 7 }]);
}
