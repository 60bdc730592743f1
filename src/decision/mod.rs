//! The one place where the gate decides: from what is known about an image (or that a
//! review holds too many of them), the namespace's mode and its break-glass, to a typed
//! [`Verdict`]. Records, Events, metrics, warnings, audit annotations and the CLI only read
//! the verdict. Also the one [`judge`] that holds a verified attestation against the rules.
//! Pure.

pub mod breakglass;

use serde::Serialize;

use self::breakglass::BreakGlassState;
use crate::check::{ImageCheck, ImageOutcome};
use crate::policy::{self, Destination, Mode, Rule, UnmatchedAction};
use crate::verify::VerifiedAttestation;

/// What the gate made of one image (or of a review over the image limit). Its
/// [`as_str`](Verdict::as_str) is the `result` of records and metrics and the audit
/// annotations' wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Proven and admitted (or unmatched and `unmatchedImages: allow`).
    Allowed,
    /// Matches `exemptImages`.
    Exempt,
    /// Not proven, admitted with a warning (warn mode).
    Warned,
    /// Not proven, admitted silently and recorded (observe mode).
    WouldDeny,
    /// Not proven, refused (enforce mode).
    Denied,
    /// Not proven and refused by enforce mode, admitted under the namespace's break-glass.
    BreakGlass,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Exempt => "exempt",
            Verdict::Warned => "warned",
            Verdict::WouldDeny => "would_deny",
            Verdict::Denied => "denied",
            Verdict::BreakGlass => "break_glass",
        }
    }

    /// Whether what it was given may run.
    pub fn admits(self) -> bool {
        self != Verdict::Denied
    }
}

/// Whether the namespace's break-glass is in force for this review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakGlass {
    Inactive,
    Active,
}

impl From<&BreakGlassState> for BreakGlass {
    fn from(state: &BreakGlassState) -> Self {
        if state.is_active() {
            BreakGlass::Active
        } else {
            BreakGlass::Inactive
        }
    }
}

/// What is decided on.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// One image, as checked, and how the Pod will pull it.
    Image {
        outcome: &'a ImageOutcome,
        pinning: Pinning,
    },
    /// A review that names more images than one review checks (`max`).
    TooManyImages { count: usize, max: usize },
    /// A Pod UPDATE that edits the provenance annotation (`annotation`) without changing an
    /// image. Refused in every mode and whatever the break-glass: the annotation is the
    /// gate's record of what it verified, not a verdict on an image, and refusing the edit
    /// stops no container; a record forged in an observe namespace would still mislead once
    /// the namespace enforces.
    AnnotationEdit {
        edit: AnnotationEdit,
        annotation: &'a str,
    },
}

/// What a Pod UPDATE did to the provenance annotation while running the same images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationEdit {
    Added,
    Changed,
    Removed,
}

impl AnnotationEdit {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationEdit::Added => "added",
            AnnotationEdit::Changed => "changed",
            AnnotationEdit::Removed => "removed",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            AnnotationEdit::Added => "adds",
            AnnotationEdit::Changed => "changes",
            AnnotationEdit::Removed => "removes",
        }
    }
}

impl<'a> Subject<'a> {
    /// An image that needs no pinning (a controller's template, or the command line).
    pub fn settled(outcome: &'a ImageOutcome) -> Self {
        Subject::Image {
            outcome,
            pinning: Pinning::Settled,
        }
    }
}

/// What to do with one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// Short machine label: `verified`, `exempt`, `unmatched`, `unpinned_tag`,
    /// `too_many_images`, or a failure kind.
    pub reason_code: &'static str,
    /// A sentence a person can act on.
    pub reason: String,
}

impl Decision {
    /// Whether the image may run.
    pub fn admits(&self) -> bool {
        self.verdict.admits()
    }
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

impl Pinning {
    /// How the Pod under review pulls an image. `/mutate` pins what it verifies in its own
    /// answer, a controller's template is never pulled as written, and a reference that
    /// names a digest is pulled as verified; otherwise the Pod pulls the tag.
    pub fn of(pull: Pull) -> Pinning {
        if pull.pinned_by_this_answer || pull.in_template || pull.names_digest {
            return Pinning::Settled;
        }
        Pinning::Unpinned(if pull.pinned_earlier_in_request {
            UnpinnedCause::ChangedAfterPinning
        } else {
            UnpinnedCause::NotMutated
        })
    }
}

/// Where an image reference stands when its review decides how it will be pulled.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pull {
    /// This answer is `/mutate`'s, which pins the verified digest itself.
    pub pinned_by_this_answer: bool,
    /// The reference is in a controller's pod template, not in a Pod.
    pub in_template: bool,
    /// The reference names a digest already.
    pub names_digest: bool,
    /// `/mutate` wrote the provenance of this image's container earlier in this request.
    pub pinned_earlier_in_request: bool,
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

/// Decides on `subject` in `mode`. A verified image that the Pod would still pull by tag is
/// unproven like a failure: what runs is whatever the tag names when the kubelet pulls it.
/// Exempt and unmatched images are never resolved and a failed one is unproven already, so
/// `pinning` only matters to verified ones. Registry and verification errors fail closed in
/// enforce mode and only warn elsewhere, like every other unproven image; an active
/// break-glass admits what enforce mode would refuse, marked as such. Exempt and unmatched
/// images and an edit of the provenance annotation are decided whatever the mode.
pub fn decide(subject: Subject<'_>, mode: Mode, break_glass: BreakGlass) -> Decision {
    let (reason_code, reason) = match unproven(subject) {
        Ok(settled) => return settled,
        Err(unproven) => unproven,
    };
    let verdict = match (mode, break_glass) {
        (Mode::Enforce, BreakGlass::Inactive) => Verdict::Denied,
        (Mode::Enforce, BreakGlass::Active) => Verdict::BreakGlass,
        (Mode::Warn, _) => Verdict::Warned,
        (Mode::Observe, _) => Verdict::WouldDeny,
    };
    Decision {
        verdict,
        reason_code,
        reason,
    }
}

/// The decision on a subject that needs no mode (`Ok`), or why it is unproven (`Err`).
fn unproven(subject: Subject<'_>) -> Result<Decision, (&'static str, String)> {
    let (outcome, pinning) = match subject {
        Subject::Image { outcome, pinning } => (outcome, pinning),
        Subject::TooManyImages { count, max } => {
            return Err((
                "too_many_images",
                format!("{count} container images, more than the {max} checked in one review"),
            ))
        }
        Subject::AnnotationEdit { edit, annotation } => {
            return Ok(Decision {
                verdict: Verdict::Denied,
                reason_code: "provenance_annotation_edit",
                reason: format!(
                    "the annotation {annotation} is provenance-gate's record of what it verified \
                     and only provenance-gate writes it: this UPDATE {} it without changing an image",
                    edit.verb()
                ),
            })
        }
    };
    match (outcome, pinning) {
        (ImageOutcome::Exempt, _) => Ok(Decision {
            verdict: Verdict::Exempt,
            reason_code: "exempt",
            reason: "image is exempt by policy (exemptImages)".into(),
        }),
        (
            ImageOutcome::Unmatched {
                action: UnmatchedAction::Allow,
            },
            _,
        ) => Ok(Decision {
            verdict: Verdict::Allowed,
            reason_code: "unmatched",
            reason: "no policy rule covers this image and unmatchedImages is allow".into(),
        }),
        (ImageOutcome::Verified { rule, digest, .. }, Pinning::Unpinned(cause)) => Err((
            "unpinned_tag",
            format!(
                "rule {rule:?}: verified as {digest}, but the Pod would pull it by tag, which can \
                 be moved to another digest before the pull; {}",
                cause.explanation()
            ),
        )),
        (ImageOutcome::Verified { rule, .. }, Pinning::Settled) => Ok(Decision {
            verdict: Verdict::Allowed,
            reason_code: "verified",
            reason: format!("verified provenance satisfies rule {rule:?}"),
        }),
        (
            ImageOutcome::Unmatched {
                action: UnmatchedAction::Deny,
            },
            _,
        ) => Err((
            "unmatched",
            "no policy rule covers this image and unmatchedImages is deny; add a rule for it or exempt it"
                .to_owned(),
        )),
        (
            ImageOutcome::Failed {
                rule, kind, reason, ..
            },
            _,
        ) => Err((
            kind.as_str(),
            match rule {
                Some(rule) => format!("rule {rule:?}: {reason}"),
                None => reason.clone(),
            },
        )),
    }
}

/// One image and the decision on it.
#[derive(Debug, Clone)]
pub struct ImageVerdict {
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

/// The verdict of a whole review from its images' verdicts: denied when one image is,
/// otherwise its most telling one (break-glass, then warned, then would-deny), otherwise
/// allowed.
pub fn review_verdict(verdicts: &[ImageVerdict]) -> Verdict {
    let has = |wanted: Verdict| verdicts.iter().any(|verdict| verdict.verdict() == wanted);
    [
        Verdict::Denied,
        Verdict::BreakGlass,
        Verdict::Warned,
        Verdict::WouldDeny,
    ]
    .into_iter()
    .find(|&verdict| has(verdict))
    .unwrap_or(Verdict::Allowed)
}

/// Holds one verified attestation against the candidate `rules` in order: the first it
/// satisfies, or every violation of every rule. The webhook (one rule per image) and the
/// CLI's `verify-bundle` (one or all rules) join facts and rules here alike.
pub fn judge<'r>(
    attestation: &VerifiedAttestation,
    rules: &[&'r Rule],
    destination: &Destination,
    now: jiff::Timestamp,
) -> Result<&'r Rule, Vec<String>> {
    if rules.is_empty() {
        return Err(vec![
            "no policy rule to check the attestation against".into()
        ]);
    }
    let mut reasons = Vec::new();
    for rule in rules {
        match policy::evaluate(rule, destination, attestation, now) {
            Ok(()) => return Ok(rule),
            Err(violation) => reasons.extend(violation.reasons()),
        }
    }
    Err(reasons)
}

/// Outcomes for the tests of the modules that decide on them.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::check::ImageOutcome;
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
            source: None,
            source_url: None,
            attestations: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::FailureKind;

    const MODES: [Mode; 3] = [Mode::Enforce, Mode::Warn, Mode::Observe];
    const BREAK_GLASS: [BreakGlass; 2] = [BreakGlass::Inactive, BreakGlass::Active];
    const PINNINGS: [Pinning; 3] = [
        Pinning::Settled,
        Pinning::Unpinned(UnpinnedCause::NotMutated),
        Pinning::Unpinned(UnpinnedCause::ChangedAfterPinning),
    ];

    /// `outcome` decided for a settled image without break-glass.
    fn settled(mode: Mode, outcome: &ImageOutcome) -> Decision {
        decide(Subject::settled(outcome), mode, BreakGlass::Inactive)
    }

    fn pinned(mode: Mode, outcome: &ImageOutcome, pinning: Pinning) -> Decision {
        decide(
            Subject::Image { outcome, pinning },
            mode,
            BreakGlass::Inactive,
        )
    }

    fn failed(kind: FailureKind) -> ImageOutcome {
        ImageOutcome::Failed {
            rule: Some("acme".into()),
            digest: None,
            kind,
            reason: "no attestation found for sha256:ab".into(),
        }
    }

    /// The verdict of an unproven subject, by mode and break-glass.
    fn unproven_verdict(mode: Mode, break_glass: BreakGlass) -> Verdict {
        match (mode, break_glass) {
            (Mode::Enforce, BreakGlass::Inactive) => Verdict::Denied,
            (Mode::Enforce, BreakGlass::Active) => Verdict::BreakGlass,
            (Mode::Warn, _) => Verdict::Warned,
            (Mode::Observe, _) => Verdict::WouldDeny,
        }
    }

    #[test]
    fn every_mode_outcome_break_glass_and_pinning_has_its_verdict() {
        let verified = verified();
        let unmatched_allow = ImageOutcome::Unmatched {
            action: UnmatchedAction::Allow,
        };
        let unmatched_deny = ImageOutcome::Unmatched {
            action: UnmatchedAction::Deny,
        };
        let no_attestation = failed(FailureKind::NoAttestation);
        let registry = failed(FailureKind::Registry);
        let timeout = failed(FailureKind::Timeout);
        let violation = failed(FailureKind::PolicyViolation);
        // (outcome, reason code when settled, reason code when unpinned, proven when settled)
        let table: [(&ImageOutcome, &str, &str, bool); 8] = [
            (&ImageOutcome::Exempt, "exempt", "exempt", true),
            (&unmatched_allow, "unmatched", "unmatched", true),
            (&unmatched_deny, "unmatched", "unmatched", false),
            (&verified, "verified", "unpinned_tag", true),
            (&no_attestation, "no_attestation", "no_attestation", false),
            (&registry, "registry_error", "registry_error", false),
            (&timeout, "timeout", "timeout", false),
            (&violation, "policy_violation", "policy_violation", false),
        ];
        for (outcome, settled_code, unpinned_code, proven) in table {
            for mode in MODES {
                for break_glass in BREAK_GLASS {
                    for pinning in PINNINGS {
                        let decision =
                            decide(Subject::Image { outcome, pinning }, mode, break_glass);
                        let is_settled = pinning == Pinning::Settled;
                        let (code, proven) = if is_settled {
                            (settled_code, proven)
                        } else {
                            (unpinned_code, proven && settled_code != "verified")
                        };
                        let expected = match outcome {
                            ImageOutcome::Exempt => Verdict::Exempt,
                            _ if proven => Verdict::Allowed,
                            _ => unproven_verdict(mode, break_glass),
                        };
                        let case = format!("{mode:?} {break_glass:?} {pinning:?} {outcome:?}");
                        assert_eq!(decision.verdict, expected, "{case}");
                        assert_eq!(decision.reason_code, code, "{case}");
                        assert_eq!(decision.admits(), expected != Verdict::Denied, "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn too_many_images_follow_the_mode_and_break_glass() {
        for mode in MODES {
            for break_glass in BREAK_GLASS {
                let decision = decide(
                    Subject::TooManyImages { count: 65, max: 64 },
                    mode,
                    break_glass,
                );
                assert_eq!(
                    decision.verdict,
                    unproven_verdict(mode, break_glass),
                    "{mode:?} {break_glass:?}"
                );
                assert_eq!(decision.reason_code, "too_many_images");
                assert_eq!(
                    decision.reason,
                    "65 container images, more than the 64 checked in one review"
                );
            }
        }
    }

    #[test]
    fn verdicts_keep_their_labels_on_the_wire() {
        let table = [
            (Verdict::Allowed, "allowed", true),
            (Verdict::Exempt, "exempt", true),
            (Verdict::Warned, "warned", true),
            (Verdict::WouldDeny, "would_deny", true),
            (Verdict::Denied, "denied", false),
            (Verdict::BreakGlass, "break_glass", true),
        ];
        for (verdict, label, admits) in table {
            assert_eq!(verdict.as_str(), label);
            assert_eq!(verdict.admits(), admits, "{label}");
            assert_eq!(
                serde_json::to_value(verdict).unwrap(),
                serde_json::Value::from(label)
            );
        }
    }

    #[test]
    fn modes_turn_a_failure_into_deny_warn_or_record() {
        let table = [
            (Mode::Enforce, Verdict::Denied, false),
            (Mode::Warn, Verdict::Warned, true),
            (Mode::Observe, Verdict::WouldDeny, true),
        ];
        for (mode, result, admit) in table {
            for kind in [
                FailureKind::NoAttestation,
                FailureKind::Registry,
                FailureKind::Timeout,
            ] {
                let decision = settled(mode, &failed(kind));
                assert_eq!(
                    (decision.verdict, decision.admits()),
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
        assert_eq!(settled(Mode::Enforce, &deny).verdict, Verdict::Denied);
        assert_eq!(settled(Mode::Warn, &deny).verdict, Verdict::Warned);
        assert_eq!(settled(Mode::Enforce, &allow).verdict, Verdict::Allowed);
        assert!(settled(Mode::Enforce, &deny)
            .reason
            .contains("unmatchedImages is deny"));
    }

    #[test]
    fn exempt_images_are_admitted_in_every_mode() {
        for mode in MODES {
            let decision = settled(mode, &ImageOutcome::Exempt);
            assert_eq!(
                (decision.verdict, decision.admits()),
                (Verdict::Exempt, true)
            );
        }
    }

    fn verified() -> ImageOutcome {
        fixtures::verified_outcome("sha256:ab", Default::default())
    }

    #[test]
    fn a_verified_image_still_pulled_by_tag_is_unproven_in_every_mode() {
        let table = [
            (Mode::Enforce, Verdict::Denied, false),
            (Mode::Warn, Verdict::Warned, true),
            (Mode::Observe, Verdict::WouldDeny, true),
        ];
        let causes = [
            (UnpinnedCause::NotMutated, "mutation is disabled"),
            (
                UnpinnedCause::ChangedAfterPinning,
                "reinvocationPolicy: IfNeeded",
            ),
        ];
        for (mode, result, admit) in table {
            let settled = pinned(mode, &verified(), Pinning::Settled);
            assert_eq!(
                (settled.verdict, settled.admits(), settled.reason_code),
                (Verdict::Allowed, true, "verified"),
                "{mode:?}"
            );
            for (cause, named) in causes {
                let decision = pinned(mode, &verified(), Pinning::Unpinned(cause));
                assert_eq!(
                    (decision.verdict, decision.admits(), decision.reason_code),
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
        for mode in MODES {
            for outcome in &outcomes {
                assert_eq!(
                    pinned(mode, outcome, unpinned),
                    settled(mode, outcome),
                    "{mode:?} {outcome:?}"
                );
            }
        }
    }

    #[test]
    fn judging_against_no_rule_accepts_nothing() {
        let ImageOutcome::Verified { attestation, .. } = verified() else {
            unreachable!("the fixture is verified")
        };
        assert_eq!(
            judge(
                &attestation,
                &[],
                &Destination::Unselected,
                jiff::Timestamp::now()
            )
            .map(Rule::name),
            Err(vec![
                "no policy rule to check the attestation against".to_owned()
            ])
        );
    }

    #[test]
    fn an_edit_of_the_provenance_annotation_is_refused_in_every_mode() {
        for (mode, break_glass) in MODES
            .into_iter()
            .flat_map(|mode| BREAK_GLASS.map(|glass| (mode, glass)))
        {
            let subject = Subject::AnnotationEdit {
                edit: AnnotationEdit::Removed,
                annotation: "provenance-gate.dev/provenance",
            };
            let decision = decide(subject, mode, break_glass);
            assert_eq!(
                decision.verdict,
                Verdict::Denied,
                "{mode:?} {break_glass:?}"
            );
            assert_eq!(decision.reason_code, "provenance_annotation_edit");
            assert!(
                decision.reason.contains("this UPDATE removes it"),
                "{}",
                decision.reason
            );
        }
    }
}
