//! Reading the in-toto statement inside a verified DSSE envelope into claims.

use serde_json::Value;

use super::claims::{PredicateClaims, Subject};

pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Subjects beyond this many are an abuse of the format, not a build output list we need.
const MAX_SUBJECTS: usize = 1024;

/// The parts of a statement the policy decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementFacts {
    pub predicate_type: String,
    pub subjects: Vec<Subject>,
    pub predicate: Option<PredicateClaims>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("failed to parse the in-toto statement: {0}")]
    NotJson(String),
    #[error("in-toto statement has no {0} field")]
    Missing(&'static str),
    #[error("in-toto statement has {0} subjects, more than the {MAX_SUBJECTS} allowed")]
    TooManySubjects(usize),
}

pub fn read_statement(payload: &[u8]) -> Result<StatementFacts, StatementError> {
    let statement: Value = serde_json::from_slice(payload)
        .map_err(|error| StatementError::NotJson(error.to_string()))?;
    let predicate_type = statement
        .get("predicateType")
        .and_then(Value::as_str)
        .ok_or(StatementError::Missing("predicateType"))?
        .to_owned();
    let raw_subjects = statement
        .get("subject")
        .and_then(Value::as_array)
        .ok_or(StatementError::Missing("subject"))?;
    if raw_subjects.len() > MAX_SUBJECTS {
        return Err(StatementError::TooManySubjects(raw_subjects.len()));
    }
    let subjects = raw_subjects.iter().map(read_subject).collect();
    let predicate = (predicate_type == SLSA_PROVENANCE_V1)
        .then(|| statement.get("predicate").map(read_slsa_predicate))
        .flatten();
    Ok(StatementFacts {
        predicate_type,
        subjects,
        predicate,
    })
}

fn read_subject(subject: &Value) -> Subject {
    let digest = subject
        .get("digest")
        .and_then(Value::as_object)
        .map(|digests| {
            digests
                .iter()
                .filter_map(|(algorithm, value)| {
                    value
                        .as_str()
                        .map(|hex| (algorithm.clone(), hex.to_ascii_lowercase()))
                })
                .collect()
        })
        .unwrap_or_default();
    Subject {
        name: text(subject, &["name"]).unwrap_or_default(),
        digest,
    }
}

/// GitHub's SLSA v1 predicate, as `actions/attest-build-provenance` writes it.
fn read_slsa_predicate(predicate: &Value) -> PredicateClaims {
    let github = &["buildDefinition", "internalParameters", "github"];
    let at = |path: &[&str], key: &str| {
        let mut full = path.to_vec();
        full.push(key);
        text(predicate, &full)
    };
    let resolved_commit = predicate
        .pointer("/buildDefinition/resolvedDependencies")
        .and_then(Value::as_array)
        .and_then(|dependencies| {
            dependencies
                .iter()
                .find_map(|dependency| text(dependency, &["digest", "gitCommit"]))
        });
    PredicateClaims {
        build_type: text(predicate, &["buildDefinition", "buildType"]),
        workflow_repository: text(
            predicate,
            &[
                "buildDefinition",
                "externalParameters",
                "workflow",
                "repository",
            ],
        ),
        workflow_path: text(
            predicate,
            &["buildDefinition", "externalParameters", "workflow", "path"],
        ),
        workflow_ref: text(
            predicate,
            &["buildDefinition", "externalParameters", "workflow", "ref"],
        ),
        event_name: at(github, "event_name"),
        repository_id: at(github, "repository_id"),
        repository_owner_id: at(github, "repository_owner_id"),
        runner_environment: at(github, "runner_environment"),
        resolved_commit,
        builder_id: text(predicate, &["runDetails", "builder", "id"]),
        invocation_id: text(predicate, &["runDetails", "metadata", "invocationId"]),
    }
}

/// A string at `path`; numbers are rendered too, because GitHub writes IDs either way.
fn text(value: &Value, path: &[&str]) -> Option<String> {
    let found = path.iter().try_fold(value, |value, key| value.get(key))?;
    match found {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GHCR_STATEMENT: &str =
        include_str!("../../tests/data/oci/slsa-statement.publicgood-ghcr.json");

    #[test]
    fn github_slsa_predicate_is_read_in_full() {
        let facts = read_statement(GHCR_STATEMENT.as_bytes()).unwrap();
        assert_eq!(facts.predicate_type, SLSA_PROVENANCE_V1);
        assert!(!facts.subjects.is_empty());
        assert!(facts.subjects[0].digest.contains_key("sha256"));
        let predicate = facts.predicate.expect("SLSA predicate");
        assert!(predicate
            .workflow_repository
            .as_deref()
            .unwrap()
            .starts_with("https://github.com/"));
        assert!(predicate
            .workflow_path
            .as_deref()
            .unwrap()
            .starts_with(".github/workflows/"));
        assert!(predicate.workflow_ref.is_some());
        assert!(predicate.event_name.is_some());
        assert!(predicate.repository_id.is_some());
        assert!(predicate.repository_owner_id.is_some());
        assert_eq!(
            predicate.runner_environment.as_deref(),
            Some("github-hosted")
        );
        assert_eq!(
            predicate.resolved_commit.as_ref().map(String::len),
            Some(40)
        );
        assert!(predicate.builder_id.is_some());
        assert!(predicate.invocation_id.is_some());
    }

    #[test]
    fn statements_missing_their_parts_are_named() {
        let cases = [
            ("not json", "failed to parse"),
            (r#"{"subject": []}"#, "no predicateType"),
            (r#"{"predicateType": "x"}"#, "no subject"),
        ];
        for (input, expected) in cases {
            let error = read_statement(input.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn other_predicate_types_carry_no_slsa_claims() {
        let facts = read_statement(
            br#"{"predicateType": "https://spdx.dev/Document", "subject": [], "predicate": {}}"#,
        )
        .unwrap();
        assert_eq!(facts.predicate, None);
    }
}
