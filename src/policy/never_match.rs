//! Values no certificate can ever carry, refused by validation (so the webhook refuses them
//! too, and `policy check` reports them as errors): each check says why, and what would match.

/// The events that start GitHub Actions workflows, as the certificate's Build Trigger (the
/// run's `github.event_name`) names them: GitHub's "Events that trigger workflows", plus
/// `dynamic`, the event of runs GitHub starts itself (Dependabot, CodeQL default setup).
/// `workflow_call` is missing on purpose: a called workflow reports its caller's event.
pub const GITHUB_ACTIONS_EVENTS: [&str; 36] = [
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "dynamic",
    "fork",
    "gollum",
    "image_version",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "milestone",
    "page_build",
    "project",
    "project_card",
    "project_column",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_target",
    "push",
    "registry_package",
    "release",
    "repository_dispatch",
    "schedule",
    "status",
    "watch",
    "workflow_dispatch",
    "workflow_run",
];

/// An `id` with leading zeros: GitHub writes IDs without them, and IDs are compared as text.
pub(crate) fn id_never_matches(what: &str, id: &str) -> Option<String> {
    id.starts_with('0').then(|| {
        let written = id.trim_start_matches('0');
        let fix = if written.is_empty() {
            "GitHub IDs start at 1".to_string()
        } else {
            format!("write `{written}`")
        };
        format!("{what} id `{id}` has leading zeros and would never match the certificate, which writes IDs without them; {fix}")
    })
}

/// A calling workflow below `.github/workflows/`: GitHub only runs workflows directly there.
pub(crate) fn workflow_in_subdirectory(text: &str) -> String {
    format!(
        "workflow `{text}` reaches into subdirectories of .github/workflows/, where GitHub never runs workflows, so that part never matches; write .github/workflows/FILE (a `*` in FILE is fine)"
    )
}

/// The `@…` of a signer workflow: the certificate's Build Signer URI ends in `@refs/…`, and
/// its Build Signer Digest is the commit, so a short ref (`@v2`, `@main`) never matches.
pub(crate) fn signer_ref_never_matches(text: &str, pinned: &str) -> Option<String> {
    if is_commit(pinned) {
        return None;
    }
    if !pinned.starts_with("refs/") {
        return Some(format!(
            "signer workflow `{text}` would never match: the certificate names the signer's ref in full (`@refs/tags/{pinned}` or `@refs/heads/{pinned}`) or pins its commit; write @refs/… or @ and the 40-hex commit"
        ));
    }
    ref_never_matches(pinned).map(|problem| format!("signer workflow `{text}`: {problem}"))
}

/// A ref glob no git ref can match (git check-ref-format), beyond the `refs/` prefix that
/// validation requires.
pub(crate) fn ref_never_matches(text: &str) -> Option<String> {
    let problem = if text.contains("..") {
        "contains `..`"
    } else if text.contains("//") {
        "contains an empty path component `//`"
    } else if text.ends_with('/') {
        "ends with `/`"
    } else if text.ends_with(".lock") {
        "ends with `.lock`"
    } else if text.contains("@{") {
        "contains `@{`"
    } else if text.contains(|c: char| c.is_whitespace() || c.is_control() || "~^:".contains(c)) {
        "contains a space, control character, `~`, `^` or `:`"
    } else {
        return None;
    };
    Some(format!(
        "ref `{text}` {problem}, which git does not allow in a ref name, so it would never match"
    ))
}

/// A trigger that is not a GitHub Actions event name.
pub(crate) fn trigger_never_matches(text: &str) -> Option<String> {
    if GITHUB_ACTIONS_EVENTS.contains(&text) {
        return None;
    }
    let lower = text.to_ascii_lowercase().replace('-', "_");
    Some(if text == "workflow_call" {
        "trigger `workflow_call` never appears in a certificate: a called (reusable) workflow reports the event of the workflow that called it; list that event".to_string()
    } else if GITHUB_ACTIONS_EVENTS.contains(&lower.as_str()) {
        format!("trigger `{text}` is not a GitHub Actions event name; write `{lower}`")
    } else {
        format!("trigger `{text}` is not a GitHub Actions event name (such as push or workflow_dispatch; docs/operating.md lists them)")
    })
}

pub(super) fn is_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RISKY_TRIGGERS;

    #[test]
    fn every_risky_trigger_is_an_event() {
        for trigger in RISKY_TRIGGERS {
            assert!(GITHUB_ACTIONS_EVENTS.contains(&trigger), "{trigger}");
        }
        let mut sorted = GITHUB_ACTIONS_EVENTS;
        sorted.sort_unstable();
        assert_eq!(
            sorted, GITHUB_ACTIONS_EVENTS,
            "kept sorted, without repeats"
        );
    }
}
