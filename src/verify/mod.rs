//! Offline verification of Sigstore bundles against trusted roots.
//!
//! A bundle is verified under each trusted root in turn, each with its own fixed demands
//! on the proof of signing time (see [`TimeProof`]); the first root that accepts it wins.
//! Time always comes from the log entry or the RFC 3161 timestamp, never from the clock.
//! The result is a [`VerifiedAttestation`]: facts about the build, not yet a decision.

pub mod bundle_file;
pub mod claims;
pub mod statement;
pub mod trusted_roots;
pub mod tuf;

use sha2::{Digest as _, Sha256};
use sigstore_verify::types::bundle::VerificationMaterialContent;
use sigstore_verify::types::{Artifact, Bundle, KindVersion, Sha256Hash, SignatureContent};

pub use bundle_file::{read_bundles, BundleReadError, ParsedBundle};
pub use claims::{CertificateClaims, Instance, PredicateClaims, Subject, VerifiedAttestation};
pub use trusted_roots::{TimeProof, TrustedRootError, TrustedRoots};

/// What the bundle must be bound to.
#[derive(Debug, Clone, Copy)]
pub enum ArtifactInput<'a> {
    /// The artifact's bytes (a file); every digest algorithm the statement uses can be checked.
    Bytes(&'a [u8]),
    /// Only the artifact's SHA-256 digest, as for an image manifest.
    Sha256([u8; 32]),
}

impl<'a> ArtifactInput<'a> {
    /// Parses `sha256:<64 hex>`.
    pub fn parse_sha256(text: &str) -> Result<Self, String> {
        let hex_digits = text.strip_prefix("sha256:").ok_or_else(|| {
            format!("digest {text:?} must start with \"sha256:\" followed by 64 hex digits")
        })?;
        let mut digest = [0u8; 32];
        if hex_digits.len() != 64 || hex::decode_to_slice(hex_digits, &mut digest).is_err() {
            return Err(format!(
                "digest {text:?} must be \"sha256:\" followed by 64 hex digits"
            ));
        }
        Ok(ArtifactInput::Sha256(digest))
    }

    fn as_library_artifact(&self) -> Artifact<'a> {
        match *self {
            ArtifactInput::Bytes(bytes) => Artifact::from_blob(bytes),
            ArtifactInput::Sha256(digest) => Artifact::from_digest(Sha256Hash::from(digest)),
        }
    }
}

/// Why one root did not accept a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRejection {
    pub instance: Instance,
    pub reason: String,
    /// How far the bundle got under this root.
    pub stage: RejectionStage,
}

/// How far a bundle got under a root before it was rejected: the further, the closer the
/// reason is to the root cause. A GitHub-instance bundle checked for the wrong artifact is
/// rejected by public-good for lacking a log entry (it was never meant for that root) and by
/// GitHub for the artifact; the second is what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RejectionStage {
    /// The signature, certificate, artifact or proof of time failed under this root.
    Verification,
    /// The bundle lacks the kind of time proof this root demands: made for another root.
    OtherKindOfProof,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("bundle signs a plain message, not an in-toto attestation (DSSE envelope)")]
    NotAnAttestation,
    #[error("bundle has no signing certificate (public-key bundles carry no build identity)")]
    NoCertificate,
    #[error("bundle did not verify under any trusted root: {}", describe_rejections(.0))]
    Rejected(Vec<RootRejection>),
    #[error("bundle verified but its statement is unusable: {0}")]
    Statement(#[from] statement::StatementError),
}

/// Most specific first: rejections of roots the bundle was made for lead, in root order.
fn describe_rejections(rejections: &[RootRejection]) -> String {
    let mut ordered: Vec<&RootRejection> = rejections.iter().collect();
    ordered.sort_by_key(|rejection| rejection.stage);
    ordered
        .into_iter()
        .map(|rejection| format!("{}: {}", rejection.instance, rejection.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Verifies `bundle` for `artifact` under the first root that accepts it.
///
/// Nothing about identity is judged here; the caller hands the result to the policy.
pub fn verify_bundle(
    roots: &TrustedRoots,
    bundle: &ParsedBundle,
    artifact: ArtifactInput<'_>,
) -> Result<VerifiedAttestation, VerifyError> {
    let SignatureContent::DsseEnvelope(envelope) = &bundle.bundle.content else {
        return Err(VerifyError::NotAnAttestation);
    };
    if matches!(
        bundle.bundle.verification_material.content,
        VerificationMaterialContent::PublicKey(_)
    ) {
        return Err(VerifyError::NoCertificate);
    }
    let mut rejections = Vec::new();
    for anchor in roots.anchors() {
        match verify_under(anchor, &bundle.bundle, artifact) {
            Ok(result) => {
                let facts = statement::read_statement(envelope.payload.as_bytes())?;
                return Ok(attestation_from(anchor, bundle, &result, facts));
            }
            Err((stage, reason)) => rejections.push(RootRejection {
                instance: anchor.instance.clone(),
                reason,
                stage,
            }),
        }
    }
    Err(VerifyError::Rejected(rejections))
}

fn verify_under(
    anchor: &trusted_roots::TrustAnchor,
    bundle: &Bundle,
    artifact: ArtifactInput<'_>,
) -> Result<sigstore_verify::VerificationResult, (RejectionStage, String)> {
    check_time_proof_present(anchor.time_proof, bundle)?;
    let failed = |reason: String| (RejectionStage::Verification, reason);
    let policy = anchor.time_proof.library_policy();
    let result = anchor
        .verifier
        .verify(artifact.as_library_artifact(), bundle, &policy)
        .map_err(|error| failed(error.to_string()))?;
    // The library reports what it checked; insist on it rather than trust the policy flags.
    let checked = match anchor.time_proof {
        TimeProof::TransparencyLog => {
            result.certificate_verified() && result.tlog_verified() && result.sct_verified()
        }
        TimeProof::Timestamp => result.certificate_verified(),
    };
    if !checked || result.verified_timestamps().is_empty() {
        return Err(failed(
            "verification did not establish a trusted signing time and certificate".into(),
        ));
    }
    Ok(result)
}

/// Each root's fixed demand on the proof of time, checked before any cryptography so that
/// a bundle without it gets a reason that says what is missing.
fn check_time_proof_present(
    time_proof: TimeProof,
    bundle: &Bundle,
) -> Result<(), (RejectionStage, String)> {
    let incomplete = |reason: &str| (RejectionStage::Verification, reason.to_owned());
    let material = &bundle.verification_material;
    let has_timestamp = !material
        .timestamp_verification_data
        .rfc3161_timestamps
        .is_empty();
    match time_proof {
        TimeProof::TransparencyLog => {
            if material.tlog_entries.is_empty() {
                return Err((
                    RejectionStage::OtherKindOfProof,
                    "no transparency-log entry; this root requires one".into(),
                ));
            }
            for entry in &material.tlog_entries {
                if entry.inclusion_proof.is_none() {
                    return Err(incomplete(
                        "transparency-log entry has no inclusion proof and checkpoint; this root requires them",
                    ));
                }
                let rekor_v1 = entry.kind_version != KindVersion::HashedRekordV002;
                if rekor_v1
                    && (entry.inclusion_promise.is_none() || entry.integrated_time.is_none())
                {
                    return Err(incomplete(
                        "transparency-log entry has no signed entry timestamp (SET); this root requires it",
                    ));
                }
                if !rekor_v1 && !has_timestamp {
                    return Err(incomplete(
                        "Rekor v2 entry without an RFC 3161 timestamp: no trusted signing time",
                    ));
                }
            }
            Ok(())
        }
        TimeProof::Timestamp => {
            if has_timestamp {
                Ok(())
            } else {
                Err((
                    RejectionStage::OtherKindOfProof,
                    "no RFC 3161 timestamp; this root requires one".into(),
                ))
            }
        }
    }
}

fn attestation_from(
    anchor: &trusted_roots::TrustAnchor,
    bundle: &ParsedBundle,
    result: &sigstore_verify::VerificationResult,
    facts: statement::StatementFacts,
) -> VerifiedAttestation {
    let certificate = result
        .certificate()
        .map(|info| {
            let ci = &info.ci_claims;
            CertificateClaims {
                issuer: info.issuer.clone(),
                subject_alternative_name: info.identity.as_ref().map(|san| san.as_str().to_owned()),
                build_signer_uri: ci.build_signer_uri.clone(),
                build_signer_digest: ci.build_signer_digest.clone(),
                runner_environment: ci.runner_environment.clone(),
                source_repository_uri: ci.source_repository_uri.clone(),
                source_repository_digest: ci.source_repository_digest.clone(),
                source_repository_ref: ci.source_repository_ref.clone(),
                source_repository_identifier: ci.source_repository_identifier.clone(),
                source_repository_owner_uri: ci.source_repository_owner_uri.clone(),
                source_repository_owner_identifier: ci.source_repository_owner_identifier.clone(),
                build_config_uri: ci.build_config_uri.clone(),
                build_config_digest: ci.build_config_digest.clone(),
                build_trigger: ci.build_trigger.clone(),
                run_invocation_uri: ci.run_invocation_uri.clone(),
                source_repository_visibility: ci.source_repository_visibility_at_signing.clone(),
            }
        })
        .unwrap_or_default();
    // The earliest authenticated time is when the signature is proven to have existed.
    let signed_at = result
        .verified_timestamps()
        .iter()
        .min()
        .map(|time| time.to_string());
    VerifiedAttestation {
        instance: anchor.instance.clone(),
        bundle_digest: bundle.digest.clone(),
        signed_at,
        predicate_type: facts.predicate_type,
        subjects: facts.subjects,
        certificate,
        predicate: facts.predicate,
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
