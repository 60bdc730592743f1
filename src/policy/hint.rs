//! Fix hints for the command line: for a build a rule refused, the policy line that would
//! trust it, where one line would. Only gaps in what a rule lists get a hint; a pinned ID
//! that differs, a predicate that contradicts its certificate, an age or a revocation is
//! what the gate exists to refuse, and gets none. Pure.

use super::config::{Rule, RISKY_TRIGGERS};
use super::github::{parse_repository_uri, parse_workflow_uri};
use super::rule::{Check, RuleViolation};
use crate::verify::claims::VerifiedAttestation;

/// The line to add to `rule` for each check of `violation` that a listed value would fix,
/// worded "add to rule …: key: [values]" with the rule's current values kept.
pub fn fix_hints(
    rule: &Rule,
    attestation: &VerifiedAttestation,
    violation: &RuleViolation,
) -> Vec<String> {
    let claims = &attestation.certificate;
    // Only the rule's own lists are extended: an environment's constraint narrows the rule
    // on purpose, and the build is one the rule already admits elsewhere.
    let failed = |check: Check| {
        violation
            .failures
            .iter()
            .any(|f| f.check == check && f.environment.is_none())
    };
    // A build started from outside the reviewed history (a fork's pull request, a comment)
    // is not one to trust by adding its repository or ref: say that, and nothing else.
    if let Some(trigger) = claims.build_trigger.as_deref() {
        if failed(Check::Trigger) && RISKY_TRIGGERS.contains(&trigger) {
            return vec![format!(
                "trigger {trigger} runs code or input from forks, pull requests, issues or comments: release the image from a push, release or workflow_dispatch run instead of trusting it"
            )];
        }
    }
    let add = |line: String| {
        format!(
            "if this build is to be trusted, add to rule {:?}: {line}",
            rule.name()
        )
    };
    let mut hints = Vec::new();
    let source = claims
        .source_repository_uri
        .as_deref()
        .and_then(parse_repository_uri);
    if let Some(source) = source.filter(|_| failed(Check::SourceRepository)) {
        let trusted = rule.repositories().iter().any(|entry| {
            entry.owner().eq_ignore_ascii_case(source.owner)
                && entry.repo().eq_ignore_ascii_case(source.repo)
        }) || rule
            .owners()
            .iter()
            .any(|owner| owner.name().eq_ignore_ascii_case(source.owner));
        if !trusted {
            let id = claims
                .source_repository_identifier
                .as_deref()
                .map(|id| format!(", id: {}", quoted(id)))
                .unwrap_or_default();
            hints.push(add(format!(
                "repositories: [{{name: {}{id}}}]",
                quoted(&format!("{}/{}", source.owner, source.repo))
            )));
        }
    }
    let calling = claims
        .build_config_uri
        .as_deref()
        .and_then(parse_workflow_uri);
    if let (Some(calling), Some(workflows)) = (calling, rule.workflows()) {
        if failed(Check::CallingWorkflow) && !workflows.iter().any(|glob| glob.as_str() == "**") {
            let listed = super::GlobList::new(workflows.to_vec())
                .map(|list| list.is_match(calling.path))
                .unwrap_or(true);
            if !listed {
                hints.push(add(extended("workflows", workflows, calling.path)));
            }
        }
    }
    if let Some(source_ref) = claims.source_repository_ref.as_deref() {
        // A pull request's merge ref is a build of unreviewed code whatever its trigger.
        if failed(Check::Ref)
            && !source_ref.starts_with("refs/pull/")
            && !rule
                .effective_refs()
                .iter()
                .any(|glob| glob.as_str() == source_ref)
        {
            let mut hint = add(extended("refs", rule.effective_refs(), source_ref));
            if source_ref.starts_with("refs/tags/") {
                hint.push_str(
                    " (or a pattern such as \"refs/tags/v*\"; protect those tags with a tag ruleset)",
                );
            }
            hints.push(hint);
        }
    }
    if let Some(trigger) = claims.build_trigger.as_deref() {
        if failed(Check::Trigger) && !rule.effective_triggers().allows(trigger) {
            hints.push(add(extended(
                "triggers",
                rule.effective_triggers().triggers(),
                trigger,
            )));
        }
    }
    let signer = claims
        .build_signer_uri
        .as_deref()
        .and_then(parse_workflow_uri);
    let self_signed =
        claims.build_signer_uri.is_some() && claims.build_signer_uri == claims.build_config_uri;
    if let (Some(signer), false) = (signer, self_signed) {
        let listed = rule
            .signer_workflows()
            .iter()
            .any(|entry| entry.allows(&signer, claims.build_signer_digest.as_deref()));
        if failed(Check::SignerWorkflow) && !listed {
            // Pinned to the commit that signed: what `policy check` asks of every signer.
            let pin = match claims.build_signer_digest.as_deref() {
                Some(digest)
                    if digest.len() == 40 && digest.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    digest
                }
                _ => signer.git_ref,
            };
            let entry = format!(
                "{}/{}/{}@{pin}",
                signer.repository.owner, signer.repository.repo, signer.path
            );
            let mut hint = add(extended("signerWorkflows", rule.signer_workflows(), &entry));
            if rule.signer_workflows().is_empty() {
                hint.push_str(
                    " (builds signed by their own workflow then also need allowSelfSigned: true)",
                );
            }
            hints.push(hint);
        }
    }
    if let Some(runner) = claims.runner_environment.as_deref() {
        let known = ["github-hosted", "self-hosted"].contains(&runner);
        if failed(Check::Runner) && known && !rule.effective_runners().iter().any(|r| r == runner) {
            hints.push(add(extended("runners", rule.effective_runners(), runner)));
        }
    }
    hints
}

/// `key: ["current", …, "added"]`, as one YAML line.
fn extended<T: std::fmt::Display>(key: &str, current: &[T], added: &str) -> String {
    let values: Vec<String> = current
        .iter()
        .map(|value| quoted(&value.to_string()))
        .chain(std::iter::once(quoted(added)))
        .collect();
    format!("{key}: [{}]", values.join(", "))
}

/// A YAML double-quoted scalar (JSON's escaping is valid YAML).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{evaluate, Policy};
    use crate::verify::claims::{CertificateClaims, Instance};

    fn attestation(edit: impl Fn(&mut CertificateClaims)) -> VerifiedAttestation {
        let mut certificate = CertificateClaims {
            issuer: Some("https://token.actions.githubusercontent.com".into()),
            source_repository_uri: Some("https://github.com/acme/api".into()),
            source_repository_identifier: Some("804070735".into()),
            source_repository_owner_uri: Some("https://github.com/acme".into()),
            source_repository_owner_identifier: Some("16248153".into()),
            source_repository_ref: Some("refs/heads/main".into()),
            build_config_uri: Some(
                "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main".into(),
            ),
            build_signer_uri: Some(
                "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main".into(),
            ),
            subject_alternative_name: Some(
                "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main".into(),
            ),
            build_trigger: Some("push".into()),
            runner_environment: Some("github-hosted".into()),
            ..CertificateClaims::default()
        };
        edit(&mut certificate);
        VerifiedAttestation {
            instance: Instance::Github,
            bundle_digest: "sha256:bb".into(),
            signed_at: Some("2024-06-01T00:00:00Z".into()),
            predicate_type: "https://example.com/other-predicate".into(),
            subjects: Vec::new(),
            certificate,
            predicate: None,
        }
    }

    /// A change to the certificate of the build that otherwise satisfies the rule.
    type ClaimsEdit = Box<dyn Fn(&mut CertificateClaims)>;

    const REUSABLE: &str = "https://github.com/acme/builder/.github/workflows/build.yml";
    const SIGNER_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    const POLICY: &str = r#"version: 1
rules:
  - name: acme
    images: ["ghcr.io/acme/**"]
    repositories: [{name: acme/api, id: "804070735"}]
    workflows: [".github/workflows/release.yml"]
    predicateTypes: ["https://example.com/other-predicate"]
"#;

    fn hints_for(edit: impl Fn(&mut CertificateClaims)) -> Vec<String> {
        let policy = Policy::from_yaml(POLICY).expect("valid");
        let rule = &policy.rules()[0];
        let attestation = attestation(edit);
        match evaluate(
            rule,
            &crate::policy::Destination::Unselected,
            &attestation,
            jiff::Timestamp::UNIX_EPOCH,
        ) {
            Ok(()) => Vec::new(),
            Err(violation) => fix_hints(rule, &attestation, &violation),
        }
    }

    #[test]
    fn each_listable_gap_gets_the_line_to_add() {
        let build = |workflow: &str| {
            format!("https://github.com/acme/api/.github/workflows/{workflow}@refs/heads/main")
        };
        let cases: Vec<(ClaimsEdit, Vec<&str>)> = vec![
            (Box::new(|_| {}), vec![]),
            (
                Box::new(move |claims| {
                    claims.build_config_uri = Some(build("deploy.yml"));
                    claims.build_signer_uri = Some(build("deploy.yml"));
                    claims.subject_alternative_name = Some(build("deploy.yml"));
                }),
                vec![
                    r#"add to rule "acme": workflows: [".github/workflows/release.yml", ".github/workflows/deploy.yml"]"#,
                ],
            ),
            (
                Box::new(|claims| {
                    claims.source_repository_ref = Some("refs/tags/v1.2.0".into());
                    for uri in [
                        &mut claims.build_config_uri,
                        &mut claims.build_signer_uri,
                        &mut claims.subject_alternative_name,
                    ] {
                        *uri = Some("https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1.2.0".into());
                    }
                }),
                vec![
                    r#"add to rule "acme": refs: ["refs/heads/main", "refs/tags/v1.2.0"] (or a pattern such as "refs/tags/v*""#,
                ],
            ),
            (
                Box::new(|claims| claims.build_trigger = Some("merge_group".into())),
                vec![
                    r#"add to rule "acme": triggers: ["push", "release", "workflow_dispatch", "schedule", "merge_group"]"#,
                ],
            ),
            (
                Box::new(|claims| claims.build_trigger = Some("pull_request_target".into())),
                vec!["trigger pull_request_target runs code or input from forks"],
            ),
            (
                Box::new(|claims| {
                    claims.build_signer_uri = Some(format!("{REUSABLE}@refs/tags/v1"));
                    claims.subject_alternative_name = Some(format!("{REUSABLE}@refs/tags/v1"));
                    claims.build_signer_digest = Some(SIGNER_COMMIT.into());
                }),
                vec![
                    r#"add to rule "acme": signerWorkflows: ["acme/builder/.github/workflows/build.yml@0123456789abcdef0123456789abcdef01234567"] (builds signed by their own workflow then also need allowSelfSigned: true)"#,
                ],
            ),
            // A fork's pull request: no repository or ref to add, only why not.
            (
                Box::new(|claims| {
                    claims.build_trigger = Some("pull_request".into());
                    claims.source_repository_uri = Some("https://github.com/mallory/api".into());
                    claims.source_repository_ref = Some("refs/pull/31/merge".into());
                }),
                vec!["trigger pull_request runs code or input from forks"],
            ),
            (
                Box::new(|claims| claims.source_repository_ref = Some("refs/pull/31/merge".into())),
                vec![],
            ),
            (
                Box::new(|claims| claims.runner_environment = Some("self-hosted".into())),
                vec![r#"add to rule "acme": runners: ["github-hosted", "self-hosted"]"#],
            ),
            (
                Box::new(|claims| {
                    claims.source_repository_uri = Some("https://github.com/acme/web".into());
                    claims.source_repository_identifier = Some("42".into());
                    for uri in [
                        &mut claims.build_config_uri,
                        &mut claims.build_signer_uri,
                        &mut claims.subject_alternative_name,
                    ] {
                        *uri = Some("https://github.com/acme/web/.github/workflows/release.yml@refs/heads/main".into());
                    }
                }),
                vec![r#"add to rule "acme": repositories: [{name: "acme/web", id: "42"}]"#],
            ),
            // What the gate exists to refuse gets no hint: a re-created repository of the name.
            (
                Box::new(|claims| claims.source_repository_identifier = Some("1".into())),
                vec![],
            ),
        ];
        for (edit, expected) in cases {
            let hints = hints_for(edit);
            assert_eq!(hints.len(), expected.len(), "{hints:?}");
            for (hint, fragment) in hints.iter().zip(expected) {
                assert!(hint.contains(fragment), "{hint}\n  expected: {fragment}");
            }
        }
    }
}
