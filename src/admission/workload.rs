//! Reviews of Pods and workload controllers: list the images the request brings, check
//! each distinct one concurrently under the review's budget, decide per the namespace's
//! mode and break-glass, and answer (with the digest patch on `/mutate` for Pods).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tracing::Instrument as _;

use crate::check::reference::ImageReference;
use crate::check::{FailureKind, ImageCheck, ImageOutcome};
use crate::cluster::{NamespaceInfo, ObjectRef};
use crate::decision::breakglass::{self, BreakGlassState};
use crate::decision::{decide, BreakGlass, Pinning, Subject as Decided, UnpinnedCause, Verdict};
use crate::evidence::records::RequestContext;
use crate::policy::{ImageClass, Mode, Policy};
use crate::registry::Registry;

use super::evidence::{self, ImageVerdict, Subject};
use super::images::{self, PodImage};
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
    let all_images = match images::list_images(object, spec_pointer) {
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
    let old_object = match request.operation {
        Operation::Update => request.old_object.as_ref(),
        _ => None,
    };
    // The subresource takes only ephemeralContainers from the object, so a Pod's own
    // UPDATE is the one that can rewrite the annotation.
    let pod_update = is_pod && request.operation == Operation::Update && !ephemeral_update;
    let images_changed = old_object
        .and_then(|old| images::list_images(old, spec_pointer).ok())
        .is_none_or(|before| before != all_images);
    if pod_update {
        if let Some(edit) = provenance_annotation_edit(object, old_object, images_changed) {
            return refuse_annotation_edit(state, request, object, edit);
        }
    }
    let listed = match request.operation {
        Operation::Update => images::new_images(all_images.clone(), old_object, spec_pointer),
        _ => all_images.clone(),
    };
    let annotation = match (ephemeral_update, request.operation) {
        (true, _) => AnnotationPlan::Keep,
        (false, Operation::Update) => AnnotationPlan::Write {
            carried_from: old_object,
        },
        (false, _) => AnnotationPlan::Write { carried_from: None },
    };
    if listed.is_empty() {
        // Images swapped between containers bring nothing new, yet the annotation follows them.
        if endpoint == Endpoint::Mutate && pod_update && images_changed {
            let operations = pod_patch(object, &all_images, &[], &[], annotation);
            return AdmissionResponse::allow(uid).with_patch(&operations);
        }
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

    let glass = BreakGlass::from(&break_glass);
    if listed.len() > state.settings.max_images {
        return too_many_images(
            state,
            &subject,
            mode,
            glass,
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
    let checks = check_all(state, &policy, &distinct, now).await;
    let pinned_here = pinned_in_this_request(object, old_object, ephemeral_update);
    let verdicts: Vec<ImageVerdict> = checks
        .into_iter()
        .map(|check| {
            let pinning = pinning_of(endpoint, is_pod, &check.image, &listed, &pinned_here);
            let decision = decide(
                Decided::Image {
                    outcome: &check.outcome,
                    pinning,
                },
                mode,
                glass,
            );
            ImageVerdict { check, decision }
        })
        .collect();
    let allowed = verdicts.iter().all(ImageVerdict::admits);

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
        let operations = pod_patch(object, &all_images, &listed, &verdicts, annotation);
        response = response.with_patch(&operations);
    }
    response
}

/// What a Pod UPDATE did to the provenance annotation while running the same images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnnotationEdit {
    Added,
    Changed,
    Removed,
}

impl AnnotationEdit {
    fn as_str(self) -> &'static str {
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

/// The edit of the provenance annotation that an UPDATE makes on its own. With an image
/// change it is none: `/mutate` rewrites the annotation then.
fn provenance_annotation_edit(
    object: &Value,
    old_object: Option<&Value>,
    images_changed: bool,
) -> Option<AnnotationEdit> {
    if images_changed {
        return None;
    }
    let before = old_object.and_then(|old| patch::annotation(old, PROVENANCE_ANNOTATION));
    match (before, patch::annotation(object, PROVENANCE_ANNOTATION)) {
        (None, None) => None,
        (None, Some(_)) => Some(AnnotationEdit::Added),
        (Some(_), None) => Some(AnnotationEdit::Removed),
        (Some(before), Some(after)) => (before != after).then_some(AnnotationEdit::Changed),
    }
}

/// Refuses an edit of the provenance annotation, in every mode: the annotation is the
/// gate's record of what it verified, not a verdict on an image, and refusing the edit
/// stops no container. A record forged in an observe namespace would still mislead once the
/// namespace enforces.
fn refuse_annotation_edit<R>(
    state: &WebhookState<R>,
    request: &AdmissionRequest,
    object: &Value,
    edit: AnnotationEdit,
) -> AdmissionResponse {
    let subject = subject_of(request, object);
    let message = format!(
        "the annotation {PROVENANCE_ANNOTATION} is provenance-gate's record of what it verified \
         and only provenance-gate writes it: this UPDATE {} it without changing an image",
        edit.verb()
    );
    tracing::warn!(uid = %request.uid, namespace = %subject.namespace, edit = edit.as_str(), "provenance annotation edit refused");
    evidence::emit_denial(state, &subject, &message);
    let mut response = AdmissionResponse::deny(&request.uid, 403, &message);
    response.audit_annotations = BTreeMap::from([
        ("verdict".to_owned(), Verdict::Denied.as_str().to_owned()),
        ("provenanceAnnotation".to_owned(), edit.as_str().to_owned()),
    ]);
    response
}

/// The keys of the provenance annotation that `/mutate` wrote in this request: every key on
/// CREATE (a requester's own value is replaced there), the keys whose entry differs from the
/// old object's on UPDATE, none for the ephemeral containers subresource (which keeps the
/// annotation).
fn pinned_in_this_request(
    object: &Value,
    old_object: Option<&Value>,
    ephemeral_update: bool,
) -> BTreeSet<String> {
    if ephemeral_update {
        return BTreeSet::new();
    }
    let before = old_object
        .map(patch::provenance_entries)
        .unwrap_or_default();
    patch::provenance_entries(object)
        .into_iter()
        .filter(|(key, entry)| before.get(key) != Some(entry))
        .map(|(key, _)| key)
        .collect()
}

/// How the Pod under review pulls `image`. `/mutate` pins what it verifies in its own
/// answer, and a controller's template is never pulled as written; a Pod seen by
/// `/validate` pulls what its spec names now.
fn pinning_of(
    endpoint: Endpoint,
    is_pod: bool,
    image: &str,
    listed: &[PodImage],
    pinned_here: &BTreeSet<String>,
) -> Pinning {
    if endpoint == Endpoint::Mutate || !is_pod || names_a_digest(image) {
        return Pinning::Settled;
    }
    let pinned_then_changed = listed
        .iter()
        .any(|entry| entry.image == image && pinned_here.contains(&entry.annotation_key()));
    Pinning::Unpinned(if pinned_then_changed {
        UnpinnedCause::ChangedAfterPinning
    } else {
        UnpinnedCause::NotMutated
    })
}

/// Whether the pod spec already names `image` by digest: then it is pulled as verified and
/// never repinned.
fn names_a_digest(image: &str) -> bool {
    ImageReference::parse(image).is_ok_and(|reference| reference.digest().is_some())
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
            caller: Some(request.caller.clone()),
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
    now: jiff::Timestamp,
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
            // The span's parent is the review's, so registry and verification logs keep its uid.
            let span = tracing::info_span!("image_check", image = %image);
            tokio::spawn(
                async move {
                    let started = Instant::now();
                    let check = checker.check_at(&policy, &image, now).await;
                    let covered = matches!(
                        &check.outcome,
                        ImageOutcome::Verified { .. } | ImageOutcome::Failed { rule: Some(_), .. }
                    );
                    if covered {
                        metrics
                            .verification_duration
                            .observe(started.elapsed().as_secs_f64());
                    }
                    tracing::debug!(
                        verified = matches!(check.outcome, ImageOutcome::Verified { .. }),
                        "image checked"
                    );
                    check
                }
                .instrument(span),
            )
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

/// Longest image reference quoted in a denial message (characters): longer than any valid
/// reference, so that an invalid 10,000-character one cannot push out why it was denied.
const MAX_IMAGE_IN_MESSAGE: usize = 1024;

/// `image X denied: rule "acme": why` for each refused image.
fn denial_message(verdicts: &[ImageVerdict]) -> String {
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

/// One short warning per image admitted without proof (warn mode, break-glass).
fn image_warnings(verdicts: &[ImageVerdict], break_glass: &BreakGlassState) -> Vec<String> {
    verdicts
        .iter()
        .filter_map(|verdict| {
            let image = &verdict.check.image;
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
fn audit_annotations(verdicts: &[ImageVerdict], allowed: bool) -> BTreeMap<String, String> {
    let has = |wanted: Verdict| verdicts.iter().any(|verdict| verdict.verdict() == wanted);
    // The review's verdict is its most telling image verdict.
    let verdict = if !allowed {
        Verdict::Denied
    } else {
        [Verdict::BreakGlass, Verdict::Warned, Verdict::WouldDeny]
            .into_iter()
            .find(|&verdict| has(verdict))
            .unwrap_or(Verdict::Allowed)
    };
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

/// What `/mutate` does with the provenance annotation.
#[derive(Debug, Clone, Copy)]
enum AnnotationPlan<'a> {
    /// `pods/ephemeralcontainers`: the subresource takes only ephemeralContainers from the
    /// object, and an annotation sent with it would be dropped silently.
    Keep,
    /// Written from this review's verified images, plus, on UPDATE, the old object's entries
    /// for the images it ran already; a value the requester wrote is replaced (or removed).
    Write { carried_from: Option<&'a Value> },
}

/// Pins each verified image that the request `brought` to its digest and records the
/// provenance of each container and image volume as `plan` says. A container that kept its
/// image keeps it as written (a new reference would restart it) and its recorded provenance.
fn pod_patch(
    object: &Value,
    all_images: &[PodImage],
    brought: &[PodImage],
    verdicts: &[ImageVerdict],
    plan: AnnotationPlan,
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
    // What the old object's images were admitted on, by image: an UPDATE may move an image
    // to another container, and its entry moves with it.
    let carried: BTreeMap<String, ContainerProvenance> = match plan {
        AnnotationPlan::Write {
            carried_from: Some(old),
        } => {
            let entries = patch::provenance_entries(old);
            images::list_images(old, "/spec")
                .unwrap_or_default()
                .into_iter()
                .filter_map(|before| {
                    let entry = entries.get(&before.annotation_key())?;
                    Some((before.image, entry.clone()))
                })
                .collect()
        }
        _ => BTreeMap::new(),
    };
    let mut operations = Vec::new();
    let mut provenance = BTreeMap::new();
    for image in all_images {
        let checked_here = brought.iter().any(|new| new.pointer == image.pointer);
        let Some((pinned, digest, attestation)) = verified(&image.image).filter(|_| checked_here)
        else {
            if let Some(entry) = carried.get(&image.image) {
                provenance.insert(image.annotation_key(), entry.clone());
            }
            continue;
        };
        if let (Some(pinned), false) = (pinned, names_a_digest(&image.image)) {
            operations.push(patch::pin_image(&image.pointer, pinned));
        }
        let certificate = &attestation.certificate;
        provenance.insert(
            image.annotation_key(),
            ContainerProvenance {
                source_repository: certificate.source_repository_uri.clone(),
                commit: certificate.source_repository_digest.clone(),
                workflow: certificate.build_config_uri.clone(),
                run_url: certificate.run_invocation_uri.clone(),
                digest: digest.clone(),
            },
        );
    }
    if let AnnotationPlan::Write { .. } = plan {
        if provenance.is_empty() {
            operations.extend(patch::remove_annotation(object, PROVENANCE_ANNOTATION));
        } else {
            let value = patch::provenance_annotation(&provenance);
            operations.push(patch::set_annotation(object, PROVENANCE_ANNOTATION, &value));
        }
    }
    operations
}

/// More images than one review checks, answered as [`decide`] rules: refused in enforce
/// mode (unless break-glass), admitted with a warning in warn mode, recorded only in
/// observe mode.
fn too_many_images<R>(
    state: &WebhookState<R>,
    subject: &Subject,
    mode: Mode,
    break_glass: BreakGlass,
    count: usize,
    endpoint: Endpoint,
    mut warnings: Vec<String>,
) -> AdmissionResponse {
    let uid = subject.context.uid.as_deref().unwrap_or_default();
    let decision = decide(
        Decided::TooManyImages {
            count,
            max: state.settings.max_images,
        },
        mode,
        break_glass,
    );
    let what = format!(
        "{} {} runs {}",
        subject.regarding.kind, subject.regarding.name, decision.reason
    );
    let allowed = decision.admits();
    tracing::warn!(uid, namespace = %subject.namespace, count, "too many images in one review");
    if endpoint == Endpoint::Validate || !allowed {
        state
            .metrics
            .record_decision(mode, decision.verdict, decision.reason_code);
        if !allowed {
            evidence::emit_denial(state, subject, &what);
        }
    }
    let audit = BTreeMap::from([
        ("verdict".to_owned(), decision.verdict.as_str().to_owned()),
        (
            "images".to_owned(),
            format!(
                "[{{\"reason\":\"{}\",\"count\":{count}}}]",
                decision.reason_code
            ),
        ),
    ]);
    let mut response = if allowed {
        // Observe mode records only; every other admission of too many images says so.
        if decision.verdict != Verdict::WouldDeny {
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
    use crate::decision::fixtures::verified_outcome;
    use crate::policy::UnmatchedAction;
    use crate::verify::claims::CertificateClaims;
    use images::ImageSource;
    use serde_json::json;

    const DIGEST: &str = "sha256:9c24ac7eca13411bee8f335f96442c0b5ef8de65ff1f85da6f16fcb0c046bd78";

    fn verified(image: &str) -> ImageCheck {
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
                let decision = decide(Decided::settled(&check.outcome), mode, break_glass.into());
                ImageVerdict { check, decision }
            })
            .collect()
    }

    fn pod_image(source: ImageSource, name: &str, image: &str, pointer: &str) -> PodImage {
        PodImage {
            source,
            name: name.into(),
            image: image.into(),
            pointer: pointer.into(),
        }
    }

    /// The annotation entry [`verified`] yields.
    fn provenance_entry() -> String {
        format!(
            r#"{{"sourceRepository":"https://github.com/acme/api","commit":"7d2f","workflow":"https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main","runUrl":"https://github.com/acme/api/actions/runs/1/attempts/1","digest":"{DIGEST}"}}"#
        )
    }

    fn annotated(annotation: Option<&str>) -> Value {
        match annotation {
            Some(value) => json!({"metadata": {"annotations": {PROVENANCE_ANNOTATION: value}}}),
            None => json!({"metadata": {"annotations": {"team": "payments"}}}),
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
        assert_eq!(glass[0].verdict().as_str(), "break_glass");
        assert!(glass[0].admits());
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
        assert_eq!(warned[0].verdict().as_str(), "warned");
    }

    #[test]
    fn the_pod_patch_pins_verified_images_and_records_their_provenance() {
        use images::ImageSource::{Containers, ImageVolumes, InitContainers};
        let listed = [
            pod_image(
                InitContainers,
                "init",
                "ghcr.io/acme/api:1.2",
                "/spec/initContainers/0/image",
            ),
            pod_image(
                Containers,
                "api",
                "ghcr.io/acme/api:1.2",
                "/spec/containers/0/image",
            ),
            pod_image(
                Containers,
                "pinned",
                &format!("ghcr.io/acme/api@{DIGEST}"),
                "/spec/containers/1/image",
            ),
            pod_image(
                Containers,
                "worker",
                "ghcr.io/acme/worker:2",
                "/spec/containers/2/image",
            ),
            pod_image(
                ImageVolumes,
                "api",
                "ghcr.io/acme/api:1.2",
                "/spec/volumes/0/image/reference",
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
        let entry = provenance_entry();
        // The volume is keyed apart from the container of the same name.
        let annotation =
            format!(r#"{{"api":{entry},"init":{entry},"pinned":{entry},"volume:api":{entry}}}"#);
        let fresh = AnnotationPlan::Write { carried_from: None };
        assert_eq!(
            pod_patch(&object, &listed, &listed, &verdicts, fresh),
            vec![
                json!({"op": "replace", "path": "/spec/initContainers/0/image", "value": pinned}),
                json!({"op": "replace", "path": "/spec/containers/0/image", "value": pinned}),
                json!({"op": "replace", "path": "/spec/volumes/0/image/reference", "value": pinned}),
                json!({"op": "add", "path": "/metadata/annotations", "value": {"provenance-gate.dev/provenance": annotation}}),
            ]
        );
        // Without the annotation (ephemeral containers): pins only.
        assert_eq!(
            pod_patch(&object, &listed, &listed, &verdicts, AnnotationPlan::Keep).len(),
            3
        );
    }

    #[test]
    fn on_update_the_annotation_keeps_the_entries_of_images_run_before() {
        let entry = provenance_entry();
        let old = json!({
            "metadata": {"annotations": {PROVENANCE_ANNOTATION: format!(r#"{{"api":{entry},"sidecar":{{"digest":"sha256:5e"}}}}"#)}},
            "spec": {"containers": [
                {"name": "api", "image": "ghcr.io/acme/api:1.1"},
                {"name": "sidecar", "image": "ghcr.io/acme/sidecar:1"},
                {"name": "worker", "image": "ghcr.io/acme/worker:1"},
            ]},
        });
        let mut object = old.clone();
        // api moves to sidecar's image, sidecar to a new verified one, worker to a failed one.
        object["spec"]["containers"] = json!([
            {"name": "api", "image": "ghcr.io/acme/sidecar:1"},
            {"name": "sidecar", "image": "ghcr.io/acme/api:1.2"},
            {"name": "worker", "image": "ghcr.io/acme/worker:2"},
        ]);
        let all_images = images::list_images(&object, "/spec").unwrap();
        let checks = vec![
            verified("ghcr.io/acme/api:1.2"),
            failed("ghcr.io/acme/worker:2", "no attestation"),
        ];
        let moved = verdicts(Mode::Warn, checks, &BreakGlassState::Absent);
        let plan = AnnotationPlan::Write {
            carried_from: Some(&old),
        };
        let operations = pod_patch(&object, &all_images, &all_images, &moved, plan);
        assert_eq!(
            operations,
            vec![
                json!({"op": "replace", "path": "/spec/containers/1/image", "value": format!("ghcr.io/acme/api:1.2@{DIGEST}")}),
                json!({"op": "add", "path": "/metadata/annotations/provenance-gate.dev~1provenance", "value": format!(
                    r#"{{"api":{{"sourceRepository":null,"commit":null,"workflow":null,"runUrl":null,"digest":"sha256:5e"}},"sidecar":{entry}}}"#
                )}),
            ]
        );
        // Nothing left to record: the requester's value does not stay either.
        let checks = vec![failed("ghcr.io/acme/api:1.2", "no attestation")];
        let unverified = verdicts(Mode::Warn, checks, &BreakGlassState::Absent);
        let bare = json!({"metadata": {"annotations": {PROVENANCE_ANNOTATION: "{}"}}, "spec": {"containers": [{"name": "api", "image": "ghcr.io/acme/api:1.2"}]}});
        let all_images = images::list_images(&bare, "/spec").unwrap();
        assert_eq!(
            pod_patch(&bare, &all_images, &all_images, &unverified, plan),
            vec![
                json!({"op": "remove", "path": "/metadata/annotations/provenance-gate.dev~1provenance"})
            ]
        );
    }

    #[test]
    fn an_update_may_change_the_provenance_annotation_only_with_an_image() {
        let ours = Some(r#"{"api":{"digest":"sha256:ab"}}"#);
        let forged = Some(r#"{"api":{"digest":"sha256:cd"}}"#);
        let table = [
            (ours, ours, false, None),
            (None, None, false, None),
            (ours, forged, false, Some(AnnotationEdit::Changed)),
            (ours, None, false, Some(AnnotationEdit::Removed)),
            (None, forged, false, Some(AnnotationEdit::Added)),
            // With an image change /mutate rewrites it, whatever the requester sent.
            (ours, forged, true, None),
            (ours, None, true, None),
            (None, forged, true, None),
        ];
        for (before, after, images_changed, expected) in table {
            let old = annotated(before);
            assert_eq!(
                provenance_annotation_edit(&annotated(after), Some(&old), images_changed),
                expected,
                "{before:?} -> {after:?}, images changed: {images_changed}"
            );
        }
        // No old object to compare with: whatever is there now is an addition.
        assert_eq!(
            provenance_annotation_edit(&annotated(forged), None, false),
            Some(AnnotationEdit::Added)
        );
    }

    #[test]
    fn a_pod_image_left_as_a_tag_is_unpinned_at_validate_only() {
        let tag = "ghcr.io/acme/api:1.2";
        let by_digest = format!("ghcr.io/acme/api:1.2@{DIGEST}");
        let listed = [
            pod_image(
                ImageSource::Containers,
                "api",
                tag,
                "/spec/containers/0/image",
            ),
            pod_image(
                ImageSource::ImageVolumes,
                "models",
                tag,
                "/spec/volumes/0/image/reference",
            ),
        ];
        let none = BTreeSet::new();
        let api = BTreeSet::from(["api".to_owned()]);
        let volume = BTreeSet::from(["volume:models".to_owned()]);
        let unpinned = Pinning::Unpinned;
        let table = [
            (
                Endpoint::Validate,
                true,
                tag,
                &none,
                unpinned(UnpinnedCause::NotMutated),
            ),
            (
                Endpoint::Validate,
                true,
                tag,
                &api,
                unpinned(UnpinnedCause::ChangedAfterPinning),
            ),
            (
                Endpoint::Validate,
                true,
                tag,
                &volume,
                unpinned(UnpinnedCause::ChangedAfterPinning),
            ),
            (
                Endpoint::Validate,
                true,
                by_digest.as_str(),
                &none,
                Pinning::Settled,
            ),
            // /mutate pins in its own answer; controllers' templates are never pulled as written.
            (Endpoint::Mutate, true, tag, &none, Pinning::Settled),
            (Endpoint::Validate, false, tag, &none, Pinning::Settled),
        ];
        for (endpoint, is_pod, image, pinned_here, expected) in table {
            assert_eq!(
                pinning_of(endpoint, is_pod, image, &listed, pinned_here),
                expected,
                "{endpoint:?} pod={is_pod} {image} {pinned_here:?}"
            );
        }
    }

    #[test]
    fn the_keys_pinned_in_this_request_are_the_entries_it_wrote() {
        let entry = provenance_entry();
        let both = format!(r#"{{"api":{entry},"sidecar":{entry}}}"#);
        let old_api = format!(r#"{{"api":{entry},"sidecar":{{"digest":"sha256:00"}}}}"#);
        let object = annotated(Some(&both));
        let keys = |old: Option<&Value>, ephemeral| {
            pinned_in_this_request(&object, old, ephemeral)
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(None, false), ["api", "sidecar"]);
        assert_eq!(keys(Some(&annotated(Some(&old_api))), false), ["sidecar"]);
        assert_eq!(keys(Some(&object), false), Vec::<String>::new());
        assert_eq!(keys(Some(&annotated(None)), true), Vec::<String>::new());
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
