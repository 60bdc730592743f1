//! The `policy.yaml` document exactly as written, before any value is checked.
//!
//! Enumerations, globs, IDs and durations are kept as text here so that validation can
//! report every bad value with its path instead of stopping at the first one.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PolicyDocument {
    pub version: u64,
    pub default_mode: Option<String>,
    #[serde(default)]
    pub environments: Vec<EnvironmentDocument>,
    #[serde(default)]
    pub exempt_images: Vec<String>,
    pub unmatched_images: Option<String>,
    #[serde(default)]
    pub rules: Vec<RuleDocument>,
    pub break_glass: Option<BreakGlassDocument>,
    #[serde(default)]
    pub registries: Vec<RegistryDocument>,
    pub revoked: Option<RevokedDocument>,
    pub github: Option<GithubDocument>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct GithubDocument {
    pub api_host: Option<String>,
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    pub ca_file: Option<String>,
    pub token_file: Option<String>,
    pub app: Option<GithubAppDocument>,
    #[serde(default)]
    pub bundle_hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct GithubAppDocument {
    pub app_id_file: String,
    pub installation_id_file: String,
    pub private_key_file: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RevokedDocument {
    #[serde(default)]
    pub commits: Vec<String>,
    #[serde(default)]
    pub runs: Vec<String>,
    #[serde(default)]
    pub signer_digests: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvironmentDocument {
    pub name: String,
    pub namespace_selector: SelectorDocument,
    pub mode: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SelectorDocument {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<RequirementDocument>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RequirementDocument {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RuleDocument {
    pub name: String,
    pub images: Vec<String>,
    #[serde(default)]
    pub repositories: Vec<RepositoryDocument>,
    #[serde(default)]
    pub owners: Vec<OwnerDocument>,
    pub workflows: Option<Vec<String>>,
    #[serde(default)]
    pub signer_workflows: Vec<String>,
    #[serde(default)]
    pub allow_self_signed: bool,
    pub refs: Option<Vec<String>>,
    pub build_config_digests: Option<Vec<String>>,
    pub max_age: Option<String>,
    pub triggers: Option<Vec<String>>,
    pub runners: Option<Vec<String>>,
    pub predicate_types: Option<Vec<String>>,
    pub require_attestations: Option<Vec<String>>,
    pub issuers: Option<Vec<String>>,
    pub attestation_sources: Option<Vec<String>>,
    pub instances: Option<Vec<String>>,
    #[serde(default)]
    pub environments: Vec<RuleEnvironmentDocument>,
}

/// What a rule adds in one environment; every key narrows the rule's own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RuleEnvironmentDocument {
    pub name: String,
    pub workflows: Option<Vec<String>>,
    pub refs: Option<Vec<String>>,
    pub triggers: Option<Vec<String>>,
    pub runners: Option<Vec<String>>,
    pub max_age: Option<String>,
    pub require_attestations: Option<Vec<String>>,
}

/// `id` is read as text even when written unquoted: YAML would otherwise turn a large
/// ID into a float or strip leading zeros.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RepositoryDocument {
    pub name: String,
    pub id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct OwnerDocument {
    pub name: String,
    pub id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BreakGlassDocument {
    pub max_duration: String,
    #[serde(default)]
    pub approvers: ApproversDocument,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ApproversDocument {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RegistryDocument {
    pub host: String,
    #[serde(default)]
    pub insecure: bool,
    pub ca_file: Option<String>,
}
