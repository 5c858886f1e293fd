use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::{Record, Subscription};
use kafkaesk_tests::{app_builder, unique_prefix};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Foo {
    pub bar: String,
}

impl kafkaesk::Schema for Foo {
    const ID: &'static str = "Foo";
}

const WIRE: &[u8] = br#"{"schema":"Foo:1","data":{"bar":"x"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_bytes_and_json_handlers_see_the_wire_message() {
    let prefix = unique_prefix("raw");
    let records = Arc::new(Mutex::new(Vec::<Record>::new()));
    let bytes = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let json = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let (r, b, j) = (records.clone(), bytes.clone(), json.clone());
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("foo", move |record: Record| {
                let r = r.clone();
                async move { r.lock().unwrap().push(record) }
            })
            .with_name("raw-record")
            .with_group("raw-record"),
        )
        .subscribe(
            Subscription::new("foo", move |data: Vec<u8>| {
                let b = b.clone();
                async move { b.lock().unwrap().push(data) }
            })
            .with_name("raw-bytes")
            .with_group("raw-bytes"),
        )
        .subscribe(
            Subscription::new("foo", move |data: serde_json::Value| {
                let j = j.clone();
                async move { j.lock().unwrap().push(data) }
            })
            .with_name("raw-json")
            .with_group("raw-json"),
        )
        .build()
        .unwrap();
    let delivery = app
        .publish("foo", &Foo { bar: "x".into() })
        .key("the-key")
        .wait()
        .await
        .unwrap();
    assert_eq!(
        app.consume_for(3, Duration::from_secs(30)).await.unwrap(),
        3
    );

    let records = records.lock().unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.value(), WIRE);
    assert_eq!(record.key(), Some(&b"the-key"[..]));
    assert_eq!(record.partition(), delivery.partition);
    assert_eq!(record.offset(), delivery.offset);
    assert!(record.timestamp().is_some());
    assert_eq!(*bytes.lock().unwrap(), vec![WIRE.to_vec()]);
    assert_eq!(
        *json.lock().unwrap(),
        vec![serde_json::json!({"schema": "Foo:1", "data": {"bar": "x"}})]
    );
}
