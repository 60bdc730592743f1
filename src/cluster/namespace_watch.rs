//! The watched Namespace cache behind [`NamespaceMap`].
//!
//! Only metadata is watched (`Api<PartialObjectMeta<Namespace>>` makes kube-rs ask for
//! metadata-only lists and watches), and only the labels and the
//! `provenance-gate.dev/` annotations are kept, so memory stays proportional to what the
//! webhook reads. A (re-)list replaces the whole map at once when it completes; until the
//! first list completes the map is not ready.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use ::kube::api::Api;
use ::kube::core::{ObjectMeta, PartialObjectMeta};
use ::kube::runtime::watcher::{self, watcher};
use ::kube::runtime::WatchStreamExt;
use ::kube::Resource;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;

use super::{NamespaceDirectory, NamespaceInfo, NamespaceMap};

/// Annotations kept on a [`NamespaceInfo`]: the webhook's own (break-glass).
pub const ANNOTATION_PREFIX: &str = "provenance-gate.dev/";

/// Watches every Namespace's metadata into `map`, retrying with kube-runtime's default
/// backoff. Never returns while the client works; spawn it (in a tracing span).
pub fn watch_namespaces(
    client: ::kube::Client,
    map: Arc<NamespaceMap>,
) -> impl Future<Output = ()> + Send + 'static {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    async move {
        let mut cache = NamespaceCache::new(map);
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => cache.apply(event),
                Err(error) => tracing::warn!(
                    error = %error,
                    ready = cache.map.is_ready(),
                    "namespace watch failed; retrying with backoff"
                ),
            }
        }
        tracing::error!("namespace watch ended");
    }
}

/// What the webhook keeps of a Namespace; `None` for an object without a name.
pub fn namespace_info(meta: &ObjectMeta) -> Option<NamespaceInfo> {
    let name = meta.name.clone().filter(|name| !name.is_empty())?;
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations: BTreeMap<String, String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(key, _)| key.starts_with(ANNOTATION_PREFIX))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Some(NamespaceInfo {
        name,
        labels,
        annotations,
    })
}

/// Applies watcher events to a [`NamespaceMap`]: `Init`…`InitDone` buffers a full list and
/// swaps it in (the map keeps answering from the previous list meanwhile), `Apply` upserts,
/// `Delete` removes.
#[derive(Debug)]
pub struct NamespaceCache {
    map: Arc<NamespaceMap>,
    /// The list in progress, between `Init` and `InitDone`.
    listing: Option<Vec<NamespaceInfo>>,
}

impl NamespaceCache {
    pub fn new(map: Arc<NamespaceMap>) -> NamespaceCache {
        NamespaceCache { map, listing: None }
    }

    /// Applies one watcher event; works for full objects and [`PartialObjectMeta`].
    pub fn apply<K: Resource>(&mut self, event: watcher::Event<K>) {
        match event {
            watcher::Event::Init => {
                tracing::debug!("listing namespaces");
                self.listing = Some(Vec::new());
            }
            watcher::Event::InitApply(object) => {
                if let Some(info) = namespace_info(object.meta()) {
                    self.listing.get_or_insert_with(Vec::new).push(info);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                tracing::info!(namespaces = listed.len(), "namespaces listed");
                self.map.replace_all(listed);
            }
            watcher::Event::Apply(object) => {
                if let Some(info) = namespace_info(object.meta()) {
                    tracing::debug!(namespace = %info.name, "namespace applied");
                    self.map.upsert(info);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(name) = object.meta().name.as_deref() {
                    tracing::debug!(namespace = %name, "namespace deleted");
                    self.map.remove(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let pairs = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(pairs(labels)),
            annotations: Some(pairs(annotations)),
            resource_version: Some("42".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        }
    }

    fn namespace(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta {
            metadata: meta(name, labels, &[]),
            ..PartialObjectMeta::default()
        }
    }

    fn labels_of(map: &NamespaceMap, name: &str) -> Option<BTreeMap<String, String>> {
        map.namespace(name).map(|info| info.labels)
    }

    #[test]
    fn the_watch_asks_for_metadata_only() {
        assert!(<PartialObjectMeta<Namespace> as Resource>::metadata_api());
    }

    #[test]
    fn only_labels_and_own_annotations_are_kept() {
        let info = namespace_info(&meta(
            "payments",
            &[("env", "production"), ("team", "pay")],
            &[
                ("provenance-gate.dev/break-glass-ticket", "INC-4711"),
                ("provenance-gate.dev/break-glass-reason", "hotfix"),
                ("kubectl.kubernetes.io/last-applied-configuration", "{…}"),
                ("provenance-gate.devx/other", "no"),
                ("example.com/provenance-gate.dev/", "no"),
            ],
        ))
        .expect("named");
        assert_eq!(info.name, "payments");
        assert_eq!(
            info.labels,
            BTreeMap::from([
                ("env".to_owned(), "production".to_owned()),
                ("team".to_owned(), "pay".to_owned()),
            ])
        );
        assert_eq!(
            info.annotations,
            BTreeMap::from([
                (
                    "provenance-gate.dev/break-glass-reason".to_owned(),
                    "hotfix".to_owned()
                ),
                (
                    "provenance-gate.dev/break-glass-ticket".to_owned(),
                    "INC-4711".to_owned()
                ),
            ])
        );
    }

    #[test]
    fn missing_maps_are_empty_and_unnamed_objects_are_skipped() {
        let bare = ObjectMeta {
            name: Some("bare".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(
            namespace_info(&bare),
            Some(NamespaceInfo {
                name: "bare".into(),
                ..NamespaceInfo::default()
            })
        );
        assert_eq!(namespace_info(&ObjectMeta::default()), None);
        let empty_name = ObjectMeta {
            name: Some(String::new()),
            ..ObjectMeta::default()
        };
        assert_eq!(namespace_info(&empty_name), None);
    }

    #[test]
    fn initial_list_fills_the_map_and_makes_it_ready_only_when_done() {
        let map = Arc::new(NamespaceMap::default());
        let mut cache = NamespaceCache::new(Arc::clone(&map));
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(namespace(
            "payments",
            &[("env", "production")],
        )));
        cache.apply(watcher::Event::InitApply(namespace(
            "dev",
            &[("env", "dev")],
        )));
        assert!(!map.is_ready());
        assert_eq!(
            map.namespace("payments"),
            None,
            "not swapped in before InitDone"
        );
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::InitDone);
        assert!(map.is_ready());
        assert_eq!(
            labels_of(&map, "payments"),
            Some(BTreeMap::from([(
                "env".to_owned(),
                "production".to_owned()
            )]))
        );
        assert!(map.namespace("dev").is_some());
    }

    #[test]
    fn an_empty_initial_list_still_makes_the_map_ready() {
        let map = Arc::new(NamespaceMap::default());
        let mut cache = NamespaceCache::new(Arc::clone(&map));
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::Init);
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::InitDone);
        assert!(map.is_ready());
    }

    #[test]
    fn apply_upserts_and_delete_removes() {
        let map = Arc::new(NamespaceMap::default());
        let mut cache = NamespaceCache::new(Arc::clone(&map));
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::Init);
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::InitDone);

        cache.apply(watcher::Event::Apply(namespace(
            "payments",
            &[("env", "staging")],
        )));
        assert_eq!(
            labels_of(&map, "payments"),
            Some(BTreeMap::from([("env".to_owned(), "staging".to_owned())]))
        );
        cache.apply(watcher::Event::Apply(namespace(
            "payments",
            &[("env", "production")],
        )));
        assert_eq!(
            labels_of(&map, "payments"),
            Some(BTreeMap::from([(
                "env".to_owned(),
                "production".to_owned()
            )]))
        );
        cache.apply(watcher::Event::Delete(namespace("payments", &[])));
        assert_eq!(map.namespace("payments"), None);
        assert!(map.is_ready());
    }

    #[test]
    fn a_relist_replaces_everything_and_keeps_serving_meanwhile() {
        let map = Arc::new(NamespaceMap::default());
        let mut cache = NamespaceCache::new(Arc::clone(&map));
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(namespace("old", &[])));
        cache.apply(watcher::Event::InitApply(namespace(
            "kept",
            &[("env", "dev")],
        )));
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::InitDone);

        // The watch restarts (desync): `old` was deleted while it was down.
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(namespace(
            "kept",
            &[("env", "production")],
        )));
        assert!(
            map.namespace("old").is_some(),
            "previous list serves until InitDone"
        );
        assert!(map.is_ready());
        cache.apply(watcher::Event::InitApply(namespace("new", &[])));
        cache.apply::<PartialObjectMeta<Namespace>>(watcher::Event::InitDone);

        assert_eq!(map.namespace("old"), None);
        assert!(map.namespace("new").is_some());
        assert_eq!(
            labels_of(&map, "kept"),
            Some(BTreeMap::from([(
                "env".to_owned(),
                "production".to_owned()
            )]))
        );
    }

    #[test]
    fn full_namespace_objects_work_too() {
        let map = Arc::new(NamespaceMap::default());
        let mut cache = NamespaceCache::new(Arc::clone(&map));
        let full = Namespace {
            metadata: meta(
                "payments",
                &[("env", "production")],
                &[("provenance-gate.dev/break-glass-ticket", "INC-1")],
            ),
            ..Namespace::default()
        };
        cache.apply(watcher::Event::Apply(full));
        let info = map.namespace("payments").expect("upserted");
        assert_eq!(
            info.annotations
                .get("provenance-gate.dev/break-glass-ticket"),
            Some(&"INC-1".to_owned())
        );
    }
}
