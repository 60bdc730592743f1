//! Which images an object runs: the containers, init containers and ephemeral containers of
//! a Pod or of the pod template of a workload controller, and its image volumes, each with the
//! JSON pointer of the field that names the image (for the digest patch).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::review::GroupVersionKind;

/// Where a pod spec names an image: its container lists, in the order the kubelet starts
/// them, and its image volumes (`volumes[].image.reference`, the ImageVolume feature), which
/// the kubelet pulls like any container image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    InitContainers,
    Containers,
    EphemeralContainers,
    ImageVolumes,
}

impl ImageSource {
    pub const ALL: [ImageSource; 4] = [
        ImageSource::InitContainers,
        ImageSource::Containers,
        ImageSource::EphemeralContainers,
        ImageSource::ImageVolumes,
    ];

    /// The list's field name in a pod spec.
    pub fn field(self) -> &'static str {
        match self {
            ImageSource::InitContainers => "initContainers",
            ImageSource::Containers => "containers",
            ImageSource::EphemeralContainers => "ephemeralContainers",
            ImageSource::ImageVolumes => "volumes",
        }
    }
}

/// One image of a pod spec, where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodImage {
    pub source: ImageSource,
    /// The container's or volume's name (empty when the object has none; the API server
    /// rejects that).
    pub name: String,
    /// The image reference as written.
    pub image: String,
    /// JSON pointer of the field, e.g. `/spec/containers/0/image` or
    /// `/spec/volumes/2/image/reference`.
    pub pointer: String,
}

impl PodImage {
    /// The key of this image in the provenance annotation: the container's name, or
    /// `volume:<name>` for an image volume. A container name is a DNS label and never holds
    /// a `:`, so the two cannot collide.
    pub fn annotation_key(&self) -> String {
        match self.source {
            ImageSource::ImageVolumes => format!("volume:{}", self.name),
            _ => self.name.clone(),
        }
    }
}

/// Why the images of an object could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer} is not {expected}")]
pub struct ImageListError {
    pub pointer: String,
    pub expected: &'static str,
}

/// Where the pod spec of `kind` lives, for the kinds whose images are checked.
pub fn pod_spec_pointer(kind: &GroupVersionKind) -> Option<&'static str> {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => Some("/spec"),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            Some("/spec/template/spec")
        }
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Every image of `object` whose pod spec is at `spec_pointer`. A missing spec, list or
/// image has none (the API server's own validation refuses what is required; a volume without
/// `image` is another kind of volume); a value of the wrong type is an error, so that nothing
/// is silently skipped.
pub fn list_images(object: &Value, spec_pointer: &str) -> Result<Vec<PodImage>, ImageListError> {
    let spec = match object.pointer(spec_pointer) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(spec @ Value::Object(_)) => spec,
        Some(_) => return Err(wrong(spec_pointer.to_owned(), "an object")),
    };
    let mut images = Vec::new();
    for source in ImageSource::ALL {
        let list_pointer = format!("{spec_pointer}/{}", source.field());
        let entries = match spec.get(source.field()) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(wrong(list_pointer, "a list")),
        };
        for (index, entry) in entries.iter().enumerate() {
            let pointer = format!("{list_pointer}/{index}");
            let Value::Object(entry) = entry else {
                return Err(wrong(pointer, "an object"));
            };
            let name = match entry.get("name") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(name)) => name.clone(),
                Some(_) => return Err(wrong(format!("{pointer}/name"), "a string")),
            };
            let image = match source {
                ImageSource::ImageVolumes => volume_image(entry, &pointer)?,
                _ => string_field(entry, "image", &pointer)?,
            };
            if let Some((image, pointer)) = image {
                images.push(PodImage {
                    source,
                    name,
                    image,
                    pointer,
                });
            }
        }
    }
    Ok(images)
}

fn wrong(pointer: String, expected: &'static str) -> ImageListError {
    ImageListError { pointer, expected }
}

/// `entry[key]` when it is a string, with its pointer; absent or null is no image.
fn string_field(
    entry: &Map<String, Value>,
    key: &str,
    pointer: &str,
) -> Result<Option<(String, String)>, ImageListError> {
    let pointer = format!("{pointer}/{key}");
    match entry.get(key) {
        // Required by the API server for Pods; optional in templates (ImageVolume) where a
        // controller may fill it in. Nothing to check either way.
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(image)) => Ok(Some((image.clone(), pointer))),
        Some(_) => Err(wrong(pointer, "a string")),
    }
}

/// The `image.reference` of a volume; other volume kinds have no `image`.
fn volume_image(
    volume: &Map<String, Value>,
    pointer: &str,
) -> Result<Option<(String, String)>, ImageListError> {
    let pointer = format!("{pointer}/image");
    match volume.get("image") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(image)) => string_field(image, "reference", &pointer),
        Some(_) => Err(wrong(pointer, "an object")),
    }
}

/// The images `object` runs where `old_object` did not run them: what an UPDATE brings. A
/// container (or image volume) keeping its image brings nothing; one taking an image that
/// another container ran does, since the kubelet pulls it afresh for it and a tag admitted
/// before (under a break-glass since expired, or in a softer mode) names whatever its
/// registry says now. An undecodable old object counts as empty, so that everything is
/// checked.
pub fn new_images(
    images: Vec<PodImage>,
    old_object: Option<&Value>,
    spec_pointer: &str,
) -> Vec<PodImage> {
    let before: BTreeSet<(&'static str, String, String)> = old_object
        .and_then(|old| list_images(old, spec_pointer).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|image| (image.source.field(), image.name, image.image))
        .collect();
    images
        .into_iter()
        .filter(|image| {
            let slot = (
                image.source.field(),
                image.name.clone(),
                image.image.clone(),
            );
            !before.contains(&slot)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gvk(group: &str, kind: &str) -> GroupVersionKind {
        GroupVersionKind {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
        }
    }

    fn pod_spec() -> Value {
        json!({
            "initContainers": [{"name": "migrate", "image": "ghcr.io/acme/migrate:1"}],
            "containers": [
                {"name": "api", "image": "ghcr.io/acme/api:1.2"},
                {"name": "sidecar", "image": "registry.k8s.io/pause:3.9"},
            ],
            "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "models", "image": {"reference": "ghcr.io/acme/models:7", "pullPolicy": "IfNotPresent"}},
            ],
        })
    }

    fn listed(images: &[PodImage]) -> Vec<(ImageSource, &str, &str, &str)> {
        images
            .iter()
            .map(|image| {
                (
                    image.source,
                    image.name.as_str(),
                    image.image.as_str(),
                    image.pointer.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn each_kind_places_its_pod_spec() {
        let cases = [
            ("", "Pod", json!({"spec": pod_spec()}), "/spec"),
            (
                "apps",
                "Deployment",
                json!({"spec": {"template": {"spec": pod_spec()}}}),
                "/spec/template/spec",
            ),
            (
                "apps",
                "ReplicaSet",
                json!({"spec": {"template": {"spec": pod_spec()}}}),
                "/spec/template/spec",
            ),
            (
                "apps",
                "StatefulSet",
                json!({"spec": {"template": {"spec": pod_spec()}}}),
                "/spec/template/spec",
            ),
            (
                "apps",
                "DaemonSet",
                json!({"spec": {"template": {"spec": pod_spec()}}}),
                "/spec/template/spec",
            ),
            (
                "batch",
                "Job",
                json!({"spec": {"template": {"spec": pod_spec()}}}),
                "/spec/template/spec",
            ),
            (
                "batch",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec()}}}}}),
                "/spec/jobTemplate/spec/template/spec",
            ),
        ];
        for (group, kind, object, prefix) in cases {
            let pointer = pod_spec_pointer(&gvk(group, kind)).expect(kind);
            assert_eq!(pointer, prefix, "{kind}");
            let images = list_images(&object, pointer).expect(kind);
            let p = |suffix: &str| format!("{prefix}{suffix}");
            let expected = [
                (
                    ImageSource::InitContainers,
                    "migrate",
                    "ghcr.io/acme/migrate:1",
                    p("/initContainers/0/image"),
                ),
                (
                    ImageSource::Containers,
                    "api",
                    "ghcr.io/acme/api:1.2",
                    p("/containers/0/image"),
                ),
                (
                    ImageSource::Containers,
                    "sidecar",
                    "registry.k8s.io/pause:3.9",
                    p("/containers/1/image"),
                ),
                (
                    ImageSource::EphemeralContainers,
                    "debug",
                    "busybox",
                    p("/ephemeralContainers/0/image"),
                ),
                (
                    ImageSource::ImageVolumes,
                    "models",
                    "ghcr.io/acme/models:7",
                    p("/volumes/1/image/reference"),
                ),
            ];
            let expected: Vec<_> = expected
                .iter()
                .map(|(list, name, image, pointer)| (*list, *name, *image, pointer.as_str()))
                .collect();
            assert_eq!(listed(&images), expected, "{kind}");
        }
    }

    #[test]
    fn other_kinds_are_not_inspected() {
        for (group, kind) in [
            ("", "Namespace"),
            ("", "ConfigMap"),
            ("apps", "Pod"),
            ("extensions", "Deployment"),
        ] {
            assert_eq!(pod_spec_pointer(&gvk(group, kind)), None, "{group}/{kind}");
        }
    }

    #[test]
    fn each_image_source_on_its_own() {
        for source in ImageSource::ALL {
            let (entry, suffix) = match source {
                ImageSource::ImageVolumes => (
                    json!({"name": "only", "image": {"reference": "ghcr.io/acme/x:1"}}),
                    "image/reference",
                ),
                _ => (
                    json!({"name": "only", "image": "ghcr.io/acme/x:1"}),
                    "image",
                ),
            };
            let mut spec = serde_json::Map::new();
            spec.insert(source.field().into(), json!([entry]));
            let images = list_images(&json!({"spec": spec}), "/spec").unwrap();
            assert_eq!(
                listed(&images),
                [(
                    source,
                    "only",
                    "ghcr.io/acme/x:1",
                    format!("/spec/{}/0/{suffix}", source.field()).as_str()
                )]
            );
        }
    }

    #[test]
    fn image_volumes_are_keyed_apart_from_containers_in_the_annotation() {
        let spec = json!({"spec": {
            "containers": [{"name": "models", "image": "ghcr.io/acme/api:1"}],
            "volumes": [{"name": "models", "image": {"reference": "ghcr.io/acme/models:7"}}],
        }});
        let keys: Vec<String> = list_images(&spec, "/spec")
            .unwrap()
            .iter()
            .map(PodImage::annotation_key)
            .collect();
        assert_eq!(keys, ["models", "volume:models"]);
    }

    #[test]
    fn missing_parts_have_no_images_and_wrong_types_are_errors() {
        assert!(list_images(&json!({}), "/spec").unwrap().is_empty());
        for spec in [
            json!({"containers": [{"name": "a"}]}),
            // Volumes of other kinds, and an image volume whose reference a controller fills in.
            json!({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "image": {}}, {"name": "c", "image": null}]}),
        ] {
            assert!(
                list_images(&json!({"spec": spec}), "/spec")
                    .unwrap()
                    .is_empty(),
                "{spec}"
            );
        }
        let cases = [
            (json!({"spec": []}), "/spec is not an object"),
            (
                json!({"spec": {"containers": {}}}),
                "/spec/containers is not a list",
            ),
            (
                json!({"spec": {"containers": ["nginx"]}}),
                "/spec/containers/0 is not an object",
            ),
            (
                json!({"spec": {"initContainers": [{"image": 7}]}}),
                "/spec/initContainers/0/image is not a string",
            ),
            (
                json!({"spec": {"containers": [{"name": 1, "image": "x"}]}}),
                "/spec/containers/0/name is not a string",
            ),
            (
                json!({"spec": {"volumes": {}}}),
                "/spec/volumes is not a list",
            ),
            (
                json!({"spec": {"volumes": [{"name": "v", "image": "ghcr.io/acme/x:1"}]}}),
                "/spec/volumes/0/image is not an object",
            ),
            (
                json!({"spec": {"volumes": [{"name": "v", "image": {"reference": ["x"]}}]}}),
                "/spec/volumes/0/image/reference is not a string",
            ),
        ];
        for (object, message) in cases {
            assert_eq!(
                list_images(&object, "/spec").unwrap_err().to_string(),
                message
            );
        }
    }

    #[test]
    fn an_update_brings_each_image_a_container_did_not_run_before() {
        let old = json!({"spec": {"containers": [
            {"name": "api", "image": "ghcr.io/acme/api:1.2"},
            {"name": "sidecar", "image": "ghcr.io/acme/sidecar:1"},
        ]}});
        let new = json!({"spec": {
            // Moved to another container, or to a new one: pulled afresh there, so new.
            "initContainers": [{"name": "init", "image": "ghcr.io/acme/sidecar:1"}],
            "containers": [
                {"name": "api", "image": "ghcr.io/acme/api:1.3"},
                {"name": "sidecar", "image": "ghcr.io/acme/api:1.2"},
                // Kept where it was: nothing new.
                {"name": "unchanged", "image": "ghcr.io/acme/tools:1"},
            ],
            "ephemeralContainers": [{"name": "debug", "image": "ghcr.io/acme/tools:1"}],
        }});
        let old = {
            let mut old = old;
            old["spec"]["containers"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "unchanged", "image": "ghcr.io/acme/tools:1"}));
            old
        };
        let images = list_images(&new, "/spec").unwrap();
        let brought = new_images(images.clone(), Some(&old), "/spec");
        let brought: Vec<_> = brought
            .iter()
            .map(|image| (image.name.as_str(), image.image.as_str()))
            .collect();
        assert_eq!(
            brought,
            [
                ("init", "ghcr.io/acme/sidecar:1"),
                ("api", "ghcr.io/acme/api:1.3"),
                ("sidecar", "ghcr.io/acme/api:1.2"),
                ("debug", "ghcr.io/acme/tools:1"),
            ]
        );
        assert_eq!(new_images(images.clone(), None, "/spec").len(), 5);
        // An undecodable old object hides nothing.
        let broken = json!({"spec": {"containers": "x"}});
        assert_eq!(new_images(images, Some(&broken), "/spec").len(), 5);
    }
}
