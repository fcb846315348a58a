//! Protobuf wire format to JSON, with or without a schema, so that protobuf bodies are diffed
//! with the same structural JSON diff (and field paths) as JSON bodies.
//!
//! Without a schema a message becomes an object keyed by field number (`"3"`), like
//! `protoc --decode_raw`: varints and fixed64/fixed32 as unsigned numbers, length-delimited
//! records as a nested message, else a string, else bytes (base64), groups as objects. With a
//! [`Descriptors`] type, keys are field names and values take their declared type (signed,
//! zigzag, float, bool, enum names, packed arrays, maps as objects); anything the schema does
//! not cover, or contradicts, falls back to the schema-less reading of that one record.
//!
//! Repeated fields: a field that occurs once is a single value and one that occurs more often
//! is an array (declared `repeated` fields are always arrays). So `$.msg[0].3.1` works for
//! the common singular case. Because the count can differ between two answers, compare two
//! decoded documents only after [`harmonize`], which makes a field an array on both sides
//! where either side has an array, so paths stay the same (`$.3[1]` added, not `$.3` changed
//! from object to array).
//!
//! The wire format is ambiguous without a schema: the bytes of a short string can also parse
//! as a message (`"hi"` is `{13: 105}`). Bytes that are printable UTF-8 text (no control
//! characters but tab, CR, LF) are therefore read as a string first; a real nested message
//! almost always contains a control byte (the tag of fields 1-3, any length below 32).
//!
//! Bounded work: nesting stops at [`MAX_DEPTH`] (deeper records stay strings or bytes), each
//! input byte is parsed at most once per nesting level, and every length is checked against
//! the bytes present before anything is allocated, so no input can panic, overflow the stack
//! or allocate more than a small multiple of its own size.

use super::descriptor::{Descriptors, FieldInfo, FieldType, MessageInfo};
use base64::Engine as _;
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Deepest message nesting decoded; records below it are shown as strings or bytes.
pub const MAX_DEPTH: usize = 64;

/// Largest valid field number (2^29 - 1).
const MAX_FIELD: u64 = (1 << 29) - 1;

/// Why bytes are not a well-formed protobuf message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset (within the message being decoded) where decoding stopped.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one message without a schema: an object keyed by field numbers.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let d = Decoder { desc: None };
    d.message(bytes, None, 0).map(Value::Object)
}

/// Decodes one message of type `type_name` (full name) described in `desc`; falls back to
/// the schema-less reading where the schema does not know the type or a field.
pub fn decode_typed(
    bytes: &[u8],
    desc: &Descriptors,
    type_name: &str,
) -> Result<Value, DecodeError> {
    let d = Decoder { desc: Some(desc) };
    d.message(bytes, desc.message(type_name), 0)
        .map(Value::Object)
}

/// Makes two decoded documents agree on which fields are arrays: where one side has an array
/// and the other a single value under the same key, the single value becomes a one-element
/// array, recursively. Without it a field repeated on one side only would be reported as a
/// type change of the whole field rather than as the added or changed elements.
pub fn harmonize(a: &mut Value, b: &mut Value) {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            for (k, va) in ma.iter_mut() {
                if let Some(vb) = mb.get_mut(k) {
                    match (va.is_array(), vb.is_array()) {
                        (true, false) => wrap(vb),
                        (false, true) => wrap(va),
                        _ => {}
                    }
                    harmonize(va, vb);
                }
            }
        }
        (Value::Array(xa), Value::Array(xb)) => {
            for (va, vb) in xa.iter_mut().zip(xb.iter_mut()) {
                harmonize(va, vb);
            }
        }
        _ => {}
    }
}

fn wrap(v: &mut Value) {
    let single = std::mem::take(v);
    *v = Value::Array(vec![single]);
}

/// A cursor over a byte slice; every read checks bounds first.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            // The tenth byte holds only the 64th bit.
            if i == 9 && b > 1 {
                return Err(self.err("varint longer than 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 64 bits"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(s);
        Ok(u64::from_le_bytes(b))
    }
}

/// Text a person would write: valid UTF-8 with no control characters but tab, CR and LF.
fn looks_like_text(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

fn base64(data: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(data))
}

/// A float as JSON; NaN and infinities (not JSON numbers) as the proto3 JSON strings.
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// A float32 shown with float32 precision (`0.1`, not `0.10000000149011612`).
fn float32(f: f32) -> Value {
    match f.to_string().parse::<f64>() {
        Ok(x) => float(x),
        Err(_) => float(f64::from(f)),
    }
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// One field's decoded occurrences, with its schema when known.
struct Slot<'d> {
    info: Option<&'d FieldInfo>,
    values: Vec<Value>,
}

struct Decoder<'d> {
    desc: Option<&'d Descriptors>,
}

impl<'d> Decoder<'d> {
    fn message(
        &self,
        bytes: &[u8],
        ty: Option<&'d MessageInfo>,
        depth: usize,
    ) -> Result<Map<String, Value>, DecodeError> {
        let mut r = Reader::new(bytes);
        self.fields(&mut r, ty, depth, None)
    }

    fn message_type(&self, f: Option<&'d FieldInfo>) -> Option<&'d MessageInfo> {
        let name = f?.type_name.as_deref()?;
        self.desc?.message(name)
    }

    /// Reads fields until the end of `r`, or until the end-group tag of `group`.
    fn fields(
        &self,
        r: &mut Reader<'_>,
        ty: Option<&'d MessageInfo>,
        depth: usize,
        group: Option<u64>,
    ) -> Result<Map<String, Value>, DecodeError> {
        // Keyed by number so that output order is numeric and a message with many distinct
        // fields costs log n per field, not n.
        let mut slots: BTreeMap<u64, Slot<'d>> = BTreeMap::new();
        loop {
            if r.done() {
                if group.is_some() {
                    return Err(r.err("group not closed"));
                }
                break;
            }
            let tag = r.varint()?;
            let number = tag >> 3;
            let wire = tag & 7;
            if number == 0 || number > MAX_FIELD {
                return Err(r.err("invalid field number"));
            }
            let info = ty.and_then(|t| u32::try_from(number).ok().and_then(|n| t.fields.get(&n)));
            let slot = slots.entry(number).or_insert_with(|| Slot {
                info,
                values: Vec::new(),
            });
            match wire {
                0 => {
                    let v = r.varint()?;
                    slot.values.push(self.varint_value(v, info));
                }
                1 => {
                    let v = r.fixed64()?;
                    slot.values.push(fixed64_value(v, info));
                }
                5 => {
                    let v = r.fixed32()?;
                    slot.values.push(fixed32_value(v, info));
                }
                2 => {
                    let len = r.varint()?;
                    let len = usize::try_from(len).map_err(|_| r.err("length too large"))?;
                    let data = r.take(len)?;
                    self.len_values(data, info, depth, &mut slot.values);
                }
                3 => {
                    if depth >= MAX_DEPTH {
                        return Err(r.err("nesting deeper than the limit"));
                    }
                    let gty = self.message_type(info);
                    let m = self.fields(r, gty, depth + 1, Some(number))?;
                    slot.values.push(Value::Object(m));
                }
                4 => {
                    if group == Some(number) {
                        // An end-group tag records no value; drop the slot it created.
                        if slots.get(&number).is_some_and(|s| s.values.is_empty()) {
                            slots.remove(&number);
                        }
                        break;
                    }
                    return Err(r.err("unexpected end-group tag"));
                }
                _ => return Err(r.err("invalid wire type")),
            }
        }
        let mut out = Map::new();
        for (number, slot) in slots {
            let key = match slot.info {
                Some(f) => f.name.clone(),
                None => number.to_string(),
            };
            out.insert(key, self.shape(slot));
        }
        Ok(out)
    }

    /// A field's occurrences as one JSON value: declared maps as objects, declared repeated
    /// fields as arrays, otherwise single when seen once and an array when repeated.
    fn shape(&self, mut slot: Slot<'d>) -> Value {
        if let Some(f) = slot.info {
            let entry = self.message_type(Some(f)).filter(|m| m.map_entry);
            if let Some(entry) = entry.filter(|_| f.repeated) {
                if let Some(obj) = self.map_object(&slot.values, entry) {
                    return Value::Object(obj);
                }
            }
            if f.repeated {
                return Value::Array(slot.values);
            }
        }
        if slot.values.len() == 1 {
            slot.values.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(slot.values)
        }
    }

    /// Decoded `map<K, V>` entries as one object keyed by `K`; `None` when an entry is not
    /// an object with a scalar key, so the caller keeps the array. proto3 leaves a default
    /// key or value out of an entry; it is filled in, as a protobuf parser would.
    fn map_object(&self, entries: &[Value], entry: &MessageInfo) -> Option<Map<String, Value>> {
        let kf = entry.fields.get(&1)?;
        let vf = entry.fields.get(&2)?;
        let mut out = Map::new();
        for e in entries {
            let e = e.as_object()?;
            let key = match e.get(&kf.name) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(_) => return None,
                None => match self.default_value(kf) {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            };
            let value = e
                .get(&vf.name)
                .cloned()
                .unwrap_or_else(|| self.default_value(vf));
            // Later entries win, as when protobuf parses a map.
            out.insert(key, value);
        }
        Some(out)
    }

    /// The proto3 default of a field, as this decoder would show it.
    fn default_value(&self, f: &FieldInfo) -> Value {
        match f.ty {
            FieldType::Double | FieldType::Float => float(0.0),
            FieldType::Bool => Value::Bool(false),
            FieldType::String | FieldType::Bytes => Value::String(String::new()),
            FieldType::Message | FieldType::Group => Value::Object(Map::new()),
            FieldType::Enum => self.varint_value(0, Some(f)),
            _ => Value::from(0),
        }
    }

    fn varint_value(&self, v: u64, f: Option<&FieldInfo>) -> Value {
        let Some(f) = f else {
            return Value::from(v);
        };
        match f.ty {
            // int32 negatives are sign-extended to 64 bits on the wire.
            FieldType::Int => Value::from(v as i64),
            FieldType::Sint => Value::from(zigzag(v)),
            FieldType::Bool if v <= 1 => Value::Bool(v == 1),
            FieldType::Enum => {
                let n = v as i64 as i32;
                let name = f
                    .type_name
                    .as_deref()
                    .and_then(|t| self.desc?.enum_value(t, n));
                match name {
                    Some(name) => Value::String(name.to_string()),
                    None => Value::from(n),
                }
            }
            _ => Value::from(v),
        }
    }

    /// Appends the value(s) of one length-delimited record: one value, or several for a
    /// packed repeated scalar.
    fn len_values(
        &self,
        data: &[u8],
        f: Option<&'d FieldInfo>,
        depth: usize,
        out: &mut Vec<Value>,
    ) {
        if let Some(f) = f {
            match f.ty {
                FieldType::String => {
                    out.push(Value::String(String::from_utf8_lossy(data).into_owned()));
                    return;
                }
                FieldType::Bytes => {
                    out.push(base64(data));
                    return;
                }
                FieldType::Message | FieldType::Group if depth < MAX_DEPTH => {
                    if let Ok(m) = self.message(data, self.message_type(Some(f)), depth + 1) {
                        out.push(Value::Object(m));
                        return;
                    }
                }
                t if t.packable() && f.repeated => {
                    if let Some(values) = self.packed(data, f) {
                        out.extend(values);
                        return;
                    }
                }
                _ => {}
            }
        }
        out.push(self.untyped_len(data, depth));
    }

    /// A length-delimited record without a schema: text, else a nested message, else a
    /// string with control characters, else bytes.
    fn untyped_len(&self, data: &[u8], depth: usize) -> Value {
        let text = std::str::from_utf8(data).ok();
        if let Some(s) = text.filter(|s| looks_like_text(s)) {
            return Value::String(s.to_string());
        }
        if depth < MAX_DEPTH {
            if let Ok(m) = self.message(data, None, depth + 1) {
                return Value::Object(m);
            }
        }
        match text {
            Some(s) => Value::String(s.to_string()),
            None => base64(data),
        }
    }

    fn packed(&self, data: &[u8], f: &FieldInfo) -> Option<Vec<Value>> {
        let mut r = Reader::new(data);
        let mut out = Vec::new();
        while !r.done() {
            let v = match f.ty {
                FieldType::Double | FieldType::Fixed64 | FieldType::Sfixed64 => {
                    fixed64_value(r.fixed64().ok()?, Some(f))
                }
                FieldType::Float | FieldType::Fixed32 | FieldType::Sfixed32 => {
                    fixed32_value(r.fixed32().ok()?, Some(f))
                }
                _ => self.varint_value(r.varint().ok()?, Some(f)),
            };
            out.push(v);
        }
        Some(out)
    }
}

fn fixed64_value(v: u64, f: Option<&FieldInfo>) -> Value {
    match f.map(|f| f.ty) {
        Some(FieldType::Double) => float(f64::from_bits(v)),
        Some(FieldType::Sfixed64) => Value::from(v as i64),
        _ => Value::from(v),
    }
}

fn fixed32_value(v: u32, f: Option<&FieldInfo>) -> Value {
    match f.map(|f| f.ty) {
        Some(FieldType::Float) => float32(f32::from_bits(v)),
        Some(FieldType::Sfixed32) => Value::from(v as i32),
        _ => Value::from(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::descriptor::tests::sample_set;
    use proptest::prelude::*;
    use prost::Message;
    use serde_json::json;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Address {
        #[prost(string, tag = "1")]
        city: String,
        #[prost(uint32, tag = "2")]
        zip: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct User {
        #[prost(uint64, tag = "1")]
        id: u64,
        #[prost(string, tag = "2")]
        name: String,
        #[prost(message, optional, tag = "3")]
        address: Option<Address>,
        #[prost(string, repeated, tag = "4")]
        tags: Vec<String>,
        #[prost(int32, tag = "5")]
        role: i32,
        #[prost(btree_map = "string, int64", tag = "6")]
        attrs: std::collections::BTreeMap<String, i64>,
        #[prost(double, repeated, tag = "7")]
        scores: Vec<f64>,
        #[prost(sint64, tag = "8")]
        delta: i64,
        #[prost(bool, tag = "9")]
        active: bool,
    }

    /// Every wire type, for the round trip.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Wide {
        #[prost(uint64, tag = "1")]
        v: u64,
        #[prost(fixed64, tag = "2")]
        f64_: u64,
        #[prost(fixed32, tag = "3")]
        f32_: u32,
        #[prost(string, tag = "4")]
        text: String,
        #[prost(message, optional, tag = "5")]
        inner: Option<Address>,
        #[prost(message, repeated, tag = "6")]
        many: Vec<Address>,
        #[prost(bytes = "vec", tag = "7")]
        blob: Vec<u8>,
        #[prost(uint32, tag = "536870911")]
        last: u32,
    }

    fn user() -> User {
        User {
            id: 7,
            name: "Ada".into(),
            address: Some(Address {
                city: "Paris".into(),
                zip: 75001,
            }),
            tags: vec!["a".into(), "b".into()],
            role: 2,
            attrs: [("x".to_string(), -3i64)].into_iter().collect(),
            scores: vec![0.5, -1.25],
            delta: -5,
            active: true,
        }
    }

    #[test]
    fn schema_less_paths_are_field_numbers() {
        let v = decode(&user().encode_to_vec()).unwrap();
        assert_eq!(v["1"], json!(7));
        assert_eq!(v["2"], json!("Ada"));
        assert_eq!(v["3"], json!({"1": "Paris", "2": 75001}));
        assert_eq!(v["4"], json!(["a", "b"]));
        assert_eq!(v["5"], json!(2));
        assert_eq!(v["6"], json!({"1": "x", "2": u64::MAX - 2}));
        // Packed doubles are one record of 16 bytes: bytes without a schema.
        assert!(v["7"].is_string());
        assert_eq!(v["8"], json!(9)); // zigzag(-5)
        assert_eq!(v["9"], json!(1));
    }

    #[test]
    fn typed_decoding_uses_names_and_types() {
        let set = sample_set();
        let d = Descriptors::from_bytes(&set.encode_to_vec()).unwrap();
        let v = decode_typed(&user().encode_to_vec(), &d, "pkg.User").unwrap();
        assert_eq!(
            v,
            json!({
                "id": 7, "name": "Ada", "address": {"city": "Paris", "zip": 75001},
                "tags": ["a", "b"], "role": "ADMIN", "attrs": {"x": -3},
                "scores": [0.5, -1.25], "delta": -5, "active": true
            })
        );
        // Repeated with one element is still an array; unknown enum values stay numbers.
        let mut u = user();
        u.tags = vec!["only".into()];
        u.role = 9;
        let v = decode_typed(&u.encode_to_vec(), &d, ".pkg.User").unwrap();
        assert_eq!(v["tags"], json!(["only"]));
        assert_eq!(v["role"], json!(9));
        // An unknown type decodes schema-less.
        let v = decode_typed(&u.encode_to_vec(), &d, "pkg.Nope").unwrap();
        assert_eq!(v["1"], json!(7));
    }

    #[test]
    fn wire_type_contradicting_the_schema_falls_back() {
        let d = Descriptors::from_bytes(&sample_set().encode_to_vec()).unwrap();
        // Field 1 (`id`, uint64) sent as a string; field 3 (`address`) as a varint.
        let bytes = [0x0a, 0x02, b'h', b'i', 0x18, 0x05];
        let v = decode_typed(&bytes, &d, "pkg.User").unwrap();
        assert_eq!(v, json!({"id": "hi", "address": 5}));
    }

    #[test]
    fn text_beats_a_lucky_message_parse() {
        // "hi" is also the message {13: 105}.
        assert_eq!(
            decode(&[0x12, 0x02, b'h', b'i']).unwrap(),
            json!({"2": "hi"})
        );
        // Control bytes make it a message; invalid UTF-8 that is no message is bytes.
        assert_eq!(
            decode(&[0x12, 0x02, 0x08, 0x01]).unwrap(),
            json!({"2": {"1": 1}})
        );
        assert_eq!(
            decode(&[0x12, 0x02, 0xff, 0xfe]).unwrap(),
            json!({"2": "//4="})
        );
        // An empty record reads as an empty message (what proto3 sends for a set message).
        assert_eq!(decode(&[0x12, 0x00]).unwrap(), json!({"2": {}}));
    }

    #[test]
    fn groups_are_objects() {
        // Field 1 start group, field 2 = 1 inside, field 1 end group; then field 3 = 2.
        let v = decode(&[0x0b, 0x10, 0x01, 0x0c, 0x18, 0x02]).unwrap();
        assert_eq!(v, json!({"1": {"2": 1}, "3": 2}));
        assert!(decode(&[0x0b, 0x10, 0x01]).is_err(), "unclosed");
        assert!(decode(&[0x0c]).is_err(), "stray end");
        assert!(decode(&[0x0b, 0x14]).is_err(), "mismatched end");
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &[0x08][..],      // varint missing
            &[0x0a, 0x05, 1], // length past the end
            &[0x00, 0x01],    // field 0
            &[0x0f, 0x00],    // wire type 7
            &[0x09, 1, 2, 3], // short fixed64
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ], // 65 bits
        ] {
            let e = decode(bad).unwrap_err();
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(
            decode(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).unwrap(),
            json!({"1": u64::MAX})
        );
        assert_eq!(decode(&[]).unwrap(), json!({}));
    }

    #[test]
    fn nesting_is_bounded() {
        // 200 levels of {1: {1: ...}} around a varint: no stack overflow, decoding stops at
        // MAX_DEPTH and the rest stays bytes.
        let mut m = vec![0x08, 0x01];
        for _ in 0..200 {
            let mut outer = vec![0x0a];
            prost::encoding::encode_varint(m.len() as u64, &mut outer);
            outer.extend_from_slice(&m);
            m = outer;
        }
        let v = decode(&m).unwrap();
        let mut depth = 0;
        let mut cur = &v;
        while let Some(next) = cur.get("1") {
            cur = next;
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH + 1);
        assert!(cur.is_string());
    }

    #[test]
    fn harmonize_makes_repeats_agree() {
        let mut a = json!({"msg": [{"3": {"1": "x"}, "4": 1}]});
        let mut b = json!({"msg": [{"3": [{"1": "x"}, {"1": "y"}], "4": 1}]});
        harmonize(&mut a, &mut b);
        assert_eq!(a, json!({"msg": [{"3": [{"1": "x"}], "4": 1}]}));
        let mut out = Vec::new();
        crate::compare::json::diff_json(&a, &b, &Default::default(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].path, "$.msg[0].3[1]");
    }

    #[test]
    fn floats_read_as_written() {
        assert_eq!(float32(0.1), json!(0.1));
        assert_eq!(float(f64::NAN), json!("NaN"));
        assert_eq!(float(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(zigzag(1), -1);
        assert_eq!(zigzag(4), 2);
        assert_eq!(zigzag(u64::MAX), i64::MIN);
    }

    fn printable() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 ,.é漢-]{1,24}"
    }

    fn address() -> impl Strategy<Value = Address> {
        // A non-zero zip puts a control byte (its tag) in every encoded address: without
        // one, "\n" + a length byte that happens to be printable + the city would be valid
        // text and read as a string, the ambiguity the module documents.
        (printable(), 1..=u32::MAX).prop_map(|(city, zip)| Address { city, zip })
    }

    /// What `decode_typed` must make of a `User`: proto3 JSON without the zero values.
    fn user_json(u: &User) -> Value {
        let mut o = Map::new();
        if u.id != 0 {
            o.insert("id".into(), json!(u.id));
        }
        if !u.name.is_empty() {
            o.insert("name".into(), json!(u.name));
        }
        if let Some(a) = &u.address {
            let mut m = Map::new();
            if !a.city.is_empty() {
                m.insert("city".into(), json!(a.city));
            }
            if a.zip != 0 {
                m.insert("zip".into(), json!(a.zip));
            }
            o.insert("address".into(), Value::Object(m));
        }
        if !u.tags.is_empty() {
            o.insert("tags".into(), json!(u.tags));
        }
        match u.role {
            0 => {}
            2 => {
                o.insert("role".into(), json!("ADMIN"));
            }
            r => {
                o.insert("role".into(), json!(r));
            }
        }
        if !u.attrs.is_empty() {
            o.insert("attrs".into(), json!(u.attrs));
        }
        if !u.scores.is_empty() {
            o.insert("scores".into(), json!(u.scores));
        }
        if u.delta != 0 {
            o.insert("delta".into(), json!(u.delta));
        }
        if u.active {
            o.insert("active".into(), json!(true));
        }
        Value::Object(o)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::fuzz_cases(256), ..ProptestConfig::default() })]

        #[test]
        fn prost_round_trip_with_descriptor(
            id in any::<u64>(), name in proptest::option::of(printable()),
            address in proptest::option::of((proptest::option::of(printable()), any::<u32>())),
            tags in proptest::collection::vec("[a-z]{0,5}", 0..4),
            role in prop_oneof![Just(0i32), Just(2), any::<i32>()],
            attrs in proptest::collection::btree_map("[a-z]{0,4}", any::<i64>(), 0..4),
            scores in proptest::collection::vec(-1e12f64..1e12, 0..4),
            delta in any::<i64>(), active in any::<bool>(),
        ) {
            let u = User {
                id, name: name.unwrap_or_default(),
                address: address.map(|(city, zip)| Address { city: city.unwrap_or_default(), zip }),
                tags, role, attrs, scores, delta, active,
            };
            let d = Descriptors::from_bytes(&sample_set().encode_to_vec()).unwrap();
            let got = decode_typed(&u.encode_to_vec(), &d, "pkg.User").unwrap();
            prop_assert_eq!(got, user_json(&u));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let d = Descriptors::from_bytes(&sample_set().encode_to_vec()).unwrap();
            let _ = decode_typed(&bytes, &d, "pkg.User");
        }

        #[test]
        fn prost_round_trip(
            v in any::<u64>(), f64_ in any::<u64>(), f32_ in any::<u32>(),
            text in proptest::option::of(printable()),
            inner in proptest::option::of(address()),
            many in proptest::collection::vec(address(), 0..4),
            blob in proptest::collection::vec(any::<u8>(), 0..32),
            last in any::<u32>(),
        ) {
            // 0x07 (field 0, wire type 7) can never start a message: the blob stays bytes
            // or a string, never a lucky nested message.
            let mut b = vec![0x07];
            b.extend_from_slice(&blob);
            let m = Wide { v, f64_, f32_, text: text.clone().unwrap_or_default(), inner: inner.clone(),
                           many: many.clone(), blob: b.clone(), last };
            let got = decode(&m.encode_to_vec()).unwrap();
            let obj = got.as_object().unwrap();
            // proto3 leaves out zero values, so a zero field must be absent.
            let check = |key: &str, expect: Option<Value>| {
                prop_assert_eq!(obj.get(key).cloned(), expect, "field {}", key);
                Ok(())
            };
            check("1", (v != 0).then(|| json!(v)))?;
            check("2", (f64_ != 0).then(|| json!(f64_)))?;
            check("3", (f32_ != 0).then(|| json!(f32_)))?;
            check("4", text.map(|t| json!(t)))?;
            let addr = |a: &Address| {
                let mut o = Map::new();
                if !a.city.is_empty() { o.insert("1".into(), json!(a.city)); }
                if a.zip != 0 { o.insert("2".into(), json!(a.zip)); }
                Value::Object(o)
            };
            check("5", inner.as_ref().map(addr))?;
            let many_json: Vec<Value> = many.iter().map(addr).collect();
            check("6", match many_json.len() {
                0 => None,
                1 => Some(many_json[0].clone()),
                _ => Some(Value::Array(many_json)),
            })?;
            let blob_json = match std::str::from_utf8(&b) {
                Ok(s) => json!(s),
                Err(_) => base64(&b),
            };
            check("7", Some(blob_json))?;
            check("536870911", (last != 0).then(|| json!(last)))?;
        }
    }
}
