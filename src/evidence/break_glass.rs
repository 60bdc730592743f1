//! Follows `provenance_gate_break_glass_active{namespace}` to the end of each break-glass.
//! Reviews set the gauge, but a namespace with no review after its break-glass expired
//! would show it active for as long as nothing is deployed there, which is exactly when an
//! alert on it matters least and misleads most. A timer re-evaluates the namespaces whose
//! gauge is 1 against their annotations as last seen and the policy in force, so the gauge
//! drops within one [`SWEEP_PERIOD`] of the expiry, of the annotations' removal, or of the
//! approver's removal from the policy.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::cluster::{NamespaceDirectory, PolicySource};
use crate::decision::breakglass::{self, BreakGlassState};
use crate::policy::Policy;

use super::metrics::Metrics;
use super::review::record_break_glass_state;

/// How often active break-glasses are re-evaluated: the gauge lags an expiry by at most
/// this much.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(15);

/// Re-evaluates every active break-glass gauge at `now`.
pub fn sweep(
    metrics: &Metrics,
    policy: Option<&Policy>,
    namespaces: &dyn NamespaceDirectory,
    now: Timestamp,
) {
    for (namespace, expires) in metrics.break_glass_active.active() {
        let state = match (policy, namespaces.namespace(&namespace)) {
            // As a review would judge it now (a later expiry written since is followed).
            (Some(policy), Some(info)) => breakglass::under_policy(policy, &info.annotations, now),
            // Deleted, or no longer delivered by the watch: nothing is admitted there.
            (_, None) => BreakGlassState::Absent,
            // No policy to judge the annotations against: the expiry the gauge was set with.
            (None, Some(_)) if expires <= now => BreakGlassState::Absent,
            (None, Some(_)) => continue,
        };
        record_break_glass_state(metrics, &namespace, &state);
    }
}

/// Runs [`sweep`] every `period`, with the time from `clock`, forever; spawn it.
pub async fn follow_expiry(
    metrics: Metrics,
    policy: Arc<dyn PolicySource>,
    namespaces: Arc<dyn NamespaceDirectory>,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    period: Duration,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let policy = policy.current();
        sweep(&metrics, policy.as_deref(), &*namespaces, clock());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::{NamespaceInfo, NamespaceMap};
    use crate::decision::breakglass::{
        APPROVED_BY_ANNOTATION, EXPIRES_ANNOTATION, REASON_ANNOTATION, TICKET_ANNOTATION,
    };

    const POLICY: &str = r#"
version: 1
rules:
  - name: acme
    images: ["ghcr.io/acme/**"]
    repositories: [{name: acme/api}]
breakGlass:
  maxDuration: 8h
  approvers: {users: [alice]}
"#;

    fn at(time: &str) -> Timestamp {
        time.parse().unwrap()
    }

    fn declared(expires: &str) -> NamespaceInfo {
        let annotations = [
            (TICKET_ANNOTATION, "INC-1"),
            (REASON_ANNOTATION, "CI down"),
            (EXPIRES_ANNOTATION, expires),
            (APPROVED_BY_ANNOTATION, "alice"),
        ];
        NamespaceInfo {
            name: "payments".into(),
            labels: BTreeMap::new(),
            annotations: annotations
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        }
    }

    /// The gauge of `payments`, after it was set active until `expires` and `namespace`
    /// is what the directory holds, swept at `now`.
    fn swept(
        expires: &str,
        namespace: Option<NamespaceInfo>,
        policy: Option<&Policy>,
        now: &str,
    ) -> i64 {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.break_glass_active.activate("payments", at(expires));
        let directory = NamespaceMap::default();
        directory.replace_all(namespace);
        sweep(&metrics, policy, &directory, at(now));
        let gauge = metrics
            .break_glass_active
            .get(&crate::evidence::metrics::NamespaceLabels {
                namespace: "payments".into(),
            });
        gauge.expect("the series stays").get()
    }

    #[test]
    fn the_sweep_turns_off_what_is_no_longer_in_force() {
        let policy = Policy::from_yaml(POLICY).unwrap();
        let policy = Some(&policy);
        let expires = "2026-01-01T12:00:00Z";
        let before = "2026-01-01T11:59:00Z";
        let after = "2026-01-01T12:00:10Z";
        // Judged from the annotations as last seen.
        assert_eq!(swept(expires, Some(declared(expires)), policy, before), 1);
        assert_eq!(swept(expires, Some(declared(expires)), policy, after), 0);
        // Extended since: the new expiry is followed.
        let extended = Some(declared("2026-01-01T14:00:00Z"));
        assert_eq!(swept(expires, extended, policy, after), 1);
        // Annotations removed, or the namespace gone.
        let lifted = NamespaceInfo {
            name: "payments".into(),
            ..NamespaceInfo::default()
        };
        assert_eq!(swept(expires, Some(lifted), policy, before), 0);
        assert_eq!(swept(expires, None, policy, before), 0);
        // The approver removed from the policy.
        let without_alice = Policy::from_yaml(&POLICY.replace("[alice]", "[bob]")).unwrap();
        let namespace = Some(declared(expires));
        assert_eq!(swept(expires, namespace, Some(&without_alice), before), 0);
        // No policy loaded: the expiry the gauge was set with.
        assert_eq!(swept(expires, Some(declared(expires)), None, before), 1);
        assert_eq!(swept(expires, Some(declared(expires)), None, after), 0);
    }
}
