//! From an image's outcome, how the Pod will pull it, and its namespace's mode to
//! admit / warn / deny. Pure.

use serde::Serialize;

use crate::image_check::ImageOutcome;
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
    /// Short machine label: `verified`, `exempt`, `unmatched`, `unpinned_tag`, or a failure
    /// kind.
    pub reason_code: &'static str,
    /// A sentence a person can act on.
    pub reason: String,
}

/// How a Pod will pull an image, as far as its admission can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    /// By the digest that was checked: the reference names a digest, or this very answer
    /// pins it (`/mutate`), or it is in a controller's pod template (never pulled as written:
    /// the controller's Pods are pinned when they are created).
    Settled,
    /// By tag, after every mutation: the tag can be moved to a digest nobody checked before
    /// the kubelet pulls it.
    Unpinned(UnpinnedCause),
}

/// Why a Pod image is still a tag when `/validate` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpinnedCause {
    /// provenance-gate's mutating webhook did not pin it: mutation is disabled, or its
    /// configuration does not send it this request.
    NotMutated,
    /// The mutating webhook pinned it (the provenance annotation was written for it in this
    /// request), then another mutating webhook changed the image and provenance-gate was not
    /// called again.
    ChangedAfterPinning,
}

impl UnpinnedCause {
    fn explanation(self) -> &'static str {
        match self {
            UnpinnedCause::NotMutated => {
                "provenance-gate's mutating webhook (/mutate) did not pin it: mutation is disabled, \
                 or the MutatingWebhookConfiguration does not cover pods and pods/ephemeralcontainers \
                 on CREATE and UPDATE"
            }
            UnpinnedCause::ChangedAfterPinning => {
                "provenance-gate's mutating webhook pinned it, then another mutating webhook \
                 changed the image and provenance-gate was not reinvoked (its entries need \
                 reinvocationPolicy: IfNeeded)"
            }
        }
    }
}

/// Applies `mode` to `outcome`, for an image that needs no pinning (a controller's template,
/// or the command line). Registry and verification errors fail closed in enforce mode and
/// only warn elsewhere, like every other unproven image.
pub fn decide(mode: Mode, outcome: &ImageOutcome) -> Decision {
    decide_admission(mode, outcome, Pinning::Settled)
}

/// Applies `mode` to `outcome` and to how the Pod pulls the image. A verified image that
/// the Pod would still pull by tag is unproven like a failure: what runs is whatever the tag
/// names when the kubelet pulls it. Exempt and unmatched images are never resolved and a
/// failed one is unproven already, so `pinning` only matters to verified ones.
pub fn decide_admission(mode: Mode, outcome: &ImageOutcome, pinning: Pinning) -> Decision {
    let (reason_code, reason) = match (outcome, pinning) {
        (ImageOutcome::Exempt, _) => {
            return Decision {
                result: DecisionResult::Exempt,
                admit: true,
                reason_code: "exempt",
                reason: "image is exempt by policy (exemptImages)".into(),
            }
        }
        (
            ImageOutcome::Unmatched {
                action: UnmatchedAction::Allow,
            },
            _,
        ) => {
            return Decision {
                result: DecisionResult::Allowed,
                admit: true,
                reason_code: "unmatched",
                reason: "no policy rule covers this image and unmatchedImages is allow".into(),
            }
        }
        (ImageOutcome::Verified { rule, digest, .. }, Pinning::Unpinned(cause)) => (
            "unpinned_tag",
            format!(
                "rule {rule:?}: verified as {digest}, but the Pod would pull it by tag, which can \
                 be moved to another digest before the pull; {}",
                cause.explanation()
            ),
        ),
        (ImageOutcome::Verified { rule, .. }, Pinning::Settled) => {
            return Decision {
                result: DecisionResult::Allowed,
                admit: true,
                reason_code: "verified",
                reason: format!("verified provenance satisfies rule {rule:?}"),
            }
        }
        (
            ImageOutcome::Unmatched {
                action: UnmatchedAction::Deny,
            },
            _,
        ) => (
            "unmatched",
            "no policy rule covers this image and unmatchedImages is deny; add a rule for it or exempt it"
                .to_owned(),
        ),
        (
            ImageOutcome::Failed {
                rule, kind, reason, ..
            },
            _,
        ) => (
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

/// Outcomes for the tests of the modules that decide on them.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::image_check::ImageOutcome;
    use crate::verify::claims::{CertificateClaims, Instance, VerifiedAttestation};

    /// Verified under rule `acme` as `digest`, by a bundle whose certificate says `certificate`.
    pub(crate) fn verified_outcome(digest: &str, certificate: CertificateClaims) -> ImageOutcome {
        ImageOutcome::Verified {
            rule: "acme".into(),
            digest: digest.into(),
            bundle_digest: "sha256:bb".into(),
            attestation: Box::new(VerifiedAttestation {
                instance: Instance::Github,
                bundle_digest: "sha256:bb".into(),
                signed_at: None,
                predicate_type: "https://slsa.dev/provenance/v1".into(),
                subjects: Vec::new(),
                certificate,
                predicate: None,
            }),
            platforms_checked: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_check::FailureKind;

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

    fn verified() -> ImageOutcome {
        fixtures::verified_outcome("sha256:ab", Default::default())
    }

    #[test]
    fn a_verified_image_still_pulled_by_tag_is_unproven_in_every_mode() {
        let table = [
            (Mode::Enforce, DecisionResult::Denied, false),
            (Mode::Warn, DecisionResult::Warned, true),
            (Mode::Observe, DecisionResult::WouldDeny, true),
        ];
        let causes = [
            (UnpinnedCause::NotMutated, "mutation is disabled"),
            (
                UnpinnedCause::ChangedAfterPinning,
                "reinvocationPolicy: IfNeeded",
            ),
        ];
        for (mode, result, admit) in table {
            let settled = decide_admission(mode, &verified(), Pinning::Settled);
            assert_eq!(
                (settled.result, settled.admit, settled.reason_code),
                (DecisionResult::Allowed, true, "verified"),
                "{mode:?}"
            );
            for (cause, named) in causes {
                let decision = decide_admission(mode, &verified(), Pinning::Unpinned(cause));
                assert_eq!(
                    (decision.result, decision.admit, decision.reason_code),
                    (result, admit, "unpinned_tag"),
                    "{mode:?} {cause:?}"
                );
                assert!(
                    decision.reason.starts_with(
                        "rule \"acme\": verified as sha256:ab, but the Pod would pull it by tag"
                    ) && decision.reason.contains(named),
                    "{}",
                    decision.reason
                );
            }
        }
    }

    #[test]
    fn pinning_changes_nothing_for_images_that_were_not_verified() {
        let unpinned = Pinning::Unpinned(UnpinnedCause::NotMutated);
        let outcomes = [
            ImageOutcome::Exempt,
            ImageOutcome::Unmatched {
                action: UnmatchedAction::Allow,
            },
            ImageOutcome::Unmatched {
                action: UnmatchedAction::Deny,
            },
            failed(FailureKind::NoAttestation),
        ];
        for mode in [Mode::Enforce, Mode::Warn, Mode::Observe] {
            for outcome in &outcomes {
                assert_eq!(
                    decide_admission(mode, outcome, unpinned),
                    decide(mode, outcome),
                    "{mode:?} {outcome:?}"
                );
            }
        }
    }
}
