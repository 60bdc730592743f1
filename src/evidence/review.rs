//! The one handle through which a review leaves its evidence: decision records, Kubernetes
//! Events and the decision metrics. The admission orchestrator hands it the finished
//! [`ReviewOutcome`] once per review ([`Evidence::record`]); what each outcome leaves behind,
//! and what a dry run or a `/mutate` that admits leaves out, is decided here and nowhere
//! else.
//!
//! Dry runs write records (marked `dryRun`, as evidence of the decision) but no Events,
//! which would be cluster writes.

use std::sync::Arc;

use crate::check::{ImageCheck, ImageOutcome};
use crate::cluster::{ClusterEvent, EventRecorder, EventType, ObjectRef};
use crate::decision::breakglass::{BreakGlassState, ModeChange};
use crate::decision::{Decision, ImageVerdict, Verdict};
use crate::policy::{Mode, Policy};

use super::metrics::{DigestVerdictLabels, Metrics, PolicyLabels};
use super::records::{DecisionRecord, DecisionSink, RequestContext};

/// Longest Event note: `events.k8s.io/v1` refuses notes over 1 KiB.
const MAX_EVENT_NOTE_BYTES: usize = 1024;

/// The object under review, as the evidence names it.
#[derive(Debug, Clone)]
pub struct Subject {
    pub context: RequestContext,
    pub regarding: ObjectRef,
    pub namespace: String,
    pub dry_run: bool,
    /// Why the namespace's labels were not known and the strictest mode applied.
    pub mode_fallback: Option<String>,
}

/// What one review decided, as far as its evidence goes.
#[derive(Debug)]
pub enum ReviewOutcome {
    /// Nothing was decided: the request runs nothing new, or it was answered before any
    /// decision (malformed, no policy loaded yet).
    Unjudged,
    /// A Pod or workload judged in its namespace's mode.
    Workload(WorkloadOutcome),
    /// A Pod UPDATE that edits the provenance annotation without changing an image, refused
    /// in every mode.
    AnnotationEditRefused { subject: Subject, message: String },
    /// A Namespace write: its mode change and break-glass.
    Namespace(NamespaceOutcome),
}

/// A Pod or workload judged in its namespace's mode.
#[derive(Debug)]
pub struct WorkloadOutcome {
    pub subject: Subject,
    /// The policy the review was judged under: the metrics' environment and rule labels are
    /// its names.
    pub policy: Arc<Policy>,
    pub mode: Mode,
    pub environment: Option<String>,
    pub break_glass: BreakGlassState,
    pub judged: Judged,
    /// No webhook of ours judges this attempt after this answer: `/validate` (it sees the
    /// final object), or a `/mutate` that refuses (the validating webhooks are then never
    /// called). Only then are records and Events written, once per attempt.
    pub final_say: bool,
    pub now: jiff::Timestamp,
}

/// What was decided on a workload's images.
#[derive(Debug)]
pub enum Judged {
    /// Each distinct image; `denial` is the refusal's message when one image is refused.
    Images {
        verdicts: Vec<ImageVerdict>,
        denial: Option<String>,
    },
    /// More images than one review checks: one decision for them all, and what it says.
    TooManyImages { decision: Decision, message: String },
}

/// A Namespace write's evidence: the record of a mode change, the Events on the Namespace.
#[derive(Debug)]
pub struct NamespaceOutcome {
    pub context: RequestContext,
    pub namespace: String,
    pub requested_by: String,
    pub dry_run: bool,
    pub now: jiff::Timestamp,
    pub mode_change: Option<ModeChangeDecided>,
    /// In the order they happened.
    pub events: Vec<NamespaceEvent>,
    /// `/validate` admitted a write that leaves no active break-glass.
    pub break_glass_lifted: bool,
    /// `/validate` admitted a break-glass declared until then: the gauge is on from now, not
    /// from the first workload review under it. (Were a later webhook to refuse the write,
    /// the expiry timer finds no break-glass on the namespace and turns it off.)
    pub break_glass_declared: Option<jiff::Timestamp>,
}

/// A mode change and what was decided on it.
#[derive(Debug)]
pub struct ModeChangeDecided {
    pub change: ModeChange,
    pub result: Verdict,
    pub reason: String,
}

/// An Event on the Namespace under review. Warnings are refusals; Normal ones, an
/// approver's act that was admitted.
#[derive(Debug)]
pub struct NamespaceEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// Where a review's evidence goes. Borrowed from the webhook's state for one review.
pub struct Evidence<'a> {
    records: &'a dyn DecisionSink,
    events: &'a dyn EventRecorder,
    metrics: &'a Metrics,
}

impl<'a> Evidence<'a> {
    pub fn new(
        records: &'a dyn DecisionSink,
        events: &'a dyn EventRecorder,
        metrics: &'a Metrics,
    ) -> Self {
        Evidence {
            records,
            events,
            metrics,
        }
    }

    /// Writes what `outcome` leaves behind. Called once per review, with its finished
    /// outcome.
    pub fn record(&self, outcome: &ReviewOutcome) {
        match outcome {
            ReviewOutcome::Unjudged => {}
            ReviewOutcome::Workload(workload) => self.workload(workload),
            ReviewOutcome::AnnotationEditRefused { subject, message } => {
                self.denial(subject, message)
            }
            ReviewOutcome::Namespace(namespace) => self.namespace(namespace),
        }
    }

    fn workload(&self, outcome: &WorkloadOutcome) {
        let subject = &outcome.subject;
        // Every review of a namespace's workloads refreshes its break-glass gauge.
        record_break_glass_state(self.metrics, &subject.namespace, &outcome.break_glass);
        if !outcome.final_say {
            return;
        }
        match &outcome.judged {
            Judged::Images { verdicts, denial } => {
                self.decisions(outcome, verdicts);
                if let Some(message) = denial {
                    self.denial(subject, message);
                }
                self.break_glass_admission(subject, verdicts, &outcome.break_glass);
            }
            Judged::TooManyImages { decision, message } => {
                let mut record = DecisionRecord::too_many_images(
                    &subject.context,
                    decision,
                    outcome.mode,
                    outcome.environment.as_deref(),
                    outcome.now,
                );
                record.dry_run = subject.dry_run;
                record.mode_fallback = subject.mode_fallback.clone();
                self.records.write(&record);
                // No image was checked, so no rule was tried and no digest is known.
                let labels = PolicyLabels::new(&outcome.policy);
                self.metrics.record_decision(
                    outcome.mode,
                    decision.verdict,
                    decision.reason_code,
                    (
                        labels.environment(outcome.environment.as_deref()),
                        labels.rule(None),
                    ),
                );
                if !decision.admits() {
                    self.denial(subject, message);
                }
            }
        }
    }

    /// Records and counts each image's decision, and the first verdict on each digest (dry
    /// runs excepted: they release nothing).
    fn decisions(&self, outcome: &WorkloadOutcome, verdicts: &[ImageVerdict]) {
        let subject = &outcome.subject;
        let labels = PolicyLabels::new(&outcome.policy);
        let environment = labels.environment(outcome.environment.as_deref());
        for verdict in verdicts {
            let mut record = DecisionRecord::new(
                &subject.context,
                &verdict.check,
                &verdict.decision,
                outcome.mode,
                outcome.environment.as_deref(),
                outcome.now,
            );
            record.dry_run = subject.dry_run;
            record.mode_fallback = subject.mode_fallback.clone();
            if let (
                true,
                BreakGlassState::Active {
                    ticket,
                    reason,
                    approved_by,
                    expires,
                },
            ) = (
                verdict.verdict() == Verdict::BreakGlass,
                &outcome.break_glass,
            ) {
                record.break_glass_ticket = Some(ticket.clone());
                record.break_glass_reason = Some(reason.clone());
                record.break_glass_approved_by = Some(approved_by.clone());
                record.break_glass_expires = Some(expires.to_string());
            }
            self.records.write(&record);
            let (rule, digest) = rule_and_digest(&verdict.check);
            let rule = labels.rule(rule);
            let (result, reason) = (verdict.verdict(), verdict.decision.reason_code);
            self.metrics.record_decision(
                outcome.mode,
                result,
                reason,
                (environment.clone(), rule.clone()),
            );
            if !subject.dry_run {
                let labels = DigestVerdictLabels {
                    environment: environment.clone(),
                    rule,
                    result: result.as_str(),
                    reason,
                };
                self.metrics.digest_verdicts.record_first(digest, labels);
            }
        }
    }

    /// A Warning Event on the object that was refused.
    fn denial(&self, subject: &Subject, message: &str) {
        if subject.dry_run {
            return;
        }
        self.events.record(ClusterEvent {
            regarding: subject.regarding.clone(),
            type_: EventType::Warning,
            reason: "ImageDenied".into(),
            note: note(message),
            action: "Deny".into(),
        });
    }

    /// A Warning Event on the Namespace whose break-glass admitted unproven images.
    fn break_glass_admission(
        &self,
        subject: &Subject,
        verdicts: &[ImageVerdict],
        break_glass: &BreakGlassState,
    ) {
        let BreakGlassState::Active {
            ticket,
            expires,
            approved_by,
            ..
        } = break_glass
        else {
            return;
        };
        let admitted: Vec<&str> = verdicts
            .iter()
            .filter(|verdict| verdict.verdict() == Verdict::BreakGlass)
            .map(|verdict| verdict.check.image.as_str())
            .collect();
        if admitted.is_empty() || subject.dry_run {
            return;
        }
        let regarding = &subject.regarding;
        let message = format!(
            "{} {} admitted under break-glass {ticket} (approved by {approved_by}, expires {expires}) with unverified image(s): {}",
            regarding.kind,
            regarding.name,
            admitted.join(", ")
        );
        self.events.record(ClusterEvent {
            regarding: namespace_ref(&subject.namespace),
            type_: EventType::Warning,
            reason: "BreakGlassAdmission".into(),
            note: note(&message),
            action: "Admit".into(),
        });
    }

    fn namespace(&self, outcome: &NamespaceOutcome) {
        if let Some(decided) = &outcome.mode_change {
            let mut record = DecisionRecord::mode_change(
                &outcome.context,
                &decided.change,
                &outcome.requested_by,
                decided.result,
                &decided.reason,
                outcome.now,
            );
            record.dry_run = outcome.dry_run;
            self.records.write(&record);
        }
        if outcome.dry_run {
            return;
        }
        for event in &outcome.events {
            self.events.record(ClusterEvent {
                regarding: namespace_ref(&outcome.namespace),
                type_: event.type_,
                reason: event.reason.into(),
                note: note(&event.message),
                action: if event.type_ == EventType::Warning {
                    "Deny".into()
                } else {
                    "Admit".into()
                },
            });
        }
        if outcome.break_glass_lifted {
            record_break_glass_state(self.metrics, &outcome.namespace, &BreakGlassState::Absent);
        }
        if let Some(expires) = outcome.break_glass_declared {
            self.metrics
                .break_glass_active
                .activate(&outcome.namespace, expires);
        }
    }
}

/// The rule tried on a checked image, and what identifies the release: its digest, or the
/// reference as written when it was never resolved (exempt, unmatched, or failed before).
fn rule_and_digest(check: &ImageCheck) -> (Option<&str>, &str) {
    match &check.outcome {
        ImageOutcome::Verified { rule, digest, .. } => (Some(rule), digest),
        ImageOutcome::Failed { rule, digest, .. } => (
            rule.as_deref(),
            digest.as_deref().unwrap_or(check.image.as_str()),
        ),
        ImageOutcome::Exempt | ImageOutcome::Unmatched { .. } => (None, check.image.as_str()),
    }
}

fn namespace_ref(namespace: &str) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: namespace.to_owned(),
        uid: None,
    }
}

/// `message` within the Event note limit, cut on a character boundary.
fn note(message: &str) -> String {
    if message.len() <= MAX_EVENT_NOTE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_EVENT_NOTE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// Sets `provenance_gate_break_glass_active{namespace}`: 1 while active; 0 once it is not,
/// for namespaces that had a series. Called on every review of a namespace's workloads and
/// by the timer that follows active ones to their expiry (`evidence::break_glass`).
pub fn record_break_glass_state(metrics: &Metrics, namespace: &str, state: &BreakGlassState) {
    match state {
        BreakGlassState::Active { expires, .. } => {
            metrics.break_glass_active.activate(namespace, *expires)
        }
        _ => metrics.break_glass_active.deactivate(namespace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{FailureKind, ImageCheck, ImageOutcome};
    use crate::cluster::RecordedEvents;
    use crate::decision::{decide, BreakGlass, Subject as Decided};
    use crate::evidence::records::MemorySink;

    /// A refused image in an enforce namespace, as a review of Pod `p` in `payments` ends.
    fn refused(dry_run: bool, final_say: bool) -> ReviewOutcome {
        let check = ImageCheck {
            image: "ghcr.io/acme/api:1".into(),
            pinned: None,
            outcome: ImageOutcome::Failed {
                rule: Some("acme".into()),
                digest: None,
                kind: FailureKind::NoAttestation,
                reason: "no attestation found".into(),
            },
        };
        let decision = decide(
            Decided::settled(&check.outcome),
            Mode::Enforce,
            BreakGlass::Inactive,
        );
        let policy = Policy::from_yaml(
            "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/**\"]\n    repositories: [{name: acme/api}]\n",
        )
        .unwrap();
        ReviewOutcome::Workload(WorkloadOutcome {
            policy: Arc::new(policy),
            subject: Subject {
                context: RequestContext::default(),
                regarding: ObjectRef {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    namespace: Some("payments".into()),
                    name: "p".into(),
                    uid: None,
                },
                namespace: "payments".into(),
                dry_run,
                mode_fallback: None,
            },
            mode: Mode::Enforce,
            environment: None,
            break_glass: BreakGlassState::Absent,
            judged: Judged::Images {
                verdicts: vec![ImageVerdict { check, decision }],
                denial: Some("image ghcr.io/acme/api:1 denied".into()),
            },
            final_say,
            now: "2026-01-01T00:00:00Z".parse().unwrap(),
        })
    }

    /// (records written, their dryRun marks, Event reasons) for `outcome`.
    fn written(outcome: &ReviewOutcome) -> (Vec<bool>, Vec<String>, String) {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let (records, events) = (MemorySink::default(), RecordedEvents::default());
        Evidence::new(&records, &events, &metrics).record(outcome);
        let marks = records
            .records()
            .iter()
            .map(|record| record.dry_run)
            .collect();
        let reasons = events
            .events()
            .into_iter()
            .map(|event| event.reason)
            .collect();
        (marks, reasons, crate::evidence::metrics::encode(&registry))
    }

    #[test]
    fn a_review_leaves_records_and_events_only_when_it_has_the_final_say() {
        let (records, events, metrics) = written(&refused(false, true));
        assert_eq!(records, [false]);
        assert_eq!(events, ["ImageDenied"]);
        for expected in [
            r#"provenance_gate_decisions_total{mode="enforce",result="denied",reason="no_attestation",environment="none",rule="acme"} 1"#,
            // Never resolved: the release is the reference as written.
            r#"provenance_gate_digest_verdicts_total{environment="none",rule="acme",result="denied",reason="no_attestation"} 1"#,
        ] {
            assert!(
                metrics.contains(expected),
                "missing {expected} in {metrics}"
            );
        }
        // A dry run: the record, marked, and no cluster write; it counts as a decision but
        // released nothing.
        let (records, events, metrics) = written(&refused(true, true));
        assert_eq!(records, [true]);
        assert!(events.is_empty());
        assert!(
            metrics.contains("provenance_gate_decisions_total{"),
            "{metrics}"
        );
        assert!(
            !metrics.contains("provenance_gate_digest_verdicts_total{"),
            "{metrics}"
        );
        // Another webhook of ours judges the attempt after this answer: nothing yet.
        let (records, events, metrics) = written(&refused(false, false));
        assert!(records.is_empty() && events.is_empty());
        assert!(
            !metrics.contains("provenance_gate_decisions_total{"),
            "{metrics}"
        );
        let (records, events, _) = written(&ReviewOutcome::Unjudged);
        assert!(records.is_empty() && events.is_empty());
    }

    #[test]
    fn event_notes_fit_the_limit() {
        let note = note(&"é".repeat(2000));
        assert!(note.len() <= MAX_EVENT_NOTE_BYTES, "{}", note.len());
        assert!(note.ends_with('…'));
    }

    #[test]
    fn the_break_glass_gauge_follows_the_state() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let active = BreakGlassState::Active {
            ticket: "INC-1".into(),
            reason: "r".into(),
            expires: "2026-01-01T00:00:00Z".parse().unwrap(),
            approved_by: "alice".into(),
        };
        record_break_glass_state(&metrics, "quiet", &BreakGlassState::Absent);
        record_break_glass_state(&metrics, "payments", &active);
        let text = crate::evidence::metrics::encode(&registry);
        assert!(text.contains(r#"provenance_gate_break_glass_active{namespace="payments"} 1"#));
        assert!(!text.contains("quiet"), "{text}");
        record_break_glass_state(&metrics, "payments", &BreakGlassState::Absent);
        let text = crate::evidence::metrics::encode(&registry);
        assert!(text.contains(r#"provenance_gate_break_glass_active{namespace="payments"} 0"#));
    }
}
