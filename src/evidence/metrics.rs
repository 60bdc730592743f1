//! Prometheus metrics (docs/operating.md lists them), registered into a caller-owned registry
//! (no globals).
//!
//! Every label value is bounded: values that come from requests are typed ([`KindLabel`],
//! [`OperationLabel`]) with `other` for the rest, decision labels are compiled-in strings,
//! environment and rule labels are names from the policy in force, capped ([`PolicyLabels`]),
//! and the series keyed by names from the cluster are capped ([`BreakGlassGauges`]).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::decision::Verdict;
use crate::policy::{Mode, Policy};

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

/// Compiled-in values and names from the policy only: the types keep request text out of
/// these labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub mode: &'static str,
    pub result: &'static str,
    pub reason: &'static str,
    pub environment: PolicyLabel,
    pub rule: PolicyLabel,
}

/// `provenance_gate_digest_verdicts_total`: the first verdict on a digest in an environment.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DigestVerdictLabels {
    pub environment: PolicyLabel,
    pub rule: PolicyLabel,
    pub result: &'static str,
    pub reason: &'static str,
}

/// Environments of the policy with their own `environment` label value, in policy order;
/// later ones are `other`.
pub const MAX_ENVIRONMENT_LABELS: usize = 32;
/// Rules of the policy with their own `rule` label value, in policy order; later ones are
/// `other`.
pub const MAX_RULE_LABELS: usize = 64;
/// Longest environment or rule label value; longer names are cut (on a character boundary).
pub const MAX_POLICY_LABEL_BYTES: usize = 128;

/// An `environment` or `rule` label value: a name from the policy in force, `none` when the
/// decision has none (no environment selects the namespace; exempt and unmatched images have
/// no rule) or `other` past the cap. Made only by [`PolicyLabels`], so never request text.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PolicyLabel(Arc<str>);

impl PolicyLabel {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn none() -> PolicyLabel {
        PolicyLabel(Arc::from("none"))
    }

    fn other() -> PolicyLabel {
        PolicyLabel(Arc::from("other"))
    }
}

impl EncodeLabelValue for PolicyLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The `environment` and `rule` label values under one policy: the first
/// [`MAX_ENVIRONMENT_LABELS`] environment names and the first [`MAX_RULE_LABELS`] rule names
/// in the order the policy lists them, so the series stay the same across reviews and
/// replicas, and a reload that adds names at the end keeps the existing ones.
pub struct PolicyLabels<'a> {
    policy: &'a Policy,
}

impl<'a> PolicyLabels<'a> {
    pub fn new(policy: &'a Policy) -> Self {
        PolicyLabels { policy }
    }

    /// The label of environment `name` (`None`: no environment selects the namespace).
    pub fn environment(&self, name: Option<&str>) -> PolicyLabel {
        let names = self.policy.environments().iter().map(|env| env.name());
        bounded(name, names, MAX_ENVIRONMENT_LABELS)
    }

    /// The label of rule `name` (`None`: no rule was tried).
    pub fn rule(&self, name: Option<&str>) -> PolicyLabel {
        let names = self.policy.rules().iter().map(|rule| rule.name());
        bounded(name, names, MAX_RULE_LABELS)
    }
}

/// `name` when it is among the first `cap` of `names`; a name the policy does not list is
/// `other` too, so that no other text becomes a label.
fn bounded<'n>(
    name: Option<&str>,
    mut names: impl Iterator<Item = &'n str>,
    cap: usize,
) -> PolicyLabel {
    let Some(name) = name else {
        return PolicyLabel::none();
    };
    if !names.by_ref().take(cap).any(|listed| listed == name) {
        return PolicyLabel::other();
    }
    let mut end = name.len().min(MAX_POLICY_LABEL_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    PolicyLabel(Arc::from(&name[..end]))
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
    /// `provenance_gate_decisions_total{mode,result,reason,environment,rule}`, one per image
    /// decision.
    pub decisions: Family<DecisionLabels, Counter>,
    /// `provenance_gate_digest_verdicts_total{environment,rule,result,reason}`, one per
    /// digest and environment: the first verdict on it.
    pub digest_verdicts: DigestVerdicts,
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
/// Each active one keeps its expiry, for the timer that turns it off when it expires
/// (`evidence::break_glass`).
#[derive(Clone, Debug, Default)]
pub struct BreakGlassGauges {
    family: Family<NamespaceLabels, Gauge>,
    /// Namespaces with a series, and the expiry of those active.
    exported: Arc<Mutex<HashMap<String, Option<jiff::Timestamp>>>>,
}

impl BreakGlassGauges {
    /// The namespace's gauge; a detached one when the cap is reached.
    pub fn get_or_create(&self, labels: &NamespaceLabels) -> Gauge {
        let mut exported = self.lock();
        if !exported.contains_key(&labels.namespace) {
            if exported.len() >= MAX_BREAK_GLASS_SERIES {
                tracing::warn!(
                    namespace = %labels.namespace,
                    limit = MAX_BREAK_GLASS_SERIES,
                    "break_glass_active has reached its series limit; this namespace is not exported"
                );
                return Gauge::default();
            }
            exported.insert(labels.namespace.clone(), None);
        }
        self.family.get_or_create_owned(labels)
    }

    /// The namespace's gauge if it has a series.
    pub fn get(&self, labels: &NamespaceLabels) -> Option<Gauge> {
        self.family.get(labels).map(|gauge| gauge.clone())
    }

    /// 1 until `expires`.
    pub fn activate(&self, namespace: &str, expires: jiff::Timestamp) {
        let labels = NamespaceLabels {
            namespace: namespace.to_owned(),
        };
        self.get_or_create(&labels).set(1);
        if let Some(kept) = self.lock().get_mut(namespace) {
            *kept = Some(expires);
        }
    }

    /// 0, for a namespace that has a series; no series is made for the others, so the label
    /// set stays small.
    pub fn deactivate(&self, namespace: &str) {
        let labels = NamespaceLabels {
            namespace: namespace.to_owned(),
        };
        if let Some(gauge) = self.get(&labels) {
            gauge.set(0);
        }
        if let Some(kept) = self.lock().get_mut(namespace) {
            *kept = None;
        }
    }

    /// The namespaces whose gauge is 1, with the expiry each was set with.
    pub fn active(&self) -> Vec<(String, jiff::Timestamp)> {
        self.lock()
            .iter()
            .filter_map(|(namespace, expires)| expires.map(|at| (namespace.clone(), at)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<jiff::Timestamp>>> {
        self.exported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Digest and environment pairs remembered by [`DigestVerdicts`], in each of its two
/// generations: at most twice this many 8-byte hashes are held (about 1 MiB).
pub const DIGESTS_REMEMBERED_PER_GENERATION: usize = 32 * 1024;

/// `provenance_gate_digest_verdicts_total`: counts a digest's first verdict in an
/// environment, once, however many Pods and replicas run it afterwards, to approximate
/// releases rather than admissions.
///
/// The seen-set is bounded: hashes of (digest, environment), in two generations. A pair is
/// looked up in both; a pair found in the older generation moves to the current one; when
/// the current one is full it becomes the older one and the oldest is dropped. A digest not
/// admitted anywhere in the last [`DIGESTS_REMEMBERED_PER_GENERATION`] new pairs or more is
/// forgotten and counted again when it returns, so the count can run over, never under.
/// Each replica remembers on its own: with N replicas a digest counts up to N times.
#[derive(Clone, Debug, Default)]
pub struct DigestVerdicts {
    family: Family<DigestVerdictLabels, Counter>,
    seen: Arc<Mutex<SeenPairs>>,
}

impl DigestVerdicts {
    /// Counts `labels` when this is the first verdict on `digest` in `labels.environment`.
    /// `digest` is the image's digest, or its reference when it was never resolved.
    pub fn record_first(&self, digest: &str, labels: DigestVerdictLabels) {
        let first = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(digest, labels.environment.as_str());
        if first {
            self.family.get_or_create(&labels).inc();
        }
    }
}

/// The bounded seen-set of [`DigestVerdicts`].
#[derive(Debug, Default)]
struct SeenPairs {
    hasher: std::collections::hash_map::RandomState,
    current: HashSet<u64>,
    older: HashSet<u64>,
}

impl SeenPairs {
    /// Whether the pair is new (not remembered).
    fn insert(&mut self, digest: &str, environment: &str) -> bool {
        let key = self.hasher.hash_one((digest, environment));
        if self.current.contains(&key) {
            return false;
        }
        let remembered = self.older.remove(&key);
        if self.current.len() >= DIGESTS_REMEMBERED_PER_GENERATION {
            self.older = std::mem::take(&mut self.current);
        }
        self.current.insert(key);
        !remembered
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
            digest_verdicts: DigestVerdicts::default(),
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
            "Image decisions, by namespace mode, result, reason, environment and rule",
            metrics.decisions.clone(),
        );
        registry.register(
            "digest_verdicts",
            "First verdict on each image digest per environment (a release, not each Pod), by environment, rule, result and reason",
            metrics.digest_verdicts.family.clone(),
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
    pub fn record_decision(
        &self,
        mode: Mode,
        verdict: Verdict,
        reason: &'static str,
        (environment, rule): (PolicyLabel, PolicyLabel),
    ) {
        self.decisions
            .get_or_create(&DecisionLabels {
                mode: mode.as_str(),
                result: verdict.as_str(),
                reason,
                environment,
                rule,
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

/// A valid policy with `environments` environments (`env-N`) and `rules` rules (`rule-N`),
/// for tests of the label caps.
#[cfg(test)]
pub(crate) fn policy_with(environments: usize, rules: usize) -> Policy {
    let mut yaml = String::from("version: 1\nenvironments:\n");
    for index in 0..environments {
        yaml += &format!(
            "  - name: env-{index}\n    namespaceSelector: {{matchLabels: {{env: e{index}}}}}\n    mode: enforce\n"
        );
    }
    yaml += "rules:\n";
    for index in 0..rules {
        yaml += &format!(
            "  - name: rule-{index}\n    images: [\"ghcr.io/r{index}/**\"]\n    repositories: [{{name: acme/r{index}}}]\n"
        );
    }
    Policy::from_yaml(&yaml).expect("the generated policy is valid")
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
        let policy = policy_with(1, 1);
        let labels = PolicyLabels::new(&policy);
        let (environment, rule) = (
            labels.environment(Some("env-0")),
            labels.rule(Some("rule-0")),
        );
        metrics.record_decision(
            Mode::Enforce,
            Verdict::Denied,
            "no_attestation",
            (environment.clone(), rule.clone()),
        );
        metrics.digest_verdicts.record_first(
            "sha256:aa",
            DigestVerdictLabels {
                environment,
                rule,
                result: "denied",
                reason: "no_attestation",
            },
        );
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
            r#"provenance_gate_decisions_total{mode="enforce",result="denied",reason="no_attestation",environment="env-0",rule="rule-0"} 1"#,
            r#"provenance_gate_digest_verdicts_total{environment="env-0",rule="rule-0",result="denied",reason="no_attestation"} 1"#,
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

    /// A policy with `environments` environments `env-N` and `rules` rules `rule-N`.
    #[test]
    fn environment_and_rule_labels_are_the_policys_first_names() {
        let policy = policy_with(MAX_ENVIRONMENT_LABELS + 3, MAX_RULE_LABELS + 3);
        let labels = PolicyLabels::new(&policy);
        let last_env = format!("env-{}", MAX_ENVIRONMENT_LABELS - 1);
        let past_env = format!("env-{MAX_ENVIRONMENT_LABELS}");
        let last_rule = format!("rule-{}", MAX_RULE_LABELS - 1);
        let past_rule = format!("rule-{MAX_RULE_LABELS}");
        for (label, expected) in [
            (labels.environment(Some("env-0")), "env-0"),
            (labels.environment(Some(&last_env)), last_env.as_str()),
            (labels.environment(Some(&past_env)), "other"),
            (labels.environment(None), "none"),
            (labels.environment(Some("kube-system")), "other"),
            (labels.rule(Some("rule-0")), "rule-0"),
            (labels.rule(Some(&last_rule)), last_rule.as_str()),
            (labels.rule(Some(&past_rule)), "other"),
            (labels.rule(None), "none"),
            (labels.rule(Some("env-0")), "other"),
        ] {
            assert_eq!(label.as_str(), expected);
        }
    }

    #[test]
    fn long_policy_names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_POLICY_LABEL_BYTES);
        let yaml = format!(
            "version: 1\nrules:\n  - name: {long}\n    images: [\"ghcr.io/**\"]\n    repositories: [{{name: acme/api}}]\n"
        );
        let policy = Policy::from_yaml(&yaml).unwrap();
        let label = PolicyLabels::new(&policy).rule(Some(&long));
        assert_eq!(label.as_str(), "é".repeat(MAX_POLICY_LABEL_BYTES / 2));
    }

    fn digest_labels(environment: &PolicyLabel, result: &'static str) -> DigestVerdictLabels {
        DigestVerdictLabels {
            environment: environment.clone(),
            rule: PolicyLabel::none(),
            result,
            reason: "verified",
        }
    }

    /// `provenance_gate_digest_verdicts_total` lines of `registry`, summed.
    fn digest_verdicts(registry: &Registry) -> u64 {
        encode(registry)
            .lines()
            .filter(|line| line.starts_with("provenance_gate_digest_verdicts_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    #[test]
    fn a_digest_counts_once_per_environment_with_its_first_verdict() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let policy = policy_with(2, 0);
        let labels = PolicyLabels::new(&policy);
        let (prod, staging) = (
            labels.environment(Some("env-0")),
            labels.environment(Some("env-1")),
        );
        let digests = &metrics.digest_verdicts;
        digests.record_first("sha256:aa", digest_labels(&prod, "allowed"));
        digests.record_first("sha256:aa", digest_labels(&prod, "allowed"));
        digests.record_first("sha256:aa", digest_labels(&prod, "denied"));
        digests.record_first("sha256:aa", digest_labels(&staging, "warned"));
        digests.record_first("sha256:bb", digest_labels(&prod, "denied"));
        let text = encode(&registry);
        for expected in [
            r#"provenance_gate_digest_verdicts_total{environment="env-0",rule="none",result="allowed",reason="verified"} 1"#,
            r#"provenance_gate_digest_verdicts_total{environment="env-1",rule="none",result="warned",reason="verified"} 1"#,
            r#"provenance_gate_digest_verdicts_total{environment="env-0",rule="none",result="denied",reason="verified"} 1"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        assert_eq!(digest_verdicts(&registry), 3, "{text}");
    }

    #[test]
    fn the_digest_seen_set_is_bounded_and_keeps_what_recurs() {
        let mut seen = SeenPairs::default();
        assert!(seen.insert("sha256:hot", "prod"));
        assert!(seen.insert("sha256:cold", "prod"));
        // Two generations of new digests; the hot one recurs in each, the cold one not.
        for index in 0..2 * DIGESTS_REMEMBERED_PER_GENERATION {
            assert!(seen.insert(&format!("sha256:{index}"), "prod"));
            if index % 1000 == 0 {
                assert!(!seen.insert("sha256:hot", "prod"), "at {index}");
            }
        }
        assert!(seen.current.len() + seen.older.len() <= 2 * DIGESTS_REMEMBERED_PER_GENERATION);
        assert!(!seen.insert("sha256:hot", "prod"));
        assert!(
            seen.insert("sha256:cold", "prod"),
            "forgotten, so new again"
        );
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
