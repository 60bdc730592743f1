//! A hook that sees every HTTP exchange the registry client makes, so that metrics
//! (`provenance_gate_registry_requests_total{registry,operation,code}`) and tests can count
//! what was actually sent without the client knowing about Prometheus.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// What a request was for. A small closed set, so it is safe as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegistryOperation {
    /// `HEAD` (or the `GET` fallback) of a manifest by tag.
    Resolve,
    /// `GET` of a manifest by digest.
    Manifest,
    /// `GET` of a blob by digest.
    Blob,
    /// `GET` of the OCI 1.1 referrers API.
    Referrers,
    /// `GET` of the referrers tag schema (`sha256-<hex>`), where the API is missing.
    ReferrersTag,
    /// `GET` of a bearer token from the realm a registry named.
    Token,
}

impl RegistryOperation {
    /// The label value: `resolve`, `manifest`, `blob`, `referrers`, `referrers_tag`, `token`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryOperation::Resolve => "resolve",
            RegistryOperation::Manifest => "manifest",
            RegistryOperation::Blob => "blob",
            RegistryOperation::Referrers => "referrers",
            RegistryOperation::ReferrersTag => "referrers_tag",
            RegistryOperation::Token => "token",
        }
    }
}

impl fmt::Display for RegistryOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Told about each HTTP exchange once it has its final status (after redirects).
///
/// `registry` is the registry as named in image references (`docker.io`, `ghcr.io`), also for
/// token requests that went to another host, so that labels stay bounded by the policy.
/// `status` is `None` when no response arrived: a timeout, a failed connection, a refused
/// redirect. Implementations must be cheap and must not block: they run on the request path.
pub trait RequestObserver: Send + Sync {
    fn request_finished(&self, registry: &str, operation: RegistryOperation, status: Option<u16>);
}

/// An observer that ignores everything; the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreRequests;

impl RequestObserver for IgnoreRequests {
    fn request_finished(&self, _: &str, _: RegistryOperation, _: Option<u16>) {}
}

/// Key of one counter: registry, operation and final status (`None`: no response).
pub type RequestKey = (String, RegistryOperation, Option<u16>);

/// Counts requests per (registry, operation, status), for tests and as a simple metrics source.
#[derive(Debug, Default)]
pub struct RequestCounter {
    counts: Mutex<BTreeMap<RequestKey, u64>>,
}

impl RequestCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of all counters.
    pub fn snapshot(&self) -> BTreeMap<RequestKey, u64> {
        self.lock().clone()
    }

    /// All requests counted so far.
    pub fn total(&self) -> u64 {
        self.lock().values().sum()
    }

    /// Requests for `operation`, whatever their registry and status.
    pub fn count_of(&self, operation: RegistryOperation) -> u64 {
        self.lock()
            .iter()
            .filter(|((_, counted, _), _)| *counted == operation)
            .map(|(_, count)| count)
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RequestKey, u64>> {
        // A panic elsewhere while holding the lock leaves plain counters behind: still usable.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RequestObserver for RequestCounter {
    fn request_finished(&self, registry: &str, operation: RegistryOperation, status: Option<u16>) {
        *self
            .lock()
            .entry((registry.to_owned(), operation, status))
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_counts_per_registry_operation_and_status() {
        let counter = RequestCounter::new();
        counter.request_finished("ghcr.io", RegistryOperation::Resolve, Some(200));
        counter.request_finished("ghcr.io", RegistryOperation::Resolve, Some(200));
        counter.request_finished("ghcr.io", RegistryOperation::Token, Some(401));
        counter.request_finished("docker.io", RegistryOperation::Blob, None);

        assert_eq!(counter.total(), 4);
        assert_eq!(counter.count_of(RegistryOperation::Resolve), 2);
        let snapshot = counter.snapshot();
        assert_eq!(
            snapshot[&("ghcr.io".to_owned(), RegistryOperation::Resolve, Some(200))],
            2
        );
        assert_eq!(
            snapshot[&("docker.io".to_owned(), RegistryOperation::Blob, None)],
            1
        );
    }

    #[test]
    fn operation_labels_are_stable() {
        assert_eq!(RegistryOperation::ReferrersTag.as_str(), "referrers_tag");
        assert_eq!(RegistryOperation::Token.to_string(), "token");
    }
}
