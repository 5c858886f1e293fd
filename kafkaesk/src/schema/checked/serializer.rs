//! The serializer that checks while it writes: it walks the data as serde
//! hands it over, holding each value to the [`Plan`]'s rule for its place,
//! and forwards everything to the real serializer.

use super::{types, unsure, Checks, Plan, Resolved, Scalar};
use serde::ser::{self, Serialize, Serializer};
use serde_json::Value;

/// A serializer that checks each value against a plan node, then hands it on.
pub(super) struct Checked<'p, S> {
    pub(super) inner: S,
    pub(super) plan: &'p Plan,
    pub(super) node: usize,
}

/// A nested value to serialize under a plan node, or unchecked (`None`).
pub(super) struct CheckedValue<'p, 'v, T: ?Sized> {
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
pub(super) struct CheckedSeq<'p, I> {
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
pub(super) struct CheckedObject<'p, I> {
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
