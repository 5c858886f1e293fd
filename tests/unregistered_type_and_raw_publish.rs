use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::{Headers, Record, Subscription};
use kafkaesk_tests::{app_builder, read_all, unique_prefix};

/// Never registered: published as "Unregistered:1", like Python kafkaesk does.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Unregistered {
    pub value: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_type_is_published_under_its_type_name() {
    let prefix = unique_prefix("unreg");
    let app = app_builder(&prefix).build().unwrap();
    app.publish_and_wait("things", &Unregistered { value: 42 })
        .await
        .unwrap();
    let values = read_all(&format!("{prefix}things"), Duration::from_secs(3));
    assert_eq!(
        values,
        vec![br#"{"schema":"Unregistered:1","data":{"value":42}}"#.to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_publish_passes_bytes_key_and_headers_untouched() {
    let prefix = unique_prefix("rawpub");
    let seen = Arc::new(Mutex::new(Vec::<Record>::new()));
    let sink = seen.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("raw", move |record: Record| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(record) }
            })
            .with_group("rawpub"),
        )
        .build()
        .unwrap();
    let value = vec![0x00, 0xff, 0xc3, 0x28, b'x'];
    let key = vec![0xfe, 0x01];
    let headers = Headers::new()
        .with("bin", [0x80_u8, 0x81])
        .with("text", "t");
    app.raw_publish("raw", value.clone())
        .key(&key)
        .headers(&headers)
        .wait()
        .await
        .unwrap();
    assert_eq!(
        app.consume_for(1, Duration::from_secs(30)).await.unwrap(),
        1
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].value(), value.as_slice());
    assert_eq!(seen[0].key(), Some(key.as_slice()));
    assert_eq!(seen[0].headers(), &headers);
}
