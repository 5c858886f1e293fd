use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::{Application, Record, SchemaId, Subscriber, Subscription};
use kafkaesk_tests::{app_builder, unique_prefix};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Foo {
    pub bar: String,
}

impl kafkaesk::Schema for Foo {
    const ID: &'static str = "Foo";
}

#[derive(Debug)]
struct Seen {
    data: Foo,
    schema: String,
    topic: String,
    offset: i64,
    subscriber_offset: i64,
    prefix: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_gets_data_schema_record_app_and_subscriber() {
    let prefix = unique_prefix("binding");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let handler = move |data: Foo,
                        schema: SchemaId,
                        record: Record,
                        app: Application,
                        subscriber: Subscriber| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(Seen {
                data,
                schema: schema.to_string(),
                topic: record.topic().to_owned(),
                offset: record.offset(),
                subscriber_offset: subscriber.record().offset(),
                prefix: app.settings().topic_prefix.clone(),
            });
        }
    };
    let app = app_builder(&prefix)
        .subscribe(Subscription::new("foo.bar", handler).with_group("binding"))
        .build()
        .unwrap();
    let delivery = app
        .publish_and_wait("foo.bar", &Foo { bar: "1".into() })
        .await
        .unwrap();
    assert_eq!(
        app.consume_for(1, Duration::from_secs(30)).await.unwrap(),
        1
    );

    let seen = seen.lock().unwrap();
    let [one] = seen.as_slice() else {
        panic!("expected one message, got {seen:?}")
    };
    assert_eq!(one.data, Foo { bar: "1".into() });
    assert_eq!(one.schema, "Foo:1");
    assert_eq!(one.topic, format!("{prefix}foo.bar"));
    assert_eq!(one.offset, delivery.offset);
    assert_eq!(one.subscriber_offset, delivery.offset);
    assert_eq!(one.prefix, prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_publish_propagates_headers_and_forward_adds_some() {
    let prefix = unique_prefix("headers");
    let out = Arc::new(Mutex::new(Vec::<Record>::new()));
    let sink = out.clone();
    let app = app_builder(&prefix)
        .subscribe(
            Subscription::new("in", |data: Foo, subscriber: Subscriber| async move {
                subscriber.publish("out.published", &data).await?.await?;
                let extra = kafkaesk::Headers::new().with("slow", "true");
                subscriber
                    .forward("out.forwarded", subscriber.record(), &extra)
                    .await?
                    .await?;
                Ok::<_, kafkaesk::Error>(())
            })
            .with_name("headers-in")
            .with_group("headers-in"),
        )
        .subscribe(
            Subscription::new("out.*", move |record: Record| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(record) }
            })
            .with_name("headers-out")
            .with_group("headers-out"),
        )
        .build()
        .unwrap();
    app.publish("in", &Foo { bar: "x".into() })
        .key("k1")
        .header("trace-id", "abc")
        .header("binary", [0xff_u8, 0x00, 0xfe])
        .wait()
        .await
        .unwrap();
    assert_eq!(
        app.consume_for(3, Duration::from_secs(40)).await.unwrap(),
        3
    );

    let out = out.lock().unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    for record in out.iter() {
        assert_eq!(record.headers().get("trace-id"), Some(&b"abc"[..]));
        assert_eq!(
            record.headers().get("binary"),
            Some(&[0xff, 0x00, 0xfe][..])
        );
    }
    let forwarded = out
        .iter()
        .find(|r| r.topic().ends_with("out.forwarded"))
        .expect("forwarded record");
    assert_eq!(forwarded.headers().get("slow"), Some(&b"true"[..]));
    assert_eq!(forwarded.key(), Some(&b"k1"[..]));
    assert_eq!(
        forwarded.value(),
        br#"{"schema":"Foo:1","data":{"bar":"x"}}"#
    );
}
