//! What a review leaves behind: one decision record per image, the decision metrics, and
//! Kubernetes Events on denials and break-glass admissions. Dry runs write records (marked
//! `dryRun`, as evidence of the decision) but no Events, which would be cluster writes.

use crate::check::ImageCheck;
use crate::cluster::{ClusterEvent, EventType, ObjectRef};
use crate::decision::breakglass::BreakGlassState;
use crate::decision::{Decision, Verdict};
use crate::evidence::metrics::{Metrics, NamespaceLabels};
use crate::evidence::records::{DecisionRecord, RequestContext};
use crate::policy::Mode;

use super::WebhookState;

/// Longest Event note: `events.k8s.io/v1` refuses notes over 1 KiB.
const MAX_EVENT_NOTE_BYTES: usize = 1024;

/// One image and the decision on it.
#[derive(Debug, Clone)]
pub(super) struct ImageVerdict {
    pub check: ImageCheck,
    pub decision: Decision,
}

impl ImageVerdict {
    pub fn verdict(&self) -> Verdict {
        self.decision.verdict
    }

    pub fn admits(&self) -> bool {
        self.decision.admits()
    }
}

/// The object under review, as the evidence names it.
#[derive(Debug, Clone)]
pub(super) struct Subject {
    pub context: RequestContext,
    pub regarding: ObjectRef,
    pub namespace: String,
    pub dry_run: bool,
    /// Why the namespace's labels were not known and the strictest mode applied.
    pub mode_fallback: Option<String>,
}

/// Records and counts each image's decision.
pub(super) fn write_decisions<R>(
    state: &WebhookState<R>,
    subject: &Subject,
    mode: Mode,
    environment: Option<&str>,
    verdicts: &[ImageVerdict],
    break_glass: &BreakGlassState,
    now: jiff::Timestamp,
) {
    for verdict in verdicts {
        let mut record = DecisionRecord::new(
            &subject.context,
            &verdict.check,
            &verdict.decision,
            mode,
            environment,
            now,
        );
        record.dry_run = subject.dry_run;
        record.mode_fallback = subject.mode_fallback.clone();
        if let (
            true,
            BreakGlassState::Active {
                ticket,
                reason,
                approved_by,
                ..
            },
        ) = (verdict.verdict() == Verdict::BreakGlass, break_glass)
        {
            record.break_glass_ticket = Some(ticket.clone());
            record.break_glass_reason = Some(reason.clone());
            record.break_glass_approved_by = Some(approved_by.clone());
        }
        state.records.write(&record);
        state
            .metrics
            .record_decision(mode, verdict.verdict(), verdict.decision.reason_code);
    }
}

/// A Warning Event on the object that was refused.
pub(super) fn emit_denial<R>(state: &WebhookState<R>, subject: &Subject, message: &str) {
    if subject.dry_run {
        return;
    }
    state.events.record(ClusterEvent {
        regarding: subject.regarding.clone(),
        type_: EventType::Warning,
        reason: "ImageDenied".into(),
        note: note(message),
        action: "Deny".into(),
    });
}

/// A Warning Event on the Namespace whose break-glass admitted unproven images.
pub(super) fn emit_break_glass<R>(
    state: &WebhookState<R>,
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
    state.events.record(ClusterEvent {
        regarding: namespace_ref(&subject.namespace),
        type_: EventType::Warning,
        reason: "BreakGlassAdmission".into(),
        note: note(&message),
        action: "Admit".into(),
    });
}

/// An Event on a Namespace about its break-glass annotations.
pub(super) fn emit_namespace_event<R>(
    state: &WebhookState<R>,
    namespace: &str,
    type_: EventType,
    reason: &str,
    message: &str,
) {
    state.events.record(ClusterEvent {
        regarding: namespace_ref(namespace),
        type_,
        reason: reason.into(),
        note: note(message),
        action: if type_ == EventType::Warning {
            "Deny".into()
        } else {
            "Admit".into()
        },
    });
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
/// for namespaces that had a series. Called on every review of a namespace's workloads;
/// the Namespace watcher may call it on each change too.
pub fn record_break_glass_state(metrics: &Metrics, namespace: &str, state: &BreakGlassState) {
    let labels = NamespaceLabels {
        namespace: namespace.to_owned(),
    };
    if state.is_active() {
        metrics.break_glass_active.get_or_create(&labels).set(1);
    } else if let Some(gauge) = metrics.break_glass_active.get(&labels) {
        // No series for namespaces that never had a break-glass: the label set stays small.
        gauge.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
