//! Minted bundles against the real verifier, `sigstore-verify`, configured
//! as for GitHub's instance: no transparency log, no SCT, time from the
//! RFC 3161 timestamp.

use std::sync::OnceLock;

use provenance_gate_testkit::{
    GithubClaims, MintSpec, ReusableWorkflow, Tamper, TestInstance, BUNDLE_V0_3_MEDIA_TYPE,
    GITHUB_ACTIONS_ISSUER,
};
use serde_json::Value;
use sigstore_verify::crypto::FulcioCiClaims;
use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::{Artifact, Bundle, Sha256Hash};
use sigstore_verify::{VerificationPolicy, VerificationResult, Verifier};

const IMAGE_DIGEST: &str = "9c24ac7eca13411bee8f335f96442c0b5ef8de65ff1f85da6f16fcb0c046bd78";

/// Key generation in a debug build is not free: share one instance.
fn instance() -> &'static TestInstance {
    static INSTANCE: OnceLock<TestInstance> = OnceLock::new();
    INSTANCE.get_or_init(TestInstance::timestamp_only)
}

fn verify_with(
    instance: &TestInstance,
    bundle_json: &str,
    digest_hex: &str,
) -> sigstore_verify::Result<VerificationResult> {
    let trusted_root =
        TrustedRoot::from_json(&instance.trusted_root_json()).expect("the trusted root parses");
    let verifier = Verifier::new(&trusted_root).expect("the trusted root is usable");
    let bundle = Bundle::from_json(bundle_json).expect("the minted bundle parses");
    let digest = Sha256Hash::from_hex(digest_hex).expect("the digest is hex");
    let policy = VerificationPolicy::any_identity()
        .skip_tlog_unsafe()
        .skip_sct();
    verifier.verify(Artifact::from_digest(digest), &bundle, &policy)
}

fn verify(bundle_json: &str) -> sigstore_verify::Result<VerificationResult> {
    verify_with(instance(), bundle_json, IMAGE_DIGEST)
}

/// The claims as `sigstore-verify` reports them, in the kit's terms.
fn claims_read_back(result: &VerificationResult) -> GithubClaims {
    let certificate = result
        .certificate()
        .expect("a keyless bundle has a certificate");
    let FulcioCiClaims {
        build_signer_uri,
        build_signer_digest,
        runner_environment,
        source_repository_uri,
        source_repository_digest,
        source_repository_ref,
        source_repository_identifier,
        source_repository_owner_uri,
        source_repository_owner_identifier,
        build_config_uri,
        build_config_digest,
        build_trigger,
        run_invocation_uri,
        source_repository_visibility_at_signing,
        ..
    } = certificate.ci_claims.clone();
    GithubClaims {
        issuer: result.issuer().map(str::to_owned),
        build_signer_uri,
        build_signer_digest,
        runner_environment,
        source_repository_uri,
        source_repository_digest,
        source_repository_ref,
        source_repository_identifier,
        source_repository_owner_uri,
        source_repository_owner_identifier,
        build_config_uri,
        build_config_digest,
        build_trigger,
        run_invocation_uri,
        source_repository_visibility: source_repository_visibility_at_signing,
    }
}

fn statement_of(bundle_json: &str) -> Value {
    let bundle: Value = serde_json::from_str(bundle_json).expect("the bundle is JSON");
    let payload = bundle["dsseEnvelope"]["payload"]
        .as_str()
        .expect("the envelope has a payload");
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .expect("the payload is base64");
    serde_json::from_slice(&payload).expect("the payload is JSON")
}

#[test]
fn minted_bundle_verifies_and_every_claim_reads_back() {
    let spec = MintSpec::github_build(IMAGE_DIGEST);
    let bundle = instance().mint(&spec);

    let result = verify(&bundle).expect("a minted bundle verifies");

    assert!(result.certificate_verified());
    assert_eq!(claims_read_back(&result), spec.claims());
    assert_eq!(
        result.identity().map(|san| san.as_str()),
        spec.claims().build_signer_uri.as_deref(),
        "the SAN is the build signer URI"
    );
    let expected_claims = GithubClaims {
        issuer: Some(GITHUB_ACTIONS_ISSUER.into()),
        build_signer_uri: Some(
            "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main".into(),
        ),
        build_signer_digest: Some(spec.build.commit.clone()),
        runner_environment: Some("github-hosted".into()),
        source_repository_uri: Some("https://github.com/acme/api".into()),
        source_repository_digest: Some(spec.build.commit.clone()),
        source_repository_ref: Some("refs/heads/main".into()),
        source_repository_identifier: Some("804070735".into()),
        source_repository_owner_uri: Some("https://github.com/acme".into()),
        source_repository_owner_identifier: Some("16248153".into()),
        build_config_uri: Some(
            "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main".into(),
        ),
        build_config_digest: Some(spec.build.commit.clone()),
        build_trigger: Some("push".into()),
        run_invocation_uri: Some(
            "https://github.com/acme/api/actions/runs/9876543210/attempts/1".into(),
        ),
        source_repository_visibility: Some("private".into()),
    };
    assert_eq!(spec.claims(), expected_claims);

    // The only verified time is the TSA's, a minute after issuance.
    let signing_time: jiff::Timestamp = "2025-06-01T12:01:00Z".parse().unwrap();
    assert_eq!(result.verified_timestamps(), &[signing_time]);
}

#[test]
fn minted_statement_is_github_shaped_slsa_provenance() {
    let bundle = instance().mint(&MintSpec::github_build(IMAGE_DIGEST));
    let bundle_value: Value = serde_json::from_str(&bundle).unwrap();
    assert_eq!(bundle_value["mediaType"], BUNDLE_V0_3_MEDIA_TYPE);
    assert_eq!(
        bundle_value["dsseEnvelope"]["payloadType"],
        "application/vnd.in-toto+json"
    );

    let statement = statement_of(&bundle);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["subject"][0]["name"], "ghcr.io/acme/api");
    assert_eq!(statement["subject"][0]["digest"]["sha256"], IMAGE_DIGEST);
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let predicate = &statement["predicate"];
    let definition = &predicate["buildDefinition"];
    assert_eq!(
        definition["buildType"],
        "https://actions.github.io/buildtypes/workflow/v1"
    );
    assert_eq!(
        definition["externalParameters"]["workflow"],
        serde_json::json!({
            "ref": "refs/heads/main",
            "repository": "https://github.com/acme/api",
            "path": ".github/workflows/release.yml",
        })
    );
    assert_eq!(
        definition["internalParameters"]["github"],
        serde_json::json!({
            "event_name": "push",
            "repository_id": "804070735",
            "repository_owner_id": "16248153",
            "runner_environment": "github-hosted",
        })
    );
    assert_eq!(
        definition["resolvedDependencies"][0]["uri"],
        "git+https://github.com/acme/api@refs/heads/main"
    );
    assert_eq!(
        predicate["runDetails"]["metadata"]["invocationId"],
        "https://github.com/acme/api/actions/runs/9876543210/attempts/1"
    );
}

#[test]
fn wrong_artifact_digest_is_rejected() {
    let bundle = instance().mint(&MintSpec::github_build(IMAGE_DIGEST));
    let other_digest = "0000000000000000000000000000000000000000000000000000000000000001";
    let error = verify_with(instance(), &bundle, other_digest)
        .expect_err("a bundle for another digest must not verify");
    assert!(
        error.to_string().contains("does not match any subject"),
        "unexpected error: {error}"
    );
}

#[test]
fn every_tamper_case_is_rejected() {
    for tamper in Tamper::ALL_BROKEN {
        let bundle = instance().mint(&MintSpec::github_build(IMAGE_DIGEST).with_tamper(tamper));
        let error = match verify(&bundle) {
            Ok(_) => panic!("{tamper:?}: a tampered bundle verified"),
            Err(error) => error.to_string(),
        };
        // Each case must fail for its own reason, not by accident.
        let expected = match tamper {
            Tamper::FlipPayloadBit | Tamper::FlipSignatureBit | Tamper::CertForDifferentKey => {
                "DSSE signature verification failed"
            }
            Tamper::FlipTimestampSignatureBit => "failed to verify timestamp signature",
            Tamper::TimestampOverOtherData => "hash mismatch",
            Tamper::DropTimestamp => "timestamp verification data",
            Tamper::CertExpiredBeforeTimestamp => "CertExpired",
            Tamper::TimestampBeforeCertValidity => "CertNotValidYet",
            Tamper::CertFromUntrustedCa => "InvalidSignatureForPublicKey",
            Tamper::CertWithoutCodeSigningEku => "RequiredEkuNotFound",
            Tamper::TimestampFromUntrustedTsa => "does not match any trusted TSA certificate",
            Tamper::None => unreachable!("ALL_BROKEN excludes None"),
        };
        assert!(
            error.to_lowercase().contains(&expected.to_lowercase()),
            "{tamper:?}: expected an error about {expected:?}, got: {error}"
        );
    }
}

#[test]
fn bundle_from_another_instance_is_rejected() {
    let other_instance = TestInstance::timestamp_only();
    let bundle = other_instance.mint(&MintSpec::github_build(IMAGE_DIGEST));

    verify_with(&other_instance, &bundle, IMAGE_DIGEST).expect("verifies under its own root");
    let error = verify_with(instance(), &bundle, IMAGE_DIGEST)
        .expect_err("a bundle from instance B must not verify under instance A's root");
    assert!(
        error.to_string().contains("TSA"),
        "the foreign timestamp is the first thing to fail, got: {error}"
    );
}

#[test]
fn builder_changes_keep_certificate_and_predicate_consistent() {
    let spec = MintSpec::github_build(IMAGE_DIGEST)
        .with_repository("acme/web")
        .with_repository_ids("111", "222")
        .with_ref("refs/tags/v1.2.3")
        .with_commit("0123456789abcdef0123456789abcdef01234567")
        .with_trigger("release")
        .with_runner("self-hosted")
        .with_workflow(".github/workflows/deploy.yml")
        .with_run(42, 3)
        .with_visibility(Some("internal"))
        .with_issuer("https://token.actions.example.invalid");
    let bundle = instance().mint(&spec);
    let result = verify(&bundle).expect("a consistent variant verifies");
    let claims = claims_read_back(&result);
    assert_eq!(claims, spec.claims());

    let config = "https://github.com/acme/web/.github/workflows/deploy.yml@refs/tags/v1.2.3";
    assert_eq!(claims.build_config_uri.as_deref(), Some(config));
    assert_eq!(claims.build_signer_uri.as_deref(), Some(config));
    assert_eq!(claims.source_repository_identifier.as_deref(), Some("111"));
    assert_eq!(
        claims.source_repository_owner_identifier.as_deref(),
        Some("222")
    );
    assert_eq!(claims.build_trigger.as_deref(), Some("release"));
    assert_eq!(claims.runner_environment.as_deref(), Some("self-hosted"));
    assert_eq!(
        claims.issuer.as_deref(),
        Some("https://token.actions.example.invalid")
    );

    let statement = statement_of(&bundle);
    assert_eq!(statement["subject"][0]["name"], "ghcr.io/acme/web");
    let definition = &statement["predicate"]["buildDefinition"];
    let workflow = &definition["externalParameters"]["workflow"];
    assert_eq!(workflow["repository"], "https://github.com/acme/web");
    assert_eq!(workflow["ref"], "refs/tags/v1.2.3");
    assert_eq!(workflow["path"], ".github/workflows/deploy.yml");
    let github = &definition["internalParameters"]["github"];
    assert_eq!(github["event_name"], "release");
    assert_eq!(github["repository_id"], "111");
    assert_eq!(github["repository_owner_id"], "222");
    assert_eq!(github["runner_environment"], "self-hosted");
    assert_eq!(
        definition["resolvedDependencies"][0]["digest"]["gitCommit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        statement["predicate"]["runDetails"]["metadata"]["invocationId"],
        "https://github.com/acme/web/actions/runs/42/attempts/3"
    );
}

#[test]
fn reusable_signer_workflow_signs_for_the_calling_workflow() {
    let signer = ReusableWorkflow::github_attest();
    let spec = MintSpec::github_build(IMAGE_DIGEST).with_signer_workflow(signer.clone());
    let bundle = instance().mint(&spec);
    let result = verify(&bundle).expect("a reusable-workflow bundle verifies");
    let claims = claims_read_back(&result);

    let signer_uri = "https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d";
    assert_eq!(claims.build_signer_uri.as_deref(), Some(signer_uri));
    assert_eq!(result.identity().map(|san| san.as_str()), Some(signer_uri));
    assert_eq!(
        claims.build_signer_digest.as_deref(),
        Some(signer.commit.as_str())
    );
    assert_eq!(
        claims.build_config_uri.as_deref(),
        Some("https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main")
    );
    let statement = statement_of(&bundle);
    assert_eq!(
        statement["predicate"]["runDetails"]["builder"]["id"],
        signer_uri
    );
    assert_eq!(
        statement["predicate"]["buildDefinition"]["externalParameters"]["workflow"]["path"],
        ".github/workflows/release.yml"
    );
}

#[test]
fn predicate_can_disagree_with_the_certificate() {
    let spec = MintSpec::github_build(IMAGE_DIGEST)
        .with_predicate_build(|build| build.repository = "mallory/api".into())
        .with_predicate_field(
            "/buildDefinition/externalParameters/workflow/ref",
            "refs/heads/evil",
        );
    let bundle = instance().mint(&spec);
    // Cryptographically fine: agreement is the policy engine's job.
    let result = verify(&bundle).expect("a disagreeing bundle is still validly signed");
    assert_eq!(
        claims_read_back(&result).source_repository_uri.as_deref(),
        Some("https://github.com/acme/api")
    );
    let workflow =
        &statement_of(&bundle)["predicate"]["buildDefinition"]["externalParameters"]["workflow"];
    assert_eq!(workflow["repository"], "https://github.com/mallory/api");
    assert_eq!(workflow["ref"], "refs/heads/evil");
}

#[test]
fn certificate_can_lack_claims_or_disagree_with_the_predicate() {
    let spec = MintSpec::github_build(IMAGE_DIGEST)
        .with_certificate_build(|build| build.runner_environment = "self-hosted".into())
        .with_claims_edit(|claims| claims.source_repository_identifier = None);
    let result = verify(&instance().mint(&spec)).expect("verifies");
    let claims = claims_read_back(&result);
    assert_eq!(claims.source_repository_identifier, None);
    assert_eq!(claims.runner_environment.as_deref(), Some("self-hosted"));
    assert_eq!(
        spec.predicate()["buildDefinition"]["internalParameters"]["github"]["runner_environment"],
        "github-hosted"
    );
}

#[test]
fn v0_2_bundle_with_certificate_chain_verifies() {
    let spec = MintSpec::github_build(IMAGE_DIGEST)
        .with_media_type("application/vnd.dev.sigstore.bundle+json;version=0.2");
    let bundle = instance().mint(&spec);
    assert!(bundle.contains("x509CertificateChain"));
    verify(&bundle).expect("a v0.2 bundle verifies without a log when the log is skipped");
}

#[test]
fn unknown_media_type_is_rejected() {
    let spec = MintSpec::github_build(IMAGE_DIGEST)
        .with_media_type("application/vnd.dev.sigstore.bundle.v9.9+json");
    let bundle = instance().mint(&spec);
    let error = Bundle::from_json(&bundle).expect_err("an unknown media type does not parse");
    eprintln!("{error}");
}

#[test]
fn signing_before_the_instance_existed_is_rejected() {
    let spec = MintSpec::github_build(IMAGE_DIGEST)
        .with_signing_time("2023-06-01T12:00:00Z".parse().unwrap());
    let error = verify(&instance().mint(&spec)).expect_err("signed before the instance existed");
    assert!(
        error.to_string().contains("CertNotValidYet"),
        "the TSA's certificate is not valid yet in 2023, got: {error}"
    );
}

#[test]
fn trusted_root_windows_bound_the_signing_time() {
    let bundle = instance().mint(&MintSpec::github_build(IMAGE_DIGEST));
    let verify_under = |root: &Value| {
        let trusted_root = TrustedRoot::from_json(&root.to_string()).unwrap();
        let policy = VerificationPolicy::any_identity()
            .skip_tlog_unsafe()
            .skip_sct();
        Verifier::new(&trusted_root).unwrap().verify(
            Artifact::from_digest(Sha256Hash::from_hex(IMAGE_DIGEST).unwrap()),
            &Bundle::from_json(&bundle).unwrap(),
            &policy,
        )
    };
    let window_closed_before_signing = serde_json::json!({
        "start": "2024-01-01T00:00:00Z",
        "end": "2025-05-31T00:00:00Z",
    });

    let mut root: Value = serde_json::from_str(&instance().trusted_root_json()).unwrap();
    root["certificateAuthorities"][0]["validFor"] = window_closed_before_signing.clone();
    let error = verify_under(&root).expect_err("the CA was retired before the signature");
    assert!(error.to_string().contains("no trusted"), "got: {error}");

    let mut root: Value = serde_json::from_str(&instance().trusted_root_json()).unwrap();
    root["timestampAuthorities"][0]["validFor"] = window_closed_before_signing;
    let error = verify_under(&root).expect_err("the TSA was retired before the timestamp");
    assert!(
        error.to_string().contains("outside the validity period"),
        "got: {error}"
    );
}
