//! Prometheus metrics (docs/operating.md lists them), registered into a caller-owned registry
//! (no globals).
//!
//! Every label value is bounded: values that come from requests are typed ([`KindLabel`],
//! [`OperationLabel`]) with `other` for the rest, decision labels are compiled-in strings,
//! and the series keyed by names from the cluster are capped ([`BreakGlassGauges`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::decision::Verdict;
use crate::policy::Mode;

/// `kind` of `provenance_gate_admissions_total`: the kinds the webhook judges, `other` for
/// any other kind a request names (a review can claim any kind, so the label cannot be it).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum KindLabel {
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Namespace,
    Other,
    /// The review could not be decoded, so it has no kind.
    Malformed,
}

impl KindLabel {
    const JUDGED: [KindLabel; 8] = [
        KindLabel::Pod,
        KindLabel::Deployment,
        KindLabel::ReplicaSet,
        KindLabel::StatefulSet,
        KindLabel::DaemonSet,
        KindLabel::Job,
        KindLabel::CronJob,
        KindLabel::Namespace,
    ];

    /// The label of a request's `kind` in API `group`; a kind of another group (a custom
    /// resource named `Pod`) is `other`.
    pub fn of(group: &str, kind: &str) -> KindLabel {
        KindLabel::JUDGED
            .into_iter()
            .find(|label| label.group() == group && label.as_str() == kind)
            .unwrap_or(KindLabel::Other)
    }

    fn group(self) -> &'static str {
        match self {
            KindLabel::Deployment
            | KindLabel::ReplicaSet
            | KindLabel::StatefulSet
            | KindLabel::DaemonSet => "apps",
            KindLabel::Job | KindLabel::CronJob => "batch",
            _ => "",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KindLabel::Pod => "Pod",
            KindLabel::Deployment => "Deployment",
            KindLabel::ReplicaSet => "ReplicaSet",
            KindLabel::StatefulSet => "StatefulSet",
            KindLabel::DaemonSet => "DaemonSet",
            KindLabel::Job => "Job",
            KindLabel::CronJob => "CronJob",
            KindLabel::Namespace => "Namespace",
            KindLabel::Other => "other",
            KindLabel::Malformed => "(malformed)",
        }
    }
}

/// `operation` of `provenance_gate_admissions_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum OperationLabel {
    Create,
    Update,
    Delete,
    Connect,
    Malformed,
}

impl OperationLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationLabel::Create => "CREATE",
            OperationLabel::Update => "UPDATE",
            OperationLabel::Delete => "DELETE",
            OperationLabel::Connect => "CONNECT",
            OperationLabel::Malformed => "(malformed)",
        }
    }
}

impl From<crate::admission::review::Operation> for OperationLabel {
    fn from(operation: crate::admission::review::Operation) -> Self {
        use crate::admission::review::Operation;
        match operation {
            Operation::Create => OperationLabel::Create,
            Operation::Update => OperationLabel::Update,
            Operation::Delete => OperationLabel::Delete,
            Operation::Connect => OperationLabel::Connect,
        }
    }
}

impl EncodeLabelValue for KindLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for OperationLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub kind: KindLabel,
    pub operation: OperationLabel,
}

/// Compiled-in values only: the type keeps request text out of these labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub mode: &'static str,
    pub result: &'static str,
    pub reason: &'static str,
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
    pub break_glass_active: BreakGlassGauges,
    /// `provenance_gate_connections_refused_total`: webhook connections closed at accept
    /// because the connection limit was reached.
    pub connections_refused: Counter,
}

/// Namespaces with a `break_glass_active` series at most. Series are only made for
/// namespaces whose break-glass is active in the cluster, but a long-lived process in a
/// large cluster must still not grow without end.
pub const MAX_BREAK_GLASS_SERIES: usize = 256;

/// `provenance_gate_break_glass_active{namespace}` with at most [`MAX_BREAK_GLASS_SERIES`]
/// namespaces: past that, a new namespace's gauge is not exported (and a warning says so).
#[derive(Clone, Debug, Default)]
pub struct BreakGlassGauges {
    family: Family<NamespaceLabels, Gauge>,
    exported: Arc<Mutex<HashSet<String>>>,
}

impl BreakGlassGauges {
    /// The namespace's gauge; a detached one when the cap is reached.
    pub fn get_or_create(&self, labels: &NamespaceLabels) -> Gauge {
        let mut exported = self
            .exported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !exported.contains(&labels.namespace) {
            if exported.len() >= MAX_BREAK_GLASS_SERIES {
                tracing::warn!(
                    namespace = %labels.namespace,
                    limit = MAX_BREAK_GLASS_SERIES,
                    "break_glass_active has reached its series limit; this namespace is not exported"
                );
                return Gauge::default();
            }
            exported.insert(labels.namespace.clone());
        }
        self.family.get_or_create_owned(labels)
    }

    /// The namespace's gauge if it has a series.
    pub fn get(&self, labels: &NamespaceLabels) -> Option<Gauge> {
        self.family.get(labels).map(|gauge| gauge.clone())
    }
}

/// Upper bounds (seconds) from 0.1 ms to 10 s: a cached answer takes a fraction of a
/// millisecond, so the first buckets are 0.1 ms apart to read its p99; cold registry round
/// trips take tens of milliseconds to seconds, and the webhook's budget is 8 s.
const LATENCY_BUCKETS: [f64; 20] = [
    0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_buckets() -> impl Iterator<Item = f64> {
    LATENCY_BUCKETS.into_iter()
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
            break_glass_active: BreakGlassGauges::default(),
            connections_refused: Counter::default(),
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
            metrics.break_glass_active.family.clone(),
        );
        registry.register(
            "connections_refused",
            "Webhook connections closed at accept because the connection limit was reached",
            metrics.connections_refused.clone(),
        );
        metrics
    }

    /// Counts one image decision.
    pub fn record_decision(&self, mode: Mode, verdict: Verdict, reason: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                mode: mode.as_str(),
                result: verdict.as_str(),
                reason,
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
                kind: KindLabel::of("", "Pod"),
                operation: OperationLabel::Create,
            })
            .inc();
        metrics.record_decision(Mode::Enforce, Verdict::Denied, "no_attestation");
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

    #[test]
    fn latency_buckets_resolve_a_tenth_of_a_millisecond_up_to_the_budget() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        // A cached review and a slightly slower one: 0.1 ms apart, so in different buckets.
        metrics.admission_duration.observe(0.000_15);
        metrics.admission_duration.observe(0.000_25);
        let text = encode(&registry);
        let bucket = |le: &str| {
            let series =
                format!("provenance_gate_admission_duration_seconds_bucket{{le=\"{le}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(series.as_str()))
                .unwrap_or_else(|| panic!("no bucket le={le} in:\n{text}"))
                .to_owned()
        };
        assert_eq!(bucket("0.0001"), "0");
        assert_eq!(bucket("0.0002"), "1");
        assert_eq!(bucket("0.0003"), "2");
        assert_eq!(bucket("+Inf"), "2");
        let budget = crate::defaults::REVIEW_BUDGET.as_secs_f64();
        assert!(
            LATENCY_BUCKETS.last().is_some_and(|&bound| bound >= budget),
            "the last bucket must hold a review that uses the whole budget"
        );
        assert!(LATENCY_BUCKETS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn kinds_of_other_groups_and_unknown_kinds_are_other() {
        assert_eq!(KindLabel::of("apps", "Deployment"), KindLabel::Deployment);
        assert_eq!(KindLabel::of("", "Namespace"), KindLabel::Namespace);
        assert_eq!(KindLabel::of("batch", "CronJob"), KindLabel::CronJob);
        assert_eq!(KindLabel::of("example.com", "Pod"), KindLabel::Other);
        assert_eq!(KindLabel::of("", "Deployment"), KindLabel::Other);
        assert_eq!(KindLabel::of("", "Kind0001"), KindLabel::Other);
    }

    #[test]
    fn break_glass_series_stop_at_the_limit() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        for index in 0..MAX_BREAK_GLASS_SERIES + 10 {
            let labels = NamespaceLabels {
                namespace: format!("ns-{index}"),
            };
            metrics.break_glass_active.get_or_create(&labels).set(1);
        }
        let text = encode(&registry);
        let series = text
            .lines()
            .filter(|line| line.starts_with("provenance_gate_break_glass_active{"))
            .count();
        assert_eq!(series, MAX_BREAK_GLASS_SERIES, "{text}");
        // A namespace that has a series keeps it.
        let first = NamespaceLabels {
            namespace: "ns-0".into(),
        };
        metrics.break_glass_active.get_or_create(&first).set(0);
        assert_eq!(
            metrics.break_glass_active.get(&first).map(|g| g.get()),
            Some(0)
        );
    }
}
