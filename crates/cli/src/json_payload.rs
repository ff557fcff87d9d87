//! An event's payload as JSON, written straight into the export's buffer: a [`serde::Serializer`]
//! that writes what `serde_json` writes for the event's variant content (`{"promise_id":…}`,
//! without the `{"PromiseMade": …}` tag around it), with no second buffer to cut the tag off
//! and without `serde_json`'s escaping loop for strings that need none (names and identifiers).
//!
//! Strings are escaped as `serde_json` does (through it, when they hold anything to escape);
//! floats, byte strings and maps go through `serde_json` (no event has them). The tests of
//! `event_json` compare the whole line with `serde_json`'s for every event type.

use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::event_json::write_json_str;

/// Appends the content of `event`'s variant as JSON (`{}` for a variant without fields).
pub(crate) fn write_payload(out: &mut Vec<u8>, event: &impl Serialize) -> serde_json::Result<()> {
    event.serialize(Root { out })
}

/// The event itself: its variant's tag is left out.
struct Root<'o> {
    out: &'o mut Vec<u8>,
}

/// Any value below the event.
struct Value<'o> {
    out: &'o mut Vec<u8>,
}

/// The fields of a struct or a struct variant, or the elements of a list, being written; `close`
/// is what ends it (`}`, `]`, or `}}` for a variant below the event).
struct Compound<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
    close: &'static [u8],
}

fn through_serde_json(out: &mut Vec<u8>, value: &impl Serialize) -> serde_json::Result<()> {
    serde_json::to_writer(out, value)
}

impl Compound<'_> {
    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> serde_json::Result<()> {
        self.comma();
        write_json_str(self.out, name)?;
        self.out.push(b':');
        value.serialize(Value { out: &mut *self.out })
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        self.comma();
        value.serialize(Value { out: &mut *self.out })
    }

    fn close(self) {
        self.out.extend_from_slice(self.close);
    }
}

/// `{"name":` before a variant's content below the event.
fn open_variant(out: &mut Vec<u8>, variant: &str) -> serde_json::Result<()> {
    out.push(b'{');
    write_json_str(out, variant)?;
    out.push(b':');
    Ok(())
}

macro_rules! integers {
    ($($method:ident: $type:ty),*) => {$(
        fn $method(self, value: $type) -> serde_json::Result<()> {
            self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
            Ok(())
        }
    )*};
}

impl<'o> ser::Serializer for Value<'o> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Compound<'o>;
    type SerializeTuple = Compound<'o>;
    type SerializeTupleStruct = Compound<'o>;
    type SerializeTupleVariant = Compound<'o>;
    type SerializeMap = Impossible<(), serde_json::Error>;
    type SerializeStruct = Compound<'o>;
    type SerializeStructVariant = Compound<'o>;

    integers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);

    fn serialize_bool(self, value: bool) -> serde_json::Result<()> {
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_f32(self, value: f32) -> serde_json::Result<()> {
        through_serde_json(self.out, &value)
    }
    fn serialize_f64(self, value: f64) -> serde_json::Result<()> {
        through_serde_json(self.out, &value)
    }
    fn serialize_char(self, value: char) -> serde_json::Result<()> {
        write_json_str(self.out, value.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, value: &str) -> serde_json::Result<()> {
        write_json_str(self.out, value)
    }
    fn serialize_bytes(self, value: &[u8]) -> serde_json::Result<()> {
        through_serde_json(self.out, &value)
    }
    fn serialize_none(self) -> serde_json::Result<()> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> serde_json::Result<()> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> serde_json::Result<()> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> serde_json::Result<()> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> serde_json::Result<()> {
        write_json_str(self.out, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> serde_json::Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> serde_json::Result<()> {
        open_variant(self.out, variant)?;
        value.serialize(Value { out: &mut *self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _length: Option<usize>) -> serde_json::Result<Compound<'o>> {
        self.out.push(b'[');
        Ok(Compound { out: self.out, first: true, close: b"]" })
    }
    fn serialize_tuple(self, length: usize) -> serde_json::Result<Compound<'o>> {
        self.serialize_seq(Some(length))
    }
    fn serialize_tuple_struct(self, _name: &'static str, length: usize) -> serde_json::Result<Compound<'o>> {
        self.serialize_seq(Some(length))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _length: usize,
    ) -> serde_json::Result<Compound<'o>> {
        open_variant(self.out, variant)?;
        self.out.push(b'[');
        Ok(Compound { out: self.out, first: true, close: b"]}" })
    }
    fn serialize_map(self, _length: Option<usize>) -> serde_json::Result<Self::SerializeMap> {
        Err(ser::Error::custom("maps are not part of any event"))
    }
    fn serialize_struct(self, _name: &'static str, _length: usize) -> serde_json::Result<Compound<'o>> {
        self.out.push(b'{');
        Ok(Compound { out: self.out, first: true, close: b"}" })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _length: usize,
    ) -> serde_json::Result<Compound<'o>> {
        open_variant(self.out, variant)?;
        self.out.push(b'{');
        Ok(Compound { out: self.out, first: true, close: b"}}" })
    }
}

impl<'o> ser::Serializer for Root<'o> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<(), serde_json::Error>;
    type SerializeTuple = Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = Compound<'o>;
    type SerializeMap = Impossible<(), serde_json::Error>;
    type SerializeStruct = Impossible<(), serde_json::Error>;
    type SerializeStructVariant = Compound<'o>;

    fn serialize_bool(self, _value: bool) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_i8(self, _value: i8) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_i16(self, _value: i16) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_i32(self, _value: i32) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_i64(self, _value: i64) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_u8(self, _value: u8) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_u16(self, _value: u16) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_u32(self, _value: u32) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_u64(self, _value: u64) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_f32(self, _value: f32) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_f64(self, _value: f64) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_char(self, _value: char) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_str(self, _value: &str) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_bytes(self, _value: &[u8]) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_none(self) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_unit(self) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> serde_json::Result<()> {
        Err(not_an_event())
    }
    /// A variant without fields: an empty payload.
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> serde_json::Result<()> {
        self.out.extend_from_slice(b"{}");
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> serde_json::Result<()> {
        value.serialize(self)
    }
    /// A variant holding one value: the payload is that value.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &T,
    ) -> serde_json::Result<()> {
        value.serialize(Value { out: self.out })
    }
    fn serialize_seq(self, _length: Option<usize>) -> serde_json::Result<Self::SerializeSeq> {
        Err(not_an_event())
    }
    fn serialize_tuple(self, _length: usize) -> serde_json::Result<Self::SerializeTuple> {
        Err(not_an_event())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _length: usize,
    ) -> serde_json::Result<Self::SerializeTupleStruct> {
        Err(not_an_event())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _length: usize,
    ) -> serde_json::Result<Compound<'o>> {
        self.out.push(b'[');
        Ok(Compound { out: self.out, first: true, close: b"]" })
    }
    fn serialize_map(self, _length: Option<usize>) -> serde_json::Result<Self::SerializeMap> {
        Err(not_an_event())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _length: usize,
    ) -> serde_json::Result<Self::SerializeStruct> {
        Err(not_an_event())
    }
    /// The usual event: its fields are the payload.
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _length: usize,
    ) -> serde_json::Result<Compound<'o>> {
        self.out.push(b'{');
        Ok(Compound { out: self.out, first: true, close: b"}" })
    }
}

fn not_an_event() -> serde_json::Error {
    ser::Error::custom("the payload writer takes an event (an enum)")
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        self.element(value)
    }
    fn end(self) -> serde_json::Result<()> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        self.element(value)
    }
    fn end(self) -> serde_json::Result<()> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        self.element(value)
    }
    fn end(self) -> serde_json::Result<()> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        self.element(value)
    }
    fn end(self) -> serde_json::Result<()> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> serde_json::Result<()> {
        self.field(name, value)
    }
    fn end(self) -> serde_json::Result<()> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> serde_json::Result<()> {
        self.field(name, value)
    }
    fn end(self) -> serde_json::Result<()> {
        self.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Inner {
        amount: i64,
        note: Option<String>,
    }

    #[derive(Serialize)]
    enum Reference {
        Promise(String),
        Pair(u8, u8),
        Nothing,
        Detailed { id: String },
    }

    /// Every shape serde can hand the writer, as an event's variants.
    #[allow(clippy::large_enum_variant)]
    #[derive(Serialize)]
    enum Shapes {
        Empty {},
        Bare,
        One(Inner),
        Tuple(u16, String),
        Full {
            text: String,
            quoted: String,
            flag: bool,
            small: i8,
            big: u64,
            negative: i64,
            character: char,
            missing: Option<u32>,
            present: Option<Reference>,
            pair: Reference,
            nothing: Reference,
            detailed: Reference,
            list: Vec<Inner>,
            tuple: (u8, String),
            unit: (),
            nested: Inner,
        },
    }

    /// What the export wrote before: serde_json's tagged JSON (`{"Variant":…}`, or `"Variant"`)
    /// with the tag cut off.
    fn reference(value: &Shapes) -> Vec<u8> {
        let tagged = serde_json::to_vec(value).unwrap();
        match (tagged.first(), tagged.iter().position(|byte| *byte == b':')) {
            (Some(b'{'), Some(colon)) => tagged[colon + 1..tagged.len() - 1].to_vec(),
            _ => b"{}".to_vec(),
        }
    }

    #[test]
    fn every_shape_is_written_as_serde_json_writes_the_variant_content() {
        let inner = |amount, note: Option<&str>| Inner { amount, note: note.map(str::to_owned) };
        let shapes = [
            Shapes::Empty {},
            Shapes::Bare,
            Shapes::One(inner(-5, Some("x"))),
            Shapes::Tuple(7, "t\"u".into()),
            Shapes::Full {
                text: "plain-id_1".into(),
                quoted: "a \"b\" \\ c\n\u{1}é".into(),
                flag: true,
                small: -128,
                big: u64::MAX,
                negative: i64::MIN,
                character: '"',
                missing: None,
                present: Some(Reference::Promise("p-1".into())),
                pair: Reference::Pair(1, 2),
                nothing: Reference::Nothing,
                detailed: Reference::Detailed { id: "d".into() },
                list: vec![inner(1, None), inner(2, Some("two"))],
                tuple: (3, "three".into()),
                unit: (),
                nested: inner(0, Some("")),
            },
        ];
        for shape in &shapes {
            let mut written = Vec::new();
            write_payload(&mut written, shape).unwrap();
            assert_eq!(String::from_utf8(written).unwrap(), String::from_utf8(reference(shape)).unwrap());
        }
    }
}
