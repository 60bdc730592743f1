//! Checks, verdicts and pod images for the tests of the admission modules.

use serde_json::{json, Value};

use super::images::{ImageSource, PodImage};
use super::patch::PROVENANCE_ANNOTATION;
use crate::check::{FailureKind, ImageCheck, ImageOutcome};
use crate::decision::breakglass::BreakGlassState;
use crate::decision::fixtures::verified_outcome;
use crate::decision::{decide, ImageVerdict, Subject as Decided};
use crate::policy::Mode;
use crate::verify::claims::CertificateClaims;

pub(crate) const DIGEST: &str =
    "sha256:9c24ac7eca13411bee8f335f96442c0b5ef8de65ff1f85da6f16fcb0c046bd78";

pub(crate) fn verified(image: &str) -> ImageCheck {
    ImageCheck {
        image: image.into(),
        pinned: Some(format!("ghcr.io/acme/api:1.2@{DIGEST}")),
        outcome: verified_outcome(
            DIGEST,
            CertificateClaims {
                source_repository_uri: Some("https://github.com/acme/api".into()),
                source_repository_digest: Some("7d2f".into()),
                build_config_uri: Some(
                    "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main"
                        .into(),
                ),
                run_invocation_uri: Some(
                    "https://github.com/acme/api/actions/runs/1/attempts/1".into(),
                ),
                ..CertificateClaims::default()
            },
        ),
    }
}

pub(crate) fn failed(image: &str, reason: &str) -> ImageCheck {
    ImageCheck {
        image: image.into(),
        pinned: None,
        outcome: ImageOutcome::Failed {
            rule: Some("acme".into()),
            digest: Some(DIGEST.into()),
            kind: FailureKind::NoAttestation,
            reason: reason.into(),
        },
    }
}

pub(crate) fn verdicts(
    mode: Mode,
    checks: Vec<ImageCheck>,
    break_glass: &BreakGlassState,
) -> Vec<ImageVerdict> {
    checks
        .into_iter()
        .map(|check| {
            let decision = decide(Decided::settled(&check.outcome), mode, break_glass.into());
            ImageVerdict { check, decision }
        })
        .collect()
}

pub(crate) fn pod_image(source: ImageSource, name: &str, image: &str, pointer: &str) -> PodImage {
    PodImage {
        source,
        name: name.into(),
        image: image.into(),
        pointer: pointer.into(),
    }
}

/// The annotation entry [`verified`] yields.
pub(crate) fn provenance_entry() -> String {
    format!(
        r#"{{"sourceRepository":"https://github.com/acme/api","commit":"7d2f","workflow":"https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main","runUrl":"https://github.com/acme/api/actions/runs/1/attempts/1","digest":"{DIGEST}"}}"#
    )
}

pub(crate) fn annotated(annotation: Option<&str>) -> Value {
    match annotation {
        Some(value) => json!({"metadata": {"annotations": {PROVENANCE_ANNOTATION: value}}}),
        None => json!({"metadata": {"annotations": {"team": "payments"}}}),
    }
}

pub(crate) fn active() -> BreakGlassState {
    BreakGlassState::Active {
        ticket: "INC-4711".into(),
        reason: "hotfix".into(),
        expires: "2026-11-28T18:00:00Z".parse().unwrap(),
        approved_by: "alice".into(),
    }
}
