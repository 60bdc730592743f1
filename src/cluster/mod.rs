//! The cluster, behind narrow traits: the current policy, the namespaces (labels pick the
//! environment, annotations carry break-glass), and Kubernetes Events. The webhook reads
//! from watched in-memory state; the one exception is a namespace the watch has not
//! delivered yet, read once from the API server under a short timeout and then cached.
//!
//! Static implementations serve `serve --policy FILE --namespace-labels …` (no cluster)
//! and tests; the kube-rs implementations watch the API server.

pub mod events;
pub mod kube;
pub mod namespace_watch;
pub mod policy_watch;
pub mod pull_secrets;
pub mod workloads;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;

use crate::policy::Policy;

/// What the webhook knows of a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Why a namespace's labels and annotations are not known. The caller judges such a
/// namespace in the strictest mode, never in `defaultMode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceLookupError {
    /// Not delivered by the watch, and there is no API server to ask.
    #[error("namespace {name:?} has not been seen by the namespace watch")]
    NotSeen { name: String },
    /// The API server says there is no such namespace (or the name cannot be one).
    #[error("namespace {name:?} does not exist")]
    NotFound { name: String },
    /// The API server did not answer within the lookup's time (or too many reads were
    /// already waiting for it).
    #[error("failed to read namespace {name:?} from the API server within {timeout:?}")]
    TimedOut {
        name: String,
        timeout: std::time::Duration,
    },
    /// The API server refused or failed the read.
    #[error("failed to read namespace {name:?} from the API server: {why}")]
    Api { name: String, why: String },
}

/// The namespaces, as last seen.
pub trait NamespaceDirectory: Send + Sync {
    /// `None` when the namespace is unknown (not yet seen, or deleted).
    fn namespace(&self, name: &str) -> Option<NamespaceInfo>;
    /// Whether the initial list has been received.
    fn is_ready(&self) -> bool;
    /// The namespace as last seen or, when it has not been seen yet, as read from where the
    /// namespaces come from, within a bounded time. A pod may arrive before the watch has
    /// delivered its new namespace (both applied from one file), and judging it without the
    /// namespace's labels would pick the default mode, softer than its environment's.
    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<NamespaceInfo, NamespaceLookupError>> {
        let found = self
            .namespace(name)
            .ok_or_else(|| NamespaceLookupError::NotSeen {
                name: name.to_owned(),
            });
        Box::pin(std::future::ready(found))
    }
}

/// The policy in force: the last valid one seen.
pub trait PolicySource: Send + Sync {
    /// `None` until a valid policy has been loaded.
    fn current(&self) -> Option<Arc<Policy>>;
}

/// A Kubernetes Event about an object (a denial on a Pod's owner, a break-glass admission
/// on its Namespace, an invalid policy on the ConfigMap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    /// Object the event is about.
    pub regarding: ObjectRef,
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// CamelCase reason, e.g. `ImageDenied`, `BreakGlassAdmission`, `PolicyInvalid`.
    pub reason: String,
    /// What happened, for a person.
    pub note: String,
    /// Short verb, e.g. `Admit`, `Deny`, `Reload`.
    pub action: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Identifies the object an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

/// Where Events go. Recording must not block or fail an admission: implementations queue
/// and send in the background, dropping (and logging) what they cannot send.
pub trait EventRecorder: Send + Sync {
    fn record(&self, event: ClusterEvent);
}

/// Every namespace has the same labels and no annotations: `serve --namespace-labels`.
#[derive(Debug, Clone, Default)]
pub struct StaticNamespaces {
    labels: BTreeMap<String, String>,
}

impl StaticNamespaces {
    pub fn new(labels: BTreeMap<String, String>) -> Self {
        StaticNamespaces { labels }
    }
}

impl NamespaceDirectory for StaticNamespaces {
    fn namespace(&self, name: &str) -> Option<NamespaceInfo> {
        Some(NamespaceInfo {
            name: name.to_owned(),
            labels: self.labels.clone(),
            annotations: BTreeMap::new(),
        })
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// A namespace map set by hand: tests, and the watched cache's storage.
#[derive(Debug, Default)]
pub struct NamespaceMap {
    namespaces: std::sync::RwLock<BTreeMap<String, NamespaceInfo>>,
    ready: std::sync::atomic::AtomicBool,
}

impl NamespaceMap {
    pub fn upsert(&self, namespace: NamespaceInfo) {
        let mut namespaces = self
            .namespaces
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        namespaces.insert(namespace.name.clone(), namespace);
    }

    /// Adds `namespace` unless the map already has it: a namespace read from the API server
    /// never overwrites what the watch delivered meanwhile, which is at least as new.
    pub fn insert_if_absent(&self, namespace: NamespaceInfo) {
        let mut namespaces = self
            .namespaces
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        namespaces
            .entry(namespace.name.clone())
            .or_insert(namespace);
    }

    pub fn remove(&self, name: &str) {
        let mut namespaces = self
            .namespaces
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        namespaces.remove(name);
    }

    /// Replaces everything (a re-list) and marks the map ready.
    pub fn replace_all(&self, all: impl IntoIterator<Item = NamespaceInfo>) {
        let mut namespaces = self
            .namespaces
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *namespaces = all
            .into_iter()
            .map(|namespace| (namespace.name.clone(), namespace))
            .collect();
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl NamespaceDirectory for NamespaceMap {
    fn namespace(&self, name: &str) -> Option<NamespaceInfo> {
        let namespaces = self
            .namespaces
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        namespaces.get(name).cloned()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The policy in force, swapped atomically when a valid new one arrives.
#[derive(Debug, Default)]
pub struct PolicyCell {
    policy: ArcSwapOption<Policy>,
}

impl PolicyCell {
    pub fn new(policy: Option<Policy>) -> Self {
        PolicyCell {
            policy: ArcSwapOption::new(policy.map(Arc::new)),
        }
    }

    /// Puts `policy` in force for every review that starts after this call.
    pub fn replace(&self, policy: Policy) {
        self.policy.store(Some(Arc::new(policy)));
    }
}

impl PolicySource for PolicyCell {
    fn current(&self) -> Option<Arc<Policy>> {
        self.policy.load_full()
    }
}

/// Events written to the log only (no cluster, or Events disabled).
#[derive(Debug, Default)]
pub struct LogEvents;

impl EventRecorder for LogEvents {
    fn record(&self, event: ClusterEvent) {
        tracing::info!(
            kind = %event.regarding.kind,
            namespace = ?event.regarding.namespace,
            name = %event.regarding.name,
            reason = %event.reason,
            note = %event.note,
            "event"
        );
    }
}

/// Events kept in memory, for tests.
#[derive(Debug, Default)]
pub struct RecordedEvents {
    events: std::sync::Mutex<Vec<ClusterEvent>>,
}

impl RecordedEvents {
    pub fn events(&self) -> Vec<ClusterEvent> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl EventRecorder for RecordedEvents {
    fn record(&self, event: ClusterEvent) {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event);
    }
}
