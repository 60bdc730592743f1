//! Namespace writes that declare, change or remove break-glass, or change the labels that
//! pick the namespace's mode: only approvers may declare break-glass or lower a mode, and
//! `/mutate` records who approved from the request's userInfo.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cluster::EventType;
use crate::decision::breakglass::{
    self, ModeChange, ModeVerdict, NamespaceMode, NamespaceWrite, APPROVED_BY_ANNOTATION,
    APPROVER_GROUPS_ANNOTATION,
};
use crate::decision::Verdict;
use crate::evidence::records::RequestContext;
use crate::evidence::review::{ModeChangeDecided, NamespaceEvent, NamespaceOutcome, ReviewOutcome};

use super::patch;
use super::response::AdmissionResponse;
use super::review::{AdmissionRequest, Operation, ReviewError};
use super::{Endpoint, Reviewed, WebhookState};

/// What a Namespace review reads of an object.
#[derive(Debug, Default)]
struct Metadata {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Metadata {
    fn of(object: &Value) -> Result<Metadata, String> {
        Ok(Metadata {
            labels: string_map_of(object, "labels")?,
            annotations: string_map_of(object, "annotations")?,
        })
    }
}

/// The namespace write under review, how to refuse it, and the evidence it gathers.
struct NamespaceReview<'a> {
    request: &'a AdmissionRequest,
    name: String,
    evidence: NamespaceOutcome,
}

impl NamespaceReview<'_> {
    /// A refusal is always evidence (no validation follows a refusing /mutate); an
    /// admission is /validate's to record.
    fn refuse(&mut self, event_reason: &'static str, message: String) -> AdmissionResponse {
        let request = self.request;
        self.event(EventType::Warning, event_reason, message.clone());
        tracing::warn!(uid = %request.uid, namespace = %self.name, user = %request.user.username, %message, "namespace write refused");
        AdmissionResponse::deny(&request.uid, 403, &message)
    }

    fn event(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.evidence.events.push(NamespaceEvent {
            type_,
            reason,
            message,
        });
    }

    fn record_mode_change(&mut self, change: &ModeChange, result: Verdict, reason: &str) {
        self.evidence.mode_change = Some(ModeChangeDecided {
            change: change.clone(),
            result,
            reason: reason.to_owned(),
        });
    }

    fn done(self, response: AdmissionResponse) -> Reviewed {
        (response, ReviewOutcome::Namespace(self.evidence))
    }
}

pub(super) fn review_namespace<R>(
    state: &WebhookState<R>,
    request: &AdmissionRequest,
    endpoint: Endpoint,
) -> Reviewed {
    let uid = request.uid.as_str();
    let unjudged = |response| (response, ReviewOutcome::Unjudged);
    let (Operation::Create | Operation::Update, Some(object)) =
        (request.operation, request.object.as_ref())
    else {
        return unjudged(AdmissionResponse::allow(uid));
    };
    let new = match Metadata::of(object) {
        Ok(metadata) => metadata,
        Err(why) => {
            let error = ReviewError::Undecodable {
                kind: "Namespace".into(),
                why,
            };
            return unjudged(AdmissionResponse::deny(
                uid,
                400,
                &format!("malformed AdmissionReview: {error}"),
            ));
        }
    };
    // The stored object was valid when stored; an undecodable one counts as empty, which
    // makes every break-glass annotation and label in the new object a change to be judged.
    let old = match request.operation {
        Operation::Update => Some(
            request
                .old_object
                .as_ref()
                .and_then(|old| Metadata::of(old).ok())
                .unwrap_or_default(),
        ),
        _ => None,
    };
    let name = request
        .name
        .clone()
        .or_else(|| {
            object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let now = (state.clock)();
    let mut review = NamespaceReview {
        request,
        evidence: NamespaceOutcome {
            context: RequestContext {
                uid: Some(request.uid.clone()),
                namespace: Some(name.clone()),
                kind: Some("Namespace".into()),
                name: Some(name.clone()),
                caller: Some(request.caller.clone()),
            },
            namespace: name.clone(),
            requested_by: request.user.username.clone(),
            dry_run: request.dry_run,
            now,
            mode_change: None,
            events: Vec::new(),
            break_glass_lifted: false,
            break_glass_declared: None,
        },
        name,
    };
    let policy = state.policy.current();
    let config = policy.as_deref().and_then(|policy| policy.break_glass());

    // The mode first: a CREATE lowers nothing, an UPDATE that keeps the labels neither.
    let mode_change = match (&old, policy.as_deref()) {
        (None, _) => None,
        (Some(old), _) if old.labels == new.labels => None,
        (Some(_), None) => {
            let message = format!(
                "label change on namespace {} refused: no policy loaded yet, so whether it lowers the namespace's mode cannot be told",
                review.name
            );
            let response = review.refuse("NamespaceModeChangeRefused", message);
            return review.done(response);
        }
        (Some(old), Some(policy)) => Some(ModeChange {
            from: NamespaceMode::of(policy, &old.labels),
            to: NamespaceMode::of(policy, &new.labels),
        }),
    };
    let lowered_by = match &mode_change {
        None => None,
        Some(change) => match breakglass::review_mode_change(change, &request.user, config) {
            ModeVerdict::Allowed => None,
            ModeVerdict::Lowered { approver } => Some((change, approver)),
            ModeVerdict::Denied { why } => {
                review.record_mode_change(change, Verdict::Denied, &why);
                let message = format!("mode change of namespace {} refused: {why}", review.name);
                let response = review.refuse("NamespaceModeChangeRefused", message);
                return review.done(response);
            }
        },
    };

    let verdict = breakglass::review_namespace_write(
        old.as_ref().map(|old| &old.annotations),
        &new.annotations,
        &request.user,
        config,
        now,
        mode_change.as_ref(),
    );
    let mut response = judge_break_glass(&mut review, object, verdict, policy.is_some(), endpoint);
    if let (true, Endpoint::Validate, Some((change, approver))) =
        (response.allowed, endpoint, lowered_by)
    {
        let message = format!(
            "namespace {} lowered from {} to {} by break-glass approver {approver}",
            review.name, change.from, change.to
        );
        review.record_mode_change(change, Verdict::Allowed, &message);
        // Normal, like BreakGlassDeclared: an approver's act, admitted.
        review.event(EventType::Normal, "NamespaceModeLowered", message.clone());
        tracing::warn!(uid, namespace = %review.name, %approver, from = %change.from, to = %change.to, "namespace mode lowered");
        response
            .audit_annotations
            .insert("mode-change".to_owned(), message.clone());
        response = response.with_warnings([message]);
    }
    review.done(response)
}

/// The answer to a Namespace write as far as its break-glass annotations go.
fn judge_break_glass(
    review: &mut NamespaceReview<'_>,
    object: &Value,
    verdict: NamespaceWrite,
    policy_loaded: bool,
    endpoint: Endpoint,
) -> AdmissionResponse {
    let request = review.request;
    let name = review.name.clone();
    let uid = request.uid.as_str();
    let mut deny = |why: &str| {
        review.refuse(
            "BreakGlassRefused",
            format!("break-glass on namespace {name} refused: {why}"),
        )
    };
    match verdict {
        NamespaceWrite::Untouched => AdmissionResponse::allow(uid),
        NamespaceWrite::Removal { clear_approval } => {
            // Whatever was removed, what remains is no active break-glass.
            review.evidence.break_glass_lifted = endpoint == Endpoint::Validate;
            let mut response = AdmissionResponse::allow(uid);
            if endpoint == Endpoint::Mutate && clear_approval {
                let operations: Vec<Value> = [APPROVED_BY_ANNOTATION, APPROVER_GROUPS_ANNOTATION]
                    .iter()
                    .filter_map(|key| patch::remove_annotation(object, key))
                    .collect();
                response = response.with_patch(&operations);
            }
            response
        }
        // Lifting a break-glass never waits for a policy; declaring one does.
        _ if !policy_loaded => deny("no policy loaded yet"),
        NamespaceWrite::Denied { why } => deny(&why),
        NamespaceWrite::Approved {
            approver,
            groups,
            ticket,
            expires,
            recorded,
        } => match (endpoint, recorded) {
            (Endpoint::Mutate, true) => AdmissionResponse::allow(uid),
            (Endpoint::Mutate, false) => {
                let mut operations =
                    vec![patch::set_annotation(object, APPROVED_BY_ANNOTATION, &approver)];
                operations.extend(match &groups {
                    Some(groups) => {
                        Some(patch::set_annotation(object, APPROVER_GROUPS_ANNOTATION, groups))
                    }
                    None => patch::remove_annotation(object, APPROVER_GROUPS_ANNOTATION),
                });
                AdmissionResponse::allow(uid).with_patch(&operations)
            }
            // Only the mutating endpoint can record the approver; without it the
            // break-glass would never take effect, so say so now rather than at the outage.
            (Endpoint::Validate, false) => deny(&format!(
                "the approver was not recorded in {APPROVED_BY_ANNOTATION} and {APPROVER_GROUPS_ANNOTATION}; is the mutating webhook (/mutate) configured for namespaces?"
            )),
            (Endpoint::Validate, true) => {
                let message = format!(
                    "break-glass {ticket} declared on namespace {name} by {approver} until {expires}: unverified images will be admitted with a warning"
                );
                review.event(EventType::Normal, "BreakGlassDeclared", message.clone());
                review.evidence.break_glass_declared = Some(expires);
                tracing::info!(uid, namespace = %name, %approver, %ticket, %expires, "break-glass declared");
                let mut response = AdmissionResponse::allow(uid).with_warnings([message]);
                response.audit_annotations = BTreeMap::from([(
                    "break-glass".to_owned(),
                    format!("ticket {ticket} approved by {approver} until {expires}"),
                )]);
                response
            }
        },
    }
}

/// `metadata.<field>` of an object (labels, annotations): absent is empty; values must be
/// strings.
fn string_map_of(object: &Value, field: &str) -> Result<BTreeMap<String, String>, String> {
    match object
        .get("metadata")
        .and_then(|metadata| metadata.get(field))
    {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(value) => Ok((key.clone(), value.clone())),
                _ => Err(format!("/metadata/{field}/{key} is not a string")),
            })
            .collect(),
        Some(_) => Err(format!("/metadata/{field} is not an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_and_annotations_are_read_strictly() {
        assert!(string_map_of(&json!({}), "annotations").unwrap().is_empty());
        assert_eq!(
            string_map_of(
                &json!({"metadata": {"annotations": {"a": "b"}}}),
                "annotations"
            )
            .unwrap(),
            BTreeMap::from([("a".to_owned(), "b".to_owned())])
        );
        assert_eq!(
            string_map_of(
                &json!({"metadata": {"annotations": {"a": 1}}}),
                "annotations"
            )
            .unwrap_err(),
            "/metadata/annotations/a is not a string"
        );
        assert_eq!(
            string_map_of(&json!({"metadata": {"labels": []}}), "labels").unwrap_err(),
            "/metadata/labels is not an object"
        );
        let metadata =
            Metadata::of(&json!({"metadata": {"labels": {"env": "dev"}, "annotations": null}}))
                .unwrap();
        assert_eq!(
            metadata.labels,
            BTreeMap::from([("env".to_owned(), "dev".to_owned())])
        );
        assert!(metadata.annotations.is_empty());
    }
}
