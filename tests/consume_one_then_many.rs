use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::{Application, Subscription};
use kafkaesk_tests::{app_builder, committed_total, unique_prefix};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Foo {
    pub bar: String,
}

impl kafkaesk::Schema for Foo {
    const ID: &'static str = "Foo";
}

fn app_collecting(prefix: &str, seen: Arc<Mutex<Vec<Foo>>>) -> Application {
    app_builder(prefix)
        .subscribe(
            Subscription::new("foo.*", move |data: Foo| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(data);
                }
            })
            .with_group("one-then-many"),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_one_message() {
    let prefix = unique_prefix("one");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = app_collecting(&prefix, seen.clone());
    let delivery = app
        .publish_and_wait("foo.bar", &Foo { bar: "1".into() })
        .await
        .unwrap();
    assert_eq!(&*delivery.topic, format!("{prefix}foo.bar"));
    let consumed = app.consume_for(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(consumed, 1);
    assert_eq!(*seen.lock().unwrap(), vec![Foo { bar: "1".into() }]);
    assert_eq!(committed_total("one-then-many", &delivery.topic, 7), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_many_messages() {
    let prefix = unique_prefix("many");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = app_collecting(&prefix, seen.clone());
    let mut acks = Vec::new();
    for i in 0..100 {
        acks.push(
            app.publish("foo.bar", &Foo { bar: i.to_string() })
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let consumed = app.consume_for(100, Duration::from_secs(30)).await.unwrap();
    assert_eq!(consumed, 100);
    let mut bars: Vec<i32> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.bar.parse().unwrap())
        .collect();
    bars.sort();
    assert_eq!(bars, (0..100).collect::<Vec<_>>());
    assert_eq!(
        committed_total("one-then-many", &format!("{prefix}foo.bar"), 7),
        100
    );
}
