//! A service crate with only schemas and handlers, and no `main`.
//!
//! The `kafkaesk` command finds everything it registered and runs it:
//!
//! ```text
//! kafkaesk examples/service --kafka-servers 127.0.0.1:9092
//! kafkaesk examples/service::app --kafka-servers 127.0.0.1:9092   # the application from `app()`
//! ```
//!
//! In production, add `--metrics-addr 0.0.0.0:9464` (or `KAFKAESK_METRICS_ADDR`): Prometheus
//! scrapes `http://<pod>:9464/metrics`, with Python kafkaesk's metric names, and a liveness
//! probe reads `http://<pod>:9464/health` (200 while the producer reaches a broker and the
//! consumer runs, 503 otherwise):
//!
//! ```yaml
//! livenessProbe:
//!   httpGet: { path: /health, port: 9464 }
//! ```

use kafkaesk::{Application, Record};

/// An order placed in the shop.
#[kafkaesk::schema("Order", version = 1, streams = ["orders.created"])]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Order {
    /// Order number.
    pub id: u64,
    /// What was ordered.
    #[schemars(length(min = 1))]
    pub item: String,
    /// How many.
    #[schemars(range(min = 1))]
    pub quantity: u32,
}

/// Handles every order stream.
#[kafkaesk::subscribe("orders.*", group = "order-service")]
pub async fn handle_order(order: Order, record: Record) {
    println!(
        "handled order {} ({} x {}) from {}[{}]@{}",
        order.id,
        order.quantity,
        order.item,
        record.topic(),
        record.partition(),
        record.offset()
    );
}

/// The application, for `kafkaesk examples/service::app`: the registered
/// schemas and handlers, with settings of its own that flags can override.
pub fn app() -> Result<Application, kafkaesk::Error> {
    Application::builder()
        .topic_prefix("service.")
        .with_registry()?
        .build()
}
