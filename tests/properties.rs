//! Properties of the pure parts, over generated inputs (proptest; a failure prints the
//! smallest input found):
//!
//! - normalisation: every spelling of a reference that the container runtime reads as one
//!   image parses to one canonical name, idempotently, and the policy matcher puts every
//!   spelling under the rule written for the canonical name;
//! - monotonicity: a decision never admits under a stricter rule (narrower lists, a `maxAge`,
//!   revocations) or a stricter mode what the looser one refuses (policy::evaluate,
//!   decision::decide);
//! - bundles: any single-field change of a real bundle in tests/data is rejected by
//!   verification, except the fields the signatures do not cover, whose change leaves every
//!   verified fact as it was.

use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use provenance_gate::check::reference::ImageReference;
use provenance_gate::check::{FailureKind, ImageOutcome};
use provenance_gate::decision::{decide, BreakGlass, Subject};
use provenance_gate::policy::{evaluate, Destination, ImageClass, Mode, Policy};
use provenance_gate::verify::{
    read_bundles, verify_bundle, ArtifactInput, CertificateClaims, Instance, PredicateClaims,
    TrustedRoots, VerifiedAttestation,
};

// ---------------------------------------------------------------------------------------
// Normalisation.

/// A registry, the spellings that name it, and the rule written for its canonical name.
struct Host {
    canonical: &'static str,
    spellings: &'static [&'static str],
    rule: &'static str,
}

const HOSTS: [Host; 5] = [
    Host {
        canonical: "docker.io",
        // "" is no registry at all: Docker Hub by default.
        spellings: &[
            "",
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "docker.io:443",
            "index.docker.io:443",
        ],
        rule: "hub",
    },
    Host {
        canonical: "ghcr.io",
        spellings: &["ghcr.io", "ghcr.io:443"],
        rule: "ghcr",
    },
    Host {
        canonical: "localhost:5000",
        spellings: &["localhost:5000"],
        rule: "local",
    },
    Host {
        canonical: "registry.example.com:5000",
        spellings: &["registry.example.com:5000"],
        rule: "internal",
    },
    Host {
        canonical: "[::1]:5000",
        spellings: &["[::1]:5000", "[0:0::1]:5000", "[0:0:0:0:0:0:0:1]:5000"],
        rule: "loopback6",
    },
];

/// One rule per canonical registry (and Docker Hub's official images apart).
const NORMALISATION_POLICY: &str = r#"
version: 1
unmatchedImages: deny
rules:
  - {name: hub-official, images: ["docker.io/library/*"], owners: [{name: acme}]}
  - {name: hub, images: ["docker.io/**"], owners: [{name: acme}]}
  - {name: ghcr, images: ["ghcr.io/**"], owners: [{name: acme}]}
  - {name: local, images: ["localhost:5000/**"], owners: [{name: acme}]}
  - {name: internal, images: ["registry.example.com:5000/**"], owners: [{name: acme}]}
  - {name: loopback6, images: ["[::1]:5000/**"], owners: [{name: acme}]}
"#;

/// Upper-cases the letters of `text` where `mask` has a bit set: DNS names are
/// case-insensitive, so the runtime pulls the same image.
fn recase(text: &str, mask: u64) -> String {
    text.chars()
        .enumerate()
        .map(|(position, character)| {
            if mask >> (position % 64) & 1 == 1 {
                character.to_ascii_uppercase()
            } else {
                character
            }
        })
        .collect()
}

prop_compose! {
    /// `(spelling, host index, repository as written)`.
    fn spelled_reference()(
        host in 0..HOSTS.len(),
        spelling in any::<Index>(),
        mask in any::<u64>(),
        // No '.': a first component with one would be read as a registry host.
        path in prop::collection::vec("[a-z0-9]{1,6}([_-][a-z0-9]{1,4})?", 1..4),
        tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}"),
        digest in prop::option::of("[0-9a-f]{64}"),
    ) -> (String, usize, String) {
        let registry = recase(spelling.get::<&str>(HOSTS[host].spellings), mask);
        let path = path.join("/");
        let mut text = if registry.is_empty() { path.clone() } else { format!("{registry}/{path}") };
        if let Some(tag) = tag {
            text = format!("{text}:{tag}");
        }
        if let Some(digest) = digest {
            text = format!("{text}@sha256:{digest}");
        }
        (text, host, path)
    }
}

#[test]
fn every_spelling_normalises_once_and_lands_under_the_canonical_rule() {
    let policy = Policy::from_yaml(NORMALISATION_POLICY).unwrap();
    proptest!(|((text, host, path) in spelled_reference())| {
        let host = &HOSTS[host];
        let reference = ImageReference::parse(&text)
            .map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))?;
        let official = host.canonical == "docker.io" && !path.contains('/');
        let repository = if official { format!("library/{path}") } else { path.clone() };
        prop_assert_eq!(reference.name(), format!("{}/{repository}", host.canonical));

        // Idempotent: the canonical form is a fixed point.
        let canonical = reference.to_string();
        let again = ImageReference::parse(&canonical).unwrap();
        prop_assert_eq!(&again, &reference);
        prop_assert_eq!(again.to_string(), canonical);

        // The matcher sees only canonical names, so every spelling gets the rule written
        // for the canonical one.
        let expected = if official { "hub-official" } else { host.rule };
        match policy.classify_image(&reference.name()) {
            ImageClass::Rule(rule) => prop_assert_eq!(rule.name(), expected, "{}", text),
            other => prop_assert!(false, "{text:?} → {}: {other:?}", reference.name()),
        }
    });
}

// ---------------------------------------------------------------------------------------
// Monotonicity of decisions.

const REPOSITORIES: [(&str, &str, &str); 3] = [
    ("acme/api", "804070735", "16248153"),
    ("acme/web", "804070736", "16248153"),
    ("mallory/api", "999", "666"),
];
const WORKFLOWS: [&str; 2] = [
    ".github/workflows/release.yml",
    ".github/workflows/build.yml",
];
const REFS: [&str; 3] = ["refs/heads/main", "refs/tags/v1.2.0", "refs/heads/dev"];
const TRIGGERS: [&str; 3] = ["push", "workflow_dispatch", "pull_request_target"];
const RUNNERS: [&str; 2] = ["github-hosted", "self-hosted"];
const COMMITS: [&str; 2] = [
    "95baf27389e83e6a5c48f42e190d48d7abcea19e",
    "a6c23b9806c593664f68637c8f9d45dfcf98b2db",
];
const NOW: &str = "2026-11-28T10:00:00Z";

/// What a build claims, each from a small pool so that rules match some builds.
#[derive(Debug, Clone)]
struct Build {
    repository: usize,
    workflow: &'static str,
    git_ref: &'static str,
    trigger: &'static str,
    runner: &'static str,
    commit: &'static str,
    run: u64,
    age_days: i64,
}

fn build() -> impl Strategy<Value = Build> {
    (
        0..REPOSITORIES.len(),
        select(&WORKFLOWS[..]),
        select(&REFS[..]),
        select(&TRIGGERS[..]),
        select(&RUNNERS[..]),
        select(&COMMITS[..]),
        1u64..4,
        0i64..400,
    )
        .prop_map(
            |(repository, workflow, git_ref, trigger, runner, commit, run, age_days)| Build {
                repository,
                workflow,
                git_ref,
                trigger,
                runner,
                commit,
                run,
                age_days,
            },
        )
}

/// The attestation GitHub's attest action would produce for `build`: a self-signed build
/// whose certificate and SLSA predicate agree.
fn attestation(build: &Build) -> VerifiedAttestation {
    let (repository, repository_id, owner_id) = REPOSITORIES[build.repository];
    let owner = repository.split('/').next().unwrap();
    let workflow_uri = format!(
        "https://github.com/{repository}/{}@{}",
        build.workflow, build.git_ref
    );
    let run = format!(
        "https://github.com/{repository}/actions/runs/{}/attempts/1",
        build.run
    );
    let now: jiff::Timestamp = NOW.parse().unwrap();
    let signed_at = now - jiff::SignedDuration::from_hours(24 * build.age_days);
    VerifiedAttestation {
        instance: Instance::Github,
        bundle_digest: "sha256:00".into(),
        signed_at: Some(signed_at.to_string()),
        predicate_type: "https://slsa.dev/provenance/v1".into(),
        subjects: Vec::new(),
        certificate: CertificateClaims {
            issuer: Some("https://token.actions.githubusercontent.com".into()),
            subject_alternative_name: Some(workflow_uri.clone()),
            build_signer_uri: Some(workflow_uri.clone()),
            build_signer_digest: Some(build.commit.into()),
            runner_environment: Some(build.runner.into()),
            source_repository_uri: Some(format!("https://github.com/{repository}")),
            source_repository_digest: Some(build.commit.into()),
            source_repository_ref: Some(build.git_ref.into()),
            source_repository_identifier: Some(repository_id.into()),
            source_repository_owner_uri: Some(format!("https://github.com/{owner}")),
            source_repository_owner_identifier: Some(owner_id.into()),
            build_config_uri: Some(workflow_uri),
            build_config_digest: Some(build.commit.into()),
            build_trigger: Some(build.trigger.into()),
            run_invocation_uri: Some(run.clone()),
            source_repository_visibility: Some("public".into()),
        },
        predicate: Some(PredicateClaims {
            build_type: Some("https://actions.github.io/buildtypes/workflow/v1".into()),
            workflow_repository: Some(format!("https://github.com/{repository}")),
            workflow_path: Some(build.workflow.into()),
            workflow_ref: Some(build.git_ref.into()),
            event_name: Some(build.trigger.into()),
            repository_id: Some(repository_id.into()),
            repository_owner_id: Some(owner_id.into()),
            runner_environment: Some(build.runner.into()),
            resolved_commit: Some(build.commit.into()),
            builder_id: Some(workflow_uri_of_builder()),
            invocation_id: Some(run),
        }),
    }
}

fn workflow_uri_of_builder() -> String {
    "https://github.com/actions/runner/github-hosted".into()
}

/// A rule's lists; a stricter rule keeps a non-empty part of each and may add limits.
#[derive(Debug, Clone)]
struct RuleLists {
    repositories: Vec<usize>,
    workflows: Option<Vec<&'static str>>,
    refs: Vec<&'static str>,
    triggers: Vec<&'static str>,
    runners: Vec<&'static str>,
    max_age_days: Option<u32>,
    revoked_commits: Vec<&'static str>,
    unmatched_allow: bool,
}

fn nonempty<T: Clone + std::fmt::Debug + 'static>(pool: &[T]) -> impl Strategy<Value = Vec<T>> {
    subsequence(pool.to_vec(), 1..=pool.len())
}

fn loose_rule() -> impl Strategy<Value = RuleLists> {
    (
        nonempty(&[0usize, 1, 2]),
        prop::option::of(nonempty(&WORKFLOWS)),
        nonempty(&REFS),
        nonempty(&TRIGGERS),
        nonempty(&RUNNERS),
        prop::option::of(1u32..500),
        subsequence(COMMITS.to_vec(), 0..=1),
        any::<bool>(),
    )
        .prop_map(
            |(
                repositories,
                workflows,
                refs,
                triggers,
                runners,
                max_age_days,
                revoked_commits,
                unmatched_allow,
            )| RuleLists {
                repositories,
                workflows,
                refs,
                triggers,
                runners,
                max_age_days,
                revoked_commits,
                unmatched_allow,
            },
        )
}

/// A rule that admits no more than `loose`: every list a non-empty part of the loose one,
/// a `maxAge` no longer, revocations and `unmatchedImages` no laxer.
fn stricter(loose: RuleLists) -> impl Strategy<Value = RuleLists> {
    let workflows = match loose.workflows.clone() {
        Some(workflows) => nonempty(&workflows).prop_map(Some).boxed(),
        None => prop::option::of(nonempty(&WORKFLOWS)).boxed(),
    };
    let max_age = match loose.max_age_days {
        Some(days) => (1..=days).prop_map(Some).boxed(),
        None => prop::option::of(1u32..500).boxed(),
    };
    let extra_revoked = subsequence(COMMITS.to_vec(), 0..=COMMITS.len());
    (
        nonempty(&loose.repositories),
        workflows,
        nonempty(&loose.refs),
        nonempty(&loose.triggers),
        nonempty(&loose.runners),
        max_age,
        extra_revoked,
        any::<bool>(),
    )
        .prop_map(
            move |(
                repositories,
                workflows,
                refs,
                triggers,
                runners,
                max_age_days,
                extra,
                allow,
            )| {
                let mut revoked_commits = loose.revoked_commits.clone();
                revoked_commits.extend(extra);
                revoked_commits.sort_unstable();
                revoked_commits.dedup();
                RuleLists {
                    repositories,
                    workflows,
                    refs,
                    triggers,
                    runners,
                    max_age_days,
                    revoked_commits,
                    unmatched_allow: loose.unmatched_allow && allow,
                }
            },
        )
}

fn yaml_list<T: AsRef<str>>(items: &[T]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("{:?}", item.as_ref()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn policy_of(lists: &RuleLists) -> Policy {
    let repositories: Vec<String> = lists
        .repositories
        .iter()
        .map(|&index| {
            let (name, id, _) = REPOSITORIES[index];
            format!("{{name: {name}, id: \"{id}\"}}")
        })
        .collect();
    let mut rule = format!(
        "  - name: r\n    images: [\"ghcr.io/acme/**\"]\n    repositories: [{}]\n    refs: {}\n    triggers: {}\n    runners: {}\n",
        repositories.join(", "),
        yaml_list(&lists.refs),
        yaml_list(&lists.triggers),
        yaml_list(&lists.runners),
    );
    if let Some(workflows) = &lists.workflows {
        rule.push_str(&format!("    workflows: {}\n", yaml_list(workflows)));
    }
    if let Some(days) = lists.max_age_days {
        rule.push_str(&format!("    maxAge: {days}d\n"));
    }
    let unmatched = if lists.unmatched_allow {
        "allow"
    } else {
        "deny"
    };
    let yaml = format!(
        "version: 1\nunmatchedImages: {unmatched}\nrevoked: {{commits: {}}}\nrules:\n{rule}",
        yaml_list(&lists.revoked_commits)
    );
    Policy::from_yaml(&yaml).unwrap_or_else(|error| panic!("{yaml}\n{error}"))
}

/// The outcome the image check reaches for `image` with `attestation` under `policy`, without
/// a registry: classification, then the rule's evaluation.
fn outcome(policy: &Policy, image: &str, attestation: &VerifiedAttestation) -> ImageOutcome {
    let now: jiff::Timestamp = NOW.parse().unwrap();
    let name = ImageReference::parse(image).unwrap().name();
    let anywhere = Destination::Unselected;
    match policy.classify_image(&name) {
        ImageClass::Exempt => ImageOutcome::Exempt,
        ImageClass::Unmatched(action) => ImageOutcome::Unmatched { action },
        ImageClass::Rule(rule) => match evaluate(rule, &anywhere, attestation, now) {
            Ok(()) => ImageOutcome::Verified {
                rule: rule.name().to_owned(),
                digest: "sha256:00".into(),
                bundle_digest: attestation.bundle_digest.clone(),
                attestation: Box::new(attestation.clone()),
                platforms_checked: None,
                source: None,
                source_url: None,
                attestations: Vec::new(),
            },
            Err(violation) => ImageOutcome::Failed {
                rule: Some(rule.name().to_owned()),
                digest: Some("sha256:00".into()),
                kind: FailureKind::PolicyViolation,
                reason: violation.to_string(),
            },
        },
    }
}

const MODES: [Mode; 3] = [Mode::Enforce, Mode::Warn, Mode::Observe];

#[test]
fn a_stricter_rule_or_mode_never_admits_what_a_looser_one_refuses() {
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let admitted_by_stricter = std::cell::Cell::new(0);
    let strategy = (loose_rule(), build())
        .prop_flat_map(|(loose, build)| (stricter(loose.clone()), Just(loose), Just(build)));
    runner
        .run(&strategy, |(strict, loose, build)| {
            let attestation = attestation(&build);
            let strict_policy = policy_of(&strict);
            let loose_policy = policy_of(&loose);
            for image in ["ghcr.io/acme/api:1", "ghcr.io/other/api:1"] {
                let strict_outcome = outcome(&strict_policy, image, &attestation);
                let loose_outcome = outcome(&loose_policy, image, &attestation);
                for (index, &mode) in MODES.iter().enumerate() {
                    for break_glass in [BreakGlass::Inactive, BreakGlass::Active] {
                        let decide_on = |outcome: &ImageOutcome, mode| {
                            decide(Subject::settled(outcome), mode, break_glass).admits()
                        };
                        let strict = decide_on(&strict_outcome, mode);
                        prop_assert!(
                            !strict || decide_on(&loose_outcome, mode),
                            "{image} in {mode}: the stricter rule admits, the looser refuses: {loose_outcome:?}"
                        );
                        // A laxer mode admits whatever a stricter mode admits.
                        for &laxer in &MODES[index..] {
                            prop_assert!(!strict || decide_on(&strict_outcome, laxer));
                        }
                        if strict && mode == Mode::Enforce && break_glass == BreakGlass::Inactive {
                            admitted_by_stricter.set(admitted_by_stricter.get() + 1);
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    // Not vacuous: the stricter policies did admit builds in enforce mode.
    assert!(
        admitted_by_stricter.get() > 10,
        "only {} admissions",
        admitted_by_stricter.get()
    );
}

#[test]
fn the_generated_build_passes_a_rule_written_for_it() {
    let build = Build {
        repository: 0,
        workflow: WORKFLOWS[0],
        git_ref: REFS[0],
        trigger: TRIGGERS[0],
        runner: RUNNERS[0],
        commit: COMMITS[0],
        run: 1,
        age_days: 3,
    };
    let lists = RuleLists {
        repositories: vec![0],
        workflows: Some(vec![WORKFLOWS[0]]),
        refs: vec![REFS[0]],
        triggers: vec![TRIGGERS[0]],
        runners: vec![RUNNERS[0]],
        max_age_days: Some(5),
        revoked_commits: Vec::new(),
        unmatched_allow: false,
    };
    let admitted = outcome(
        &policy_of(&lists),
        "ghcr.io/acme/api:1",
        &attestation(&build),
    );
    assert!(
        matches!(admitted, ImageOutcome::Verified { .. }),
        "{admitted:?}"
    );
    // Each narrowing on its own refuses it.
    let narrowed = [
        RuleLists {
            repositories: vec![1],
            ..lists.clone()
        },
        RuleLists {
            workflows: Some(vec![WORKFLOWS[1]]),
            ..lists.clone()
        },
        RuleLists {
            refs: vec![REFS[2]],
            ..lists.clone()
        },
        RuleLists {
            triggers: vec![TRIGGERS[1]],
            ..lists.clone()
        },
        RuleLists {
            runners: vec![RUNNERS[1]],
            ..lists.clone()
        },
        RuleLists {
            max_age_days: Some(2),
            ..lists.clone()
        },
        RuleLists {
            revoked_commits: vec![COMMITS[0]],
            ..lists.clone()
        },
    ];
    for lists in narrowed {
        let refused = outcome(
            &policy_of(&lists),
            "ghcr.io/acme/api:1",
            &attestation(&build),
        );
        assert!(
            matches!(refused, ImageOutcome::Failed { .. }),
            "{lists:?}: {refused:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Single-field changes of real bundles.

struct RealBundle {
    name: &'static str,
    text: &'static str,
    artifact: &'static [u8],
}

const REAL_BUNDLES: [RealBundle; 4] = [
    RealBundle {
        name: "reusable-workflow-attestation",
        text: include_str!("data/bundles/public-good/reusable-workflow-attestation.sigstore.json"),
        artifact: include_bytes!("data/bundles/public-good/reusable-workflow-artifact"),
    },
    RealBundle {
        name: "sigstore-js v0.3",
        text: include_str!("data/bundles/public-good/sigstore-js-2.1.0-bundle.json"),
        artifact: include_bytes!("data/bundles/public-good/sigstore-js-2.1.0.tgz"),
    },
    RealBundle {
        name: "sigstore-js v0.1",
        text: include_str!("data/bundles/public-good/sigstore-js-2.1.0-bundle-v0.1.json"),
        artifact: include_bytes!("data/bundles/public-good/sigstore-js-2.1.0.tgz"),
    },
    RealBundle {
        name: "github instance",
        text: include_str!(
            "data/bundles/github/github_provenance_demo-0.0.12-py3-none-any-bundle.json"
        ),
        artifact: include_bytes!(
            "data/bundles/github/github_provenance_demo-0.0.12-py3-none-any.whl"
        ),
    },
];

/// Fields no signature covers: the bundle's own media type names the format version, and
/// relabelling it (`v0.3` as `+json;version=0.3`) changes no verified fact; the test below
/// checks that every fact stays as it was.
const UNSIGNED_FIELDS: [&str; 1] = ["/mediaType"];

/// JSON pointers of every leaf (string, number, boolean) of `value`.
fn leaves(value: &Value, pointer: String, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                leaves(child, format!("{pointer}/{escaped}"), found);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                leaves(child, format!("{pointer}/{index}"), found);
            }
        }
        Value::Null => {}
        _ => found.push(pointer),
    }
}

/// Changes a leaf at `position`: a bit of the decoded bytes of a base64 value, a character of
/// other text, a number by one, a boolean negated.
fn change(leaf: &Value, position: Index) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    match leaf {
        Value::String(text) => match engine.decode(text) {
            Ok(mut bytes) if bytes.len() >= 8 => {
                let index = position.index(bytes.len());
                bytes[index] ^= 1 << (position.index(8));
                Value::String(engine.encode(bytes))
            }
            _ => {
                let mut characters: Vec<char> = text.chars().collect();
                if characters.is_empty() {
                    return Value::String("x".into());
                }
                let index = position.index(characters.len());
                characters[index] = if characters[index] == '1' { '2' } else { '1' };
                Value::String(characters.into_iter().collect())
            }
        },
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Value::from(integer + 1),
            None => Value::from(number.as_f64().unwrap_or(0.0) + 1.0),
        },
        Value::Bool(flag) => Value::Bool(!flag),
        other => other.clone(),
    }
}

fn verify_text(
    roots: &TrustedRoots,
    text: &str,
    artifact: &[u8],
) -> Result<VerifiedAttestation, String> {
    let bundles = read_bundles(text.as_bytes()).map_err(|error| error.to_string())?;
    let bundle = bundles.first().ok_or("no bundle")?;
    verify_bundle(roots, bundle, ArtifactInput::Bytes(artifact)).map_err(|error| error.to_string())
}

/// The facts of an attestation, without the digest of the JSON it was read from.
fn facts(attestation: VerifiedAttestation) -> VerifiedAttestation {
    VerifiedAttestation {
        bundle_digest: String::new(),
        ..attestation
    }
}

#[test]
fn any_single_field_change_of_a_real_bundle_is_rejected() {
    let roots = TrustedRoots::embedded().unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 8,
        failure_persistence: None,
        ..Config::default()
    });
    let mut changed_fields = 0;
    for bundle in &REAL_BUNDLES {
        let original: Value = serde_json::from_str(bundle.text).unwrap();
        let verified = facts(verify_text(&roots, bundle.text, bundle.artifact).unwrap());
        let mut pointers = Vec::new();
        leaves(&original, String::new(), &mut pointers);
        assert!(pointers.len() >= 6, "{}: {pointers:?}", bundle.name);
        for pointer in &pointers {
            changed_fields += 1;
            runner
                .run(&any::<Index>(), |position| {
                    let mut edited = original.clone();
                    let slot = edited.pointer_mut(pointer).unwrap();
                    *slot = change(slot, position);
                    let result = verify_text(&roots, &edited.to_string(), bundle.artifact);
                    if UNSIGNED_FIELDS.contains(&pointer.as_str()) {
                        if let Ok(attestation) = result {
                            prop_assert_eq!(facts(attestation), verified.clone());
                        }
                    } else {
                        prop_assert!(
                            result.is_err(),
                            "{}: changing {pointer} still verifies",
                            bundle.name
                        );
                    }
                    Ok(())
                })
                .unwrap();
            // Removing the field is a change too, unless it held its default (an empty
            // `keyid`), which reads back as the same bundle.
            let leaf = original.pointer(pointer).unwrap();
            if leaf.as_str() == Some("") {
                continue;
            }
            let mut removed = original.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            match removed.pointer_mut(parent).unwrap() {
                Value::Object(map) => {
                    map.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(items) => {
                    items.remove(key.parse::<usize>().unwrap());
                }
                _ => unreachable!("a leaf's parent is an object or an array"),
            }
            let result = verify_text(&roots, &removed.to_string(), bundle.artifact);
            if let Ok(attestation) = result {
                assert!(
                    UNSIGNED_FIELDS.contains(&pointer.as_str()),
                    "{}: removing {pointer} still verifies",
                    bundle.name
                );
                assert_eq!(facts(attestation), verified);
            }
        }
    }
    assert!(changed_fields > 60, "{changed_fields} fields");
}

#[test]
fn the_leaves_of_a_document_are_every_scalar_and_each_change_changes_it() {
    let document = serde_json::json!({"a": {"b/c": [1, "x", null, true]}, "d": "e"});
    let mut found = Vec::new();
    leaves(&document, String::new(), &mut found);
    assert_eq!(found, ["/a/b~1c/0", "/a/b~1c/1", "/a/b~1c/3", "/d"]);
    let encoded = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
    proptest!(|(position in any::<Index>())| {
        for leaf in [Value::from(encoded.clone()), Value::from("text"), Value::from("1"), Value::from(""), Value::from(41), Value::from(true)] {
            prop_assert_ne!(change(&leaf, position), leaf);
        }
    });
}
