//! Which images an object runs: the containers, init containers and ephemeral containers of
//! a Pod or of the pod template of a workload controller, each with the JSON pointer of its
//! `image` field (for the digest patch).

use std::collections::BTreeSet;

use serde_json::Value;

use super::review::GroupVersionKind;

/// The container lists of a pod spec, in the order the kubelet starts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerList {
    InitContainers,
    Containers,
    EphemeralContainers,
}

impl ContainerList {
    pub const ALL: [ContainerList; 3] = [
        ContainerList::InitContainers,
        ContainerList::Containers,
        ContainerList::EphemeralContainers,
    ];

    /// The field name in a pod spec.
    pub fn field(self) -> &'static str {
        match self {
            ContainerList::InitContainers => "initContainers",
            ContainerList::Containers => "containers",
            ContainerList::EphemeralContainers => "ephemeralContainers",
        }
    }
}

/// One container's image, where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    pub list: ContainerList,
    /// The container's name (empty when the object has none; the API server rejects that).
    pub container: String,
    /// The image reference as written.
    pub image: String,
    /// JSON pointer of the `image` field, e.g. `/spec/containers/0/image`.
    pub pointer: String,
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

/// Every container image of `object` whose pod spec is at `spec_pointer`. A missing spec or
/// list has no images (the API server's own validation refuses what is required); a value
/// of the wrong type is an error, so that nothing is silently skipped.
pub fn list_images(
    object: &Value,
    spec_pointer: &str,
) -> Result<Vec<ContainerImage>, ImageListError> {
    let wrong = |pointer: String, expected| ImageListError { pointer, expected };
    let spec = match object.pointer(spec_pointer) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(spec @ Value::Object(_)) => spec,
        Some(_) => return Err(wrong(spec_pointer.to_owned(), "an object")),
    };
    let mut images = Vec::new();
    for list in ContainerList::ALL {
        let list_pointer = format!("{spec_pointer}/{}", list.field());
        let containers = match spec.get(list.field()) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(containers)) => containers,
            Some(_) => return Err(wrong(list_pointer, "a list")),
        };
        for (index, container) in containers.iter().enumerate() {
            let pointer = format!("{list_pointer}/{index}");
            let Value::Object(container) = container else {
                return Err(wrong(pointer, "an object"));
            };
            let container_name = match container.get("name") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(name)) => name.clone(),
                Some(_) => return Err(wrong(format!("{pointer}/name"), "a string")),
            };
            match container.get("image") {
                // Required by the API server for Pods and templates alike; nothing to check.
                None | Some(Value::Null) => {}
                Some(Value::String(image)) => images.push(ContainerImage {
                    list,
                    container: container_name,
                    image: image.clone(),
                    pointer: format!("{pointer}/image"),
                }),
                Some(_) => return Err(wrong(format!("{pointer}/image"), "a string")),
            }
        }
    }
    Ok(images)
}

/// The images `object` runs that `old_object` did not run anywhere: what an UPDATE brings.
/// An undecodable old object counts as empty, so that everything is checked.
pub fn new_images(
    images: Vec<ContainerImage>,
    old_object: Option<&Value>,
    spec_pointer: &str,
) -> Vec<ContainerImage> {
    let before: BTreeSet<String> = old_object
        .and_then(|old| list_images(old, spec_pointer).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|image| image.image)
        .collect();
    images
        .into_iter()
        .filter(|image| !before.contains(&image.image))
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
        })
    }

    fn listed(images: &[ContainerImage]) -> Vec<(ContainerList, &str, &str, &str)> {
        images
            .iter()
            .map(|image| {
                (
                    image.list,
                    image.container.as_str(),
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
                    ContainerList::InitContainers,
                    "migrate",
                    "ghcr.io/acme/migrate:1",
                    p("/initContainers/0/image"),
                ),
                (
                    ContainerList::Containers,
                    "api",
                    "ghcr.io/acme/api:1.2",
                    p("/containers/0/image"),
                ),
                (
                    ContainerList::Containers,
                    "sidecar",
                    "registry.k8s.io/pause:3.9",
                    p("/containers/1/image"),
                ),
                (
                    ContainerList::EphemeralContainers,
                    "debug",
                    "busybox",
                    p("/ephemeralContainers/0/image"),
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
    fn each_container_list_on_its_own() {
        for list in ContainerList::ALL {
            let mut spec = serde_json::Map::new();
            spec.insert(
                list.field().into(),
                json!([{"name": "only", "image": "ghcr.io/acme/x:1"}]),
            );
            let images = list_images(&json!({"spec": spec}), "/spec").unwrap();
            assert_eq!(
                listed(&images),
                [(
                    list,
                    "only",
                    "ghcr.io/acme/x:1",
                    format!("/spec/{}/0/image", list.field()).as_str()
                )]
            );
        }
    }

    #[test]
    fn missing_parts_have_no_images_and_wrong_types_are_errors() {
        assert!(list_images(&json!({}), "/spec").unwrap().is_empty());
        assert!(
            list_images(&json!({"spec": {"containers": [{"name": "a"}]}}), "/spec")
                .unwrap()
                .is_empty()
        );
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
        ];
        for (object, message) in cases {
            assert_eq!(
                list_images(&object, "/spec").unwrap_err().to_string(),
                message
            );
        }
    }

    #[test]
    fn an_update_brings_only_images_not_present_before() {
        let old = json!({"spec": {"containers": [
            {"name": "api", "image": "ghcr.io/acme/api:1.2"},
            {"name": "sidecar", "image": "ghcr.io/acme/sidecar:1"},
        ]}});
        let new = json!({"spec": {
            // Moved to another container and list: not new.
            "initContainers": [{"name": "init", "image": "ghcr.io/acme/sidecar:1"}],
            "containers": [
                {"name": "api", "image": "ghcr.io/acme/api:1.3"},
                {"name": "sidecar", "image": "ghcr.io/acme/api:1.2"},
            ],
            "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
        }});
        let images = list_images(&new, "/spec").unwrap();
        let brought = new_images(images.clone(), Some(&old), "/spec");
        let brought: Vec<_> = brought.iter().map(|image| image.image.as_str()).collect();
        assert_eq!(brought, ["ghcr.io/acme/api:1.3", "busybox"]);
        assert_eq!(new_images(images.clone(), None, "/spec").len(), 4);
        // An undecodable old object hides nothing.
        let broken = json!({"spec": {"containers": "x"}});
        assert_eq!(new_images(images, Some(&broken), "/spec").len(), 4);
    }
}
