//! Schema contracts across services: each application registers its schemas
//! on the compacted `kafkaesk.schemas` stream at `initialize` and compares
//! them with the other services'. A conflicting `Id:version` stops the
//! second service (or warns, where it chooses), a new version is checked
//! against the one before, and one service replaces its own registration.

use kafkaesk::schema::contract::SchemaFinding;
use kafkaesk::settings::SchemaContracts;
use kafkaesk::{Application, Error, Router};
use kafkaesk_tests::{app_builder, topic_config, unique_prefix};

/// `Order:1` as the shop publishes it.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ShopOrder {
    pub id: u64,
    pub quantity: u32,
}
impl kafkaesk::Schema for ShopOrder {
    const ID: &'static str = "Order";
}

/// `Order:1` as billing thinks it is: `quantity` as text.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct BillingOrder {
    pub id: u64,
    pub quantity: String,
}
impl kafkaesk::Schema for BillingOrder {
    const ID: &'static str = "Order";
}

/// `Order:2` with a new required field: incompatible with version 1.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct OrderWithCoupon {
    pub id: u64,
    pub quantity: u32,
    pub coupon: String,
}
impl kafkaesk::Schema for OrderWithCoupon {
    const ID: &'static str = "Order";
    const VERSION: u32 = 2;
}

/// `Order:2` with a new optional field: compatible with version 1.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct OrderWithNote {
    pub id: u64,
    pub quantity: u32,
    pub note: Option<String>,
}
impl kafkaesk::Schema for OrderWithNote {
    const ID: &'static str = "Order";
    const VERSION: u32 = 2;
}

fn service<T: kafkaesk::Schema>(
    prefix: &str,
    name: &str,
    contracts: SchemaContracts,
) -> Application {
    let mut router = Router::new();
    router.schema::<T>().unwrap();
    app_builder(prefix)
        .service_name(name)
        .schema_contracts(contracts)
        .mount(router)
        .build()
        .unwrap()
}

async fn registered(app: &Application) -> Vec<(String, u32, String)> {
    let mut all: Vec<_> = app
        .schema_registrations()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.version, r.service))
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_version_stops_the_second_service_naming_both_and_the_field() {
    let prefix = unique_prefix("contracts-conflict");
    let shop = service::<ShopOrder>(&prefix, "shop", SchemaContracts::Enforce);
    shop.initialize().await.unwrap();
    assert_eq!(
        topic_config(&format!("{prefix}kafkaesk.schemas"), "cleanup.policy")
            .await
            .as_deref(),
        Some("compact")
    );

    let billing = service::<BillingOrder>(&prefix, "billing", SchemaContracts::Enforce);
    let err = billing.initialize().await.unwrap_err();
    let Error::SchemaContract { findings } = &err else {
        panic!("expected a schema contract error, got {err}");
    };
    assert_eq!(findings.len(), 1, "{err}");
    let text = err.to_string();
    assert!(text.contains("Order:1"), "{text}");
    assert!(
        text.contains("`billing`") && text.contains("`shop`"),
        "{text}"
    );
    assert!(text.contains("/properties/quantity/type"), "{text}");
    // Nothing of billing's was registered.
    assert_eq!(
        registered(&shop).await,
        vec![("Order".to_owned(), 1, "shop".to_owned())]
    );

    // The same service may change its own registration (a new deploy).
    let shop_again = service::<BillingOrder>(&prefix, "shop", SchemaContracts::Enforce);
    shop_again.initialize().await.unwrap();
    assert_eq!(registered(&shop).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_chooses_to_warn_starts_and_the_conflict_is_listed() {
    let prefix = unique_prefix("contracts-warn");
    service::<ShopOrder>(&prefix, "shop", SchemaContracts::Enforce)
        .initialize()
        .await
        .unwrap();
    let billing = service::<BillingOrder>(&prefix, "billing", SchemaContracts::Warn);
    billing.initialize().await.unwrap();
    assert_eq!(registered(&billing).await.len(), 2);
    let findings = billing.schema_findings().await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(matches!(
        &findings[0],
        SchemaFinding::Conflict { schema, .. } if schema == "Order:1"
    ));

    // Off: neither registered nor compared.
    let quiet = service::<BillingOrder>(&prefix, "quiet", SchemaContracts::Off);
    quiet.initialize().await.unwrap();
    assert_eq!(registered(&billing).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_versions_are_checked_against_the_version_before() {
    let prefix = unique_prefix("contracts-versions");
    service::<ShopOrder>(&prefix, "shop", SchemaContracts::Enforce)
        .initialize()
        .await
        .unwrap();
    // Compatible: an optional field more.
    let notes = service::<OrderWithNote>(&prefix, "notes", SchemaContracts::Enforce);
    notes.initialize().await.unwrap();
    assert!(notes.schema_findings().await.unwrap().is_empty());

    // Incompatible, in another environment: a new required field. It starts
    // (a new version may break), and the finding is listed.
    let prefix = unique_prefix("contracts-breaking");
    service::<ShopOrder>(&prefix, "shop", SchemaContracts::Enforce)
        .initialize()
        .await
        .unwrap();
    let coupons = service::<OrderWithCoupon>(&prefix, "coupons", SchemaContracts::Enforce);
    coupons.initialize().await.unwrap();
    let findings = coupons.schema_findings().await.unwrap();
    assert_eq!(
        findings,
        vec![SchemaFinding::Incompatible {
            id: "Order".into(),
            from: 1,
            to: 2,
            service: "coupons".into(),
            problems: vec![
                "`coupon` is new and required (messages of the old version lack it)".into()
            ],
        }]
    );
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A registration record as another client could write it: `key` and
/// `body` chosen freely.
async fn write_registration(app: &Application, key: &str, body: serde_json::Value) {
    let envelope = serde_json::json!({"schema": "KafkaeskSchemaRegistration:1", "data": body});
    app.raw_publish("kafkaesk.schemas", envelope.to_string())
        .key(key)
        .wait()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_registrations_neither_stop_nor_swell_a_service() {
    let prefix = unique_prefix("contracts-hostile");
    let writer = app_builder(&prefix).build().unwrap();
    // 547 bytes whose 12 properties each reference the object itself:
    // inlining without a bound grew a service to 23 GB.
    let properties: serde_json::Map<String, serde_json::Value> = (0..12)
        .map(|i| (format!("p{i}"), serde_json::json!({"$ref": "#/$defs/N"})))
        .collect();
    // Registered as the next version of our own schema, so that start-up
    // compares it (registrations of other ids are not even looked at).
    let bomb = serde_json::json!({
        "id": "Order", "version": 2, "service": "mallory", "host": "h",
        "schema": {"$ref": "#/$defs/N", "$defs": {"N": {"type": "object", "properties": properties}}},
    });
    write_registration(&writer, "Order:2@mallory", bomb).await;
    // Billing's shape of Order:1, under a key that names another service
    // than the body: ignored, or it would stop the shop.
    let forged = serde_json::json!({
        "id": "Order", "version": 1, "service": "billing", "host": "h",
        "schema": schemars::schema_for!(BillingOrder),
    });
    write_registration(&writer, "Order:1@shop-friend", forged).await;
    write_registration(&writer, "junk", serde_json::json!("not a registration")).await;

    let before = resident_bytes();
    let started = std::time::Instant::now();
    let shop = service::<ShopOrder>(&prefix, "shop", SchemaContracts::Enforce);
    tokio::time::timeout(std::time::Duration::from_secs(30), shop.initialize())
        .await
        .expect("initialize is bounded")
        .expect("the forged conflict is ignored");
    let grown = resident_bytes().saturating_sub(before);
    eprintln!(
        "started in {:?}, resident memory grew by {} KiB",
        started.elapsed(),
        grown / 1024
    );
    // Other tests share this process: the bound is generous, the failure
    // it guards against was 23 GB.
    assert!(grown < 1 << 30, "resident memory grew by {grown} bytes");
    // What `schemas --check` sees: the shop and the bomb, which breaks
    // version 1 (a finding), and no conflict.
    let mut on_bus = registered(&shop).await;
    on_bus.sort();
    assert_eq!(
        on_bus,
        [
            ("Order".to_owned(), 1, "shop".to_owned()),
            ("Order".to_owned(), 2, "mallory".to_owned())
        ]
    );
    let findings = shop.schema_findings().await.unwrap();
    assert!(findings.iter().all(|f| !f.is_conflict()), "{findings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_schemas_stream_warns_at_start_and_fails_the_check() {
    let prefix = unique_prefix("contracts-flood");
    let writer = app_builder(&prefix).build().unwrap();
    let mut deliveries = Vec::new();
    for i in 0..20_001 {
        let handle = writer
            .raw_publish("kafkaesk.schemas", format!("{{\"n\":{i}}}"))
            .key(format!("flood-{i}"))
            .await
            .unwrap();
        deliveries.push(handle);
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    // Start-up reads a bounded part of the stream, warns, and starts.
    let shop = service::<ShopOrder>(&prefix, "shop", SchemaContracts::Enforce);
    tokio::time::timeout(std::time::Duration::from_secs(60), shop.initialize())
        .await
        .expect("initialize is bounded")
        .unwrap();
    // The check cannot vouch for a stream it did not read whole.
    let err = shop.schema_findings().await.unwrap_err();
    assert!(err.to_string().contains("more than 20000 records"), "{err}");
}
