//! The validated policy: what `policy.yaml` means once every value has been checked.
//!
//! Values are only built by [`Policy::from_yaml`] (in `validate.rs`, which depends on this
//! model and never the other way round), so a `Policy` in hand is always sound.
//! `Serialize` writes the effective policy (defaults filled in) for the CLI to print.

use super::duration::{BreakGlassDuration, MaxAge};
use super::glob::{Glob, GlobList};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest policy source accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// The most rules a policy may have: every admitted image is checked against them in order.
pub const MAX_RULES: usize = 1000;
/// The most globs (exemptions, and rules' images, refs and workflows) a policy may have:
/// each costs memory once compiled, and the webhook holds two policies during a reload.
pub const MAX_GLOBS: usize = 20_000;

/// The OIDC issuer of GitHub Actions tokens, trusted when a rule names no issuers.
pub const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// SLSA provenance v1, the predicate type trusted when a rule names none.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// SPDX 2.3 documents, as `actions/attest-sbom` writes them.
pub const SPDX_DOCUMENT_V2_3: &str = "https://spdx.dev/Document/v2.3";
/// CycloneDX BOMs, as `actions/attest-sbom` writes them.
pub const CYCLONEDX_BOM: &str = "https://cyclonedx.org/bom";
/// Short names `requireAttestations` accepts for the predicate types GitHub's actions write.
pub const ATTESTATION_ALIASES: [(&str, &str); 3] = [
    ("provenance", SLSA_PROVENANCE_V1),
    ("spdx", SPDX_DOCUMENT_V2_3),
    ("cyclonedx", CYCLONEDX_BOM),
];
/// Refs trusted when a rule names none: the default branch only, the branch that review and
/// branch protection guard. Tags are pushed by anyone with write access, onto any commit, so
/// teams that release from tags list `refs/tags/v*` and protect tags with a tag ruleset.
pub const DEFAULT_REFS: [&str; 1] = ["refs/heads/main"];
/// Triggers trusted when a rule names none: they run code already on a branch or tag of the
/// repository, with no input from a fork or an issue; `schedule` always runs the default
/// branch's latest commit. `merge_group` is left out: it builds a not-yet-merged candidate on a
/// temporary `gh-readonly-queue/…` ref.
pub const DEFAULT_TRIGGERS: [&str; 4] = ["push", "release", "workflow_dispatch", "schedule"];
/// Triggers that run code or take input from outside the repository's reviewed history (forks,
/// issues, comments, other workflows' artifacts, API callers): never trusted by default, and
/// worth a warning when a rule lists them.
pub const RISKY_TRIGGERS: [&str; 10] = [
    "pull_request",
    "pull_request_target",
    "workflow_run",
    "issue_comment",
    "issues",
    "repository_dispatch",
    "discussion",
    "discussion_comment",
    "pull_request_review",
    "pull_request_review_comment",
];
/// Runner environments trusted when a rule names none.
pub const DEFAULT_RUNNERS: [&str; 1] = ["github-hosted"];

/// How a namespace treats images that fail verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Admit and record what would have been denied.
    Observe,
    /// Admit, return warnings, record.
    Warn,
    /// Deny.
    Enforce,
}

impl Mode {
    /// The name used in `policy.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Mode> {
        [Mode::Observe, Mode::Warn, Mode::Enforce]
            .into_iter()
            .find(|mode| mode.as_str() == text)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to an image that no rule covers and that is not exempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedAction {
    /// Deny like a failed verification (in the namespace's mode).
    Deny,
    /// Admit without verification.
    Allow,
}

impl UnmatchedAction {
    /// The name used in `policy.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnmatchedAction::Deny => "deny",
            UnmatchedAction::Allow => "allow",
        }
    }
}

impl std::fmt::Display for UnmatchedAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checked `policy.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub(crate) version: u64,
    pub(crate) default_mode: Mode,
    pub(crate) environments: Vec<Environment>,
    pub(crate) exempt_images: GlobList,
    pub(crate) unmatched_images: UnmatchedAction,
    pub(crate) rules: Vec<Rule>,
    pub(crate) break_glass: Option<BreakGlass>,
    pub(crate) registries: Vec<Registry>,
    #[serde(
        skip_serializing_if = "revocations_are_empty",
        serialize_with = "serialize_revocations"
    )]
    pub(crate) revoked: Arc<Revocations>,
    pub(crate) github: GithubApi,
}

fn revocations_are_empty(revoked: &Arc<Revocations>) -> bool {
    revoked.is_empty()
}

fn serialize_revocations<S: Serializer>(
    revoked: &Arc<Revocations>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    revoked.as_ref().serialize(serializer)
}

impl Policy {
    /// The schema version (always 1).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The mode of namespaces no environment selects.
    pub fn default_mode(&self) -> Mode {
        self.default_mode
    }

    /// Environments in the order they are tried.
    pub fn environments(&self) -> &[Environment] {
        &self.environments
    }

    /// Image globs that are admitted without verification.
    pub fn exempt_images(&self) -> &[Glob] {
        &self.exempt_images
    }

    /// What happens to images that no rule covers.
    pub fn unmatched_images(&self) -> UnmatchedAction {
        self.unmatched_images
    }

    /// Rules in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule called `name`, if any.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.name == name)
    }

    /// Break-glass settings; `None` means break-glass is disabled.
    pub fn break_glass(&self) -> Option<&BreakGlass> {
        self.break_glass.as_ref()
    }

    /// Registry connection settings.
    pub fn registries(&self) -> &[Registry] {
        &self.registries
    }

    /// Builds no rule admits, whatever the rule says.
    pub fn revoked(&self) -> &Revocations {
        &self.revoked
    }

    /// Where and how the GitHub attestations API is asked, for rules whose
    /// `attestationSources` name `github`.
    pub fn github(&self) -> &GithubApi {
        &self.github
    }

    /// Settings for a registry `host` (with port, if any), in any spelling of it: compared in
    /// the canonical spelling that the policy's hosts are written in.
    pub fn registry(&self, host: &str) -> Option<&Registry> {
        let host = crate::check::reference::canonical_registry(host).ok()?;
        self.registries
            .iter()
            .find(|registry| registry.host == host)
    }
}

/// A set of namespaces with its own mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub(crate) name: String,
    pub(crate) namespace_selector: NamespaceSelector,
    pub(crate) mode: Mode,
}

impl Environment {
    /// The environment's name, recorded in decisions.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which namespaces belong to it.
    pub fn namespace_selector(&self) -> &NamespaceSelector {
        &self.namespace_selector
    }

    /// The mode of its namespaces.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// A Kubernetes label selector over namespace labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Labels that must all be present with exactly these values.
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements that must all hold.
    pub match_expressions: Vec<LabelRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// How the label's value is compared.
    pub operator: SelectorOperator,
    /// Values for `In` and `NotIn`; empty for `Exists` and `DoesNotExist`.
    pub values: Vec<String>,
}

/// The operators of Kubernetes set-based label requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SelectorOperator {
    /// The label is present with one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl SelectorOperator {
    pub(crate) fn parse(text: &str) -> Option<SelectorOperator> {
        match text {
            "In" => Some(SelectorOperator::In),
            "NotIn" => Some(SelectorOperator::NotIn),
            "Exists" => Some(SelectorOperator::Exists),
            "DoesNotExist" => Some(SelectorOperator::DoesNotExist),
            _ => None,
        }
    }
}

/// A GitHub repository trusted by name, optionally pinned to its immutable ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRepository {
    pub(crate) owner: String,
    pub(crate) repo: String,
    pub(crate) id: Option<String>,
}

impl TrustedRepository {
    /// The owner (user or organisation) as written.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository name as written.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// `owner/repo`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    /// The pinned repository ID (decimal digits), if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

impl Serialize for TrustedRepository {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NamedId {
            name: &self.full_name(),
            id: self.id.as_deref(),
        }
        .serialize(serializer)
    }
}

/// A GitHub user or organisation all of whose repositories are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedOwner {
    pub(crate) name: String,
    pub(crate) id: Option<String>,
}

impl TrustedOwner {
    /// The owner's login as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pinned owner ID (decimal digits), if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

impl Serialize for TrustedOwner {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NamedId {
            name: &self.name,
            id: self.id.as_deref(),
        }
        .serialize(serializer)
    }
}

#[derive(Serialize)]
struct NamedId<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

/// A reusable workflow allowed to sign: `owner/repo/.github/workflows/x.yml[@ref]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerWorkflow {
    pub(crate) owner: String,
    pub(crate) repo: String,
    pub(crate) path: String,
    pub(crate) pinned_ref: Option<String>,
}

impl SignerWorkflow {
    /// The owner of the repository holding the workflow.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository holding the workflow.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The workflow file path, `.github/workflows/…`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The ref or commit the workflow is pinned to, if any.
    pub fn pinned_ref(&self) -> Option<&str> {
        self.pinned_ref.as_deref()
    }
}

impl std::fmt::Display for SignerWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.owner, self.repo, self.path)?;
        if let Some(pinned) = &self.pinned_ref {
            write!(f, "@{pinned}")?;
        }
        Ok(())
    }
}

impl Serialize for SignerWorkflow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Which build triggers a rule accepts: always an allow-list, the rule's own or
/// [`DEFAULT_TRIGGERS`]. (A deny-list default let every trigger GitHub adds, and every
/// "pwn request" trigger it did not name, through.) Kept an enum so that the effective policy
/// prints as `{"oneOf": [...]}` as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TriggerFilter {
    /// Only these triggers.
    OneOf(Vec<String>),
}

impl TriggerFilter {
    /// Whether `trigger` is accepted.
    pub fn allows(&self, trigger: &str) -> bool {
        self.triggers().iter().any(|entry| entry == trigger)
    }

    /// The accepted triggers.
    pub fn triggers(&self) -> &[String] {
        match self {
            TriggerFilter::OneOf(allowed) => allowed,
        }
    }
}

impl std::fmt::Display for TriggerFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.triggers().join(", "))
    }
}

/// Builds revoked for every rule: "this build was compromised", without rebuilding the policy.
/// Hex digests are kept in lower case; runs by their numeric run ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocations {
    /// Source commits (Source Repository Digest), 40 or 64 hex digits.
    pub commits: Vec<String>,
    /// Workflow runs: every attempt of each.
    pub runs: Vec<RevokedRun>,
    /// Signing workflow commits (Build Signer Digest), 40 or 64 hex digits.
    pub signer_digests: Vec<String>,
}

impl Revocations {
    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.commits.is_empty() && self.runs.is_empty() && self.signer_digests.is_empty()
    }
}

/// A revoked workflow run: its ID, and the repository when the policy wrote the run's URL.
/// Run IDs are unique across GitHub; the repository, when given, must match as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedRun {
    pub(crate) repository: Option<(String, String)>,
    pub(crate) run_id: String,
}

impl RevokedRun {
    /// The numeric run ID.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// `owner/repo` when the run was written as a URL.
    pub fn repository(&self) -> Option<String> {
        self.repository
            .as_ref()
            .map(|(owner, repo)| format!("{owner}/{repo}"))
    }
}

impl std::fmt::Display for RevokedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.repository {
            Some((owner, repo)) => write!(
                f,
                "https://github.com/{owner}/{repo}/actions/runs/{}",
                self.run_id
            ),
            None => f.write_str(&self.run_id),
        }
    }
}

impl Serialize for RevokedRun {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Which builds are trusted for a set of images. Fields hold the effective values:
/// defaults are filled in where `policy.yaml` leaves a key out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub(crate) name: String,
    pub(crate) images: GlobList,
    pub(crate) repositories: Vec<TrustedRepository>,
    pub(crate) owners: Vec<TrustedOwner>,
    /// `None`: any workflow of a trusted repository.
    pub(crate) workflows: Option<GlobList>,
    pub(crate) signer_workflows: Vec<SignerWorkflow>,
    /// Whether the calling workflow may sign itself even though `signer_workflows` is set.
    pub(crate) allow_self_signed: bool,
    pub(crate) refs: GlobList,
    /// Build Config Digests (lower-case hex) the calling workflow must have; empty: any.
    pub(crate) build_config_digests: Vec<String>,
    pub(crate) triggers: TriggerFilter,
    pub(crate) runners: Vec<String>,
    pub(crate) predicate_types: Vec<String>,
    /// Predicate types that must each be attested (`requireAttestations`); empty: one
    /// attestation of any of `predicate_types` is enough.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) require_attestations: Vec<String>,
    pub(crate) issuers: Vec<String>,
    /// The oldest signing time admitted, as an age at review time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_age: Option<MaxAge>,
    /// Where the rule's attestations are looked for, in order (default: the registry only).
    pub(crate) attestation_sources: Vec<AttestationSource>,
    /// Constraints added in named environments (`environments`), each on top of the rule's
    /// own: an environment can only narrow what the rule admits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) environments: Vec<EnvironmentConstraints>,
    /// The Sigstore instances (trusted roots, by name) whose bundles the rule accepts; empty:
    /// any trusted root.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) instances: Vec<String>,
    /// The policy's revocations: callers evaluate a rule alone, so the policy-wide deny-list
    /// travels with every rule and no caller can leave it out. Printed once, at the top level.
    #[serde(skip)]
    pub(crate) revoked: Arc<Revocations>,
}

impl Rule {
    /// The rule's unique name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Globs over canonical image names (`ghcr.io/acme/api`, no tag or digest); their
    /// registry host is always written out, never a glob, unless the pattern is `**` alone
    /// (every image).
    pub fn images(&self) -> &[Glob] {
        &self.images
    }

    /// Repositories trusted by name.
    pub fn repositories(&self) -> &[TrustedRepository] {
        &self.repositories
    }

    /// Owners whose every repository is trusted.
    pub fn owners(&self) -> &[TrustedOwner] {
        &self.owners
    }

    /// Calling workflow paths allowed; `None` allows any workflow of a trusted repository.
    pub fn workflows(&self) -> Option<&[Glob]> {
        self.workflows.as_deref()
    }

    /// Reusable workflows allowed to sign. When any are listed, the signer must be one of
    /// them, unless [`Rule::allow_self_signed`].
    pub fn signer_workflows(&self) -> &[SignerWorkflow] {
        &self.signer_workflows
    }

    /// Whether the calling workflow may sign itself: always when no `signerWorkflows` are
    /// listed, otherwise only with `allowSelfSigned: true`.
    pub fn allow_self_signed(&self) -> bool {
        self.signer_workflows.is_empty() || self.allow_self_signed
    }

    /// Source ref globs, defaulting to `refs/heads/main`.
    pub fn effective_refs(&self) -> &[Glob] {
        &self.refs
    }

    /// Build Config Digests the calling workflow must have (lower-case hex); empty: any.
    pub fn build_config_digests(&self) -> &[String] {
        &self.build_config_digests
    }

    /// The longest time since signing that is admitted, if limited.
    pub fn max_age(&self) -> Option<MaxAge> {
        self.max_age
    }

    /// Build triggers, defaulting to [`DEFAULT_TRIGGERS`].
    pub fn effective_triggers(&self) -> &TriggerFilter {
        &self.triggers
    }

    /// Runner environments, defaulting to `github-hosted`.
    pub fn effective_runners(&self) -> &[String] {
        &self.runners
    }

    /// Trusted roots (`public-good`, `github`, or a `--trusted-root` file's name) whose
    /// bundles the rule accepts; empty: any.
    pub fn instances(&self) -> &[String] {
        &self.instances
    }

    /// Predicate types, defaulting to SLSA provenance v1.
    pub fn effective_predicate_types(&self) -> &[String] {
        &self.predicate_types
    }

    /// Predicate types that must each be attested by a bundle satisfying the rule; empty
    /// when one attestation of any of [`Rule::effective_predicate_types`] is enough.
    pub fn required_attestations(&self) -> &[String] {
        &self.require_attestations
    }

    /// Certificate issuers, defaulting to GitHub Actions.
    pub fn effective_issuers(&self) -> &[String] {
        &self.issuers
    }

    /// Where attestations are looked for, in order; never empty (default: the registry).
    pub fn attestation_sources(&self) -> &[AttestationSource] {
        &self.attestation_sources
    }

    /// The constraints the rule adds per environment, as written.
    pub fn environments(&self) -> &[EnvironmentConstraints] {
        &self.environments
    }

    /// The constraints that hold, besides the rule's own, for a build judged for
    /// `destination`: those of its environment; all of them when the environment is unknown.
    pub fn constraints_for<'r>(
        &'r self,
        destination: &'r Destination,
    ) -> impl Iterator<Item = &'r EnvironmentConstraints> + 'r {
        self.environments
            .iter()
            .filter(move |constraints| match destination {
                Destination::Unselected => false,
                Destination::Environment(name) => constraints.environment == *name,
                Destination::Unknown => true,
            })
    }

    /// Predicate types that must each be attested for `destination`, each with the
    /// environment that requires it (`None`: the rule itself). Empty when one attestation of
    /// any of [`Rule::effective_predicate_types`] is enough. An environment's
    /// `requireAttestations` adds to the rule's own, or, when the rule has none, to the one
    /// attestation of its predicate type the rule asks for.
    pub fn required_attestations_for<'r>(
        &'r self,
        destination: &'r Destination,
    ) -> Vec<(&'r str, Option<&'r str>)> {
        let mut required: Vec<(&str, Option<&str>)> = self
            .require_attestations
            .iter()
            .map(|predicate_type| (predicate_type.as_str(), None))
            .collect();
        for constraints in self.constraints_for(destination) {
            if constraints.require_attestations.is_empty() {
                continue;
            }
            if required.is_empty() {
                required.extend(
                    self.predicate_types
                        .iter()
                        .map(|predicate_type| (predicate_type.as_str(), None)),
                );
            }
            for predicate_type in &constraints.require_attestations {
                if !required.iter().any(|(listed, _)| listed == predicate_type) {
                    required.push((predicate_type, Some(constraints.environment.as_str())));
                }
            }
        }
        required
    }
}

/// What a rule adds for the namespaces of one environment (`rules[].environments`): each
/// value set here must hold besides the rule's own, so that an image promoted from a softer
/// environment to a stricter one meets the stricter bar there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentConstraints {
    /// The policy's environment (`environments[].name`) these constraints apply in.
    #[serde(rename = "name")]
    pub(crate) environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) workflows: Option<GlobList>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refs: Option<GlobList>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) triggers: Option<TriggerFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) runners: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_age: Option<MaxAge>,
    /// Predicate types required here besides the rule's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) require_attestations: Vec<String>,
}

impl EnvironmentConstraints {
    /// The environment's name.
    pub fn environment(&self) -> &str {
        &self.environment
    }
}

/// Which environment an image is judged for: the namespace's, as [`Policy::mode_for_namespace`]
/// picks it. An input of every decision, never part of a cache key: the caches hold facts
/// about digests, the policy and the destination are applied afresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A namespace no environment selects, or the command line without an environment: the
    /// rule's own constraints alone.
    #[default]
    Unselected,
    /// A namespace of this environment: its constraints hold besides the rule's.
    Environment(String),
    /// A namespace whose labels could not be read (judged in enforce mode): every
    /// environment's constraints hold, since any could be the namespace's.
    Unknown,
}

impl Destination {
    /// The destination of a namespace in `environment` (`None`: no environment selects it).
    pub fn of(environment: Option<&str>) -> Destination {
        environment.map_or(Destination::Unselected, |name| {
            Destination::Environment(name.to_owned())
        })
    }
}

/// Break-glass limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlass {
    /// How far ahead a break-glass expiry may lie.
    pub max_duration: BreakGlassDuration,
    /// Who may declare break-glass.
    pub approvers: Approvers,
}

/// Who may set the break-glass annotations on a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// Kubernetes groups (from the request's userInfo).
    pub groups: Vec<String>,
    /// Kubernetes user names.
    pub users: Vec<String>,
}

/// How to reach one registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    /// Host name with optional port, in the canonical spelling of image names
    /// ([`canonical_registry`](crate::check::reference::canonical_registry)).
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// PEM file of extra CA certificates for this registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// Where a rule's attestations are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationSource {
    /// The image's registry: the OCI referrers API, or the referrers tag schema.
    Registry,
    /// GitHub's attestations API (`/repos/{owner}/{repo}/attestations/{digest}`, or the
    /// `orgs/{org}` form), for the rule's repositories and owners.
    Github,
}

impl AttestationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AttestationSource::Registry => "registry",
            AttestationSource::Github => "github",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<AttestationSource> {
        match text {
            "registry" => Some(AttestationSource::Registry),
            "github" => Some(AttestationSource::Github),
            _ => None,
        }
    }
}

impl std::fmt::Display for AttestationSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The GitHub API host asked for attestations (GitHub.com or GitHub Enterprise Server), and
/// the only hosts a listing's `bundle_url` may point to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GithubApi {
    /// Host with optional port: `api.github.com`, or a GitHub Enterprise Server's API host.
    pub api_host: String,
    /// Path prefix of the REST API on that host: empty on GitHub.com, `/api/v3` on GitHub
    /// Enterprise Server.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Plain HTTP instead of HTTPS (a mirror inside the cluster; tests).
    pub insecure: bool,
    /// PEM file of extra CA certificates for the API and bundle hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// File holding the token sent as `Authorization: Bearer`; none for public repositories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// GitHub App credentials (files of a mounted Secret), exchanged for installation tokens;
    /// excludes `token_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<GithubAppFiles>,
    /// Hosts besides `api_host` that a `bundle_url` may name; any other is not followed.
    pub bundle_hosts: Vec<String>,
}

/// The files of a GitHub App's credentials, each read when a token is minted so that a
/// rotated Secret is used at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GithubAppFiles {
    /// The App's numeric ID (or its client ID), the JWT's issuer.
    pub app_id_file: String,
    /// The numeric ID of the App's installation on the owner whose attestations are read.
    pub installation_id_file: String,
    /// The App's private key, PEM (PKCS#1 as GitHub issues it, or PKCS#8).
    pub private_key_file: String,
}

/// GitHub.com's REST API host.
pub const GITHUB_API_HOST: &str = "api.github.com";

impl Default for GithubApi {
    fn default() -> Self {
        GithubApi {
            api_host: GITHUB_API_HOST.to_owned(),
            path_prefix: String::new(),
            insecure: false,
            ca_file: None,
            token_file: None,
            app: None,
            bundle_hosts: Vec::new(),
        }
    }
}
