//! schemars' JSON Schemas (draft 2020-12) rewritten for a document in the
//! draft-07 dialect, such as an AsyncAPI 3.0 payload (an AsyncAPI Schema
//! Object is a superset of JSON Schema draft-07).
//!
//! A schema embedded in a larger document cannot keep its own `$defs`: its
//! `#/$defs/Name` references would resolve against the root of the host
//! document. The definitions are lifted out, to be stored where the caller
//! says (`#/components/schemas/...`), and every reference is re-pointed.
//! The 2020-12 keywords schemars writes that draft-07 spells differently are
//! translated, so a draft-07 reader checks the same rules: `prefixItems`
//! (tuples) becomes `items` with `additionalItems`, `dependentRequired` and
//! `dependentSchemas` become `dependencies`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A schema taken apart: its root and its definitions, by their name in `$defs`,
/// both still in 2020-12.
pub(crate) struct Parts {
    pub(crate) root: Value,
    pub(crate) defs: BTreeMap<String, Value>,
}

/// Splits a schemars schema into its root (without `$schema`, `$id` and
/// `$defs`) and its definitions.
pub(crate) fn split(schema: &Value) -> Parts {
    let mut root = schema.clone();
    let mut defs = BTreeMap::new();
    if let Value::Object(object) = &mut root {
        object.remove("$schema");
        object.remove("$id");
        if let Some(Value::Object(found)) = object.remove("$defs") {
            defs.extend(found);
        }
    }
    Parts { root, defs }
}

/// The names of the definitions that a schema refers to with `#/$defs/Name`.
pub(crate) fn def_refs(schema: &Value) -> Vec<String> {
    let mut names = Vec::new();
    visit_refs(schema, &mut |reference| {
        if let Some(name) = def_name(reference) {
            names.push(name);
        }
    });
    names.sort();
    names.dedup();
    names
}

/// Whether a schema refers to the root of the schema it came from (`#`),
/// as recursive types do.
pub(crate) fn refers_to_root(schema: &Value) -> bool {
    let mut found = false;
    visit_refs(schema, &mut |reference| found |= reference == "#");
    found
}

/// `schema` (a root or a definition from [`split`]) in draft-07, with
/// `#/$defs/Name` re-pointed to `def_ref(Name)` and `#` (the root, in
/// recursive types) to `root_ref`.
pub(crate) fn convert(schema: &Value, root_ref: &str, def_ref: &dyn Fn(&str) -> String) -> Value {
    let mut out = schema.clone();
    rewrite(&mut out, root_ref, def_ref);
    out
}

/// The definition's name in a `#/$defs/Name` reference, JSON-pointer unescaped.
fn def_name(reference: &str) -> Option<String> {
    let name = reference.strip_prefix("#/$defs/")?;
    Some(name.replace("~1", "/").replace("~0", "~"))
}

/// Where a keyword's value holds schemas.
enum Slot {
    /// One schema (or, for draft-07 tuples' `items`, a list).
    One,
    /// A list of schemas.
    List,
    /// A map of names to schemas.
    Map,
}

/// The slot of a keyword; `None` for keywords that hold data (`const`,
/// `enum`, `default`, `examples`), whose keys may look like keywords.
fn slot(keyword: &str) -> Option<Slot> {
    match keyword {
        "items"
        | "additionalItems"
        | "additionalProperties"
        | "unevaluatedItems"
        | "unevaluatedProperties"
        | "not"
        | "if"
        | "then"
        | "else"
        | "contains"
        | "propertyNames"
        | "contentSchema" => Some(Slot::One),
        "allOf" | "anyOf" | "oneOf" | "prefixItems" => Some(Slot::List),
        "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
            Some(Slot::Map)
        }
        _ => None,
    }
}

fn visit_refs(schema: &Value, f: &mut dyn FnMut(&str)) {
    let Value::Object(object) = schema else {
        return;
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        f(reference);
    }
    for (key, value) in object {
        match (slot(key), value) {
            (Some(Slot::One | Slot::List), Value::Array(list)) => {
                list.iter().for_each(|sub| visit_refs(sub, f))
            }
            (Some(Slot::One), sub) => visit_refs(sub, f),
            (Some(Slot::Map), Value::Object(map)) => {
                map.values().for_each(|sub| visit_refs(sub, f))
            }
            _ => {}
        }
    }
}

fn rewrite(schema: &mut Value, root_ref: &str, def_ref: &dyn Fn(&str) -> String) {
    let Value::Object(object) = schema else {
        return;
    };
    for (key, value) in object.iter_mut() {
        match (slot(key), value) {
            (Some(Slot::One | Slot::List), Value::Array(list)) => list
                .iter_mut()
                .for_each(|sub| rewrite(sub, root_ref, def_ref)),
            (Some(Slot::One), sub) => rewrite(sub, root_ref, def_ref),
            (Some(Slot::Map), Value::Object(map)) => map
                .values_mut()
                .for_each(|sub| rewrite(sub, root_ref, def_ref)),
            _ => {}
        }
    }
    if let Some(Value::String(reference)) = object.get_mut("$ref") {
        if reference == "#" {
            *reference = root_ref.to_owned();
        } else if let Some(name) = def_name(reference) {
            *reference = def_ref(&name);
        }
    }
    translate_keywords(object);
}

/// The 2020-12 keywords that draft-07 spells differently.
fn translate_keywords(object: &mut Map<String, Value>) {
    if let Some(prefix) = object.remove("prefixItems") {
        // After a tuple's items, 2020-12's `items` is draft-07's `additionalItems`.
        if let Some(rest) = object.remove("items") {
            object.insert("additionalItems".to_owned(), rest);
        }
        object.insert("items".to_owned(), prefix);
    }
    let mut dependencies = Map::new();
    for keyword in ["dependentRequired", "dependentSchemas"] {
        if let Some(Value::Object(map)) = object.remove(keyword) {
            dependencies.extend(map);
        }
    }
    if !dependencies.is_empty() {
        object.insert("dependencies".to_owned(), Value::Object(dependencies));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_are_lifted_and_refs_repointed() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Tree",
            "type": "object",
            "properties": {
                "leaf": {"$ref": "#/$defs/Leaf"},
                "children": {"type": "array", "items": {"$ref": "#"}},
                "$ref": {"const": {"$ref": "#/$defs/Leaf"}}
            },
            "$defs": {"Leaf": {"type": "object", "properties": {"up": {"$ref": "#"}}}}
        });
        let parts = split(&schema);
        assert_eq!(parts.root.get("$schema"), None);
        assert_eq!(parts.root.get("$defs"), None);
        assert_eq!(def_refs(&parts.root), ["Leaf"]);
        let def_ref = |name: &str| format!("#/components/schemas/T.{name}");
        let root = convert(&parts.root, "#/components/schemas/T", &def_ref);
        assert_eq!(
            root["properties"]["leaf"]["$ref"],
            "#/components/schemas/T.Leaf"
        );
        assert_eq!(
            root["properties"]["children"]["items"]["$ref"],
            "#/components/schemas/T"
        );
        // Data that looks like a reference stays as it is.
        assert_eq!(root["properties"]["$ref"]["const"]["$ref"], "#/$defs/Leaf");
        let leaf = convert(&parts.defs["Leaf"], "#/components/schemas/T", &def_ref);
        assert_eq!(leaf["properties"]["up"]["$ref"], "#/components/schemas/T");
    }

    #[test]
    fn tuples_and_dependencies_use_draft_07_keywords() {
        let schema = json!({
            "type": "array",
            "prefixItems": [{"type": "string"}, {"type": "integer"}],
            "items": false,
            "properties": {"p": {"type": "object", "dependentRequired": {"a": ["b"]}}}
        });
        let out = convert(&schema, "#", &|name| name.to_owned());
        assert_eq!(
            out["items"],
            json!([{"type": "string"}, {"type": "integer"}])
        );
        assert_eq!(out["additionalItems"], json!(false));
        assert_eq!(out.get("prefixItems"), None);
        assert_eq!(out["properties"]["p"]["dependencies"], json!({"a": ["b"]}));
    }
}
