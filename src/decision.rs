//! From an image's outcome and its namespace's mode to admit / warn / deny. Pure.

use serde::Serialize;

use crate::image_check::{FailureKind, ImageOutcome};
use crate::policy::{Mode, UnmatchedAction};

/// The `result` field of a decision record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionResult {
    /// Proven and admitted (or unmatched and `unmatchedImages: allow`).
    Allowed,
    /// Not proven, admitted with a warning (warn mode).
    Warned,
    /// Not proven, refused (enforce mode).
    Denied,
    /// Not proven, admitted silently and recorded (observe mode).
    WouldDeny,
    /// Matches `exemptImages`.
    Exempt,
}

impl DecisionResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionResult::Allowed => "allowed",
            DecisionResult::Warned => "warned",
            DecisionResult::Denied => "denied",
            DecisionResult::WouldDeny => "would_deny",
            DecisionResult::Exempt => "exempt",
        }
    }
}

/// What to do with one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub result: DecisionResult,
    /// Whether the image may run.
    pub admit: bool,
    /// Short machine label: `verified`, `exempt`, `unmatched`, or a failure kind.
    pub reason_code: &'static str,
    /// A sentence a person can act on.
    pub reason: String,
}

/// Applies `mode` to `outcome`. Registry and verification errors fail closed in enforce
/// mode and only warn elsewhere, like every other unproven image.
pub fn decide(mode: Mode, outcome: &ImageOutcome) -> Decision {
    let (reason_code, reason) = match outcome {
        ImageOutcome::Exempt => {
            return Decision {
                result: DecisionResult::Exempt,
                admit: true,
                reason_code: "exempt",
                reason: "image is exempt by policy (exemptImages)".into(),
            }
        }
        ImageOutcome::Unmatched {
            action: UnmatchedAction::Allow,
        } => {
            return Decision {
                result: DecisionResult::Allowed,
                admit: true,
                reason_code: "unmatched",
                reason: "no policy rule covers this image and unmatchedImages is allow".into(),
            }
        }
        ImageOutcome::Verified { rule, .. } => {
            return Decision {
                result: DecisionResult::Allowed,
                admit: true,
                reason_code: "verified",
                reason: format!("verified provenance satisfies rule {rule:?}"),
            }
        }
        ImageOutcome::Unmatched {
            action: UnmatchedAction::Deny,
        } => (
            "unmatched",
            "no policy rule covers this image and unmatchedImages is deny; add a rule for it or exempt it"
                .to_owned(),
        ),
        ImageOutcome::Failed {
            rule, kind, reason, ..
        } => (
            kind.as_str(),
            match rule {
                Some(rule) => format!("rule {rule:?}: {reason}"),
                None => reason.clone(),
            },
        ),
    };
    let (result, admit) = match mode {
        Mode::Enforce => (DecisionResult::Denied, false),
        Mode::Warn => (DecisionResult::Warned, true),
        Mode::Observe => (DecisionResult::WouldDeny, true),
    };
    Decision {
        result,
        admit,
        reason_code,
        reason,
    }
}

/// Whether a failure kind is about reaching the registry or the clock rather than the
/// attestation itself (for metrics and for operators triaging a denial spike).
pub fn is_infrastructure_failure(kind: FailureKind) -> bool {
    matches!(kind, FailureKind::Registry | FailureKind::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(kind: FailureKind) -> ImageOutcome {
        ImageOutcome::Failed {
            rule: Some("acme".into()),
            digest: None,
            kind,
            reason: "no attestation found for sha256:ab".into(),
        }
    }

    #[test]
    fn modes_turn_a_failure_into_deny_warn_or_record() {
        let table = [
            (Mode::Enforce, DecisionResult::Denied, false),
            (Mode::Warn, DecisionResult::Warned, true),
            (Mode::Observe, DecisionResult::WouldDeny, true),
        ];
        for (mode, result, admit) in table {
            for kind in [
                FailureKind::NoAttestation,
                FailureKind::Registry,
                FailureKind::Timeout,
            ] {
                let decision = decide(mode, &failed(kind));
                assert_eq!(
                    (decision.result, decision.admit),
                    (result, admit),
                    "{mode:?} {kind:?}"
                );
                assert_eq!(decision.reason_code, kind.as_str());
                assert!(
                    decision.reason.starts_with("rule \"acme\": no attestation"),
                    "{}",
                    decision.reason
                );
            }
        }
    }

    #[test]
    fn unmatched_images_follow_unmatched_images_then_the_mode() {
        let deny = ImageOutcome::Unmatched {
            action: UnmatchedAction::Deny,
        };
        let allow = ImageOutcome::Unmatched {
            action: UnmatchedAction::Allow,
        };
        assert_eq!(decide(Mode::Enforce, &deny).result, DecisionResult::Denied);
        assert_eq!(decide(Mode::Warn, &deny).result, DecisionResult::Warned);
        assert_eq!(
            decide(Mode::Enforce, &allow).result,
            DecisionResult::Allowed
        );
        assert!(decide(Mode::Enforce, &deny)
            .reason
            .contains("unmatchedImages is deny"));
    }

    #[test]
    fn exempt_images_are_admitted_in_every_mode() {
        for mode in [Mode::Enforce, Mode::Warn, Mode::Observe] {
            let decision = decide(mode, &ImageOutcome::Exempt);
            assert_eq!(
                (decision.result, decision.admit),
                (DecisionResult::Exempt, true)
            );
        }
    }

    #[test]
    fn infrastructure_failures_are_told_apart() {
        assert!(is_infrastructure_failure(FailureKind::Registry));
        assert!(is_infrastructure_failure(FailureKind::Timeout));
        assert!(!is_infrastructure_failure(FailureKind::PolicyViolation));
    }
}
