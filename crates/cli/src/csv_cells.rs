//! An event's payload as flat CSV cells, straight from serde: a [`serde::Serializer`] that
//! hands each leaf value to a sink with its dotted column name, with no `serde_json::Value`
//! and no map per row in between.
//!
//! The columns are the ones `event_json::flatten` (the tests' reference) gives for the payload of the event's
//! JSON (the tests compare both for every event type): nested objects joined with dots
//! (`payload.amount.currency`, `payload.related_ref.Promise`), a missing value (`None`) an
//! empty cell, an enum without data its variant's name, a list its JSON text, an empty object no
//! column at all.

use std::fmt::Display;

use serde::ser::{self, Serialize};

/// Receives the cells of one payload, in serialisation order.
pub(crate) trait CellSink {
    /// `column` (`payload.…`) holds `value`.
    fn cell(&mut self, column: &str, value: &str);
}

/// Why a payload could not be flattened (serde's custom errors; no event type raises one).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FlattenError(String);

impl ser::Error for FlattenError {
    fn custom<T: Display>(message: T) -> Self {
        FlattenError(message.to_string())
    }
}

impl From<serde_json::Error> for FlattenError {
    fn from(error: serde_json::Error) -> Self {
        FlattenError(error.to_string())
    }
}

/// Flattens `event` (an `Event` or an `EventView`: externally tagged, so its variant's name is
/// left out and its fields come directly under `payload`) into `sink`. `path` is reused.
pub(crate) fn flatten_payload(
    event: &impl Serialize,
    path: &mut String,
    sink: &mut impl CellSink,
) -> Result<(), FlattenError> {
    path.clear();
    path.push_str("payload");
    event.serialize(&mut Flattener { path, sink, root: true })
}

/// Flattens any value (not an event: a variant's name is kept) under the column `value`.
pub(crate) fn flatten_value(
    value: &impl Serialize,
    path: &mut String,
    sink: &mut impl CellSink,
) -> Result<(), FlattenError> {
    path.clear();
    path.push_str("value");
    value.serialize(&mut Flattener { path, sink, root: false })
}

struct Flattener<'p, S> {
    /// The column of the value being serialised.
    path: &'p mut String,
    sink: &'p mut S,
    /// True for the event itself, whose variant's name is not a column segment.
    root: bool,
}

impl<S: CellSink> Flattener<'_, S> {
    fn leaf(&mut self, value: &str) -> Result<(), FlattenError> {
        self.sink.cell(self.path, value);
        Ok(())
    }

    /// Serialises `value` one segment further down (`path.segment`), then returns to `path`.
    fn nested<T: Serialize + ?Sized>(&mut self, segment: &str, value: &T) -> Result<(), FlattenError> {
        let length = self.path.len();
        self.path.push('.');
        self.path.push_str(segment);
        let result =
            value.serialize(&mut Flattener { path: &mut *self.path, sink: &mut *self.sink, root: false });
        self.path.truncate(length);
        result
    }

    /// A value flattened as its JSON would be (lists, maps: rare shapes, no event has a map).
    fn through_json(&mut self, value: serde_json::Value) {
        let prefix = self.path.clone();
        flatten_json(&prefix, &value, self.sink);
    }

    fn number(&mut self, value: impl itoa::Integer) -> Result<(), FlattenError> {
        self.leaf(itoa::Buffer::new().format(value))
    }
}

/// `event_json::flatten`'s rule on a JSON value.
fn flatten_json(prefix: &str, value: &serde_json::Value, sink: &mut impl CellSink) {
    use serde_json::Value;
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                flatten_json(&format!("{prefix}.{name}"), field, sink);
            }
        }
        Value::Null => sink.cell(prefix, ""),
        Value::String(text) => sink.cell(prefix, text),
        Value::Bool(flag) => sink.cell(prefix, if *flag { "true" } else { "false" }),
        Value::Number(number) => sink.cell(prefix, &number.to_string()),
        Value::Array(_) => sink.cell(prefix, &value.to_string()),
    }
}

/// Collects a list's elements as JSON, for a cell holding the list's JSON text.
struct ListCells<'f, 'p, S> {
    flattener: &'f mut Flattener<'p, S>,
    items: Vec<serde_json::Value>,
    /// The variant's name of a tuple variant (`{"Variant": [...]}`).
    variant: Option<&'static str>,
}

impl<S: CellSink> ListCells<'_, '_, S> {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlattenError> {
        self.items.push(serde_json::to_value(value)?);
        Ok(())
    }

    fn finish(self) -> Result<(), FlattenError> {
        let list = serde_json::Value::Array(self.items);
        match self.variant {
            Some(variant) => self.flattener.nested(variant, &list),
            None => self.flattener.leaf(&list.to_string()),
        }
    }
}

/// Collects a map as JSON, then flattens it as its JSON would be.
struct MapCells<'f, 'p, S> {
    flattener: &'f mut Flattener<'p, S>,
    map: serde_json::Map<String, serde_json::Value>,
    key: Option<String>,
}

/// The fields of a struct or struct variant, each one segment further down.
struct FieldCells<'f, 'p, S> {
    flattener: &'f mut Flattener<'p, S>,
    /// The path's length before the variant's segment (struct variants below the root).
    restore: Option<usize>,
}

macro_rules! integer_cells {
    ($($method:ident: $type:ty),*) => {$(
        fn $method(self, value: $type) -> Result<(), FlattenError> {
            self.number(value)
        }
    )*};
}

impl<'f, 'p, S: CellSink> ser::Serializer for &'f mut Flattener<'p, S> {
    type Ok = ();
    type Error = FlattenError;
    type SerializeSeq = ListCells<'f, 'p, S>;
    type SerializeTuple = ListCells<'f, 'p, S>;
    type SerializeTupleStruct = ListCells<'f, 'p, S>;
    type SerializeTupleVariant = ListCells<'f, 'p, S>;
    type SerializeMap = MapCells<'f, 'p, S>;
    type SerializeStruct = FieldCells<'f, 'p, S>;
    type SerializeStructVariant = FieldCells<'f, 'p, S>;

    fn serialize_bool(self, value: bool) -> Result<(), FlattenError> {
        self.leaf(if value { "true" } else { "false" })
    }
    integer_cells!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);

    fn serialize_f32(self, value: f32) -> Result<(), FlattenError> {
        self.through_json(serde_json::to_value(value)?);
        Ok(())
    }
    fn serialize_f64(self, value: f64) -> Result<(), FlattenError> {
        self.through_json(serde_json::to_value(value)?);
        Ok(())
    }
    fn serialize_char(self, value: char) -> Result<(), FlattenError> {
        self.leaf(value.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, value: &str) -> Result<(), FlattenError> {
        self.leaf(value)
    }
    fn serialize_bytes(self, value: &[u8]) -> Result<(), FlattenError> {
        self.through_json(serde_json::to_value(value)?);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), FlattenError> {
        self.leaf("")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), FlattenError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), FlattenError> {
        self.leaf("")
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), FlattenError> {
        self.leaf("")
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), FlattenError> {
        // The event itself as a bare variant has no fields: no column.
        if self.root { Ok(()) } else { self.leaf(variant) }
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), FlattenError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), FlattenError> {
        if self.root {
            self.root = false;
            value.serialize(self)
        } else {
            self.nested(variant, value)
        }
    }
    fn serialize_seq(self, length: Option<usize>) -> Result<Self::SerializeSeq, FlattenError> {
        Ok(ListCells { flattener: self, items: Vec::with_capacity(length.unwrap_or(0)), variant: None })
    }
    fn serialize_tuple(self, length: usize) -> Result<Self::SerializeTuple, FlattenError> {
        self.serialize_seq(Some(length))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        length: usize,
    ) -> Result<Self::SerializeTupleStruct, FlattenError> {
        self.serialize_seq(Some(length))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        length: usize,
    ) -> Result<Self::SerializeTupleVariant, FlattenError> {
        let variant = (!std::mem::take(&mut self.root)).then_some(variant);
        Ok(ListCells { flattener: self, items: Vec::with_capacity(length), variant })
    }
    fn serialize_map(self, _length: Option<usize>) -> Result<Self::SerializeMap, FlattenError> {
        self.root = false;
        Ok(MapCells { flattener: self, map: serde_json::Map::new(), key: None })
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _length: usize,
    ) -> Result<Self::SerializeStruct, FlattenError> {
        self.root = false;
        Ok(FieldCells { flattener: self, restore: None })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _length: usize,
    ) -> Result<Self::SerializeStructVariant, FlattenError> {
        let restore = if std::mem::take(&mut self.root) {
            None
        } else {
            let length = self.path.len();
            self.path.push('.');
            self.path.push_str(variant);
            Some(length)
        };
        Ok(FieldCells { flattener: self, restore })
    }
}

macro_rules! list_cells {
    ($($trait:ident :: $method:ident),*) => {$(
        impl<S: CellSink> ser::$trait for ListCells<'_, '_, S> {
            type Ok = ();
            type Error = FlattenError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlattenError> {
                self.push(value)
            }
            fn end(self) -> Result<(), FlattenError> {
                self.finish()
            }
        }
    )*};
}

list_cells!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<S: CellSink> ser::SerializeMap for MapCells<'_, '_, S> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), FlattenError> {
        self.key = Some(match serde_json::to_value(key)? {
            serde_json::Value::String(key) => key,
            other => other.to_string(),
        });
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlattenError> {
        let key = self.key.take().ok_or_else(|| FlattenError("a map value without its key".into()))?;
        self.map.insert(key, serde_json::to_value(value)?);
        Ok(())
    }
    fn end(self) -> Result<(), FlattenError> {
        self.flattener.through_json(serde_json::Value::Object(self.map));
        Ok(())
    }
}

impl<S: CellSink> FieldCells<'_, '_, S> {
    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<(), FlattenError> {
        self.flattener.nested(name, value)
    }

    fn finish(self) {
        if let Some(length) = self.restore {
            self.flattener.path.truncate(length);
        }
    }
}

impl<S: CellSink> ser::SerializeStruct for FieldCells<'_, '_, S> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), FlattenError> {
        self.field(name, value)
    }
    fn end(self) -> Result<(), FlattenError> {
        self.finish();
        Ok(())
    }
}

impl<S: CellSink> ser::SerializeStructVariant for FieldCells<'_, '_, S> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), FlattenError> {
        self.field(name, value)
    }
    fn end(self) -> Result<(), FlattenError> {
        self.finish();
        Ok(())
    }
}
