//! The real GitHub attestation bundles in tests/data verify under the right embedded root
//! only, yield the claims their origin documents, and every tampering is rejected.

use base64::Engine as _;
use provenance_gate::verify::{
    read_bundles, verify_bundle, ArtifactInput, Instance, TrustedRoots, VerifiedAttestation,
    VerifyError,
};

const PUBLIC_GOOD_ROOT: &str = include_str!("../trusted-roots/public-good.json");
const GITHUB_ROOT: &str = include_str!("../trusted-roots/github.json");

struct RealCase {
    bundle: &'static str,
    artifact: &'static [u8],
    instance: Instance,
}

fn cases() -> Vec<RealCase> {
    vec![
        RealCase {
            bundle: include_str!(
                "data/bundles/public-good/reusable-workflow-attestation.sigstore.json"
            ),
            artifact: include_bytes!("data/bundles/public-good/reusable-workflow-artifact"),
            instance: Instance::PublicGood,
        },
        RealCase {
            bundle: include_str!("data/bundles/public-good/sigstore-js-2.1.0-bundle.json"),
            artifact: include_bytes!("data/bundles/public-good/sigstore-js-2.1.0.tgz"),
            instance: Instance::PublicGood,
        },
        RealCase {
            bundle: include_str!("data/bundles/public-good/sigstore-js-2.1.0-bundle-v0.1.json"),
            artifact: include_bytes!("data/bundles/public-good/sigstore-js-2.1.0.tgz"),
            instance: Instance::PublicGood,
        },
        RealCase {
            bundle: include_str!(
                "data/bundles/github/github_provenance_demo-0.0.12-py3-none-any-bundle.json"
            ),
            artifact: include_bytes!(
                "data/bundles/github/github_provenance_demo-0.0.12-py3-none-any.whl"
            ),
            instance: Instance::Github,
        },
    ]
}

fn verify_text(
    roots: &TrustedRoots,
    bundle: &str,
    artifact: ArtifactInput<'_>,
) -> Result<VerifiedAttestation, VerifyError> {
    let bundles = read_bundles(bundle.as_bytes()).expect("bundle parses");
    assert_eq!(bundles.len(), 1);
    verify_bundle(roots, &bundles[0], artifact)
}

fn only(instance: Instance, json: &str) -> TrustedRoots {
    TrustedRoots::from_json(&[(instance, json)]).unwrap()
}

#[test]
fn each_real_bundle_verifies_under_its_own_root_only() {
    let embedded = TrustedRoots::embedded().unwrap();
    for case in cases() {
        let verified = verify_text(&embedded, case.bundle, ArtifactInput::Bytes(case.artifact))
            .unwrap_or_else(|error| panic!("{:?} should verify: {error}", case.instance));
        assert_eq!(verified.instance, case.instance);
        assert!(verified.signed_at.is_some());

        let (other_instance, other_json) = match case.instance {
            Instance::PublicGood => (Instance::Github, GITHUB_ROOT),
            _ => (Instance::PublicGood, PUBLIC_GOOD_ROOT),
        };
        let error = verify_text(
            &only(other_instance, other_json),
            case.bundle,
            ArtifactInput::Bytes(case.artifact),
        )
        .expect_err("must not verify under the other root");
        assert!(matches!(error, VerifyError::Rejected(_)), "{error}");
    }
}

#[test]
fn reusable_workflow_bundle_yields_every_documented_claim() {
    let case = &cases()[0];
    let digest = ArtifactInput::parse_sha256(
        "sha256:49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25",
    )
    .unwrap();
    let verified = verify_text(&TrustedRoots::embedded().unwrap(), case.bundle, digest).unwrap();
    let certificate = &verified.certificate;
    assert_eq!(
        certificate.issuer.as_deref(),
        Some("https://token.actions.githubusercontent.com")
    );
    assert_eq!(
        certificate.build_signer_uri.as_deref(),
        Some("https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d")
    );
    assert_eq!(
        certificate.subject_alternative_name,
        certificate.build_signer_uri
    );
    assert_eq!(
        certificate.source_repository_uri.as_deref(),
        Some("https://github.com/malancas/attest-demo")
    );
    assert_eq!(
        certificate.source_repository_identifier.as_deref(),
        Some("804070735")
    );
    assert_eq!(
        certificate.source_repository_owner_identifier.as_deref(),
        Some("16248153")
    );
    assert_eq!(
        certificate.source_repository_owner_uri.as_deref(),
        Some("https://github.com/malancas")
    );
    assert_eq!(
        certificate.build_config_uri.as_deref(),
        Some(
            "https://github.com/malancas/attest-demo/.github/workflows/shared.yml@refs/heads/main"
        )
    );
    assert_eq!(
        certificate.source_repository_ref.as_deref(),
        Some("refs/heads/main")
    );
    assert_eq!(
        certificate.source_repository_digest.as_deref(),
        Some("95baf27389e83e6a5c48f42e190d48d7abcea19e")
    );
    assert_eq!(
        certificate.build_trigger.as_deref(),
        Some("workflow_dispatch")
    );
    assert_eq!(
        certificate.runner_environment.as_deref(),
        Some("github-hosted")
    );
    assert_eq!(
        certificate.source_repository_visibility.as_deref(),
        Some("public")
    );
    assert!(certificate
        .run_invocation_uri
        .as_deref()
        .unwrap()
        .starts_with("https://github.com/malancas/attest-demo/actions/runs/"));
    assert_eq!(
        certificate.build_signer_digest.as_deref(),
        Some("09b495c3f12c7881b3cc17209a327792065c1a1d")
    );
    assert!(certificate.build_config_digest.is_some());

    assert_eq!(verified.predicate_type, "https://slsa.dev/provenance/v1");
    let predicate = verified.predicate.as_ref().expect("SLSA predicate");
    assert_eq!(
        predicate.workflow_repository.as_deref(),
        Some("https://github.com/malancas/attest-demo")
    );
    assert_eq!(
        predicate.workflow_path.as_deref(),
        Some(".github/workflows/shared.yml")
    );
    assert_eq!(predicate.workflow_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(predicate.event_name.as_deref(), Some("workflow_dispatch"));
    assert_eq!(predicate.repository_id.as_deref(), Some("804070735"));
    assert_eq!(
        predicate.resolved_commit.as_deref(),
        Some("95baf27389e83e6a5c48f42e190d48d7abcea19e")
    );
    assert!(predicate.invocation_id.is_some());
    assert!(predicate.builder_id.is_some());
    assert_eq!(
        verified.subjects[0]
            .digest
            .get("sha256")
            .map(String::as_str),
        Some("49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25")
    );
}

#[test]
fn github_instance_bundle_yields_its_documented_claims() {
    let case = &cases()[3];
    let digest = ArtifactInput::parse_sha256(
        "sha256:ae57936def59bc4c75edd3a837d89bcefc6d3a5e31d55a6fa7a71624f92c3c3b",
    )
    .unwrap();
    let verified = verify_text(&TrustedRoots::embedded().unwrap(), case.bundle, digest).unwrap();
    assert_eq!(verified.instance, Instance::Github);
    let certificate = &verified.certificate;
    assert_eq!(
        certificate.build_signer_uri.as_deref(),
        Some("https://github.com/actions/attest-demo/.github/workflows/build-python.yml@refs/heads/main")
    );
    assert_eq!(
        certificate.source_repository_uri.as_deref(),
        Some("https://github.com/actions/attest-demo")
    );
    assert_eq!(
        certificate.source_repository_identifier.as_deref(),
        Some("763287532")
    );
    assert_eq!(
        certificate.source_repository_owner_identifier.as_deref(),
        Some("44036562")
    );
    assert_eq!(
        certificate.source_repository_ref.as_deref(),
        Some("refs/heads/main")
    );
    assert_eq!(
        certificate.source_repository_digest.as_deref(),
        Some("a6c23b9806c593664f68637c8f9d45dfcf98b2db")
    );
    assert_eq!(
        certificate.build_trigger.as_deref(),
        Some("workflow_dispatch")
    );
    assert_eq!(
        certificate.runner_environment.as_deref(),
        Some("github-hosted")
    );
    assert_eq!(
        certificate.source_repository_visibility.as_deref(),
        Some("private")
    );
}

#[test]
fn sigstore_js_statement_names_only_sha512_so_a_sha256_digest_cannot_bind() {
    let case = &cases()[1];
    let digest = ArtifactInput::parse_sha256(
        "sha256:f0c641fce0310cb43208f4272dc1423153630e44ba8cdc0b5ce8466f724e0eed",
    )
    .unwrap();
    let error = verify_text(&TrustedRoots::embedded().unwrap(), case.bundle, digest).unwrap_err();
    assert!(error.to_string().contains("public-good"), "{error}");
}

#[test]
fn an_artifact_or_digest_that_is_not_the_subject_is_rejected() {
    let embedded = TrustedRoots::embedded().unwrap();
    for case in cases() {
        let mut other = case.artifact.to_vec();
        other.push(b'\n');
        let error = verify_text(&embedded, case.bundle, ArtifactInput::Bytes(&other)).unwrap_err();
        assert!(
            error.to_string().contains("does not match any subject"),
            "{error}"
        );
    }
    let error =
        verify_text(&embedded, cases()[0].bundle, ArtifactInput::Sha256([7; 32])).unwrap_err();
    assert!(
        error.to_string().contains("does not match any subject"),
        "{error}"
    );
}

/// Applies `edit` to the bundle's JSON and expects rejection by every root.
fn assert_tampering_rejected(case: &RealCase, what: &str, edit: impl Fn(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_str(case.bundle).unwrap();
    edit(&mut value);
    let text = value.to_string();
    let result = read_bundles(text.as_bytes())
        .map_err(|error| error.to_string())
        .and_then(|bundles| {
            verify_bundle(
                &TrustedRoots::embedded().unwrap(),
                &bundles[0],
                ArtifactInput::Bytes(case.artifact),
            )
            .map_err(|error| error.to_string())
        });
    assert!(result.is_err(), "{what}: tampered bundle was accepted");
}

fn flip_base64_bit(value: &mut serde_json::Value, pointer: &str, byte: usize) {
    let slot = value
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}"));
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(slot.as_str().unwrap()).unwrap();
    let index = byte.min(bytes.len() - 1);
    bytes[index] ^= 0x01;
    *slot = serde_json::Value::String(engine.encode(bytes));
}

#[test]
fn tampering_with_a_public_good_bundle_is_rejected() {
    let case = &cases()[0];
    assert_tampering_rejected(case, "payload bit", |v| {
        flip_base64_bit(v, "/dsseEnvelope/payload", 100)
    });
    assert_tampering_rejected(case, "signature bit", |v| {
        flip_base64_bit(v, "/dsseEnvelope/signatures/0/sig", 10)
    });
    assert_tampering_rejected(case, "integrated time", |v| {
        let slot = v
            .pointer_mut("/verificationMaterial/tlogEntries/0/integratedTime")
            .unwrap();
        let time: i64 = slot.as_str().unwrap().parse().unwrap();
        *slot = serde_json::Value::String((time + 1).to_string());
    });
    assert_tampering_rejected(case, "SET bit", |v| {
        flip_base64_bit(
            v,
            "/verificationMaterial/tlogEntries/0/inclusionPromise/signedEntryTimestamp",
            20,
        )
    });
    assert_tampering_rejected(case, "inclusion proof hash", |v| {
        flip_base64_bit(
            v,
            "/verificationMaterial/tlogEntries/0/inclusionProof/hashes/0",
            3,
        )
    });
    assert_tampering_rejected(case, "removed log entry", |v| {
        v.pointer_mut("/verificationMaterial/tlogEntries")
            .unwrap()
            .as_array_mut()
            .unwrap()
            .clear();
    });
    assert_tampering_rejected(case, "removed inclusion proof", |v| {
        v.pointer_mut("/verificationMaterial/tlogEntries/0")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("inclusionProof");
    });
    assert_tampering_rejected(case, "removed SET", |v| {
        v.pointer_mut("/verificationMaterial/tlogEntries/0")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("inclusionPromise");
    });
    assert_tampering_rejected(case, "certificate bit", |v| {
        flip_base64_bit(v, "/verificationMaterial/certificate/rawBytes", 400)
    });
}

#[test]
fn tampering_with_a_github_instance_bundle_is_rejected() {
    let case = &cases()[3];
    let token =
        "/verificationMaterial/timestampVerificationData/rfc3161Timestamps/0/signedTimestamp";
    assert_tampering_rejected(case, "payload bit", |v| {
        flip_base64_bit(v, "/dsseEnvelope/payload", 100)
    });
    assert_tampering_rejected(case, "signature bit", |v| {
        flip_base64_bit(v, "/dsseEnvelope/signatures/0/sig", 10)
    });
    // Several positions: the token's TSTInfo, its signed attributes and its signature.
    for byte in [60, 200, 400, 10_000] {
        assert_tampering_rejected(case, "timestamp token bit", |v| {
            flip_base64_bit(v, token, byte)
        });
    }
    assert_tampering_rejected(case, "removed timestamp", |v| {
        v.pointer_mut("/verificationMaterial/timestampVerificationData/rfc3161Timestamps")
            .unwrap()
            .as_array_mut()
            .unwrap()
            .clear();
    });
}

#[test]
fn relabelled_media_types_still_verify_because_they_are_not_signed() {
    let embedded = TrustedRoots::embedded().unwrap();
    let case = &cases()[0];
    let alternative = case.bundle.replace(
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
    );
    verify_text(&embedded, &alternative, ArtifactInput::Bytes(case.artifact)).unwrap();
    // v0.1 content relabelled v0.2 (which adds the inclusion-proof requirement it meets).
    let case = &cases()[2];
    let v02 = case.bundle.replace("version=0.1", "version=0.2");
    assert_ne!(v02, case.bundle);
    verify_text(&embedded, &v02, ArtifactInput::Bytes(case.artifact)).unwrap();
}

/// A rule's `instances` pin: a real public-good bundle is denied by a rule pinned to GitHub's
/// instance and a real GitHub-instance bundle by one pinned to public-good; pinned to its own
/// instance, the pin is not among the reasons (other checks of these rules may still fail,
/// since the rules name no repository of these bundles).
#[test]
fn a_rule_pinned_to_one_instance_denies_bundles_of_the_other() {
    use provenance_gate::policy::{evaluate, Check, Destination, Policy};
    let policy = Policy::from_yaml(
        r#"
version: 1
rules:
  - name: github-only
    images: ["ghcr.io/private/**"]
    owners: [{name: actions}]
    instances: [github]
  - name: public-good-only
    images: ["ghcr.io/public/**"]
    owners: [{name: actions}]
    instances: [public-good]
"#,
    )
    .unwrap();
    let embedded = TrustedRoots::embedded().unwrap();
    for case in [&cases()[0], &cases()[3]] {
        let verified =
            verify_text(&embedded, case.bundle, ArtifactInput::Bytes(case.artifact)).unwrap();
        let (own, other) = match case.instance {
            Instance::PublicGood => ("public-good-only", "github-only"),
            _ => ("github-only", "public-good-only"),
        };
        let instance_failures = |rule: &str| {
            let rule = policy.rule(rule).unwrap();
            match evaluate(
                rule,
                &Destination::Unselected,
                &verified,
                jiff::Timestamp::now(),
            ) {
                Ok(()) => Vec::new(),
                Err(violation) => violation
                    .failures
                    .into_iter()
                    .filter(|failure| failure.check == Check::Instance)
                    .map(|failure| failure.message)
                    .collect(),
            }
        };
        assert_eq!(instance_failures(own), Vec::<String>::new(), "{own}");
        let refused = instance_failures(other);
        assert_eq!(
            refused,
            vec![format!(
                "bundle verified under the {} instance; rule \"{other}\" allows instances: {}",
                case.instance,
                if other == "github-only" {
                    "github"
                } else {
                    "public-good"
                }
            )],
            "{other}"
        );
    }
}
