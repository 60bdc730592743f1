//! The AdmissionReview answer, and the texts in it: kept short where kubectl prints them
//! (warnings) and bounded everywhere else, since they come from image references and
//! registry errors that a requester controls.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::review::ApiVersion;

/// Longest warning, in characters: kubectl prints each on its own line.
pub const MAX_WARNING_CHARS: usize = 200;
/// Most warnings per answer; the rest are summarised in one more.
pub const MAX_WARNINGS: usize = 16;
/// Longest denial message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 8192;
/// Longest audit annotation value, in characters (the API server truncates at 10 KiB).
pub const MAX_AUDIT_VALUE_CHARS: usize = 8192;

/// The whole answer: `{"apiVersion", "kind": "AdmissionReview", "response"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReviewResponse {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub response: AdmissionResponse,
}

impl AdmissionReviewResponse {
    pub fn new(api_version: ApiVersion, response: AdmissionResponse) -> Self {
        AdmissionReviewResponse {
            api_version: api_version.as_str(),
            kind: "AdmissionReview",
            response,
        }
    }
}

/// `response` of an AdmissionReview.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Keys without a prefix: the API server prefixes each with the webhook's name
    /// (`<webhook name>/verdict`) and drops keys that would then hold two slashes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    /// Base64 of a JSONPatch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
}

/// A `metav1.Status` as a denial carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub status: &'static str,
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl AdmissionResponse {
    pub fn allow(uid: &str) -> Self {
        AdmissionResponse {
            uid: uid.to_owned(),
            allowed: true,
            status: None,
            warnings: Vec::new(),
            audit_annotations: BTreeMap::new(),
            patch: None,
            patch_type: None,
        }
    }

    /// A refusal: 403 for policy, 400 for a malformed review, 503 while not ready.
    pub fn deny(uid: &str, code: u16, message: &str) -> Self {
        let reason = match code {
            400 => "BadRequest",
            403 => "Forbidden",
            413 => "RequestEntityTooLarge",
            503 => "ServiceUnavailable",
            _ => "InternalError",
        };
        AdmissionResponse {
            allowed: false,
            status: Some(Status {
                status: "Failure",
                code,
                reason,
                message: bounded(message, MAX_MESSAGE_CHARS),
            }),
            ..AdmissionResponse::allow(uid)
        }
    }

    /// Attaches a JSONPatch; an empty one is left out.
    pub fn with_patch(mut self, operations: &[Value]) -> Self {
        if !operations.is_empty() {
            self.patch = Some(super::patch::encode(operations));
            self.patch_type = Some("JSONPatch");
        }
        self
    }

    /// Adds warnings, each shortened, at most [`MAX_WARNINGS`] in all.
    pub fn with_warnings(mut self, warnings: impl IntoIterator<Item = String>) -> Self {
        let all: Vec<String> = warnings.into_iter().collect();
        let total = all.len();
        self.warnings = all
            .into_iter()
            .take(MAX_WARNINGS)
            .map(|warning| short_warning(&warning))
            .collect();
        if total > MAX_WARNINGS {
            self.warnings.pop();
            self.warnings.push(format!(
                "{} more warnings; see the decision records",
                total - MAX_WARNINGS + 1
            ));
        }
        self
    }
}

/// One line of at most [`MAX_WARNING_CHARS`] characters, without control characters.
pub fn short_warning(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    bounded(&line, MAX_WARNING_CHARS)
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_carries_code_reason_and_message() {
        let response =
            AdmissionResponse::deny("u", 403, "image x denied: rule \"acme\": no attestation");
        let json =
            serde_json::to_value(AdmissionReviewResponse::new(ApiVersion::V1Beta1, response))
                .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "admission.k8s.io/v1beta1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": "u",
                    "allowed": false,
                    "status": {
                        "status": "Failure",
                        "code": 403,
                        "reason": "Forbidden",
                        "message": "image x denied: rule \"acme\": no attestation",
                    },
                },
            })
        );
    }

    #[test]
    fn warnings_stay_short_and_few() {
        let long = format!(
            "image ghcr.io/acme/api:1 not verified: {}\nsecond line",
            "x".repeat(400)
        );
        let response = AdmissionResponse::allow("u").with_warnings([long]);
        assert_eq!(response.warnings[0].chars().count(), MAX_WARNING_CHARS);
        assert!(response.warnings[0].starts_with("image ghcr.io/acme/api:1 not verified: xxx"));
        assert!(response.warnings[0].ends_with('…'));
        assert!(!response.warnings[0].contains('\n'));

        let many = (0..20).map(|index| format!("warning {index}"));
        let response = AdmissionResponse::allow("u").with_warnings(many);
        assert_eq!(response.warnings.len(), MAX_WARNINGS);
        assert_eq!(response.warnings[14], "warning 14");
        assert_eq!(
            response.warnings[15],
            "5 more warnings; see the decision records"
        );

        let exactly = (0..MAX_WARNINGS).map(|index| format!("warning {index}"));
        let response = AdmissionResponse::allow("u").with_warnings(exactly);
        assert_eq!(response.warnings.last().unwrap(), "warning 15");
    }

    #[test]
    fn an_empty_patch_is_left_out() {
        let response = AdmissionResponse::allow("u").with_patch(&[]);
        assert_eq!(response.patch, None);
        assert_eq!(response.patch_type, None);
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json, serde_json::json!({"uid": "u", "allowed": true}));
    }

    #[test]
    fn messages_are_bounded() {
        let response = AdmissionResponse::deny("u", 403, &"y".repeat(MAX_MESSAGE_CHARS + 10));
        assert_eq!(
            response.status.unwrap().message.chars().count(),
            MAX_MESSAGE_CHARS
        );
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("abcdef", 4), "abc…");
    }
}
