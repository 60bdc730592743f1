//! The cluster through kube-rs: the policy ConfigMap and the Namespaces are watched into
//! in-memory state ([`PolicyCell`](super::PolicyCell), [`NamespaceMap`](super::NamespaceMap)),
//! and Events are sent in the background ([`KubeEvents`]). Only [`KubeNamespaces`] runs on
//! a request's path, and only for a namespace the watch has not delivered yet.
//!
//! - [`watch_policy`]: the ConfigMap holding `policy.yaml` ([`policy_watch`](super::policy_watch)).
//! - [`watch_namespaces`]: Namespace labels and `provenance-gate.dev/` annotations
//!   ([`namespace_watch`](super::namespace_watch)).
//! - [`KubeEvents`]: the [`EventRecorder`](super::EventRecorder) over `events.k8s.io/v1`
//!   ([`events`](super::events)).
//!
//! The watch functions return futures that never end while the API server is reachable
//! (errors are retried with kube-runtime's default backoff); the server spawns each in a
//! tracing span. [`KubeEvents::spawn`] starts its own task in an `events` span.
//!
//! # RBAC
//!
//! What the webhook's ServiceAccount needs, and nothing more (`<release-namespace>` is the
//! webhook's own namespace, `provenance-gate-policy` the policy ConfigMap's name):
//!
//! ```yaml
//! # ClusterRole, bound with a ClusterRoleBinding
//! rules:
//!   # watch_namespaces: labels pick the mode, annotations carry break-glass.
//!   # (The watcher lists and watches; KubeNamespaces gets a namespace the watch has
//!   # not delivered yet.)
//!   - apiGroups: [""]
//!     resources: ["namespaces"]
//!     verbs: ["get", "list", "watch"]
//!   # KubeEvents: Events on denied workloads (their namespace), on Namespaces
//!   # (cluster-scoped: written to "default") and on the policy ConfigMap.
//!   # create for a new Event, patch when kube-runtime's Recorder aggregates a repeat.
//!   - apiGroups: ["events.k8s.io"]
//!     resources: ["events"]
//!     verbs: ["create", "patch"]
//! ---
//! # Role in <release-namespace>, bound with a RoleBinding
//! rules:
//!   # watch_policy: one ConfigMap, selected with fieldSelector metadata.name=<name>, so
//!   # the rule may be narrowed to it with resourceNames.
//!   - apiGroups: [""]
//!     resources: ["configmaps"]
//!     resourceNames: ["provenance-gate-policy"]
//!     verbs: ["get", "list", "watch"]
//! ```

pub use super::events::{KubeEvents, DEFAULT_QUEUE_CAPACITY, POD_NAME_ENV, REPORTER};
pub use super::namespace_watch::{
    watch_namespaces, KubeNamespaces, ANNOTATION_PREFIX, NAMESPACE_LOOKUP_TIMEOUT,
};
pub use super::policy_watch::{
    apply_policy_source, watch_policy, PolicySourceError, POLICY_CONFIGMAP, POLICY_KEY,
};
