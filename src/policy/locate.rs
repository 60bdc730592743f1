//! Finding the line of a value in the policy source by its field path.
//!
//! serde_yaml keeps no spans, but it stamps the position of the current node on any error
//! raised while deserializing it. Walking the document along the path and failing on purpose
//! at the target yields exactly the position serde_yaml itself would report, flow style and
//! anchors included, without a second YAML parser.

use super::error::SourceLocation;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(&'static str),
    Index(usize),
}

/// A field path such as `rules[1].refs[0]`, formatted like serde_yaml's own paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub(crate) fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    pub(crate) fn key(&self, key: &'static str) -> FieldPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key));
        FieldPath(segments)
    }

    pub(crate) fn index(&self, index: usize) -> FieldPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        FieldPath(segments)
    }

    /// The path one step up, or `None` at the root.
    pub(crate) fn parent(&self) -> Option<FieldPath> {
        let (_, parent) = self.0.split_last()?;
        Some(FieldPath(parent.to_vec()))
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

const TARGET_REACHED: &str = "provenance-gate: located target value";

/// One step of a path into any YAML document: the `occurrence`-th entry (from 0) with this
/// key, for documents that repeat a key, or a sequence index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Key(serde_yaml::Value, usize),
    Index(usize),
}

/// Position of the value at `path` in `source`, or `None` when there is no such value.
pub(crate) fn locate(source: &str, path: &FieldPath) -> Option<SourceLocation> {
    let steps: Vec<Step> = path
        .segments()
        .iter()
        .map(|segment| match segment {
            Segment::Key(key) => Step::Key(serde_yaml::Value::from(*key), 0),
            Segment::Index(index) => Step::Index(*index),
        })
        .collect();
    locate_steps(source, &steps)
}

/// Position of the value at `steps` in `source`, or `None` when there is no such value.
pub(crate) fn locate_steps(source: &str, steps: &[Step]) -> Option<SourceLocation> {
    let deserializer = serde_yaml::Deserializer::from_str(source);
    match Navigate(steps).deserialize(deserializer) {
        Err(error) if error.to_string().contains(TARGET_REACHED) => {
            error.location().map(|location| SourceLocation {
                line: location.line(),
                column: location.column(),
            })
        }
        _ => None,
    }
}

struct Navigate<'p>(&'p [Step]);

impl<'de> DeserializeSeed<'de> for Navigate<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.0.split_first() {
            // The error must come from inside a deserialize call on the target node, so
            // that serde_yaml stamps that node's position on it.
            None => deserializer.deserialize_any(Target),
            Some((Step::Key(key, occurrence), rest)) => deserializer.deserialize_map(FindKey {
                key,
                occurrence: *occurrence,
                rest,
            }),
            Some((Step::Index(index), rest)) => deserializer.deserialize_seq(FindIndex {
                index: *index,
                rest,
            }),
        }
    }
}

struct Target;

impl<'de> Visitor<'de> for Target {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(TARGET_REACHED))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(TARGET_REACHED))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(TARGET_REACHED))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(TARGET_REACHED))
    }
}

struct FindKey<'p> {
    key: &'p serde_yaml::Value,
    occurrence: usize,
    rest: &'p [Step],
}

impl<'de> Visitor<'de> for FindKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0;
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            if key == *self.key {
                if seen == self.occurrence {
                    return map.next_value_seed(Navigate(self.rest));
                }
                seen += 1;
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

struct FindIndex<'p> {
    index: usize,
    rest: &'p [Step],
}

impl<'de> Visitor<'de> for FindIndex<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Navigate(self.rest)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "\
version: 1
rules:
  - name: first
    refs: [refs/heads/main, \"refs/tags/*\"]
  - name: second
    repositories:
      - {name: acme/api, id: \"804070735\"}
      - name: acme/web
        id: 12
";

    fn at(path: FieldPath) -> Option<(usize, usize)> {
        locate(SOURCE, &path).map(|location| (location.line, location.column))
    }

    #[test]
    fn finds_block_and_flow_values() {
        let rules = FieldPath::root().key("rules");
        assert_eq!(at(FieldPath::root().key("version")), Some((1, 10)));
        assert_eq!(at(rules.index(0).key("name")), Some((3, 11)));
        assert_eq!(at(rules.index(0).key("refs").index(1)), Some((4, 29)));
        assert_eq!(at(rules.index(1)), Some((5, 5)));
        let repositories = rules.index(1).key("repositories");
        assert_eq!(at(repositories.index(0).key("id")), Some((7, 30)));
        assert_eq!(at(repositories.index(1).key("id")), Some((9, 13)));
    }

    #[test]
    fn misses_paths_that_do_not_exist() {
        let rules = FieldPath::root().key("rules");
        assert_eq!(at(rules.index(2)), None);
        assert_eq!(at(rules.index(0).key("owners")), None);
        assert_eq!(at(FieldPath::root().key("version").index(0)), None);
    }

    #[test]
    fn formats_paths_like_serde_yaml() {
        let path = FieldPath::root().key("rules").index(1).key("refs").index(0);
        assert_eq!(path.to_string(), "rules[1].refs[0]");
        assert_eq!(FieldPath::root().to_string(), "");
    }
}
