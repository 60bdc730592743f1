//! The watched Namespace cache behind [`NamespaceMap`].
//!
//! Only metadata is watched (`Api<PartialObjectMeta<Namespace>>` makes kube-rs ask for
//! metadata-only lists and watches), and only the labels and the
//! `provenance-gate.dev/` annotations are kept, so memory stays proportional to what the
//! webhook reads. A (re-)list replaces the whole map at once when it completes; until the
//! first list completes the map is not ready.
//!
//! [`KubeNamespaces`] answers from that map and, for a namespace the watch has not
//! delivered yet, reads its metadata from the API server once (bounded in time and in
//! concurrent reads) and keeps it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::kube::api::Api;
use ::kube::core::{ObjectMeta, PartialObjectMeta};
use ::kube::runtime::watcher::{self, watcher};
use ::kube::runtime::WatchStreamExt;
use ::kube::Resource;
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use tokio::sync::Semaphore;

use super::{NamespaceDirectory, NamespaceInfo, NamespaceLookupError, NamespaceMap};

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

/// Time for one namespace read on a review's path. The API server answers a GET in
/// milliseconds; the review's own budget (8 s of the webhook's 10 s) follows it.
pub const NAMESPACE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// Namespace reads in flight at once; more wait (within the timeout) rather than pile up.
const MAX_CONCURRENT_LOOKUPS: usize = 4;
/// How long a failed read is remembered, so that a burst of reviews for one unknown
/// namespace costs one read; meanwhile they are judged in the strictest mode.
const FAILED_LOOKUP_TTL: Duration = Duration::from_secs(5);
/// Failed reads remembered at most (the memory is cleared when full).
const MAX_FAILED_LOOKUPS: usize = 1024;

/// The watched namespaces, with a bounded read from the API server on a cache miss.
pub struct KubeNamespaces {
    map: Arc<NamespaceMap>,
    api: Api<Namespace>,
    timeout: Duration,
    permits: Semaphore,
    failed: Mutex<BTreeMap<String, (Instant, NamespaceLookupError)>>,
}

impl KubeNamespaces {
    /// `map` is the one [`watch_namespaces`] fills; namespaces read on a miss go into it.
    pub fn new(client: ::kube::Client, map: Arc<NamespaceMap>, timeout: Duration) -> Self {
        KubeNamespaces {
            map,
            api: Api::all(client),
            timeout,
            permits: Semaphore::new(MAX_CONCURRENT_LOOKUPS),
            failed: Mutex::new(BTreeMap::new()),
        }
    }

    async fn read(&self, name: &str) -> Result<NamespaceInfo, NamespaceLookupError> {
        if !is_namespace_name(name) {
            return Err(NamespaceLookupError::NotFound {
                name: name.to_owned(),
            });
        }
        if let Some(error) = self.recently_failed(name) {
            return Err(error);
        }
        let read = async {
            let _permit = self.permits.acquire().await;
            self.api.get_metadata_opt(name).await
        };
        let result = match tokio::time::timeout(self.timeout, read).await {
            Err(_) => Err(NamespaceLookupError::TimedOut {
                name: name.to_owned(),
                timeout: self.timeout,
            }),
            Ok(Err(error)) => Err(NamespaceLookupError::Api {
                name: name.to_owned(),
                why: error.to_string(),
            }),
            Ok(Ok(None)) => Err(NamespaceLookupError::NotFound {
                name: name.to_owned(),
            }),
            Ok(Ok(Some(object))) => {
                namespace_info(&object.metadata).ok_or_else(|| NamespaceLookupError::NotFound {
                    name: name.to_owned(),
                })
            }
        };
        match &result {
            Ok(info) => {
                tracing::info!(namespace = %name, "namespace read from the API server ahead of the watch");
                self.map.insert_if_absent(info.clone());
            }
            Err(error) => {
                tracing::warn!(namespace = %name, %error, "namespace lookup failed; judging in enforce mode");
                self.remember_failure(name, error.clone());
            }
        }
        result
    }

    fn recently_failed(&self, name: &str) -> Option<NamespaceLookupError> {
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failed
            .get(name)
            .filter(|(at, _)| at.elapsed() < FAILED_LOOKUP_TTL)
            .map(|(_, error)| error.clone())
    }

    fn remember_failure(&self, name: &str, error: NamespaceLookupError) {
        let mut failed = self
            .failed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if failed.len() >= MAX_FAILED_LOOKUPS {
            failed.clear();
        }
        failed.insert(name.to_owned(), (Instant::now(), error));
    }
}

impl NamespaceDirectory for KubeNamespaces {
    fn namespace(&self, name: &str) -> Option<NamespaceInfo> {
        self.map.namespace(name)
    }

    fn is_ready(&self) -> bool {
        self.map.is_ready()
    }

    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<NamespaceInfo, NamespaceLookupError>> {
        Box::pin(async move {
            match self.map.namespace(name) {
                Some(info) => Ok(info),
                None => self.read(name).await,
            }
        })
    }
}

/// An RFC 1123 label, as every namespace name is: anything else is not asked for.
fn is_namespace_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
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

    /// A client whose API server accepts connections and never answers.
    async fn silent_api_server() -> ::kube::Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config = ::kube::Config::new(format!("http://{address}").parse().unwrap());
        ::kube::Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn a_silent_api_server_costs_one_bounded_wait() {
        let map = Arc::new(NamespaceMap::default());
        let timeout = Duration::from_millis(200);
        let directory = KubeNamespaces::new(silent_api_server().await, Arc::clone(&map), timeout);
        let started = Instant::now();
        let error = directory.lookup("payments").await.unwrap_err();
        assert_eq!(
            error,
            NamespaceLookupError::TimedOut {
                name: "payments".into(),
                timeout
            }
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // The failure is remembered for a while: the next review is not held again.
        let started = Instant::now();
        assert_eq!(directory.lookup("payments").await.unwrap_err(), error);
        assert!(started.elapsed() < timeout);
        // What the watch delivers meanwhile is answered at once.
        map.upsert(NamespaceInfo {
            name: "payments".into(),
            ..NamespaceInfo::default()
        });
        assert!(directory.lookup("payments").await.is_ok());
        // A name no namespace can have is never asked for.
        let started = Instant::now();
        assert_eq!(
            directory.lookup("../secrets").await.unwrap_err(),
            NamespaceLookupError::NotFound {
                name: "../secrets".into()
            }
        );
        assert!(started.elapsed() < timeout);
    }

    #[test]
    fn only_namespace_names_are_looked_up() {
        for name in ["payments", "a", "team-1", &"x".repeat(63)] {
            assert!(is_namespace_name(name), "{name}");
        }
        for name in [
            "",
            "-a",
            "a-",
            "Payments",
            "a.b",
            "a/b",
            "../x",
            &"x".repeat(64),
        ] {
            assert!(!is_namespace_name(name), "{name}");
        }
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
