//! The periodic audit's metrics (`serve --audit-interval`), registered into the caller's
//! registry. The only label is the environment, made by the decision metrics' own
//! [`PolicyLabels`]: the policy's first names in policy order, `none` for namespaces no
//! environment selects, `other` past the cap, so both sets of series name environments alike.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AuditReport;
use crate::evidence::metrics::PolicyLabels;
use crate::policy::Policy;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvironmentLabel {
    pub environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabel {
    pub result: &'static str,
}

/// Gauges of the last completed audit, and counters of runs.
#[derive(Clone)]
pub struct AuditMetrics {
    pods: Family<EnvironmentLabel, Gauge>,
    denied_under_enforce: Family<EnvironmentLabel, Gauge>,
    expired_break_glass: Family<EnvironmentLabel, Gauge>,
    images_not_checked: Gauge,
    last_success: Gauge,
    runs: Family<RunLabel, Counter>,
}

impl AuditMetrics {
    pub fn register(registry: &mut Registry) -> AuditMetrics {
        let metrics = AuditMetrics {
            pods: Family::default(),
            denied_under_enforce: Family::default(),
            expired_break_glass: Family::default(),
            images_not_checked: Gauge::default(),
            last_success: Gauge::default(),
            runs: Family::default(),
        };
        registry.register(
            "provenance_gate_audit_pods",
            "Running Pods seen by the last audit",
            metrics.pods.clone(),
        );
        registry.register(
            "provenance_gate_audit_pods_denied_under_enforce",
            "Running Pods of the last audit with an image that enforce mode would refuse",
            metrics.denied_under_enforce.clone(),
        );
        registry.register(
            "provenance_gate_audit_pods_on_expired_break_glass",
            "Running Pods of the last audit still on unproven images after their namespace's break-glass expired",
            metrics.expired_break_glass.clone(),
        );
        registry.register(
            "provenance_gate_audit_images_not_checked",
            "Distinct images the last audit left unchecked (its bound was reached)",
            metrics.images_not_checked.clone(),
        );
        registry.register(
            "provenance_gate_audit_last_success_timestamp_seconds",
            "When the last audit completed (Unix seconds)",
            metrics.last_success.clone(),
        );
        registry.register(
            "provenance_gate_audit_runs",
            "Audits run, by result (ok, error)",
            metrics.runs.clone(),
        );
        metrics
    }

    /// Replaces the gauges with `report`'s figures, labelled by `policy` (the one the audit
    /// judged against); environments gone from the policy disappear, and those past the
    /// label cap are summed into `other`.
    pub fn observe(&self, report: &AuditReport, policy: &Policy) {
        let labels = PolicyLabels::new(policy);
        for family in [
            &self.pods,
            &self.denied_under_enforce,
            &self.expired_break_glass,
        ] {
            family.clear();
        }
        for (environment, totals) in &report.environments {
            let name = Some(environment.as_str()).filter(|name| !name.is_empty());
            let label = EnvironmentLabel {
                environment: labels.environment(name).as_str().to_owned(),
            };
            self.pods.get_or_create(&label).inc_by(totals.pods as i64);
            self.denied_under_enforce
                .get_or_create(&label)
                .inc_by(totals.pods_denied_under_enforce as i64);
            self.expired_break_glass
                .get_or_create(&label)
                .inc_by(totals.pods_on_expired_break_glass as i64);
        }
        self.images_not_checked
            .set(report.images_not_checked as i64);
        self.last_success.set(report.generated_at.as_second());
        self.runs.get_or_create(&RunLabel { result: "ok" }).inc();
    }

    pub fn failed(&self) {
        self.runs.get_or_create(&RunLabel { result: "error" }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EnvironmentTotals;
    use std::collections::BTreeMap;

    fn report(environments: &[(&str, usize)]) -> AuditReport {
        AuditReport {
            generated_at: "2026-12-01T12:00:00Z".parse().unwrap(),
            pods: 0,
            images_checked: 0,
            images_not_checked: 2,
            pods_not_read: 0,
            pods_denied_under_enforce: 0,
            pods_on_expired_break_glass: 0,
            environments: environments
                .iter()
                .map(|(name, denied)| {
                    let totals = EnvironmentTotals {
                        namespaces: 1,
                        pods: 10,
                        pods_denied_under_enforce: *denied,
                        pods_on_expired_break_glass: 0,
                    };
                    (name.to_string(), totals)
                })
                .collect::<BTreeMap<_, _>>(),
            namespaces: Vec::new(),
        }
    }

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn gauges_follow_the_last_audit_and_environments_are_capped() {
        use crate::evidence::metrics::{policy_with, MAX_ENVIRONMENT_LABELS};
        let mut registry = Registry::default();
        let metrics = AuditMetrics::register(&mut registry);
        let policy = policy_with(MAX_ENVIRONMENT_LABELS + 10, 1);
        metrics.observe(&report(&[("", 1), ("env-3", 3)]), &policy);
        let text = exposition(&registry);
        assert!(
            text.contains(
                "provenance_gate_audit_pods_denied_under_enforce{environment=\"env-3\"} 3"
            ),
            "{text}"
        );
        assert!(text
            .contains("provenance_gate_audit_pods_denied_under_enforce{environment=\"none\"} 1"));
        assert!(text.contains("provenance_gate_audit_images_not_checked 2"));
        assert!(text.contains("provenance_gate_audit_runs_total{result=\"ok\"} 1"));

        metrics.observe(&report(&[("env-4", 0)]), &policy);
        let text = exposition(&registry);
        assert!(
            !text.contains("env-3"),
            "a vanished environment is gone: {text}"
        );

        // Sorted by name, `env-10` … `env-41` come before `env-5`: the cap must follow the
        // policy's order, as the decision metrics do, not the report's.
        let many: Vec<(String, usize)> = (0..MAX_ENVIRONMENT_LABELS + 10)
            .map(|n| (format!("env-{n}"), 1))
            .collect();
        let many: Vec<(&str, usize)> = many.iter().map(|(name, n)| (name.as_str(), *n)).collect();
        metrics.observe(&report(&many), &policy);
        let text = exposition(&registry);
        let series = text
            .lines()
            .filter(|line| line.starts_with("provenance_gate_audit_pods_denied_under_enforce{"))
            .count();
        assert_eq!(series, MAX_ENVIRONMENT_LABELS + 1, "{text}");
        assert!(text
            .contains("provenance_gate_audit_pods_denied_under_enforce{environment=\"other\"} 10"));
        let last_in = format!("{{environment=\"env-{}\"}}", MAX_ENVIRONMENT_LABELS - 1);
        let first_out = format!("{{environment=\"env-{MAX_ENVIRONMENT_LABELS}\"}}");
        assert!(text.contains(&last_in), "{text}");
        assert!(!text.contains(&first_out), "{text}");

        let unknown = report(&[("not-in-the-policy", 2)]);
        metrics.observe(&unknown, &policy);
        assert!(exposition(&registry)
            .contains("provenance_gate_audit_pods_denied_under_enforce{environment=\"other\"} 2"));
    }
}
