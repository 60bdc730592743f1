//! Errors a policy source can have, each pointing at the field and line to fix.

use serde::Serialize;

/// A position in the policy source, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SourceLocation {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

/// One problem in a policy: where it is, which field (`rules[1].refs[0]`), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyIssue {
    /// Absent when the source could not be searched for the value (very large policies).
    pub location: Option<SourceLocation>,
    /// The field path as serde_yaml writes it; empty for the whole document.
    pub path: String,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl std::fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(location) = self.location {
            write!(f, "{location}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a policy source was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The source exceeds [`MAX_POLICY_BYTES`](super::MAX_POLICY_BYTES).
    #[error("policy is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Bytes in the source.
        size: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// Not YAML, or not the shape of a policy (unknown field, wrong type, missing field) in
    /// one place; several such places are [`PolicyError::Invalid`].
    #[error("{0}")]
    Syntax(PolicyIssue),
    /// More rules than [`MAX_RULES`](super::MAX_RULES).
    #[error("policy has {count} rules, more than the limit of {limit}")]
    TooManyRules {
        /// Rules in the source.
        count: usize,
        /// Rules allowed.
        limit: usize,
    },
    /// More globs than [`MAX_GLOBS`](super::MAX_GLOBS).
    #[error("policy has {count} globs (exemptImages, and rules' images, refs and workflows), more than the limit of {limit}")]
    TooManyGlobs {
        /// Globs in the source.
        count: usize,
        /// Globs allowed.
        limit: usize,
    },
    /// Well-formed YAML whose values do not make a sound policy, or that is not the shape of
    /// a policy in several places; lists every problem found.
    #[error("{}", describe_issues(issues, *omitted))]
    Invalid {
        /// The problems, in source order.
        issues: Vec<PolicyIssue>,
        /// Problems found beyond the reporting limit.
        omitted: usize,
    },
}

impl PolicyError {
    /// The located problems, for callers that print or count them one by one.
    pub fn issues(&self) -> &[PolicyIssue] {
        match self {
            PolicyError::Syntax(issue) => std::slice::from_ref(issue),
            PolicyError::Invalid { issues, .. } => issues,
            PolicyError::TooLarge { .. }
            | PolicyError::TooManyRules { .. }
            | PolicyError::TooManyGlobs { .. } => &[],
        }
    }
}

fn describe_issues(issues: &[PolicyIssue], omitted: usize) -> String {
    if let ([issue], 0) = (issues, omitted) {
        return issue.to_string();
    }
    let total = issues.len() + omitted;
    let mut text = format!("{total} problems in policy:");
    for issue in issues {
        text.push_str("\n  ");
        text.push_str(&issue.to_string());
    }
    if omitted > 0 {
        text.push_str(&format!("\n  ... and {omitted} more"));
    }
    text
}

impl PolicyIssue {
    /// Path, line (0 when not located) and message, for test tables.
    #[cfg(test)]
    pub(crate) fn brief(&self) -> (String, usize, String) {
        (
            self.path.clone(),
            self.location.map_or(0, |location| location.line),
            self.message.clone(),
        )
    }

    /// Path and line of each of `briefs`, for test tables.
    #[cfg(test)]
    pub(crate) fn paths_and_lines(briefs: &[(String, usize, String)]) -> Vec<(&str, usize)> {
        briefs
            .iter()
            .map(|(path, line, _)| (path.as_str(), *line))
            .collect()
    }

    /// Turns a serde_yaml error into an issue, keeping its location apart from its text.
    pub(crate) fn from_yaml_error(error: &serde_yaml::Error) -> PolicyIssue {
        let location = error.location().map(|location| SourceLocation {
            line: location.line(),
            column: location.column(),
        });
        let mut message = error.to_string();
        // serde_yaml appends the position to its own text; it is shown in front instead.
        if let Some(location) = location {
            let suffix = format!(" at {location}");
            if let Some(start) = message.find(&suffix) {
                message.replace_range(start..start + suffix.len(), "");
            }
        }
        PolicyIssue {
            location,
            path: String::new(),
            message,
        }
    }
}
