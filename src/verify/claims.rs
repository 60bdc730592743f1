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
///
/// The predicate is written by the signing workflow, not by Fulcio: only the fields the
/// policy compares with the certificate are evidence. Serialized in two groups so that no
/// reader takes the signer's word for a verified fact: `checkedAgainstCertificate` (a rule
/// accepts only when each agrees with the certificate's claim of the same fact) and
/// `claimedBySigner` (compared with nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

impl Serialize for PredicateClaims {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Checked<'a> {
            workflow_repository: &'a Option<String>,
            workflow_path: &'a Option<String>,
            workflow_ref: &'a Option<String>,
            event_name: &'a Option<String>,
            repository_id: &'a Option<String>,
            repository_owner_id: &'a Option<String>,
            runner_environment: &'a Option<String>,
            resolved_commit: &'a Option<String>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Claimed<'a> {
            build_type: &'a Option<String>,
            builder_id: &'a Option<String>,
            invocation_id: &'a Option<String>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Grouped<'a> {
            checked_against_certificate: Checked<'a>,
            claimed_by_signer: Claimed<'a>,
        }
        Grouped {
            checked_against_certificate: Checked {
                workflow_repository: &self.workflow_repository,
                workflow_path: &self.workflow_path,
                workflow_ref: &self.workflow_ref,
                event_name: &self.event_name,
                repository_id: &self.repository_id,
                repository_owner_id: &self.repository_owner_id,
                runner_environment: &self.runner_environment,
                resolved_commit: &self.resolved_commit,
            },
            claimed_by_signer: Claimed {
                build_type: &self.build_type,
                builder_id: &self.builder_id,
                invocation_id: &self.invocation_id,
            },
        }
        .serialize(serializer)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signers_unchecked_claims_are_labelled_as_such() {
        let claims = PredicateClaims {
            build_type: Some("https://actions.github.io/buildtypes/workflow/v1".into()),
            workflow_path: Some(".github/workflows/release.yml".into()),
            resolved_commit: Some("95baf27389e83e6a5c48f42e190d48d7abcea19e".into()),
            builder_id: Some("https://github.com/actions/runner/github-hosted".into()),
            invocation_id: Some("https://github.com/acme/api/actions/runs/1/attempts/1".into()),
            ..PredicateClaims::default()
        };
        let json = serde_json::to_value(&claims).expect("serializes");
        let groups: Vec<&String> = json.as_object().expect("an object").keys().collect();
        assert_eq!(groups, ["checkedAgainstCertificate", "claimedBySigner"]);
        let claimed = &json["claimedBySigner"];
        assert_eq!(
            claimed["builderId"],
            "https://github.com/actions/runner/github-hosted"
        );
        assert_eq!(
            claimed["invocationId"],
            "https://github.com/acme/api/actions/runs/1/attempts/1"
        );
        assert_eq!(
            claimed["buildType"],
            "https://actions.github.io/buildtypes/workflow/v1"
        );
        let checked = &json["checkedAgainstCertificate"];
        assert_eq!(checked["workflowPath"], ".github/workflows/release.yml");
        assert_eq!(
            checked["resolvedCommit"],
            "95baf27389e83e6a5c48f42e190d48d7abcea19e"
        );
        for unchecked in ["builderId", "invocationId", "buildType"] {
            assert!(
                checked.get(unchecked).is_none(),
                "{unchecked} is not checked"
            );
        }
    }
}
