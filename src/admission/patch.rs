//! JSONPatch (RFC 6902) operations the mutating endpoint sends: pin an image to the digest
//! that was verified, and set or remove an annotation; the Pod patch built from a review's
//! verdicts ([`pod_patch`]), and what the provenance annotation says about the request
//! (who wrote which entry, whether an UPDATE edits it on its own).

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::images::{self, PodImage};
use crate::check::reference::ImageReference;
use crate::check::{ImageCheck, ImageOutcome};
use crate::decision::{AnnotationEdit, ImageVerdict};

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

/// The edit of the provenance annotation that an UPDATE makes on its own. With an image
/// change it is none: `/mutate` rewrites the annotation then.
pub fn provenance_annotation_edit(
    object: &Value,
    old_object: Option<&Value>,
    images_changed: bool,
) -> Option<AnnotationEdit> {
    if images_changed {
        return None;
    }
    let before = old_object.and_then(|old| annotation(old, PROVENANCE_ANNOTATION));
    match (before, annotation(object, PROVENANCE_ANNOTATION)) {
        (None, None) => None,
        (None, Some(_)) => Some(AnnotationEdit::Added),
        (Some(_), None) => Some(AnnotationEdit::Removed),
        (Some(before), Some(after)) => (before != after).then_some(AnnotationEdit::Changed),
    }
}

/// The keys of the provenance annotation that `/mutate` wrote in this request: every key on
/// CREATE (a requester's own value is replaced there), the keys whose entry differs from the
/// old object's on UPDATE, none for the ephemeral containers subresource (which keeps the
/// annotation).
pub fn pinned_in_this_request(
    object: &Value,
    old_object: Option<&Value>,
    ephemeral_update: bool,
) -> BTreeSet<String> {
    if ephemeral_update {
        return BTreeSet::new();
    }
    let before = old_object.map(provenance_entries).unwrap_or_default();
    provenance_entries(object)
        .into_iter()
        .filter(|(key, entry)| before.get(key) != Some(entry))
        .map(|(key, _)| key)
        .collect()
}

/// Whether the pod spec already names `image` by digest: then it is pulled as verified and
/// never repinned.
pub fn names_a_digest(image: &str) -> bool {
    ImageReference::parse(image).is_ok_and(|reference| reference.digest().is_some())
}

/// What `/mutate` does with the provenance annotation.
#[derive(Debug, Clone, Copy)]
pub enum AnnotationPlan<'a> {
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
pub fn pod_patch(
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
            let entries = provenance_entries(old);
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
            operations.push(pin_image(&image.pointer, pinned));
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
            operations.extend(remove_annotation(object, PROVENANCE_ANNOTATION));
        } else {
            let value = provenance_annotation(&provenance);
            operations.push(set_annotation(object, PROVENANCE_ANNOTATION, &value));
        }
    }
    operations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::fixtures::{
        annotated, failed, pod_image, provenance_entry, verdicts, verified, DIGEST,
    };
    use crate::decision::breakglass::BreakGlassState;
    use crate::policy::Mode;

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
}
