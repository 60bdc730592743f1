//! Repeated mapping keys. YAML forbids them, but serde_yaml keeps the last one silently, so
//! `matchLabels: {env: production, env: dev}` would select `dev` namespaces while reading as
//! production. Found in a walk over the whole document, before its shape is checked.

use super::error::{PolicyError, PolicyIssue};
use super::locate::{locate_steps, Step};
use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};
use serde_yaml::Value;
use std::collections::HashMap;

/// The most repeated keys reported (and located) in one error.
const MAX_REPORTED: usize = 100;

/// Every repeated key of `source`, each at the line of its second (or later) occurrence.
/// `None` when there are none, or when the source is not YAML (the shape check says why).
pub(crate) fn refuse_duplicate_keys(source: &str, located_budget: usize) -> Option<PolicyError> {
    let mut walk = WalkState::default();
    Walk(&mut walk)
        .deserialize(serde_yaml::Deserializer::from_str(source))
        .ok()?;
    if walk.found.is_empty() {
        return None;
    }
    let issues = walk
        .found
        .iter()
        .enumerate()
        .map(|(position, steps)| issue(source, steps, position < located_budget))
        .collect();
    Some(PolicyError::Invalid {
        issues,
        omitted: walk.omitted,
    })
}

fn issue(source: &str, steps: &[Step], locate: bool) -> PolicyIssue {
    let (location, first_line) = if locate {
        let first = match steps.split_last() {
            Some((Step::Key(key, _), parent)) => {
                let mut first = parent.to_vec();
                first.push(Step::Key(key.clone(), 0));
                locate_steps(source, &first)
            }
            _ => None,
        };
        (locate_steps(source, steps), first)
    } else {
        (None, None)
    };
    let key = match steps.last() {
        Some(Step::Key(key, _)) => key_text(key),
        _ => String::new(),
    };
    let first = first_line
        .map(|location| format!(" (first at line {})", location.line))
        .unwrap_or_default();
    PolicyIssue {
        location,
        path: path_text(steps),
        message: format!(
            "duplicate key `{key}`{first}: YAML does not allow a key twice in one mapping, and only one of the values would be used; keep one"
        ),
    }
}

/// `environments[0].namespaceSelector.matchLabels.env`, like serde_yaml's own paths.
fn path_text(steps: &[Step]) -> String {
    let mut text = String::new();
    for step in steps {
        match step {
            Step::Key(key, _) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(&key_text(key));
            }
            Step::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(boolean) => boolean.to_string(),
        Value::Null => "null".to_string(),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => "(complex key)".to_string(),
    }
}

#[derive(Default)]
struct WalkState {
    /// The path to the value being walked.
    steps: Vec<Step>,
    /// Paths of repeated keys, in document order.
    found: Vec<Vec<Step>>,
    omitted: usize,
}

/// Visits every node, recording repeated keys.
struct Walk<'s>(&'s mut WalkState);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.0;
        let mut index = 0;
        loop {
            state.steps.push(Step::Index(index));
            let more = seq.next_element_seed(Walk(state))?.is_some();
            state.steps.pop();
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let mut occurrences: HashMap<Value, usize> = HashMap::new();
        while let Some(key) = map.next_key::<Value>()? {
            let occurrence = occurrences.entry(key.clone()).or_insert(0);
            state.steps.push(Step::Key(key, *occurrence));
            if *occurrence > 0 {
                if state.found.len() < MAX_REPORTED {
                    state.found.push(state.steps.clone());
                } else {
                    state.omitted += 1;
                }
            }
            *occurrence += 1;
            map.next_value_seed(Walk(state))?;
            state.steps.pop();
        }
        Ok(())
    }

    /// A tagged value (`!tag value`): its content may repeat keys too.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (IgnoredAny, variant) = data.variant()?;
        variant.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (path, line) of each repeated key that `source` is refused for.
    fn refused(source: &str) -> Vec<(String, usize, String)> {
        let error = refuse_duplicate_keys(source, usize::MAX).expect("duplicates are refused");
        error.issues().iter().map(PolicyIssue::brief).collect()
    }

    #[test]
    fn finds_repeated_keys_anywhere_with_path_and_line() {
        let source = "\
version: 1
environments:
  - name: production
    namespaceSelector: {matchLabels: {env: production, env: dev}}
    mode: enforce
rules:
  - name: a
    images: [\"ghcr.io/acme/*\"]
    owners:
      - name: acme
        id: \"1\"
        id: \"2\"
    images: [\"ghcr.io/**\"]
version: 2
";
        let found = refused(source);
        assert_eq!(
            PolicyIssue::paths_and_lines(&found),
            [
                ("environments[0].namespaceSelector.matchLabels.env", 4),
                ("rules[0].owners[0].id", 12),
                ("rules[0].images", 13),
                ("version", 14),
            ]
        );
        assert!(
            found[0]
                .2
                .starts_with("duplicate key `env` (first at line 4)"),
            "{}",
            found[0].2
        );
        assert!(found[2].2.contains("(first at line 8)"), "{}", found[2].2);
    }

    #[test]
    fn a_policy_with_a_repeated_label_is_refused() {
        let source = "version: 1\nenvironments:\n  - name: production\n    namespaceSelector: {matchLabels: {env: production, env: dev}}\n    mode: enforce\n";
        let error = crate::policy::Policy::from_yaml(source).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "line 4 column 61: environments[0].namespaceSelector.matchLabels.env: duplicate key `env` (first at line 4): YAML does not allow a key twice in one mapping, and only one of the values would be used; keep one"
        );
    }

    #[test]
    fn counts_every_repetition_and_reads_tagged_and_flow_values() {
        let found = refused("a: !tagged {k: 1, k: 2, k: 3}\nb: [{x: 1}, {x: 1, x: 2}]\n");
        let paths: Vec<&str> = found.iter().map(|(path, ..)| path.as_str()).collect();
        assert_eq!(paths, ["a.k", "a.k", "b[1].x"]);
        let lines: Vec<usize> = found.iter().map(|(_, line, _)| *line).collect();
        assert_eq!(lines, [1, 1, 2]);
    }

    #[test]
    fn leaves_documents_without_repeats_and_broken_yaml_to_the_shape_check() {
        for source in [
            "version: 1\nrules: [{name: a, images: [x]}, {name: a, images: [x]}]\n",
            "a: {k: 1}\nb: {k: 1}\n",
            "version: 1\nrules: [\n",
            "",
        ] {
            assert!(
                refuse_duplicate_keys(source, usize::MAX).is_none(),
                "{source}"
            );
        }
    }

    #[test]
    fn bounds_the_report() {
        let mut source = String::from("m:\n");
        for _ in 0..MAX_REPORTED + 20 {
            source.push_str("  k: 1\n");
        }
        let Some(PolicyError::Invalid { issues, omitted }) = refuse_duplicate_keys(&source, 5)
        else {
            panic!("refused")
        };
        assert_eq!((issues.len(), omitted), (MAX_REPORTED, 19));
        assert!(issues[4].location.is_some());
        assert!(issues[5].location.is_none());
    }
}
