//! Facts a verified attestation proves about a build. Plain data, free of I/O, so
//! that the policy engine can decide over them synchronously.

use serde::Serialize;

/// Which trusted root accepted the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instance {
    /// Sigstore public-good: Fulcio + Rekor entry + SCT.
    PublicGood,
    /// GitHub's own instance (private repositories): Fulcio + RFC 3161 timestamp, no log.
    Github,
    /// A root supplied with `--trusted-root`, named after its file.
    Custom(String),
}

impl std::fmt::Display for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Instance::PublicGood => f.write_str("public-good"),
            Instance::Github => f.write_str("github"),
            Instance::Custom(name) => f.write_str(name),
        }
    }
}

/// The GitHub claims Fulcio writes into the signing certificate
/// (OIDs 1.3.6.1.4.1.57264.1.8 to .22), plus the issuer and SAN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateClaims {
    /// OIDC issuer (.1.8, or the deprecated .1.1).
    pub issuer: Option<String>,
    /// Subject alternative name: for GitHub Actions, the Build Signer URI.
    pub subject_alternative_name: Option<String>,
    /// .1.9 Build Signer URI: the workflow file that signed (may be a reusable workflow).
    pub build_signer_uri: Option<String>,
    /// .1.10 Build Signer Digest: commit of the signing workflow.
    pub build_signer_digest: Option<String>,
    /// .1.11 Runner Environment: `github-hosted` or `self-hosted`.
    pub runner_environment: Option<String>,
    /// .1.12 Source Repository URI.
    pub source_repository_uri: Option<String>,
    /// .1.13 Source Repository Digest: the commit that was built.
    pub source_repository_digest: Option<String>,
    /// .1.14 Source Repository Ref.
    pub source_repository_ref: Option<String>,
    /// .1.15 Source Repository Identifier: the immutable repository ID.
    pub source_repository_identifier: Option<String>,
    /// .1.16 Source Repository Owner URI.
    pub source_repository_owner_uri: Option<String>,
    /// .1.17 Source Repository Owner Identifier: the immutable owner ID.
    pub source_repository_owner_identifier: Option<String>,
    /// .1.18 Build Config URI: the calling (top-level) workflow.
    pub build_config_uri: Option<String>,
    /// .1.19 Build Config Digest.
    pub build_config_digest: Option<String>,
    /// .1.20 Build Trigger: the event that started the run.
    pub build_trigger: Option<String>,
    /// .1.21 Run Invocation URI: link to the workflow run.
    pub run_invocation_uri: Option<String>,
    /// .1.22 Source Repository Visibility At Signing.
    pub source_repository_visibility: Option<String>,
}

/// What GitHub's SLSA v1 provenance predicate says about the build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PredicateClaims {
    /// `buildDefinition.buildType`.
    pub build_type: Option<String>,
    /// `buildDefinition.externalParameters.workflow.repository` (a URL).
    pub workflow_repository: Option<String>,
    /// `buildDefinition.externalParameters.workflow.path`.
    pub workflow_path: Option<String>,
    /// `buildDefinition.externalParameters.workflow.ref`.
    pub workflow_ref: Option<String>,
    /// `buildDefinition.internalParameters.github.event_name`.
    pub event_name: Option<String>,
    /// `buildDefinition.internalParameters.github.repository_id`.
    pub repository_id: Option<String>,
    /// `buildDefinition.internalParameters.github.repository_owner_id`.
    pub repository_owner_id: Option<String>,
    /// `buildDefinition.internalParameters.github.runner_environment`.
    pub runner_environment: Option<String>,
    /// `resolvedDependencies[0].digest.gitCommit`: the source commit.
    pub resolved_commit: Option<String>,
    /// `runDetails.builder.id`.
    pub builder_id: Option<String>,
    /// `runDetails.metadata.invocationId`: link to the run attempt.
    pub invocation_id: Option<String>,
}

/// One in-toto subject: a name and its digests by algorithm (`sha256` → hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    pub name: String,
    pub digest: std::collections::BTreeMap<String, String>,
}

/// Everything a bundle proved once its signature, certificate chain and time proofs
/// verified under a trusted root. Nothing in here has been checked against a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedAttestation {
    pub instance: Instance,
    /// `sha256:<hex>` of the bundle's JSON as read, to find the evidence again.
    pub bundle_digest: String,
    /// The authenticated signing time (log entry or RFC 3161 timestamp), RFC 3339.
    pub signed_at: Option<String>,
    pub predicate_type: String,
    pub subjects: Vec<Subject>,
    pub certificate: CertificateClaims,
    /// Present when the predicate is SLSA provenance v1.
    pub predicate: Option<PredicateClaims>,
}
