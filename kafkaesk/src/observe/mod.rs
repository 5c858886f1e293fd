//! What kafkaesk records about itself while it works: Prometheus
//! [`metrics`] with Python kafkaesk's names, handler spans and trace
//! [`propagation`] through headers, and the journal the test harness waits
//! on. Every other layer writes here; nothing here reads them back. Shipping
//! logs to a stream ([`logging`](crate::logging)) and serving the metrics
//! ([`http`](crate::http)) sit above the application instead.

pub(crate) mod journal;
pub mod metrics;
pub mod propagation;
