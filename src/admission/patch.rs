//! JSONPatch (RFC 6902) operations the mutating endpoint sends: pin an image to the digest
//! that was verified, and set or remove an annotation.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The Pod annotation recording the provenance each container and image volume was admitted
/// on. Only `/mutate` writes it: a requester's value is replaced on CREATE, and an UPDATE may
/// change it only together with an image (then `/mutate` rewrites it).
pub const PROVENANCE_ANNOTATION: &str = "provenance-gate.dev/provenance";

/// Escapes one JSON pointer reference token (RFC 6901): `~` → `~0`, `/` → `~1`.
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Replaces the image at `pointer` with `pinned` (`name:tag@sha256:…`).
pub fn pin_image(pointer: &str, pinned: &str) -> Value {
    json!({"op": "replace", "path": pointer, "value": pinned})
}

/// Sets annotation `key` on `object`, creating `/metadata/annotations` (or `/metadata`)
/// when absent: a patch into a missing parent fails and the API server refuses the object.
pub fn set_annotation(object: &Value, key: &str, value: &str) -> Value {
    match object.get("metadata") {
        Some(Value::Object(metadata)) => match metadata.get("annotations") {
            Some(Value::Object(_)) => json!({
                "op": "add",
                "path": format!("/metadata/annotations/{}", escape_pointer_token(key)),
                "value": value,
            }),
            _ => json!({
                "op": "add",
                "path": "/metadata/annotations",
                "value": {key: value},
            }),
        },
        _ => json!({
            "op": "add",
            "path": "/metadata",
            "value": {"annotations": {key: value}},
        }),
    }
}

/// The value of annotation `key` on `object`, as written (not necessarily a string: the
/// API server refuses other types, but nothing here relies on that).
pub fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.pointer("/metadata/annotations")?.get(key)
}

/// Removes annotation `key` from `object`, when it is there.
pub fn remove_annotation(object: &Value, key: &str) -> Option<Value> {
    annotation(object, key)?;
    Some(json!({
        "op": "remove",
        "path": format!("/metadata/annotations/{}", escape_pointer_token(key)),
    }))
}

/// What one container or image volume was admitted on: enough to find the build again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProvenance {
    pub source_repository: Option<String>,
    pub commit: Option<String>,
    pub workflow: Option<String>,
    pub run_url: Option<String>,
    pub digest: String,
}

/// The provenance annotation's value: a JSON object keyed by container name, and by
/// `volume:<name>` for image volumes.
pub fn provenance_annotation(containers: &BTreeMap<String, ContainerProvenance>) -> String {
    // Plain strings and options only: serialisation cannot fail.
    serde_json::to_string(containers).unwrap_or_default()
}

/// The entries of the provenance annotation on `object`; none when it is absent or not
/// what [`provenance_annotation`] writes.
pub fn provenance_entries(object: &Value) -> BTreeMap<String, ContainerProvenance> {
    annotation(object, PROVENANCE_ANNOTATION)
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// A patch as the AdmissionResponse carries it: base64 of the JSON array.
pub fn encode(operations: &[Value]) -> String {
    BASE64.encode(serde_json::to_vec(operations).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(
            escape_pointer_token("provenance-gate.dev/provenance"),
            "provenance-gate.dev~1provenance"
        );
        assert_eq!(escape_pointer_token("a~b/c"), "a~0b~1c");
        assert_eq!(escape_pointer_token("plain"), "plain");
    }

    #[test]
    fn annotations_are_added_where_the_object_has_room() {
        let key = PROVENANCE_ANNOTATION;
        assert_eq!(
            set_annotation(&json!({"metadata": {"annotations": {"x": "y"}}}), key, "v"),
            json!({"op": "add", "path": "/metadata/annotations/provenance-gate.dev~1provenance", "value": "v"})
        );
        assert_eq!(
            set_annotation(&json!({"metadata": {"name": "p"}}), key, "v"),
            json!({"op": "add", "path": "/metadata/annotations", "value": {"provenance-gate.dev/provenance": "v"}})
        );
        assert_eq!(
            set_annotation(&json!({"metadata": {"annotations": null}}), key, "v"),
            json!({"op": "add", "path": "/metadata/annotations", "value": {"provenance-gate.dev/provenance": "v"}})
        );
        assert_eq!(
            set_annotation(&json!({}), key, "v"),
            json!({"op": "add", "path": "/metadata", "value": {"annotations": {"provenance-gate.dev/provenance": "v"}}})
        );
    }

    #[test]
    fn annotations_are_removed_only_when_present() {
        let object = json!({"metadata": {"annotations": {"provenance-gate.dev/provenance": "{}"}}});
        assert_eq!(
            remove_annotation(&object, PROVENANCE_ANNOTATION),
            Some(
                json!({"op": "remove", "path": "/metadata/annotations/provenance-gate.dev~1provenance"})
            )
        );
        assert_eq!(
            remove_annotation(&json!({"metadata": {}}), PROVENANCE_ANNOTATION),
            None
        );
    }

    #[test]
    fn provenance_and_patch_encoding() {
        let mut containers = BTreeMap::new();
        containers.insert(
            "api".to_owned(),
            ContainerProvenance {
                source_repository: Some("https://github.com/acme/api".into()),
                commit: Some("7d2f".into()),
                workflow: Some(
                    "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main"
                        .into(),
                ),
                run_url: Some("https://github.com/acme/api/actions/runs/1/attempts/1".into()),
                digest: "sha256:ab".into(),
            },
        );
        assert_eq!(
            provenance_annotation(&containers),
            r#"{"api":{"sourceRepository":"https://github.com/acme/api","commit":"7d2f","workflow":"https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main","runUrl":"https://github.com/acme/api/actions/runs/1/attempts/1","digest":"sha256:ab"}}"#
        );
        let operations = [pin_image(
            "/spec/containers/0/image",
            "ghcr.io/acme/api:1@sha256:ab",
        )];
        let annotated = json!({"metadata": {"annotations": {PROVENANCE_ANNOTATION: provenance_annotation(&containers)}}});
        assert_eq!(provenance_entries(&annotated), containers);
        for unreadable in [
            json!({}),
            json!({"metadata": {"annotations": {PROVENANCE_ANNOTATION: "not json"}}}),
        ] {
            assert!(provenance_entries(&unreadable).is_empty(), "{unreadable}");
        }
        let decoded = BASE64.decode(encode(&operations)).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            r#"[{"op":"replace","path":"/spec/containers/0/image","value":"ghcr.io/acme/api:1@sha256:ab"}]"#
        );
    }
}
