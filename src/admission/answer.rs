//! What the answer to a Pod or workload review says about its images: the denial message,
//! the warnings, the audit annotations. Worded from the decisions, never deciding.

use std::collections::BTreeMap;

use serde::Serialize;

use super::response::{bounded, MAX_AUDIT_VALUE_CHARS};
use crate::check::ImageOutcome;
use crate::decision::breakglass::BreakGlassState;
use crate::decision::{review_verdict, Decision, ImageVerdict, Verdict};

/// Longest image reference quoted in a denial message (characters): longer than any valid
/// reference, so that an invalid 10,000-character one cannot push out why it was denied.
const MAX_IMAGE_IN_MESSAGE: usize = 1024;

/// `image X denied: rule "acme": why` for each refused image.
pub fn denial_message(verdicts: &[ImageVerdict]) -> String {
    verdicts
        .iter()
        .filter(|verdict| !verdict.admits())
        .map(|verdict| {
            format!(
                "image {} denied: {}",
                bounded(&verdict.check.image, MAX_IMAGE_IN_MESSAGE),
                verdict.decision.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Longest image reference quoted in a warning (characters): kubectl's warning lines are cut
/// at [`MAX_WARNING_CHARS`](super::response::MAX_WARNING_CHARS), and the reason must survive
/// a long reference.
const MAX_IMAGE_IN_WARNING: usize = 80;

/// One short warning per image admitted without proof (warn mode, break-glass).
pub fn image_warnings(verdicts: &[ImageVerdict], break_glass: &BreakGlassState) -> Vec<String> {
    verdicts
        .iter()
        .filter_map(|verdict| {
            let image = bounded(&verdict.check.image, MAX_IMAGE_IN_WARNING);
            let reason = &verdict.decision.reason;
            match verdict.verdict() {
                Verdict::BreakGlass => {
                    let ticket = match break_glass {
                        BreakGlassState::Active { ticket, .. } => ticket.as_str(),
                        _ => "",
                    };
                    Some(format!(
                        "image {image} admitted under break-glass {ticket}: {reason}"
                    ))
                }
                Verdict::Warned => Some(format!("image {image} not verified: {reason}")),
                _ => None,
            }
        })
        .collect()
}

/// One image in the `images` audit annotation.
#[derive(Serialize)]
struct AuditImage<'a> {
    image: &'a str,
    result: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
}

/// `verdict` (the review's) and `images` (a JSON list, one entry per image). The API
/// server prefixes each key with the webhook's name.
pub fn audit_annotations(verdicts: &[ImageVerdict]) -> BTreeMap<String, String> {
    let verdict = review_verdict(verdicts);
    let entries: Vec<AuditImage> = verdicts
        .iter()
        .map(|verdict| AuditImage {
            image: &verdict.check.image,
            result: verdict.verdict().as_str(),
            reason: verdict.decision.reason_code,
            digest: match &verdict.check.outcome {
                ImageOutcome::Verified { digest, .. } => Some(digest.as_str()),
                ImageOutcome::Failed { digest, .. } => digest.as_deref(),
                _ => None,
            },
        })
        .collect();
    // Drop entries from the end until the list fits, rather than cut the JSON.
    let mut shown = entries.len();
    let images = loop {
        let text = serde_json::to_string(&entries[..shown]).unwrap_or_default();
        if text.chars().count() <= MAX_AUDIT_VALUE_CHARS || shown == 0 {
            break bounded(&text, MAX_AUDIT_VALUE_CHARS);
        }
        shown -= 1;
    };
    BTreeMap::from([
        ("verdict".to_owned(), verdict.as_str().to_owned()),
        ("images".to_owned(), images),
    ])
}

/// The audit annotations of a review with more images than one review checks.
pub fn too_many_images_audit(decision: &Decision, count: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("verdict".to_owned(), decision.verdict.as_str().to_owned()),
        (
            "images".to_owned(),
            format!(
                "[{{\"reason\":\"{}\",\"count\":{count}}}]",
                decision.reason_code
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::fixtures::{active, failed, verdicts, verified, DIGEST};
    use crate::check::ImageCheck;
    use crate::policy::{Mode, UnmatchedAction};
    use serde_json::{json, Value};

    #[test]
    fn the_denial_message_names_image_rule_and_why() {
        let checks = vec![
            verified("ghcr.io/acme/api:1.2"),
            failed(
                "ghcr.io/acme/worker:2",
                &format!("no attestation found for {DIGEST}"),
            ),
            ImageCheck {
                image: "nginx".into(),
                pinned: None,
                outcome: ImageOutcome::Unmatched {
                    action: UnmatchedAction::Deny,
                },
            },
        ];
        let verdicts = verdicts(Mode::Enforce, checks, &BreakGlassState::Absent);
        assert_eq!(
            denial_message(&verdicts),
            format!(
                "image ghcr.io/acme/worker:2 denied: rule \"acme\": no attestation found for {DIGEST}; \
                 image nginx denied: no policy rule covers this image and unmatchedImages is deny; add a rule for it or exempt it"
            )
        );
        let annotations = audit_annotations(&verdicts);
        assert_eq!(annotations["verdict"], "denied");
        assert_eq!(
            serde_json::from_str::<Value>(&annotations["images"]).unwrap(),
            json!([
                {"image": "ghcr.io/acme/api:1.2", "result": "allowed", "reason": "verified", "digest": DIGEST},
                {"image": "ghcr.io/acme/worker:2", "result": "denied", "reason": "no_attestation", "digest": DIGEST},
                {"image": "nginx", "result": "denied", "reason": "unmatched"},
            ])
        );
    }

    #[test]
    fn warnings_come_from_warn_mode_and_break_glass_only() {
        let reason = "no attestation found";
        let warn = verdicts(
            Mode::Warn,
            vec![failed("ghcr.io/acme/w:1", reason)],
            &BreakGlassState::Absent,
        );
        assert_eq!(
            image_warnings(&warn, &BreakGlassState::Absent),
            ["image ghcr.io/acme/w:1 not verified: rule \"acme\": no attestation found"]
        );
        let observe = verdicts(
            Mode::Observe,
            vec![failed("ghcr.io/acme/w:1", reason)],
            &BreakGlassState::Absent,
        );
        assert!(image_warnings(&observe, &BreakGlassState::Absent).is_empty());
        let glass = verdicts(
            Mode::Enforce,
            vec![failed("ghcr.io/acme/w:1", reason)],
            &active(),
        );
        assert_eq!(glass[0].verdict().as_str(), "break_glass");
        assert!(glass[0].admits());
        assert_eq!(
            image_warnings(&glass, &active()),
            ["image ghcr.io/acme/w:1 admitted under break-glass INC-4711: rule \"acme\": no attestation found"]
        );
        assert_eq!(audit_annotations(&glass)["verdict"], "break_glass");
        // Break-glass changes nothing where the mode admits anyway.
        let warned = verdicts(
            Mode::Warn,
            vec![failed("ghcr.io/acme/w:1", reason)],
            &active(),
        );
        assert_eq!(warned[0].verdict().as_str(), "warned");
    }

    #[test]
    fn a_warning_for_a_huge_reference_still_says_why() {
        let image = format!("ghcr.io/acme/{}:1", "x".repeat(10_000));
        let warn = verdicts(
            Mode::Warn,
            vec![failed(&image, "no attestation found")],
            &BreakGlassState::Absent,
        );
        let answer = super::super::response::AdmissionResponse::allow("uid")
            .with_warnings(image_warnings(&warn, &BreakGlassState::Absent));
        let [warning] = answer.warnings.as_slice() else {
            panic!("one warning expected: {:?}", answer.warnings);
        };
        assert!(
            warning.ends_with("not verified: rule \"acme\": no attestation found"),
            "{warning}"
        );
        assert!(warning.starts_with("image ghcr.io/acme/xxx"), "{warning}");
    }

    #[test]
    fn long_audit_lists_are_cut_between_entries() {
        let checks = (0..200)
            .map(|index| {
                failed(
                    &format!("ghcr.io/acme/{}:{index}", "x".repeat(60)),
                    "no attestation",
                )
            })
            .collect();
        let verdicts = verdicts(Mode::Observe, checks, &BreakGlassState::Absent);
        let images = &audit_annotations(&verdicts)["images"];
        assert!(images.chars().count() <= MAX_AUDIT_VALUE_CHARS);
        let parsed: Vec<Value> = serde_json::from_str(images).expect("still JSON");
        assert!(!parsed.is_empty() && parsed.len() < 200);
    }
}
