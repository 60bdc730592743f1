//! Policy tables over minted bundles: every case goes through real signature, certificate
//! chain and RFC 3161 timestamp verification (the test kit's private instance), then the
//! policy engine. Nothing here builds claims by hand.

use provenance_gate::policy::Policy;
use provenance_gate::provenance::check_bundles;
use provenance_gate::verify::{read_bundles, ArtifactInput, Instance, TrustedRoots};
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
"#;

struct Harness {
    instance: TestInstance,
    roots: TrustedRoots,
    policy: Policy,
}

impl Harness {
    fn new() -> Harness {
        let instance = TestInstance::timestamp_only();
        let roots = TrustedRoots::from_json(&[(
            Instance::Custom("test".into()),
            &instance.trusted_root_json(),
        )])
        .unwrap();
        Harness {
            instance,
            roots,
            policy: Policy::from_yaml(POLICY).expect("test policy is valid"),
        }
    }

    /// `Ok(())` when `rule` accepts the minted bundle, else every reason.
    fn decide(&self, rule: &str, spec: &MintSpec) -> Result<(), String> {
        let bundle = self.instance.mint(spec);
        let bundles = read_bundles(bundle.as_bytes()).unwrap();
        let rule = self.policy.rule(rule).expect("rule exists");
        let digest = ArtifactInput::parse_sha256(&format!("sha256:{DIGEST}")).unwrap();
        let verdict = check_bundles(&self.roots, &bundles, digest, &[rule]);
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
    harness
        .decide(
            "acme",
            &build().with_ref("refs/tags/v1.2.3").with_trigger("release"),
        )
        .unwrap();
    harness.decide("acme-owner", &build()).unwrap();
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
