//! Schema contracts on the bus: at [`initialize`](crate::Application::initialize),
//! an application registers each of its schemas (id, version, JSON Schema,
//! service, host) on the compacted stream `kafkaesk.schemas` (under the
//! topic prefix), after reading what other services registered there and
//! comparing, as the rest of this page says.
//!
//! - A **conflict** (another service registered one of our `Id:version`s
//!   with a different shape) is a warning naming both services and what
//!   differs, and the schemas are registered. With
//!   [`SchemaContracts::Enforce`](crate::settings::SchemaContracts::Enforce) it stops `initialize` with
//!   [`Error::SchemaContract`](crate::Error::SchemaContract) before anything is registered. Warning is
//!   the default because the stream is input from anyone who can write it:
//!   one record must not keep every service from starting.
//! - An **incompatible version** (ours against the version before it on the
//!   bus, or the next one against ours) is a warning: a new version is how
//!   kafkaesk evolves a schema, so breaking one is allowed, but people should
//!   know. `kafkaesk schemas --check` lists both, for CI pipelines, and exits
//!   non-zero.
//!
//! Records are keyed `Id:version@service`, so compaction keeps each
//! service's latest registration, and a service that changes a schema
//! without a new version replaces its own registration (its other
//! instances still running may disagree until they restart).
//!
//! Services that know nothing of the stream (Python kafkaesk) keep working:
//! nothing else on the bus changes. The registration is a normal kafkaesk
//! envelope, `{"schema": "KafkaeskSchemaRegistration:1", "data": {...}}`, so a
//! subscription whose pattern matches the stream skips it as a record of
//! another schema.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kafkaesk::Error> {
//! use kafkaesk::settings::SchemaContracts;
//! let app = kafkaesk::Application::builder()
//!     .kafka_servers(["localhost:9092"])
//!     .service_name("order-service")
//!     .schema_contracts(SchemaContracts::Warn)
//!     .with_registry()?
//!     .build()?;
//! app.initialize().await?; // registers, compares, warns
//! for finding in app.schema_findings().await? {
//!     println!("{finding}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Comparing
//!
//! Schema contracts across services: what two registrations of a schema
//! must agree on, and what a new version must keep.
//!
//! Python kafkaesk checks schema conflicts inside one process only. Across
//! services, two teams can publish different shapes under the same
//! `Id:version`, and nobody notices until a consumer fails. Each kafkaesk
//! application therefore registers its schemas on a compacted stream, and
//! compares (the bus side, above).
//! This module holds the comparison, which needs no broker.
//!
//! # What is compared
//!
//! Schemas are compared by the shape of the data on the wire. Before
//! comparing, references into `$defs` are inlined, and what does not change
//! which JSON is valid is dropped: `title`, `description`, `examples`,
//! `default`, `$schema`, `$comment`. Two services that name their types
//! differently, or document them differently, agree. Inlining stops after
//! 8 levels of a recursive type or 20,000 values (a registration is input
//! from anyone who can write the stream); what lies deeper is not compared.
//!
//! - **Conflict:** two services register the same `Id:version` with shapes
//!   that differ. Each difference is named by its path in the schema
//!   (`/properties/quantity/type: "integer" vs "string"`).
//! - **Incompatible version:** a version that breaks a reader of the
//!   version before it, or that its own readers cannot read the version
//!   before with. Versions of one schema share streams, and producers and
//!   consumers are deployed in any order, so both directions count (what
//!   the Confluent registry calls *full* compatibility). Checked for every
//!   property, through nested objects and array items:
//!   - a required property removed (old readers need it);
//!   - a required property made optional (old readers need it);
//!   - a property that is new and required, or was optional and is now
//!     required (messages of the old version lack it);
//!   - a property whose `type` changed, widened or narrowed (one side
//!     cannot read what the other writes; `Option` adds `null`).
//!
//!   Adding or removing optional properties is compatible. Other keywords
//!   (`enum`, formats, bounds) are not checked: a conflict still catches
//!   them within one version.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::error::SchemaFinding;

/// The stream registrations are published to, under the topic prefix.
pub const SCHEMAS_STREAM: &str = "kafkaesk.schemas";

/// The schema id of a registration's envelope.
pub const REGISTRATION_SCHEMA_ID: &str = "KafkaeskSchemaRegistration";

/// How many differences a conflict names at most.
const MAX_DIFFERENCES: usize = 10;

/// One service's registration of one schema version, as published on the
/// schemas stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The schema id (`Order`).
    pub id: String,
    /// Its version.
    pub version: u32,
    /// The JSON Schema of the envelope's `data`.
    pub schema: Value,
    /// The service that registered it.
    pub service: String,
    /// The host it ran on when it registered.
    pub host: String,
}

impl Registration {
    /// `Id:version`, as in the envelope.
    pub fn schema_key(&self) -> String {
        format!("{}:{}", self.id, self.version)
    }

    /// The record key on the compacted stream: one record per schema
    /// version and service, so each service's latest registration is kept.
    pub fn record_key(&self) -> String {
        format!("{}:{}@{}", self.id, self.version, self.service)
    }
}

/// Every finding among `registrations`: conflicts between services, and
/// each version against the version before it.
pub fn check(registrations: &[Registration]) -> Vec<SchemaFinding> {
    findings(registrations, |_| true)
}

/// The findings that involve one of `ours`, against `others` (the
/// registrations already on the bus; those of our own service are left
/// out, since ours replace them).
pub fn check_against(ours: &[Registration], others: &[Registration]) -> Vec<SchemaFinding> {
    let services: BTreeSet<&str> = ours.iter().map(|r| r.service.as_str()).collect();
    // Only the registrations of our ids can make a finding of ours: the
    // others are left alone, however many the stream holds.
    let ids: BTreeSet<&str> = ours.iter().map(|r| r.id.as_str()).collect();
    let mut all: Vec<Registration> = others
        .iter()
        .filter(|r| !services.contains(r.service.as_str()) && ids.contains(r.id.as_str()))
        .cloned()
        .collect();
    all.extend(ours.iter().cloned());
    findings(&all, |service| services.contains(service))
}

/// A registration with its normalized shape.
type Shaped<'a> = (&'a Registration, Value);

/// The findings among `registrations` that involve a service `involved` accepts.
fn findings(registrations: &[Registration], involved: impl Fn(&str) -> bool) -> Vec<SchemaFinding> {
    let mut by_id: BTreeMap<&str, BTreeMap<u32, Vec<Shaped<'_>>>> = BTreeMap::new();
    // One budget for the whole check, besides each schema's own: many
    // registrations each within its bound could still add up.
    let mut total = MAX_CHECK_NODES;
    for registration in registrations {
        let shape = normalize_within(&registration.schema, &mut total);
        by_id
            .entry(&registration.id)
            .or_default()
            .entry(registration.version)
            .or_default()
            .push((registration, shape));
    }
    let mut found = Vec::new();
    for (id, versions) in &by_id {
        for registered in versions.values() {
            for (i, (a, shape_a)) in registered.iter().enumerate() {
                for (b, shape_b) in &registered[i + 1..] {
                    if a.service == b.service || !(involved(&a.service) || involved(&b.service)) {
                        continue;
                    }
                    let differences = differences(shape_a, shape_b);
                    if !differences.is_empty() {
                        found.push(SchemaFinding::Conflict {
                            schema: a.schema_key(),
                            services: (a.service.clone(), b.service.clone()),
                            differences,
                        });
                    }
                }
            }
        }
        let ordered: Vec<_> = versions.iter().collect();
        for pair in ordered.windows(2) {
            let ((&from, before), (&to, after)) = (pair[0], pair[1]);
            let before_involved = before.iter().any(|(r, _)| involved(&r.service));
            for (registration, new) in after {
                if !(before_involved || involved(&registration.service)) {
                    continue;
                }
                // Against every shape of the version before (they agree
                // unless there is a conflict, which is reported already).
                let Some((_, old)) = before.first() else {
                    continue;
                };
                let problems = incompatibilities(old, new);
                if !problems.is_empty() {
                    found.push(SchemaFinding::Incompatible {
                        id: (*id).to_owned(),
                        from,
                        to,
                        service: registration.service.clone(),
                        problems,
                    });
                }
            }
        }
    }
    found
}

/// Keywords that do not change which JSON a schema accepts.
const ANNOTATIONS: [&str; 6] = [
    "title",
    "description",
    "examples",
    "default",
    "$schema",
    "$comment",
];

/// How many JSON values inlining may produce for one schema. A schema read
/// from the bus can reference itself from every property, so unbounded
/// inlining grows exponentially (a 547-byte registration reached 23 GB);
/// the schemas of real types stay far below this.
const MAX_SHAPE_NODES: usize = 20_000;

/// How many JSON values inlining may produce for all the schemas of one
/// check together.
const MAX_CHECK_NODES: usize = 1_000_000;

/// Bytes of a string or key that count as one more value against the
/// budgets: a long string is copied at each inlining too.
const BYTES_PER_NODE: usize = 64;

/// How many levels deep a recursive type is inlined.
const MAX_INLINE_DEPTH: usize = 8;

/// What a reference past the bounds becomes.
const NOT_INLINED: &str = "(not inlined)";

/// The schema's shape: `$ref`s into `$defs` inlined, annotations dropped.
///
/// Inlining is bounded: past `MAX_SHAPE_NODES` values (or
/// `MAX_INLINE_DEPTH` levels of a recursive type), a `$ref` becomes
/// `{"$ref": "(not inlined)"}`, so a hostile schema costs bounded time and
/// memory, and what lies below that point is not compared.
pub fn normalize(schema: &Value) -> Value {
    let mut unbounded = usize::MAX;
    normalize_within(schema, &mut unbounded)
}

/// [`normalize`], also spending what it inlines from `total`, a budget
/// shared with other schemas.
fn normalize_within(schema: &Value, total: &mut usize) -> Value {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .unwrap_or(&Value::Null);
    let mut budget = MAX_SHAPE_NODES.min(*total);
    let before = budget;
    let shape = inline(schema, defs, 0, &mut budget);
    *total = total.saturating_sub(before - budget);
    shape
}

fn inline(value: &Value, defs: &Value, depth: usize, budget: &mut usize) -> Value {
    let bytes = match value {
        Value::String(text) => text.len(),
        Value::Object(map) => map.keys().map(String::len).sum(),
        _ => 0,
    };
    *budget = budget.saturating_sub(1 + bytes / BYTES_PER_NODE);
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let name = reference
                    .strip_prefix("#/$defs/")
                    .or_else(|| reference.strip_prefix("#/definitions/"));
                if let Some(target) = name.and_then(|n| defs.get(n)) {
                    if depth < MAX_INLINE_DEPTH && *budget > 0 {
                        return inline(target, defs, depth + 1, budget);
                    }
                    // Past the bound, without the name: two services that
                    // name one recursive type differently still agree.
                    // Two values: the object and its string.
                    *budget = budget.saturating_sub(1);
                    return serde_json::json!({ "$ref": NOT_INLINED });
                }
            }
            let mut out = Map::new();
            for (key, value) in map {
                if ANNOTATIONS.contains(&key.as_str()) || key == "$defs" || key == "definitions" {
                    continue;
                }
                out.insert(key.clone(), inline(value, defs, depth, budget));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| inline(v, defs, depth, budget))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Where two normalized schemas differ, by path, at most ten.
pub fn differences(a: &Value, b: &Value) -> Vec<String> {
    let mut found = Vec::new();
    diff(a, b, String::new(), &mut found);
    found
}

fn diff(a: &Value, b: &Value, path: String, found: &mut Vec<String>) {
    if found.len() >= MAX_DIFFERENCES || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let here = format!("{path}/{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(x, y, here, found),
                    (Some(_), None) => found.push(format!("{here} only in the first")),
                    (None, Some(_)) => found.push(format!("{here} only in the second")),
                    (None, None) => {}
                }
                if found.len() >= MAX_DIFFERENCES {
                    return;
                }
            }
        }
        _ => found.push(format!(
            "{}: {} vs {}",
            if path.is_empty() { "/" } else { &path },
            shown(a),
            shown(b)
        )),
    }
}

/// A schema value as a finding quotes it: at most [`MAX_SHOWN`] characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(MAX_SHOWN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// How many characters of a differing value a finding quotes.
const MAX_SHOWN: usize = 120;

/// What breaks between an old and a new normalized schema (see the module docs).
pub fn incompatibilities(old: &Value, new: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    compare(old, new, "", &mut problems);
    problems
}

fn compare(old: &Value, new: &Value, path: &str, problems: &mut Vec<String>) {
    let (old_types, new_types) = (types(old), types(new));
    if old_types != new_types && !old_types.is_empty() && !new_types.is_empty() {
        problems.push(format!(
            "`{}` changed type from {} to {}",
            if path.is_empty() { "data" } else { path },
            show(&old_types),
            show(&new_types)
        ));
        return;
    }
    if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
        compare(old_items, new_items, &format!("{path}[]"), problems);
    }
    let (Some(old_props), Some(new_props)) = (properties(old), properties(new)) else {
        return;
    };
    let (old_required, new_required) = (required(old), required(new));
    let field = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    for (name, old_prop) in old_props {
        let was_required = old_required.contains(name.as_str());
        match new_props.get(name) {
            None if was_required => problems.push(format!(
                "required `{}` was removed (readers of the old version need it)",
                field(name)
            )),
            None => {}
            Some(new_prop) => {
                let is_required = new_required.contains(name.as_str());
                if was_required && !is_required {
                    problems.push(format!(
                        "`{}` is no longer required (readers of the old version need it)",
                        field(name)
                    ));
                } else if !was_required && is_required {
                    problems.push(format!(
                        "`{}` is now required (messages of the old version may lack it)",
                        field(name)
                    ));
                }
                compare(old_prop, new_prop, &field(name), problems);
            }
        }
    }
    for name in new_required {
        if !old_props.contains_key(name) {
            problems.push(format!(
                "`{}` is new and required (messages of the old version lack it)",
                field(name)
            ));
        }
    }
}

fn types(schema: &Value) -> BTreeSet<String> {
    match schema.get("type") {
        Some(Value::String(t)) => BTreeSet::from([t.clone()]),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn show(types: &BTreeSet<String>) -> String {
    types.iter().cloned().collect::<Vec<_>>().join(" or ")
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn required(schema: &Value) -> BTreeSet<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
