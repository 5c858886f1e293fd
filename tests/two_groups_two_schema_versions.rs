use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkaesk::{Router, SchemaId, Subscription};
use kafkaesk_tests::{app_builder, unique_prefix};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FooV1 {
    pub bar: String,
}

impl kafkaesk::Schema for FooV1 {
    const ID: &'static str = "Foo";
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FooV2 {
    pub foo: String,
    pub bar: String,
}

impl kafkaesk::Schema for FooV2 {
    const ID: &'static str = "Foo";
    const VERSION: u32 = 2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_decodes_its_own_version() {
    let prefix = unique_prefix("versions");
    let v1 = Arc::new(Mutex::new(Vec::new()));
    let v2 = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (v1.clone(), v2.clone());

    let mut router = Router::new();
    router.schema::<FooV1>().unwrap().schema::<FooV2>().unwrap();
    router
        .subscribe(
            Subscription::new("foo", move |data: FooV1, schema: SchemaId| {
                let s1 = s1.clone();
                async move { s1.lock().unwrap().push((data, schema.to_string())) }
            })
            .with_name("consume_v1")
            .with_group("versions-1"),
        )
        .subscribe(
            Subscription::new("foo", move |data: FooV2| {
                let s2 = s2.clone();
                async move { s2.lock().unwrap().push(data) }
            })
            .with_name("consume_v2")
            .with_group("versions-2"),
        );
    let app = app_builder(&prefix).mount(router).build().unwrap();

    app.publish_and_wait("foo", &FooV1 { bar: "1".into() })
        .await
        .unwrap();
    app.publish_and_wait(
        "foo",
        &FooV2 {
            foo: "2".into(),
            bar: "3".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        app.consume_for(4, Duration::from_secs(30)).await.unwrap(),
        4
    );

    // v1 data has no `foo`, so only the v2 message decodes as FooV2 (Python
    // kafkaesk decodes by shape, and so do we).
    let mut v1 = v1.lock().unwrap().clone();
    v1.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        v1,
        vec![
            (FooV1 { bar: "1".into() }, "Foo:1".to_owned()),
            (FooV1 { bar: "3".into() }, "Foo:2".to_owned()),
        ]
    );
    assert_eq!(
        *v2.lock().unwrap(),
        vec![FooV2 {
            foo: "2".into(),
            bar: "3".into()
        }]
    );
    let stats = app.stats();
    assert_eq!(stats["consume_v1"].handled, 2);
    assert_eq!(stats["consume_v2"].handled, 1);
    assert_eq!(stats["consume_v2"].unhandled, 1);
}
