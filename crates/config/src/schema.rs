//! Which keys veer knows, asked of serde itself.
//!
//! The raw structs of [`crate::raw`] are the one place the routing file's keys are
//! declared. To tell a misspelt key from a known one without a second list that could
//! drift from them, a probe deserializer walks a path into [`crate::raw::RawConfig`]
//! the way serde's derived code asks for it, and reports what the type at the end of
//! the path is: a struct with its field names (as written in TOML, renames included),
//! a map with keys of the user's choosing, a list, or a value read whole. A field added
//! to `raw.rs` is known from then on.

use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde_spanned::de::SpannedDeserializer;

/// One step from a table or an array to a value inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    /// The value of this key of a table.
    Key(String),
    /// An item of an array (all items have one shape).
    Item,
}

/// What the raw structs accept at one place in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A table with these keys only: a struct's fields.
    Table(&'static [&'static str]),
    /// A table whose keys the user names (backends, header names); each value has
    /// the shape one [`Step::Key`] further.
    Map,
    /// An array; each item has the shape one [`Step::Item`] further.
    List,
    /// A value read whole (a string, a number, a `toml::Value`): no key inside it is
    /// checked here. Also the answer for a path the structs do not lead along.
    Value,
}

/// The shape `T` gives the value at `path`, from the document's root.
pub(crate) fn shape_at<T: DeserializeOwned>(path: &[Step]) -> Shape {
    match T::deserialize(Probe { path }) {
        Err(Stop::Reached(shape)) => shape,
        // The probe always stops with an error; any other end means the path left
        // what the structs describe (a key they do not declare, say).
        Err(Stop::Lost) | Ok(_) => Shape::Value,
    }
}

/// How a probe ends: it reached the end of its path, or it could not follow it.
#[derive(Debug)]
enum Stop {
    Reached(Shape),
    Lost,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Reached(shape) => write!(f, "reached {shape:?}"),
            Stop::Lost => f.write_str("the path leaves the schema"),
        }
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop::Lost
    }
}

/// A deserializer with no data: it hands the type being deserialized one key or one
/// item at a time along `path`, and stops with the shape the type asks for at its end.
struct Probe<'p> {
    path: &'p [Step],
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop::Reached(Shape::Value))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        if serde_spanned::de::is_spanned(name) {
            // `Spanned<T>`: the span is no step in the document; go on into the T.
            return visitor.visit_map(SpannedDeserializer::new(self, 0..0));
        }
        match self.path.split_first() {
            None => Err(Stop::Reached(Shape::Table(fields))),
            Some((Step::Key(key), rest)) => visitor.visit_map(Entry::new(key, rest)),
            Some((Step::Item, _)) => Err(Stop::Lost),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.path.split_first() {
            None => Err(Stop::Reached(Shape::Map)),
            Some((Step::Key(key), rest)) => visitor.visit_map(Entry::new(key, rest)),
            Some((Step::Item, _)) => Err(Stop::Lost),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.path.split_first() {
            None => Err(Stop::Reached(Shape::List)),
            Some((Step::Item, rest)) => visitor.visit_seq(Item(Some(Probe { path: rest }))),
            Some((Step::Key(_), _)) => Err(Stop::Lost),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct tuple tuple_struct enum identifier ignored_any
    }
}

impl<'de, 'p> IntoDeserializer<'de, Stop> for Probe<'p> {
    type Deserializer = Probe<'p>;

    fn into_deserializer(self) -> Probe<'p> {
        self
    }
}

/// A table with the one key the path takes next.
struct Entry<'p> {
    key: Option<&'p str>,
    value: Option<Probe<'p>>,
}

impl<'p> Entry<'p> {
    fn new(key: &'p str, rest: &'p [Step]) -> Self {
        Entry {
            key: Some(key),
            value: Some(Probe { path: rest }),
        }
    }
}

impl<'de> de::MapAccess<'de> for Entry<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.key.take() {
            Some(key) => seed.deserialize(StrDeserializer::new(key)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(self.value.take().ok_or(Stop::Lost)?)
    }
}

/// An array with the one item the path takes next.
struct Item<'p>(Option<Probe<'p>>);

impl<'de> de::SeqAccess<'de> for Item<'_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        self.0
            .take()
            .map(|probe| seed.deserialize(probe))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawConfig;

    fn at(path: &[&str]) -> Shape {
        let path: Vec<Step> = path
            .iter()
            .map(|s| match *s {
                "[]" => Step::Item,
                key => Step::Key(key.to_owned()),
            })
            .collect();
        shape_at::<RawConfig>(&path)
    }

    fn keys(path: &[&str]) -> Vec<&'static str> {
        match at(path) {
            Shape::Table(fields) => fields.to_vec(),
            other => panic!("{path:?} is {other:?}, not a table"),
        }
    }

    #[test]
    fn tables_know_the_fields_raw_rs_declares() {
        assert!(keys(&[]).contains(&"routes") && keys(&[]).contains(&"log_dir"));
        assert_eq!(
            keys(&["routes", "[]", "split", "[]"]),
            ["backend", "weight"]
        );
        assert!(
            keys(&["routes", "[]"]).contains(&"match"),
            "the TOML name, not the Rust one"
        );
        assert!(keys(&["routes", "[]", "rollout", "predictions"]).contains(&"critical"));
        assert!(keys(&["backends", "churn-v1", "outlier"]).contains(&"ejection"));
        assert!(keys(&["listen"]).contains(&"admin"));
    }

    #[test]
    fn maps_lists_and_whole_values_are_told_apart() {
        assert_eq!(at(&["backends"]), Shape::Map);
        assert_eq!(at(&["routes", "[]", "match", "headers"]), Shape::Map);
        assert_eq!(at(&["routes"]), Shape::List);
        assert_eq!(at(&["routes", "[]", "split"]), Shape::List);
        assert_eq!(at(&["routes", "[]", "split_by"]), Shape::Value);
        assert_eq!(at(&["routes", "[]", "compare", "select"]), Shape::Value);
        assert_eq!(at(&["routes", "[]", "name"]), Shape::Value);
    }

    #[test]
    fn a_path_the_structs_do_not_lead_along_is_no_table() {
        assert_eq!(at(&["route"]), Shape::Value);
        assert_eq!(at(&["routes", "shadow"]), Shape::Value);
        assert_eq!(at(&["listen", "[]"]), Shape::Value);
    }
}
