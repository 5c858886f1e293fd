//! Routers: schemas and subscriptions, without any Kafka configuration.
//!
//! A [`Router`] lets a library declare its schemas and handlers without a
//! global application, as Python kafkaesk's `Router` does; an
//! [`Application`](crate::Application) mounts it.
//!
//! ```
//! use kafkaesk::{Router, Subscription};
//!
//! #[kafkaesk::schema("Content", version = 1)]
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! pub struct ContentMessage { pub foo: String }
//!
//! async fn get_messages(data: ContentMessage) {
//!     println!("{}", data.foo);
//! }
//!
//! # fn main() -> Result<(), kafkaesk::Error> {
//! let mut router = Router::new();
//! router.schema::<ContentMessage>()?;
//! router.subscribe(Subscription::new("content.*", get_messages).with_group("group_id"));
//!
//! let app = kafkaesk::Application::builder()
//!     .kafka_servers(["localhost:9092"])
//!     .mount(router)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! Types and functions annotated with `#[schema]` and `#[subscribe]` are also
//! collected in a global registry; [`Router::from_registry`] gathers them all.

use std::collections::HashMap;
use std::sync::Arc;

use super::Subscription;
use crate::error::{Error, Result};
use crate::schema::{Schema, SchemaInfo};

/// Schemas and subscriptions.
#[derive(Debug, Clone, Default)]
pub struct Router {
    schemas: Vec<Arc<SchemaInfo>>,
    pub(super) subscriptions: Vec<Subscription>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Router::default()
    }

    /// Registers a schema type.
    ///
    /// Registering the same type twice is harmless; registering two types under
    /// the same `"Id:version"` is an [`Error::SchemaConflict`].
    pub fn schema<T: Schema>(&mut self) -> Result<&mut Self> {
        self.add_schema(Arc::new(SchemaInfo::of::<T>()?))
    }

    pub(crate) fn add_schema(&mut self, info: Arc<SchemaInfo>) -> Result<&mut Self> {
        if let Some(existing) = self.schemas.iter().find(|s| s.key() == info.key()) {
            if existing.type_id() == info.type_id() {
                return Ok(self);
            }
            return Err(Error::SchemaConflict {
                key: info.key().to_owned(),
                existing: existing.type_name(),
                new: info.type_name(),
            });
        }
        self.schemas.push(info);
        Ok(self)
    }

    /// Adds a subscription.
    pub fn subscribe(&mut self, subscription: Subscription) -> &mut Self {
        self.subscriptions.push(subscription);
        self
    }

    /// Merges another router's schemas and subscriptions into this one.
    pub fn mount(&mut self, other: Router) -> Result<&mut Self> {
        for schema in other.schemas {
            self.add_schema(schema)?;
        }
        self.subscriptions.extend(other.subscriptions);
        Ok(self)
    }

    /// The registered schemas.
    pub fn schemas(&self) -> impl Iterator<Item = &SchemaInfo> {
        self.schemas.iter().map(AsRef::as_ref)
    }

    /// The subscriptions.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// Puts `prefix` before every subscription's consumer group, so that
    /// applications of one router sharing a broker never share a group.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn prefix_groups(&mut self, prefix: &str) {
        for subscription in &mut self.subscriptions {
            if let Some(group) = subscription.group() {
                subscription.group = Some(format!("{prefix}{group}"));
            }
        }
    }

    pub(crate) fn schema_infos(&self) -> impl Iterator<Item = &Arc<SchemaInfo>> {
        self.schemas.iter()
    }

    /// Checks every subscription, and that no two share a name.
    pub(crate) fn validate(&self) -> Result<()> {
        let mut names: HashMap<&str, &Subscription> = HashMap::new();
        for subscription in &self.subscriptions {
            subscription.validate()?;
            if let Some(first) = names.insert(subscription.name(), subscription) {
                return Err(Error::DuplicateSubscription {
                    name: subscription.name().to_owned(),
                    first: first.streams().to_string(),
                    second: subscription.streams().to_string(),
                });
            }
        }
        Ok(())
    }
}
