//! Reviews of Pods and workload controllers, orchestrated: list the images the request
//! brings, check each distinct one concurrently under the review's budget
//! ([`check_all`]), decide on each in the namespace's mode and break-glass ([`decide`]),
//! and answer (with the digest patch on `/mutate` for Pods, [`patch::pod_patch`]). What the
//! review leaves as evidence is returned with the answer, for [`crate::evidence`] to write.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::check::batch::{check_all, Budget};
use crate::cluster::pull_secrets::PullSecretNames;
use crate::cluster::{NamespaceInfo, ObjectRef};
use crate::decision::breakglass::{self, BreakGlassState};
use crate::decision::{
    decide, review_verdict, AnnotationEdit, BreakGlass, ImageVerdict, Pinning, Pull,
    Subject as Decided, Verdict,
};
use crate::evidence::records::RequestContext;
use crate::evidence::review::{Judged, ReviewOutcome, Subject, WorkloadOutcome};
use crate::policy::{Destination, Mode, Policy};
use crate::registry::{DockerConfig, Registry};

use super::answer;
use super::images::{self, PodImage};
use super::patch::{self, AnnotationPlan, PROVENANCE_ANNOTATION};
use super::response::AdmissionResponse;
use super::review::{AdmissionRequest, Operation, ReviewError};
use super::{Endpoint, Reviewed, WebhookState};

/// The subresource through which debug containers are added to a running Pod.
const EPHEMERAL_CONTAINERS: &str = "ephemeralcontainers";

pub(super) async fn review_workload<R: Registry + 'static>(
    state: &WebhookState<R>,
    request: &AdmissionRequest,
    endpoint: Endpoint,
    spec_pointer: &str,
) -> Reviewed {
    let brought = match brought(request, endpoint, spec_pointer) {
        Ok(brought) => brought,
        Err(answered) => return *answered,
    };
    let uid = request.uid.as_str();
    let Some(policy) = state.policy.current() else {
        // Fail closed; the server's readiness gate normally keeps reviews away until then.
        let response = AdmissionResponse::deny(
            uid,
            503,
            "no policy loaded yet: provenance-gate admits no workload until its policy is loaded",
        );
        return (response, ReviewOutcome::Unjudged);
    };
    let (judging, mut warnings) = judging(state, request, brought.object, &policy, endpoint).await;
    if brought.listed.len() > state.settings.max_images {
        return too_many_images(state, judging, warnings, brought.listed.len());
    }
    let distinct: Vec<String> = {
        let mut seen = BTreeSet::new();
        brought
            .listed
            .iter()
            .filter(|image| seen.insert(image.image.as_str()))
            .map(|image| image.image.clone())
            .collect()
    };
    let logins = workload_logins(state, request, brought.object, spec_pointer).await;
    if judging.mode != Mode::Observe {
        warnings.extend(logins.1);
    }
    // The budget counts from the review's arrival: the wait for a place in flight, the body,
    // the namespace lookup and the secrets' read all come out of it, so that the answer
    // still comes before the API server's timeout however long the review queued.
    let budget = Budget {
        total: state.settings.review_budget,
        since: request.received,
    };
    let now = judging.now;
    let duration = &state.metrics.verification_duration;
    let destination = judging.destination();
    let images = (distinct.as_slice(), &logins.0);
    let checks = check_all(
        &state.checker,
        &policy,
        images,
        &destination,
        now,
        budget,
        duration,
    )
    .await;
    let pinned_here =
        patch::pinned_in_this_request(brought.object, brought.old_object, brought.ephemeral_update);
    let verdicts: Vec<ImageVerdict> = checks
        .into_iter()
        .map(|check| {
            let pinning = pinning_of(
                endpoint,
                brought.is_pod,
                &check.image,
                &brought.listed,
                &pinned_here,
            );
            let decision = decide(
                Decided::Image {
                    outcome: &check.outcome,
                    pinning,
                },
                judging.mode,
                BreakGlass::from(&judging.break_glass),
            );
            ImageVerdict { check, decision }
        })
        .collect();
    answer_images(uid, judging, warnings, &brought, verdicts)
}

/// The logins of the workload's imagePullSecrets, read in the request's own namespace (never
/// the one the object names), and a warning for each named secret that gave none. Empty
/// unless `serve --workload-credentials`.
async fn workload_logins<R>(
    state: &WebhookState<R>,
    request: &AdmissionRequest,
    object: &Value,
    spec_pointer: &str,
) -> (Arc<DockerConfig>, Vec<String>) {
    let Some(pull_secrets) = &state.pull_secrets else {
        return (Arc::default(), Vec::new());
    };
    let names = PullSecretNames::of_pod_spec(object.pointer(spec_pointer).unwrap_or(&Value::Null));
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let read = pull_secrets.logins(namespace, &names).await;
    let warnings = read
        .problems
        .iter()
        .map(|problem| format!("{problem}; not used for the provenance check"))
        .collect();
    (read.logins, warnings)
}

/// What a Pod or workload request brings, read from its objects alone.
struct Brought<'a> {
    object: &'a Value,
    old_object: Option<&'a Value>,
    is_pod: bool,
    /// `pods/ephemeralcontainers`: debug containers added to a running Pod.
    ephemeral_update: bool,
    /// Every image the object runs.
    all_images: Vec<PodImage>,
    /// The images new in this request: the ones checked.
    listed: Vec<PodImage>,
    annotation: AnnotationPlan<'a>,
}

/// What `request` brings, or its answer when nothing needs a policy: it runs nothing new,
/// it is malformed, or it edits the provenance annotation on its own.
fn brought<'a>(
    request: &'a AdmissionRequest,
    endpoint: Endpoint,
    spec_pointer: &str,
) -> Result<Brought<'a>, Box<Reviewed>> {
    let uid = request.uid.as_str();
    let unjudged = |response| Box::new((response, ReviewOutcome::Unjudged));
    let is_pod = request.kind.kind == "Pod";
    let ephemeral_update = is_pod
        && request.operation == Operation::Update
        && request.sub_resource.as_deref() == Some(EPHEMERAL_CONTAINERS);
    // DELETE and CONNECT run nothing new; other subresources (status, binding, scale)
    // cannot change a container image.
    let (Operation::Create | Operation::Update, Some(object)) =
        (request.operation, request.object.as_ref())
    else {
        return Err(unjudged(AdmissionResponse::allow(uid)));
    };
    if request.sub_resource.is_some() && !ephemeral_update {
        return Err(unjudged(AdmissionResponse::allow(uid)));
    }
    let all_images = match images::list_images(object, spec_pointer) {
        Ok(listed) => listed,
        Err(error) => {
            let error = ReviewError::Undecodable {
                kind: request.kind.kind.clone(),
                why: error.to_string(),
            };
            return Err(unjudged(AdmissionResponse::deny(
                uid,
                400,
                &format!("malformed AdmissionReview: {error}"),
            )));
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
        if let Some(edit) = patch::provenance_annotation_edit(object, old_object, images_changed) {
            return Err(Box::new(refuse_annotation_edit(request, object, edit)));
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
            let operations = patch::pod_patch(object, &all_images, &[], &[], annotation);
            return Err(unjudged(
                AdmissionResponse::allow(uid).with_patch(&operations),
            ));
        }
        return Err(unjudged(AdmissionResponse::allow(uid)));
    }
    Ok(Brought {
        object,
        old_object,
        is_pod,
        ephemeral_update,
        all_images,
        listed,
        annotation,
    })
}

/// The namespace's mode and break-glass for one review, and how its evidence names it.
struct Judging {
    subject: Subject,
    policy: Arc<Policy>,
    mode: Mode,
    environment: Option<String>,
    break_glass: BreakGlassState,
    endpoint: Endpoint,
    now: jiff::Timestamp,
}

impl Judging {
    /// The environment the review's images are judged for: the namespace's; every
    /// environment's constraints when its labels could not be read (judged in enforce mode).
    fn destination(&self) -> Destination {
        if self.subject.mode_fallback.is_some() {
            return Destination::Unknown;
        }
        Destination::of(self.environment.as_deref())
    }

    /// The answer with the review's outcome; its records and Events are written when no
    /// webhook of ours judges the attempt after this answer.
    fn conclude(self, response: AdmissionResponse, judged: Judged) -> Reviewed {
        let final_say = self.endpoint == Endpoint::Validate || !response.allowed;
        let outcome = ReviewOutcome::Workload(WorkloadOutcome {
            subject: self.subject,
            policy: self.policy,
            mode: self.mode,
            environment: self.environment,
            break_glass: self.break_glass,
            judged,
            final_say,
            now: self.now,
        });
        (response, outcome)
    }
}

/// How the object's namespace is judged under `policy`, and the warnings that says.
async fn judging<R>(
    state: &WebhookState<R>,
    request: &AdmissionRequest,
    object: &Value,
    policy: &Arc<Policy>,
    endpoint: Endpoint,
) -> (Judging, Vec<String>) {
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
    let break_glass = breakglass::under_policy(policy, &namespace.annotations, now);
    let warnings = break_glass
        .ignored_warning(&subject.namespace, consequence(mode))
        .filter(|_| mode != Mode::Observe)
        .into_iter()
        .collect();
    let judging = Judging {
        environment: environment.map(str::to_owned),
        policy: Arc::clone(policy),
        subject,
        mode,
        break_glass,
        endpoint,
        now,
    };
    (judging, warnings)
}

/// More images than one review checks, answered as [`decide`] rules: refused in enforce
/// mode (unless break-glass), admitted with a warning in warn mode, recorded only in
/// observe mode.
fn too_many_images<R>(
    state: &WebhookState<R>,
    judging: Judging,
    mut warnings: Vec<String>,
    count: usize,
) -> Reviewed {
    let subject = &judging.subject;
    let uid = subject.context.uid.as_deref().unwrap_or_default();
    let decision = decide(
        Decided::TooManyImages {
            count,
            max: state.settings.max_images,
        },
        judging.mode,
        BreakGlass::from(&judging.break_glass),
    );
    let message = format!(
        "{} {} runs {}",
        subject.regarding.kind, subject.regarding.name, decision.reason
    );
    tracing::warn!(uid, namespace = %subject.namespace, count, "too many images in one review");
    let mut response = if decision.admits() {
        // Observe mode records only; every other admission of too many images says so.
        if decision.verdict != Verdict::WouldDeny {
            warnings.push(message.clone());
        }
        AdmissionResponse::allow(uid)
    } else {
        AdmissionResponse::deny(uid, 403, &message)
    };
    response = response.with_warnings(warnings);
    response.audit_annotations = answer::too_many_images_audit(&decision, count);
    judging.conclude(response, Judged::TooManyImages { decision, message })
}

/// The answer on the images' verdicts: refused when one image is, with the Pod patch on
/// `/mutate`.
fn answer_images(
    uid: &str,
    judging: Judging,
    mut warnings: Vec<String>,
    brought: &Brought<'_>,
    verdicts: Vec<ImageVerdict>,
) -> Reviewed {
    let allowed = review_verdict(&verdicts).admits();
    warnings.extend(answer::image_warnings(&verdicts, &judging.break_glass));
    let message = answer::denial_message(&verdicts);
    let mut response = if allowed {
        AdmissionResponse::allow(uid)
    } else {
        AdmissionResponse::deny(uid, 403, &message)
    };
    response = response.with_warnings(warnings);
    response.audit_annotations = answer::audit_annotations(&verdicts);
    // Controllers are never mutated: GitOps tools would see drift in what they apply.
    if allowed && judging.endpoint == Endpoint::Mutate && brought.is_pod {
        let operations = patch::pod_patch(
            brought.object,
            &brought.all_images,
            &brought.listed,
            &verdicts,
            brought.annotation,
        );
        response = response.with_patch(&operations);
    }
    let denial = (!allowed).then_some(message);
    judging.conclude(response, Judged::Images { verdicts, denial })
}

/// Refuses an edit of the provenance annotation, in every mode ([`Decided::AnnotationEdit`]).
fn refuse_annotation_edit(
    request: &AdmissionRequest,
    object: &Value,
    edit: AnnotationEdit,
) -> Reviewed {
    let subject = subject_of(request, object);
    // Decided before the namespace's mode is looked up: no mode changes this decision.
    let decision = decide(
        Decided::AnnotationEdit {
            edit,
            annotation: PROVENANCE_ANNOTATION,
        },
        Mode::Enforce,
        BreakGlass::Inactive,
    );
    tracing::warn!(uid = %request.uid, namespace = %subject.namespace, edit = edit.as_str(), "provenance annotation edit refused");
    let mut response = AdmissionResponse::deny(&request.uid, 403, &decision.reason);
    response.audit_annotations = [
        ("verdict", decision.verdict.as_str()),
        ("provenanceAnnotation", edit.as_str()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    let outcome = ReviewOutcome::AnnotationEditRefused {
        subject,
        message: decision.reason,
    };
    (response, outcome)
}

/// How the Pod under review pulls `image` ([`Pinning::of`]), from where its reference stands.
fn pinning_of(
    endpoint: Endpoint,
    is_pod: bool,
    image: &str,
    listed: &[PodImage],
    pinned_here: &BTreeSet<String>,
) -> Pinning {
    Pinning::of(Pull {
        pinned_by_this_answer: endpoint == Endpoint::Mutate,
        in_template: !is_pod,
        names_digest: patch::names_a_digest(image),
        pinned_earlier_in_request: listed
            .iter()
            .any(|entry| entry.image == image && pinned_here.contains(&entry.annotation_key())),
    })
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

/// What applies instead of an ignored break-glass.
fn consequence(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforcing",
        Mode::Warn => "warning only",
        Mode::Observe => "observing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::fixtures::{pod_image, DIGEST};
    use crate::decision::UnpinnedCause;
    use images::ImageSource;

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
}
