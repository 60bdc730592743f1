//! What `policy check` says beyond "valid": warnings about sound policies that trust more
//! than their author probably means. (Values no certificate can ever carry are refused by
//! validation, from `never_match.rs`.)

use super::config::{
    Policy, ATTESTATION_ALIASES, CYCLONEDX_BOM, DEFAULT_REFS, DEFAULT_RUNNERS, DEFAULT_TRIGGERS,
    RISKY_TRIGGERS, SLSA_PROVENANCE_V1, SPDX_DOCUMENT_V2_3,
};
use super::document::{PolicyDocument, RuleDocument, RuleEnvironmentDocument};
use super::duration::MaxAge;
use super::error::{PolicyError, PolicyIssue};
use super::glob::has_glob_syntax;
use super::glob::{Glob, GlobList};
use super::locate::FieldPath;
use super::never_match::is_commit;
use super::validate::{locate_nearest, parse_with_document, EVERYTHING, LOCATE_BUDGET_BYTES};
use globset::{GlobBuilder, GlobMatcher};
use std::collections::HashMap;

/// The most warnings listed; a large policy written one way could otherwise give thousands.
const MAX_WARNINGS: usize = 200;
/// Glob comparisons the shadowing check may make before it gives up (and says so).
const MAX_SHADOW_COMPARISONS: usize = 2_000_000;

/// A policy that loaded, and what `policy check` warns about in it.
#[derive(Debug)]
pub struct CheckedPolicy {
    /// The policy, exactly as [`Policy::from_yaml`] builds it.
    pub policy: Policy,
    /// Located warnings, in source order.
    pub warnings: Vec<PolicyIssue>,
}

impl Policy {
    /// [`Policy::from_yaml`] plus the warnings of `policy check`: unpinned repositories and
    /// owners, signers not pinned to a commit, risky triggers, and rules that are never tried.
    pub fn check_yaml(source: &str) -> Result<CheckedPolicy, PolicyError> {
        let (document, policy) = parse_with_document(source)?;
        let located_count = (LOCATE_BUDGET_BYTES / source.len().max(1)).max(1);
        let found = warnings(&document);
        let omitted = found.len().saturating_sub(MAX_WARNINGS);
        let mut warnings: Vec<PolicyIssue> = found
            .into_iter()
            .take(MAX_WARNINGS)
            .enumerate()
            .map(|(position, (path, message))| PolicyIssue {
                location: (position < located_count)
                    .then(|| locate_nearest(source, &path))
                    .flatten(),
                path: path.to_string(),
                message,
            })
            .collect();
        warnings.sort_by_key(|issue| {
            issue
                .location
                .map_or((1, 0, 0), |location| (0, location.line, location.column))
        });
        if omitted > 0 {
            warnings.push(PolicyIssue {
                location: None,
                path: String::new(),
                message: format!("... and {omitted} more warnings"),
            });
        }
        Ok(CheckedPolicy { policy, warnings })
    }
}

// ---- warnings: sound, but probably not what the author means ----

fn warnings(document: &PolicyDocument) -> Vec<(FieldPath, String)> {
    let rules = FieldPath::root().key("rules");
    let mut found = Vec::new();
    for (index, pattern) in document.exempt_images.iter().enumerate() {
        if pattern == EVERYTHING {
            found.push((
                FieldPath::root().key("exemptImages").index(index),
                "`**` exempts every image: nothing is verified and no rule is ever tried; exempt the repositories that need it instead (`registry.k8s.io/**`)".to_string(),
            ));
        }
    }
    for (index, rule) in document.rules.iter().enumerate() {
        rule_warnings(&rules.index(index), rule, &mut found);
    }
    shadowed_rules(document, &mut found);
    found
}

fn rule_warnings(path: &FieldPath, rule: &RuleDocument, found: &mut Vec<(FieldPath, String)>) {
    let owner_pinned = |owner: &str| {
        rule.owners
            .iter()
            .any(|entry| entry.id.is_some() && entry.name.eq_ignore_ascii_case(owner))
    };
    for (index, repository) in rule.repositories.iter().enumerate() {
        let owner = repository.name.split('/').next().unwrap_or_default();
        if repository.id.is_none() && !owner_pinned(owner) {
            found.push((
                path.key("repositories").index(index),
                format!(
                    "repository `{0}` has no `id`, so it is trusted by name alone: if it is renamed or deleted (or its owner's login is freed), someone else can create a repository of that name and its builds are trusted (repojacking); pin it with `id: \"…\"` from `gh api repos/{0} --jq .id`, or pin its owner",
                    repository.name
                ),
            ));
        }
    }
    for (index, owner) in rule.owners.iter().enumerate() {
        if owner.id.is_none() {
            found.push((
                path.key("owners").index(index),
                format!(
                    "owner `{0}` has no `id`, so it is trusted by login alone: a login that is renamed or deleted can be registered by someone else, whose repositories' builds are then trusted (repojacking); pin it with `id: \"…\"` from `gh api users/{0} --jq .id`",
                    owner.name
                ),
            ));
        }
    }
    for (index, pattern) in rule.images.iter().enumerate() {
        if pattern == EVERYTHING {
            found.push((
                path.key("images").index(index),
                "`**` covers every image on every registry, so a pod spec chooses which registry the webhook contacts to look for attestations (a host glob is refused for that reason; `**` is allowed as a deliberate choice); name the registries instead (`ghcr.io/**`), or restrict the webhook's egress".to_string(),
            ));
        }
    }
    for (index, pattern) in rule.refs.iter().flatten().enumerate() {
        if pattern == EVERYTHING || pattern == "refs/**" {
            found.push((
                path.key("refs").index(index),
                format!("`{pattern}` trusts builds from every branch and tag, so anyone who can push a branch to a trusted repository can build an image this rule admits; list the protected refs (the default is {})", DEFAULT_REFS.join(", ")),
            ));
        }
    }
    for (index, signer) in rule.signer_workflows.iter().enumerate() {
        let pinned = signer
            .split_once('@')
            .is_some_and(|(_, pinned)| is_commit(pinned));
        if !pinned {
            found.push((
                path.key("signerWorkflows").index(index),
                format!(
                    "signer workflow `{signer}` is not pinned to a commit: it is matched by repository name and ref, so whoever can move that ref, or takes over the repository's name, controls what signs; append @ and the workflow's 40-hex commit"
                ),
            ));
        }
    }
    for (index, trigger) in rule.triggers.iter().flatten().enumerate() {
        if RISKY_TRIGGERS.contains(&trigger.as_str()) {
            found.push((
                path.key("triggers").index(index),
                format!(
                    "trigger `{trigger}` runs code or input from forks, pull requests, issues or comments with the base repository's identity, so a build it starts is not a build of reviewed code; remove it unless this rule is meant for such builds"
                ),
            ));
        }
    }
    required_attestation_warnings(path, rule, found);
    for (index, environment) in rule.environments.iter().enumerate() {
        environment_warnings(
            &path.key("environments").index(index),
            rule,
            environment,
            found,
        );
    }
}

/// A predicate type as `requireAttestations` resolves it (aliases to their URIs).
fn resolved_attestation(text: &str) -> &str {
    ATTESTATION_ALIASES
        .iter()
        .find(|(alias, _)| *alias == text)
        .map_or(text, |(_, predicate_type)| predicate_type)
}

/// What an operator trips on with `requireAttestations`: a list without the provenance (an
/// SBOM alone then admits, and nothing compares a predicate with its certificate), and both
/// SBOM formats (`actions/attest-sbom` attests the one SBOM it is given, so most builds have
/// one format, and every image of the others is refused).
fn required_attestation_warnings(
    path: &FieldPath,
    rule: &RuleDocument,
    found: &mut Vec<(FieldPath, String)>,
) {
    if let Some(required) = &rule.require_attestations {
        let has = |wanted: &str| {
            required
                .iter()
                .any(|text| resolved_attestation(text) == wanted)
        };
        if !required.is_empty() && !has(SLSA_PROVENANCE_V1) {
            found.push((
                path.key("requireAttestations"),
                "requireAttestations leaves out `provenance`: an image is admitted on the listed attestations alone, without SLSA provenance, and no predicate is compared with its certificate (`predicate_agreement`); add `provenance` unless that is meant".to_string(),
            ));
        }
    }
    let both_formats_at =
        std::iter::once((path.key("requireAttestations"), &rule.require_attestations))
            .chain(
                rule.environments
                    .iter()
                    .enumerate()
                    .map(|(index, environment)| {
                        (
                            path.key("environments")
                                .index(index)
                                .key("requireAttestations"),
                            &environment.require_attestations,
                        )
                    }),
            )
            .filter(|(_, required)| {
                let listed = |wanted: &str| {
                    required
                        .iter()
                        .flatten()
                        .chain(rule.require_attestations.iter().flatten())
                        .any(|text| resolved_attestation(text) == wanted)
                };
                required.is_some() && listed(SPDX_DOCUMENT_V2_3) && listed(CYCLONEDX_BOM)
            })
            .map(|(at, _)| at)
            .next();
    if let Some(at) = both_formats_at {
        found.push((
            at,
            "both `spdx` and `cyclonedx` are required: each must be attested, and actions/attest-sbom attests the one SBOM it is given, so an image with an SBOM in one format is refused; require the format your builds produce".to_string(),
        ));
    }
}

/// An environment's constraints hold besides the rule's, so a value the rule does not allow
/// admits nothing there: an author who meant to widen the rule for one environment is told.
fn environment_warnings(
    path: &FieldPath,
    rule: &RuleDocument,
    environment: &RuleEnvironmentDocument,
    found: &mut Vec<(FieldPath, String)>,
) {
    let name = &environment.name;
    let narrower_only = |key: &str, value: &str, rule_values: String| {
        format!(
            "{key} `{value}` of environment `{name}` admits nothing there: rule `{}` allows {key} {rule_values} in every environment, and an environment's constraints only narrow the rule's; add it to the rule's {key} too",
            rule.name
        )
    };
    let rule_triggers: Vec<&str> = match &rule.triggers {
        Some(triggers) => triggers.iter().map(String::as_str).collect(),
        None => DEFAULT_TRIGGERS.to_vec(),
    };
    for (index, trigger) in environment.triggers.iter().flatten().enumerate() {
        if !rule_triggers.contains(&trigger.as_str()) {
            found.push((
                path.key("triggers").index(index),
                narrower_only("triggers", trigger, rule_triggers.join(", ")),
            ));
        }
    }
    let rule_runners: Vec<&str> = match &rule.runners {
        Some(runners) => runners.iter().map(String::as_str).collect(),
        None => DEFAULT_RUNNERS.to_vec(),
    };
    for (index, runner) in environment.runners.iter().flatten().enumerate() {
        if !rule_runners.contains(&runner.as_str()) {
            found.push((
                path.key("runners").index(index),
                narrower_only("runners", runner, rule_runners.join(", ")),
            ));
        }
    }
    let default_refs: Vec<String> = DEFAULT_REFS.iter().map(|text| text.to_string()).collect();
    let lists = [
        (
            "refs",
            rule.refs.as_ref().or(Some(&default_refs)),
            &environment.refs,
        ),
        ("workflows", rule.workflows.as_ref(), &environment.workflows),
    ];
    for (key, rule_patterns, environment_patterns) in lists {
        let (Some(rule_patterns), Some(environment_patterns)) =
            (rule_patterns, environment_patterns)
        else {
            continue;
        };
        let Some(allowed) = compiled(rule_patterns) else {
            continue;
        };
        // Only a literal value can be shown to fall outside the rule's globs.
        for (index, value) in environment_patterns.iter().enumerate() {
            let literal = Glob::new(value).is_ok_and(|glob| glob.is_literal());
            if literal && !allowed.is_match(value) {
                found.push((
                    path.key(key).index(index),
                    narrower_only(key, value, rule_patterns.join(", ")),
                ));
            }
        }
    }
    let ages = (
        rule.max_age
            .as_deref()
            .and_then(|text| MaxAge::parse(text).ok()),
        environment
            .max_age
            .as_deref()
            .and_then(|text| MaxAge::parse(text).ok()),
    );
    if let (Some(rule_age), Some(environment_age)) = ages {
        if environment_age >= rule_age {
            found.push((
                path.key("maxAge"),
                format!(
                    "maxAge {environment_age} of environment `{name}` changes nothing: rule `{}` already allows builds at most {rule_age} old everywhere, and an environment's constraints only narrow the rule's",
                    rule.name
                ),
            ));
        }
    }
}

fn compiled(patterns: &[String]) -> Option<GlobList> {
    let globs = patterns
        .iter()
        .map(|pattern| Glob::new(pattern).ok())
        .collect::<Option<Vec<_>>>()?;
    GlobList::new(globs).ok()
}

/// An image pattern that may cover others: an exemption or a rule's pattern.
struct General<'d> {
    owner: String,
    pattern: &'d str,
    segments: Vec<Segment<'d>>,
}

/// One `/`-separated segment of a pattern, with its matcher when it is a glob.
struct Segment<'d> {
    text: &'d str,
    matcher: Option<GlobMatcher>,
}

/// Only the first rule whose images match an image is tried, after the exemptions: a later
/// pattern that an earlier one covers never selects its rule.
fn shadowed_rules(document: &PolicyDocument, found: &mut Vec<(FieldPath, String)>) {
    let mut generals: Vec<General<'_>> = document
        .exempt_images
        .iter()
        .enumerate()
        .filter_map(|(index, pattern)| {
            general(
                format!("exemptImages[{index}] (admitted without verification)"),
                pattern,
            )
        })
        .collect();
    let mut by_host: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut any_host: Vec<usize> = Vec::new();
    for (index, general) in generals.iter().enumerate() {
        file_by_host(index, general, &mut by_host, &mut any_host);
    }
    let mut comparisons = 0;
    let rules_path = FieldPath::root().key("rules");
    for (rule_index, rule) in document.rules.iter().enumerate() {
        let path = rules_path.index(rule_index);
        let mut covered = Vec::new();
        for (pattern_index, pattern) in rule.images.iter().enumerate() {
            let Some(specific) = splittable(pattern) else {
                continue;
            };
            let host = specific.first().copied().unwrap_or_default();
            let candidates = by_host.get(host).into_iter().flatten().chain(&any_host);
            for &candidate in candidates {
                comparisons += 1;
                if comparisons > MAX_SHADOW_COMPARISONS {
                    found.push((
                        FieldPath::root().key("rules"),
                        format!("too many image patterns to check every one for shadowing (stopped after {MAX_SHADOW_COMPARISONS} comparisons)"),
                    ));
                    return;
                }
                let general = &generals[candidate];
                if covers(&general.segments, &specific) {
                    covered.push((pattern_index, general));
                    break;
                }
            }
        }
        if !covered.is_empty() && covered.len() == rule.images.len() {
            let by: Vec<String> = covered
                .iter()
                .map(|(_, general)| format!("`{}` of {}", general.pattern, general.owner))
                .collect();
            found.push((
                path.clone(),
                format!(
                    "rule `{}` is never tried: each of its image patterns is covered by an earlier one ({}), and only the first rule whose images match is tried; move it above them or narrow them",
                    rule.name,
                    by.join(", ")
                ),
            ));
        } else {
            for (pattern_index, general) in &covered {
                found.push((
                    path.key("images").index(*pattern_index),
                    format!(
                        "`{}` never selects rule `{}`: `{}` of {} covers it and is tried first",
                        rule.images[*pattern_index], rule.name, general.pattern, general.owner
                    ),
                ));
            }
        }
        let owner = format!("rules[{rule_index}] (`{}`)", rule.name);
        for pattern in &rule.images {
            if let Some(general) = general(owner.clone(), pattern) {
                generals.push(general);
                file_by_host(
                    generals.len() - 1,
                    &generals[generals.len() - 1],
                    &mut by_host,
                    &mut any_host,
                );
            }
        }
    }
}

fn general(owner: String, pattern: &str) -> Option<General<'_>> {
    let segments = splittable(pattern)?
        .into_iter()
        .enumerate()
        .map(|(position, text)| Segment {
            text,
            matcher: (!is_literal_segment(text, position == 0) && text != "*" && text != "**")
                .then(|| {
                    GlobBuilder::new(text)
                        .literal_separator(true)
                        .build()
                        .ok()
                        .map(|glob| glob.compile_matcher())
                })
                .flatten(),
        })
        .collect();
    Some(General {
        owner,
        pattern,
        segments,
    })
}

fn file_by_host<'d>(
    index: usize,
    general: &General<'d>,
    by_host: &mut HashMap<&'d str, Vec<usize>>,
    any_host: &mut Vec<usize>,
) {
    match general.segments.first() {
        Some(host) if is_literal_segment(host.text, true) => {
            by_host.entry(host.text).or_default().push(index)
        }
        _ => any_host.push(index),
    }
}

/// The segments of a pattern whose globs stay inside their segments; `None` for patterns
/// the check cannot reason about (escapes, classes or alternatives spanning a `/`).
fn splittable(pattern: &str) -> Option<Vec<&str>> {
    if pattern.contains('\\') {
        return None;
    }
    let segments: Vec<&str> = pattern.split('/').collect();
    let balanced = |segment: &str, open: char, close: char| {
        segment.matches(open).count() == segment.matches(close).count()
    };
    segments
        .iter()
        .all(|segment| balanced(segment, '{', '}') && balanced(segment, '[', ']'))
        .then_some(segments)
}

/// A registry host in brackets (`[::1]:5000`) is an address, never a character class.
fn is_literal_segment(text: &str, host: bool) -> bool {
    (host && text.starts_with('[')) || !has_glob_syntax(text)
}

/// Whether every name `specific` matches is matched by `general` too. Conservative: `false`
/// whenever in doubt. `**` matches any number of segments, but at least one at the end
/// (`ghcr.io/acme/**` does not match `ghcr.io/acme`).
fn covers(general: &[Segment<'_>], specific: &[&str]) -> bool {
    covers_from(general, specific, true)
}

fn covers_from(general: &[Segment<'_>], specific: &[&str], at_host: bool) -> bool {
    let Some((first, rest)) = general.split_first() else {
        return specific.is_empty();
    };
    if first.text == "**" {
        if rest.is_empty() {
            return !specific.is_empty();
        }
        return covers_from(rest, specific, false)
            || (!specific.is_empty() && covers_from(general, &specific[1..], false));
    }
    let Some((head, tail)) = specific.split_first() else {
        return false;
    };
    segment_covers(first, head, at_host) && covers_from(rest, tail, false)
}

fn segment_covers(general: &Segment<'_>, specific: &str, at_host: bool) -> bool {
    if general.text == specific {
        return true;
    }
    if specific == "**" {
        return false;
    }
    if general.text == "*" {
        return true;
    }
    match &general.matcher {
        Some(matcher) => is_literal_segment(specific, at_host) && matcher.is_match(specific),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(pattern: &str) -> Vec<Segment<'_>> {
        general(String::new(), pattern)
            .expect("splittable")
            .segments
    }

    #[test]
    fn glob_coverage_is_conservative() {
        let cases = [
            ("ghcr.io/acme/**", "ghcr.io/acme/api", true),
            ("ghcr.io/acme/**", "ghcr.io/acme/team/api", true),
            ("ghcr.io/acme/**", "ghcr.io/acme/*", true),
            ("ghcr.io/acme/**", "ghcr.io/acme/**", true),
            ("ghcr.io/acme/**", "ghcr.io/acme", false),
            ("ghcr.io/acme/**", "ghcr.io/acmecorp/api", false),
            ("ghcr.io/acme/*", "ghcr.io/acme/api", true),
            ("ghcr.io/acme/*", "ghcr.io/acme/api-?", true),
            ("ghcr.io/acme/*", "ghcr.io/acme/**", false),
            ("ghcr.io/acme/*", "ghcr.io/acme/team/api", false),
            ("ghcr.io/acme/api-*", "ghcr.io/acme/api-web", true),
            ("ghcr.io/acme/api-*", "ghcr.io/acme/web", false),
            ("ghcr.io/acme/api-*", "ghcr.io/acme/api-*-x", false),
            ("ghcr.io/**/api", "ghcr.io/acme/team/api", true),
            ("ghcr.io/**/api", "ghcr.io/api", true),
            ("ghcr.io/acme/{api,web}", "ghcr.io/acme/web", true),
            ("ghcr.io/acme/api", "ghcr.io/acme/api", true),
            ("ghcr.io/acme/api", "ghcr.io/acme/*", false),
            ("quay.io/acme/**", "ghcr.io/acme/api", false),
            ("*.io/acme/**", "ghcr.io/acme/api", true),
            ("*/acme/**", "[::1]:5000/acme/api", true),
            ("[::1]:5000/**", "[::1]:5000/acme/api", true),
            ("[::1]:5000/**", "1:5000/acme/api", false),
        ];
        for (general, specific, expected) in cases {
            let specific_segments = splittable(specific).expect("splittable");
            assert_eq!(
                covers(&segments(general), &specific_segments),
                expected,
                "{general} covers {specific}"
            );
        }
        assert!(splittable("ghcr.io/acme/{a/b,c}").is_none());
        assert!(splittable("ghcr.io/acme/a\\*").is_none());
    }

    fn warnings_of(source: &str) -> Vec<(String, usize, String)> {
        let checked = Policy::check_yaml(source).unwrap_or_else(|error| panic!("{error}"));
        checked.warnings.iter().map(PolicyIssue::brief).collect()
    }

    #[test]
    fn warns_with_path_line_reason_and_fix() {
        let source = r#"version: 1
exemptImages: ["ghcr.io/acme/tools/**"]
rules:
  - name: broad
    images: ["ghcr.io/acme/*"]
    repositories:
      - {name: acme/api}
      - {name: acme/web, id: "2"}
      - {name: other/lib}
    owners: [{name: acme, id: "1"}, {name: beta}]
    signerWorkflows:
      - "acme/builder/.github/workflows/build.yml"
      - "acme/builder/.github/workflows/build.yml@refs/tags/v1"
      - "acme/builder/.github/workflows/build.yml@0123456789abcdef0123456789abcdef01234567"
    triggers: [push, workflow_run, issue_comment, schedule]
  - name: api
    images: ["ghcr.io/acme/api", "ghcr.io/acme/tools/debug"]
    repositories: [{name: acme/api, id: "3"}]
  - name: mixed
    images: ["ghcr.io/acme/web", "ghcr.io/acme/team/web"]
    repositories: [{name: acme/web, id: "2"}]
"#;
        let found = warnings_of(source);
        assert_eq!(
            PolicyIssue::paths_and_lines(&found),
            [
                ("rules[0].repositories[2]", 9),
                ("rules[0].owners[1]", 10),
                ("rules[0].signerWorkflows[0]", 12),
                ("rules[0].signerWorkflows[1]", 13),
                ("rules[0].triggers[1]", 15),
                ("rules[0].triggers[2]", 15),
                ("rules[1]", 16),
                ("rules[2].images[0]", 20),
            ]
        );
        let message = |path: &str| {
            &found
                .iter()
                .find(|(found_path, ..)| found_path == path)
                .expect(path)
                .2
        };
        assert!(message("rules[0].repositories[2]").contains("repojacking"));
        assert!(message("rules[0].repositories[2]").contains("gh api repos/other/lib --jq .id"));
        assert!(message("rules[0].owners[1]").contains("gh api users/beta --jq .id"));
        assert!(message("rules[0].signerWorkflows[1]").contains("not pinned to a commit"));
        assert!(message("rules[0].triggers[1]").contains("forks"));
        let shadowed = message("rules[1]");
        assert!(shadowed.contains("rule `api` is never tried"), "{shadowed}");
        assert!(
            shadowed.contains("`ghcr.io/acme/*` of rules[0] (`broad`)"),
            "{shadowed}"
        );
        assert!(
            shadowed.contains("`ghcr.io/acme/tools/**` of exemptImages[0]"),
            "{shadowed}"
        );
        assert!(message("rules[2].images[0]").contains("never selects rule `mixed`"));
    }

    #[test]
    fn a_careful_policy_has_no_warnings() {
        let source = r#"version: 1
exemptImages: ["registry.k8s.io/**"]
rules:
  - name: api
    images: ["ghcr.io/acme/api"]
    repositories: [{name: acme/api, id: "3"}]
    signerWorkflows: ["acme/builder/.github/workflows/build.yml@0123456789abcdef0123456789abcdef01234567"]
    triggers: [push, release, workflow_dispatch, schedule, merge_group]
  - name: rest
    images: ["ghcr.io/acme/**"]
    owners: [{name: acme, id: "1"}]
    repositories: [{name: acme/web}]
"#;
        assert_eq!(warnings_of(source), []);
    }

    #[test]
    fn double_star_loads_but_says_what_it_gives_away() {
        let source = r#"version: 1
exemptImages: ["**"]
rules:
  - name: every
    images: ["**"]
    owners: [{name: acme, id: "1"}]
    workflows: ["**"]
    refs: ["**", "refs/**", "refs/heads/release/*"]
  - name: api
    images: ["ghcr.io/acme/api"]
    owners: [{name: acme, id: "1"}]
"#;
        let found = warnings_of(source);
        assert_eq!(
            PolicyIssue::paths_and_lines(&found),
            [
                ("exemptImages[0]", 2),
                ("rules[0]", 4),
                ("rules[0].images[0]", 5),
                ("rules[0].refs[0]", 8),
                ("rules[0].refs[1]", 8),
                ("rules[1]", 9),
            ]
        );
        assert!(found[0].2.contains("nothing is verified"), "{:?}", found[0]);
        assert!(
            found[2].2.contains("chooses which registry"),
            "{:?}",
            found[2]
        );
        assert!(
            found[3].2.contains("every branch and tag"),
            "{:?}",
            found[3]
        );
        assert!(
            found[5].2.contains("rule `api` is never tried"),
            "{:?}",
            found[5]
        );
    }

    #[test]
    fn required_attestations_that_trip_operators_are_warned_about() {
        let source = r#"version: 1
environments:
  - {name: production, namespaceSelector: {matchLabels: {env: production}}, mode: enforce}
rules:
  - name: sbom-only
    images: ["ghcr.io/acme/api"]
    owners: [{name: acme, id: "1"}]
    requireAttestations: [spdx]
    environments:
      - {name: production, requireAttestations: [cyclonedx]}
  - name: both-formats
    images: ["ghcr.io/acme/web"]
    owners: [{name: acme, id: "1"}]
    requireAttestations: [provenance, spdx, "https://cyclonedx.org/bom"]
  - name: careful
    images: ["ghcr.io/acme/db"]
    owners: [{name: acme, id: "1"}]
    requireAttestations: [provenance, cyclonedx]
    environments:
      - {name: production, requireAttestations: [provenance, cyclonedx]}
"#;
        let found = warnings_of(source);
        assert_eq!(
            PolicyIssue::paths_and_lines(&found),
            [
                ("rules[0].requireAttestations", 8),
                ("rules[0].environments[0].requireAttestations", 10),
                ("rules[1].requireAttestations", 14),
            ],
            "{found:#?}"
        );
        assert!(found[0].2.contains("leaves out `provenance`"), "{found:#?}");
        assert!(
            found[1]
                .2
                .contains("both `spdx` and `cyclonedx` are required"),
            "{found:#?}"
        );
        assert!(
            found[2]
                .2
                .contains("both `spdx` and `cyclonedx` are required"),
            "{found:#?}"
        );
    }

    #[test]
    fn environment_values_the_rule_refuses_are_warned_about() {
        let source = r#"version: 1
environments:
  - {name: production, namespaceSelector: {matchLabels: {env: production}}, mode: enforce}
  - {name: dev, namespaceSelector: {}, mode: warn}
rules:
  - name: api
    images: ["ghcr.io/acme/api"]
    owners: [{name: acme, id: "1"}]
    refs: [refs/heads/main, "refs/tags/v*"]
    workflows: [.github/workflows/release.yml]
    maxAge: 30d
    environments:
      - name: production
        refs: ["refs/tags/v*", refs/tags/v1.0.0, refs/heads/release]
        triggers: [push, pull_request]
        runners: [self-hosted]
        workflows: [.github/workflows/release.yml, .github/workflows/deploy.yml]
        maxAge: 7d
      - {name: dev, maxAge: 90d}
"#;
        let found = warnings_of(source);
        assert_eq!(
            PolicyIssue::paths_and_lines(&found),
            [
                ("rules[0].environments[0].refs[2]", 14),
                ("rules[0].environments[0].triggers[1]", 15),
                ("rules[0].environments[0].runners[0]", 16),
                ("rules[0].environments[0].workflows[1]", 17),
                ("rules[0].environments[1].maxAge", 19),
            ],
            "{found:#?}"
        );
        assert!(found[0].2.contains("refs `refs/heads/release` of environment `production` admits nothing there: rule `api` allows refs refs/heads/main, refs/tags/v* in every environment"), "{found:#?}");
        assert!(
            found[2].2.contains("allows runners github-hosted"),
            "{found:#?}"
        );
        assert!(
            found[4]
                .2
                .contains("maxAge 90d of environment `dev` changes nothing"),
            "{found:#?}"
        );
    }

    fn rule_with(extra: &str) -> String {
        format!("version: 1\nrules:\n  - name: r\n    images: [\"ghcr.io/acme/*\"]\n    owners: [{{name: acme, id: \"1\"}}]\n{extra}")
    }

    #[test]
    fn refuses_values_no_certificate_can_carry() {
        let cases = [
            (
                "    signerWorkflows: [\"a/b/.github/workflows/build.yml@v2\"]\n",
                "rules[0].signerWorkflows[0]",
                "`@refs/tags/v2`",
            ),
            (
                "    signerWorkflows: [\"a/b/.github/workflows/build.yml@main\"]\n",
                "rules[0].signerWorkflows[0]",
                "would never match",
            ),
            (
                "    signerWorkflows: [\"a/b/.github/workflows/build.yml@refs/tags/../v2\"]\n",
                "rules[0].signerWorkflows[0]",
                "contains `..`",
            ),
            (
                "    owners: [{name: acme, id: \"0016\"}]\n",
                "rules[0].owners[0].id",
                "write `16`",
            ),
            (
                "    repositories: [{name: acme/api, id: 0}]\n",
                "rules[0].repositories[0].id",
                "GitHub IDs start at 1",
            ),
            (
                "    refs: [\"refs/heads/../main\"]\n",
                "rules[0].refs[0]",
                "contains `..`",
            ),
            (
                "    refs: [\"refs/heads/\"]\n",
                "rules[0].refs[0]",
                "ends with `/`",
            ),
            (
                "    refs: [\"refs/heads/a b\"]\n",
                "rules[0].refs[0]",
                "contains a space",
            ),
            (
                "    workflows: [\".github/workflows/ci/build.yml\"]\n",
                "rules[0].workflows[0]",
                "where GitHub never runs workflows",
            ),
            (
                "    workflows: [\".github/workflows/**/build.yml\"]\n",
                "rules[0].workflows[0]",
                "where GitHub never runs workflows",
            ),
            (
                "    triggers: [pushed]\n",
                "rules[0].triggers[0]",
                "not a GitHub Actions event name",
            ),
            (
                "    triggers: [workflow-dispatch]\n",
                "rules[0].triggers[0]",
                "write `workflow_dispatch`",
            ),
            (
                "    triggers: [workflow_call]\n",
                "rules[0].triggers[0]",
                "reports the event of the workflow that called it",
            ),
        ];
        for (extra, path, fragment) in cases {
            let source = rule_with(extra).replace(
                "    owners: [{name: acme, id: \"1\"}]\n    owners:",
                "    owners:",
            );
            let error = Policy::from_yaml(&source).expect_err(extra);
            let issue = &error.issues()[0];
            assert_eq!(issue.path, path, "{extra}: {error}");
            assert!(issue.location.is_some(), "{extra}: {error}");
            assert!(issue.message.contains(fragment), "{extra}: {error}");
        }
        for accepted in [
            "    signerWorkflows: [\"a/b/.github/workflows/build.yml@refs/tags/v2\"]\n",
            "    refs: [\"refs/heads/release/*\", \"refs/tags/**\"]\n",
            "    workflows: [\".github/workflows/*.yml\", \".github/workflows/**\"]\n",
            "    triggers: [push, dynamic, image_version, merge_group]\n",
        ] {
            Policy::from_yaml(&rule_with(accepted))
                .unwrap_or_else(|error| panic!("{accepted}: {error}"));
        }
    }

    #[test]
    fn bounds_the_warnings() {
        let mut source = String::from("version: 1\nrules:\n");
        for rule in 0..MAX_WARNINGS + 5 {
            source.push_str(&format!(
                "  - {{name: r{rule}, images: [\"ghcr.io/a/r{rule}\"], owners: [{{name: a}}]}}\n"
            ));
        }
        let found = warnings_of(&source);
        assert_eq!(found.len(), MAX_WARNINGS + 1);
        assert_eq!(
            found[MAX_WARNINGS - 1].0,
            format!("rules[{}].owners[0]", MAX_WARNINGS - 1)
        );
        assert_eq!(found[MAX_WARNINGS].2, "... and 5 more warnings");
    }
}
