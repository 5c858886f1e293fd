use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::Subscription;
use kafkaesk_tests::{app_builder, committed_total, unique_prefix};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Good {
    pub n: u32,
}

impl kafkaesk::Schema for Good {
    const ID: &'static str = "Good";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_counted_skipped_and_committed() {
    let prefix = unique_prefix("malformed");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let app = app_builder(&prefix)
        .partitions(1)
        .subscribe(
            Subscription::new("mixed", move |data: Good| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(data) }
            })
            .with_name("good")
            .with_group("malformed"),
        )
        .build()
        .unwrap();
    let bad: [&[u8]; 6] = [
        b"not json at all",
        b"{\"no\": \"envelope\"}",
        b"{\"schema\":\"Good:1\",\"data\":{\"n\":\"not a number\"}}",
        b"{\"schema\":\"Good:1\"}",
        &[0xff, 0xfe, 0x00],
        b"",
    ];
    for payload in bad {
        app.raw_publish("mixed", payload).wait().await.unwrap();
    }
    app.publish_and_wait("mixed", &Good { n: 1 }).await.unwrap();

    assert_eq!(
        app.consume_for(7, Duration::from_secs(30)).await.unwrap(),
        7
    );
    assert_eq!(*seen.lock().unwrap(), vec![Good { n: 1 }]);
    let stats = &app.stats()["good"];
    assert_eq!((stats.handled, stats.unhandled, stats.failed), (1, 6, 0));
    assert_eq!(
        committed_total("malformed", &format!("{prefix}mixed"), 1),
        7
    );
}
