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
