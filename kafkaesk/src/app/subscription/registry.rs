//! The global registry that `#[schema]` and `#[subscribe]` fill at link time.
//!
//! Each annotated item submits an entry through [`inventory`]; an application
//! built with [`ApplicationBuilder::with_registry`](crate::ApplicationBuilder::with_registry)
//! or [`Router::from_registry`] gathers them all. This is how the `kafkaesk`
//! command finds a crate's handlers without a `main`.
//!
//! Registrations live in whichever crate declares them. A binary that never
//! names a library crate may let the linker drop it; `use the_lib as _;` or
//! calling any item of it keeps it linked.
//!
//! The entry types are macro support, reachable as `kafkaesk::__private`, not
//! an API.

use std::sync::Arc;

use crate::error::Result;
use crate::schema::{Schema, SchemaInfo};
use crate::subscription::{Router, Subscription};

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

impl Router {
    /// Every schema and subscription registered with `#[schema]` and `#[subscribe]`
    /// in the crates linked into this program.
    ///
    /// Two registered subscriptions with the same name (two `index` functions
    /// in different modules, say) make the application's `build` fail with
    /// [`Error::DuplicateSubscription`](crate::Error::DuplicateSubscription).
    pub fn from_registry() -> Result<Self> {
        let mut router = Router::new();
        for schema in inventory::iter::<SchemaRegistration>() {
            router.add_schema(Arc::new((schema.compile)()?))?;
        }
        for subscription in inventory::iter::<SubscriptionRegistration>() {
            router.subscribe((subscription.build)());
        }
        Ok(router)
    }
}
