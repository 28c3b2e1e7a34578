//! A struct serialized in parts, its fields routed by name, written straight into buffers as
//! `serde_json` would write the whole, with no `Value` between: a snapshot as the part that
//! seldom or never changes and the rest (rewritten with every change); an adjacently tagged
//! event as its content alone.

use serde::ser::{self, Impossible, Serialize, SerializeMap, SerializeStruct, Serializer};

/// `value` (a struct) as `(fields named in `first`, every other field)`, each a JSON object,
/// with the fields named in `skip` in neither. The store writes a snapshot's parts with
/// `only` and typed views of its other fields; tests build older layouts' rows with this.
#[cfg(test)]
pub(crate) fn split<T: Serialize>(
    value: &T,
    first: &[&str],
    skip: &[&str],
) -> Result<(String, String), serde_json::Error> {
    let mut parts = Parts::new(Route::Split { first, skip });
    value.serialize(&mut parts)?;
    let [a, b] = parts.out;
    Ok((a.finish()?, b.finish()?))
}

/// The JSON of the field `name` of `value` (a struct), if it has one.
pub(crate) fn field<T: Serialize>(
    value: &T,
    name: &str,
) -> Result<Option<String>, serde_json::Error> {
    let mut parts = Parts::new(Route::Pick(name));
    value.serialize(&mut parts)?;
    let [picked, _] = parts.out;
    if picked.json.is_empty() {
        return Ok(None);
    }
    String::from_utf8(picked.json)
        .map(Some)
        .map_err(ser::Error::custom)
}

/// The fields of `value` (a struct) named in `names`, as one JSON object.
pub(crate) fn only<T: Serialize>(value: &T, names: &[&str]) -> Result<String, serde_json::Error> {
    let mut parts = Parts::new(Route::Only(names));
    value.serialize(&mut parts)?;
    let [named, _] = parts.out;
    named.finish()
}

/// Where a field goes.
enum Route<'a> {
    /// Named in `first`: the first part; else named in `skip`: nowhere (never serialized);
    /// else the second.
    #[cfg(test)]
    Split {
        first: &'a [&'a str],
        skip: &'a [&'a str],
    },
    /// This one's value alone, as is, into the first part; the others nowhere.
    Pick(&'a str),
    /// Named here: the first part; the others nowhere.
    Only(&'a [&'a str]),
}

/// A part's JSON, allocated when its first field comes: a part no field goes to costs nothing.
#[derive(Default)]
struct Part {
    json: Vec<u8>,
}

/// Room for a typical part's JSON (a few hundred bytes), so writing one seldom reallocates.
pub(crate) const PART_CAPACITY: usize = 512;

impl Part {
    fn field<V: Serialize + ?Sized>(&mut self, key: &str, value: &V) -> serde_json::Result<()> {
        if self.json.is_empty() {
            self.json.reserve(PART_CAPACITY);
            self.json.push(b'{');
        } else {
            self.json.push(b',');
        }
        serde_json::to_writer(&mut self.json, key)?;
        self.json.push(b':');
        serde_json::to_writer(&mut self.json, value)
    }

    fn finish(mut self) -> serde_json::Result<String> {
        if self.json.is_empty() {
            self.json.push(b'{');
        }
        self.json.push(b'}');
        String::from_utf8(self.json).map_err(ser::Error::custom)
    }
}

struct Parts<'a> {
    route: Route<'a>,
    out: [Part; 2],
    /// The key of a map entry (a struct with a flattened field serializes as a map), as JSON,
    /// until its value comes; the buffer serves every entry.
    key: Vec<u8>,
}

impl<'a> Parts<'a> {
    fn new(route: Route<'a>) -> Self {
        Parts {
            route,
            out: Default::default(),
            key: Vec::new(),
        }
    }

    fn route<V: Serialize + ?Sized>(&mut self, key: &str, value: &V) -> serde_json::Result<()> {
        match self.route {
            #[cfg(test)]
            Route::Split { first, .. } if first.contains(&key) => self.out[0].field(key, value),
            #[cfg(test)]
            Route::Split { skip, .. } if skip.contains(&key) => Ok(()),
            #[cfg(test)]
            Route::Split { .. } => self.out[1].field(key, value),
            Route::Pick(name) if name == key => {
                let json = &mut self.out[0].json;
                json.reserve(PART_CAPACITY);
                serde_json::to_writer(json, value)
            }
            Route::Pick(_) => Ok(()),
            Route::Only(names) if names.contains(&key) => self.out[0].field(key, value),
            Route::Only(_) => Ok(()),
        }
    }
}

impl SerializeStruct for &mut Parts<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> serde_json::Result<()> {
        self.route(key, value)
    }

    fn end(self) -> serde_json::Result<()> {
        Ok(())
    }
}

/// A struct with a `#[serde(flatten)]` field serializes as a map of its fields and the
/// flattened struct's; only string keys name fields.
impl SerializeMap for &mut Parts<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_key<K: Serialize + ?Sized>(&mut self, key: &K) -> serde_json::Result<()> {
        self.key.clear();
        serde_json::to_writer(&mut self.key, key)
    }

    fn serialize_value<V: Serialize + ?Sized>(&mut self, value: &V) -> serde_json::Result<()> {
        let key = std::mem::take(&mut self.key);
        // A field's name is a JSON string with nothing escaped in it.
        let name = key
            .strip_prefix(b"\"")
            .and_then(|k| k.strip_suffix(b"\""))
            .filter(|k| !k.contains(&b'\\'))
            .and_then(|k| std::str::from_utf8(k).ok())
            .ok_or_else(|| ser::Error::custom("a map value without a field's name as its key"))?;
        let routed = self.route(name, value);
        self.key = key;
        self.key.clear();
        routed
    }

    fn end(self) -> serde_json::Result<()> {
        Ok(())
    }
}

fn not_a_struct() -> serde_json::Error {
    ser::Error::custom("only a struct can be split into parts")
}

/// Only `serialize_struct` and `serialize_map` (a struct with a flattened field) do anything:
/// a value that is not a struct cannot be split.
impl<'a, 'b> Serializer for &'a mut Parts<'b> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<(), serde_json::Error>;
    type SerializeTuple = Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = Impossible<(), serde_json::Error>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), serde_json::Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> serde_json::Result<Self> {
        Ok(self)
    }

    fn serialize_bool(self, _: bool) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_i8(self, _: i8) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_i16(self, _: i16) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_i32(self, _: i32) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_i64(self, _: i64) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_u8(self, _: u8) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_u16(self, _: u16) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_u32(self, _: u32) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_u64(self, _: u64) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_f32(self, _: f32) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_f64(self, _: f64) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_char(self, _: char) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_str(self, _: &str) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_bytes(self, _: &[u8]) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_none(self) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_unit(self) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_unit_struct(self, _: &'static str) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &V,
    ) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> serde_json::Result<()> {
        Err(not_a_struct())
    }
    fn serialize_seq(self, _: Option<usize>) -> serde_json::Result<Self::SerializeSeq> {
        Err(not_a_struct())
    }
    fn serialize_tuple(self, _: usize) -> serde_json::Result<Self::SerializeTuple> {
        Err(not_a_struct())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> serde_json::Result<Self::SerializeTupleStruct> {
        Err(not_a_struct())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> serde_json::Result<Self::SerializeTupleVariant> {
        Err(not_a_struct())
    }
    fn serialize_map(self, _: Option<usize>) -> serde_json::Result<Self::SerializeMap> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> serde_json::Result<Self::SerializeStructVariant> {
        Err(not_a_struct())
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::json;

    use super::split;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Sample {
        id: &'static str,
        status: &'static str,
        card_summary: Option<Vec<u8>>,
        note: Option<&'static str>,
        count: u64,
    }

    const SAMPLE: Sample = Sample {
        id: "pay_1",
        status: "it said \"no\"",
        card_summary: None,
        note: Some("é\n"),
        count: 3,
    };

    fn parsed(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn fields_go_to_the_part_that_names_them_and_together_make_the_whole() {
        let (first, rest) = split(&SAMPLE, &["id", "cardSummary"], &[]).unwrap();
        assert_eq!(parsed(&first), json!({"id": "pay_1", "cardSummary": null}));
        assert_eq!(
            parsed(&rest),
            json!({"status": "it said \"no\"", "note": "é\n", "count": 3})
        );
        let mut whole = parsed(&first);
        whole
            .as_object_mut()
            .unwrap()
            .extend(parsed(&rest).as_object().unwrap().clone());
        assert_eq!(whole, serde_json::to_value(&SAMPLE).unwrap());
    }

    #[test]
    fn only_the_named_fields_or_all_but_the_skipped() {
        let named = super::only(&SAMPLE, &["count", "id", "missing"]).unwrap();
        assert_eq!(named, r#"{"id":"pay_1","count":3}"#);
        assert_eq!(super::only(&SAMPLE, &["missing"]).unwrap(), "{}");
        let (_, rest) = split(&SAMPLE, &[], &["id", "status", "cardSummary"]).unwrap();
        assert_eq!(parsed(&rest), json!({"note": "é\n", "count": 3}));
        let (first, split_rest) =
            split(&SAMPLE, &["count", "id"], &["status", "cardSummary"]).unwrap();
        assert_eq!(
            (first, split_rest),
            (
                named,
                split(&SAMPLE, &[], &["count", "id", "status", "cardSummary"])
                    .unwrap()
                    .1
            )
        );
    }

    #[test]
    fn a_part_without_fields_is_an_empty_object() {
        let (first, rest) = split(&SAMPLE, &[], &[]).unwrap();
        assert_eq!(first, "{}");
        assert_eq!(parsed(&rest), serde_json::to_value(&SAMPLE).unwrap());
    }

    #[test]
    fn a_field_is_picked_as_is() {
        assert_eq!(
            super::field(&SAMPLE, "status").unwrap().as_deref(),
            Some(r#""it said \"no\"""#)
        );
        assert_eq!(
            super::field(&SAMPLE, "cardSummary").unwrap().as_deref(),
            Some("null")
        );
        assert_eq!(super::field(&SAMPLE, "missing").unwrap(), None);
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        total: i64,
        name: &'static str,
    }

    /// Shaped like the events: adjacently tagged, a flattened variant, an empty one.
    #[derive(Serialize)]
    #[serde(tag = "eventType", content = "data")]
    enum Tagged {
        #[serde(rename = "a.created", rename_all = "camelCase")]
        Created {
            #[serde(flatten)]
            inner: Inner,
            extra_note: Option<&'static str>,
        },
        #[serde(rename = "a.closed")]
        Closed {},
    }

    #[test]
    fn the_content_of_a_tagged_enum_is_its_data_field() {
        let samples = [
            Tagged::Created {
                inner: Inner {
                    total: -5,
                    name: "x\u{1}",
                },
                extra_note: None,
            },
            Tagged::Closed {},
        ];
        for sample in samples {
            let whole = serde_json::to_value(&sample).unwrap();
            let data = super::field(&sample, "data").unwrap().unwrap();
            assert_eq!(parsed(&data), whole["data"], "{whole}");
        }
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Flattening {
        id: &'static str,
        #[serde(flatten)]
        inner: Inner,
        version: u64,
    }

    const FLATTENING: Flattening = Flattening {
        id: "inv_1",
        inner: Inner {
            total: 7,
            name: "a \"b\"",
        },
        version: 2,
    };

    #[test]
    fn skipped_fields_are_in_neither_part() {
        let (first, rest) = super::split(&SAMPLE, &["id"], &["status", "id"]).unwrap();
        assert_eq!(first, r#"{"id":"pay_1"}"#);
        assert_eq!(
            parsed(&rest),
            json!({"cardSummary": null, "note": "é\n", "count": 3})
        );
    }

    #[test]
    fn a_flattened_struct_is_split_by_its_fields_too() {
        let (first, rest) = split(&FLATTENING, &["id", "total"], &[]).unwrap();
        assert_eq!(first, r#"{"id":"inv_1","total":7}"#);
        assert_eq!(rest, r#"{"name":"a \"b\"","version":2}"#);
    }

    #[test]
    fn only_a_struct_is_split() {
        assert!(split(&vec![1, 2], &[], &[]).is_err());
        assert!(split(&"text", &[], &[]).is_err());
    }

    #[test]
    fn a_map_splits_by_its_keys_only_if_they_are_names() {
        let named = std::collections::BTreeMap::from([("id", 1), ("total", 2), ("x", 3)]);
        let (first, rest) = split(&named, &["total"], &["x"]).unwrap();
        assert_eq!(
            (first.as_str(), rest.as_str()),
            (r#"{"total":2}"#, r#"{"id":1}"#)
        );
        let numbered = std::collections::BTreeMap::from([(1, 2)]);
        assert!(split(&numbered, &[], &[]).is_err());
        let escaped = std::collections::BTreeMap::from([("a\"b", 1)]);
        assert!(split(&escaped, &[], &[]).is_err());
    }
}
