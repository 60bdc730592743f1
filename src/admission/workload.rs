//! Reviews of Pods and workload controllers: list the images the request brings, check
//! each distinct one concurrently under the review's budget, decide per the namespace's
//! mode and break-glass, and answer (with the digest patch on `/mutate` for Pods).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::audit::RequestContext;
use crate::breakglass::{self, BreakGlassState};
use crate::cluster::{NamespaceInfo, ObjectRef};
use crate::decision::decide;
use crate::image::ImageReference;
use crate::image_check::{FailureKind, ImageCheck, ImageOutcome};
use crate::policy::{ImageClass, Mode, Policy};
use crate::registry::Registry;

use super::evidence::{self, ImageVerdict, Subject};
use super::images::{self, ContainerImage};
use super::patch::{self, ContainerProvenance, PROVENANCE_ANNOTATION};
use super::response::{bounded, AdmissionResponse, MAX_AUDIT_VALUE_CHARS};
use super::review::{AdmissionRequest, Operation, ReviewError};
use super::{Endpoint, WebhookState};

/// The subresource through which debug containers are added to a running Pod.
const EPHEMERAL_CONTAINERS: &str = "ephemeralcontainers";

pub(super) async fn review_workload<R: Registry + 'static>(
    state: &WebhookState<R>,
    request: &AdmissionRequest,
    endpoint: Endpoint,
    spec_pointer: &str,
) -> AdmissionResponse {
    let uid = request.uid.as_str();
    let is_pod = request.kind.kind == "Pod";
    let ephemeral_update = is_pod
        && request.operation == Operation::Update
        && request.sub_resource.as_deref() == Some(EPHEMERAL_CONTAINERS);
    // DELETE and CONNECT run nothing new; other subresources (status, binding, scale)
    // cannot change a container image.
    let (Operation::Create | Operation::Update, Some(object)) =
        (request.operation, request.object.as_ref())
    else {
        return AdmissionResponse::allow(uid);
    };
    if request.sub_resource.is_some() && !ephemeral_update {
        return AdmissionResponse::allow(uid);
    }
    let listed = match images::list_images(object, spec_pointer) {
        Ok(listed) => listed,
        Err(error) => {
            let error = ReviewError::Undecodable {
                kind: request.kind.kind.clone(),
                why: error.to_string(),
            };
            return AdmissionResponse::deny(
                uid,
                400,
                &format!("malformed AdmissionReview: {error}"),
            );
        }
    };
    let listed = match request.operation {
        Operation::Update => images::new_images(listed, request.old_object.as_ref(), spec_pointer),
        _ => listed,
    };
    if listed.is_empty() {
        return AdmissionResponse::allow(uid);
    }
    let Some(policy) = state.policy.current() else {
        // Fail closed; the server's readiness gate normally keeps reviews away until then.
        return AdmissionResponse::deny(
            uid,
            503,
            "no policy loaded yet: provenance-gate admits no workload until its policy is loaded",
        );
    };
    let now = (state.clock)();
    let mut subject = subject_of(request, object);
    // A namespace whose labels cannot be known is judged in the strictest mode: its own
    // could be enforce, and the API server may have sent it to a Fail entry.
    let (namespace, (environment, mode)) = match state.namespaces.lookup(&subject.namespace).await {
        Ok(namespace) => {
            let mode = policy.mode_for_namespace(&namespace.labels);
            (namespace, mode)
        }
        Err(error) => {
            subject.mode_fallback = Some(format!("{error}; judged in enforce mode"));
            (NamespaceInfo::default(), (None, Mode::Enforce))
        }
    };
    let break_glass = break_glass_of(&policy, &namespace.annotations, now);
    evidence::record_break_glass_state(&state.metrics, &subject.namespace, &break_glass);
    let mut warnings: Vec<String> = break_glass
        .ignored_warning(&subject.namespace, consequence(mode))
        .filter(|_| mode != Mode::Observe)
        .into_iter()
        .collect();

    if listed.len() > state.settings.max_images {
        return too_many_images(
            state,
            &subject,
            mode,
            &break_glass,
            listed.len(),
            endpoint,
            warnings,
        );
    }

    let distinct: Vec<String> = {
        let mut seen = BTreeSet::new();
        listed
            .iter()
            .filter(|image| seen.insert(image.image.as_str()))
            .map(|image| image.image.clone())
            .collect()
    };
    let checks = check_all(state, &policy, &distinct).await;
    let verdicts: Vec<ImageVerdict> = checks
        .into_iter()
        .map(|check| {
            let decision = decide(mode, &check.outcome);
            ImageVerdict::new(check, decision, &break_glass)
        })
        .collect();
    let allowed = verdicts.iter().all(|verdict| verdict.admit);

    warnings.extend(image_warnings(&verdicts, &break_glass));
    let message = denial_message(&verdicts);
    // Evidence once per attempt: /validate always, /mutate only when no validation follows.
    if endpoint == Endpoint::Validate || !allowed {
        evidence::write_decisions(
            state,
            &subject,
            mode,
            environment,
            &verdicts,
            &break_glass,
            now,
        );
        if !allowed {
            evidence::emit_denial(state, &subject, &message);
        }
        evidence::emit_break_glass(state, &subject, &verdicts, &break_glass);
    }

    let mut response = if allowed {
        AdmissionResponse::allow(uid)
    } else {
        AdmissionResponse::deny(uid, 403, &message)
    };
    response = response.with_warnings(warnings);
    response.audit_annotations = audit_annotations(&verdicts, allowed);
    // Controllers are never mutated: GitOps tools would see drift in what they apply.
    if allowed && endpoint == Endpoint::Mutate && is_pod {
        if request.operation == Operation::Create {
            response = response.with_patch(&pod_patch(object, &listed, &verdicts, true));
        } else if ephemeral_update {
            // The subresource only takes ephemeralContainers from the object; an annotation
            // sent with it would be dropped silently, so only the images are pinned.
            response = response.with_patch(&pod_patch(object, &listed, &verdicts, false));
        }
    }
    response
}

/// The object under review, named for records and Events.
fn subject_of(request: &AdmissionRequest, object: &Value) -> Subject {
    let metadata = |key: &str| {
        object
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| metadata("namespace"))
        .unwrap_or_default();
    // A Pod created from a template has no name yet, only its generateName prefix.
    let name = request
        .name
        .clone()
        .or_else(|| metadata("name"))
        .or_else(|| metadata("generateName"))
        .unwrap_or_default();
    Subject {
        context: RequestContext {
            uid: Some(request.uid.clone()),
            namespace: Some(namespace.clone()),
            kind: Some(request.kind.kind.clone()),
            name: Some(name.clone()),
        },
        regarding: ObjectRef {
            api_version: request.kind.api_version(),
            kind: request.kind.kind.clone(),
            namespace: Some(namespace.clone()).filter(|namespace| !namespace.is_empty()),
            name,
            uid: metadata("uid"),
        },
        namespace,
        dry_run: request.dry_run,
        mode_fallback: None,
    }
}

/// The namespace's break-glass under the current policy, its approver checked against the
/// current approvers. Without `breakGlass` in the policy, declared annotations are ignored,
/// with the reason.
fn break_glass_of(
    policy: &Policy,
    annotations: &BTreeMap<String, String>,
    now: jiff::Timestamp,
) -> BreakGlassState {
    match policy.break_glass() {
        Some(config) => breakglass::in_force(annotations, config, now),
        None if [
            breakglass::TICKET_ANNOTATION,
            breakglass::REASON_ANNOTATION,
            breakglass::EXPIRES_ANNOTATION,
        ]
        .iter()
        .any(|key| annotations.contains_key(*key)) =>
        {
            BreakGlassState::Malformed {
                why: "break-glass is not enabled in the policy".into(),
            }
        }
        None => BreakGlassState::Absent,
    }
}

/// What applies instead of an ignored break-glass.
fn consequence(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforcing",
        Mode::Warn => "warning only",
        Mode::Observe => "observing",
    }
}

/// Checks each image concurrently; whatever is unfinished when the budget runs out fails
/// with "verification timed out".
async fn check_all<R: Registry + 'static>(
    state: &WebhookState<R>,
    policy: &Arc<Policy>,
    images: &[String],
) -> Vec<ImageCheck> {
    let budget = state.settings.review_budget;
    let deadline = tokio::time::Instant::now() + budget;
    let tasks: Vec<_> = images
        .iter()
        .map(|image| {
            let checker = Arc::clone(&state.checker);
            let policy = Arc::clone(policy);
            let metrics = state.metrics.clone();
            let image = image.clone();
            // Spawned rather than awaited in place: a check that outlives the budget still
            // finishes (within its own per-image timeout) and fills the cache, so the API
            // server's retry is answered at once.
            tokio::spawn(async move {
                let started = Instant::now();
                let check = checker.check(&policy, &image).await;
                let covered = matches!(
                    &check.outcome,
                    ImageOutcome::Verified { .. } | ImageOutcome::Failed { rule: Some(_), .. }
                );
                if covered {
                    metrics
                        .verification_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                check
            })
        })
        .collect();
    let mut checks = Vec::with_capacity(images.len());
    for (image, task) in images.iter().zip(tasks) {
        let check = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(check)) => check,
            Ok(Err(error)) => unfinished(
                policy,
                image,
                FailureKind::NotVerified,
                format!("verification failed unexpectedly: {error}"),
            ),
            Err(_) => unfinished(
                policy,
                image,
                FailureKind::Timeout,
                format!(
                    "verification timed out (the review's budget of {:.1}s ran out)",
                    budget.as_secs_f64()
                ),
            ),
        };
        checks.push(check);
    }
    checks
}

/// A failed check for an image whose check did not finish.
fn unfinished(policy: &Policy, image: &str, kind: FailureKind, reason: String) -> ImageCheck {
    let rule = ImageReference::parse(image).ok().and_then(|reference| {
        match policy.classify_image(&reference.name()) {
            ImageClass::Rule(rule) => Some(rule.name().to_owned()),
            ImageClass::Exempt | ImageClass::Unmatched(_) => None,
        }
    });
    ImageCheck {
        image: image.to_owned(),
        pinned: None,
        outcome: ImageOutcome::Failed {
            rule,
            digest: None,
            kind,
            reason,
        },
    }
}

/// `image X denied: rule "acme": why` for each refused image.
fn denial_message(verdicts: &[ImageVerdict]) -> String {
    verdicts
        .iter()
        .filter(|verdict| !verdict.admit)
        .map(|verdict| {
            format!(
                "image {} denied: {}",
                verdict.check.image, verdict.decision.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One short warning per image admitted without proof (warn mode, break-glass).
fn image_warnings(verdicts: &[ImageVerdict], break_glass: &BreakGlassState) -> Vec<String> {
    verdicts
        .iter()
        .filter_map(|verdict| {
            let image = &verdict.check.image;
            let reason = &verdict.decision.reason;
            if verdict.by_break_glass() {
                let ticket = match break_glass {
                    BreakGlassState::Active { ticket, .. } => ticket.as_str(),
                    _ => "",
                };
                Some(format!(
                    "image {image} admitted under break-glass {ticket}: {reason}"
                ))
            } else if verdict.result == "warned" {
                Some(format!("image {image} not verified: {reason}"))
            } else {
                None
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
fn audit_annotations(verdicts: &[ImageVerdict], allowed: bool) -> BTreeMap<String, String> {
    let has = |result: &str| verdicts.iter().any(|verdict| verdict.result == result);
    let verdict = if !allowed {
        "denied"
    } else if has(evidence::BREAK_GLASS_RESULT) {
        "break_glass"
    } else if has("warned") {
        "warned"
    } else if has("would_deny") {
        "would_deny"
    } else {
        "allowed"
    };
    let entries: Vec<AuditImage> = verdicts
        .iter()
        .map(|verdict| AuditImage {
            image: &verdict.check.image,
            result: verdict.result,
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
        ("verdict".to_owned(), verdict.to_owned()),
        ("images".to_owned(), images),
    ])
}

/// Pins each verified image to its digest; on CREATE, also records the provenance of each
/// container (and removes a provenance annotation the requester wrote itself).
fn pod_patch(
    object: &Value,
    listed: &[ContainerImage],
    verdicts: &[ImageVerdict],
    annotate: bool,
) -> Vec<Value> {
    let verified = |image: &str| {
        verdicts.iter().find_map(|verdict| match &verdict.check {
            ImageCheck {
                image: checked,
                pinned,
                outcome:
                    ImageOutcome::Verified {
                        digest,
                        attestation,
                        ..
                    },
            } if checked == image => Some((pinned.as_deref(), digest, attestation)),
            _ => None,
        })
    };
    let mut operations = Vec::new();
    let mut provenance = BTreeMap::new();
    for container in listed {
        let Some((pinned, digest, attestation)) = verified(&container.image) else {
            continue;
        };
        let already_pinned = ImageReference::parse(&container.image)
            .map(|reference| reference.digest().is_some())
            .unwrap_or(false);
        if let (Some(pinned), false) = (pinned, already_pinned) {
            operations.push(patch::pin_image(&container.pointer, pinned));
        }
        let certificate = &attestation.certificate;
        provenance.insert(
            container.container.clone(),
            ContainerProvenance {
                source_repository: certificate.source_repository_uri.clone(),
                commit: certificate.source_repository_digest.clone(),
                workflow: certificate.build_config_uri.clone(),
                run_url: certificate.run_invocation_uri.clone(),
                digest: digest.clone(),
            },
        );
    }
    if annotate {
        if provenance.is_empty() {
            operations.extend(patch::remove_annotation(object, PROVENANCE_ANNOTATION));
        } else {
            let value = patch::provenance_annotation(&provenance);
            operations.push(patch::set_annotation(object, PROVENANCE_ANNOTATION, &value));
        }
    }
    operations
}

/// More images than one review checks: refused in enforce mode (unless break-glass),
/// admitted with a warning in warn mode, recorded only in observe mode.
fn too_many_images<R>(
    state: &WebhookState<R>,
    subject: &Subject,
    mode: Mode,
    break_glass: &BreakGlassState,
    count: usize,
    endpoint: Endpoint,
    mut warnings: Vec<String>,
) -> AdmissionResponse {
    let uid = subject.context.uid.as_deref().unwrap_or_default();
    let what = format!(
        "{} {} runs {count} container images, more than the {} checked in one review",
        subject.regarding.kind, subject.regarding.name, state.settings.max_images
    );
    let (result, allowed) = match mode {
        Mode::Enforce if break_glass.is_active() => (evidence::BREAK_GLASS_RESULT, true),
        Mode::Enforce => ("denied", false),
        Mode::Warn => ("warned", true),
        Mode::Observe => ("would_deny", true),
    };
    tracing::warn!(uid, namespace = %subject.namespace, count, "too many images in one review");
    if endpoint == Endpoint::Validate || !allowed {
        state
            .metrics
            .record_decision(mode.as_str(), result, "too_many_images");
        if !allowed {
            evidence::emit_denial(state, subject, &what);
        }
    }
    let audit = BTreeMap::from([
        ("verdict".to_owned(), result.to_owned()),
        (
            "images".to_owned(),
            format!("[{{\"reason\":\"too_many_images\",\"count\":{count}}}]"),
        ),
    ]);
    let mut response = if allowed {
        if mode != Mode::Observe {
            warnings.push(what);
        }
        AdmissionResponse::allow(uid)
    } else {
        AdmissionResponse::deny(uid, 403, &what)
    };
    response = response.with_warnings(warnings);
    response.audit_annotations = audit;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::UnmatchedAction;
    use crate::verify::claims::{CertificateClaims, Instance, VerifiedAttestation};
    use serde_json::json;

    const DIGEST: &str = "sha256:9c24ac7eca13411bee8f335f96442c0b5ef8de65ff1f85da6f16fcb0c046bd78";

    fn verified(image: &str) -> ImageCheck {
        ImageCheck {
            image: image.into(),
            pinned: Some(format!("ghcr.io/acme/api:1.2@{DIGEST}")),
            outcome: ImageOutcome::Verified {
                rule: "acme".into(),
                digest: DIGEST.into(),
                bundle_digest: "sha256:bb".into(),
                attestation: Box::new(VerifiedAttestation {
                    instance: Instance::Github,
                    bundle_digest: "sha256:bb".into(),
                    signed_at: None,
                    predicate_type: "https://slsa.dev/provenance/v1".into(),
                    subjects: Vec::new(),
                    certificate: CertificateClaims {
                        source_repository_uri: Some("https://github.com/acme/api".into()),
                        source_repository_digest: Some("7d2f".into()),
                        build_config_uri: Some("https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main".into()),
                        run_invocation_uri: Some("https://github.com/acme/api/actions/runs/1/attempts/1".into()),
                        ..CertificateClaims::default()
                    },
                    predicate: None,
                }),
                platforms_checked: None,
            },
        }
    }

    fn failed(image: &str, reason: &str) -> ImageCheck {
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

    fn verdicts(
        mode: Mode,
        checks: Vec<ImageCheck>,
        break_glass: &BreakGlassState,
    ) -> Vec<ImageVerdict> {
        checks
            .into_iter()
            .map(|check| {
                let decision = decide(mode, &check.outcome);
                ImageVerdict::new(check, decision, break_glass)
            })
            .collect()
    }

    fn container(
        list: images::ContainerList,
        name: &str,
        image: &str,
        pointer: &str,
    ) -> ContainerImage {
        ContainerImage {
            list,
            container: name.into(),
            image: image.into(),
            pointer: pointer.into(),
        }
    }

    fn active() -> BreakGlassState {
        BreakGlassState::Active {
            ticket: "INC-4711".into(),
            reason: "hotfix".into(),
            expires: "2026-11-28T18:00:00Z".parse().unwrap(),
            approved_by: "alice".into(),
        }
    }

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
        let annotations = audit_annotations(&verdicts, false);
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
        assert_eq!(glass[0].result, "break_glass");
        assert!(glass[0].admit);
        assert_eq!(
            image_warnings(&glass, &active()),
            ["image ghcr.io/acme/w:1 admitted under break-glass INC-4711: rule \"acme\": no attestation found"]
        );
        assert_eq!(audit_annotations(&glass, true)["verdict"], "break_glass");
        // Break-glass changes nothing where the mode admits anyway.
        let warned = verdicts(
            Mode::Warn,
            vec![failed("ghcr.io/acme/w:1", reason)],
            &active(),
        );
        assert_eq!(warned[0].result, "warned");
    }

    #[test]
    fn the_pod_patch_pins_verified_images_and_records_their_provenance() {
        use images::ContainerList::{Containers, InitContainers};
        let listed = [
            container(
                InitContainers,
                "init",
                "ghcr.io/acme/api:1.2",
                "/spec/initContainers/0/image",
            ),
            container(
                Containers,
                "api",
                "ghcr.io/acme/api:1.2",
                "/spec/containers/0/image",
            ),
            container(
                Containers,
                "pinned",
                &format!("ghcr.io/acme/api@{DIGEST}"),
                "/spec/containers/1/image",
            ),
            container(
                Containers,
                "worker",
                "ghcr.io/acme/worker:2",
                "/spec/containers/2/image",
            ),
        ];
        let checks = vec![
            verified("ghcr.io/acme/api:1.2"),
            verified(&format!("ghcr.io/acme/api@{DIGEST}")),
            failed("ghcr.io/acme/worker:2", "no attestation"),
        ];
        let verdicts = verdicts(Mode::Warn, checks, &BreakGlassState::Absent);
        let object = json!({"metadata": {"name": "p"}});
        let pinned = format!("ghcr.io/acme/api:1.2@{DIGEST}");
        let entry = format!(
            r#"{{"sourceRepository":"https://github.com/acme/api","commit":"7d2f","workflow":"https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main","runUrl":"https://github.com/acme/api/actions/runs/1/attempts/1","digest":"{DIGEST}"}}"#
        );
        let annotation = format!(r#"{{"api":{entry},"init":{entry},"pinned":{entry}}}"#);
        assert_eq!(
            pod_patch(&object, &listed, &verdicts, true),
            vec![
                json!({"op": "replace", "path": "/spec/initContainers/0/image", "value": pinned}),
                json!({"op": "replace", "path": "/spec/containers/0/image", "value": pinned}),
                json!({"op": "add", "path": "/metadata/annotations", "value": {"provenance-gate.dev/provenance": annotation}}),
            ]
        );
        // Without the annotation (ephemeral containers): pins only.
        assert_eq!(pod_patch(&object, &listed, &verdicts, false).len(), 2);
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
        let images = &audit_annotations(&verdicts, true)["images"];
        assert!(images.chars().count() <= MAX_AUDIT_VALUE_CHARS);
        let parsed: Vec<Value> = serde_json::from_str(images).expect("still JSON");
        assert!(!parsed.is_empty() && parsed.len() < 200);
    }
}
