//! `kafkaesk schemas --check` against the test broker: it lists the
//! conflicts and incompatible versions among what services registered on
//! `kafkaesk.schemas`, and its exit code says whether there are any (0 none,
//! 1 some, 2 a usage error), for CI pipelines.

use std::process::{Command, Output};

use kafkaesk::settings::SchemaContracts;
use kafkaesk::Router;
use kafkaesk_tests::{require_broker, unique_prefix};

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Order {
    pub id: u64,
    pub quantity: u32,
}
impl kafkaesk::Schema for Order {
    const ID: &'static str = "Order";
}

/// `Order:1` with `quantity` as text: a conflict with [`Order`].
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct TextOrder {
    pub id: u64,
    pub quantity: String,
}
impl kafkaesk::Schema for TextOrder {
    const ID: &'static str = "Order";
}

/// `Order:2` without `quantity`: incompatible with version 1.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct OrderWithoutQuantity {
    pub id: u64,
}
impl kafkaesk::Schema for OrderWithoutQuantity {
    const ID: &'static str = "Order";
    const VERSION: u32 = 2;
}

async fn register<T: kafkaesk::Schema>(prefix: &str, service: &str) {
    let mut router = Router::new();
    router.schema::<T>().unwrap();
    kafkaesk::Application::builder()
        .kafka_servers([require_broker()])
        .topic_prefix(prefix)
        .service_name(service)
        .schema_contracts(SchemaContracts::Warn)
        .mount(router)
        .build()
        .unwrap()
        .initialize()
        .await
        .unwrap();
}

fn check(prefix: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafkaesk"))
        .env_remove("KAFKAESK_KAFKA_SETTINGS")
        .args(["schemas", "--check", "--kafka-servers"])
        .arg(require_broker())
        .arg("--topic-prefix")
        .arg(prefix)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreeing_services_pass() {
    let prefix = unique_prefix("check-ok");
    register::<Order>(&prefix, "shop").await;
    register::<Order>(&prefix, "billing").await;
    let output = check(&prefix);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("2 schema registrations by 2 services"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_fails_the_check_naming_both_services() {
    let prefix = unique_prefix("check-conflict");
    register::<Order>(&prefix, "shop").await;
    register::<TextOrder>(&prefix, "billing").await;
    let output = check(&prefix);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("conflict: schema Order:1"), "{text}");
    assert!(
        text.contains("`billing`") && text.contains("`shop`"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_version_fails_the_check() {
    let prefix = unique_prefix("check-incompatible");
    register::<Order>(&prefix, "shop").await;
    register::<OrderWithoutQuantity>(&prefix, "shop").await;
    let output = check(&prefix);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("incompatible: schema Order:2 (service `shop`) is incompatible with Order:1: required `quantity` was removed"),
        "{text}"
    );
}

#[test]
fn without_servers_it_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_kafkaesk"))
        .env_remove("KAFKAESK_KAFKA_SERVERS")
        .args(["schemas", "--check"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--kafka-servers"));
}
