//! Prometheus metrics of DESIGN.md, registered into a caller-owned registry (no globals).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub kind: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub mode: String,
    pub result: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryRequestLabels {
    pub registry: String,
    pub operation: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

/// Every metric of the webhook. Cloning shares the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `provenance_gate_admissions_total{kind,operation}`
    pub admissions: Family<AdmissionLabels, Counter>,
    /// `provenance_gate_decisions_total{mode,result,reason}`, one per image decision.
    pub decisions: Family<DecisionLabels, Counter>,
    /// `provenance_gate_admission_duration_seconds`
    pub admission_duration: Histogram,
    /// `provenance_gate_verification_duration_seconds`
    pub verification_duration: Histogram,
    /// `provenance_gate_registry_requests_total{registry,operation,code}`
    pub registry_requests: Family<RegistryRequestLabels, Counter>,
    /// `provenance_gate_cache_requests_total{cache,result}`
    pub cache_requests: Family<CacheLabels, Counter>,
    /// `provenance_gate_policy_reloads_total{result}`
    pub policy_reloads: Family<ReloadLabels, Counter>,
    /// `provenance_gate_break_glass_active{namespace}`: 1 while a break-glass is active.
    pub break_glass_active: Family<NamespaceLabels, Gauge>,
}

/// Buckets from 5 ms to about 10 s: cached answers take milliseconds, cold registry round
/// trips seconds, and the webhook's budget is 8 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 12)
}

impl Metrics {
    /// Creates the metrics and registers them under the `provenance_gate` prefix.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            admissions: Family::default(),
            decisions: Family::default(),
            admission_duration: Histogram::new(latency_buckets()),
            verification_duration: Histogram::new(latency_buckets()),
            registry_requests: Family::default(),
            cache_requests: Family::default(),
            policy_reloads: Family::default(),
            break_glass_active: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("provenance_gate");
        registry.register(
            "admissions",
            "Admission reviews received, by object kind and operation",
            metrics.admissions.clone(),
        );
        registry.register(
            "decisions",
            "Image decisions, by namespace mode, result and reason",
            metrics.decisions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission review",
            metrics.admission_duration.clone(),
        );
        registry.register(
            "verification_duration_seconds",
            "Time to check one image (resolution, discovery and verification)",
            metrics.verification_duration.clone(),
        );
        registry.register(
            "registry_requests",
            "Requests sent to registries, by registry, operation and HTTP status (0: no answer)",
            metrics.registry_requests.clone(),
        );
        registry.register(
            "cache_requests",
            "Cache look-ups, by cache and result (hit, miss)",
            metrics.cache_requests.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy loads, by result (success, failure)",
            metrics.policy_reloads.clone(),
        );
        registry.register(
            "break_glass_active",
            "1 while a namespace has an active break-glass",
            metrics.break_glass_active.clone(),
        );
        metrics
    }

    /// Counts one image decision.
    pub fn record_decision(&self, mode: &str, result: &str, reason: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                mode: mode.to_owned(),
                result: result.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// The text exposition of `registry` (`/metrics`).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_design_metric_is_exposed_with_its_labels() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics
            .admissions
            .get_or_create(&AdmissionLabels {
                kind: "Pod".into(),
                operation: "CREATE".into(),
            })
            .inc();
        metrics.record_decision("enforce", "denied", "no_attestation");
        metrics.admission_duration.observe(0.02);
        metrics.verification_duration.observe(0.01);
        metrics
            .registry_requests
            .get_or_create(&RegistryRequestLabels {
                registry: "ghcr.io".into(),
                operation: "resolve".into(),
                code: "200".into(),
            })
            .inc();
        metrics
            .cache_requests
            .get_or_create(&CacheLabels {
                cache: "attestation".into(),
                result: "hit".into(),
            })
            .inc();
        metrics
            .policy_reloads
            .get_or_create(&ReloadLabels {
                result: "success".into(),
            })
            .inc();
        metrics
            .break_glass_active
            .get_or_create(&NamespaceLabels {
                namespace: "payments".into(),
            })
            .set(1);
        let text = encode(&registry);
        for expected in [
            r#"provenance_gate_admissions_total{kind="Pod",operation="CREATE"} 1"#,
            r#"provenance_gate_decisions_total{mode="enforce",result="denied",reason="no_attestation"} 1"#,
            "provenance_gate_admission_duration_seconds_count 1",
            "provenance_gate_verification_duration_seconds_count 1",
            r#"provenance_gate_registry_requests_total{registry="ghcr.io",operation="resolve",code="200"} 1"#,
            r#"provenance_gate_cache_requests_total{cache="attestation",result="hit"} 1"#,
            r#"provenance_gate_policy_reloads_total{result="success"} 1"#,
            r#"provenance_gate_break_glass_active{namespace="payments"} 1"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }
}
