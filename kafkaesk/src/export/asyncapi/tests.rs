//! Unit tests of the AsyncAPI document.

use std::time::Duration;

use super::*;
use crate::schema::Schema;
use crate::subscription::Subscription;

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Address {
    city: String,
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Line {
    sku: String,
}

/// An order.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Order {
    id: u64,
    ship_to: Address,
    lines: Vec<Line>,
}
impl Schema for Order {
    const ID: &'static str = "Order";
    const STREAMS: &'static [&'static str] = &["orders.created"];
    const RETENTION: Option<Duration> = Some(Duration::from_secs(3600));
}

mod other {
    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Line {
        pub sku: u32,
    }
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Refund {
    order: u64,
    billing: Address,
    lines: Vec<other::Line>,
}
impl Schema for Refund {
    const ID: &'static str = "Refund";
    const VERSION: u32 = 2;
    const STREAMS: &'static [&'static str] = &["orders.refunded", "audit"];
}

async fn on_order(_: Order) {}
async fn on_any(_: Vec<u8>) {}
async fn on_audit(_: Vec<u8>) {}

fn router() -> Router {
    let mut router = Router::new();
    router.schema::<Order>().unwrap();
    router.schema::<Refund>().unwrap();
    router.subscribe(Subscription::new("orders.*", on_order).with_group("shop"));
    router.subscribe(Subscription::for_streams(
        ["audit", "payments.[!x]*"],
        on_any,
    ));
    router.subscribe(Subscription::new("audit", on_audit).without_group());
    router
}

fn settings() -> Settings {
    Settings {
        kafka_servers: vec!["k1:9092".into(), "k2:9092".into()],
        topic_prefix: "p.".into(),
        partitions: 3,
        ..Settings::default()
    }
}

fn doc() -> Value {
    document(&router(), &settings(), "shop", "2.0.1")
}

#[test]
fn info_and_servers_come_from_the_caller_and_the_settings() {
    let doc = doc();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["info"]["title"], "shop");
    assert_eq!(doc["info"]["version"], "2.0.1");
    assert_eq!(doc["defaultContentType"], "application/json");
    assert_eq!(
        doc["servers"],
        json!({
            "kafka-1": {"host": "k1:9092", "protocol": "kafka", "title": "Kafka bootstrap server"},
            "kafka-2": {"host": "k2:9092", "protocol": "kafka", "title": "Kafka bootstrap server"},
        })
    );
    let mut tls = settings();
    tls.kafka_servers.truncate(1);
    tls.kafka_settings
        .insert("security.protocol".into(), "SASL_SSL".into());
    let doc = document(&router(), &tls, "shop", "1");
    assert_eq!(doc["servers"]["kafka"]["protocol"], "kafka-secure");
    let doc = document(&router(), &Settings::default(), "shop", "1");
    assert_eq!(doc.get("servers"), None);
}

#[test]
fn streams_become_channels_with_the_prefixed_topic_and_kafka_bindings() {
    let doc = doc();
    let channels = doc["channels"].as_object().unwrap();
    let keys: Vec<&str> = channels.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "audit",
            "orders._",
            "orders.created",
            "orders.refunded",
            "payments.__x__"
        ]
    );
    let created = &channels["orders.created"];
    assert_eq!(created["address"], "p.orders.created");
    assert_eq!(
        created["bindings"]["kafka"],
        json!({
            "partitions": 3,
            "replicas": 2,
            "topicConfiguration": {"retention.ms": 3_600_000},
            "bindingVersion": "0.5.0",
        })
    );
    assert_eq!(
        created["messages"],
        json!({"Order-1": {"$ref": "#/components/messages/Order-1"}})
    );
    // Without a retention, the broker's default applies: nothing is said.
    assert_eq!(
        channels["audit"]["bindings"]["kafka"].get("topicConfiguration"),
        None
    );
}

#[test]
fn patterns_are_channels_of_the_prefixed_pattern_with_the_schemas_they_match() {
    let doc = doc();
    let pattern = &doc["channels"]["orders._"];
    assert_eq!(pattern["address"], "p.orders.*");
    assert_eq!(pattern["title"], "orders.*");
    assert_eq!(pattern["x-kafkaesk-topic-regex"], r"^p\.orders\..*$");
    assert!(pattern["description"].as_str().unwrap().contains("fnmatch"));
    let messages: Vec<&String> = pattern["messages"].as_object().unwrap().keys().collect();
    assert_eq!(messages, ["Order-1", "Refund-2"]);
    // A pattern that matches no declared stream carries no known message.
    let payments = &doc["channels"]["payments.__x__"];
    assert_eq!(payments["address"], "p.payments.[!x]*");
    assert_eq!(payments.get("messages"), None);
}

#[test]
fn schemas_send_and_subscriptions_receive_with_their_group() {
    let doc = doc();
    let operations = doc["operations"].as_object().unwrap();
    let keys: Vec<&str> = operations.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "receive.on_any.audit",
            "receive.on_any.payments.__x__",
            "receive.on_audit",
            "receive.on_order",
            "send.Order-1.orders.created",
            "send.Refund-2.audit",
            "send.Refund-2.orders.refunded",
        ]
    );
    assert_eq!(
        operations["send.Order-1.orders.created"]["messages"],
        json!([{"$ref": "#/channels/orders.created/messages/Order-1"}])
    );
    let receive = &operations["receive.on_order"];
    assert_eq!(receive["action"], "receive");
    assert_eq!(receive["channel"], json!({"$ref": "#/channels/orders._"}));
    assert_eq!(
        receive["messages"],
        json!([
            {"$ref": "#/channels/orders._/messages/Order-1"},
            {"$ref": "#/channels/orders._/messages/Refund-2"},
        ])
    );
    assert_eq!(
        receive["bindings"]["kafka"],
        json!({"groupId": {"type": "string", "enum": ["shop"]}, "bindingVersion": "0.5.0"})
    );
    // The default group is the subscription's name.
    assert_eq!(
        operations["receive.on_any.audit"]["bindings"]["kafka"]["groupId"]["enum"],
        json!(["on_any"])
    );
    let groupless = &operations["receive.on_audit"];
    assert_eq!(groupless.get("bindings"), None);
    assert!(groupless["summary"]
        .as_str()
        .unwrap()
        .contains("without a consumer group"));
}

#[test]
fn messages_describe_the_envelope_around_the_data() {
    let doc = doc();
    let order = &doc["components"]["messages"]["Order-1"];
    assert_eq!(order["name"], "Order:1");
    assert_eq!(order["summary"], "An order.");
    assert_eq!(order["contentType"], "application/json");
    assert_eq!(order["bindings"]["kafka"]["key"]["type"], "string");
    let payload = &order["payload"];
    assert_eq!(payload["required"], json!(["schema", "data"]));
    assert_eq!(
        payload["properties"]["schema"],
        json!({"type": "string", "const": "Order:1"})
    );
    assert_eq!(
        payload["properties"]["data"],
        json!({"$ref": "#/components/schemas/Order-1"})
    );
}

#[test]
fn nested_types_are_shared_components_unless_they_differ() {
    let doc = doc();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let keys: Vec<&str> = schemas.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Address",
            "Order-1",
            "Order-1.Line",
            "Refund-2",
            "Refund-2.Line"
        ]
    );
    let order = &schemas["Order-1"];
    assert_eq!(order["title"], "Order:1");
    assert_eq!(order.get("$schema"), None);
    assert_eq!(order.get("$defs"), None);
    assert_eq!(
        order["properties"]["ship_to"]["$ref"],
        "#/components/schemas/Address"
    );
    assert_eq!(
        order["properties"]["lines"]["items"]["$ref"],
        "#/components/schemas/Order-1.Line"
    );
    assert_eq!(
        schemas["Refund-2.Line"]["properties"]["sku"]["type"],
        "integer"
    );
}

#[test]
fn the_payload_accepts_what_encode_writes() {
    let doc = doc();
    // The AsyncAPI document as a draft-07 schema resolver: the payload,
    // with the components it refers to.
    let mut schema = doc["components"]["messages"]["Order-1"]["payload"].clone();
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let info = SchemaInfo::of::<Order>().unwrap();
    let order = Order {
        id: 7,
        ship_to: Address {
            city: "Oslo".into(),
        },
        lines: vec![Line { sku: "a".into() }],
    };
    let bytes = info.encode(&order).unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(validator.is_valid(&value), "{value}");
    let mut wrong_key = value.clone();
    wrong_key["schema"] = json!("Order:2");
    assert!(!validator.is_valid(&wrong_key));
    let mut wrong_data = value;
    wrong_data["data"]["lines"][0]["sku"] = json!(1);
    assert!(!validator.is_valid(&wrong_data));
}
