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

use serde::ser::{self, Serialize, Serializer};
use serde_json::{Map, Value};

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

/// A serializer that checks each value against a plan node, then hands it on.
struct Checked<'p, S> {
    inner: S,
    plan: &'p Plan,
    node: usize,
}

/// A nested value to serialize under a plan node, or unchecked (`None`).
struct CheckedValue<'p, 'v, T: ?Sized> {
    value: &'v T,
    plan: &'p Plan,
    node: Option<usize>,
}

impl<T: Serialize + ?Sized> Serialize for CheckedValue<'_, '_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.node {
            Some(node) if !self.plan.is_any(node) => self.value.serialize(Checked {
                inner: serializer,
                plan: self.plan,
                node,
            }),
            _ => self.value.serialize(serializer),
        }
    }
}

fn nested<'p, 'v, T: ?Sized>(
    plan: &'p Plan,
    node: Option<usize>,
    value: &'v T,
) -> CheckedValue<'p, 'v, T> {
    CheckedValue { value, plan, node }
}

impl<'p, S: Serializer> Checked<'p, S> {
    fn check(&self, value: Scalar<'_>) -> Result<(), S::Error> {
        if self.plan.accepts(self.node, value) {
            Ok(())
        } else {
            Err(unsure())
        }
    }

    /// The checks of a compound value, `None` when anything goes.
    fn compound(&self, bit: u8) -> Result<Option<&'p Checks>, S::Error> {
        match self.plan.resolve(self.node, false) {
            Resolved::Any => Ok(None),
            Resolved::Unsure => Err(unsure()),
            Resolved::Checks(checks) if checks.has(bit) => Ok(Some(checks)),
            Resolved::Checks(_) => Err(unsure()),
        }
    }

    /// Checks that an array may come here, then starts it with `start`.
    fn seq<I>(
        self,
        start: impl FnOnce(S) -> Result<I, S::Error>,
    ) -> Result<CheckedSeq<'p, I>, S::Error> {
        let checks = self.compound(types::ARRAY)?;
        Ok(CheckedSeq {
            inner: start(self.inner)?,
            plan: self.plan,
            checks,
            count: 0,
        })
    }

    /// Checks that an object may come here, then starts it with `start`.
    fn object<I>(
        self,
        start: impl FnOnce(S) -> Result<I, S::Error>,
    ) -> Result<CheckedObject<'p, I>, S::Error> {
        let checks = self.compound(types::OBJECT)?;
        Ok(CheckedObject {
            inner: start(self.inner)?,
            plan: self.plan,
            checks,
            seen: 0,
            value_node: None,
        })
    }
}

impl<'p, S: Serializer> Serializer for Checked<'p, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = CheckedSeq<'p, S::SerializeSeq>;
    type SerializeTuple = CheckedSeq<'p, S::SerializeTuple>;
    type SerializeTupleStruct = CheckedSeq<'p, S::SerializeTupleStruct>;
    type SerializeTupleVariant = ser::Impossible<S::Ok, S::Error>;
    type SerializeMap = CheckedObject<'p, S::SerializeMap>;
    type SerializeStruct = CheckedObject<'p, S::SerializeStruct>;
    type SerializeStructVariant = ser::Impossible<S::Ok, S::Error>;

    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Bool)?;
        self.inner.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Int(v.into()))?;
        self.inner.serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Int(v.into()))?;
        self.inner.serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Int(v.into()))?;
        self.inner.serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Int(v.into()))?;
        self.inner.serialize_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        // Beyond 64 bits serde_json::Value cannot hold it; leave it to the full check.
        if i64::try_from(v).is_err() {
            return Err(unsure());
        }
        self.check(Scalar::Int(v))?;
        self.inner.serialize_i128(v)
    }
    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Int(v.into()))?;
        self.inner.serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Int(v.into()))?;
        self.inner.serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Int(v.into()))?;
        self.inner.serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Int(v.into()))?;
        self.inner.serialize_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        let Ok(small) = u64::try_from(v) else {
            return Err(unsure());
        };
        self.check(Scalar::Int(small.into()))?;
        self.inner.serialize_u128(v)
    }
    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Float32(v.into()))?;
        self.inner.serialize_f32(v)
    }
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Float(v))?;
        self.inner.serialize_f64(v)
    }
    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        let mut buf = [0; 4];
        self.check(Scalar::Str(v.encode_utf8(&mut buf)))?;
        self.inner.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Str(v))?;
        self.inner.serialize_str(v)
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<S::Ok, S::Error> {
        Err(unsure())
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Null)?;
        self.inner.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        // serde_json writes `Some(x)` as `x`.
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Null)?;
        self.inner.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Null)?;
        self.inner.serialize_unit_struct(name)
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.check(Scalar::Str(variant))?;
        self.inner.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        // serde_json writes a newtype as its content.
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(unsure())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.seq(|s| s.serialize_seq(len))
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.seq(|s| s.serialize_tuple(len))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.seq(|s| s.serialize_tuple_struct(name, len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        Err(unsure())
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.object(|s| s.serialize_map(len))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.object(|s| s.serialize_struct(name, len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        Err(unsure())
    }
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// An array being serialized: items checked one by one, the count at the end.
struct CheckedSeq<'p, I> {
    inner: I,
    plan: &'p Plan,
    checks: Option<&'p Checks>,
    count: usize,
}

impl<I> CheckedSeq<'_, I> {
    fn item_node(&mut self) -> Option<usize> {
        self.count += 1;
        self.checks.and_then(|c| c.items)
    }

    fn count_fits<E: ser::Error>(&self) -> Result<(), E> {
        let Some(checks) = self.checks else {
            return Ok(());
        };
        let fits = checks.min_items.is_none_or(|min| self.count >= min)
            && checks.max_items.is_none_or(|max| self.count <= max);
        if fits {
            Ok(())
        } else {
            Err(unsure())
        }
    }
}

macro_rules! checked_seq {
    ($trait:ident, $method:ident) => {
        impl<I: ser::$trait> ser::$trait for CheckedSeq<'_, I> {
            type Ok = I::Ok;
            type Error = I::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), I::Error> {
                let node = self.item_node();
                self.inner.$method(&nested(self.plan, node, value))
            }

            fn end(self) -> Result<I::Ok, I::Error> {
                self.count_fits()?;
                self.inner.end()
            }
        }
    };
}

checked_seq!(SerializeSeq, serialize_element);
checked_seq!(SerializeTuple, serialize_element);
checked_seq!(SerializeTupleStruct, serialize_field);

/// An object being serialized: each value checked under its property's
/// schema, required properties counted at the end.
struct CheckedObject<'p, I> {
    inner: I,
    plan: &'p Plan,
    checks: Option<&'p Checks>,
    seen: u64,
    /// The node of the value after the last key written to a map.
    value_node: Option<usize>,
}

impl<I> CheckedObject<'_, I> {
    fn property<E: ser::Error>(&mut self, key: &str) -> Result<Option<usize>, E> {
        match self.checks {
            None => Ok(None),
            Some(checks) => checks.property(key, &mut self.seen).map_err(|()| unsure()),
        }
    }

    fn complete<E: ser::Error>(&self) -> Result<(), E> {
        match self.checks {
            Some(checks) if !checks.all_required(self.seen) => Err(unsure()),
            _ => Ok(()),
        }
    }
}

impl<I: ser::SerializeStruct> ser::SerializeStruct for CheckedObject<'_, I> {
    type Ok = I::Ok;
    type Error = I::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), I::Error> {
        let node = self.property(key)?;
        self.inner
            .serialize_field(key, &nested(self.plan, node, value))
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), I::Error> {
        self.inner.skip_field(key)
    }

    fn end(self) -> Result<I::Ok, I::Error> {
        self.complete()?;
        self.inner.end()
    }
}

impl<I: ser::SerializeMap> ser::SerializeMap for CheckedObject<'_, I> {
    type Ok = I::Ok;
    type Error = I::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), I::Error> {
        if self.checks.is_some() {
            let name = key_name(key).ok_or_else(unsure::<I::Error>)?;
            self.value_node = self.property(&name)?;
        }
        self.inner.serialize_key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), I::Error> {
        let node = self.value_node.take();
        self.inner.serialize_value(&nested(self.plan, node, value))
    }

    fn end(self) -> Result<I::Ok, I::Error> {
        self.complete()?;
        self.inner.end()
    }
}

/// The text of a map key as serde_json writes it: strings and integers;
/// `None` for keys the plan leaves to the full check.
fn key_name<T: Serialize + ?Sized>(key: &T) -> Option<String> {
    match serde_json::to_value(key).ok()? {
        Value::String(name) => Some(name),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use schemars::JsonSchema;
    use serde::Serialize;

    use super::*;

    #[derive(Serialize, JsonSchema, Debug, Clone)]
    struct Inner {
        #[schemars(range(min = -5, max = 5))]
        level: i32,
        label: Option<String>,
    }

    #[derive(Serialize, JsonSchema, Debug, Clone)]
    enum Color {
        Red,
        Green,
        Blue,
    }

    #[derive(Serialize, JsonSchema, Debug, Clone)]
    struct Sample {
        #[schemars(length(min = 2, max = 5))]
        name: String,
        #[schemars(range(min = 1.5, max = 100.0))]
        score: f64,
        ratio: f32,
        count: u8,
        big: u64,
        signed: i64,
        tags: Vec<String>,
        #[schemars(length(min = 1, max = 3))]
        few: Vec<i16>,
        inner: Inner,
        maybe_inner: Option<Inner>,
        by_name: BTreeMap<String, Inner>,
        color: Color,
        maybe: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<String>,
        flag: bool,
        letter: char,
        nothing: (),
    }

    fn compiled<T: JsonSchema>() -> (Option<Plan>, jsonschema::Validator) {
        let schema = schemars::schema_for!(T).to_value();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        (Plan::compile(&schema), validator)
    }

    fn inner() -> impl Strategy<Value = Inner> {
        (-8i32..8, proptest::option::of("[a-z]{0,3}"))
            .prop_map(|(level, label)| Inner { level, label })
    }

    fn sample() -> impl Strategy<Value = Sample> {
        let floats = prop_oneof![
            0.0f64..120.0,
            Just(1.5),
            Just(100.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
        ];
        let bigs = prop_oneof![
            0u64..100,
            Just(1u64 << 53),
            Just((1u64 << 53) + 1),
            Just(u64::MAX)
        ];
        (
            (
                "\\PC{0,7}",
                floats,
                any::<f32>(),
                any::<u8>(),
                bigs,
                any::<i64>(),
            ),
            (
                proptest::collection::vec("[a-z]{0,4}", 0..3),
                proptest::collection::vec(any::<i16>(), 0..5),
                inner(),
                proptest::option::of(inner()),
                proptest::collection::btree_map("[a-c]{1,2}", inner(), 0..3),
            ),
            (
                prop_oneof![Just(Color::Red), Just(Color::Green), Just(Color::Blue)],
                proptest::option::of(any::<u16>()),
                proptest::option::of("[a-z]{0,3}"),
                any::<bool>(),
                any::<char>(),
            ),
        )
            .prop_map(
                |(
                    (name, score, ratio, count, big, signed),
                    (tags, few, inner, maybe_inner, by_name),
                    (color, maybe, skipped, flag, letter),
                )| Sample {
                    name,
                    score,
                    ratio,
                    count,
                    big,
                    signed,
                    tags,
                    few,
                    inner,
                    maybe_inner,
                    by_name,
                    color,
                    maybe,
                    skipped,
                    flag,
                    letter,
                    nothing: (),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2000,
            rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// The plan passes exactly what jsonschema passes (except where it is
        /// allowed to be unsure), and writes serde_json's own bytes.
        #[test]
        fn the_plan_agrees_with_jsonschema(data in sample()) {
            let (plan, validator) = compiled::<Sample>();
            let plan = plan.expect("every keyword of Sample's schema is covered");
            let mut out = Vec::new();
            let passed = plan.write(&data, &mut out).is_ok();
            let valid = validator.is_valid(&serde_json::to_value(&data).unwrap());
            prop_assert!(!passed || valid, "the plan passed invalid data: {data:?}");
            let unsure = data.big > 1 << 53 || !data.ratio.is_finite();
            if valid && !unsure {
                prop_assert!(passed, "the plan refused valid data: {data:?}");
            }
            if passed {
                prop_assert_eq!(out, serde_json::to_vec(&data).unwrap());
            }
        }
    }

    #[test]
    fn lengths_count_code_points_whatever_the_bytes() {
        let between = |min, max| Checks {
            min_length: min,
            max_length: max,
            ..Checks::default()
        };
        let fits = |checks: &Checks, s: &str| checks.accepts(Scalar::Str(s));
        // "é" is 2 bytes, "日本" 6, "😀😀" 8: each fewer characters than bytes.
        assert!(!fits(&between(Some(2), None), "é"));
        assert!(fits(&between(Some(2), None), "日本"));
        assert!(fits(&between(None, Some(2)), "日本"));
        assert!(fits(&between(None, Some(2)), "😀😀"));
        assert!(!fits(&between(None, Some(1)), "😀😀"));
        assert!(fits(&between(Some(1), Some(1)), "😀"));
        assert!(!fits(&between(Some(3), Some(5)), "ab"));
        assert!(!fits(&between(Some(3), Some(5)), "abcdef"));
        assert!(fits(&between(Some(3), Some(5)), "aéb"));
    }

    #[test]
    fn unsupported_keywords_leave_the_schema_to_jsonschema() {
        #[derive(Serialize, JsonSchema)]
        struct Pattern {
            #[schemars(regex(pattern = "^a+$"))]
            a: String,
        }
        #[derive(Serialize, JsonSchema)]
        struct Email {
            #[schemars(email)]
            a: String,
        }
        #[derive(Serialize, JsonSchema)]
        #[allow(dead_code)]
        enum WithData {
            A(u8),
            B { x: String },
        }
        #[derive(Serialize, JsonSchema)]
        struct Tuple(u8, String);
        assert!(compiled::<Pattern>().0.is_none());
        assert!(compiled::<Email>().0.is_none());
        assert!(compiled::<WithData>().0.is_none());
        assert!(compiled::<Tuple>().0.is_none());
        assert!(compiled::<Sample>().0.is_some());
    }

    #[test]
    fn recursive_types_compile_and_check() {
        #[derive(Serialize, JsonSchema)]
        struct Tree {
            #[schemars(length(max = 3))]
            name: String,
            children: Vec<Tree>,
        }
        let (plan, _) = compiled::<Tree>();
        let plan = plan.expect("a recursive type is covered");
        let leaf = |name: &str| Tree {
            name: name.into(),
            children: vec![],
        };
        let good = Tree {
            name: "a".into(),
            children: vec![leaf("b"), leaf("c")],
        };
        let bad = Tree {
            name: "a".into(),
            children: vec![leaf("b"), leaf("too long")],
        };
        assert!(plan.write(&good, &mut Vec::new()).is_ok());
        assert!(plan.write(&bad, &mut Vec::new()).is_err());
    }

    #[test]
    fn refs_that_only_point_at_each_other_do_not_loop() {
        let schema = serde_json::json!({
            "$ref": "#/$defs/a",
            "$defs": { "a": { "$ref": "#/$defs/b" }, "b": { "$ref": "#/$defs/a" } }
        });
        let plan = Plan::compile(&schema).expect("compiles");
        assert!(plan.write(&1, &mut Vec::new()).is_err());
    }
}
