//! Validation while serializing: the fast path of [`SchemaInfo::encode`](super::SchemaInfo::encode).
//!
//! Most message schemas use a small part of JSON Schema: types, properties,
//! required fields, items, lengths, ranges, string enums, `$ref` and
//! `Option`'s `anyOf [X, null]`. For those, a [`Plan`] checks the data as
//! serde writes it, in one pass and without building a `serde_json::Value`.
//! A schema that uses anything else (`pattern`, string formats such as
//! `email`, `oneOf`, ...) gets no plan and is validated by the `jsonschema`
//! crate alone.
//!
//! A plan only ever passes data that `jsonschema` would pass. Where it cannot
//! tell cheaply (a float against `"type": "integer"`, a number beyond 2^53
//! against a bound, bytes, enum variants with data) it fails, and the caller
//! validates the slow way, which also builds the detailed error report. A
//! needless failure costs time, never correctness; the differential tests
//! below hold the plan to that.

use std::collections::HashMap;

use serde::ser::{self, Serialize};
use serde_json::{Map, Value};

mod serializer;

use serializer::Checked;

/// Keywords that annotate and never reject.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Formats schemars writes for numbers. They are not JSON Schema formats, so
/// `jsonschema` ignores them, and so does the plan.
const NUMERIC_FORMATS: &[&str] = &[
    "int8", "int16", "int32", "int64", "int", "uint8", "uint16", "uint32", "uint64", "uint",
    "float", "double",
];

/// Integers up to this magnitude convert to `f64` exactly.
const EXACT_IN_F64: u128 = 1 << 53;

mod types {
    pub(super) const NULL: u8 = 1;
    pub(super) const BOOLEAN: u8 = 2;
    pub(super) const INTEGER: u8 = 4;
    pub(super) const NUMBER: u8 = 8;
    pub(super) const STRING: u8 = 16;
    pub(super) const ARRAY: u8 = 32;
    pub(super) const OBJECT: u8 = 64;
    pub(super) const ALL: u8 = 127;
}

/// A JSON Schema compiled for checking data while it is serialized.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Node 0 is the root schema.
    nodes: Vec<Rule>,
}

#[derive(Debug)]
enum Rule {
    /// Anything passes (`true` or `{}`).
    Any,
    /// A `$ref` and nothing else: the rule of another node.
    Alias(usize),
    /// `anyOf: [X, {"type": "null"}]`, as schemars writes `Option<X>`.
    Nullable(usize),
    Check(Box<Checks>),
}

#[derive(Debug)]
struct Checks {
    types: u8,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    /// `enum` or `const` whose values are all strings.
    strings: Option<Vec<String>>,
    items: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    /// Name, node, and the bit of the name in `required` if it is required;
    /// sorted by name. See [`Checks::find_property`].
    properties: Vec<(String, usize, Option<u32>)>,
    required: Vec<String>,
    additional: Additional,
}

#[derive(Debug, Clone, Copy)]
enum Additional {
    Any,
    Forbidden,
    Schema(usize),
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            types: types::ALL,
            minimum: None,
            maximum: None,
            exclusive_minimum: None,
            exclusive_maximum: None,
            min_length: None,
            max_length: None,
            strings: None,
            items: None,
            min_items: None,
            max_items: None,
            properties: Vec::new(),
            required: Vec::new(),
            additional: Additional::Any,
        }
    }
}

impl Plan {
    /// Compiles `schema`, or returns `None` if it uses a keyword the plan
    /// does not check.
    pub(crate) fn compile(schema: &Value) -> Option<Plan> {
        let mut compiler = Compiler {
            root: schema,
            nodes: Vec::new(),
            refs: HashMap::new(),
        };
        compiler.node(schema)?;
        Some(Plan {
            nodes: compiler.nodes,
        })
    }

    /// Serializes `data` as JSON into `out` if it passes the plan. On an
    /// error, `out` holds a partial write.
    pub(crate) fn write<T: Serialize + ?Sized>(
        &self,
        data: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error> {
        let mut serializer = serde_json::Serializer::new(out);
        data.serialize(Checked {
            inner: &mut serializer,
            plan: self,
            node: 0,
        })
    }

    /// The rule for a value at `node`, aliases and `Option` followed.
    fn resolve(&self, mut node: usize, is_null: bool) -> Resolved<'_> {
        // Bounded, so a schema whose refs only point at each other cannot loop.
        for _ in 0..64 {
            match self.nodes.get(node) {
                None => return Resolved::Unsure,
                Some(Rule::Any) => return Resolved::Any,
                Some(Rule::Alias(to)) => node = *to,
                Some(Rule::Nullable(_)) if is_null => return Resolved::Any,
                Some(Rule::Nullable(to)) => node = *to,
                Some(Rule::Check(checks)) => return Resolved::Checks(checks),
            }
        }
        Resolved::Unsure
    }

    fn accepts(&self, node: usize, value: Scalar<'_>) -> bool {
        match self.resolve(node, matches!(value, Scalar::Null)) {
            Resolved::Any => true,
            Resolved::Unsure => false,
            Resolved::Checks(checks) => checks.accepts(value),
        }
    }

    fn is_any(&self, node: usize) -> bool {
        // Only a direct `Any`: resolving aliases here would cost more than it saves.
        matches!(self.nodes.get(node), Some(Rule::Any))
    }
}

enum Resolved<'p> {
    Any,
    Unsure,
    Checks(&'p Checks),
}

/// A value that is not an array or an object, as it appears in the JSON.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Null,
    Bool,
    Int(i128),
    Float(f64),
    /// An `f32`: serde_json writes its shortest `f32` form, which may lie on
    /// the other side of a bound than the `f64` that jsonschema compares.
    Float32(f64),
    Str(&'a str),
}

impl Checks {
    fn has(&self, bits: u8) -> bool {
        self.types & bits != 0
    }

    fn accepts(&self, value: Scalar<'_>) -> bool {
        match value {
            Scalar::Null => self.has(types::NULL) && self.strings.is_none(),
            Scalar::Bool => self.has(types::BOOLEAN) && self.strings.is_none(),
            Scalar::Int(v) => {
                if !self.has(types::INTEGER | types::NUMBER) || self.strings.is_some() {
                    return false;
                }
                if !self.has_bounds() {
                    return true;
                }
                v.unsigned_abs() <= EXACT_IN_F64 && self.in_bounds(v as f64)
            }
            Scalar::Float32(_) if self.has_bounds() => false,
            Scalar::Float32(v) => self.accepts(Scalar::Float(v)),
            // serde_json writes NaN and infinities as `null`.
            Scalar::Float(v) if !v.is_finite() => self.accepts(Scalar::Null),
            // A float may still be an integer to jsonschema (`1.0`); not worth deciding here.
            Scalar::Float(v) => {
                self.has(types::NUMBER) && self.strings.is_none() && self.in_bounds(v)
            }
            Scalar::Str(s) => {
                if !self.has(types::STRING) {
                    return false;
                }
                if let Some(allowed) = &self.strings {
                    if !allowed.iter().any(|a| a == s) {
                        return false;
                    }
                }
                self.length_fits(s)
            }
        }
    }

    /// Whether `s` has `minLength` to `maxLength` characters. JSON Schema
    /// counts code points, which lie between a quarter of the bytes and all
    /// of them: the byte length alone mostly decides, without a count.
    fn length_fits(&self, s: &str) -> bool {
        let (fewest, most) = (s.len().div_ceil(4), s.len());
        let surely_long_enough = self.min_length.is_none_or(|min| fewest >= min);
        let surely_short_enough = self.max_length.is_none_or(|max| most <= max);
        if surely_long_enough && surely_short_enough {
            return true;
        }
        if self.min_length.is_some_and(|min| most < min)
            || self.max_length.is_some_and(|max| fewest > max)
        {
            return false;
        }
        let length = s.chars().count();
        self.min_length.is_none_or(|min| length >= min)
            && self.max_length.is_none_or(|max| length <= max)
    }

    fn has_bounds(&self) -> bool {
        self.minimum.is_some()
            || self.maximum.is_some()
            || self.exclusive_minimum.is_some()
            || self.exclusive_maximum.is_some()
    }

    fn in_bounds(&self, v: f64) -> bool {
        self.minimum.is_none_or(|min| v >= min)
            && self.maximum.is_none_or(|max| v <= max)
            && self.exclusive_minimum.is_none_or(|min| v > min)
            && self.exclusive_maximum.is_none_or(|max| v < max)
    }

    /// The node for the value of `key`, or `Err` if the key is not allowed.
    /// Marks required keys in `seen`.
    fn property(&self, key: &str, seen: &mut u64) -> Result<Option<usize>, ()> {
        if let Some((_, node, bit)) = self.find_property(key) {
            if let Some(bit) = bit {
                *seen |= 1 << bit;
            }
            return Ok(Some(*node));
        }
        if let Some(bit) = self.required.iter().position(|name| name == key) {
            *seen |= 1 << bit;
        }
        match self.additional {
            Additional::Any => Ok(None),
            Additional::Forbidden => Err(()),
            Additional::Schema(node) => Ok(Some(node)),
        }
    }

    /// A linear scan for the usual handful of properties, where `==` rejects
    /// most names by their length alone (a binary search's `cmp` compares
    /// bytes at every step, which made encoding 1.6 × slower); a binary
    /// search for many, so large structs do not cost fields × properties.
    fn find_property(&self, key: &str) -> Option<&(String, usize, Option<u32>)> {
        const LINEAR_UP_TO: usize = 16;
        if self.properties.len() <= LINEAR_UP_TO {
            return self.properties.iter().find(|(name, ..)| name == key);
        }
        self.properties
            .binary_search_by(|(name, ..)| name.as_str().cmp(key))
            .ok()
            .map(|i| &self.properties[i])
    }

    fn all_required(&self, seen: u64) -> bool {
        let all = if self.required.len() == 64 {
            u64::MAX
        } else {
            (1u64 << self.required.len()) - 1
        };
        seen & all == all
    }
}

struct Compiler<'s> {
    root: &'s Value,
    nodes: Vec<Rule>,
    refs: HashMap<&'s str, usize>,
}

impl<'s> Compiler<'s> {
    fn node(&mut self, schema: &'s Value) -> Option<usize> {
        let id = self.nodes.len();
        self.nodes.push(Rule::Any);
        self.nodes[id] = self.rule(schema)?;
        Some(id)
    }

    fn reference(&mut self, reference: &'s str) -> Option<usize> {
        if let Some(&id) = self.refs.get(reference) {
            return Some(id);
        }
        // Only plain local JSON pointers; anything else is left to jsonschema.
        let pointer = reference.strip_prefix('#')?;
        if pointer.contains('%') {
            return None;
        }
        let target = self.root.pointer(pointer)?;
        let id = self.nodes.len();
        self.nodes.push(Rule::Any);
        // Registered before compiling the target, so recursive types terminate.
        self.refs.insert(reference, id);
        self.nodes[id] = self.rule(target)?;
        Some(id)
    }

    fn rule(&mut self, schema: &'s Value) -> Option<Rule> {
        let map = match schema {
            Value::Bool(true) => return Some(Rule::Any),
            Value::Object(map) => map,
            _ => return None,
        };
        let assertions = || {
            map.keys().filter(|k| {
                !ANNOTATIONS.contains(&k.as_str()) && !matches!(k.as_str(), "$defs" | "definitions")
            })
        };
        if let Some(reference) = map.get("$ref") {
            if assertions().any(|k| k != "$ref") {
                return None;
            }
            return Some(Rule::Alias(self.reference(reference.as_str()?)?));
        }
        if let Some(any_of) = map.get("anyOf") {
            if assertions().any(|k| k != "anyOf") {
                return None;
            }
            return Some(Rule::Nullable(self.nullable(any_of)?));
        }
        if assertions().next().is_none() {
            return Some(Rule::Any);
        }
        let mut checks = Checks::default();
        for (keyword, value) in map {
            match keyword.as_str() {
                "type" => checks.types = type_bits(value)?,
                "properties" => {
                    for (name, schema) in value.as_object()? {
                        let node = self.node(schema)?;
                        checks.properties.push((name.clone(), node, None));
                    }
                }
                "required" => {
                    checks.required = value
                        .as_array()?
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect::<Option<_>>()?;
                }
                "additionalProperties" => {
                    checks.additional = match value {
                        Value::Bool(true) => Additional::Any,
                        Value::Bool(false) => Additional::Forbidden,
                        schema => Additional::Schema(self.node(schema)?),
                    }
                }
                // Draft 2020-12: one schema for every item (an array would be a tuple).
                "items" if value.is_object() || value.is_boolean() => {
                    checks.items = Some(self.node(value)?)
                }
                "minItems" => checks.min_items = Some(count(value)?),
                "maxItems" => checks.max_items = Some(count(value)?),
                "minLength" => checks.min_length = Some(count(value)?),
                "maxLength" => checks.max_length = Some(count(value)?),
                "minimum" => checks.minimum = Some(bound(value)?),
                "maximum" => checks.maximum = Some(bound(value)?),
                "exclusiveMinimum" => checks.exclusive_minimum = Some(bound(value)?),
                "exclusiveMaximum" => checks.exclusive_maximum = Some(bound(value)?),
                "enum" => checks.strings = Some(strings(value.as_array()?)?),
                "const" => checks.strings = Some(vec![value.as_str()?.to_owned()]),
                "format" if NUMERIC_FORMATS.contains(&value.as_str()?) => {}
                "$defs" | "definitions" => {}
                annotation if ANNOTATIONS.contains(&annotation) => {}
                _ => return None,
            }
        }
        if checks.required.len() > 64 {
            return None;
        }
        checks.properties.sort_by(|a, b| a.0.cmp(&b.0));
        let required = &checks.required;
        for (name, _, bit) in &mut checks.properties {
            *bit = required
                .iter()
                .position(|r| r == name)
                .and_then(|i| u32::try_from(i).ok());
        }
        Some(Rule::Check(Box::new(checks)))
    }

    /// The `X` of `anyOf: [X, {"type": "null"}]`, in either order.
    fn nullable(&mut self, any_of: &'s Value) -> Option<usize> {
        let is_null = |v: &Value| {
            v.as_object().is_some_and(|m: &Map<String, Value>| {
                m.get("type").and_then(Value::as_str) == Some("null")
                    && m.keys()
                        .all(|k| k == "type" || ANNOTATIONS.contains(&k.as_str()))
            })
        };
        match any_of.as_array()?.as_slice() {
            [x, null] | [null, x] if is_null(null) => self.node(x),
            _ => None,
        }
    }
}

fn type_bits(value: &Value) -> Option<u8> {
    let bit = |name: &str| {
        Some(match name {
            "null" => types::NULL,
            "boolean" => types::BOOLEAN,
            "integer" => types::INTEGER,
            "number" => types::NUMBER,
            "string" => types::STRING,
            "array" => types::ARRAY,
            "object" => types::OBJECT,
            _ => return None,
        })
    };
    match value {
        Value::String(name) => bit(name),
        Value::Array(names) => names
            .iter()
            .try_fold(0, |bits, name| Some(bits | bit(name.as_str()?)?)),
        _ => None,
    }
}

fn count(value: &Value) -> Option<usize> {
    usize::try_from(value.as_u64()?).ok()
}

/// A numeric bound, if `f64` holds it exactly.
fn bound(value: &Value) -> Option<f64> {
    let number = value.as_number()?;
    if let Some(i) = number.as_i64() {
        return (i.unsigned_abs() as u128 <= EXACT_IN_F64).then_some(i as f64);
    }
    if let Some(u) = number.as_u64() {
        return (u as u128 <= EXACT_IN_F64).then_some(u as f64);
    }
    number.as_f64()
}

fn strings(values: &[Value]) -> Option<Vec<String>> {
    values
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn unsure<E: ser::Error>() -> E {
    E::custom("the data needs the full JSON Schema check")
}

#[cfg(test)]
mod tests;
