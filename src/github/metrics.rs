//! The GitHub source's metrics, registered into the caller's registry: requests by endpoint
//! kind and status class, the rate-limit budget each host last reported, and how often a
//! check fell back to the registry because GitHub was out of reach.
//!
//! Every label is bounded: endpoint kinds and status classes are fixed sets, and hosts come
//! from the policy's `github` block (the API host and `bundleHosts`), capped at
//! [`MAX_HOST_LABELS`] with `other` beyond.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Distinct `host` label values at most; later hosts are counted as `other`.
pub const MAX_HOST_LABELS: usize = 16;

/// What a request to GitHub was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET …/attestations/{digest}` (one page).
    Listing,
    /// `POST /orgs/{org}/attestations/bulk-list` (one page).
    BulkList,
    /// A `bundle_url`.
    Bundle,
    /// `POST /app/installations/{id}/access_tokens`.
    AccessToken,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Listing => "listing",
            Endpoint::BulkList => "bulk_list",
            Endpoint::Bundle => "bundle",
            Endpoint::AccessToken => "access_token",
        }
    }
}

/// `2xx` … `5xx` for an answer, `none` when none arrived (connection failure, timeout).
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "none",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabel {
    pub host: String,
}

/// See the module documentation; cheap to clone (the families are shared).
#[derive(Clone, Debug, Default)]
pub struct GithubMetrics {
    requests: Family<RequestLabels, Counter>,
    rate_limit_remaining: Family<HostLabel, Gauge>,
    degraded: Counter,
    hosts: Arc<Mutex<HashSet<String>>>,
}

impl GithubMetrics {
    /// Creates the metrics and registers them under the `provenance_gate_github` prefix.
    pub fn register(registry: &mut Registry) -> GithubMetrics {
        let metrics = GithubMetrics::default();
        let registry = registry.sub_registry_with_prefix("provenance_gate_github");
        registry.register(
            "requests",
            "Requests to GitHub's API, by endpoint kind (listing, bulk_list, bundle, access_token) and status class (2xx..5xx, none: no answer)",
            metrics.requests.clone(),
        );
        registry.register(
            "rate_limit_remaining",
            "Requests left in the rate-limit window, as each GitHub host last reported (x-ratelimit-remaining)",
            metrics.rate_limit_remaining.clone(),
        );
        registry.register(
            "degraded_to_registry",
            "Image checks that asked the registry instead because GitHub was out of reach (rate limit, outage)",
            metrics.degraded.clone(),
        );
        metrics
    }

    pub fn request_finished(&self, endpoint: Endpoint, status: Option<u16>) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.as_str(),
                status: status_class(status),
            })
            .inc();
    }

    pub fn rate_limit_remaining(&self, host: &str, remaining: i64) {
        self.rate_limit_remaining
            .get_or_create(&HostLabel {
                host: self.host_label(host),
            })
            .set(remaining);
    }

    pub fn degraded_to_registry(&self) {
        self.degraded.inc();
    }

    fn host_label(&self, host: &str) -> String {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if hosts.contains(host) {
            return host.to_owned();
        }
        if hosts.len() >= MAX_HOST_LABELS {
            return "other".to_owned();
        }
        hosts.insert(host.to_owned());
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn status_classes_are_a_fixed_set() {
        let cases = [
            (Some(200), "2xx"),
            (Some(201), "2xx"),
            (Some(304), "3xx"),
            (Some(401), "4xx"),
            (Some(429), "4xx"),
            (Some(503), "5xx"),
            (Some(99), "other"),
            (None, "none"),
        ];
        for (status, class) in cases {
            assert_eq!(status_class(status), class, "{status:?}");
        }
    }

    #[test]
    fn host_labels_are_capped() {
        let mut registry = Registry::default();
        let metrics = GithubMetrics::register(&mut registry);
        for index in 0..MAX_HOST_LABELS + 5 {
            metrics.rate_limit_remaining(&format!("host{index}.example"), index as i64);
        }
        metrics.request_finished(Endpoint::Listing, Some(304));
        metrics.degraded_to_registry();
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let hosts = text
            .lines()
            .filter(|line| line.starts_with("provenance_gate_github_rate_limit_remaining{"))
            .count();
        assert_eq!(hosts, MAX_HOST_LABELS + 1, "{text}");
        assert!(text.contains("host=\"other\""), "{text}");
        assert!(
            text.contains(
                "provenance_gate_github_requests_total{endpoint=\"listing\",status=\"3xx\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("provenance_gate_github_degraded_to_registry_total 1"),
            "{text}"
        );
    }
}
