//! The schemas an application publishes with, by Rust type.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::SchemaInfo;
use crate::error::Result;
use crate::sync::{read_lock, write_lock};

/// Compiled schemas by type: the registered ones, and types that were never
/// registered, compiled on their first publish.
#[derive(Default)]
pub(crate) struct SchemaCatalog {
    /// Looked up on every publish; a `TypeId` is not attacker-chosen, so a
    /// fast hasher is safe.
    by_type: RwLock<HashMap<TypeId, Arc<SchemaInfo>, foldhash::fast::RandomState>>,
}

impl SchemaCatalog {
    /// A catalog of `schemas`.
    pub(crate) fn new<'a>(schemas: impl IntoIterator<Item = &'a Arc<SchemaInfo>>) -> Self {
        let catalog = SchemaCatalog::default();
        catalog.replace(schemas);
        catalog
    }

    /// Replaces the registered schemas.
    pub(crate) fn replace<'a>(&self, schemas: impl IntoIterator<Item = &'a Arc<SchemaInfo>>) {
        *write_lock(&self.by_type) = schemas
            .into_iter()
            .map(|s| (s.type_id(), s.clone()))
            .collect();
    }

    /// The schema `T` is published with: its registration, or `"<TypeName>:1"`.
    pub(crate) fn of<T: Serialize + schemars::JsonSchema + 'static>(
        &self,
    ) -> Result<Arc<SchemaInfo>> {
        let type_id = TypeId::of::<T>();
        if let Some(info) = read_lock(&self.by_type).get(&type_id) {
            return Ok(info.clone());
        }
        let info = Arc::new(SchemaInfo::unregistered::<T>()?);
        let mut schemas = write_lock(&self.by_type);
        Ok(schemas.entry(type_id).or_insert(info).clone())
    }

    /// Every schema known so far.
    pub(crate) fn all(&self) -> Vec<Arc<SchemaInfo>> {
        read_lock(&self.by_type).values().cloned().collect()
    }
}
