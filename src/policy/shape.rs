//! Every place where a source is not the shape of a policy (unknown keys, wrong types, missing
//! keys), not only the first one serde meets: each problem found is taken out of a copy of
//! the document (or a placeholder put in for a missing key) and the rest is read again.

use super::document::PolicyDocument;
use super::error::PolicyIssue;
use super::locate::{locate_steps, Step};
use serde_yaml::{Mapping, Value};

/// Rounds of "read, take the problem out" at most.
const MAX_ROUNDS: usize = 100;
/// Passes over the document one round makes: write the copy, read it, locate the problem in
/// the source.
const PASSES_PER_ROUND: usize = 3;

/// The shape problems of `source`, located, in the order found, re-reading at most
/// `budget_bytes`; empty when the source is not YAML at all, has the shape of a policy, or
/// is too large for more than its first problem within the budget.
pub(super) fn shape_problems(source: &str, budget_bytes: usize) -> Vec<PolicyIssue> {
    let Ok(mut document) = serde_yaml::from_str::<Value>(source) else {
        return Vec::new();
    };
    // A broken large policy must not stall a reload (serde_yaml reads about 10 MB/s). One
    // round finds what the first error says already.
    let rounds = (budget_bytes / (PASSES_PER_ROUND * source.len().max(1))).min(MAX_ROUNDS);
    if rounds < 2 {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let mut filled: Vec<Vec<Step>> = Vec::new();
    let mut taken: Vec<Vec<Step>> = Vec::new();
    for _ in 0..rounds {
        let Ok(text) = serde_yaml::to_string(&document) else {
            break;
        };
        let deserializer = serde_yaml::Deserializer::from_str(&text);
        let error = match serde_path_to_error::deserialize::<_, PolicyDocument>(deserializer) {
            Ok(_) => break,
            Err(error) => error,
        };
        let steps = steps_of(error.path());
        let message = bare_message(error.inner());
        let missing = missing_key(&message);
        // A placeholder stands in for a missing key, and a key taken out is missing now;
        // neither is the author's doing.
        let ours = filled
            .iter()
            .any(|placeholder| steps.starts_with(placeholder))
            || missing.as_ref().is_some_and(|key| {
                let mut path = steps.clone();
                path.push(Step::Key(Value::String(key.clone()), 0));
                taken.contains(&path)
            });
        if !ours {
            problems.push(PolicyIssue {
                location: locate_steps(source, &steps).or_else(|| locate_parent(source, &steps)),
                path: path_text(&steps),
                message: message.clone(),
            });
        }
        let repaired = match missing {
            Some(key) => {
                fill(&mut document, &steps, key).map(|placeholder| filled.push(placeholder))
            }
            None => take_out(&mut document, &steps).map(|removed| taken.push(removed)),
        };
        if repaired.is_none() {
            break;
        }
    }
    problems
}

fn steps_of(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => {
                Some(Step::Key(Value::String(key.clone()), 0))
            }
            serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
            _ => None,
        })
        .collect()
}

/// `rules[1].images`, as serde_yaml and the rest of the policy errors write paths.
fn path_text(steps: &[Step]) -> String {
    let mut text = String::new();
    for step in steps {
        match step {
            Step::Key(Value::String(key), _) if text.is_empty() => text.push_str(key),
            Step::Key(Value::String(key), _) => {
                text.push('.');
                text.push_str(key);
            }
            Step::Key(..) => text.push_str(".?"),
            Step::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

/// The error's own words: without the path serde_yaml puts in front and the position it
/// appends, which belong to the re-read copy.
fn bare_message(error: &serde_yaml::Error) -> String {
    let mut message = error.to_string();
    if let Some(location) = error.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(start) = message.rfind(&suffix) {
            message.replace_range(start..start + suffix.len(), "");
        }
    }
    match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') => rest.to_owned(),
        _ => message,
    }
}

fn locate_parent(source: &str, steps: &[Step]) -> Option<super::error::SourceLocation> {
    (0..steps.len())
        .rev()
        .find_map(|end| locate_steps(source, &steps[..end]))
}

fn missing_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split_once('`')?.0.to_owned())
}

fn mapping_at<'v>(document: &'v mut Value, steps: &[Step]) -> Option<&'v mut Mapping> {
    let mut node = document;
    for step in steps {
        node = match step {
            Step::Key(key, _) => node.as_mapping_mut()?.get_mut(key)?,
            Step::Index(index) => node.as_sequence_mut()?.get_mut(*index)?,
        };
    }
    node.as_mapping_mut()
}

/// Puts a value of the right kind in for the missing `key` of the mapping at `steps`; the
/// steps to the placeholder, or `None` when it cannot be placed.
fn fill(document: &mut Value, steps: &[Step], key: String) -> Option<Vec<Step>> {
    let placeholder = match key.as_str() {
        "version" => Value::from(1),
        "images" => Value::Sequence(Vec::new()),
        "namespaceSelector" => Value::Mapping(Mapping::new()),
        _ => Value::String(String::new()),
    };
    let key = Value::String(key);
    let mapping = mapping_at(document, steps)?;
    if mapping.contains_key(&key) {
        return None;
    }
    mapping.insert(key.clone(), placeholder);
    let mut path = steps.to_vec();
    path.push(Step::Key(key, 0));
    Some(path)
}

/// Removes the value at `steps` from its mapping; for an entry of a list, the whole list (its
/// later entries would be renumbered). The steps to what was removed, or `None` when nothing
/// could be.
fn take_out(document: &mut Value, steps: &[Step]) -> Option<Vec<Step>> {
    let last_key = steps
        .iter()
        .rposition(|step| matches!(step, Step::Key(..)))?;
    let Step::Key(key, _) = &steps[last_key] else {
        return None;
    };
    mapping_at(document, &steps[..last_key])?.remove(key)?;
    Some(steps[..=last_key].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, PolicyError};

    const BUDGET: usize = 1 << 20;

    fn shape_problems_of(source: &str) -> Vec<PolicyIssue> {
        shape_problems(source, BUDGET)
    }

    #[test]
    fn every_shape_problem_is_reported_with_path_and_line() {
        let source = r#"version: 1
defaultMode: [enforce]
environments:
  - name: prod
    mode: enforce
rules:
  - name: acme
    images: ghcr.io/acme/*
    owners: [{name: acme}]
  - name: web
    images: ["ghcr.io/acme/web"]
    repos: [{name: acme/web}]
    owners: [{name: acme, id: [1]}]
registries:
  - {host: a.io, insecure: yes}
bogus: true
"#;
        let problems: Vec<(String, usize, String)> = shape_problems(source, BUDGET)
            .iter()
            .map(PolicyIssue::brief)
            .collect();
        let expected = [
            (
                "defaultMode",
                2,
                "invalid type: sequence, expected a string",
            ),
            ("environments[0]", 4, "missing field `namespaceSelector`"),
            (
                "rules[0].images",
                8,
                "invalid type: string \"ghcr.io/acme/*\", expected a sequence",
            ),
            (
                "rules[1].repos",
                12,
                "unknown field `repos`, expected one of",
            ),
            (
                "rules[1].owners[0].id",
                13,
                "invalid type: sequence, expected a string",
            ),
            (
                "registries[0].insecure",
                15,
                "invalid type: string \"yes\", expected a boolean",
            ),
            ("bogus", 16, "unknown field `bogus`, expected one of"),
        ];
        let mut found: Vec<_> = problems.clone();
        found.sort_by_key(|(_, line, _)| *line);
        assert_eq!(found.len(), expected.len(), "{problems:#?}");
        for ((path, line, message), (want_path, want_line, want)) in found.iter().zip(expected) {
            assert_eq!((path.as_str(), *line), (want_path, want_line), "{message}");
            assert!(
                message.starts_with(want),
                "{path}: {message}\n  expected: {want}"
            );
        }

        let error = Policy::from_yaml(source).expect_err("invalid");
        assert!(matches!(error, PolicyError::Invalid { .. }), "{error:?}");
        assert_eq!(error.issues().len(), expected.len(), "{error}");
        assert!(
            error.to_string().starts_with("7 problems in policy:"),
            "{error}"
        );
    }

    #[test]
    fn one_problem_and_no_problem_and_not_yaml() {
        assert_eq!(shape_problems_of("version: 1\nrules: []\n"), []);
        assert_eq!(shape_problems_of("version: 1\nrules: [\n"), []);
        // The budget bounds the rounds: under two, only serde's own first error is given.
        let two = "version: 1\nbogus: true\nother: 1\n";
        assert_eq!(shape_problems(two, two.len() * 5), []);
        assert_eq!(shape_problems(two, two.len() * 6).len(), 2);
        let one = shape_problems_of("version: 1\nbogus: true\n");
        assert_eq!(one.len(), 1, "{one:?}");
        assert_eq!(one[0].path, "bogus");
    }
}
