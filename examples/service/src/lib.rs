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
//!
//! Its tests (`tests/harness.rs`) run these handlers with `kafkaesk::testing`, against a broker
//! inside the test process: `cargo test -p service`.

use kafkaesk::{Application, Record, Subscriber};

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

/// An order on its way to the customer.
#[kafkaesk::schema("Shipment", version = 1, streams = ["shipments.created"])]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Shipment {
    /// The order shipped.
    pub order_id: u64,
    /// What was shipped.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// The most the warehouse holds of any item: larger orders cannot ship.
pub const STOCK: u32 = 100;

/// Where orders that cannot ship go, for a person to look at.
pub const SHIPPING_DEAD_LETTERS: &str = "shipping.dead-letters";

/// Why an order did not ship.
#[derive(Debug)]
pub enum ShippingError {
    /// More was ordered than the warehouse holds.
    OutOfStock {
        /// The item.
        item: String,
        /// How many were ordered.
        ordered: u32,
    },
    /// The shipment could not be published.
    Publish(kafkaesk::Error),
}

impl std::fmt::Display for ShippingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShippingError::OutOfStock { item, ordered } => {
                write!(f, "{ordered} x {item} ordered, {STOCK} in stock")
            }
            ShippingError::Publish(err) => write!(f, "shipment not published: {err}"),
        }
    }
}

impl std::error::Error for ShippingError {}

impl From<kafkaesk::Error> for ShippingError {
    fn from(err: kafkaesk::Error) -> Self {
        ShippingError::Publish(err)
    }
}

/// Ships each new order: publishes a [`Shipment`] keyed by the order number, carrying the
/// order's headers. An order larger than the stock is tried twice more (stock may arrive),
/// then dead-lettered to [`SHIPPING_DEAD_LETTERS`] so the other orders go on shipping.
#[kafkaesk::subscribe(
    "orders.created",
    group = "shipping",
    retry = 2,
    backoff = 0.01,
    dead_letter = "shipping.dead-letters"
)]
pub async fn ship_order(order: Order, subscriber: Subscriber) -> Result<(), ShippingError> {
    if order.quantity > STOCK {
        return Err(ShippingError::OutOfStock {
            item: order.item,
            ordered: order.quantity,
        });
    }
    let shipment = Shipment {
        order_id: order.id,
        item: order.item,
        quantity: order.quantity,
    };
    subscriber
        .publish("shipments.created", &shipment)
        .key(order.id.to_string())
        .await?;
    Ok(())
}

/// The application, for `kafkaesk examples/service::app`: the registered
/// schemas and handlers, with settings of its own that flags can override.
pub fn app() -> Result<Application, kafkaesk::Error> {
    Application::builder()
        .topic_prefix("service.")
        .with_registry()?
        .build()
}
