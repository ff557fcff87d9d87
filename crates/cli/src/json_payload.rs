//! An event's payload as JSON, written straight into the export's buffer: a [`serde::Serializer`]
//! that writes what `serde_json` writes for the event's variant content (`{"promise_id":…}`,
//! without the `{"PromiseMade": …}` tag around it), with no second buffer to cut the tag off
//! and without `serde_json`'s escaping loop for strings that need none (names and identifiers).
//!
//! Strings are escaped as `serde_json` does (through it, when they hold anything to escape);
//! floats and byte strings go through `serde_json`; maps are refused (no event has one). The
//! tests compare every serde shape with `serde_json`, and `event_json`'s every event type.

use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::event_json::write_json_str;

/// Appends the content of `event`'s variant as JSON (`{}` for a variant without fields).
pub(crate) fn write_payload(out: &mut Vec<u8>, event: &impl Serialize) -> serde_json::Result<()> {
    event.serialize(Json { out, root: true })
}

/// Writes one value into `out`.
struct Json<'o> {
    out: &'o mut Vec<u8>,
    /// True for the event itself, whose variant's tag is left out.
    root: bool,
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
        value.serialize(Json { out: &mut *self.out, root: false })
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        self.comma();
        value.serialize(Json { out: &mut *self.out, root: false })
    }

    fn close(self) -> serde_json::Result<()> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl<'o> Json<'o> {
    /// Opens a variant's content: `{"name":` then `open` below the event, `open` alone for the
    /// event itself. Returns what closes it.
    fn open_variant(self, variant: &str, open: u8, close: &'static [u8]) -> serde_json::Result<Compound<'o>> {
        let close = if self.root {
            &close[..1]
        } else {
            self.out.push(b'{');
            write_json_str(self.out, variant)?;
            self.out.push(b':');
            close
        };
        self.out.push(open);
        Ok(Compound { out: self.out, first: true, close })
    }
}

macro_rules! integers {
    ($($method:ident: $type:ty),*) => {$(
        fn $method(self, value: $type) -> serde_json::Result<()> {
            self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
            Ok(())
        }
    )*};
}

impl<'o> ser::Serializer for Json<'o> {
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
    /// Its name; the event itself without fields is an empty payload.
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> serde_json::Result<()> {
        if self.root {
            self.out.extend_from_slice(b"{}");
            Ok(())
        } else {
            write_json_str(self.out, variant)
        }
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> serde_json::Result<()> {
        value.serialize(self)
    }
    /// `{"name":value}`; the event itself holding one value is that value.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> serde_json::Result<()> {
        if self.root {
            return value.serialize(Json { out: self.out, root: false });
        }
        self.out.push(b'{');
        write_json_str(self.out, variant)?;
        self.out.push(b':');
        value.serialize(Json { out: &mut *self.out, root: false })?;
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
        self.open_variant(variant, b'[', b"]}")
    }
    fn serialize_map(self, _length: Option<usize>) -> serde_json::Result<Self::SerializeMap> {
        Err(ser::Error::custom("maps are not part of any event"))
    }
    fn serialize_struct(self, _name: &'static str, _length: usize) -> serde_json::Result<Compound<'o>> {
        self.out.push(b'{');
        Ok(Compound { out: self.out, first: true, close: b"}" })
    }
    /// The usual event: its fields are the payload.
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _length: usize,
    ) -> serde_json::Result<Compound<'o>> {
        self.open_variant(variant, b'{', b"}}")
    }
}

/// The `serde::ser` traits of a compound: each value written by `$write`, then `close`.
macro_rules! compound {
    ($($trait:ident :: $method:ident ($($name:ident: $type:ty,)?) => $write:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = serde_json::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, $($name: $type,)? value: &T) -> serde_json::Result<()> {
                self.$write($($name,)? value)
            }
            fn end(self) -> serde_json::Result<()> {
                self.close()
            }
        }
    )*};
}

compound!(
    SerializeSeq::serialize_element() => element,
    SerializeTuple::serialize_element() => element,
    SerializeTupleStruct::serialize_field() => element,
    SerializeTupleVariant::serialize_field() => element,
    SerializeStruct::serialize_field(name: &'static str,) => field,
    SerializeStructVariant::serialize_field(name: &'static str,) => field
);

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
