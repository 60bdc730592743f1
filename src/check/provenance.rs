//! The provenance check of one artifact: verify each of its bundles, then hold every
//! verified attestation against the candidate policy rules. Any one bundle that verifies
//! and satisfies a rule is enough; why every other one failed is kept as evidence.

use serde::Serialize;

use crate::check::{FailureKind, ImageOutcome};
use crate::decision;
use crate::policy::{Destination, Rule};
use crate::verify::{
    verify_bundle, ArtifactInput, ParsedBundle, TrustedRoots, VerifiedAttestation,
};

/// What happened to one bundle.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleReport {
    /// 1-based position among the bundles considered.
    pub index: usize,
    pub bundle_digest: String,
    /// Whether the bundle verified under a trusted root and satisfied a rule.
    pub accepted: bool,
    /// The rule it satisfied, if any.
    pub rule: Option<String>,
    /// Present once the bundle verified cryptographically.
    pub attestation: Option<VerifiedAttestation>,
    /// Why it was not accepted, one line each: the verification failure, or each rule's
    /// violations prefixed with the rule name.
    pub reasons: Vec<String>,
}

/// The verdict over all bundles of one artifact.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceVerdict {
    pub allowed: bool,
    pub bundles: Vec<BundleReport>,
}

impl ProvenanceVerdict {
    /// The first accepted bundle: the evidence the artifact is admitted on.
    pub fn accepted(&self) -> Option<&BundleReport> {
        self.bundles.iter().find(|bundle| bundle.accepted)
    }

    /// The check's outcome for the artifact `digest`, as the webhook's image checks state
    /// theirs, for [`decision::decide`].
    pub fn outcome(&self, digest: &str) -> ImageOutcome {
        if let Some(BundleReport {
            rule: Some(rule),
            attestation: Some(attestation),
            bundle_digest,
            ..
        }) = self.accepted()
        {
            return ImageOutcome::Verified {
                rule: rule.clone(),
                digest: digest.to_owned(),
                bundle_digest: bundle_digest.clone(),
                attestation: Box::new(attestation.clone()),
                platforms_checked: None,
                source: None,
                source_url: None,
                attestations: Vec::new(),
            };
        }
        let kind = if self.bundles.is_empty() {
            FailureKind::NoAttestation
        } else if self
            .bundles
            .iter()
            .any(|bundle| bundle.attestation.is_some())
        {
            FailureKind::PolicyViolation
        } else {
            FailureKind::NotVerified
        };
        ImageOutcome::Failed {
            rule: None,
            digest: Some(digest.to_owned()),
            kind,
            reason: self.reasons().join("; "),
        }
    }

    /// Every reason, prefixed with its bundle when there is more than one.
    pub fn reasons(&self) -> Vec<String> {
        if self.bundles.is_empty() {
            return vec!["no attestation bundle to check".into()];
        }
        let several = self.bundles.len() > 1;
        self.bundles
            .iter()
            .flat_map(|bundle| {
                bundle.reasons.iter().map(move |reason| {
                    if several {
                        format!("bundle {}: {reason}", bundle.index)
                    } else {
                        reason.clone()
                    }
                })
            })
            .collect()
    }
}

/// Verifies every bundle for `artifact` and checks each verified one against `rules`, as
/// reviewed now by the wall clock.
pub fn check_bundles(
    roots: &TrustedRoots,
    bundles: &[ParsedBundle],
    artifact: ArtifactInput<'_>,
    rules: &[&Rule],
) -> ProvenanceVerdict {
    check_bundles_at(roots, bundles, artifact, rules, jiff::Timestamp::now())
}

/// Like [`check_bundles`], as reviewed at `now` (rules' `maxAge` is measured to it).
pub fn check_bundles_at(
    roots: &TrustedRoots,
    bundles: &[ParsedBundle],
    artifact: ArtifactInput<'_>,
    rules: &[&Rule],
    now: jiff::Timestamp,
) -> ProvenanceVerdict {
    let reports: Vec<BundleReport> = bundles
        .iter()
        .map(|bundle| check_one(roots, bundle, artifact, rules, now))
        .collect();
    ProvenanceVerdict {
        allowed: reports.iter().any(|report| report.accepted),
        bundles: reports,
    }
}

fn check_one(
    roots: &TrustedRoots,
    bundle: &ParsedBundle,
    artifact: ArtifactInput<'_>,
    rules: &[&Rule],
    now: jiff::Timestamp,
) -> BundleReport {
    let mut report = BundleReport {
        index: bundle.index,
        bundle_digest: bundle.digest.clone(),
        accepted: false,
        rule: None,
        attestation: None,
        reasons: Vec::new(),
    };
    let attestation = match verify_bundle(roots, bundle, artifact) {
        Ok(attestation) => attestation,
        Err(error) => {
            report.reasons.push(error.to_string());
            return report;
        }
    };
    // A bundle on its own is judged for no namespace: the rules alone, without any
    // environment's constraints.
    match decision::judge(&attestation, rules, &Destination::Unselected, now) {
        Ok(rule) => {
            report.accepted = true;
            report.rule = Some(rule.name().to_owned());
        }
        Err(reasons) => report.reasons = reasons,
    }
    report.attestation = Some(attestation);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{decide, fixtures::verified_outcome, BreakGlass, Subject, Verdict};
    use crate::policy::Mode;

    fn report(accepted: bool, verified: bool) -> BundleReport {
        let ImageOutcome::Verified { attestation, .. } =
            verified_outcome("sha256:ab", Default::default())
        else {
            unreachable!("the fixture is verified")
        };
        BundleReport {
            index: 1,
            bundle_digest: "sha256:bb".into(),
            accepted,
            rule: accepted.then(|| "acme".to_owned()),
            attestation: verified.then_some(*attestation),
            reasons: if accepted {
                Vec::new()
            } else {
                vec!["why not".into()]
            },
        }
    }

    /// `verify-bundle` decides as the webhook does in enforce mode, on the same outcomes.
    #[test]
    fn a_bundle_check_states_its_outcome_like_an_image_check() {
        let table = [
            (
                Vec::new(),
                Some(FailureKind::NoAttestation),
                Verdict::Denied,
            ),
            (
                vec![report(false, false)],
                Some(FailureKind::NotVerified),
                Verdict::Denied,
            ),
            (
                vec![report(false, true)],
                Some(FailureKind::PolicyViolation),
                Verdict::Denied,
            ),
            (
                vec![report(false, false), report(true, true)],
                None,
                Verdict::Allowed,
            ),
        ];
        for (bundles, failure, verdict) in table {
            let allowed = bundles.iter().any(|bundle| bundle.accepted);
            let check = ProvenanceVerdict { allowed, bundles };
            let outcome = check.outcome("sha256:ab");
            match (&outcome, failure) {
                (ImageOutcome::Verified { rule, digest, .. }, None) => {
                    assert_eq!((rule.as_str(), digest.as_str()), ("acme", "sha256:ab"));
                }
                (ImageOutcome::Failed { kind, reason, .. }, Some(expected)) => {
                    assert_eq!(*kind, expected);
                    assert_eq!(reason, &check.reasons().join("; "));
                }
                _ => panic!("{outcome:?} for {failure:?}"),
            }
            let decision = decide(
                Subject::settled(&outcome),
                Mode::Enforce,
                BreakGlass::Inactive,
            );
            assert_eq!(decision.verdict, verdict, "{outcome:?}");
            assert_eq!(decision.admits(), allowed);
        }
    }
}
