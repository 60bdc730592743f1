//! The decision record: one JSON line per image and decision, carrying the provenance the
//! image was admitted on, so that "where did this come from?" is answerable weeks later.

use serde::Serialize;

use crate::check::{bounded, AttestedPredicate, ImageCheck, ImageOutcome};
use crate::decision::breakglass::ModeChange;
use crate::decision::{Decision, Verdict};
use crate::policy::Mode;

/// Longest `reason` a record carries (bytes). Image checks already bound their reasons; this
/// keeps every record small whatever a decision adds to them.
pub const MAX_RECORD_REASON_BYTES: usize = 4096;

/// Who sent an admission request, as far as the connection proves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The TLS client presented a certificate that chains to the configured client CA
    /// (`serve --client-ca`). Without a client CA nobody is authenticated, and anyone who
    /// can reach the webhook port could have sent the request.
    pub authenticated: bool,
    /// The verified client certificate's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Caller {
    /// A caller proven by a client certificate with this subject.
    pub fn verified(subject: Option<String>) -> Self {
        Caller {
            authenticated: true,
            subject,
        }
    }
}

/// Where a decision was asked for: an admission request, or the command line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestContext {
    pub uid: Option<String>,
    pub namespace: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    /// `None` on the command line, where there is no request.
    pub caller: Option<Caller>,
}

/// See the module documentation; docs/operating.md shows a record and its fields.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub time: String,
    pub uid: Option<String>,
    pub namespace: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    /// Empty in the record of a Namespace write (a mode change), which is about no image.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    pub digest: Option<String>,
    pub mode: Mode,
    pub environment: Option<String>,
    /// Set when `mode` is not the namespace's own but the strictest, because its labels
    /// could not be known (not yet watched, and the API server's answer missing): why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_fallback: Option<String>,
    /// A Namespace write's mode change: the mode before (`mode` is the mode after).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_environment: Option<String>,
    /// Who made the request, where the record is about a person's act (a mode change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// The decision's [`Verdict`], by its label.
    pub result: &'static str,
    pub reason: String,
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_repository_id: Option<String>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_workflow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_digest: Option<String>,
    /// Under a rule with `requireAttestations`: each required predicate type and the
    /// bundle that attested it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestedPredicate>,
    /// Where the accepted attestation was found: `registry` or `github`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation_source: Option<&'static str>,
    /// The GitHub API listing it was found in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<String>,
    /// The admission request was a dry run: the decision was made, nothing was created.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Set when the image was admitted under the namespace's break-glass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass_ticket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass_reason: Option<String>,
    /// Who declared the break-glass, as the webhook recorded it from the request's userInfo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass_approved_by: Option<String>,
    /// When the break-glass ends (RFC 3339), for the post-incident review of what still runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass_expires: Option<String>,
    /// Who sent the admission request; unauthenticated requests say so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
}

impl DecisionRecord {
    pub fn new(
        context: &RequestContext,
        check: &ImageCheck,
        decision: &Decision,
        mode: Mode,
        environment: Option<&str>,
        time: jiff::Timestamp,
    ) -> Self {
        let mut record = DecisionRecord::bare(context, mode, environment, decision.verdict, time);
        record.image = check.image.clone();
        record.reason = bounded(&decision.reason, MAX_RECORD_REASON_BYTES);
        match &check.outcome {
            ImageOutcome::Verified {
                rule,
                digest,
                bundle_digest,
                attestation,
                source,
                source_url,
                attestations,
                ..
            } => {
                let certificate = &attestation.certificate;
                record.attestation_source = source.map(|source| source.as_str());
                record.attestation_url = source_url.clone();
                record.rule = Some(rule.clone());
                record.digest = Some(digest.clone());
                record.source_repository = certificate.source_repository_uri.clone();
                record.source_repository_id = certificate.source_repository_identifier.clone();
                record.git_ref = certificate.source_repository_ref.clone();
                record.commit = certificate.source_repository_digest.clone();
                record.workflow = certificate.build_config_uri.clone();
                record.signer_workflow = certificate.build_signer_uri.clone();
                record.trigger = certificate.build_trigger.clone();
                record.runner = certificate.runner_environment.clone();
                record.run_url = certificate.run_invocation_uri.clone();
                record.predicate_type = Some(attestation.predicate_type.clone());
                record.instance = Some(attestation.instance.to_string());
                record.bundle_digest = Some(bundle_digest.clone());
                record.attestations = attestations.clone();
                record.signed_at = attestation.signed_at.clone();
            }
            ImageOutcome::Failed { rule, digest, .. } => {
                record.rule = rule.clone();
                record.digest = digest.clone();
            }
            ImageOutcome::Exempt | ImageOutcome::Unmatched { .. } => {}
        }
        record
    }

    /// The record of a Namespace write that changes its mode: `mode`/`environment` after,
    /// `previous_*` before, `requested_by` who asked, `result` allowed or denied.
    pub fn mode_change(
        context: &RequestContext,
        change: &ModeChange,
        requested_by: &str,
        result: Verdict,
        reason: &str,
        time: jiff::Timestamp,
    ) -> Self {
        let to = &change.to;
        let mut record =
            DecisionRecord::bare(context, to.mode, to.environment.as_deref(), result, time);
        record.previous_mode = Some(change.from.mode);
        record.previous_environment = change.from.environment.clone();
        record.requested_by = Some(requested_by.to_owned());
        record.reason = reason.to_owned();
        record
    }

    /// The record of a review refused (or, outside enforce mode, admitted with a warning)
    /// for naming more images than one review checks: no image was checked, so it names
    /// none, and `reason` says how many there were.
    pub fn too_many_images(
        context: &RequestContext,
        decision: &Decision,
        mode: Mode,
        environment: Option<&str>,
        time: jiff::Timestamp,
    ) -> Self {
        let mut record = DecisionRecord::bare(context, mode, environment, decision.verdict, time);
        record.reason = decision.reason.clone();
        record
    }

    fn bare(
        context: &RequestContext,
        mode: Mode,
        environment: Option<&str>,
        result: Verdict,
        time: jiff::Timestamp,
    ) -> Self {
        DecisionRecord {
            time: time.to_string(),
            uid: context.uid.clone(),
            namespace: context.namespace.clone(),
            kind: context.kind.clone(),
            name: context.name.clone(),
            image: String::new(),
            digest: None,
            mode,
            environment: environment.map(str::to_owned),
            mode_fallback: None,
            previous_mode: None,
            previous_environment: None,
            requested_by: None,
            result: result.as_str(),
            reason: String::new(),
            rule: None,
            source_repository: None,
            source_repository_id: None,
            git_ref: None,
            commit: None,
            workflow: None,
            signer_workflow: None,
            trigger: None,
            runner: None,
            run_url: None,
            predicate_type: None,
            instance: None,
            bundle_digest: None,
            attestations: Vec::new(),
            attestation_source: None,
            attestation_url: None,
            signed_at: None,
            dry_run: false,
            break_glass_ticket: None,
            break_glass_reason: None,
            break_glass_approved_by: None,
            break_glass_expires: None,
            caller: context.caller.clone(),
        }
    }
}

/// Where decision records go. Writing must not fail an admission: implementations report
/// their own write errors (a lost record is logged, the decision stands).
pub trait DecisionSink: Send + Sync {
    fn write(&self, record: &DecisionRecord);
}

/// One JSON object per line, to any writer; stdout in the webhook, where the cluster's log
/// pipeline collects it.
pub struct JsonLinesSink {
    out: std::sync::Mutex<Box<dyn std::io::Write + Send>>,
}

impl JsonLinesSink {
    pub fn new(out: Box<dyn std::io::Write + Send>) -> Self {
        JsonLinesSink {
            out: std::sync::Mutex::new(out),
        }
    }

    /// Records on stdout. Logs must then go elsewhere (stderr), or the lines interleave.
    pub fn stdout() -> Self {
        JsonLinesSink::new(Box::new(std::io::stdout()))
    }
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink").finish_non_exhaustive()
    }
}

impl DecisionSink for JsonLinesSink {
    fn write(&self, record: &DecisionRecord) {
        use std::io::Write;
        let line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, image = %record.image, "decision record not serialisable");
                return;
            }
        };
        // One lock per line, so that concurrent reviews never interleave within a record.
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::error!(%error, image = %record.image, "decision record lost");
        }
    }
}

/// Records kept in memory, for tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: std::sync::Mutex<Vec<DecisionRecord>>,
}

impl MemorySink {
    pub fn records(&self) -> Vec<DecisionRecord> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl DecisionSink for MemorySink {
    fn write(&self, record: &DecisionRecord) {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(record.clone());
    }
}
