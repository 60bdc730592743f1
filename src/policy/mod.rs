//! Policy: the trusted repositories, workflows, refs, triggers and runners.
//!
//! Pure and synchronous: [`Policy::from_yaml`] checks a `policy.yaml`,
//! [`Policy::classify_image`] and [`Policy::mode_for_namespace`] pick the rule and mode,
//! and [`evaluate`] decides a [`VerifiedAttestation`](crate::verify::claims::VerifiedAttestation)
//! against a rule.
//!
//! docs/policy.md describes the document for those who write it.

mod classify;
mod config;
mod document;
mod duplicates;
mod duration;
mod error;
pub mod file;
mod github;
mod glob;
mod hint;
mod lint;
mod locate;
mod never_match;
mod rule;
mod selector;
mod shape;
mod validate;

pub use classify::ImageClass;
pub use config::GithubAppFiles;
pub use config::{
    Approvers, AttestationSource, BreakGlass, Destination, Environment, EnvironmentConstraints,
    GithubApi, LabelRequirement, Mode, NamespaceSelector, Policy, Registry, Revocations,
    RevokedRun, Rule, SelectorOperator, SignerWorkflow, TriggerFilter, TrustedOwner,
    TrustedRepository, UnmatchedAction, ATTESTATION_ALIASES, CYCLONEDX_BOM, DEFAULT_REFS,
    DEFAULT_RUNNERS, DEFAULT_TRIGGERS, GITHUB_ACTIONS_ISSUER, GITHUB_API_HOST, MAX_GLOBS,
    MAX_POLICY_BYTES, MAX_RULES, RISKY_TRIGGERS, SLSA_PROVENANCE_V1, SPDX_DOCUMENT_V2_3,
};
pub use duration::{BreakGlassDuration, DurationError, MaxAge, MAX_AGE_LIMIT, MAX_BREAK_GLASS};
pub use error::{PolicyError, PolicyIssue, SourceLocation};
pub use glob::{Glob, GlobError, GlobList};
pub use hint::fix_hints;
pub use lint::CheckedPolicy;
pub use never_match::GITHUB_ACTIONS_EVENTS;
pub use rule::{evaluate, Check, Failure, RuleViolation};
