//! A service crate with only schemas and handlers, and no `main`.
//!
//! The `kafkaesk` command finds everything it registered and runs it:
//!
//! ```text
//! kafkaesk examples/service --kafka-servers 127.0.0.1:9092
//! kafkaesk examples/service::app --kafka-servers 127.0.0.1:9092   # the application from `app()`
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
