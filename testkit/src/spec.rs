//! What a minted bundle says: the GitHub Actions build behind it, the
//! certificate claims and SLSA predicate derived from that build, and how
//! (if at all) the bundle is broken.

use std::fmt;
use std::sync::Arc;

use const_oid::ObjectIdentifier;
use serde_json::{json, Value};

/// The OIDC issuer of GitHub Actions identity tokens.
pub const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The predicate type of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// The build type GitHub's `attest-build-provenance` action writes today.
pub const GITHUB_ACTIONS_BUILD_TYPE: &str = "https://actions.github.io/buildtypes/workflow/v1";
/// Media type of Sigstore bundle v0.3, what GitHub publishes.
pub const BUNDLE_V0_3_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Payload type of a DSSE envelope holding an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto statement v1.
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// The certificate claims Fulcio derives from a GitHub Actions identity
/// token, one field per extension `1.3.6.1.4.1.57264.1.8` to `.22`.
///
/// Every field is optional so a test can mint a certificate that lacks a
/// claim (`None` leaves the extension out). Names and types match
/// `sigstore_crypto::FulcioCiClaims`, so a test can compare them one to one,
/// except `issuer` (which `sigstore-verify` reports as `result.issuer()`) and
/// `source_repository_visibility` (`..._visibility_at_signing` there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GithubClaims {
    /// `.8` Issuer: the OIDC issuer of the identity token.
    pub issuer: Option<String>,
    /// `.9` Build Signer URI: the workflow that requested the certificate
    /// (a reusable workflow, when one signs). Also the certificate's URI SAN.
    pub build_signer_uri: Option<String>,
    /// `.10` Build Signer Digest: the commit the signing workflow came from.
    pub build_signer_digest: Option<String>,
    /// `.11` Runner Environment: `github-hosted` or `self-hosted`.
    pub runner_environment: Option<String>,
    /// `.12` Source Repository URI.
    pub source_repository_uri: Option<String>,
    /// `.13` Source Repository Digest: the commit that was built.
    pub source_repository_digest: Option<String>,
    /// `.14` Source Repository Ref.
    pub source_repository_ref: Option<String>,
    /// `.15` Source Repository Identifier: GitHub's immutable repository ID.
    pub source_repository_identifier: Option<String>,
    /// `.16` Source Repository Owner URI.
    pub source_repository_owner_uri: Option<String>,
    /// `.17` Source Repository Owner Identifier: the owner's immutable ID.
    pub source_repository_owner_identifier: Option<String>,
    /// `.18` Build Config URI: the calling workflow, at its ref.
    pub build_config_uri: Option<String>,
    /// `.19` Build Config Digest.
    pub build_config_digest: Option<String>,
    /// `.20` Build Trigger: the event, e.g. `push`.
    pub build_trigger: Option<String>,
    /// `.21` Run Invocation URI: the workflow run, with its attempt.
    pub run_invocation_uri: Option<String>,
    /// `.22` Source Repository Visibility At Signing.
    pub source_repository_visibility: Option<String>,
}

impl GithubClaims {
    /// The claims as (extension OID, value) pairs in OID order, leaving out
    /// claims that are `None`.
    pub(crate) fn extensions(&self) -> Vec<(ObjectIdentifier, String)> {
        let claims = [
            (8, &self.issuer),
            (9, &self.build_signer_uri),
            (10, &self.build_signer_digest),
            (11, &self.runner_environment),
            (12, &self.source_repository_uri),
            (13, &self.source_repository_digest),
            (14, &self.source_repository_ref),
            (15, &self.source_repository_identifier),
            (16, &self.source_repository_owner_uri),
            (17, &self.source_repository_owner_identifier),
            (18, &self.build_config_uri),
            (19, &self.build_config_digest),
            (20, &self.build_trigger),
            (21, &self.run_invocation_uri),
            (22, &self.source_repository_visibility),
        ];
        claims
            .into_iter()
            .filter_map(|(arc, value)| {
                let oid = ObjectIdentifier::new(&format!("1.3.6.1.4.1.57264.1.{arc}"))
                    .expect("Fulcio claim OIDs are well-formed");
                value.clone().map(|value| (oid, value))
            })
            .collect()
    }
}

/// A reusable workflow that signs on behalf of the calling workflow, as
/// `github/artifact-attestations-workflows` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReusableWorkflow {
    /// `owner/name` of the repository that holds the reusable workflow.
    pub repository: String,
    /// Path of the workflow file in that repository.
    pub path: String,
    /// The ref the caller pinned it at: a branch, a tag or a commit SHA.
    pub git_ref: String,
    /// The commit that ref resolved to.
    pub commit: String,
}

impl ReusableWorkflow {
    /// GitHub's own attestation workflow, pinned by commit the way the
    /// shared test data's reusable-workflow bundle has it.
    pub fn github_attest() -> ReusableWorkflow {
        let commit = "09b495c3f12c7881b3cc17209a327792065c1a1d";
        ReusableWorkflow {
            repository: "github/artifact-attestations-workflows".into(),
            path: ".github/workflows/attest.yml".into(),
            git_ref: commit.into(),
            commit: commit.into(),
        }
    }
}

/// The facts of one GitHub Actions run. Both the certificate claims and the
/// SLSA predicate are rendered from them, which is what keeps the two
/// consistent; see [`GithubBuild::claims`] and [`GithubBuild::predicate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubBuild {
    /// Where the repositories live, without a trailing slash.
    pub server_url: String,
    /// `owner/name` of the repository that was built.
    pub repository: String,
    /// GitHub's immutable ID of that repository.
    pub repository_id: String,
    /// GitHub's immutable ID of its owner.
    pub repository_owner_id: String,
    /// The calling workflow's file, in `repository`.
    pub workflow_path: String,
    /// The ref that was built (and that the calling workflow ran at).
    pub git_ref: String,
    /// The commit that was built.
    pub commit: String,
    /// The event that triggered the run.
    pub event_name: String,
    /// `github-hosted` or `self-hosted`.
    pub runner_environment: String,
    /// The workflow run's ID.
    pub run_id: u64,
    /// The workflow run's attempt number.
    pub run_attempt: u32,
    /// Visibility of the repository when it was signed, if stated.
    pub visibility: Option<String>,
    /// The OIDC issuer of the identity token.
    pub issuer: String,
    /// The reusable workflow that signed, or `None` when the calling
    /// workflow signed itself.
    pub signer_workflow: Option<ReusableWorkflow>,
}

impl Default for GithubBuild {
    /// A release of `acme/api` by `.github/workflows/release.yml` on a push
    /// to `refs/heads/main`, on a GitHub-hosted runner. The IDs are those of
    /// the example policy, examples/policy.yaml.
    fn default() -> GithubBuild {
        GithubBuild {
            server_url: "https://github.com".into(),
            repository: "acme/api".into(),
            repository_id: "804070735".into(),
            repository_owner_id: "16248153".into(),
            workflow_path: ".github/workflows/release.yml".into(),
            git_ref: "refs/heads/main".into(),
            commit: "7d2f0a4c9e1b5a3f8c6d4e2b0a9f7e5d3c1b8a6f".into(),
            event_name: "push".into(),
            runner_environment: "github-hosted".into(),
            run_id: 9_876_543_210,
            run_attempt: 1,
            visibility: Some("private".into()),
            issuer: GITHUB_ACTIONS_ISSUER.into(),
            signer_workflow: None,
        }
    }
}

impl GithubBuild {
    /// The owner part of `repository`.
    pub fn owner(&self) -> &str {
        self.repository
            .split_once('/')
            .map_or(self.repository.as_str(), |(owner, _)| owner)
    }

    /// `https://github.com/owner/name`.
    pub fn repository_uri(&self) -> String {
        format!("{}/{}", self.server_url, self.repository)
    }

    /// The calling workflow at its ref: the Build Config URI.
    pub fn build_config_uri(&self) -> String {
        format!(
            "{}/{}/{}@{}",
            self.server_url, self.repository, self.workflow_path, self.git_ref
        )
    }

    /// The signing workflow at its ref: the Build Signer URI and the SAN.
    pub fn build_signer_uri(&self) -> String {
        match &self.signer_workflow {
            Some(signer) => format!(
                "{}/{}/{}@{}",
                self.server_url, signer.repository, signer.path, signer.git_ref
            ),
            None => self.build_config_uri(),
        }
    }

    /// The run's URL, with its attempt.
    pub fn run_invocation_uri(&self) -> String {
        format!(
            "{}/{}/actions/runs/{}/attempts/{}",
            self.server_url, self.repository, self.run_id, self.run_attempt
        )
    }

    /// The claims GitHub's Fulcio would put in the certificate for this run.
    pub fn claims(&self) -> GithubClaims {
        let build_signer_digest = match &self.signer_workflow {
            Some(signer) => signer.commit.clone(),
            None => self.commit.clone(),
        };
        GithubClaims {
            issuer: Some(self.issuer.clone()),
            build_signer_uri: Some(self.build_signer_uri()),
            build_signer_digest: Some(build_signer_digest),
            runner_environment: Some(self.runner_environment.clone()),
            source_repository_uri: Some(self.repository_uri()),
            source_repository_digest: Some(self.commit.clone()),
            source_repository_ref: Some(self.git_ref.clone()),
            source_repository_identifier: Some(self.repository_id.clone()),
            source_repository_owner_uri: Some(format!("{}/{}", self.server_url, self.owner())),
            source_repository_owner_identifier: Some(self.repository_owner_id.clone()),
            build_config_uri: Some(self.build_config_uri()),
            build_config_digest: Some(self.commit.clone()),
            build_trigger: Some(self.event_name.clone()),
            run_invocation_uri: Some(self.run_invocation_uri()),
            source_repository_visibility: self.visibility.clone(),
        }
    }

    /// The SLSA v1 predicate `actions/attest-build-provenance` writes for
    /// this run (the shape of the shared test data's
    /// `oci/slsa-statement.publicgood-ghcr.json`).
    pub fn predicate(&self) -> Value {
        json!({
            "buildDefinition": {
                "buildType": GITHUB_ACTIONS_BUILD_TYPE,
                "externalParameters": {
                    "workflow": {
                        "ref": self.git_ref,
                        "repository": self.repository_uri(),
                        "path": self.workflow_path,
                    }
                },
                "internalParameters": {
                    "github": {
                        "event_name": self.event_name,
                        "repository_id": self.repository_id,
                        "repository_owner_id": self.repository_owner_id,
                        "runner_environment": self.runner_environment,
                    }
                },
                "resolvedDependencies": [{
                    "uri": format!("git+{}@{}", self.repository_uri(), self.git_ref),
                    "digest": { "gitCommit": self.commit },
                }],
            },
            "runDetails": {
                // The action names the job's workflow (the signer) as builder.
                "builder": { "id": self.build_signer_uri() },
                "metadata": { "invocationId": self.run_invocation_uri() },
            },
        })
    }
}

/// How a minted bundle is broken, for negative tests. Each variant breaks
/// exactly one thing and leaves everything else valid, so a verifier has to
/// catch that one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tamper {
    /// A valid bundle.
    None,
    /// One bit of the DSSE payload flipped after signing (the first letter
    /// of the predicate type, so the payload is still a well-formed
    /// statement): only the DSSE signature check can notice.
    FlipPayloadBit,
    /// One bit of the DSSE signature flipped before the signature was
    /// timestamped, so the timestamp is valid and only the DSSE signature
    /// check can notice.
    FlipSignatureBit,
    /// One bit of the TSA's signature in the RFC 3161 token flipped.
    FlipTimestampSignatureBit,
    /// The TSA timestamped the payload instead of the DSSE signature, so the
    /// token's message imprint does not match the signature.
    TimestampOverOtherData,
    /// No RFC 3161 timestamp: no trusted time to check the certificate at.
    DropTimestamp,
    /// The timestamp is 10 minutes after the 10-minute certificate expired.
    CertExpiredBeforeTimestamp,
    /// The timestamp is 5 minutes before the certificate became valid.
    TimestampBeforeCertValidity,
    /// The leaf is issued by a CA outside the trusted root that has the same
    /// name as the real Fulcio intermediate.
    CertFromUntrustedCa,
    /// The timestamp is signed by a TSA outside the trusted root that has
    /// the same names as the real one.
    TimestampFromUntrustedTsa,
    /// The leaf's extended key usage is serverAuth instead of codeSigning.
    /// `sigstore-verify` rejects it; `@sigstore/verify` checks no EKU.
    CertWithoutCodeSigningEku,
    /// The bundle carries a valid certificate, but for a different key than
    /// the one that signed the envelope.
    CertForDifferentKey,
}

impl Tamper {
    /// Every way to break a bundle (all variants but [`Tamper::None`]).
    pub const ALL_BROKEN: [Tamper; 11] = [
        Tamper::FlipPayloadBit,
        Tamper::FlipSignatureBit,
        Tamper::FlipTimestampSignatureBit,
        Tamper::TimestampOverOtherData,
        Tamper::DropTimestamp,
        Tamper::CertExpiredBeforeTimestamp,
        Tamper::TimestampBeforeCertValidity,
        Tamper::CertFromUntrustedCa,
        Tamper::TimestampFromUntrustedTsa,
        Tamper::CertWithoutCodeSigningEku,
        Tamper::CertForDifferentKey,
    ];
}

type ClaimsEdit = Arc<dyn Fn(&mut GithubClaims) + Send + Sync>;
type PredicateEdit = Arc<dyn Fn(&mut Value) + Send + Sync>;
type BuildEdit = Arc<dyn Fn(&mut GithubBuild) + Send + Sync>;

/// Everything that goes into one bundle.
///
/// Start from [`MintSpec::github_build`] and change it with the `with_*`
/// methods. Changes to the build (`with_repository`, `with_ref`, ...) update
/// the certificate claims and the predicate together. To make them disagree,
/// use [`MintSpec::with_predicate_build`] / [`MintSpec::with_certificate_build`]
/// (render one side from different facts) or [`MintSpec::with_claims_edit`] /
/// [`MintSpec::with_predicate_edit`] / [`MintSpec::with_predicate_field`]
/// (edit the rendered value). Edits are applied when the bundle is minted,
/// after the build facts, so their order relative to other `with_*` calls
/// does not matter.
#[derive(Clone)]
pub struct MintSpec {
    /// The statement's subject name, e.g. `ghcr.io/acme/api`.
    pub subject_name: String,
    /// The subject's SHA-256 digest in lowercase hex (no `sha256:` prefix).
    pub subject_sha256_hex: String,
    /// The statement's predicate type.
    pub predicate_type: String,
    /// The build the certificate and the predicate describe.
    pub build: GithubBuild,
    /// The bundle's media type; v0.3 bundles carry the leaf as
    /// `certificate`, older ones as a one-element `x509CertificateChain`.
    pub bundle_media_type: String,
    /// When the certificate was issued; it is valid for 10 minutes from
    /// then, and the timestamp is taken 1 minute in.
    pub signing_time: jiff::Timestamp,
    /// How the bundle is broken, if at all.
    pub tamper: Tamper,
    certificate_build_edits: Vec<BuildEdit>,
    predicate_build_edits: Vec<BuildEdit>,
    claims_edits: Vec<ClaimsEdit>,
    predicate_edits: Vec<PredicateEdit>,
}

impl fmt::Debug for MintSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintSpec")
            .field("subject_name", &self.subject_name)
            .field("subject_sha256_hex", &self.subject_sha256_hex)
            .field("predicate_type", &self.predicate_type)
            .field("build", &self.build)
            .field("bundle_media_type", &self.bundle_media_type)
            .field("signing_time", &self.signing_time)
            .field("tamper", &self.tamper)
            .field("claims", &self.claims())
            .field("predicate", &self.predicate())
            .finish()
    }
}

impl MintSpec {
    /// A consistent GitHub Actions build ([`GithubBuild::default`]) of the
    /// image `ghcr.io/acme/api` with digest `sha256:<subject_sha256_hex>`,
    /// signed 2025-06-01T12:00:00Z: long enough ago that its certificate
    /// has expired by the wall clock, so only the RFC 3161 timestamp can
    /// make it verify.
    pub fn github_build(subject_sha256_hex: &str) -> MintSpec {
        let build = GithubBuild::default();
        MintSpec {
            subject_name: image_name(&build.repository),
            subject_sha256_hex: subject_sha256_hex
                .trim_start_matches("sha256:")
                .to_ascii_lowercase(),
            predicate_type: SLSA_PROVENANCE_V1.into(),
            build,
            bundle_media_type: BUNDLE_V0_3_MEDIA_TYPE.into(),
            signing_time: "2025-06-01T12:00:00Z"
                .parse()
                .expect("the default signing time is a valid timestamp"),
            tamper: Tamper::None,
            certificate_build_edits: Vec::new(),
            predicate_build_edits: Vec::new(),
            claims_edits: Vec::new(),
            predicate_edits: Vec::new(),
        }
    }

    /// The certificate claims this spec mints.
    pub fn claims(&self) -> GithubClaims {
        let mut build = self.build.clone();
        for edit in &self.certificate_build_edits {
            edit(&mut build);
        }
        let mut claims = build.claims();
        for edit in &self.claims_edits {
            edit(&mut claims);
        }
        claims
    }

    /// The predicate this spec mints.
    pub fn predicate(&self) -> Value {
        let mut build = self.build.clone();
        for edit in &self.predicate_build_edits {
            edit(&mut build);
        }
        let mut predicate = build.predicate();
        for edit in &self.predicate_edits {
            edit(&mut predicate);
        }
        predicate
    }

    /// The in-toto statement this spec mints (the DSSE payload).
    pub fn statement(&self) -> Value {
        json!({
            "_type": IN_TOTO_STATEMENT_V1,
            "subject": [{
                "name": self.subject_name,
                "digest": { "sha256": self.subject_sha256_hex },
            }],
            "predicateType": self.predicate_type,
            "predicate": self.predicate(),
        })
    }

    /// Builds `owner/name` instead. The subject name follows when it is
    /// still the default `ghcr.io/<repository>`. IDs are unchanged: set them
    /// with [`MintSpec::with_repository_ids`].
    pub fn with_repository(mut self, owner_and_name: &str) -> MintSpec {
        if self.subject_name == image_name(&self.build.repository) {
            self.subject_name = image_name(owner_and_name);
        }
        self.build.repository = owner_and_name.into();
        self
    }

    /// The repository's and its owner's immutable IDs.
    pub fn with_repository_ids(mut self, repository_id: &str, owner_id: &str) -> MintSpec {
        self.build.repository_id = repository_id.into();
        self.build.repository_owner_id = owner_id.into();
        self
    }

    /// The ref that was built, e.g. `refs/tags/v1.2.3` or `refs/pull/7/merge`.
    pub fn with_ref(mut self, git_ref: &str) -> MintSpec {
        self.build.git_ref = git_ref.into();
        self
    }

    /// The commit that was built.
    pub fn with_commit(mut self, commit: &str) -> MintSpec {
        self.build.commit = commit.into();
        self
    }

    /// The triggering event, e.g. `pull_request_target`.
    pub fn with_trigger(mut self, event_name: &str) -> MintSpec {
        self.build.event_name = event_name.into();
        self
    }

    /// The runner environment, e.g. `self-hosted`.
    pub fn with_runner(mut self, runner_environment: &str) -> MintSpec {
        self.build.runner_environment = runner_environment.into();
        self
    }

    /// The calling workflow's path, e.g. `.github/workflows/deploy.yml`.
    pub fn with_workflow(mut self, workflow_path: &str) -> MintSpec {
        self.build.workflow_path = workflow_path.into();
        self
    }

    /// A reusable workflow signs (Build Signer URI, SAN and builder ID name
    /// it), called by the build's own workflow (Build Config URI).
    pub fn with_signer_workflow(mut self, signer: ReusableWorkflow) -> MintSpec {
        self.build.signer_workflow = Some(signer);
        self
    }

    /// The workflow run's ID and attempt.
    pub fn with_run(mut self, run_id: u64, run_attempt: u32) -> MintSpec {
        self.build.run_id = run_id;
        self.build.run_attempt = run_attempt;
        self
    }

    /// The OIDC issuer.
    pub fn with_issuer(mut self, issuer: &str) -> MintSpec {
        self.build.issuer = issuer.into();
        self
    }

    /// The repository visibility at signing; `None` leaves the claim out.
    pub fn with_visibility(mut self, visibility: Option<&str>) -> MintSpec {
        self.build.visibility = visibility.map(str::to_owned);
        self
    }

    /// The statement's subject.
    pub fn with_subject(mut self, name: &str, sha256_hex: &str) -> MintSpec {
        self.subject_name = name.into();
        self.subject_sha256_hex = sha256_hex
            .trim_start_matches("sha256:")
            .to_ascii_lowercase();
        self
    }

    /// The statement's predicate type (the predicate itself is unchanged).
    pub fn with_predicate_type(mut self, predicate_type: &str) -> MintSpec {
        self.predicate_type = predicate_type.into();
        self
    }

    /// The bundle's media type.
    pub fn with_media_type(mut self, media_type: &str) -> MintSpec {
        self.bundle_media_type = media_type.into();
        self
    }

    /// When the certificate is issued (and, a minute later, timestamped).
    pub fn with_signing_time(mut self, signing_time: jiff::Timestamp) -> MintSpec {
        self.signing_time = signing_time;
        self
    }

    /// How to break the bundle.
    pub fn with_tamper(mut self, tamper: Tamper) -> MintSpec {
        self.tamper = tamper;
        self
    }

    /// Renders the predicate from build facts changed by `edit`, while the
    /// certificate keeps the real ones: e.g. a predicate that names another
    /// repository than the certificate.
    pub fn with_predicate_build(
        mut self,
        edit: impl Fn(&mut GithubBuild) + Send + Sync + 'static,
    ) -> MintSpec {
        self.predicate_build_edits.push(Arc::new(edit));
        self
    }

    /// Renders the certificate claims from build facts changed by `edit`,
    /// while the predicate keeps the real ones.
    pub fn with_certificate_build(
        mut self,
        edit: impl Fn(&mut GithubBuild) + Send + Sync + 'static,
    ) -> MintSpec {
        self.certificate_build_edits.push(Arc::new(edit));
        self
    }

    /// Edits the rendered certificate claims, e.g. to drop one.
    pub fn with_claims_edit(
        mut self,
        edit: impl Fn(&mut GithubClaims) + Send + Sync + 'static,
    ) -> MintSpec {
        self.claims_edits.push(Arc::new(edit));
        self
    }

    /// Edits the rendered predicate, e.g. to replace it with another kind.
    pub fn with_predicate_edit(
        mut self,
        edit: impl Fn(&mut Value) + Send + Sync + 'static,
    ) -> MintSpec {
        self.predicate_edits.push(Arc::new(edit));
        self
    }

    /// Sets the predicate field at `json_pointer` (RFC 6901, e.g.
    /// `/buildDefinition/externalParameters/workflow/ref`) to `value`.
    /// Minting panics if the field's parent does not exist.
    pub fn with_predicate_field(self, json_pointer: &str, value: impl Into<Value>) -> MintSpec {
        let json_pointer = json_pointer.to_owned();
        let value = value.into();
        self.with_predicate_edit(move |predicate| set_pointer(predicate, &json_pointer, &value))
    }
}

/// The name GitHub gives an image pushed to GHCR from `owner/name`.
fn image_name(repository: &str) -> String {
    format!("ghcr.io/{}", repository.to_ascii_lowercase())
}

fn set_pointer(document: &mut Value, json_pointer: &str, value: &Value) {
    if let Some(target) = document.pointer_mut(json_pointer) {
        *target = value.clone();
        return;
    }
    let (parent, key) = json_pointer.rsplit_once('/').unwrap_or_else(|| {
        panic!("{json_pointer:?} is not a JSON pointer: it must start with '/'")
    });
    let key = key.replace("~1", "/").replace("~0", "~");
    match document.pointer_mut(parent) {
        Some(Value::Object(object)) => {
            object.insert(key, value.clone());
        }
        _ => panic!("the predicate has no object at {parent:?} to set {key:?} in"),
    }
}
