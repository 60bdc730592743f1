//! Deciding whether a verified attestation satisfies a rule.
//!
//! Every check runs, so a denial lists everything that is wrong at once. A claim the rule
//! needs but the certificate lacks is a failure: this is a security gate, doubt denies.
//! Time is an input (`now`, the review's clock), and so is the environment the image is judged
//! for (its [`Destination`]): a rule's constraints for that environment are checked beside the
//! rule's own, each in the place of the check it narrows. A decision is a function of its
//! arguments.

use super::config::{
    Destination, EnvironmentConstraints, RevokedRun, Rule, SignerWorkflow, TriggerFilter,
    SLSA_PROVENANCE_V1,
};
use super::duration::MaxAge;
use super::github::{
    parse_repository_uri, parse_run_uri, parse_workflow_uri, RepositoryUri, RunUri, WorkflowUri,
};
use super::glob::GlobList;
use crate::verify::claims::{CertificateClaims, Instance, PredicateClaims, VerifiedAttestation};
use serde::Serialize;

/// Which check a failure belongs to; stable names for metrics labels and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The certificate's OIDC issuer.
    Issuer,
    /// The in-toto predicate type.
    PredicateType,
    /// The source repository, by name and pinned IDs.
    SourceRepository,
    /// The calling workflow (Build Config URI).
    CallingWorkflow,
    /// The signing workflow (Build Signer URI).
    SignerWorkflow,
    /// The source ref.
    Ref,
    /// The event that started the run.
    Trigger,
    /// The runner environment.
    Runner,
    /// The SLSA predicate against the certificate.
    PredicateAgreement,
    /// The time since signing, against the rule's `maxAge`.
    Age,
    /// The policy's revoked commits, runs and signer digests.
    Revoked,
    /// The Sigstore instance (trusted root) the bundle verified under.
    Instance,
}

impl Check {
    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Issuer => "issuer",
            Check::PredicateType => "predicate_type",
            Check::SourceRepository => "source_repository",
            Check::CallingWorkflow => "calling_workflow",
            Check::SignerWorkflow => "signer_workflow",
            Check::Ref => "ref",
            Check::Trigger => "trigger",
            Check::Runner => "runner",
            Check::PredicateAgreement => "predicate_agreement",
            Check::Age => "age",
            Check::Revoked => "revoked",
            Check::Instance => "instance",
        }
    }
}

/// One failed check: what was found and what the rule allows, on one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The check that failed.
    pub check: Check,
    /// What was found and what the rule allows.
    pub message: String,
    /// The environment whose constraint failed (`rules[].environments`); `None` for the
    /// rule's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every check of a rule that an attestation failed. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleViolation {
    /// The rule's name.
    pub rule: String,
    /// The failed checks, in evaluation order.
    pub failures: Vec<Failure>,
}

impl std::fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (position, failure) in self.failures.iter().enumerate() {
            if position > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&failure.message)?;
        }
        Ok(())
    }
}

impl RuleViolation {
    /// The failure messages alone, one line each.
    pub fn reasons(&self) -> Vec<String> {
        self.failures
            .iter()
            .map(|failure| failure.message.clone())
            .collect()
    }
}

impl std::error::Error for RuleViolation {}

/// Checks an attestation's certificate claims and SLSA predicate against a rule, the rule's
/// constraints for `destination`, and the policy's revocations, as reviewed at `now`.
pub fn evaluate(
    rule: &Rule,
    destination: &Destination,
    attestation: &VerifiedAttestation,
    now: jiff::Timestamp,
) -> Result<(), RuleViolation> {
    let mut evaluation = Evaluation {
        rule,
        constraints: rule.constraints_for(destination).collect(),
        claims: &attestation.certificate,
        failures: Vec::new(),
    };
    evaluation.instance(&attestation.instance);
    evaluation.issuer();
    evaluation.predicate_type(&attestation.predicate_type);
    let source = evaluation.source_repository();
    let calling = evaluation.calling_workflow(source);
    evaluation.signer_workflow(calling);
    evaluation.source_ref();
    evaluation.trigger();
    evaluation.runner();
    evaluation.predicate(attestation, calling);
    evaluation.age(attestation.signed_at.as_deref(), now);
    evaluation.revocation();
    if evaluation.failures.is_empty() {
        Ok(())
    } else {
        Err(RuleViolation {
            rule: rule.name.clone(),
            failures: evaluation.failures,
        })
    }
}

struct Evaluation<'a> {
    rule: &'a Rule,
    /// The rule's constraints for the destination, checked beside its own values.
    constraints: Vec<&'a EnvironmentConstraints>,
    claims: &'a CertificateClaims,
    failures: Vec<Failure>,
}

/// Whose values a check holds a claim against: the rule's own, or one environment's.
type Bar<'a> = Option<&'a EnvironmentConstraints>;

impl<'a> Evaluation<'a> {
    fn fail(&mut self, check: Check, message: String) {
        self.fail_at(None, check, message);
    }

    fn fail_at(&mut self, bar: Bar<'_>, check: Check, message: String) {
        self.failures.push(Failure {
            check,
            message: one_line(message),
            environment: bar.map(|constraints| constraints.environment.clone()),
        });
    }

    /// `rule "name" allows <what>: <values>`, the second half of most messages.
    fn allows(&self, what: &str, values: impl std::fmt::Display) -> String {
        self.allows_at(None, what, values)
    }

    /// As [`Self::allows`], naming the environment when the values are one environment's:
    /// `environment "production" of rule "name" allows …`.
    fn allows_at(&self, bar: Bar<'_>, what: &str, values: impl std::fmt::Display) -> String {
        format!("{} allows {what}: {values}", self.whose(bar))
    }

    /// `rule "name"`, or `environment "production" of rule "name"`.
    fn whose(&self, bar: Bar<'_>) -> String {
        match bar {
            None => format!("rule {:?}", self.rule.name),
            Some(constraints) => format!(
                "environment {:?} of rule {:?}",
                constraints.environment, self.rule.name
            ),
        }
    }

    /// The rule's own value of a check (`None` where it sets none) and each environment's
    /// that sets one, with whose it is.
    fn bars<T: ?Sized>(
        &self,
        own: Option<&'a T>,
        of: impl Fn(&'a EnvironmentConstraints) -> Option<&'a T>,
    ) -> Vec<(Bar<'a>, &'a T)> {
        own.map(|own| (None, own))
            .into_iter()
            .chain(
                self.constraints
                    .iter()
                    .filter_map(|constraints| Some((Some(*constraints), of(constraints)?))),
            )
            .collect()
    }

    fn instance(&mut self, instance: &Instance) {
        if self.rule.instances.is_empty() {
            return;
        }
        let instance = instance.to_string();
        if !self.rule.instances.contains(&instance) {
            let allowed = self.allows("instances", self.rule.instances.join(", "));
            self.fail(
                Check::Instance,
                format!("bundle verified under the {instance} instance; {allowed}"),
            );
        }
    }

    fn issuer(&mut self) {
        let allowed = self.allows("issuers", self.rule.issuers.join(", "));
        match self.claims.issuer.as_deref() {
            Some(issuer) if self.rule.issuers.iter().any(|entry| entry == issuer) => {}
            Some(issuer) => self.fail(
                Check::Issuer,
                format!("issuer {issuer} is not allowed; {allowed}"),
            ),
            None => self.fail(
                Check::Issuer,
                format!("certificate has no issuer; {allowed}"),
            ),
        }
    }

    /// The rule's predicate types, and those its environments require besides.
    fn predicate_type(&mut self, predicate_type: &str) {
        let mut accepted: Vec<&str> = self
            .rule
            .predicate_types
            .iter()
            .map(String::as_str)
            .collect();
        for constraints in &self.constraints {
            for required in &constraints.require_attestations {
                if !accepted.contains(&required.as_str()) {
                    accepted.push(required);
                }
            }
        }
        if !accepted.contains(&predicate_type) {
            let allowed = self.allows("predicate types", accepted.join(", "));
            self.fail(
                Check::PredicateType,
                format!("predicate type {predicate_type} is not allowed; {allowed}"),
            );
        }
    }

    /// Checks trust in the source repository; returns it when well-formed, trusted or not,
    /// so that later checks can compare other claims with it.
    fn source_repository(&mut self) -> Option<RepositoryUri<'a>> {
        let trusted = describe_trust(self.rule);
        let Some(uri) = self.claims.source_repository_uri.as_deref() else {
            self.fail(
                Check::SourceRepository,
                format!(
                    "certificate has no source repository; rule {:?} trusts {trusted}",
                    self.rule.name
                ),
            );
            return None;
        };
        let Some(source) = parse_repository_uri(uri) else {
            self.fail(
                Check::SourceRepository,
                format!(
                    "source repository {uri} is not a GitHub repository URL https://github.com/OWNER/REPO; rule {:?} trusts {trusted}",
                    self.rule.name
                ),
            );
            return None;
        };
        // Every entry that names the source applies, and each pins what it pins: an owner's ID
        // pin still holds for a repository also listed without one, or a freed owner login
        // re-registered by someone else would bring that repository back in.
        let named = self.rule.repositories.iter().find(|entry| {
            entry.owner.eq_ignore_ascii_case(source.owner)
                && entry.repo.eq_ignore_ascii_case(source.repo)
        });
        let owner = self
            .rule
            .owners
            .iter()
            .find(|entry| entry.name.eq_ignore_ascii_case(source.owner));
        if named.is_none() && owner.is_none() {
            self.fail(
                Check::SourceRepository,
                format!(
                    "source repository {uri} is not trusted; rule {:?} trusts {trusted}",
                    self.rule.name
                ),
            );
        }
        if let Some(pinned) = named.and_then(|entry| entry.id.as_deref()) {
            self.pinned_id(
                self.claims.source_repository_identifier.as_deref(),
                pinned,
                ("repository", &format!("{}/{}", source.owner, source.repo)),
                "source repository ID",
                "deleted and re-created, or renamed and its name taken by someone else",
            );
        }
        if let Some(owner) = owner {
            let expected = format!("https://github.com/{}", source.owner);
            match self.claims.source_repository_owner_uri.as_deref() {
                Some(owner_uri) if owner_uri.eq_ignore_ascii_case(&expected) => {}
                Some(owner_uri) => self.fail(
                    Check::SourceRepository,
                    format!("source repository owner {owner_uri} does not match the owner of source repository {uri}"),
                ),
                None => self.fail(
                    Check::SourceRepository,
                    format!(
                        "certificate has no source repository owner URI; rule {:?} trusts owner {} by name and needs it",
                        self.rule.name, owner.name
                    ),
                ),
            }
            if let Some(pinned) = owner.id.as_deref() {
                self.pinned_id(
                    self.claims.source_repository_owner_identifier.as_deref(),
                    pinned,
                    ("owner", source.owner),
                    "source repository owner ID",
                    "deleted or renamed and its name taken by someone else",
                );
            }
        }
        Some(source)
    }

    fn pinned_id(
        &mut self,
        found: Option<&str>,
        pinned: &str,
        (kind, name): (&str, &str),
        claim: &str,
        cause: &str,
    ) {
        match found {
            Some(found) if found == pinned => {}
            Some(found) => self.fail(
                Check::SourceRepository,
                format!(
                    "{kind} ID differs: {kind} {name} has ID {found}, rule {:?} pins ID {pinned}; it may have been {cause}",
                    self.rule.name
                ),
            ),
            None => self.fail(
                Check::SourceRepository,
                format!("certificate has no {claim}; rule {:?} pins {kind} {name} to ID {pinned}", self.rule.name),
            ),
        }
    }

    /// Checks the calling workflow (Build Config URI); returns it when well-formed.
    fn calling_workflow(&mut self, source: Option<RepositoryUri<'a>>) -> Option<WorkflowUri<'a>> {
        let Some(uri) = self.claims.build_config_uri.as_deref() else {
            self.fail(
                Check::CallingWorkflow,
                "certificate has no build config URI (the calling workflow)".to_string(),
            );
            return None;
        };
        let Some(calling) = parse_workflow_uri(uri) else {
            self.fail(
                Check::CallingWorkflow,
                format!("calling workflow {uri} is not of the form https://github.com/OWNER/REPO/.github/workflows/FILE@REF"),
            );
            return None;
        };
        if let Some(source) = source {
            if !calling.repository.same_repository(&source) {
                self.fail(
                    Check::CallingWorkflow,
                    format!(
                        "calling workflow {uri} is not in source repository https://github.com/{}/{}",
                        source.owner, source.repo
                    ),
                );
            }
        }
        let bars = self.bars(self.rule.workflows.as_ref(), |constraints| {
            constraints.workflows.as_ref()
        });
        for (bar, workflows) in bars {
            if !workflows.is_match(calling.path) {
                let allowed = self.allows_at(bar, "workflows", join(workflows));
                self.fail_at(
                    bar,
                    Check::CallingWorkflow,
                    format!(
                        "calling workflow {} is not allowed; {allowed}",
                        calling.path
                    ),
                );
            }
        }
        self.build_config_digest(calling.path);
        if let Some(source_ref) = self.claims.source_repository_ref.as_deref() {
            if calling.git_ref != source_ref {
                self.fail(
                    Check::CallingWorkflow,
                    format!(
                        "calling workflow {} ran at {}, but the source ref is {source_ref}",
                        calling.path, calling.git_ref
                    ),
                );
            }
        }
        Some(calling)
    }

    /// The rule's content pin on the calling workflow: the Build Config Digest names the
    /// commit its file was read from.
    fn build_config_digest(&mut self, calling_path: &str) {
        let pinned = &self.rule.build_config_digests;
        if pinned.is_empty() {
            return;
        }
        let allowed = self.allows("build config digests", pinned.join(", "));
        match self.claims.build_config_digest.as_deref() {
            Some(digest)
                if pinned
                    .iter()
                    .any(|entry| entry.eq_ignore_ascii_case(digest)) => {}
            Some(digest) => self.fail(
                Check::CallingWorkflow,
                format!(
                    "calling workflow {calling_path} has build config digest {digest}; {allowed}"
                ),
            ),
            None => self.fail(
                Check::CallingWorkflow,
                format!("certificate has no build config digest; {allowed}"),
            ),
        }
    }

    fn signer_workflow(&mut self, calling: Option<WorkflowUri<'a>>) {
        let self_signed_allowed = self.rule.allow_self_signed();
        let listed = join(&self.rule.signer_workflows);
        let allowed = match (self.rule.signer_workflows.is_empty(), self_signed_allowed) {
            (true, _) => self.allows("signer workflows", "(the calling workflow only)"),
            (false, true) => self.allows(
                "signer workflows",
                format!("(the calling workflow), {listed}"),
            ),
            (false, false) => self.allows("signer workflows", listed),
        };
        let Some(signer) = self.claims.build_signer_uri.as_deref() else {
            self.fail(
                Check::SignerWorkflow,
                format!("certificate has no build signer URI; {allowed}"),
            );
            return;
        };
        if let Some(san) = self.claims.subject_alternative_name.as_deref() {
            if san != signer {
                self.fail(
                    Check::SignerWorkflow,
                    format!("certificate subject {san} differs from its build signer URI {signer}"),
                );
            }
        }
        let self_signed = Some(signer) == self.claims.build_config_uri.as_deref();
        if self_signed && self_signed_allowed {
            return;
        }
        let digest = self.claims.build_signer_digest.as_deref();
        let listed_signer = parse_workflow_uri(signer).is_some_and(|workflow| {
            self.rule
                .signer_workflows
                .iter()
                .any(|entry| entry.allows(&workflow, digest))
        });
        if listed_signer {
            return;
        }
        let calling = match (calling, self.claims.build_config_uri.as_deref()) {
            (Some(calling), _) => calling.path,
            (None, Some(uri)) => uri,
            (None, None) => "(unknown)",
        };
        let message = if self_signed {
            format!("signed by the calling workflow {calling} itself, not by a signer workflow; {allowed} (allowSelfSigned is false)")
        } else if self_signed_allowed {
            format!("signed by {signer}, not by the calling workflow {calling}; {allowed}")
        } else {
            format!("signed by {signer}, not by a listed signer workflow; {allowed}")
        };
        self.fail(Check::SignerWorkflow, message);
    }

    fn source_ref(&mut self) {
        let bars = self.bars(Some(&self.rule.refs), |constraints| {
            constraints.refs.as_ref()
        });
        for (bar, refs) in bars {
            self.source_ref_in(bar, refs);
        }
    }

    fn source_ref_in(&mut self, bar: Bar<'_>, refs: &GlobList) {
        let allowed = self.allows_at(bar, "refs", join(refs));
        match self.claims.source_repository_ref.as_deref() {
            Some(source_ref) if refs.is_match(source_ref) => {}
            Some(source_ref) => {
                let trigger = self
                    .claims
                    .build_trigger
                    .as_deref()
                    .map(|trigger| format!(" (trigger {trigger})"))
                    .unwrap_or_default();
                self.fail_at(
                    bar,
                    Check::Ref,
                    format!("built from {source_ref}{trigger}; {allowed}"),
                );
            }
            None => self.fail_at(
                bar,
                Check::Ref,
                format!("certificate has no source ref; {allowed}"),
            ),
        }
    }

    fn trigger(&mut self) {
        let bars = self.bars(Some(&self.rule.triggers), |constraints| {
            constraints.triggers.as_ref()
        });
        for (bar, triggers) in bars {
            self.trigger_in(bar, triggers);
        }
    }

    fn trigger_in(&mut self, bar: Bar<'_>, triggers: &TriggerFilter) {
        let allowed = self.allows_at(bar, "triggers", triggers);
        match self.claims.build_trigger.as_deref() {
            Some(trigger) if triggers.allows(trigger) => {}
            Some(trigger) => self.fail_at(
                bar,
                Check::Trigger,
                format!("trigger {trigger} is not allowed; {allowed}"),
            ),
            None => self.fail_at(
                bar,
                Check::Trigger,
                format!("certificate has no build trigger; {allowed}"),
            ),
        }
    }

    fn runner(&mut self) {
        let bars = self.bars(Some(self.rule.runners.as_slice()), |constraints| {
            constraints.runners.as_deref()
        });
        for (bar, runners) in bars {
            self.runner_in(bar, runners);
        }
    }

    fn runner_in(&mut self, bar: Bar<'_>, runners: &[String]) {
        let allowed = self.allows_at(bar, "runners", runners.join(", "));
        match self.claims.runner_environment.as_deref() {
            Some(runner) if runners.iter().any(|entry| entry == runner) => {}
            Some(runner) => self.fail_at(
                bar,
                Check::Runner,
                format!("runner {runner} is not allowed; {allowed}"),
            ),
            None => self.fail_at(
                bar,
                Check::Runner,
                format!("certificate has no runner environment; {allowed}"),
            ),
        }
    }

    /// The predicate is signed by the same workflow but written by a different component;
    /// where it and the certificate disagree, neither can be believed.
    fn predicate(&mut self, attestation: &VerifiedAttestation, calling: Option<WorkflowUri<'a>>) {
        let Some(predicate) = attestation.predicate.as_ref() else {
            if attestation.predicate_type == SLSA_PROVENANCE_V1 {
                self.fail(
                    Check::PredicateAgreement,
                    "the SLSA provenance predicate is missing or unreadable".to_string(),
                );
            }
            return;
        };
        let claims = self.claims;
        if let Some(source) = claims.source_repository_uri.as_deref() {
            self.required_agreement(
                (
                    "workflow repository",
                    predicate.workflow_repository.as_deref(),
                ),
                ("source repository", source),
                str::eq_ignore_ascii_case,
            );
        }
        if let Some(calling) = calling {
            self.required_agreement(
                ("workflow path", predicate.workflow_path.as_deref()),
                ("calling workflow", calling.path),
                |left, right| left == right,
            );
        }
        if let Some(source_ref) = claims.source_repository_ref.as_deref() {
            self.required_agreement(
                ("workflow ref", predicate.workflow_ref.as_deref()),
                ("source ref", source_ref),
                |left, right| left == right,
            );
        }
        self.optional_agreements(predicate, claims);
    }

    fn required_agreement(
        &mut self,
        (predicate_name, predicate_value): (&str, Option<&str>),
        (certificate_name, certificate_value): (&str, &str),
        same: impl Fn(&str, &str) -> bool,
    ) {
        match predicate_value {
            Some(value) if same(value, certificate_value) => {}
            Some(value) => self.fail(
                Check::PredicateAgreement,
                format!("predicate says {predicate_name} {value}, certificate says {certificate_name} {certificate_value}"),
            ),
            None => self.fail(
                Check::PredicateAgreement,
                format!("predicate has no {predicate_name}, certificate says {certificate_name} {certificate_value}"),
            ),
        }
    }

    fn optional_agreements(&mut self, predicate: &PredicateClaims, claims: &CertificateClaims) {
        // Commits may differ in hex case only; IDs and names compare exactly.
        let pairs = [
            (
                "event",
                &predicate.event_name,
                "trigger",
                &claims.build_trigger,
                false,
            ),
            (
                "repository ID",
                &predicate.repository_id,
                "source repository ID",
                &claims.source_repository_identifier,
                false,
            ),
            (
                "repository owner ID",
                &predicate.repository_owner_id,
                "owner ID",
                &claims.source_repository_owner_identifier,
                false,
            ),
            (
                "runner environment",
                &predicate.runner_environment,
                "runner environment",
                &claims.runner_environment,
                false,
            ),
            (
                "commit",
                &predicate.resolved_commit,
                "commit",
                &claims.source_repository_digest,
                true,
            ),
        ];
        for (predicate_name, predicate_value, certificate_name, certificate_value, ignore_case) in
            pairs
        {
            if let (Some(predicate_value), Some(certificate_value)) =
                (predicate_value, certificate_value)
            {
                let agree = if ignore_case {
                    predicate_value.eq_ignore_ascii_case(certificate_value)
                } else {
                    predicate_value == certificate_value
                };
                if !agree {
                    self.fail(
                        Check::PredicateAgreement,
                        format!(
                            "predicate says {predicate_name} {predicate_value}, certificate says {certificate_name} {certificate_value}"
                        ),
                    );
                }
            }
        }
    }

    /// The rule's `maxAge` and its environments', from the proven signing time (the log
    /// entry's or the RFC 3161 timestamp's, never a claim) to the review.
    fn age(&mut self, signed_at: Option<&str>, now: jiff::Timestamp) {
        let bars = self.bars(self.rule.max_age.as_ref(), |constraints| {
            constraints.max_age.as_ref()
        });
        for (bar, max_age) in bars {
            self.age_in(bar, *max_age, signed_at, now);
        }
    }

    fn age_in(
        &mut self,
        bar: Bar<'_>,
        max_age: MaxAge,
        signed_at: Option<&str>,
        now: jiff::Timestamp,
    ) {
        let allowed = format!(
            "{} allows builds signed at most {max_age} before review",
            self.whose(bar)
        );
        match signed_at.and_then(|text| text.parse::<jiff::Timestamp>().ok()) {
            Some(signed) if now.duration_since(signed) <= max_age.as_signed_duration() => {}
            Some(signed) => self.fail_at(
                bar,
                Check::Age,
                // Whole seconds: the review clock's nanoseconds only add noise to the reason.
                format!("signed at {signed:.0}, longer ago than maxAge {max_age} at review time {now:.0}; {allowed}"),
            ),
            None => self.fail_at(
                bar,
                Check::Age,
                format!("the attestation has no proven signing time; {allowed}"),
            ),
        }
    }

    /// One hex deny-list against its claim: `(what, list key, claim name)` word the reason.
    fn revoked_digest(
        &mut self,
        revoked: &[String],
        claim: Option<&str>,
        (what, key, claim_name): (&str, &str, &str),
    ) {
        if revoked.is_empty() {
            return;
        }
        match claim {
            Some(digest) if revoked.iter().any(|entry| entry.eq_ignore_ascii_case(digest)) => self
                .fail(
                    Check::Revoked,
                    format!("{what} {digest} is revoked by the policy (revoked.{key})"),
                ),
            Some(_) => {}
            None => self.fail(
                Check::Revoked,
                format!("certificate has no {claim_name}, so it cannot be told apart from the policy's revoked {key}"),
            ),
        }
    }

    fn revoked_run(&mut self, runs: &[RevokedRun]) {
        if runs.is_empty() {
            return;
        }
        let Some(uri) = self.claims.run_invocation_uri.as_deref() else {
            self.fail(
                Check::Revoked,
                "certificate has no run invocation URI, so it cannot be told apart from the policy's revoked runs".to_string(),
            );
            return;
        };
        let Some(run) = parse_run_uri(uri) else {
            self.fail(
                Check::Revoked,
                format!("run invocation URI {uri} is not a GitHub Actions run URL, so it cannot be told apart from the policy's revoked runs"),
            );
            return;
        };
        if let Some(entry) = runs.iter().find(|entry| entry.matches(&run)) {
            self.fail(
                Check::Revoked,
                format!("run {uri} is revoked by the policy (revoked.runs: {entry})"),
            );
        }
    }

    /// The policy's deny-lists. A deny-list that cannot be checked (the claim is missing)
    /// denies: nothing proves the build is not the revoked one.
    fn revocation(&mut self) {
        let (revoked, claims) = (&self.rule.revoked, self.claims);
        self.revoked_digest(
            &revoked.commits,
            claims.source_repository_digest.as_deref(),
            ("commit", "commits", "source commit"),
        );
        self.revoked_run(&revoked.runs);
        self.revoked_digest(
            &revoked.signer_digests,
            claims.build_signer_digest.as_deref(),
            ("signer digest", "signerDigests", "build signer digest"),
        );
    }
}

impl RevokedRun {
    /// Whether this entry is `run`: the same run ID, in the same repository when the entry
    /// names one. Every attempt of a run is covered.
    pub(crate) fn matches(&self, run: &RunUri<'_>) -> bool {
        self.run_id == run.run_id
            && self.repository.as_ref().is_none_or(|(owner, repo)| {
                owner.eq_ignore_ascii_case(run.repository.owner)
                    && repo.eq_ignore_ascii_case(run.repository.repo)
            })
    }
}

impl SignerWorkflow {
    /// Whether this entry covers a signing workflow. A pinned ref matches the URI's ref, or,
    /// when it is a full commit hash, the Build Signer Digest as well.
    pub(crate) fn allows(&self, signer: &WorkflowUri<'_>, signer_digest: Option<&str>) -> bool {
        let same_workflow = self.owner.eq_ignore_ascii_case(signer.repository.owner)
            && self.repo.eq_ignore_ascii_case(signer.repository.repo)
            && self.path == signer.path;
        let pinned_ok = match self.pinned_ref.as_deref() {
            None => true,
            Some(pinned) => {
                pinned == signer.git_ref
                    || (is_commit_hash(pinned)
                        && signer_digest.is_some_and(|digest| digest.eq_ignore_ascii_case(pinned)))
            }
        };
        same_workflow && pinned_ok
    }
}

/// Messages quote claims from the bundle; they reach kubectl output and logs, so they stay
/// one line of bounded length whatever a claim contains.
fn one_line(message: String) -> String {
    const MAX_CHARS: usize = 2000;
    if message.chars().count() <= MAX_CHARS && !message.contains(char::is_control) {
        return message;
    }
    let mut shown = String::with_capacity(MAX_CHARS + 3);
    for character in message.chars().take(MAX_CHARS) {
        if character.is_control() {
            shown.extend(character.escape_default());
        } else {
            shown.push(character);
        }
    }
    if message.chars().count() > MAX_CHARS {
        shown.push('…');
    }
    shown
}

fn is_commit_hash(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

fn join<T: std::fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `repositories: acme/api (id 1), acme/web; owners: acme (id 2)`.
fn describe_trust(rule: &Rule) -> String {
    let with_id = |name: String, id: Option<&str>| match id {
        Some(id) => format!("{name} (id {id})"),
        None => name,
    };
    let mut parts = Vec::new();
    if !rule.repositories.is_empty() {
        let names: Vec<String> = rule
            .repositories
            .iter()
            .map(|entry| with_id(entry.full_name(), entry.id()))
            .collect();
        parts.push(format!("repositories: {}", names.join(", ")));
    }
    if !rule.owners.is_empty() {
        let names: Vec<String> = rule
            .owners
            .iter()
            .map(|entry| with_id(entry.name.clone(), entry.id()))
            .collect();
        parts.push(format!("owners: {}", names.join(", ")));
    }
    if parts.is_empty() {
        "nobody".to_string()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::verify::claims::{Instance, Subject};

    /// [`super::evaluate`] for a namespace no environment selects: the rule alone.
    fn evaluate(
        rule: &Rule,
        attestation: &VerifiedAttestation,
        now: jiff::Timestamp,
    ) -> Result<(), RuleViolation> {
        super::evaluate(rule, &Destination::Unselected, attestation, now)
    }

    /// The review time of these tests: a week after the demo bundles were signed.
    fn now() -> jiff::Timestamp {
        "2024-06-01T00:00:00Z".parse().expect("valid timestamp")
    }

    const SIGNER: &str = "https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d";
    const SIGNER_COMMIT: &str = "09b495c3f12c7881b3cc17209a327792065c1a1d";

    /// The facts of `public-good/reusable-workflow-attestation.sigstore.json` (see
    /// tests/data/README.md): built by shared.yml, signed by a reusable workflow.
    fn attest_demo() -> VerifiedAttestation {
        VerifiedAttestation {
            instance: Instance::PublicGood,
            bundle_digest: "sha256:00".to_string(),
            signed_at: Some("2024-05-24T13:59:50Z".to_string()),
            predicate_type: SLSA_PROVENANCE_V1.to_string(),
            subjects: vec![Subject {
                name: "reusable-workflow-artifact".to_string(),
                digest: [(
                    "sha256".to_string(),
                    "49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25".to_string(),
                )]
                .into(),
            }],
            certificate: CertificateClaims {
                issuer: Some("https://token.actions.githubusercontent.com".to_string()),
                subject_alternative_name: Some(SIGNER.to_string()),
                build_signer_uri: Some(SIGNER.to_string()),
                build_signer_digest: Some(SIGNER_COMMIT.to_string()),
                runner_environment: Some("github-hosted".to_string()),
                source_repository_uri: Some("https://github.com/malancas/attest-demo".to_string()),
                source_repository_digest: Some("95baf27389e83e6a5c48f42e190d48d7abcea19e".to_string()),
                source_repository_ref: Some("refs/heads/main".to_string()),
                source_repository_identifier: Some("804070735".to_string()),
                source_repository_owner_uri: Some("https://github.com/malancas".to_string()),
                source_repository_owner_identifier: Some("16248153".to_string()),
                build_config_uri: Some(
                    "https://github.com/malancas/attest-demo/.github/workflows/shared.yml@refs/heads/main".to_string(),
                ),
                build_config_digest: Some("95baf27389e83e6a5c48f42e190d48d7abcea19e".to_string()),
                build_trigger: Some("workflow_dispatch".to_string()),
                run_invocation_uri: Some(
                    "https://github.com/malancas/attest-demo/actions/runs/9228858953/attempts/1".to_string(),
                ),
                source_repository_visibility: Some("public".to_string()),
            },
            predicate: Some(PredicateClaims {
                build_type: Some("https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1".to_string()),
                workflow_repository: Some("https://github.com/malancas/attest-demo".to_string()),
                workflow_path: Some(".github/workflows/shared.yml".to_string()),
                workflow_ref: Some("refs/heads/main".to_string()),
                event_name: Some("workflow_dispatch".to_string()),
                repository_id: Some("804070735".to_string()),
                repository_owner_id: Some("16248153".to_string()),
                runner_environment: None,
                resolved_commit: Some("95baf27389e83e6a5c48f42e190d48d7abcea19e".to_string()),
                builder_id: Some("https://github.com/actions/runner/github-hosted".to_string()),
                invocation_id: Some(
                    "https://github.com/malancas/attest-demo/actions/runs/9228858953/attempts/1".to_string(),
                ),
            }),
        }
    }

    /// The facts of `github/github_provenance_demo-0.0.12-py3-none-any-bundle.json`: an
    /// ordinary build, signed by the calling workflow itself.
    fn actions_demo() -> VerifiedAttestation {
        let workflow =
            "https://github.com/actions/attest-demo/.github/workflows/build-python.yml@refs/heads/main";
        let mut attestation = attest_demo();
        attestation.instance = Instance::Github;
        attestation.certificate = CertificateClaims {
            subject_alternative_name: Some(workflow.to_string()),
            build_signer_uri: Some(workflow.to_string()),
            build_signer_digest: Some("a6c23b9806c593664f68637c8f9d45dfcf98b2db".to_string()),
            source_repository_uri: Some("https://github.com/actions/attest-demo".to_string()),
            source_repository_digest: Some("a6c23b9806c593664f68637c8f9d45dfcf98b2db".to_string()),
            source_repository_identifier: Some("763287532".to_string()),
            source_repository_owner_uri: Some("https://github.com/actions".to_string()),
            source_repository_owner_identifier: Some("44036562".to_string()),
            build_config_uri: Some(workflow.to_string()),
            build_config_digest: Some("a6c23b9806c593664f68637c8f9d45dfcf98b2db".to_string()),
            run_invocation_uri: Some(
                "https://github.com/actions/attest-demo/actions/runs/8788389601/attempts/1"
                    .to_string(),
            ),
            source_repository_visibility: Some("private".to_string()),
            ..attestation.certificate
        };
        attestation.predicate = Some(PredicateClaims {
            workflow_repository: Some("https://github.com/actions/attest-demo".to_string()),
            workflow_path: Some(".github/workflows/build-python.yml".to_string()),
            repository_id: Some("763287532".to_string()),
            repository_owner_id: Some("44036562".to_string()),
            resolved_commit: Some("a6c23b9806c593664f68637c8f9d45dfcf98b2db".to_string()),
            ..attestation.predicate.unwrap_or_default()
        });
        attestation
    }

    /// A rule named `r` for images `ghcr.io/x/*`, with `body` as its remaining keys.
    fn rule(body: &str) -> Rule {
        let source =
            format!("version: 1\nrules:\n  - name: r\n    images: [\"ghcr.io/x/*\"]\n{body}");
        let policy = Policy::from_yaml(&source).unwrap_or_else(|error| panic!("{source}\n{error}"));
        policy.rules()[0].clone()
    }

    #[test]
    fn a_rule_pinned_to_an_instance_denies_bundles_verified_under_another() {
        let github_only = rule(&format!("{ACTIONS_DEMO}    instances: [github]\n"));
        let mut attestation = actions_demo();
        attestation.instance = Instance::Github;
        assert_eq!(evaluate(&github_only, &attestation, now()), Ok(()));
        attestation.instance = Instance::PublicGood;
        assert_single_failure(
            &github_only,
            &attestation,
            Check::Instance,
            &["bundle verified under the public-good instance; rule \"r\" allows instances: github"],
        );
        // No pin: any trusted root, a `--trusted-root` file's included.
        attestation.instance = Instance::Custom("corp".into());
        assert_eq!(evaluate(&rule(ACTIONS_DEMO), &attestation, now()), Ok(()));
        let corp = rule(&format!("{ACTIONS_DEMO}    instances: [corp, github]\n"));
        assert_eq!(evaluate(&corp, &attestation, now()), Ok(()));
    }

    const ATTEST_DEMO: &str =
        "    repositories: [{name: malancas/attest-demo, id: \"804070735\"}]\n";
    const ACTIONS_DEMO: &str =
        "    repositories: [{name: actions/attest-demo, id: \"763287532\"}]\n";

    fn failures(rule: &Rule, attestation: &VerifiedAttestation) -> Vec<(Check, String)> {
        match evaluate(rule, attestation, now()) {
            Ok(()) => Vec::new(),
            Err(violation) => {
                assert_eq!(violation.rule, rule.name());
                assert!(!violation.failures.is_empty());
                violation
                    .failures
                    .into_iter()
                    .map(|failure| (failure.check, failure.message))
                    .collect()
            }
        }
    }

    /// Asserts exactly one failure, of `check`, containing every fragment.
    fn assert_single_failure(
        rule: &Rule,
        attestation: &VerifiedAttestation,
        check: Check,
        fragments: &[&str],
    ) {
        let found = failures(rule, attestation);
        assert_eq!(
            found.len(),
            1,
            "expected one {check:?} failure, got {found:#?}"
        );
        assert_eq!(found[0].0, check, "{found:#?}");
        for fragment in fragments {
            assert!(
                found[0].1.contains(fragment),
                "missing {fragment:?} in {:?}",
                found[0].1
            );
        }
        assert!(!found[0].1.contains('\n'), "one line: {:?}", found[0].1);
    }

    #[test]
    fn ordinary_build_is_allowed() {
        assert_eq!(
            evaluate(&rule(ACTIONS_DEMO), &actions_demo(), now()),
            Ok(())
        );
        let example =
            Policy::from_yaml(include_str!("../../examples/policy.yaml")).expect("parses");
        let actions_rule = example.rule("actions-attest-demo").expect("rule exists");
        assert_eq!(evaluate(actions_rule, &actions_demo(), now()), Ok(()));
    }

    #[test]
    fn reusable_signer_is_denied_by_default() {
        assert_single_failure(
            &rule(ATTEST_DEMO),
            &attest_demo(),
            Check::SignerWorkflow,
            &[&format!(
                "signed by {SIGNER}, not by the calling workflow .github/workflows/shared.yml; rule \"r\" allows signer workflows: (the calling workflow only)"
            )],
        );
    }

    #[test]
    fn reusable_signer_is_allowed_when_listed() {
        let listed = "    signerWorkflows: [\"github/artifact-attestations-workflows/.github/workflows/attest.yml\"]\n";
        assert_eq!(
            evaluate(
                &rule(&format!("{ATTEST_DEMO}{listed}")),
                &attest_demo(),
                now()
            ),
            Ok(())
        );
        let example =
            Policy::from_yaml(include_str!("../../examples/policy.yaml")).expect("parses");
        let attest_rule = example.rule("attest-demo").expect("rule exists");
        assert_eq!(evaluate(attest_rule, &attest_demo(), now()), Ok(()));
    }

    #[test]
    fn reusable_signer_pins() {
        let pinned = |entry: &str| {
            rule(&format!(
                "{ATTEST_DEMO}    signerWorkflows: [\"{entry}\"]\n"
            ))
        };
        let workflow = "github/artifact-attestations-workflows/.github/workflows/attest.yml";
        assert_eq!(
            evaluate(
                &pinned(&format!("{workflow}@{SIGNER_COMMIT}")),
                &attest_demo(),
                now()
            ),
            Ok(())
        );
        assert_eq!(
            evaluate(
                &pinned("GitHub/Artifact-Attestations-Workflows/.github/workflows/attest.yml"),
                &attest_demo(),
                now()
            ),
            Ok(())
        );
        // A tag in the URI still matches a commit pin through the Build Signer Digest.
        let mut tagged = attest_demo();
        let tag_uri = SIGNER.replace(SIGNER_COMMIT, "refs/tags/v1");
        tagged.certificate.build_signer_uri = Some(tag_uri.clone());
        tagged.certificate.subject_alternative_name = Some(tag_uri);
        assert_eq!(
            evaluate(
                &pinned(&format!("{workflow}@{SIGNER_COMMIT}")),
                &tagged,
                now()
            ),
            Ok(())
        );
        assert_eq!(
            evaluate(&pinned(&format!("{workflow}@refs/tags/v1")), &tagged, now()),
            Ok(())
        );
        assert_single_failure(
            &pinned(&format!("{workflow}@refs/tags/v2")),
            &tagged,
            Check::SignerWorkflow,
            &[
                "not by a listed signer workflow",
                &format!("allows signer workflows: {workflow}@refs/tags/v2"),
            ],
        );
        assert_single_failure(
            &pinned("github/artifact-attestations-workflows/.github/workflows/other.yml"),
            &attest_demo(),
            Check::SignerWorkflow,
            &["signed by https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@"],
        );
    }

    fn pull_request_build() -> VerifiedAttestation {
        let mut attestation = actions_demo();
        let workflow = "https://github.com/actions/attest-demo/.github/workflows/build-python.yml@refs/pull/31/merge";
        let claims = &mut attestation.certificate;
        claims.source_repository_ref = Some("refs/pull/31/merge".to_string());
        claims.build_trigger = Some("pull_request".to_string());
        claims.build_config_uri = Some(workflow.to_string());
        claims.build_signer_uri = Some(workflow.to_string());
        claims.subject_alternative_name = Some(workflow.to_string());
        if let Some(predicate) = attestation.predicate.as_mut() {
            predicate.workflow_ref = Some("refs/pull/31/merge".to_string());
            predicate.event_name = Some("pull_request".to_string());
        }
        attestation
    }

    #[test]
    fn pull_request_build_is_denied_by_default() {
        let found = failures(&rule(ACTIONS_DEMO), &pull_request_build());
        assert_eq!(
            found,
            [
                (
                    Check::Ref,
                    "built from refs/pull/31/merge (trigger pull_request); rule \"r\" allows refs: refs/heads/main".to_string()
                ),
                (
                    Check::Trigger,
                    "trigger pull_request is not allowed; rule \"r\" allows triggers: push, release, workflow_dispatch, schedule".to_string()
                ),
            ]
        );
        let violation =
            evaluate(&rule(ACTIONS_DEMO), &pull_request_build(), now()).expect_err("denied");
        assert_eq!(
            violation.reasons(),
            found
                .iter()
                .map(|(_, message)| message.clone())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            violation.to_string(),
            "built from refs/pull/31/merge (trigger pull_request); rule \"r\" allows refs: refs/heads/main; \
             trigger pull_request is not allowed; rule \"r\" allows triggers: push, release, workflow_dispatch, schedule"
        );
    }

    #[test]
    fn explicit_triggers_and_refs() {
        let permissive = rule(&format!(
            "{ACTIONS_DEMO}    refs: [\"refs/pull/**\"]\n    triggers: [pull_request]\n"
        ));
        assert_eq!(evaluate(&permissive, &pull_request_build(), now()), Ok(()));
        let strict = rule(&format!("{ACTIONS_DEMO}    triggers: [push, release]\n"));
        assert_single_failure(
            &strict,
            &actions_demo(),
            Check::Trigger,
            &["trigger workflow_dispatch is not allowed; rule \"r\" allows triggers: push, release"],
        );
        let tags_only = rule(&format!("{ACTIONS_DEMO}    refs: [\"refs/tags/v*\"]\n"));
        assert_single_failure(
            &tags_only,
            &actions_demo(),
            Check::Ref,
            &["built from refs/heads/main (trigger workflow_dispatch); rule \"r\" allows refs: refs/tags/v*"],
        );
    }

    #[test]
    fn self_hosted_runner_is_denied_by_default() {
        let mut attestation = actions_demo();
        attestation.certificate.runner_environment = Some("self-hosted".to_string());
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &attestation,
            Check::Runner,
            &["runner self-hosted is not allowed; rule \"r\" allows runners: github-hosted"],
        );
        let allowing = rule(&format!(
            "{ACTIONS_DEMO}    runners: [github-hosted, self-hosted]\n"
        ));
        assert_eq!(evaluate(&allowing, &attestation, now()), Ok(()));
    }

    #[test]
    fn same_repository_name_with_another_id_is_denied() {
        let mut attestation = actions_demo();
        attestation.certificate.source_repository_identifier = Some("999999999".to_string());
        if let Some(predicate) = attestation.predicate.as_mut() {
            predicate.repository_id = Some("999999999".to_string());
        }
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &attestation,
            Check::SourceRepository,
            &[
                "repository ID differs: repository actions/attest-demo has ID 999999999, rule \"r\" pins ID 763287532",
                "deleted and re-created",
            ],
        );
        // The owner being trusted too does not override the repository's pin.
        let with_owner = rule(&format!("{ACTIONS_DEMO}    owners: [{{name: actions}}]\n"));
        assert_single_failure(
            &with_owner,
            &attestation,
            Check::SourceRepository,
            &["repository ID differs"],
        );
        // Without a pin, the name is enough.
        assert_eq!(
            evaluate(
                &rule("    repositories: [{name: actions/attest-demo}]\n"),
                &attestation,
                now()
            ),
            Ok(())
        );
    }

    #[test]
    fn pinned_id_needs_the_claim() {
        let mut attestation = actions_demo();
        attestation.certificate.source_repository_identifier = None;
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &attestation,
            Check::SourceRepository,
            &["certificate has no source repository ID; rule \"r\" pins repository actions/attest-demo to ID 763287532"],
        );
    }

    #[test]
    fn untrusted_repository_is_denied() {
        let trusted = rule("    repositories: [{name: acme/api, id: \"1\"}, {name: acme/web}]\n    owners: [{name: acme-labs, id: \"2\"}]\n");
        let found = failures(&trusted, &actions_demo());
        assert_eq!(
            found,
            [(
                Check::SourceRepository,
                "source repository https://github.com/actions/attest-demo is not trusted; rule \"r\" trusts repositories: acme/api (id 1), acme/web; owners: acme-labs (id 2)".to_string()
            )]
        );
    }

    #[test]
    fn repository_names_compare_case_insensitively() {
        let mut attestation = actions_demo();
        attestation.certificate.source_repository_uri =
            Some("https://github.com/Actions/Attest-Demo".to_string());
        assert_eq!(
            evaluate(
                &rule("    repositories: [{name: ACTIONS/attest-demo, id: \"763287532\"}]\n"),
                &attestation,
                now()
            ),
            Ok(())
        );
    }

    #[test]
    fn wrong_issuer_is_denied() {
        let mut attestation = actions_demo();
        attestation.certificate.issuer = Some("https://accounts.google.com".to_string());
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &attestation,
            Check::Issuer,
            &["issuer https://accounts.google.com is not allowed; rule \"r\" allows issuers: https://token.actions.githubusercontent.com"],
        );
        attestation.certificate.issuer = None;
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &attestation,
            Check::Issuer,
            &["certificate has no issuer"],
        );
    }

    #[test]
    fn other_predicate_type_is_denied() {
        let mut attestation = actions_demo();
        attestation.predicate_type = "https://spdx.dev/Document".to_string();
        attestation.predicate = None;
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &attestation,
            Check::PredicateType,
            &["predicate type https://spdx.dev/Document is not allowed; rule \"r\" allows predicate types: https://slsa.dev/provenance/v1"],
        );
    }

    #[test]
    fn predicate_must_agree_with_certificate() {
        type Edit = fn(&mut PredicateClaims);
        let cases: [(Edit, &str); 9] = [
            (
                |p| p.workflow_repository = Some("https://github.com/evil/attest-demo".into()),
                "predicate says workflow repository https://github.com/evil/attest-demo, certificate says source repository https://github.com/actions/attest-demo",
            ),
            (
                |p| p.workflow_path = Some(".github/workflows/other.yml".into()),
                "predicate says workflow path .github/workflows/other.yml, certificate says calling workflow .github/workflows/build-python.yml",
            ),
            (
                |p| p.workflow_ref = Some("refs/heads/dev".into()),
                "predicate says workflow ref refs/heads/dev, certificate says source ref refs/heads/main",
            ),
            (|p| p.workflow_ref = None, "predicate has no workflow ref, certificate says source ref refs/heads/main"),
            (|p| p.event_name = Some("push".into()), "predicate says event push, certificate says trigger workflow_dispatch"),
            (|p| p.repository_id = Some("1".into()), "predicate says repository ID 1, certificate says source repository ID 763287532"),
            (|p| p.repository_owner_id = Some("2".into()), "predicate says repository owner ID 2, certificate says owner ID 44036562"),
            (
                |p| p.runner_environment = Some("self-hosted".into()),
                "predicate says runner environment self-hosted, certificate says runner environment github-hosted",
            ),
            (
                |p| p.resolved_commit = Some("0000000000000000000000000000000000000000".into()),
                "predicate says commit 0000000000000000000000000000000000000000, certificate says commit a6c23b9806c593664f68637c8f9d45dfcf98b2db",
            ),
        ];
        for (edit, expected) in cases {
            let mut attestation = actions_demo();
            if let Some(predicate) = attestation.predicate.as_mut() {
                edit(predicate);
            }
            assert_single_failure(
                &rule(ACTIONS_DEMO),
                &attestation,
                Check::PredicateAgreement,
                &[expected],
            );
        }
        // Absent optional claims on either side are not a disagreement; hex case is not either.
        let mut attestation = actions_demo();
        if let Some(predicate) = attestation.predicate.as_mut() {
            predicate.event_name = None;
            predicate.resolved_commit = Some("A6C23B9806C593664F68637C8F9D45DFCF98B2DB".into());
        }
        assert_eq!(evaluate(&rule(ACTIONS_DEMO), &attestation, now()), Ok(()));
        let mut attestation = actions_demo();
        attestation.predicate = None;
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &attestation,
            Check::PredicateAgreement,
            &["the SLSA provenance predicate is missing or unreadable"],
        );
    }

    #[test]
    fn owner_trust_checks_owner_uri_and_id() {
        let by_owner = rule("    owners: [{name: actions, id: \"44036562\"}]\n");
        assert_eq!(evaluate(&by_owner, &actions_demo(), now()), Ok(()));

        let mut wrong_id = actions_demo();
        wrong_id.certificate.source_repository_owner_identifier = Some("1".to_string());
        if let Some(predicate) = wrong_id.predicate.as_mut() {
            predicate.repository_owner_id = Some("1".to_string());
        }
        assert_single_failure(
            &by_owner,
            &wrong_id,
            Check::SourceRepository,
            &["owner ID differs: owner actions has ID 1, rule \"r\" pins ID 44036562"],
        );

        let mut other_owner_uri = actions_demo();
        other_owner_uri.certificate.source_repository_owner_uri =
            Some("https://github.com/evil".to_string());
        assert_single_failure(
            &by_owner,
            &other_owner_uri,
            Check::SourceRepository,
            &["source repository owner https://github.com/evil does not match the owner of source repository https://github.com/actions/attest-demo"],
        );

        let mut no_owner_uri = actions_demo();
        no_owner_uri.certificate.source_repository_owner_uri = None;
        assert_single_failure(
            &by_owner,
            &no_owner_uri,
            Check::SourceRepository,
            &["certificate has no source repository owner URI"],
        );

        let mut no_owner_id = actions_demo();
        no_owner_id.certificate.source_repository_owner_identifier = None;
        assert_single_failure(
            &by_owner,
            &no_owner_id,
            Check::SourceRepository,
            &["certificate has no source repository owner ID; rule \"r\" pins owner actions to ID 44036562"],
        );
    }

    #[test]
    fn calling_workflow_checks() {
        let release_only = rule(&format!(
            "{ACTIONS_DEMO}    workflows: [.github/workflows/release.yml]\n"
        ));
        assert_single_failure(
            &release_only,
            &actions_demo(),
            Check::CallingWorkflow,
            &["calling workflow .github/workflows/build-python.yml is not allowed; rule \"r\" allows workflows: .github/workflows/release.yml"],
        );
        let by_glob = rule(&format!(
            "{ACTIONS_DEMO}    workflows: [\".github/workflows/build-*.yml\"]\n"
        ));
        assert_eq!(evaluate(&by_glob, &actions_demo(), now()), Ok(()));

        // A calling workflow from another repository, signing itself.
        let foreign =
            "https://github.com/evil/tools/.github/workflows/build-python.yml@refs/heads/main";
        let mut attestation = actions_demo();
        attestation.certificate.build_config_uri = Some(foreign.to_string());
        attestation.certificate.build_signer_uri = Some(foreign.to_string());
        attestation.certificate.subject_alternative_name = Some(foreign.to_string());
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &attestation,
            Check::CallingWorkflow,
            &[&format!("calling workflow {foreign} is not in source repository https://github.com/actions/attest-demo")],
        );

        let mut malformed = actions_demo();
        malformed.certificate.build_config_uri =
            Some("https://github.com/actions/attest-demo/build.sh".to_string());
        let found = failures(&rule(ACTIONS_DEMO), &malformed);
        let checks: Vec<Check> = found.iter().map(|(check, _)| *check).collect();
        assert_eq!(
            checks,
            [Check::CallingWorkflow, Check::SignerWorkflow],
            "{found:#?}"
        );
        assert!(found[0].1.contains(
            "is not of the form https://github.com/OWNER/REPO/.github/workflows/FILE@REF"
        ));
        assert!(found[1].1.contains(
            "not by the calling workflow https://github.com/actions/attest-demo/build.sh"
        ));
    }

    #[test]
    fn calling_workflow_ref_must_be_the_source_ref() {
        let mut attestation = actions_demo();
        attestation.certificate.source_repository_ref = Some("refs/tags/v1".to_string());
        if let Some(predicate) = attestation.predicate.as_mut() {
            predicate.workflow_ref = Some("refs/tags/v1".to_string());
        }
        assert_single_failure(
            &rule(&format!("{ACTIONS_DEMO}    refs: [\"refs/tags/v*\"]\n")),
            &attestation,
            Check::CallingWorkflow,
            &["calling workflow .github/workflows/build-python.yml ran at refs/heads/main, but the source ref is refs/tags/v1"],
        );
    }

    #[test]
    fn certificate_subject_must_be_the_signer() {
        let mut attestation = actions_demo();
        attestation.certificate.subject_alternative_name =
            Some("https://github.com/evil/x/.github/workflows/a.yml@refs/heads/main".to_string());
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &attestation,
            Check::SignerWorkflow,
            &["certificate subject https://github.com/evil/x/.github/workflows/a.yml@refs/heads/main differs from its build signer URI"],
        );
    }

    #[test]
    fn messages_stay_on_one_bounded_line() {
        let mut attestation = actions_demo();
        attestation.certificate.build_trigger = Some("push\nallowed: yes".to_string());
        attestation.certificate.runner_environment = Some("x".repeat(5000));
        let found = failures(
            &rule(&format!("{ACTIONS_DEMO}    triggers: [push]\n")),
            &attestation,
        );
        let trigger = found
            .iter()
            .find(|(check, _)| *check == Check::Trigger)
            .expect("trigger fails");
        assert!(
            trigger
                .1
                .starts_with("trigger push\\nallowed: yes is not allowed"),
            "{}",
            trigger.1
        );
        let runner = found
            .iter()
            .find(|(check, _)| *check == Check::Runner)
            .expect("runner fails");
        assert_eq!(runner.1.chars().count(), 2001);
        assert!(runner.1.ends_with('…'));
    }

    /// `actions_demo` with the owner ID `owner_id` in the certificate and the predicate.
    fn with_owner_id(owner_id: &str) -> VerifiedAttestation {
        let mut attestation = actions_demo();
        attestation.certificate.source_repository_owner_identifier = Some(owner_id.to_string());
        if let Some(predicate) = attestation.predicate.as_mut() {
            predicate.repository_owner_id = Some(owner_id.to_string());
        }
        attestation
    }

    #[test]
    fn every_pin_that_applies_holds() {
        // (repositories, owners, owner ID in the bundle, expected failure)
        let cases: [(&str, &str, &str, Option<&str>); 6] = [
            // An unpinned repository entry does not switch the owner's pin off.
            (
                "{name: actions/attest-demo}",
                "{name: actions, id: \"222\"}",
                "333",
                Some("owner ID differs: owner actions has ID 333, rule \"r\" pins ID 222"),
            ),
            (
                "{name: actions/attest-demo}",
                "{name: actions, id: \"222\"}",
                "222",
                None,
            ),
            // Both pins, from both entries.
            (
                "{name: actions/attest-demo, id: \"763287532\"}",
                "{name: actions, id: \"222\"}",
                "333",
                Some("owner ID differs"),
            ),
            (
                "{name: actions/attest-demo, id: \"763287532\"}",
                "{name: actions, id: \"222\"}",
                "222",
                None,
            ),
            // The repository's pin without an owner pin, and no pin at all.
            (
                "{name: actions/attest-demo, id: \"763287532\"}",
                "{name: actions}",
                "333",
                None,
            ),
            ("{name: actions/attest-demo}", "{name: other}", "333", None),
        ];
        for (repositories, owners, owner_id, expected) in cases {
            let trusted = rule(&format!(
                "    repositories: [{repositories}]\n    owners: [{owners}]\n"
            ));
            let attestation = with_owner_id(owner_id);
            match expected {
                None => assert_eq!(
                    evaluate(&trusted, &attestation, now()),
                    Ok(()),
                    "{repositories} {owners} {owner_id}"
                ),
                Some(fragment) => assert_single_failure(
                    &trusted,
                    &attestation,
                    Check::SourceRepository,
                    &[fragment],
                ),
            }
        }
    }

    /// `actions_demo` started by `trigger`, on the default branch.
    fn triggered_by(trigger: &str) -> VerifiedAttestation {
        let mut attestation = actions_demo();
        attestation.certificate.build_trigger = Some(trigger.to_string());
        if let Some(predicate) = attestation.predicate.as_mut() {
            predicate.event_name = Some(trigger.to_string());
        }
        attestation
    }

    #[test]
    fn default_triggers_are_an_allow_list() {
        for trigger in crate::policy::DEFAULT_TRIGGERS {
            assert_eq!(
                evaluate(&rule(ACTIONS_DEMO), &triggered_by(trigger), now()),
                Ok(()),
                "{trigger}"
            );
        }
        let refused = crate::policy::RISKY_TRIGGERS.into_iter().chain([
            "merge_group",
            "deployment",
            "some_future_event",
        ]);
        for trigger in refused {
            assert_single_failure(
                &rule(ACTIONS_DEMO),
                &triggered_by(trigger),
                Check::Trigger,
                &[&format!("trigger {trigger} is not allowed; rule \"r\" allows triggers: push, release, workflow_dispatch, schedule")],
            );
        }
        // Listing a trigger is the way to accept it.
        let listed = rule(&format!(
            "{ACTIONS_DEMO}    triggers: [push, workflow_run]\n"
        ));
        assert_eq!(
            evaluate(&listed, &triggered_by("workflow_run"), now()),
            Ok(())
        );
    }

    /// [`actions_demo`] built from the tag `refs/tags/v1.2.0` instead of main.
    fn tagged_build() -> VerifiedAttestation {
        let mut tagged = actions_demo();
        let workflow = "https://github.com/actions/attest-demo/.github/workflows/build-python.yml@refs/tags/v1.2.0";
        tagged.certificate.source_repository_ref = Some("refs/tags/v1.2.0".to_string());
        tagged.certificate.build_config_uri = Some(workflow.to_string());
        tagged.certificate.build_signer_uri = Some(workflow.to_string());
        tagged.certificate.subject_alternative_name = Some(workflow.to_string());
        if let Some(predicate) = tagged.predicate.as_mut() {
            predicate.workflow_ref = Some("refs/tags/v1.2.0".to_string());
        }
        tagged
    }

    #[test]
    fn tags_need_listing() {
        let tagged = tagged_build();
        assert_single_failure(
            &rule(ACTIONS_DEMO),
            &tagged,
            Check::Ref,
            &["built from refs/tags/v1.2.0 (trigger workflow_dispatch); rule \"r\" allows refs: refs/heads/main"],
        );
        let releases = rule(&format!(
            "{ACTIONS_DEMO}    refs: [refs/heads/main, \"refs/tags/v*\"]\n"
        ));
        assert_eq!(evaluate(&releases, &tagged, now()), Ok(()));
    }

    #[test]
    fn build_config_digests_pin_the_calling_workflow() {
        let commit = "a6c23b9806c593664f68637c8f9d45dfcf98b2db";
        let other = "1111111111111111111111111111111111111111";
        let pinned = |digests: &str| {
            rule(&format!(
                "{ACTIONS_DEMO}    buildConfigDigests: [{digests}]\n"
            ))
        };
        assert_eq!(evaluate(&pinned(commit), &actions_demo(), now()), Ok(()));
        assert_eq!(
            evaluate(
                &pinned(&format!("{other}, {}", commit.to_uppercase())),
                &actions_demo(),
                now()
            ),
            Ok(())
        );
        assert_single_failure(
            &pinned(other),
            &actions_demo(),
            Check::CallingWorkflow,
            &[&format!("calling workflow .github/workflows/build-python.yml has build config digest {commit}; rule \"r\" allows build config digests: {other}")],
        );
        let mut no_digest = actions_demo();
        no_digest.certificate.build_config_digest = None;
        assert_single_failure(
            &pinned(commit),
            &no_digest,
            Check::CallingWorkflow,
            &["certificate has no build config digest"],
        );
    }

    #[test]
    fn signer_workflows_require_a_listed_signer() {
        let listed = "    signerWorkflows: [\"github/artifact-attestations-workflows/.github/workflows/attest.yml\"]\n";
        // The calling workflow signing itself is no longer enough.
        assert_single_failure(
            &rule(&format!("{ACTIONS_DEMO}{listed}")),
            &actions_demo(),
            Check::SignerWorkflow,
            &["signed by the calling workflow .github/workflows/build-python.yml itself, not by a signer workflow; rule \"r\" allows signer workflows: github/artifact-attestations-workflows/.github/workflows/attest.yml (allowSelfSigned is false)"],
        );
        let lenient = rule(&format!(
            "{ACTIONS_DEMO}{listed}    allowSelfSigned: true\n"
        ));
        assert_eq!(evaluate(&lenient, &actions_demo(), now()), Ok(()));
        // The listed signer passes either way.
        assert_eq!(
            evaluate(
                &rule(&format!("{ATTEST_DEMO}{listed}")),
                &attest_demo(),
                now()
            ),
            Ok(())
        );
        let lenient_attest = rule(&format!("{ATTEST_DEMO}{listed}    allowSelfSigned: true\n"));
        assert_eq!(evaluate(&lenient_attest, &attest_demo(), now()), Ok(()));
    }

    #[test]
    fn max_age_counts_from_the_proven_signing_time() {
        // actions_demo was signed 2024-05-24T13:59:50Z; now() is 2024-06-01T00:00:00Z.
        let aged = |max_age: &str| rule(&format!("{ACTIONS_DEMO}    maxAge: {max_age}\n"));
        assert_eq!(evaluate(&aged("8d"), &actions_demo(), now()), Ok(()));
        assert_single_failure(
            &aged("7d"),
            &actions_demo(),
            Check::Age,
            &["signed at 2024-05-24T13:59:50Z, longer ago than maxAge 7d at review time 2024-06-01T00:00:00Z; rule \"r\" allows builds signed at most 7d before review"],
        );
        // The same rule, reviewed earlier, admits: the clock is an input.
        let earlier: jiff::Timestamp = "2024-05-30T00:00:00Z".parse().expect("timestamp");
        assert_eq!(evaluate(&aged("7d"), &actions_demo(), earlier), Ok(()));
        let mut unproven = actions_demo();
        unproven.signed_at = None;
        assert_single_failure(
            &aged("90d"),
            &unproven,
            Check::Age,
            &["the attestation has no proven signing time"],
        );
        // Without maxAge, age is no concern.
        assert_eq!(evaluate(&rule(ACTIONS_DEMO), &unproven, now()), Ok(()));
    }

    /// The actions-demo rule under a policy whose top-level `revoked` block is `revoked`.
    fn revoking(revoked: &str) -> Rule {
        let source = format!(
            "version: 1\nrules:\n  - name: r\n    images: [\"ghcr.io/x/*\"]\n{ACTIONS_DEMO}revoked:\n{revoked}"
        );
        let policy = Policy::from_yaml(&source).unwrap_or_else(|error| panic!("{source}\n{error}"));
        policy.rules()[0].clone()
    }

    #[test]
    fn revoked_builds_are_denied_by_every_rule() {
        let cases: [(&str, Option<&str>); 9] = [
            ("  commits: [A6C23B9806C593664F68637C8F9D45DFCF98B2DB]\n", Some("commit a6c23b9806c593664f68637c8f9d45dfcf98b2db is revoked by the policy (revoked.commits)")),
            ("  commits: [\"1111111111111111111111111111111111111111\"]\n", None),
            ("  runs: [\"8788389601\"]\n", Some("run https://github.com/actions/attest-demo/actions/runs/8788389601/attempts/1 is revoked by the policy (revoked.runs: 8788389601)")),
            ("  runs: [8788389601]\n", Some("is revoked by the policy (revoked.runs: 8788389601)")),
            ("  runs: [\"https://github.com/Actions/attest-demo/actions/runs/8788389601/attempts/2\"]\n", Some("(revoked.runs: https://github.com/Actions/attest-demo/actions/runs/8788389601)")),
            // The same run ID under another repository's URL is another run.
            ("  runs: [\"https://github.com/evil/attest-demo/actions/runs/8788389601\"]\n", None),
            ("  runs: [\"8788389602\"]\n", None),
            ("  signerDigests: [a6c23b9806c593664f68637c8f9d45dfcf98b2db]\n", Some("signer digest a6c23b9806c593664f68637c8f9d45dfcf98b2db is revoked by the policy (revoked.signerDigests)")),
            ("  signerDigests: [\"09b495c3f12c7881b3cc17209a327792065c1a1d\"]\n", None),
        ];
        for (revoked, expected) in cases {
            match expected {
                None => assert_eq!(
                    evaluate(&revoking(revoked), &actions_demo(), now()),
                    Ok(()),
                    "{revoked}"
                ),
                Some(fragment) => assert_single_failure(
                    &revoking(revoked),
                    &actions_demo(),
                    Check::Revoked,
                    &[fragment],
                ),
            }
        }
        // A claim a deny-list needs but the certificate lacks denies.
        let mut unknown = actions_demo();
        unknown.certificate.run_invocation_uri = None;
        assert_single_failure(
            &revoking("  runs: [\"1\"]\n"),
            &unknown,
            Check::Revoked,
            &["certificate has no run invocation URI"],
        );
    }

    #[test]
    fn missing_claims_fail_every_check() {
        let mut attestation = actions_demo();
        attestation.certificate = CertificateClaims::default();
        let found = failures(&rule(ACTIONS_DEMO), &attestation);
        let checks: Vec<Check> = found.iter().map(|(check, _)| *check).collect();
        assert_eq!(
            checks,
            [
                Check::Issuer,
                Check::SourceRepository,
                Check::CallingWorkflow,
                Check::SignerWorkflow,
                Check::Ref,
                Check::Trigger,
                Check::Runner,
            ],
            "{found:#?}"
        );
        assert!(found[1].1.contains("certificate has no source repository; rule \"r\" trusts repositories: actions/attest-demo (id 763287532)"));
        assert!(found[5].1.contains("certificate has no build trigger"));
        assert_eq!(Check::PredicateAgreement.as_str(), "predicate_agreement");
    }

    /// A policy with staging, production and dev environments, and rule `r` trusting
    /// main and release tags, narrowed per environment by `constraints` (YAML list entries).
    fn promoted_rule(constraints: &str) -> Rule {
        let source = format!(
            "version: 1
environments:
  - {{name: production, namespaceSelector: {{matchLabels: {{env: production}}}}, mode: enforce}}
  - {{name: staging, namespaceSelector: {{matchLabels: {{env: staging}}}}, mode: enforce}}
  - {{name: dev, namespaceSelector: {{}}, mode: warn}}
rules:
  - name: r
    images: [\"ghcr.io/x/*\"]
{ACTIONS_DEMO}    refs: [refs/heads/main, \"refs/tags/v*\"]
    environments:
{constraints}"
        );
        let policy = Policy::from_yaml(&source).unwrap_or_else(|error| panic!("{source}\n{error}"));
        policy.rules()[0].clone()
    }

    const PROMOTION: &str = "      - {name: production, refs: [\"refs/tags/v*\"], triggers: [push, release, workflow_dispatch], maxAge: 30d}
      - {name: staging, refs: [refs/heads/main]}
";

    fn environment(name: &str) -> Destination {
        Destination::Environment(name.to_owned())
    }

    #[test]
    fn environments_narrow_the_rule_for_their_namespaces() {
        let rule = promoted_rule(PROMOTION);
        let production_refs = "environment \"production\" of rule \"r\" allows refs: refs/tags/v*";
        let staging_refs = "environment \"staging\" of rule \"r\" allows refs: refs/heads/main";
        // (build, destination, the environments whose constraint fails, with a fragment each)
        type Case<'a> = (VerifiedAttestation, Destination, Vec<(&'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            (actions_demo(), Destination::Unselected, vec![]),
            (tagged_build(), Destination::Unselected, vec![]),
            (actions_demo(), environment("staging"), vec![]),
            (actions_demo(), environment("dev"), vec![]),
            (
                actions_demo(),
                environment("production"),
                vec![("production", production_refs)],
            ),
            (tagged_build(), environment("production"), vec![]),
            (
                tagged_build(),
                environment("staging"),
                vec![("staging", staging_refs)],
            ),
            // Labels unknown: every environment's constraints, so no build passes both.
            (
                actions_demo(),
                Destination::Unknown,
                vec![("production", production_refs)],
            ),
            (
                tagged_build(),
                Destination::Unknown,
                vec![("staging", staging_refs)],
            ),
        ];
        for (build, destination, expected) in cases {
            let found = match super::evaluate(&rule, &destination, &build, now()) {
                Ok(()) => Vec::new(),
                Err(violation) => violation.failures,
            };
            let context = format!(
                "{:?} for {destination:?}: {found:#?}",
                build.certificate.source_repository_ref
            );
            assert_eq!(found.len(), expected.len(), "{context}");
            for (failure, (environment, fragment)) in found.iter().zip(&expected) {
                assert_eq!(failure.check, Check::Ref, "{context}");
                assert_eq!(
                    failure.environment.as_deref(),
                    Some(*environment),
                    "{context}"
                );
                assert!(failure.message.contains(fragment), "{context}");
            }
        }
    }

    #[test]
    fn environment_constraints_join_the_rules_failures_in_check_order() {
        let rule = promoted_rule(
            "      - {name: production, refs: [\"refs/tags/v*\"], triggers: [release], runners: [self-hosted], workflows: [.github/workflows/release.yml], maxAge: 7d}\n",
        );
        let found = super::evaluate(&rule, &environment("production"), &actions_demo(), now())
            .expect_err("denied in production");
        let checks: Vec<(Check, Option<&str>)> = found
            .failures
            .iter()
            .map(|failure| (failure.check, failure.environment.as_deref()))
            .collect();
        let production = Some("production");
        assert_eq!(
            checks,
            [
                (Check::CallingWorkflow, production),
                (Check::Ref, production),
                (Check::Trigger, production),
                (Check::Runner, production),
                (Check::Age, production),
            ],
            "{found:#?}"
        );
        assert!(found.failures[4].message.contains(
            "environment \"production\" of rule \"r\" allows builds signed at most 7d before review"
        ));
        // The rule's own failures come first within a check and name no environment.
        let mut pushed_elsewhere = actions_demo();
        pushed_elsewhere.certificate.source_repository_ref = Some("refs/heads/dev".to_string());
        let found = failures(&rule, &pushed_elsewhere);
        assert!(found.iter().any(|(check, message)| *check == Check::Ref
            && message.contains("rule \"r\" allows refs: refs/heads/main, refs/tags/v*")));
    }

    #[test]
    fn an_environment_can_require_more_attestations() {
        let rule = promoted_rule("      - {name: production, requireAttestations: [spdx]}\n");
        assert_eq!(
            rule.required_attestations_for(&Destination::Unselected),
            Vec::<(&str, Option<&str>)>::new()
        );
        assert_eq!(
            rule.required_attestations_for(&environment("production")),
            [
                (SLSA_PROVENANCE_V1, None),
                (super::super::config::SPDX_DOCUMENT_V2_3, Some("production")),
            ]
        );
        let mut sbom = actions_demo();
        sbom.predicate_type = super::super::config::SPDX_DOCUMENT_V2_3.to_owned();
        sbom.predicate = None;
        assert_eq!(
            super::evaluate(&rule, &environment("production"), &sbom, now()),
            Ok(())
        );
        let refused = super::evaluate(&rule, &environment("staging"), &sbom, now())
            .expect_err("no SBOM accepted in staging");
        assert_eq!(refused.failures[0].check, Check::PredicateType);
        // The rule's own requirements stay first, and are not repeated.
        let required = promoted_rule(
            "      - {name: production, requireAttestations: [provenance, cyclonedx]}\n",
        );
        assert_eq!(
            required.required_attestations_for(&Destination::Unknown),
            [
                (SLSA_PROVENANCE_V1, None),
                (super::super::config::CYCLONEDX_BOM, Some("production")),
            ]
        );
    }
}
