//! Policy tables over minted bundles: every case goes through real signature, certificate
//! chain and RFC 3161 timestamp verification (the test kit's private instance), then the
//! policy engine. Nothing here builds claims by hand.

mod common;

use provenance_gate::check::provenance::{check_bundles, check_bundles_at};
use provenance_gate::policy::{Policy, RISKY_TRIGGERS};
use provenance_gate::verify::{read_bundles, ArtifactInput, TrustedRoots};
use provenance_gate_testkit::{MintSpec, ReusableWorkflow, TestInstance};

const DIGEST: &str = "9c24ac7eca13411bee8f335f96442c0b5ef8de65ff1f85da6f16fcb0c046bd78";

const POLICY: &str = r#"
version: 1
rules:
  - name: acme
    images: ["ghcr.io/acme/**"]
    repositories: [{name: acme/api, id: "804070735"}]
  - name: acme-reusable
    images: ["ghcr.io/acme-reusable/**"]
    repositories: [{name: acme/api, id: "804070735"}]
    signerWorkflows: ["github/artifact-attestations-workflows/.github/workflows/attest.yml"]
  - name: acme-owner
    images: ["ghcr.io/acme-owner/**"]
    owners: [{name: acme, id: "16248153"}]
  - name: acme-pr-builds
    images: ["ghcr.io/acme-pr/**"]
    repositories: [{name: acme/api}]
    refs: ["refs/pull/*/merge"]
    triggers: [pull_request]
  - name: acme-self-hosted
    images: ["ghcr.io/acme-sh/**"]
    repositories: [{name: acme/api}]
    runners: [self-hosted]
  - name: acme-releases
    images: ["ghcr.io/acme-releases/**"]
    repositories: [{name: acme/api, id: "804070735"}]
    refs: ["refs/heads/main", "refs/tags/v*"]
  - name: acme-legacy
    images: ["ghcr.io/acme-legacy/**"]
    owners: [{name: acme, id: "222"}]
    repositories: [{name: acme/legacy}]
  - name: acme-builder
    images: ["ghcr.io/acme-builder/**"]
    repositories: [{name: acme/api, id: "804070735"}]
    signerWorkflows: ["acme/builder/.github/workflows/build.yml@3333333333333333333333333333333333333333"]
  - name: acme-builder-or-self
    images: ["ghcr.io/acme-builder-or-self/**"]
    repositories: [{name: acme/api, id: "804070735"}]
    signerWorkflows: ["acme/builder/.github/workflows/build.yml@3333333333333333333333333333333333333333"]
    allowSelfSigned: true
  - name: acme-pinned-workflow
    images: ["ghcr.io/acme-pinned/**"]
    repositories: [{name: acme/api, id: "804070735"}]
    buildConfigDigests: ["7D2F0A4C9E1B5A3F8C6D4E2B0A9F7E5D3C1B8A6F"]
  - name: acme-fresh
    images: ["ghcr.io/acme-fresh/**"]
    repositories: [{name: acme/api, id: "804070735"}]
    maxAge: 30d
"#;

struct Harness {
    instance: TestInstance,
    roots: TrustedRoots,
    policy: Policy,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_policy(POLICY)
    }

    fn with_policy(policy: &str) -> Harness {
        let instance = TestInstance::timestamp_only();
        let roots = common::kit_roots(&instance);
        Harness {
            instance,
            roots,
            policy: Policy::from_yaml(policy).expect("test policy is valid"),
        }
    }

    /// `Ok(())` when `rule` accepts the minted bundle, else every reason.
    fn decide(&self, rule: &str, spec: &MintSpec) -> Result<(), String> {
        self.decide_at(rule, spec, None)
    }

    /// Like [`Harness::decide`], reviewed at `now` (`None`: the wall clock).
    fn decide_at(
        &self,
        rule: &str,
        spec: &MintSpec,
        now: Option<jiff::Timestamp>,
    ) -> Result<(), String> {
        let bundle = self.instance.mint(spec);
        let bundles = read_bundles(bundle.as_bytes()).unwrap();
        let rule = self.policy.rule(rule).expect("rule exists");
        let digest = ArtifactInput::parse_sha256(&format!("sha256:{DIGEST}")).unwrap();
        let verdict = match now {
            Some(now) => check_bundles_at(&self.roots, &bundles, digest, &[rule], now),
            None => check_bundles(&self.roots, &bundles, digest, &[rule]),
        };
        // The bundle itself must always verify: these cases are about policy only.
        assert!(
            verdict.bundles[0].attestation.is_some(),
            "minted bundle did not verify: {:?}",
            verdict.reasons()
        );
        if verdict.allowed {
            Ok(())
        } else {
            Err(verdict.reasons().join("\n"))
        }
    }
}

fn build() -> MintSpec {
    MintSpec::github_build(DIGEST)
}

fn assert_denied(result: Result<(), String>, fragments: &[&str]) {
    let reasons = result.expect_err("must be denied");
    for fragment in fragments {
        assert!(
            reasons.contains(fragment),
            "reasons lack {fragment:?}:\n{reasons}"
        );
    }
}

#[test]
fn a_consistent_main_branch_build_is_allowed() {
    let harness = Harness::new();
    harness.decide("acme", &build()).unwrap();
    harness.decide("acme-owner", &build()).unwrap();
}

#[test]
fn tag_builds_pass_only_where_tags_are_listed() {
    let harness = Harness::new();
    let release = build().with_ref("refs/tags/v1.2.3").with_trigger("release");
    // The default is the default branch only: anyone with write access can tag any commit.
    assert_denied(
        harness.decide("acme", &release),
        &[
            "built from refs/tags/v1.2.3",
            "allows refs: refs/heads/main",
        ],
    );
    harness.decide("acme-releases", &release).unwrap();
    assert_denied(
        harness.decide("acme-releases", &build().with_ref("refs/tags/nightly")),
        &["refs/tags/nightly"],
    );
}

#[test]
fn an_owner_id_pin_holds_for_a_repository_listed_without_an_id() {
    let harness = Harness::new();
    let legacy = |owner_id: &str| {
        build()
            .with_repository("acme/legacy")
            .with_repository_ids("555", owner_id)
    };
    // Someone who registered the freed `acme` login has another owner ID.
    assert_denied(
        harness.decide("acme-legacy", &legacy("333")),
        &["owner ID differs: owner acme has ID 333", "pins ID 222"],
    );
    harness.decide("acme-legacy", &legacy("222")).unwrap();
}

#[test]
fn default_triggers_are_push_release_dispatch_and_schedule() {
    let harness = Harness::new();
    for trigger in ["push", "release", "workflow_dispatch", "schedule"] {
        harness
            .decide("acme", &build().with_trigger(trigger))
            .unwrap_or_else(|reasons| panic!("{trigger}: {reasons}"));
    }
    // Even on the default branch, and merge_group too.
    let refused = RISKY_TRIGGERS.into_iter().chain(["merge_group"]);
    for trigger in refused {
        assert_denied(
            harness.decide("acme", &build().with_trigger(trigger)),
            &[&format!("trigger {trigger} is not allowed")],
        );
    }
}

fn hardened_builder() -> ReusableWorkflow {
    ReusableWorkflow {
        repository: "acme/builder".into(),
        path: ".github/workflows/build.yml".into(),
        git_ref: "refs/tags/v3".into(),
        commit: "3333333333333333333333333333333333333333".into(),
    }
}

#[test]
fn signer_workflows_are_required_once_listed() {
    let harness = Harness::new();
    let by_builder = build().with_signer_workflow(hardened_builder());
    harness.decide("acme-builder", &by_builder).unwrap();
    assert_denied(
        harness.decide("acme-builder", &build()),
        &[
            "signed by the calling workflow .github/workflows/release.yml itself",
            "(allowSelfSigned is false)",
        ],
    );
    // The builder at another commit is not the pinned builder.
    let moved = build().with_signer_workflow(ReusableWorkflow {
        commit: "4444444444444444444444444444444444444444".into(),
        ..hardened_builder()
    });
    assert_denied(
        harness.decide("acme-builder", &moved),
        &["not by a listed signer workflow"],
    );
    harness.decide("acme-builder-or-self", &build()).unwrap();
    harness.decide("acme-builder-or-self", &by_builder).unwrap();
}

#[test]
fn build_config_digests_pin_the_calling_workflow_commit() {
    let harness = Harness::new();
    harness.decide("acme-pinned-workflow", &build()).unwrap();
    let edited = build().with_commit("5555555555555555555555555555555555555555");
    assert_denied(
        harness.decide("acme-pinned-workflow", &edited),
        &["has build config digest 5555555555555555555555555555555555555555"],
    );
}

#[test]
fn max_age_counts_from_the_timestamp_to_the_review() {
    let harness = Harness::new();
    // Minted builds are timestamped on 2025-06-01.
    let at = |text: &str| Some(text.parse::<jiff::Timestamp>().unwrap());
    harness
        .decide_at("acme-fresh", &build(), at("2025-06-20T00:00:00Z"))
        .unwrap();
    assert_denied(
        harness.decide_at("acme-fresh", &build(), at("2025-08-01T00:00:00Z")),
        &["longer ago than maxAge 30d at review time 2025-08-01T00:00:00Z"],
    );
    // The wall clock is later still; a rule without maxAge does not care.
    assert_denied(harness.decide("acme-fresh", &build()), &["maxAge 30d"]);
    harness.decide("acme", &build()).unwrap();
}

#[test]
fn revoked_commits_runs_and_signers_are_denied_under_every_rule() {
    let harness = Harness::with_policy(&format!(
        "{POLICY}revoked:\n  commits: [\"6666666666666666666666666666666666666666\"]\n  runs: [\"https://github.com/acme/api/actions/runs/777\"]\n  signerDigests: [\"3333333333333333333333333333333333333333\"]\n"
    ));
    let cases = [
        (
            build().with_commit("6666666666666666666666666666666666666666"),
            "commit 6666666666666666666666666666666666666666 is revoked by the policy (revoked.commits)",
        ),
        (
            build().with_run(777, 2),
            "run https://github.com/acme/api/actions/runs/777/attempts/2 is revoked by the policy",
        ),
        (
            build().with_signer_workflow(hardened_builder()),
            "signer digest 3333333333333333333333333333333333333333 is revoked by the policy (revoked.signerDigests)",
        ),
    ];
    for (spec, reason) in cases {
        for rule in ["acme", "acme-owner", "acme-builder-or-self"] {
            assert_denied(harness.decide(rule, &spec), &[reason]);
        }
    }
    harness.decide("acme", &build()).unwrap();
    // The same run ID in another repository is another run.
    harness
        .decide(
            "acme-owner",
            &build().with_repository("acme/web").with_run(777, 1),
        )
        .unwrap();
}

#[test]
fn a_reusable_signer_workflow_passes_only_when_allowed() {
    let harness = Harness::new();
    let reusable = build().with_signer_workflow(ReusableWorkflow::github_attest());
    assert_denied(
        harness.decide("acme", &reusable),
        &[
            "github/artifact-attestations-workflows/.github/workflows/attest.yml",
            "calling workflow",
        ],
    );
    harness.decide("acme-reusable", &reusable).unwrap();
    // Allowing one reusable workflow does not allow another one.
    let other = build().with_signer_workflow(ReusableWorkflow {
        repository: "mallory/workflows".into(),
        path: ".github/workflows/attest.yml".into(),
        git_ref: "refs/heads/main".into(),
        commit: "1111111111111111111111111111111111111111".into(),
    });
    assert_denied(
        harness.decide("acme-reusable", &other),
        &["mallory/workflows"],
    );
}

#[test]
fn pull_request_builds_are_rejected_by_default() {
    let harness = Harness::new();
    let pr = build()
        .with_ref("refs/pull/31/merge")
        .with_trigger("pull_request");
    assert_denied(
        harness.decide("acme", &pr),
        &["refs/pull/31/merge", "pull_request"],
    );
    let target = build().with_trigger("pull_request_target");
    assert_denied(harness.decide("acme", &target), &["pull_request_target"]);
    // An explicit opt-in is honoured.
    harness.decide("acme-pr-builds", &pr).unwrap();
}

#[test]
fn a_fork_of_the_repository_is_rejected() {
    let harness = Harness::new();
    let fork = build()
        .with_repository("mallory/api")
        .with_repository_ids("999", "888");
    assert_denied(harness.decide("acme", &fork), &["mallory/api"]);
    assert_denied(harness.decide("acme-owner", &fork), &["mallory"]);
}

#[test]
fn self_hosted_runners_are_rejected_by_default() {
    let harness = Harness::new();
    let self_hosted = build().with_runner("self-hosted");
    assert_denied(harness.decide("acme", &self_hosted), &["self-hosted"]);
    harness.decide("acme-self-hosted", &self_hosted).unwrap();
}

#[test]
fn same_repository_name_with_another_id_is_rejected() {
    let harness = Harness::new();
    let recreated = build().with_repository_ids("123456", "16248153");
    assert_denied(harness.decide("acme", &recreated), &["123456", "804070735"]);
    let other_owner = build().with_repository_ids("804070735", "42");
    assert_denied(
        harness.decide("acme-owner", &other_owner),
        &["42", "16248153"],
    );
}

#[test]
fn a_wrong_issuer_is_rejected() {
    let harness = Harness::new();
    let issuer = build().with_issuer("https://accounts.google.com");
    assert_denied(
        harness.decide("acme", &issuer),
        &["https://accounts.google.com"],
    );
}

#[test]
fn predicate_and_certificate_disagreement_is_rejected() {
    let harness = Harness::new();
    let cases = [
        (
            "repository",
            build().with_predicate_build(|b| b.repository = "acme/other".into()),
            "acme/other",
        ),
        (
            "workflow path",
            build().with_predicate_build(|b| b.workflow_path = ".github/workflows/x.yml".into()),
            ".github/workflows/x.yml",
        ),
        (
            "ref",
            build().with_predicate_build(|b| b.git_ref = "refs/heads/dev".into()),
            "refs/heads/dev",
        ),
        (
            "trigger",
            build().with_predicate_build(|b| b.event_name = "workflow_dispatch".into()),
            "workflow_dispatch",
        ),
        (
            "commit",
            build().with_predicate_build(|b| {
                b.commit = "2222222222222222222222222222222222222222".into()
            }),
            "2222222222222222222222222222222222222222",
        ),
    ];
    for (what, spec, fragment) in cases {
        let result = harness.decide("acme", &spec);
        assert!(result.is_err(), "{what}: disagreement was allowed");
        assert_denied(result, &[fragment]);
    }
}

#[test]
fn another_predicate_type_is_rejected_by_default() {
    let harness = Harness::new();
    let spdx = build().with_predicate_type("https://spdx.dev/Document");
    assert_denied(
        harness.decide("acme", &spdx),
        &["https://spdx.dev/Document"],
    );
}

/// `verify-bundle` run as a user runs it, with the minted bundle, the test instance's root
/// and `policy` in files.
struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(policy: &str, spec: &MintSpec) -> Cli {
        let instance = TestInstance::timestamp_only();
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write test input")
        };
        write("root.json", &instance.trusted_root_json());
        write("bundle.json", &instance.mint(spec));
        write("policy.yaml", policy);
        Cli { dir }
    }

    /// Exit code and the JSON answer of `verify-bundle` with `extra` arguments.
    fn verify(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let path = |name: &str| self.dir.path().join(name);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_provenance-gate"))
            .arg("verify-bundle")
            .arg("--bundle")
            .arg(path("bundle.json"))
            .arg("--trusted-root")
            .arg(path("root.json"))
            .arg("--policy")
            .arg(path("policy.yaml"))
            .args(["--digest", &format!("sha256:{DIGEST}"), "--output", "json"])
            .args(extra)
            .output()
            .expect("the binary runs");
        let code = output.status.code().expect("exit code");
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "{extra:?}: exit {code}, stdout is not JSON ({error}); stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (code, json)
    }
}

/// A strict rule for one image before a lenient rule for the rest of the owner's images:
/// the webhook tries only the first rule whose images match.
const FIRST_MATCH_POLICY: &str = r#"
version: 1
exemptImages: ["registry.k8s.io/**"]
rules:
  - name: api-self-hosted-only
    images: ["ghcr.io/acme/api"]
    repositories: [{name: acme/api, id: "804070735"}]
    runners: [self-hosted]
  - name: acme
    images: ["ghcr.io/acme/**"]
    repositories: [{name: acme/api, id: "804070735"}]
"#;

#[test]
fn verify_bundle_with_an_image_asks_the_rule_the_webhook_picks() {
    let cli = Cli::new(FIRST_MATCH_POLICY, &build());
    // Without --image any rule may allow: the lenient one does.
    let (code, json) = cli.verify(&[]);
    assert_eq!((code, json["rule"].as_str()), (0, Some("acme")), "{json}");

    for image in ["ghcr.io/acme/api:1.2", "GHCR.IO:443/acme/api:1.2"] {
        let (code, json) = cli.verify(&["--image", image]);
        assert_eq!(
            (code, json["decision"].as_str()),
            (1, Some("denied")),
            "{json}"
        );
        let reasons = json["reasons"].to_string();
        assert!(
            reasons.contains("api-self-hosted-only"),
            "{image}: {reasons}"
        );
        assert!(reasons.contains("github-hosted"), "{image}: {reasons}");
        assert_eq!(json["image"], image);
    }

    let (code, json) = cli.verify(&["--image", "ghcr.io/acme/web:1.2"]);
    assert_eq!((code, json["rule"].as_str()), (0, Some("acme")), "{json}");

    let (code, json) = cli.verify(&["--image", "registry.k8s.io/pause:3.9"]);
    assert_eq!(
        (code, json["decision"].as_str()),
        (0, Some("exempt")),
        "{json}"
    );
    assert_eq!(json["bundles"], serde_json::json!([]));

    let (code, json) = cli.verify(&["--image", "quay.io/acme/api:1"]);
    assert_eq!(
        (code, json["decision"].as_str()),
        (1, Some("denied")),
        "{json}"
    );
    assert_eq!(json["reasonCode"], "unmatched");

    let allow_unmatched = format!("unmatchedImages: allow\n{FIRST_MATCH_POLICY}");
    let (code, json) =
        Cli::new(&allow_unmatched, &build()).verify(&["--image", "quay.io/acme/api:1"]);
    assert_eq!(
        (code, json["decision"].as_str()),
        (0, Some("allowed")),
        "{json}"
    );
    assert_eq!(json["reasonCode"], "unmatched");
}

#[test]
fn verify_bundle_labels_the_predicate_claims_nobody_checked() {
    let (code, json) = Cli::new(FIRST_MATCH_POLICY, &build()).verify(&[]);
    assert_eq!(code, 0, "{json}");
    let predicate = &json["bundles"][0]["attestation"]["predicate"];
    for unchecked in ["builderId", "invocationId", "buildType"] {
        assert!(
            predicate["claimedBySigner"][unchecked].is_string(),
            "{unchecked}: {predicate}"
        );
        assert!(
            predicate.get(unchecked).is_none(),
            "{unchecked} beside verified values: {predicate}"
        );
    }
    assert_eq!(
        predicate["checkedAgainstCertificate"]["workflowRepository"],
        json["bundles"][0]["attestation"]["certificate"]["sourceRepositoryUri"]
    );
}
