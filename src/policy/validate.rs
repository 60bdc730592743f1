//! Turning a parsed [`PolicyDocument`] into a [`Policy`], collecting every problem on the way.

use super::config::{
    Approvers, AttestationSource, BreakGlass, Environment, EnvironmentConstraints, GithubApi,
    LabelRequirement, Mode, NamespaceSelector, Policy, Registry, Revocations, RevokedRun, Rule,
    SelectorOperator, SignerWorkflow, TriggerFilter, TrustedOwner, TrustedRepository,
    UnmatchedAction, ATTESTATION_ALIASES, DEFAULT_REFS, DEFAULT_RUNNERS, DEFAULT_TRIGGERS,
    GITHUB_ACTIONS_ISSUER, MAX_GLOBS, MAX_POLICY_BYTES, MAX_RULES, SLSA_PROVENANCE_V1,
};
use super::document::{
    BreakGlassDocument, EnvironmentDocument, GithubDocument, OwnerDocument, PolicyDocument,
    RegistryDocument, RepositoryDocument, RequirementDocument, RevokedDocument, RuleDocument,
    RuleEnvironmentDocument, SelectorDocument,
};
use super::duration::{BreakGlassDuration, MaxAge};
use super::error::{PolicyError, PolicyIssue};
use super::github::{is_owner_login, is_repository_name, is_run_id, parse_run_uri};
use super::glob::{has_glob_syntax, Glob, GlobList};
use super::locate::{locate, FieldPath};
use super::never_match;
use crate::check::reference::{canonical_registry, DOCKER_HUB_REGISTRY};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The most entries any other list (environments, exempt images, a rule's globs, …) may have.
const MAX_LIST_ENTRIES: usize = 1000;
/// The longest glob list whose compiled matcher is shared with identical lists.
const MAX_SHARED_LIST: usize = 8;
/// The most problems listed in one error; a broken 1 MiB file could otherwise yield thousands.
const MAX_REPORTED_ISSUES: usize = 100;
/// Locating a problem re-reads the source (serde_yaml manages about 10 MB/s), so large
/// sources get fewer located problems: a broken policy must not stall a reload for long.
pub(super) const LOCATE_BUDGET_BYTES: usize = 8 * MAX_POLICY_BYTES;

const WORKFLOWS_DIRECTORY: &str = ".github/workflows/";
/// `**` alone matches every image, workflow or ref (policy-controller's `glob: "**"`). It
/// names no host, so it cannot be a half-written host glob: those stay refused in rules.
pub(super) const EVERYTHING: &str = "**";
const KNOWN_RUNNERS: [&str; 2] = ["github-hosted", "self-hosted"];

impl Policy {
    /// Parses and checks a `policy.yaml` source. Every error names its field path and line;
    /// all semantic problems are reported together.
    pub fn from_yaml(source: &str) -> Result<Policy, PolicyError> {
        parse_with_document(source).map(|(_, policy)| policy)
    }
}

/// The policy and the document it was built from, for checks that report by field path.
pub(super) fn parse_with_document(source: &str) -> Result<(PolicyDocument, Policy), PolicyError> {
    if source.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            size: source.len(),
            limit: MAX_POLICY_BYTES,
        });
    }
    let located_budget = (LOCATE_BUDGET_BYTES / source.len().max(1)).max(1);
    if let Some(error) = super::duplicates::refuse_duplicate_keys(source, located_budget) {
        return Err(error);
    }
    let document: PolicyDocument = serde_yaml::from_str(source).map_err(|error| {
        let mut problems = super::shape::shape_problems(source, LOCATE_BUDGET_BYTES);
        if problems.len() < 2 {
            return PolicyError::Syntax(PolicyIssue::from_yaml_error(&error));
        }
        problems.sort_by_key(|issue| {
            issue
                .location
                .map_or((1, 0, 0), |location| (0, location.line, location.column))
        });
        let omitted = problems.len().saturating_sub(MAX_REPORTED_ISSUES);
        problems.truncate(MAX_REPORTED_ISSUES);
        PolicyError::Invalid {
            issues: problems,
            omitted,
        }
    })?;
    if document.rules.len() > MAX_RULES {
        return Err(PolicyError::TooManyRules {
            count: document.rules.len(),
            limit: MAX_RULES,
        });
    }
    let globs = glob_count(&document);
    if globs > MAX_GLOBS {
        return Err(PolicyError::TooManyGlobs {
            count: globs,
            limit: MAX_GLOBS,
        });
    }
    let mut checker = Checker::default();
    let policy = checker.policy(&document);
    if checker.problems.is_empty() {
        Ok((document, policy))
    } else {
        Err(checker.into_error(source))
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<(FieldPath, String)>,
    /// Compiled matchers of short glob lists by their patterns, for rules that repeat one.
    glob_sets: HashMap<Vec<String>, Arc<globset::GlobSet>>,
    /// The policy's environment names, which rules' `environments` must name.
    environment_names: Vec<String>,
}

impl Checker {
    fn report(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.problems.push((path.clone(), message.into()));
    }

    fn into_error(self, source: &str) -> PolicyError {
        let located_count = (LOCATE_BUDGET_BYTES / source.len().max(1)).max(1);
        let total = self.problems.len();
        let mut issues = self
            .problems
            .into_iter()
            .take(MAX_REPORTED_ISSUES)
            .enumerate()
            .map(|(position, (path, message))| PolicyIssue {
                location: if position < located_count {
                    locate_nearest(source, &path)
                } else {
                    None
                },
                path: path.to_string(),
                message,
            })
            .collect::<Vec<_>>();
        // Checks run field by field, but people fix files top to bottom.
        issues.sort_by_key(|issue| {
            issue
                .location
                .map_or((1, 0, 0), |location| (0, location.line, location.column))
        });
        PolicyError::Invalid {
            omitted: total - issues.len(),
            issues,
        }
    }

    fn policy(&mut self, document: &PolicyDocument) -> Policy {
        let root = FieldPath::root();
        if document.version != 1 {
            self.report(
                &root.key("version"),
                format!(
                    "unsupported version {}; this build understands version 1",
                    document.version
                ),
            );
        }
        let default_mode = match &document.default_mode {
            Some(text) => self.mode(&root.key("defaultMode"), text),
            None => Mode::Enforce,
        };
        let environments = self.environments(&root.key("environments"), &document.environments);
        self.environment_names = environments
            .iter()
            .map(|environment| environment.name.clone())
            .collect();
        let exempt_images = self.list(
            &root.key("exemptImages"),
            &document.exempt_images,
            |this, path, text| this.image_glob(path, text, ImagePattern::Exemption),
        );
        let unmatched_images = match document.unmatched_images.as_deref() {
            None | Some("deny") => UnmatchedAction::Deny,
            Some("allow") => UnmatchedAction::Allow,
            Some(other) => {
                self.report(
                    &root.key("unmatchedImages"),
                    format!("unknown action `{other}`, expected deny or allow"),
                );
                UnmatchedAction::Deny
            }
        };
        let mut rules = self.rules(&root.key("rules"), &document.rules);
        let revoked = Arc::new(self.revocations(&root.key("revoked"), document.revoked.as_ref()));
        for rule in &mut rules {
            rule.revoked = Arc::clone(&revoked);
        }
        let break_glass = document
            .break_glass
            .as_ref()
            .and_then(|block| self.break_glass(&root.key("breakGlass"), block));
        let registries = self.registries(&root.key("registries"), &document.registries);
        let github = match &document.github {
            Some(block) => self.github(&root.key("github"), block),
            None => GithubApi::default(),
        };
        Policy {
            version: document.version,
            default_mode,
            environments,
            exempt_images: self.glob_list(&root.key("exemptImages"), exempt_images),
            unmatched_images,
            rules,
            break_glass,
            registries,
            revoked,
            github,
        }
    }

    /// Checks each entry of a list, keeping the good ones; refuses overlong lists outright.
    fn list<'d, I, T>(
        &mut self,
        path: &FieldPath,
        entries: &'d [I],
        mut check: impl FnMut(&mut Self, &FieldPath, &'d I) -> Option<T>,
    ) -> Vec<T> {
        if entries.len() > MAX_LIST_ENTRIES {
            self.report(
                path,
                format!(
                    "has {} entries, more than the limit of {MAX_LIST_ENTRIES}",
                    entries.len()
                ),
            );
            return Vec::new();
        }
        entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| check(self, &path.index(index), entry))
            .collect()
    }

    /// Like [`Checker::list`] for keys whose absence means a default: an explicit empty list
    /// would silently refuse everything, so it is an error.
    fn optional_list<I, T>(
        &mut self,
        path: &FieldPath,
        entries: Option<&[I]>,
        default_description: &str,
        check: impl FnMut(&mut Self, &FieldPath, &I) -> Option<T>,
    ) -> Option<Vec<T>> {
        let entries = entries?;
        if entries.is_empty() {
            self.report(
                path,
                format!("must not be empty; leave it out for the default ({default_description})"),
            );
        }
        Some(self.list(path, entries, check))
    }

    fn mode(&mut self, path: &FieldPath, text: &str) -> Mode {
        Mode::parse(text).unwrap_or_else(|| {
            self.report(
                path,
                format!("unknown mode `{text}`, expected one of observe, warn, enforce"),
            );
            Mode::Enforce
        })
    }

    fn entry_name(&mut self, path: &FieldPath, text: &str, what: &str) -> bool {
        let problem = if text.trim().is_empty() {
            format!("{what} name must not be empty")
        } else if text.trim() != text {
            format!("{what} name `{text}` has leading or trailing spaces")
        } else if text.chars().any(char::is_control) {
            format!("{what} name {text:?} contains control characters")
        } else {
            return true;
        };
        self.report(path, problem);
        false
    }

    fn environments(
        &mut self,
        path: &FieldPath,
        documents: &[EnvironmentDocument],
    ) -> Vec<Environment> {
        let mut first_use: BTreeMap<&str, usize> = BTreeMap::new();
        self.list(path, documents, |this, entry_path, document| {
            let name_path = entry_path.key("name");
            if this.entry_name(&name_path, &document.name, "environment") {
                if let Some(first) = first_use.get(document.name.as_str()) {
                    this.report(
                        &name_path,
                        format!(
                            "duplicate environment name `{}`, already used by environments[{first}]",
                            document.name
                        ),
                    );
                } else {
                    first_use.insert(&document.name, entry_index(entry_path));
                }
            }
            let namespace_selector =
                this.selector(&entry_path.key("namespaceSelector"), &document.namespace_selector);
            let mode = this.mode(&entry_path.key("mode"), &document.mode);
            Some(Environment {
                name: document.name.clone(),
                namespace_selector,
                mode,
            })
        })
    }

    fn selector(&mut self, path: &FieldPath, document: &SelectorDocument) -> NamespaceSelector {
        let labels_path = path.key("matchLabels");
        for key in document.match_labels.keys() {
            if key.is_empty() {
                self.report(&labels_path, "label keys must not be empty");
            }
        }
        let match_expressions = self.list(
            &path.key("matchExpressions"),
            &document.match_expressions,
            |this, entry_path, requirement| this.requirement(entry_path, requirement),
        );
        NamespaceSelector {
            match_labels: document.match_labels.clone(),
            match_expressions,
        }
    }

    fn requirement(
        &mut self,
        path: &FieldPath,
        document: &RequirementDocument,
    ) -> Option<LabelRequirement> {
        if document.key.is_empty() {
            self.report(&path.key("key"), "label key must not be empty");
        }
        let Some(operator) = SelectorOperator::parse(&document.operator) else {
            self.report(
                &path.key("operator"),
                format!(
                    "unknown operator `{}`, expected one of In, NotIn, Exists, DoesNotExist",
                    document.operator
                ),
            );
            return None;
        };
        match operator {
            SelectorOperator::In | SelectorOperator::NotIn if document.values.is_empty() => {
                self.report(
                    &path.key("values"),
                    format!("operator {:?} needs at least one value", document.operator),
                );
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist
                if !document.values.is_empty() =>
            {
                self.report(
                    &path.key("values"),
                    format!("operator {:?} takes no values", document.operator),
                );
            }
            _ => {}
        }
        Some(LabelRequirement {
            key: document.key.clone(),
            operator,
            values: document.values.clone(),
        })
    }

    /// One matcher for a list of globs; an empty one, reported, should it fail to build.
    fn glob_list(&mut self, path: &FieldPath, globs: Vec<Glob>) -> GlobList {
        // Short lists are the ones rules repeat (refs, workflows, the defaults); keying long
        // ones would cost more than it saves.
        let key: Option<Vec<String>> = (globs.len() <= MAX_SHARED_LIST).then(|| {
            globs
                .iter()
                .map(|glob| glob.matched_pattern().to_string())
                .collect()
        });
        if let Some(set) = key.as_ref().and_then(|key| self.glob_sets.get(key)) {
            return GlobList::sharing(globs, Arc::clone(set));
        }
        match GlobList::new(globs) {
            Ok(list) => {
                if let Some(key) = key {
                    self.glob_sets.insert(key, list.shared_set());
                }
                list
            }
            Err(error) => {
                self.report(path, format!("failed to compile the globs: {error}"));
                GlobList::new(Vec::new()).unwrap_or_else(|_| unreachable!("an empty set compiles"))
            }
        }
    }

    fn glob(&mut self, path: &FieldPath, text: &str) -> Option<Glob> {
        Glob::new(text)
            .map_err(|error| self.report(path, format!("`{text}`: {error}")))
            .ok()
    }

    /// Image globs are matched against canonical image names (`docker.io/library/nginx`,
    /// see [`ImageReference`](crate::check::reference::ImageReference)), so a pattern that could never
    /// match one is a mistake worth reporting, and a host spelled another way is refused with
    /// its canonical spelling rather than silently never matching.
    fn image_glob(&mut self, path: &FieldPath, text: &str, kind: ImagePattern) -> Option<Glob> {
        if text == EVERYTHING {
            return self.glob(path, text);
        }
        let (host, repository) = text.split_once('/').unwrap_or((text, ""));
        let repository_segments: Vec<&str> = repository.split('/').collect();
        // `[` opens an IPv6 address in a host, never a character class.
        let literal_host = host.starts_with('[') || !has_glob_syntax(host);
        let problem = if text.contains('@') {
            Some(format!(
                "`{text}`: image globs match repositories without a digest; remove the `@…` part"
            ))
        } else if repository_segments
            .iter()
            .any(|segment| segment.contains(':'))
        {
            Some(format!(
                "`{text}`: image globs match repositories without a tag; remove the `:…` part"
            ))
        } else if repository_segments
            .iter()
            .any(|segment| segment.chars().any(|c| c.is_ascii_uppercase()))
        {
            Some(format!(
                "`{text}`: image repositories are lowercase, this pattern would never match"
            ))
        } else if !(host.contains(['.', ':'])
            || host.eq_ignore_ascii_case("localhost")
            || has_glob_syntax(host))
            || repository.is_empty()
        {
            Some(format!(
                "`{text}` does not start with a registry host; images are matched as normalised references such as docker.io/library/nginx"
            ))
        } else if literal_host {
            canonical_host_problem(text, host, &repository_segments)
        } else if kind == ImagePattern::Rule {
            Some(format!(
                "`{text}`: the registry host must be written out, not a glob; a rule makes the webhook contact the image's registry, so a host glob would let any pod choose which host it contacts; write one pattern per registry"
            ))
        } else if host.chars().any(|c| c.is_ascii_uppercase()) {
            Some(format!(
                "`{text}`: registry hosts are matched in lower case, this pattern would never match"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.report(path, problem);
            return None;
        }
        let compiled = if literal_host {
            Glob::with_literal_first_segment(text)
        } else {
            Glob::new(text)
        };
        compiled
            .map_err(|error| self.report(path, format!("`{text}`: {error}")))
            .ok()
    }

    fn rules(&mut self, path: &FieldPath, documents: &[RuleDocument]) -> Vec<Rule> {
        let mut first_use: BTreeMap<&str, usize> = BTreeMap::new();
        let mut rules = Vec::with_capacity(documents.len());
        for (index, document) in documents.iter().enumerate() {
            let rule_path = path.index(index);
            let name_path = rule_path.key("name");
            if self.entry_name(&name_path, &document.name, "rule") {
                match first_use.get(document.name.as_str()) {
                    Some(first) => self.report(
                        &name_path,
                        format!(
                            "duplicate rule name `{}`, already used by rules[{first}]",
                            document.name
                        ),
                    ),
                    None => {
                        first_use.insert(&document.name, index);
                    }
                }
            }
            rules.push(self.rule(&rule_path, document));
        }
        rules
    }

    fn rule(&mut self, path: &FieldPath, document: &RuleDocument) -> Rule {
        let images_path = path.key("images");
        if document.images.is_empty() {
            self.report(&images_path, "must list at least one image glob");
        }
        let images = self.list(&images_path, &document.images, |this, entry_path, text| {
            this.image_glob(entry_path, text, ImagePattern::Rule)
        });
        if document.repositories.is_empty() && document.owners.is_empty() {
            self.report(
                path,
                format!(
                    "rule `{}` names neither `repositories` nor `owners`; it must say whose builds it trusts",
                    document.name
                ),
            );
        }
        let repositories = self.repositories(&path.key("repositories"), &document.repositories);
        let owners = self.owners(&path.key("owners"), &document.owners);
        let workflows = self.optional_list(
            &path.key("workflows"),
            document.workflows.as_deref(),
            "any workflow of a trusted repository",
            |this, entry_path, text| this.workflow_glob(entry_path, text),
        );
        let signer_workflows = self.list(
            &path.key("signerWorkflows"),
            &document.signer_workflows,
            |this, entry_path, text| this.signer_workflow(entry_path, text),
        );
        let refs = self
            .optional_list(
                &path.key("refs"),
                document.refs.as_deref(),
                &DEFAULT_REFS.join(", "),
                |this, entry_path, text| this.ref_glob(entry_path, text),
            )
            .unwrap_or_else(default_refs);
        let triggers = TriggerFilter::OneOf(
            self.optional_list(
                &path.key("triggers"),
                document.triggers.as_deref(),
                &DEFAULT_TRIGGERS.join(", "),
                |this, entry_path, text: &String| this.trigger(entry_path, text),
            )
            .unwrap_or_else(|| owned(&DEFAULT_TRIGGERS)),
        );
        let runners = self
            .optional_list(
                &path.key("runners"),
                document.runners.as_deref(),
                &DEFAULT_RUNNERS.join(", "),
                |this, entry_path, text: &String| this.runner(entry_path, text),
            )
            .unwrap_or_else(|| owned(&DEFAULT_RUNNERS));
        let predicate_types = self
            .optional_list(
                &path.key("predicateTypes"),
                document.predicate_types.as_deref(),
                SLSA_PROVENANCE_V1,
                |this, entry_path, text: &String| this.uri(entry_path, text, "predicate type"),
            )
            .unwrap_or_else(|| vec![SLSA_PROVENANCE_V1.to_string()]);
        let require_attestations = self.require_attestations(
            &path.key("requireAttestations"),
            document.require_attestations.as_deref(),
            document.predicate_types.is_some(),
        );
        // Each required type is also an accepted one: a bundle of any of them is judged.
        let predicate_types = if require_attestations.is_empty() {
            predicate_types
        } else {
            require_attestations.clone()
        };
        let issuers = self
            .optional_list(
                &path.key("issuers"),
                document.issuers.as_deref(),
                GITHUB_ACTIONS_ISSUER,
                |this, entry_path, text: &String| {
                    if text.starts_with("https://") {
                        this.uri(entry_path, text, "issuer")
                    } else {
                        this.report(
                            entry_path,
                            format!("issuer `{text}` must be an https:// URL"),
                        );
                        None
                    }
                },
            )
            .unwrap_or_else(|| vec![GITHUB_ACTIONS_ISSUER.to_string()]);
        let build_config_digests =
            self.build_config_digests(path, document.build_config_digests.as_deref());
        let max_age = self.max_age(&path.key("maxAge"), document.max_age.as_deref());
        let attestation_sources = self.attestation_sources(
            &path.key("attestationSources"),
            document.attestation_sources.as_deref(),
        );
        let instances = self.instances(&path.key("instances"), document.instances.as_deref());
        let environments = self.rule_environments(
            &path.key("environments"),
            &document.environments,
            document.predicate_types.is_some(),
        );
        Rule {
            name: document.name.clone(),
            images: self.glob_list(&images_path, images),
            repositories,
            owners,
            workflows: workflows.map(|globs| self.glob_list(&path.key("workflows"), globs)),
            signer_workflows,
            allow_self_signed: document.allow_self_signed,
            refs: self.glob_list(&path.key("refs"), refs),
            build_config_digests,
            triggers,
            runners,
            predicate_types,
            require_attestations,
            issuers,
            max_age,
            attestation_sources,
            environments,
            instances,
            revoked: Arc::default(),
        }
    }

    fn runner(&mut self, path: &FieldPath, text: &str) -> Option<String> {
        if KNOWN_RUNNERS.contains(&text) {
            return Some(text.to_owned());
        }
        self.report(
            path,
            format!("unknown runner environment `{text}`, expected github-hosted or self-hosted"),
        );
        None
    }

    /// A rule's `environments`: each names one of the policy's environments, once, and
    /// narrows at least one thing.
    fn rule_environments(
        &mut self,
        path: &FieldPath,
        documents: &[RuleEnvironmentDocument],
        predicate_types_given: bool,
    ) -> Vec<EnvironmentConstraints> {
        let mut first_use: BTreeMap<&str, usize> = BTreeMap::new();
        self.list(path, documents, |this, entry_path, document| {
            let name_path = entry_path.key("name");
            if this.entry_name(&name_path, &document.name, "environment") {
                this.known_environment(&name_path, &document.name);
                match first_use.get(document.name.as_str()) {
                    Some(first) => this.report(
                        &name_path,
                        format!(
                            "environment `{}` is constrained twice in this rule, already by environments[{first}]; merge the two entries",
                            document.name
                        ),
                    ),
                    None => {
                        first_use.insert(&document.name, entry_index(entry_path));
                    }
                }
            }
            this.environment_constraints(entry_path, document, predicate_types_given)
        })
    }

    /// An environment's glob list under `key` (`workflows`, `refs`), each entry checked by
    /// `check`.
    fn narrowing_globs(
        &mut self,
        path: &FieldPath,
        key: &'static str,
        texts: Option<&[String]>,
        check: fn(&mut Self, &FieldPath, &str) -> Option<Glob>,
    ) -> Option<GlobList> {
        let path = path.key(key);
        let default = format!("the rule's {key}");
        let globs = self.optional_list(&path, texts, &default, |this, entry_path, text| {
            check(this, entry_path, text)
        })?;
        Some(self.glob_list(&path, globs))
    }

    fn known_environment(&mut self, path: &FieldPath, name: &str) {
        if self.environment_names.iter().any(|known| known == name) {
            return;
        }
        let message = if self.environment_names.is_empty() {
            format!("unknown environment `{name}`: the policy defines no `environments`, so no namespace is ever in it")
        } else {
            let spelled = self
                .environment_names
                .iter()
                .find(|known| known.eq_ignore_ascii_case(name))
                .map(|known| format!(" (did you mean `{known}`?)"))
                .unwrap_or_default();
            format!(
                "unknown environment `{name}`{spelled}; the policy's environments are {}",
                self.environment_names.join(", ")
            )
        };
        self.report(path, message);
    }

    fn environment_constraints(
        &mut self,
        path: &FieldPath,
        document: &RuleEnvironmentDocument,
        predicate_types_given: bool,
    ) -> Option<EnvironmentConstraints> {
        let workflows = self.narrowing_globs(
            path,
            "workflows",
            document.workflows.as_deref(),
            Self::workflow_glob,
        );
        let refs = self.narrowing_globs(path, "refs", document.refs.as_deref(), Self::ref_glob);
        let triggers = self
            .optional_list(
                &path.key("triggers"),
                document.triggers.as_deref(),
                "the rule's triggers",
                |this, entry_path, text: &String| this.trigger(entry_path, text),
            )
            .map(TriggerFilter::OneOf);
        let runners = self.optional_list(
            &path.key("runners"),
            document.runners.as_deref(),
            "the rule's runners",
            |this, entry_path, text: &String| this.runner(entry_path, text),
        );
        let max_age = self.max_age(&path.key("maxAge"), document.max_age.as_deref());
        let require_attestations = self.require_attestations(
            &path.key("requireAttestations"),
            document.require_attestations.as_deref(),
            predicate_types_given,
        );
        let constrains_something = document.workflows.is_some()
            || document.refs.is_some()
            || document.triggers.is_some()
            || document.runners.is_some()
            || document.max_age.is_some()
            || document.require_attestations.is_some();
        if !constrains_something {
            self.report(
                path,
                format!(
                    "environment `{}` adds no constraint; give it workflows, refs, triggers, runners, maxAge or requireAttestations, or leave it out",
                    document.name
                ),
            );
        }
        Some(EnvironmentConstraints {
            environment: document.name.clone(),
            workflows,
            refs,
            triggers,
            runners,
            max_age,
            require_attestations,
        })
    }

    /// `instances`: the trusted roots a bundle must verify under, by name; absent: any.
    fn instances(&mut self, path: &FieldPath, texts: Option<&[String]>) -> Vec<String> {
        let Some(texts) = texts else {
            return Vec::new();
        };
        if texts.is_empty() {
            self.report(
                path,
                "instances is empty: no bundle could be accepted; leave it out to accept any trusted root"
                    .to_owned(),
            );
        }
        let mut instances = Vec::new();
        for (index, text) in texts.iter().enumerate() {
            // Besides the two built-in instances, a root from `--trusted-root` is named after
            // its file: a plain name.
            let plain = !text.is_empty()
                && text.len() <= 64
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !plain {
                self.report(
                    &path.index(index),
                    format!("instance `{text}` is not a trusted root's name, expected public-good, github, or a --trusted-root file's name"),
                );
            } else if !instances.contains(text) {
                instances.push(text.clone());
            }
        }
        instances
    }

    /// Predicate types that must each be attested, aliases resolved; absent: none (one
    /// attestation of `predicateTypes` is enough, as before this key existed).
    fn require_attestations(
        &mut self,
        path: &FieldPath,
        texts: Option<&[String]>,
        predicate_types_given: bool,
    ) -> Vec<String> {
        if texts.is_some() && predicate_types_given {
            self.report(
                path,
                "requireAttestations and predicateTypes cannot both be set: the required types are the accepted ones".to_owned(),
            );
        }
        let mut seen: Vec<String> = Vec::new();
        let aliases = ATTESTATION_ALIASES
            .iter()
            .map(|(alias, _)| *alias)
            .collect::<Vec<_>>()
            .join(", ");
        let required = self.optional_list(path, texts, "none", |this, entry_path, text| {
            let resolved = match ATTESTATION_ALIASES.iter().find(|(alias, _)| alias == text) {
                Some((_, predicate_type)) => (*predicate_type).to_owned(),
                None if text.contains("://") => this.uri(entry_path, text, "predicate type")?,
                None => {
                    this.report(
                        entry_path,
                        format!("unknown attestation `{text}`, expected one of {aliases} or a predicate type URI"),
                    );
                    return None;
                }
            };
            if seen.contains(&resolved) {
                this.report(
                    entry_path,
                    format!("attestation `{text}` ({resolved}) is listed twice"),
                );
                return None;
            }
            seen.push(resolved.clone());
            Some(resolved)
        });
        required.unwrap_or_default()
    }

    /// A rule's sources in order; absent means the registry only, as before sources existed.
    fn attestation_sources(
        &mut self,
        path: &FieldPath,
        texts: Option<&[String]>,
    ) -> Vec<AttestationSource> {
        let mut seen = Vec::new();
        let sources = self.optional_list(path, texts, "registry", |this, entry_path, text| {
            let Some(source) = AttestationSource::parse(text) else {
                this.report(
                    entry_path,
                    format!("unknown attestation source `{text}`, expected registry or github"),
                );
                return None;
            };
            if seen.contains(&source) {
                this.report(
                    entry_path,
                    format!("attestation source `{text}` is listed twice"),
                );
                return None;
            }
            seen.push(source);
            Some(source)
        });
        match sources {
            Some(sources) if !sources.is_empty() => sources,
            _ => vec![AttestationSource::Registry],
        }
    }

    /// The `github` block: hosts written as image names write them (so that the only hosts
    /// contacted are spelled once, in one way), files named by absolute path.
    fn github(&mut self, path: &FieldPath, document: &GithubDocument) -> GithubApi {
        let mut api = GithubApi::default();
        if let Some(host) = &document.api_host {
            if self.plain_host(&path.key("apiHost"), host) {
                api.api_host = host.clone();
            }
        }
        if let Some(prefix) = &document.path_prefix {
            let valid = prefix.starts_with('/')
                && !prefix.ends_with('/')
                && prefix.len() <= 64
                && prefix[1..].split('/').all(|segment| {
                    !segment.is_empty()
                        && segment
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        && segment != ".."
                        && segment != "."
                });
            if valid {
                api.path_prefix = prefix.clone();
            } else {
                self.report(
                    &path.key("pathPrefix"),
                    format!("path prefix `{prefix}` must be an absolute path such as /api/v3, without a trailing slash"),
                );
            }
        }
        api.bundle_hosts = self.list(
            &path.key("bundleHosts"),
            &document.bundle_hosts,
            |this, entry_path, host| this.plain_host(entry_path, host).then(|| host.clone()),
        );
        let app_path = path.key("app");
        let app_files = document.app.iter().flat_map(|app| {
            [
                ("appIdFile", &app.app_id_file),
                ("installationIdFile", &app.installation_id_file),
                ("privateKeyFile", &app.private_key_file),
            ]
            .map(|(key, file)| (app_path.key(key), key, Some(file)))
        });
        let files = [
            (path.key("caFile"), "caFile", document.ca_file.as_ref()),
            (
                path.key("tokenFile"),
                "tokenFile",
                document.token_file.as_ref(),
            ),
        ]
        .into_iter()
        .chain(app_files);
        for (field, key, file) in files {
            if let Some(file) = file {
                if !file.starts_with('/') {
                    self.report(&field, format!("{key} `{file}` must be an absolute path"));
                }
            }
        }
        if document.app.is_some() && document.token_file.is_some() {
            self.report(
                &app_path,
                "app and tokenFile both give GitHub credentials; choose one",
            );
        }
        if document.insecure && document.ca_file.is_some() {
            self.report(
                &path.key("caFile"),
                "caFile is for HTTPS, but insecure: true selects plain HTTP; choose one",
            );
        }
        api.insecure = document.insecure;
        api.ca_file = document.ca_file.clone();
        api.token_file = document.token_file.clone();
        api.app = document
            .app
            .as_ref()
            .map(|app| super::config::GithubAppFiles {
                app_id_file: app.app_id_file.clone(),
                installation_id_file: app.installation_id_file.clone(),
                private_key_file: app.private_key_file.clone(),
            });
        api
    }

    /// Whether `text` is a host with optional port, written as image names write it.
    fn plain_host(&mut self, path: &FieldPath, text: &str) -> bool {
        match canonical_registry(text) {
            Ok(host) if host == text && host != DOCKER_HUB_REGISTRY => true,
            _ => {
                self.report(
                    path,
                    format!("host `{text}` must be a lower-case host name or [IPv6] address with an optional :port, without scheme or path"),
                );
                false
            }
        }
    }

    fn build_config_digests(
        &mut self,
        rule_path: &FieldPath,
        texts: Option<&[String]>,
    ) -> Vec<String> {
        self.optional_list(
            &rule_path.key("buildConfigDigests"),
            texts,
            "any Build Config Digest",
            |this, entry_path, text: &String| {
                this.hex_digest(entry_path, text, "build config digest")
            },
        )
        .unwrap_or_default()
    }

    fn max_age(&mut self, path: &FieldPath, text: Option<&str>) -> Option<MaxAge> {
        MaxAge::parse(text?)
            .map_err(|error| self.report(path, format!("maxAge: {error}")))
            .ok()
    }

    /// A git commit or Build Signer/Config Digest: SHA-1 or SHA-256 hex, kept in lower case
    /// because certificates may spell it in either case.
    fn hex_digest(&mut self, path: &FieldPath, text: &str, what: &str) -> Option<String> {
        if matches!(text.len(), 40 | 64) && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Some(text.to_ascii_lowercase());
        }
        self.report(
            path,
            format!(
                "{what} `{text}` must be a full commit hash: 40 (SHA-1) or 64 (SHA-256) hex digits"
            ),
        );
        None
    }

    fn revocations(&mut self, path: &FieldPath, document: Option<&RevokedDocument>) -> Revocations {
        let Some(document) = document else {
            return Revocations::default();
        };
        let commits = self.list(
            &path.key("commits"),
            &document.commits,
            |this, entry_path, text| this.hex_digest(entry_path, text, "revoked commit"),
        );
        let runs = self.list(
            &path.key("runs"),
            &document.runs,
            |this, entry_path, text| this.revoked_run(entry_path, text),
        );
        let signer_digests = self.list(
            &path.key("signerDigests"),
            &document.signer_digests,
            |this, entry_path, text| this.hex_digest(entry_path, text, "revoked signer digest"),
        );
        Revocations {
            commits,
            runs,
            signer_digests,
        }
    }

    /// A run ID, or a run URL as GitHub shows it (`…/actions/runs/ID`, with or without
    /// `/attempts/N`, which is dropped: a re-run builds the same commit under the same ID).
    fn revoked_run(&mut self, path: &FieldPath, text: &str) -> Option<RevokedRun> {
        if is_run_id(text) {
            return Some(RevokedRun {
                repository: None,
                run_id: text.to_string(),
            });
        }
        let Some(run) = parse_run_uri(text) else {
            self.report(
                path,
                format!("revoked run `{text}` must be a run ID or a run URL https://github.com/OWNER/REPO/actions/runs/ID"),
            );
            return None;
        };
        Some(RevokedRun {
            repository: Some((
                run.repository.owner.to_string(),
                run.repository.repo.to_string(),
            )),
            run_id: run.run_id.to_string(),
        })
    }

    fn repositories(
        &mut self,
        path: &FieldPath,
        documents: &[RepositoryDocument],
    ) -> Vec<TrustedRepository> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        self.list(path, documents, |this, entry_path, document| {
            let name_path = entry_path.key("name");
            let id = this.id(
                &entry_path.key("id"),
                document.id.as_deref(),
                "repository",
                &document.name,
            );
            let Some((owner, repo)) = document.name.split_once('/') else {
                this.report(
                    &name_path,
                    format!("repository `{}` must be written owner/repo", document.name),
                );
                return None;
            };
            if !is_owner_login(owner) || !is_repository_name(repo) {
                let hint = if has_glob_syntax(&document.name) {
                    "; names are exact, list the owner under `owners` to trust all its repositories"
                } else {
                    ""
                };
                this.report(
                    &name_path,
                    format!(
                        "repository `{}` is not a GitHub owner/repo name{hint}",
                        document.name
                    ),
                );
                return None;
            }
            let key = document.name.to_ascii_lowercase();
            let position = entry_index(entry_path);
            if let Some(first) = seen.get(&key) {
                this.report(
                    &name_path,
                    format!(
                        "repository `{}` is already listed at [{first}]",
                        document.name
                    ),
                );
                return None;
            }
            seen.insert(key, position);
            Some(TrustedRepository {
                owner: owner.to_string(),
                repo: repo.to_string(),
                id: id?,
            })
        })
    }

    fn owners(&mut self, path: &FieldPath, documents: &[OwnerDocument]) -> Vec<TrustedOwner> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        self.list(path, documents, |this, entry_path, document| {
            let id = this.id(
                &entry_path.key("id"),
                document.id.as_deref(),
                "owner",
                &document.name,
            );
            let name_path = entry_path.key("name");
            if !is_owner_login(&document.name) {
                this.report(
                    &name_path,
                    format!(
                        "owner `{}` is not a GitHub user or organisation name",
                        document.name
                    ),
                );
                return None;
            }
            let key = document.name.to_ascii_lowercase();
            if let Some(first) = seen.get(&key) {
                this.report(
                    &name_path,
                    format!("owner `{}` is already listed at [{first}]", document.name),
                );
                return None;
            }
            seen.insert(key, entry_index(entry_path));
            Some(TrustedOwner {
                name: document.name.clone(),
                id: id?,
            })
        })
    }

    /// `Some(None)`: no ID given; `None`: a bad ID (reported).
    fn id(
        &mut self,
        path: &FieldPath,
        id: Option<&str>,
        what: &str,
        name: &str,
    ) -> Option<Option<String>> {
        let Some(id) = id else {
            return Some(None);
        };
        if !id.is_empty() && id.len() <= 20 && id.bytes().all(|byte| byte.is_ascii_digit()) {
            if let Some(problem) = never_match::id_never_matches(what, id) {
                self.report(path, problem);
                return None;
            }
            return Some(Some(id.to_string()));
        }
        let lookup = match what {
            "repository" => format!("gh api repos/{name} --jq .id"),
            _ => format!("gh api users/{name} --jq .id"),
        };
        self.report(
            path,
            format!("{what} id `{id}` must be the decimal numeric ID (see `{lookup}`)"),
        );
        None
    }

    fn workflow_glob(&mut self, path: &FieldPath, text: &str) -> Option<Glob> {
        if text == EVERYTHING {
            return self.glob(path, text);
        }
        let problem = match text.strip_prefix(WORKFLOWS_DIRECTORY) {
            None => format!(
                "workflow `{text}` must be a path starting with {WORKFLOWS_DIRECTORY} (the calling workflow's path in the source repository)"
            ),
            Some("") => format!("workflow `{text}` names no file"),
            Some(_) if text.contains('@') => format!(
                "workflow `{text}` must be a path without @ref; the source ref is checked by `refs`"
            ),
            Some(file) if file.contains('/') => never_match::workflow_in_subdirectory(text),
            Some(_) => return self.glob(path, text),
        };
        self.report(path, problem);
        None
    }

    fn signer_workflow(&mut self, path: &FieldPath, text: &str) -> Option<SignerWorkflow> {
        let (spec, pinned_ref) = match text.split_once('@') {
            Some((spec, pinned)) => (spec, Some(pinned)),
            None => (text, None),
        };
        let mut parts = spec.splitn(3, '/');
        let (owner, repo, workflow_path) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let file = workflow_path
            .strip_prefix(WORKFLOWS_DIRECTORY)
            .unwrap_or_default();
        let well_formed = is_owner_login(owner)
            && is_repository_name(repo)
            && !file.is_empty()
            && !file.contains('/')
            && !has_glob_syntax(spec)
            && pinned_ref
                .is_none_or(|pinned| !pinned.is_empty() && !pinned.contains(char::is_whitespace));
        if !well_formed {
            self.report(
                path,
                format!(
                    "signer workflow `{text}` must be written owner/repo/.github/workflows/FILE, optionally followed by @REF or @COMMIT"
                ),
            );
            return None;
        }
        if let Some(problem) =
            pinned_ref.and_then(|pinned| never_match::signer_ref_never_matches(text, pinned))
        {
            self.report(path, problem);
            return None;
        }
        Some(SignerWorkflow {
            owner: owner.to_string(),
            repo: repo.to_string(),
            path: workflow_path.to_string(),
            pinned_ref: pinned_ref.map(str::to_string),
        })
    }

    fn ref_glob(&mut self, path: &FieldPath, text: &str) -> Option<Glob> {
        if text == EVERYTHING {
            return self.glob(path, text);
        }
        if !text.starts_with("refs/") {
            self.report(
                path,
                format!("ref `{text}` must be a full git ref such as refs/heads/{text} or refs/tags/{text}"),
            );
            return None;
        }
        if let Some(problem) = never_match::ref_never_matches(text) {
            self.report(path, problem);
            return None;
        }
        self.glob(path, text)
    }

    fn trigger(&mut self, path: &FieldPath, text: &str) -> Option<String> {
        match never_match::trigger_never_matches(text) {
            None => Some(text.to_string()),
            Some(problem) => {
                self.report(path, problem);
                None
            }
        }
    }

    fn uri(&mut self, path: &FieldPath, text: &str, what: &str) -> Option<String> {
        if text.is_empty() || text.contains(char::is_whitespace) {
            self.report(
                path,
                format!("{what} `{text}` must be a URI without spaces"),
            );
            return None;
        }
        Some(text.to_string())
    }

    fn break_glass(
        &mut self,
        path: &FieldPath,
        document: &BreakGlassDocument,
    ) -> Option<BreakGlass> {
        let max_duration = BreakGlassDuration::parse(&document.max_duration)
            .map_err(|error| self.report(&path.key("maxDuration"), error.to_string()))
            .ok();
        let approvers_path = path.key("approvers");
        let principals = |key: &'static str, entries: &[String], this: &mut Self| {
            this.list(&approvers_path.key(key), entries, |this, entry_path, name: &String| {
                if name.trim().is_empty() || name.trim() != name {
                    this.report(entry_path, format!("approver `{name}` must be a non-empty name without surrounding spaces"));
                    None
                } else {
                    Some(name.clone())
                }
            })
        };
        let groups = principals("groups", &document.approvers.groups, self);
        let users = principals("users", &document.approvers.users, self);
        Some(BreakGlass {
            max_duration: max_duration?,
            approvers: Approvers { groups, users },
        })
    }

    fn registries(&mut self, path: &FieldPath, documents: &[RegistryDocument]) -> Vec<Registry> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        self.list(path, documents, |this, entry_path, document| {
            let host_path = entry_path.key("host");
            let host = match canonical_registry(&document.host) {
                Ok(host) => host,
                Err(error) => {
                    this.report(
                        &host_path,
                        format!(
                            "registry host `{}` must be a host name or [IPv6] address with an optional :port, without scheme or path ({})",
                            document.host, error.problem
                        ),
                    );
                    return None;
                }
            };
            if host != document.host {
                this.report(
                    &host_path,
                    format!(
                        "registry host `{}` is written `{host}` in image names (lower case, without :443, Docker Hub as docker.io), and settings are matched on that spelling; write `{host}`",
                        document.host
                    ),
                );
                return None;
            }
            let key = host;
            if let Some(first) = seen.get(&key) {
                this.report(
                    &host_path,
                    format!("registry `{}` is already configured at registries[{first}]", document.host),
                );
                return None;
            }
            seen.insert(key, entry_index(entry_path));
            if let Some(ca_file) = &document.ca_file {
                if ca_file.trim().is_empty() {
                    this.report(&entry_path.key("caFile"), "caFile must not be empty");
                    return None;
                }
                if document.insecure {
                    this.report(
                        &entry_path.key("caFile"),
                        "caFile is for HTTPS, but insecure: true selects plain HTTP; choose one",
                    );
                    return None;
                }
            }
            Some(Registry {
                host: document.host.clone(),
                insecure: document.insecure,
                ca_file: document.ca_file.clone(),
            })
        })
    }
}

/// Position of the value nearest to `path` that exists in the source: a missing key is
/// reported at its parent.
pub(super) fn locate_nearest(
    source: &str,
    path: &FieldPath,
) -> Option<super::error::SourceLocation> {
    let mut candidate = path.clone();
    loop {
        if let Some(location) = locate(source, &candidate) {
            return Some(location);
        }
        candidate = candidate.parent()?;
    }
}

/// Every glob the policy would compile: exemptions and each rule's images, refs and workflows.
fn glob_count(document: &PolicyDocument) -> usize {
    let written = |list: &Option<Vec<String>>| list.as_ref().map_or(0, Vec::len);
    document.exempt_images.len()
        + document
            .rules
            .iter()
            .map(|rule| {
                rule.images.len()
                    + written(&rule.refs)
                    + written(&rule.workflows)
                    + rule
                        .environments
                        .iter()
                        .map(|environment| {
                            written(&environment.refs) + written(&environment.workflows)
                        })
                        .sum::<usize>()
            })
            .sum::<usize>()
}

fn entry_index(path: &FieldPath) -> usize {
    match path.segments().last() {
        Some(super::locate::Segment::Index(index)) => *index,
        _ => 0,
    }
}

fn default_refs() -> Vec<Glob> {
    DEFAULT_REFS
        .iter()
        .filter_map(|pattern| Glob::new(pattern).ok())
        .collect()
}

fn owned(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

/// Which list an image pattern is in: rule patterns lead to registry requests, exemptions
/// never do, so only exemptions may glob the registry host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImagePattern {
    Exemption,
    Rule,
}

/// Why the written-out `host` of image pattern `text` can never match a canonical image name,
/// naming the spelling that would.
fn canonical_host_problem(text: &str, host: &str, repository_segments: &[&str]) -> Option<String> {
    let canonical = match canonical_registry(host) {
        Ok(canonical) => canonical,
        Err(error) => return Some(format!("`{text}`: {error}")),
    };
    let repository = repository_segments.join("/");
    if canonical != host {
        return Some(format!(
            "`{text}`: registry host `{host}` is written `{canonical}` in image names (lower case, without :443, Docker Hub as docker.io), and patterns are matched on that spelling; write `{canonical}/{repository}`"
        ));
    }
    match repository_segments {
        [only] if canonical == DOCKER_HUB_REGISTRY && *only != "**" => Some(format!(
            "`{text}`: Docker Hub repositories always have a namespace, official images are under library/; write `{DOCKER_HUB_REGISTRY}/library/{only}`"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy example of the original design, verbatim (examples/policy.yaml grew from it;
    /// docs/policy.md describes every field).
    const DESIGN_EXAMPLE: &str = r#"version: 1
defaultMode: enforce                 # observe | warn | enforce
environments:                        # first match wins; the seed's policy tiers
  - name: production
    namespaceSelector: {matchLabels: {env: production}}
    mode: enforce                    # tier 2: hard gate
  - name: staging
    namespaceSelector: {matchLabels: {env: staging}}
    mode: warn                       # tier 1: soft gate (admit, warn, record)
  - name: development
    namespaceSelector: {matchLabels: {env: dev}}
    mode: observe                    # tier 0: verify and record only
exemptImages: ["registry.k8s.io/**"]  # `*` within a path segment, `**` across segments
unmatchedImages: deny                 # images no rule covers: deny | allow
rules:
  - name: acme-services
    images: ["ghcr.io/acme/**"]
    repositories: [{name: acme/api, id: "804070735"}]   # id optional, pins the immutable repo ID
    owners: [{name: acme, id: "16248153"}]               # or trust a whole owner
    workflows: [".github/workflows/release.yml"]         # calling workflow path(s)
    signerWorkflows: ["github/artifact-attestations-workflows/.github/workflows/attest.yml"]
    refs: ["refs/heads/main", "refs/tags/v*"]            # default: refs/heads/main
    triggers: [push, workflow_dispatch, release]         # default: push, release, workflow_dispatch, schedule
    runners: [github-hosted]                             # default
    predicateTypes: ["https://slsa.dev/provenance/v1"]   # default
    issuers: ["https://token.actions.githubusercontent.com"]  # default
breakGlass:
  maxDuration: 8h
  approvers: {groups: ["sre-oncall"], users: []}
registries:
  - {host: "registry.internal:5000", insecure: true}    # plain HTTP, for in-cluster registries
"#;

    fn patterns(globs: &[Glob]) -> Vec<&str> {
        globs.iter().map(Glob::as_str).collect()
    }

    #[test]
    fn design_example_parses() {
        let policy = Policy::from_yaml(DESIGN_EXAMPLE).expect("design example parses");
        assert_eq!(policy.version(), 1);
        assert_eq!(policy.default_mode(), Mode::Enforce);
        let environments: Vec<(&str, Mode)> = policy
            .environments()
            .iter()
            .map(|environment| (environment.name(), environment.mode()))
            .collect();
        assert_eq!(
            environments,
            [
                ("production", Mode::Enforce),
                ("staging", Mode::Warn),
                ("development", Mode::Observe)
            ]
        );
        assert_eq!(patterns(policy.exempt_images()), ["registry.k8s.io/**"]);
        assert_eq!(policy.unmatched_images(), UnmatchedAction::Deny);
        let rule = policy.rule("acme-services").expect("rule exists");
        assert_eq!(rule.repositories()[0].full_name(), "acme/api");
        assert_eq!(rule.repositories()[0].id(), Some("804070735"));
        assert_eq!(rule.owners()[0].id(), Some("16248153"));
        assert_eq!(
            rule.workflows().map(patterns),
            Some(vec![".github/workflows/release.yml"])
        );
        assert_eq!(
            rule.signer_workflows()[0].to_string(),
            "github/artifact-attestations-workflows/.github/workflows/attest.yml"
        );
        assert_eq!(
            patterns(rule.effective_refs()),
            ["refs/heads/main", "refs/tags/v*"]
        );
        assert_eq!(
            rule.effective_triggers(),
            &TriggerFilter::OneOf(owned(&["push", "workflow_dispatch", "release"]))
        );
        let break_glass = policy.break_glass().expect("break-glass configured");
        assert_eq!(break_glass.max_duration.as_std().as_secs(), 8 * 3600);
        assert_eq!(break_glass.approvers.groups, ["sre-oncall"]);
        let registry = policy
            .registry("REGISTRY.internal:5000")
            .expect("registry configured");
        assert!(registry.insecure);
        assert_eq!(registry.ca_file, None);
    }

    #[test]
    fn example_file_parses_with_rules_for_the_test_bundles() {
        let policy = Policy::from_yaml(include_str!("../../examples/policy.yaml"))
            .unwrap_or_else(|error| panic!("examples/policy.yaml: {error}"));
        let names: Vec<&str> = policy.rules().iter().map(Rule::name).collect();
        assert_eq!(
            names,
            ["acme-services", "attest-demo", "actions-attest-demo"]
        );
        let attest_demo = policy.rule("attest-demo").expect("rule exists");
        assert_eq!(attest_demo.repositories()[0].id(), Some("804070735"));
        assert!(attest_demo.effective_triggers().allows("workflow_dispatch"));
        let actions = policy.rule("actions-attest-demo").expect("rule exists");
        assert_eq!(actions.owners()[0].id(), Some("44036562"));
        assert!(actions.effective_triggers().allows("workflow_dispatch"));
    }

    #[test]
    fn attestation_sources_default_to_the_registry_and_the_github_block_to_github_com() {
        let rule = "  - {name: r, images: [\"ghcr.io/acme/*\"], owners: [{name: acme}]";
        let policy = Policy::from_yaml(&format!("version: 1\nrules:\n{rule}}}\n")).unwrap();
        assert_eq!(
            policy.rules()[0].attestation_sources(),
            [AttestationSource::Registry]
        );
        assert_eq!(policy.github(), &GithubApi::default());
        let policy = Policy::from_yaml(&format!(
            "version: 1\ngithub: {{apiHost: \"ghes.example.com:8443\", pathPrefix: /api/v3, tokenFile: /t, bundleHosts: [blobs.example.com]}}\nrules:\n{rule}, attestationSources: [github, registry]}}\n"
        ))
        .unwrap();
        assert_eq!(
            policy.rules()[0].attestation_sources(),
            [AttestationSource::Github, AttestationSource::Registry]
        );
        let github = policy.github();
        assert_eq!(github.api_host, "ghes.example.com:8443");
        assert_eq!(github.path_prefix, "/api/v3");
        assert_eq!(github.token_file.as_deref(), Some("/t"));
        assert_eq!(github.bundle_hosts, ["blobs.example.com"]);
    }

    #[test]
    fn github_app_credentials_are_three_absolute_files_and_exclude_a_token_file() {
        use crate::policy::GithubAppFiles;
        let rule = "rules:\n  - {name: r, images: [\"ghcr.io/acme/*\"], owners: [{name: acme}]}\n";
        let app = "app: {appIdFile: /s/app-id, installationIdFile: /s/installation-id, privateKeyFile: /s/key.pem}";
        let policy = Policy::from_yaml(&format!("version: 1\ngithub: {{{app}}}\n{rule}")).unwrap();
        assert_eq!(
            policy.github().app,
            Some(GithubAppFiles {
                app_id_file: "/s/app-id".into(),
                installation_id_file: "/s/installation-id".into(),
                private_key_file: "/s/key.pem".into(),
            })
        );
        let cases = [
            (
                format!("{{{app}, tokenFile: /t}}"),
                "app and tokenFile both give GitHub credentials",
            ),
            (
                "{app: {appIdFile: id, installationIdFile: /i, privateKeyFile: /k}}".to_owned(),
                "appIdFile `id` must be an absolute path",
            ),
            (
                "{app: {appIdFile: /a, privateKeyFile: /k}}".to_owned(),
                "installationIdFile",
            ),
        ];
        for (github, expected) in cases {
            let error = Policy::from_yaml(&format!("version: 1\ngithub: {github}\n{rule}"))
                .expect_err(&github)
                .to_string();
            assert!(error.contains(expected), "{github}: {error}");
        }
    }

    #[test]
    fn required_attestations_resolve_aliases_and_default_to_none() {
        let rule = "  - {name: r, images: [\"ghcr.io/acme/*\"], owners: [{name: acme}]";
        let policy = Policy::from_yaml(&format!("version: 1\nrules:\n{rule}}}\n")).unwrap();
        assert!(policy.rules()[0].required_attestations().is_empty());
        assert_eq!(
            policy.rules()[0].effective_predicate_types(),
            [SLSA_PROVENANCE_V1]
        );
        let policy = Policy::from_yaml(&format!(
            "version: 1\nrules:\n{rule}, requireAttestations: [provenance, spdx, cyclonedx, \"https://in-toto.io/attestation/vulns/v0.1\"]}}\n"
        ))
        .unwrap();
        let expected = [
            SLSA_PROVENANCE_V1,
            "https://spdx.dev/Document/v2.3",
            "https://cyclonedx.org/bom",
            "https://in-toto.io/attestation/vulns/v0.1",
        ];
        assert_eq!(policy.rules()[0].required_attestations(), expected);
        // Every required type is one the rule judges.
        assert_eq!(policy.rules()[0].effective_predicate_types(), expected);
    }

    #[test]
    fn required_attestations_are_checked() {
        let rule = |extra: &str| {
            format!("version: 1\nrules:\n  - name: r\n    images: [\"ghcr.io/acme/*\"]\n    owners: [{{name: acme}}]\n    {extra}\n")
        };
        assert_issues(vec![
            (
                rule("requireAttestations: []"),
                "rules[0].requireAttestations",
                6,
                "must not be empty",
            ),
            (
                rule("requireAttestations: [provenance, sbom]"),
                "rules[0].requireAttestations[1]",
                6,
                "unknown attestation `sbom`, expected one of provenance, spdx, cyclonedx or a predicate type URI",
            ),
            (
                rule("requireAttestations: [spdx, \"https://spdx.dev/Document/v2.3\"]"),
                "rules[0].requireAttestations[1]",
                6,
                "is listed twice",
            ),
            (
                rule("requireAttestations: [provenance, spdx]\n    predicateTypes: [\"https://slsa.dev/provenance/v1\"]"),
                "rules[0].requireAttestations",
                6,
                "cannot both be set",
            ),
        ]);
    }

    /// A policy with environments production and staging whose rule `r` ends with an
    /// `environments:` list of `entries` (line 10 is the first entry).
    fn constrained(entries: &str) -> String {
        format!(
            "version: 1
environments:
  - {{name: production, namespaceSelector: {{matchLabels: {{env: production}}}}, mode: enforce}}
  - {{name: staging, namespaceSelector: {{matchLabels: {{env: staging}}}}, mode: warn}}
rules:
  - name: r
    images: [\"ghcr.io/acme/*\"]
    owners: [{{name: acme}}]
    environments:
{entries}"
        )
    }

    #[test]
    fn rule_environments_name_known_environments_once_and_narrow_something() {
        let policy = Policy::from_yaml(&constrained(
            "      - {name: production, refs: [\"refs/tags/v*\"], maxAge: 30d, requireAttestations: [provenance, spdx]}\n      - {name: staging, triggers: [push]}\n",
        ))
        .expect("valid");
        let constraints = policy.rules()[0].environments();
        assert_eq!(constraints.len(), 2);
        assert_eq!(constraints[0].environment(), "production");
        let json = serde_json::to_value(&policy).expect("serializes");
        assert_eq!(
            json["rules"][0]["environments"][0]["refs"][0],
            "refs/tags/v*"
        );
        assert_eq!(
            json["rules"][0]["environments"][1]["triggers"]["oneOf"][0],
            "push"
        );
        assert_issues(vec![
            (
                constrained("      - {name: prod, refs: [\"refs/tags/v*\"]}\n"),
                "rules[0].environments[0].name",
                10,
                "unknown environment `prod`; the policy's environments are production, staging",
            ),
            (
                constrained("      - {name: Production, refs: [\"refs/tags/v*\"]}\n"),
                "rules[0].environments[0].name",
                10,
                "(did you mean `production`?)",
            ),
            (
                constrained("      - {name: staging, refs: [refs/heads/main]}\n      - {name: staging, maxAge: 7d}\n"),
                "rules[0].environments[1].name",
                11,
                "environment `staging` is constrained twice in this rule, already by environments[0]",
            ),
            (
                constrained("      - {name: production}\n"),
                "rules[0].environments[0]",
                10,
                "environment `production` adds no constraint",
            ),
            (
                constrained("      - {name: production, refs: []}\n"),
                "rules[0].environments[0].refs",
                10,
                "must not be empty; leave it out for the default (the rule's refs)",
            ),
            (
                constrained("      - {name: production, refs: [v1]}\n"),
                "rules[0].environments[0].refs[0]",
                10,
                "must be a full git ref",
            ),
            (
                constrained("      - {name: production, triggers: [Pull-Request]}\n"),
                "rules[0].environments[0].triggers[0]",
                10,
                "pull_request",
            ),
            (
                constrained("      - {name: production, maxAge: 1w}\n"),
                "rules[0].environments[0].maxAge",
                10,
                "maxAge",
            ),
            (
                constrained("      - {name: production, requireAttestations: [spdx]}\n    predicateTypes: [\"https://slsa.dev/provenance/v1\"]\n"),
                "rules[0].environments[0].requireAttestations",
                10,
                "cannot both be set",
            ),
            (
                "version: 1\nrules:\n  - name: r\n    images: [\"ghcr.io/acme/*\"]\n    owners: [{name: acme}]\n    environments: [{name: production, refs: [refs/heads/main]}]\n".to_owned(),
                "rules[0].environments[0].name",
                6,
                "the policy defines no `environments`",
            ),
        ]);
    }

    #[test]
    fn attestation_sources_and_the_github_block_are_checked() {
        let rule = |sources: &str| {
            format!("version: 1\nrules:\n  - name: r\n    images: [\"ghcr.io/acme/*\"]\n    owners: [{{name: acme}}]\n    attestationSources: {sources}\n")
        };
        let github = |block: &str| format!("version: 1\ngithub:\n  {block}\n");
        assert_issues(vec![
            (
                rule("[]"),
                "rules[0].attestationSources",
                6,
                "must not be empty",
            ),
            (
                rule("[registry, oci]"),
                "rules[0].attestationSources[1]",
                6,
                "unknown attestation source `oci`",
            ),
            (
                rule("[github, github]"),
                "rules[0].attestationSources[1]",
                6,
                "listed twice",
            ),
            (
                github("apiHost: https://api.github.com"),
                "github.apiHost",
                3,
                "without scheme or path",
            ),
            (
                github("apiHost: API.github.com"),
                "github.apiHost",
                3,
                "lower-case",
            ),
            (
                github("bundleHosts: [\"a.example/path\"]"),
                "github.bundleHosts[0]",
                3,
                "without scheme or path",
            ),
            (
                github("pathPrefix: api/v3"),
                "github.pathPrefix",
                3,
                "absolute path",
            ),
            (
                github("pathPrefix: /api/../v3"),
                "github.pathPrefix",
                3,
                "absolute path",
            ),
            (
                github("tokenFile: token"),
                "github.tokenFile",
                3,
                "absolute path",
            ),
            (
                github("{insecure: true, caFile: /ca.pem}"),
                "github.caFile",
                3,
                "choose one",
            ),
            (github("{token: x}"), "", 3, "github: unknown field `token`"),
        ]);
    }

    #[test]
    fn defaults_fill_what_the_rule_leaves_out() {
        let policy = Policy::from_yaml(
            "version: 1\nrules:\n  - {name: minimal, images: [\"ghcr.io/acme/*\"], owners: [{name: acme}]}\n",
        )
        .expect("policy parses");
        assert_eq!(policy.default_mode(), Mode::Enforce);
        assert_eq!(policy.unmatched_images(), UnmatchedAction::Deny);
        assert_eq!(policy.break_glass(), None);
        let rule = &policy.rules()[0];
        assert_eq!(rule.workflows(), None);
        assert!(rule.signer_workflows().is_empty());
        assert_eq!(patterns(rule.effective_refs()), DEFAULT_REFS);
        assert_eq!(
            rule.effective_triggers().to_string(),
            "push, release, workflow_dispatch, schedule"
        );
        assert!(rule.allow_self_signed());
        assert!(rule.build_config_digests().is_empty());
        assert_eq!(rule.max_age(), None);
        assert!(policy.revoked().is_empty());
        assert_eq!(rule.effective_runners(), ["github-hosted"]);
        assert_eq!(rule.effective_predicate_types(), [SLSA_PROVENANCE_V1]);
        assert_eq!(rule.effective_issuers(), [GITHUB_ACTIONS_ISSUER]);
    }

    #[test]
    fn serializes_the_effective_policy() {
        let policy = Policy::from_yaml(DESIGN_EXAMPLE).expect("policy parses");
        let json = serde_json::to_value(&policy).expect("serializes");
        assert_eq!(json["defaultMode"], "enforce");
        assert_eq!(
            json["environments"][1]["namespaceSelector"]["matchLabels"]["env"],
            "staging"
        );
        assert_eq!(json["rules"][0]["repositories"][0]["name"], "acme/api");
        assert_eq!(json["rules"][0]["repositories"][0]["id"], "804070735");
        assert_eq!(json["rules"][0]["triggers"]["oneOf"][2], "release");
        assert_eq!(json["breakGlass"]["maxDuration"], "8h");
        assert_eq!(json["registries"][0]["host"], "registry.internal:5000");

        let minimal = Policy::from_yaml(
            "version: 1\nrules:\n  - {name: m, images: [\"ghcr.io/a/*\"], owners: [{name: a}]}\n",
        )
        .expect("policy parses");
        let json = serde_json::to_value(&minimal).expect("serializes");
        assert_eq!(
            json["rules"][0]["refs"],
            serde_json::json!(["refs/heads/main"])
        );
        assert_eq!(
            json["rules"][0]["triggers"],
            serde_json::json!({"oneOf": ["push", "release", "workflow_dispatch", "schedule"]})
        );
        assert_eq!(json["revoked"], serde_json::Value::Null);
        assert_eq!(json["rules"][0]["workflows"], serde_json::Value::Null);
        assert_eq!(
            json["rules"][0]["owners"],
            serde_json::json!([{"name": "a"}])
        );
    }

    fn first_issue(source: &str) -> PolicyIssue {
        let error = Policy::from_yaml(source).expect_err("policy must be refused");
        error
            .issues()
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("no located issue in {error}"))
    }

    #[test]
    fn shape_errors_name_field_and_line() {
        let cases = [
            (
                "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/*\"]\n    repos: [acme/api]\n",
                "line 5 column 5: rules[0]: unknown field `repos`, expected one of `name`, `images`",
            ),
            ("version: 1\nbogus: true\n", "line 2 column 1: unknown field `bogus`, expected one of `version`"),
            ("defaultMode: enforce\n", "missing field `version`"),
            ("version: one\n", "line 1 column 10: version: invalid type: string \"one\", expected u64"),
            (
                "version: 1\nrules:\n  - name: acme\n    images: ghcr.io/acme/*\n",
                "line 4 column 13: rules[0].images: invalid type: string \"ghcr.io/acme/*\", expected a sequence",
            ),
            (
                "version: 1\nenvironments:\n  - name: prod\n    mode: enforce\n",
                "line 3 column 5: environments[0]: missing field `namespaceSelector`",
            ),
            (
                "version: 1\nregistries:\n  - {host: a.io, insecure: yes}\n",
                "line 3 column 28: registries[0].insecure: invalid type: string \"yes\", expected a boolean",
            ),
            ("version: 1\nrules: [\n", "line 3 column 1: did not find expected node content"),
        ];
        for (source, expected) in cases {
            let error = Policy::from_yaml(source).expect_err(source);
            assert!(
                matches!(error, PolicyError::Syntax(_)),
                "{source}: expected a syntax error, got {error:?}"
            );
            let text = error.to_string();
            assert!(
                text.contains(expected),
                "{source}\n  got: {text}\n  expected: {expected}"
            );
        }
    }

    const RULE: &str = "    images: [\"ghcr.io/acme/*\"]\n    owners: [{name: acme}]\n";

    #[test]
    fn semantic_errors_name_field_path_and_line() {
        let rule = |extra: &str| format!("version: 1\nrules:\n  - name: acme\n{RULE}{extra}");
        let cases: Vec<(String, &str, usize, &str)> = vec![
            ("version: 2\n".into(), "version", 1, "unsupported version 2"),
            ("version: 1\ndefaultMode: block\n".into(), "defaultMode", 2, "unknown mode `block`, expected one of observe, warn, enforce"),
            ("version: 1\nunmatchedImages: maybe\n".into(), "unmatchedImages", 2, "unknown action `maybe`"),
            (
                "version: 1\nenvironments:\n  - name: prod\n    namespaceSelector: {}\n    mode: strict\n".into(),
                "environments[0].mode", 5, "unknown mode `strict`",
            ),
            (
                "version: 1\nenvironments:\n  - name: prod\n    namespaceSelector:\n      matchExpressions: [{key: env, operator: Equals, values: [a]}]\n    mode: warn\n".into(),
                "environments[0].namespaceSelector.matchExpressions[0].operator", 5, "unknown operator `Equals`",
            ),
            (
                "version: 1\nenvironments:\n  - name: prod\n    namespaceSelector:\n      matchExpressions: [{key: env, operator: In}]\n    mode: warn\n".into(),
                "environments[0].namespaceSelector.matchExpressions[0].values", 5, "operator \"In\" needs at least one value",
            ),
            (
                "version: 1\nenvironments:\n  - {name: a, namespaceSelector: {}, mode: warn}\n  - {name: a, namespaceSelector: {}, mode: warn}\n".into(),
                "environments[1].name", 4, "duplicate environment name `a`",
            ),
            ("version: 1\nexemptImages: [\"registry.k8s.io/[\"]\n".into(), "exemptImages[0]", 2, "invalid glob"),
            ("version: 1\nexemptImages: [\"nginx\"]\n".into(), "exemptImages[0]", 2, "does not start with a registry host"),
            ("version: 1\nexemptImages: [\"ghcr.io/acme/api:latest\"]\n".into(), "exemptImages[0]", 2, "without a tag"),
            ("version: 1\nexemptImages: [\"ghcr.io/acme/api@sha256:abc\"]\n".into(), "exemptImages[0]", 2, "without a digest"),
            ("version: 1\nexemptImages: [\"ghcr.io/acme**\"]\n".into(), "exemptImages[0]", 2, "`**` must be a whole path segment"),
            ("version: 1\nrules:\n  - name: \"\"\n".to_string() + RULE, "rules[0].name", 3, "rule name must not be empty"),
            (
                format!("version: 1\nrules:\n  - name: acme\n{RULE}  - name: acme\n{RULE}"),
                "rules[1].name", 6, "duplicate rule name `acme`, already used by rules[0]",
            ),
            (
                "version: 1\nrules:\n  - name: everyone\n    images: [\"ghcr.io/**\"]\n".into(),
                "rules[0]", 3, "names neither `repositories` nor `owners`",
            ),
            (
                "version: 1\nrules:\n  - name: acme\n    images: []\n    owners: [{name: acme}]\n".into(),
                "rules[0].images", 4, "must list at least one image glob",
            ),
            (
                "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/*\"]\n    repositories: [{name: acme-api}]\n".into(),
                "rules[0].repositories[0].name", 5, "repository `acme-api` must be written owner/repo",
            ),
            (
                "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/*\"]\n    repositories: [{name: acme/*}]\n".into(),
                "rules[0].repositories[0].name", 5, "names are exact",
            ),
            (
                "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/*\"]\n    repositories:\n      - name: acme/api\n        id: R_kgDOL\n".into(),
                "rules[0].repositories[0].id", 7, "repository id `R_kgDOL` must be the decimal numeric ID (see `gh api repos/acme/api --jq .id`)",
            ),
            (
                "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/*\"]\n    owners: [{name: acme, id: \"-1\"}]\n".into(),
                "rules[0].owners[0].id", 5, "owner id `-1` must be the decimal numeric ID",
            ),
            (
                "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/*\"]\n    owners: [{name: \"acme/api\"}]\n".into(),
                "rules[0].owners[0].name", 5, "owner `acme/api` is not a GitHub user or organisation name",
            ),
            (rule("    workflows: [release.yml]\n"), "rules[0].workflows[0]", 6, "must be a path starting with .github/workflows/"),
            (rule("    workflows: [\".github/workflows/a.yml@refs/heads/main\"]\n"), "rules[0].workflows[0]", 6, "without @ref"),
            (rule("    signerWorkflows: [\"github/attest.yml\"]\n"), "rules[0].signerWorkflows[0]", 6, "must be written owner/repo/.github/workflows/FILE"),
            (rule("    refs: [main, \"refs/tags/v*\"]\n"), "rules[0].refs[0]", 6, "ref `main` must be a full git ref such as refs/heads/main"),
            (rule("    refs:\n      - refs/heads/main\n      - \"refs/tags/[v\"\n"), "rules[0].refs[1]", 8, "invalid glob"),
            (rule("    refs: []\n"), "rules[0].refs", 6, "must not be empty; leave it out for the default (refs/heads/main)"),
            (rule("    triggers: [Push]\n"), "rules[0].triggers[0]", 6, "trigger `Push` is not a GitHub Actions event name"),
            (rule("    runners: [ubuntu-latest]\n"), "rules[0].runners[0]", 6, "unknown runner environment `ubuntu-latest`"),
            (rule("    instances: []\n"), "rules[0].instances", 6, "instances is empty: no bundle could be accepted"),
            (rule("    instances: [github, \"public good\"]\n"), "rules[0].instances[1]", 6, "instance `public good` is not a trusted root's name"),
            (rule("    issuers: [\"http://issuer.example\"]\n"), "rules[0].issuers[0]", 6, "must be an https:// URL"),
            ("version: 1\nbreakGlass:\n  maxDuration: 8 hours\n".into(), "breakGlass.maxDuration", 3, "invalid duration `8 hours`"),
            ("version: 1\nbreakGlass:\n  maxDuration: 0m\n".into(), "breakGlass.maxDuration", 3, "must be positive"),
            ("version: 1\nbreakGlass:\n  maxDuration: 30d\n".into(), "breakGlass.maxDuration", 3, "invalid duration"),
            ("version: 1\nbreakGlass:\n  maxDuration: 200h\n".into(), "breakGlass.maxDuration", 3, "longer than the maximum of 7 days"),
            ("version: 1\nregistries:\n  - {host: \"https://registry.io\"}\n".into(), "registries[0].host", 3, "without scheme or path"),
            ("version: 1\nregistries:\n  - {host: \"registry.io:99999\"}\n".into(), "registries[0].host", 3, "optional :port"),
            (
                "version: 1\nregistries:\n  - {host: \"r.io\", insecure: true, caFile: /ca.pem}\n".into(),
                "registries[0].caFile", 3, "choose one",
            ),
            (
                "version: 1\nregistries:\n  - {host: r.io}\n  - {host: r.io}\n".into(),
                "registries[1].host", 4, "already configured at registries[0]",
            ),
        ];
        assert_issues(cases);
    }

    /// Each source's first problem has this path, line and message fragment.
    fn assert_issues(cases: Vec<(String, &str, usize, &str)>) {
        for (source, path, line, fragment) in cases {
            let issue = first_issue(&source);
            assert_eq!(issue.path, path, "{source}\n  got: {issue}");
            assert_eq!(
                issue.location.map(|location| location.line),
                Some(line),
                "{source}\n  got: {issue}"
            );
            assert!(
                issue.message.contains(fragment),
                "{source}\n  got: {issue}\n  expected: {fragment}"
            );
        }
    }

    #[test]
    fn content_pins_ages_and_revocations_are_checked_at_load() {
        let rule = |extra: &str| format!("version: 1\nrules:\n  - name: acme\n{RULE}{extra}");
        let revoked = |block: &str| format!("version: 1\nrevoked:\n{block}");
        let sha1 = "7d2f0a4c9e1b5a3f8c6d4e2b0a9f7e5d3c1b8a6f";
        let cases: Vec<(String, &str, usize, &str)> = vec![
            (rule("    buildConfigDigests: [abc123]\n"), "rules[0].buildConfigDigests[0]", 6, "build config digest `abc123` must be a full commit hash: 40 (SHA-1) or 64 (SHA-256) hex digits"),
            (rule(&format!("    buildConfigDigests: [\"sha1:{sha1}\"]\n")), "rules[0].buildConfigDigests[0]", 6, "must be a full commit hash"),
            (rule("    buildConfigDigests: []\n"), "rules[0].buildConfigDigests", 6, "must not be empty; leave it out for the default (any Build Config Digest)"),
            (rule("    maxAge: 3 months\n"), "rules[0].maxAge", 6, "maxAge: invalid duration `3 months`"),
            (rule("    maxAge: 4000d\n"), "rules[0].maxAge", 6, "longer than the maximum of 3650 days"),
            (revoked("  commits: [main]\n"), "revoked.commits[0]", 3, "revoked commit `main` must be a full commit hash"),
            (revoked("  signerDigests: [\"xyz\"]\n"), "revoked.signerDigests[0]", 3, "revoked signer digest `xyz`"),
            (revoked("  runs: [\"https://github.com/acme/api/actions/workflows/1\"]\n"), "revoked.runs[0]", 3, "must be a run ID or a run URL https://github.com/OWNER/REPO/actions/runs/ID"),
            (revoked("  runs: [\"run-12\"]\n"), "revoked.runs[0]", 3, "must be a run ID"),
        ];
        assert_issues(cases);

        let policy = Policy::from_yaml(&format!(
            "{}    maxAge: 90d\n    allowSelfSigned: true\n    signerWorkflows: [\"acme/builder/.github/workflows/build.yml@{sha1}\"]\n    buildConfigDigests: [\"{}\"]\nrevoked:\n  commits: [\"{}\"]\n  runs: [\"https://github.com/acme/api/actions/runs/42/attempts/3\", 43]\n",
            rule(""),
            sha1.to_uppercase(),
            sha1.to_uppercase()
        ))
        .expect("policy parses");
        let rule = &policy.rules()[0];
        assert_eq!(
            rule.max_age().map(|age| age.to_string()).as_deref(),
            Some("90d")
        );
        assert!(rule.allow_self_signed());
        assert_eq!(rule.build_config_digests(), [sha1]);
        assert_eq!(policy.revoked().commits, [sha1]);
        let runs: Vec<String> = policy
            .revoked()
            .runs
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(runs, ["https://github.com/acme/api/actions/runs/42", "43"]);
        let json = serde_json::to_value(&policy).expect("serializes");
        assert_eq!(json["revoked"]["runs"][1], "43");
        assert_eq!(json["rules"][0]["maxAge"], "90d");
        assert_eq!(json["rules"][0]["allowSelfSigned"], true);
        assert_eq!(json["rules"][0]["revoked"], serde_json::Value::Null);
    }

    #[test]
    fn reports_every_semantic_error_at_once() {
        let source = "\
version: 1
defaultMode: strict
rules:
  - name: acme
    images: [\"ghcr.io/acme/*\"]
    repositories: [{name: acme/api, id: abc}]
    refs: [main]
  - name: acme
    images: [\"ghcr.io/acme/*\"]
    owners: [{name: acme}]
    workflows: [release.yml]
";
        let error = Policy::from_yaml(source).expect_err("invalid");
        let summary: Vec<String> = error
            .issues()
            .iter()
            .map(|issue| {
                format!(
                    "{}@{}",
                    issue.path,
                    issue.location.map_or(0, |location| location.line)
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "defaultMode@2",
                "rules[0].repositories[0].id@6",
                "rules[0].refs[0]@7",
                "rules[1].name@8",
                "rules[1].workflows[0]@11",
            ]
        );
        let text = error.to_string();
        assert!(
            text.starts_with(
                "5 problems in policy:\n  line 2 column 14: defaultMode: unknown mode `strict`"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  line 7 column 12: rules[0].refs[0]: ref `main` must be a full git ref"
            ),
            "{text}"
        );
    }

    #[test]
    fn single_semantic_error_reads_as_one_line() {
        let error =
            Policy::from_yaml("version: 1\n\nunmatchedImages: perhaps\n").expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "line 3 column 18: unmatchedImages: unknown action `perhaps`, expected deny or allow"
        );
    }

    #[test]
    fn bounds_the_input() {
        let huge = format!("version: 1\n#{}\n", "x".repeat(MAX_POLICY_BYTES));
        let error = Policy::from_yaml(&huge).expect_err("too large");
        assert!(matches!(error, PolicyError::TooLarge { .. }));
        assert!(
            error
                .to_string()
                .contains("more than the limit of 1048576 bytes"),
            "{error}"
        );

        let mut many = String::from("version: 1\nrules:\n");
        for index in 0..=MAX_RULES {
            many.push_str(&format!(
                "  - {{name: r{index}, images: [\"ghcr.io/a/*\"], owners: [{{name: a}}]}}\n"
            ));
        }
        let error = Policy::from_yaml(&many).expect_err("too many rules");
        assert_eq!(
            error.to_string(),
            "policy has 1001 rules, more than the limit of 1000"
        );
    }

    /// "Billion laughs": nine levels of aliases, each naming the one below nine times, would
    /// expand to 9^9 strings. Neither the duplicate-key walk nor the reader expands them: the
    /// policy is refused at its first wrong value, at once (a hang here is the failure).
    #[test]
    fn an_alias_bomb_is_refused_unexpanded() {
        let mut levels = vec!["&x0 [lol]".to_owned()];
        for level in 1..=9 {
            let below = vec![format!("*x{}", level - 1); 9].join(", ");
            levels.push(format!("&x{level} [{below}]"));
        }
        let source = format!("version: 1\nexemptImages: [{}]\n", levels.join(", "));
        let error = Policy::from_yaml(&source).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "line 2 column 16: exemptImages[0]: invalid type: sequence, expected a string"
        );
    }

    #[test]
    fn caps_the_number_of_reported_problems() {
        let mut source = String::from("version: 1\nexemptImages:\n");
        for _ in 0..150 {
            source.push_str("  - nginx\n");
        }
        let error = Policy::from_yaml(&source).expect_err("invalid");
        let PolicyError::Invalid { issues, omitted } = &error else {
            panic!("expected invalid, got {error:?}");
        };
        assert_eq!((issues.len(), *omitted), (MAX_REPORTED_ISSUES, 50));
        assert_eq!(issues[99].location.map(|location| location.line), Some(102));
        assert!(error.to_string().ends_with("... and 50 more"));
    }

    #[test]
    fn accepts_unquoted_ids_as_text() {
        let policy = Policy::from_yaml(
            "version: 1\nrules:\n  - {name: a, images: [\"ghcr.io/a/*\"], repositories: [{name: a/b, id: 804070735}]}\n",
        )
        .expect("policy parses");
        assert_eq!(policy.rules()[0].repositories()[0].id(), Some("804070735"));
    }

    fn registries_policy(hosts: &[&str]) -> String {
        let entries: String = hosts
            .iter()
            .map(|host| format!("  - {{host: \"{host}\"}}\n"))
            .collect();
        format!("version: 1\nregistries:\n{entries}")
    }

    #[test]
    fn registry_hosts_must_be_canonical() {
        for good in [
            "registry.io",
            "registry.internal:5000",
            "localhost:5000",
            "[::1]:5000",
            "[fd00::1]",
            "10.0.0.1:8443",
            "docker.io",
        ] {
            let policy = Policy::from_yaml(&registries_policy(&[good])).expect(good);
            assert_eq!(policy.registries()[0].host, good);
        }
        for (bad, fragment) in [
            ("", "without scheme or path (host name is empty"),
            ("https://r.io", "without scheme or path"),
            ("r.io/path", "without scheme or path"),
            ("r.io:", "optional :port"),
            ("r.io:0", "leading zeros"),
            ("r.io:65536", "between 1 and 65535"),
            ("-r.io", "inner dashes"),
            ("r..io", "separated by single dots"),
            ("[::1", "no closing ']'"),
            ("[zz]:1", "hex digits"),
            ("registry", "Docker Hub namespace"),
            ("R.io", "is written `r.io` in image names"),
            ("r.io:443", "is written `r.io` in image names"),
            ("r.io:05000", "leading zeros"),
            ("10.0.0.1:443", "is written `10.0.0.1`"),
            ("[0::1]:5000", "is written `[::1]:5000`"),
            ("registry-1.docker.io", "is written `docker.io`"),
            ("index.docker.io", "is written `docker.io`"),
        ] {
            let issue = first_issue(&registries_policy(&[bad]));
            assert_eq!(issue.path, "registries[0].host", "{bad}: {issue}");
            assert!(issue.message.contains(fragment), "{bad}: {issue}");
        }
    }

    /// A policy with `pattern` as an exemption (`exempt`) or as a rule's only image pattern.
    fn pattern_policy(pattern: &str, exempt: bool) -> String {
        if exempt {
            format!("version: 1\nexemptImages: [\"{pattern}\"]\n")
        } else {
            format!(
                "version: 1\nrules:\n  - name: r\n    images: [\"{pattern}\"]\n    owners: [{{name: acme}}]\n"
            )
        }
    }

    #[test]
    fn image_patterns_must_spell_hosts_canonically() {
        // pattern, fragment of the problem: refused alike in rules and exemptions.
        let refused = [
            ("LOCALHOST:5000/acme/*", "write `localhost:5000/acme/*`"),
            ("localhost:05000/acme/*", "without leading zeros"),
            ("localhost:0/acme/*", "without leading zeros"),
            ("localhost:/acme/*", "one or more digits"),
            ("GHCR.IO/acme/**", "write `ghcr.io/acme/**`"),
            ("ghcr.io:443/acme/**", "write `ghcr.io/acme/**`"),
            ("registry-1.docker.io/acme/*", "write `docker.io/acme/*`"),
            (
                "index.docker.io/library/nginx",
                "write `docker.io/library/nginx`",
            ),
            ("docker.io/nginx", "write `docker.io/library/nginx`"),
            ("docker.io/*", "write `docker.io/library/*`"),
            ("[0:0::1]:5000/acme/*", "write `[::1]:5000/acme/*`"),
            ("[::1/acme/*", "no closing ']'"),
        ];
        for exempt in [true, false] {
            let field = if exempt {
                "exemptImages[0]"
            } else {
                "rules[0].images[0]"
            };
            for (pattern, fragment) in refused {
                let issue = first_issue(&pattern_policy(pattern, exempt));
                assert_eq!(issue.path, field, "{pattern}: {issue}");
                assert!(issue.location.is_some(), "{pattern}: {issue}");
                assert!(issue.message.contains(fragment), "{pattern}: {issue}");
            }
            for pattern in [
                "localhost:5000/acme/*",
                "[::1]:5000/acme/*",
                "docker.io/library/*",
                "docker.io/**",
            ] {
                Policy::from_yaml(&pattern_policy(pattern, exempt)).expect(pattern);
            }
        }
    }

    #[test]
    fn rules_refuse_host_globs_and_exemptions_keep_them() {
        for pattern in [
            "*/acme/**",
            "**/acme/api",
            "ghcr.*/acme/*",
            "{ghcr.io,quay.io}/acme/*",
            "?hcr.io/acme/*",
        ] {
            let issue = first_issue(&pattern_policy(pattern, false));
            assert_eq!(issue.path, "rules[0].images[0]", "{pattern}: {issue}");
            assert_eq!(
                issue.location.map(|location| location.line),
                Some(4),
                "{issue}"
            );
            assert!(
                issue
                    .message
                    .contains("the registry host must be written out, not a glob"),
                "{pattern}: {issue}"
            );
            let policy = Policy::from_yaml(&pattern_policy(pattern, true)).expect(pattern);
            assert_eq!(patterns(policy.exempt_images()), [pattern]);
        }
        let issue = first_issue(&pattern_policy("*.INTERNAL/**", true));
        assert!(issue.message.contains("matched in lower case"), "{issue}");
    }

    /// `**` alone (policy-controller's `glob: "**"`) is every image, workflow or ref; a host
    /// glob next to a written path stays refused in rules.
    #[test]
    fn double_star_alone_matches_everything() {
        for exempt in [true, false] {
            let policy = Policy::from_yaml(&pattern_policy("**", exempt)).expect("`**` loads");
            let globs = if exempt {
                policy.exempt_images()
            } else {
                policy.rules()[0].images()
            };
            let list = GlobList::new(globs.to_vec()).expect("compiles");
            for name in [
                "docker.io/library/nginx",
                "ghcr.io/acme/team/api",
                "localhost:5000/a",
                "[::1]:5000/acme/api",
            ] {
                assert!(list.is_match(name), "`**` matches {name}");
            }
        }
        for (refused, exempt_too) in [
            ("*/**", false),
            ("**/**", false),
            ("**/acme/api", false),
            ("*.io/**", false),
            ("** ", true),
            ("***", true),
            ("/**", true),
        ] {
            let issue = first_issue(&pattern_policy(refused, false));
            assert_eq!(issue.path, "rules[0].images[0]", "{refused}: {issue}");
            assert_eq!(
                Policy::from_yaml(&pattern_policy(refused, true)).is_err(),
                exempt_too,
                "{refused} as an exemption"
            );
        }
        let rule = |extra: &str| format!("version: 1\nrules:\n  - name: acme\n{RULE}{extra}");
        let policy = Policy::from_yaml(&rule("    workflows: [\"**\"]\n    refs: [\"**\"]\n"))
            .expect("`**` workflows and refs load");
        let acme = &policy.rules()[0];
        let workflows = GlobList::new(acme.workflows().expect("listed").to_vec()).unwrap();
        assert!(workflows.is_match(".github/workflows/release.yml"));
        let refs = GlobList::new(acme.effective_refs().to_vec()).unwrap();
        for git_ref in [
            "refs/heads/main",
            "refs/tags/v1.2.3",
            "refs/heads/feature/x",
        ] {
            assert!(refs.is_match(git_ref), "{git_ref}");
        }
        for (extra, path) in [
            ("    workflows: [\"*\"]\n", "rules[0].workflows[0]"),
            (
                "    workflows: [\"**/build.yml\"]\n",
                "rules[0].workflows[0]",
            ),
            ("    refs: [\"*\"]\n", "rules[0].refs[0]"),
            ("    refs: [\"**/main\"]\n", "rules[0].refs[0]"),
        ] {
            assert_eq!(first_issue(&rule(extra)).path, path, "{extra}");
        }
    }
}
