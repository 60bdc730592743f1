//! Namespace writes that declare, change or remove break-glass: only approvers may declare
//! it, and `/mutate` records who did from the request's userInfo.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::breakglass::{self, BreakGlassState, NamespaceWrite, APPROVED_BY_ANNOTATION};
use crate::cluster::EventType;

use super::evidence;
use super::patch;
use super::response::AdmissionResponse;
use super::review::{AdmissionRequest, Operation, ReviewError};
use super::{Endpoint, WebhookState};

pub(super) fn review_namespace<R>(
    state: &WebhookState<R>,
    request: &AdmissionRequest,
    endpoint: Endpoint,
) -> AdmissionResponse {
    let uid = request.uid.as_str();
    let (Operation::Create | Operation::Update, Some(object)) =
        (request.operation, request.object.as_ref())
    else {
        return AdmissionResponse::allow(uid);
    };
    let new = match annotations_of(object) {
        Ok(annotations) => annotations,
        Err(why) => {
            let error = ReviewError::Undecodable {
                kind: "Namespace".into(),
                why,
            };
            return AdmissionResponse::deny(
                uid,
                400,
                &format!("malformed AdmissionReview: {error}"),
            );
        }
    };
    // The stored object was valid when stored; an undecodable one counts as empty, which
    // makes every break-glass annotation in the new object a change to be judged.
    let old = match request.operation {
        Operation::Update => Some(
            request
                .old_object
                .as_ref()
                .and_then(|old| annotations_of(old).ok())
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
    let policy = state.policy.current();
    let config = policy.as_deref().and_then(|policy| policy.break_glass());
    let now = (state.clock)();
    let verdict =
        breakglass::review_namespace_write(old.as_ref(), &new, &request.user, config, now);
    // A refusal is always evidence (no validation follows a refusing /mutate); an admission
    // is /validate's to record. Dry runs send no Events.
    let deny = |why: &str| {
        let message = format!("break-glass on namespace {name} refused: {why}");
        if !request.dry_run {
            evidence::emit_namespace_event(
                state,
                &name,
                EventType::Warning,
                "BreakGlassRefused",
                &message,
            );
        }
        tracing::warn!(uid, namespace = %name, user = %request.user.username, %why, "break-glass refused");
        AdmissionResponse::deny(uid, 403, &message)
    };
    match verdict {
        NamespaceWrite::Untouched => AdmissionResponse::allow(uid),
        NamespaceWrite::Removal { clear_approval } => {
            // Whatever was removed, what remains is no active break-glass.
            if endpoint == Endpoint::Validate && !request.dry_run {
                evidence::record_break_glass_state(&state.metrics, &name, &BreakGlassState::Absent);
            }
            let mut response = AdmissionResponse::allow(uid);
            if endpoint == Endpoint::Mutate && clear_approval {
                let operations: Vec<Value> =
                    patch::remove_annotation(object, APPROVED_BY_ANNOTATION).into_iter().collect();
                response = response.with_patch(&operations);
            }
            response
        }
        // Lifting a break-glass never waits for a policy; declaring one does.
        _ if policy.is_none() => deny("no policy loaded yet"),
        NamespaceWrite::Denied { why } => deny(&why),
        NamespaceWrite::Approved {
            approver,
            ticket,
            expires,
            recorded,
        } => match (endpoint, recorded) {
            (Endpoint::Mutate, true) => AdmissionResponse::allow(uid),
            (Endpoint::Mutate, false) => AdmissionResponse::allow(uid).with_patch(&[
                patch::set_annotation(object, APPROVED_BY_ANNOTATION, &approver),
            ]),
            // Only the mutating endpoint can record the approver; without it the
            // break-glass would never take effect, so say so now rather than at the outage.
            (Endpoint::Validate, false) => deny(&format!(
                "the approver was not recorded in {APPROVED_BY_ANNOTATION}; is the mutating webhook (/mutate) configured for namespaces?"
            )),
            (Endpoint::Validate, true) => {
                let message = format!(
                    "break-glass {ticket} declared on namespace {name} by {approver} until {expires}: unverified images will be admitted with a warning"
                );
                if !request.dry_run {
                    evidence::emit_namespace_event(state, &name, EventType::Normal, "BreakGlassDeclared", &message);
                }
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

/// `metadata.annotations` of an object: absent is empty; values must be strings.
fn annotations_of(object: &Value) -> Result<BTreeMap<String, String>, String> {
    match object.pointer("/metadata/annotations") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(annotations)) => annotations
            .iter()
            .map(|(key, value)| match value {
                Value::String(value) => Ok((key.clone(), value.clone())),
                _ => Err(format!("/metadata/annotations/{key} is not a string")),
            })
            .collect(),
        Some(_) => Err("/metadata/annotations is not an object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_are_read_strictly() {
        assert!(annotations_of(&json!({})).unwrap().is_empty());
        assert_eq!(
            annotations_of(&json!({"metadata": {"annotations": {"a": "b"}}})).unwrap(),
            BTreeMap::from([("a".to_owned(), "b".to_owned())])
        );
        assert_eq!(
            annotations_of(&json!({"metadata": {"annotations": {"a": 1}}})).unwrap_err(),
            "/metadata/annotations/a is not a string"
        );
        assert_eq!(
            annotations_of(&json!({"metadata": {"annotations": []}})).unwrap_err(),
            "/metadata/annotations is not an object"
        );
    }
}
