//! The global registry that `#[schema]` and `#[subscribe]` fill at link time.
//!
//! Each annotated item submits an entry through [`inventory`]; an application
//! built with [`ApplicationBuilder::with_registry`](crate::ApplicationBuilder::with_registry)
//! or [`Router::from_registry`](crate::Router::from_registry) gathers them all.
//! This is how the `kafkaesk` CLI finds a crate's handlers without a `main`.
//!
//! Registrations live in whichever crate declares them. A binary that never
//! names a library crate may let the linker drop it; `use the_lib as _;` or
//! calling any item of it keeps it linked.

use crate::error::Result;
use crate::router::Subscription;
use crate::schema::{Schema, SchemaInfo};

/// A schema submitted by `#[schema]`.
pub struct SchemaRegistration {
    /// Compiles the schema.
    pub compile: fn() -> Result<SchemaInfo>,
}

impl SchemaRegistration {
    /// The registration of a schema type.
    pub const fn of<T: Schema>() -> Self {
        SchemaRegistration {
            compile: SchemaInfo::of::<T>,
        }
    }
}

/// A subscription submitted by `#[subscribe]`.
pub struct SubscriptionRegistration {
    /// Builds the subscription.
    pub build: fn() -> Subscription,
}

inventory::collect!(SchemaRegistration);
inventory::collect!(SubscriptionRegistration);

/// Every registered schema.
pub fn schemas() -> impl Iterator<Item = &'static SchemaRegistration> {
    inventory::iter::<SchemaRegistration>()
}

/// Every registered subscription.
pub fn subscriptions() -> impl Iterator<Item = &'static SubscriptionRegistration> {
    inventory::iter::<SubscriptionRegistration>()
}
