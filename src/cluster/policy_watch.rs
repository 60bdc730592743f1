//! The policy ConfigMap, watched and applied live into a [`PolicyCell`].
//!
//! A valid `policy.yaml` replaces the policy for every later review. An invalid one, a
//! ConfigMap without the key, or a deleted ConfigMap leaves the last good policy in force
//! and is reported: an error log naming the located problems, a
//! `provenance_gate_policy_reloads_total{result="failure"}` count and a Warning Event
//! `PolicyInvalid` on the ConfigMap. Content already seen (a re-list, an edit of another
//! key or of labels) is not reloaded and not counted.

use std::future::Future;
use std::sync::Arc;

use ::kube::api::Api;
use ::kube::runtime::watcher::{self, watcher};
use ::kube::runtime::WatchStreamExt;
use ::kube::ResourceExt;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;

use super::{ClusterEvent, EventRecorder, EventType, ObjectRef, PolicyCell, PolicySource};
use crate::evidence::metrics::{Metrics, ReloadLabels};
use crate::policy::{Policy, PolicyError};

/// Default name of the policy ConfigMap, in the webhook's namespace.
pub const POLICY_CONFIGMAP: &str = "provenance-gate-policy";

/// Default key of the policy in the ConfigMap's `data`.
pub const POLICY_KEY: &str = "policy.yaml";

/// Issues named in an Event's note; the log carries them all.
const ISSUES_IN_EVENT: usize = 3;

/// Which ConfigMap and key hold the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfigMap {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl std::fmt::Display for PolicyConfigMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why the policy ConfigMap's content was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicySourceError {
    /// `data` has no such key.
    #[error("ConfigMap {configmap} has no key {key}")]
    MissingKey { configmap: String, key: String },
    /// The key is in `binaryData`, which is not read.
    #[error("ConfigMap {configmap} has key {key} in binaryData; put the policy under data")]
    BinaryKey { configmap: String, key: String },
    /// The text is not a valid policy.
    #[error("failed to load the policy from ConfigMap {configmap} key {key}: {source}")]
    Invalid {
        configmap: String,
        key: String,
        #[source]
        source: PolicyError,
    },
}

/// Parses `text` and, when it is a valid policy, puts it in force. Returns the number of
/// rules; on error the policy in force is unchanged.
pub fn apply_policy_source(cell: &PolicyCell, text: &str) -> Result<usize, PolicyError> {
    let policy = Policy::from_yaml(text)?;
    let rules = policy.rules().len();
    cell.replace(policy);
    Ok(rules)
}

/// What one version of the ConfigMap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new valid policy is in force.
    Loaded { rules: usize },
    /// Same content as last time: nothing done, nothing counted.
    Unchanged,
    /// Refused; the last good policy stays in force.
    Rejected(PolicySourceError),
    /// Another object than the configured ConfigMap (ignored).
    Ignored,
}

/// What a version of the ConfigMap's policy key held, to skip what was already handled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fingerprint {
    Text([u8; 32]),
    MissingKey,
    BinaryKey,
}

/// Applies watcher events for the policy ConfigMap to a [`PolicyCell`], with the logs,
/// metric and Events of the module documentation.
pub struct PolicyReloader {
    source: PolicyConfigMap,
    cell: Arc<PolicyCell>,
    metrics: Metrics,
    events: Arc<dyn EventRecorder>,
    /// The last version handled; `None` before the first and after a deletion.
    last_seen: Option<Fingerprint>,
    /// Whether the list in progress (between `Init` and `InitDone`) held the ConfigMap.
    listed: bool,
}

impl std::fmt::Debug for PolicyReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyReloader")
            .field("source", &self.source)
            .field("last_seen", &self.last_seen)
            .finish_non_exhaustive()
    }
}

impl PolicyReloader {
    pub fn new(
        source: PolicyConfigMap,
        cell: Arc<PolicyCell>,
        metrics: Metrics,
        events: Arc<dyn EventRecorder>,
    ) -> PolicyReloader {
        PolicyReloader {
            source,
            cell,
            metrics,
            events,
            last_seen: None,
            listed: false,
        }
    }

    /// Applies one watcher event.
    pub fn handle(&mut self, event: watcher::Event<ConfigMap>) {
        match event {
            watcher::Event::Init => self.listed = false,
            watcher::Event::InitApply(configmap) | watcher::Event::Apply(configmap) => {
                if self.apply(&configmap) != ReloadOutcome::Ignored {
                    self.listed = true;
                }
            }
            watcher::Event::InitDone => {
                if !self.listed {
                    self.missing();
                }
            }
            watcher::Event::Delete(configmap) => {
                if configmap.name_any() == self.source.name {
                    self.missing();
                }
            }
        }
    }

    /// Applies one version of the ConfigMap.
    pub fn apply(&mut self, configmap: &ConfigMap) -> ReloadOutcome {
        if configmap.name_any() != self.source.name
            || configmap.namespace().as_deref() != Some(self.source.namespace.as_str())
        {
            return ReloadOutcome::Ignored;
        }
        let key = self.source.key.as_str();
        let text = configmap.data.as_ref().and_then(|data| data.get(key));
        let fingerprint = match text {
            Some(text) => Fingerprint::Text(crate::reload::fingerprint(&[text.as_bytes()])),
            None if configmap
                .binary_data
                .as_ref()
                .is_some_and(|data| data.contains_key(key)) =>
            {
                Fingerprint::BinaryKey
            }
            None => Fingerprint::MissingKey,
        };
        if self.last_seen.as_ref() == Some(&fingerprint) {
            tracing::debug!(configmap = %self.source, "policy unchanged");
            return ReloadOutcome::Unchanged;
        }
        self.last_seen = Some(fingerprint);

        let result = match text {
            Some(text) => {
                apply_policy_source(&self.cell, text).map_err(|source| PolicySourceError::Invalid {
                    configmap: self.source.to_string(),
                    key: key.to_owned(),
                    source,
                })
            }
            None if matches!(self.last_seen, Some(Fingerprint::BinaryKey)) => {
                Err(PolicySourceError::BinaryKey {
                    configmap: self.source.to_string(),
                    key: key.to_owned(),
                })
            }
            None => Err(PolicySourceError::MissingKey {
                configmap: self.source.to_string(),
                key: key.to_owned(),
            }),
        };
        match result {
            Ok(rules) => {
                self.count("success");
                tracing::info!(configmap = %self.source, rules, "policy loaded");
                self.events.record(ClusterEvent {
                    regarding: self.regarding(configmap),
                    type_: EventType::Normal,
                    reason: "PolicyLoaded".into(),
                    note: format!("{key} loaded: {rules} rules"),
                    action: "Reload".into(),
                });
                ReloadOutcome::Loaded { rules }
            }
            Err(error) => {
                self.count("failure");
                let in_force = self.cell.current().is_some();
                tracing::error!(
                    configmap = %self.source,
                    problems = %error,
                    last_good_policy_in_force = in_force,
                    "policy rejected"
                );
                self.events.record(ClusterEvent {
                    regarding: self.regarding(configmap),
                    type_: EventType::Warning,
                    reason: "PolicyInvalid".into(),
                    note: event_note(&error, in_force),
                    action: "Reload".into(),
                });
                ReloadOutcome::Rejected(error)
            }
        }
    }

    /// The ConfigMap is gone (deleted, or absent from a list): keep what is in force.
    fn missing(&mut self) {
        self.last_seen = None;
        if self.cell.current().is_some() {
            tracing::warn!(
                configmap = %self.source,
                "policy ConfigMap is missing; the last good policy stays in force"
            );
        } else {
            tracing::warn!(
                configmap = %self.source,
                "policy ConfigMap is missing; no policy is in force"
            );
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .policy_reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    fn regarding(&self, configmap: &ConfigMap) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some(self.source.namespace.clone()),
            name: self.source.name.clone(),
            uid: configmap.uid(),
        }
    }
}

/// The Event's note: what was refused, its first few problems, and what is in force.
fn event_note(error: &PolicySourceError, in_force: bool) -> String {
    let consequence = if in_force {
        "the last good policy stays in force"
    } else {
        "no policy is in force"
    };
    let problems = match error {
        PolicySourceError::Invalid { key, source, .. } => {
            let issues = source.issues();
            if issues.is_empty() {
                format!("{key} rejected: {source}")
            } else {
                let total = match source {
                    PolicyError::Invalid { omitted, .. } => issues.len() + omitted,
                    _ => issues.len(),
                };
                let shown: Vec<String> = issues
                    .iter()
                    .take(ISSUES_IN_EVENT)
                    .map(ToString::to_string)
                    .collect();
                let mut text = format!("{key} rejected: {}", shown.join("; "));
                if total > shown.len() {
                    text.push_str(&format!(" (and {} more)", total - shown.len()));
                }
                text
            }
        }
        other => other.to_string(),
    };
    format!("{problems}; {consequence}")
}

/// Watches the ConfigMap `namespace/name` (one object, by field selector) and applies its
/// `key` to `cell` as it changes, retrying with kube-runtime's default backoff. Never
/// returns while the client works; spawn it (in a tracing span).
pub fn watch_policy(
    client: ::kube::Client,
    namespace: String,
    name: String,
    key: String,
    cell: Arc<PolicyCell>,
    metrics: Metrics,
    events: Arc<dyn EventRecorder>,
) -> impl Future<Output = ()> + Send + 'static {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff();
    let source = PolicyConfigMap {
        namespace,
        name,
        key,
    };
    async move {
        let mut reloader = PolicyReloader::new(source, cell, metrics, events);
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => reloader.handle(event),
                Err(error) => tracing::warn!(
                    configmap = %reloader.source,
                    error = %error,
                    "policy watch failed; retrying with backoff"
                ),
            }
        }
        tracing::error!(configmap = %reloader.source, "policy watch ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::RecordedEvents;
    use ::kube::core::ObjectMeta;
    use k8s_openapi::ByteString;
    use prometheus_client::registry::Registry;
    use std::collections::BTreeMap;

    const VALID: &str = "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/**\"]\n    owners: [{name: acme}]\n";
    const VALID_TWO_RULES: &str = "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/**\"]\n    owners: [{name: acme}]\n  - name: beta\n    images: [\"ghcr.io/beta/**\"]\n    owners: [{name: beta}]\n";
    const INVALID: &str = "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/**\"]\n    owners: [{name: acme}]\n    refs: [\"\"]\n    triggers: [not-a-trigger]\n";

    struct Harness {
        reloader: PolicyReloader,
        cell: Arc<PolicyCell>,
        metrics: Metrics,
        events: Arc<RecordedEvents>,
    }

    fn harness() -> Harness {
        let cell = Arc::new(PolicyCell::default());
        let metrics = Metrics::register(&mut Registry::default());
        let events = Arc::new(RecordedEvents::default());
        let reloader = PolicyReloader::new(
            PolicyConfigMap {
                namespace: "provenance-gate".into(),
                name: POLICY_CONFIGMAP.into(),
                key: POLICY_KEY.into(),
            },
            Arc::clone(&cell),
            metrics.clone(),
            Arc::clone(&events) as Arc<dyn EventRecorder>,
        );
        Harness {
            reloader,
            cell,
            metrics,
            events,
        }
    }

    impl Harness {
        fn reloads(&self, result: &str) -> u64 {
            self.metrics
                .policy_reloads
                .get_or_create(&ReloadLabels {
                    result: result.to_owned(),
                })
                .get()
        }

        fn rules_in_force(&self) -> Option<Vec<String>> {
            self.cell.current().map(|policy| {
                policy
                    .rules()
                    .iter()
                    .map(|rule| rule.name().to_owned())
                    .collect()
            })
        }
    }

    fn configmap_with(data: Option<(&str, &str)>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(POLICY_CONFIGMAP.into()),
                namespace: Some("provenance-gate".into()),
                uid: Some("cm-uid".into()),
                ..ObjectMeta::default()
            },
            data: data.map(|(key, value)| BTreeMap::from([(key.to_owned(), value.to_owned())])),
            ..ConfigMap::default()
        }
    }

    fn configmap(text: &str) -> ConfigMap {
        configmap_with(Some((POLICY_KEY, text)))
    }

    #[test]
    fn apply_policy_source_replaces_only_valid_policies() {
        let cell = PolicyCell::default();
        assert_eq!(apply_policy_source(&cell, VALID), Ok(1));
        let first = cell.current().expect("in force");
        let error = apply_policy_source(&cell, INVALID).expect_err("invalid");
        assert!(!error.issues().is_empty());
        let still = cell.current().expect("still in force");
        assert!(Arc::ptr_eq(&first, &still));
    }

    #[test]
    fn a_valid_policy_is_put_in_force_and_counted() {
        let mut h = harness();
        let outcome = h.reloader.apply(&configmap(VALID));
        assert_eq!(outcome, ReloadOutcome::Loaded { rules: 1 });
        assert_eq!(h.rules_in_force(), Some(vec!["acme".to_owned()]));
        assert_eq!(h.reloads("success"), 1);
        assert_eq!(h.reloads("failure"), 0);
        let events = h.events.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].type_, EventType::Normal);
        assert_eq!(events[0].reason, "PolicyLoaded");
    }

    #[test]
    fn an_invalid_edit_keeps_the_last_good_policy_and_is_reported() {
        let mut h = harness();
        h.reloader.apply(&configmap(VALID));
        let outcome = h.reloader.apply(&configmap(INVALID));
        let ReloadOutcome::Rejected(PolicySourceError::Invalid { source, .. }) = outcome else {
            panic!("expected a rejection, got {outcome:?}");
        };
        assert!(!source.issues().is_empty());
        assert_eq!(h.rules_in_force(), Some(vec!["acme".to_owned()]));
        assert_eq!(h.reloads("success"), 1);
        assert_eq!(h.reloads("failure"), 1);

        let events = h.events.events();
        let warning = events.last().expect("an event");
        assert_eq!(warning.type_, EventType::Warning);
        assert_eq!(warning.reason, "PolicyInvalid");
        assert_eq!(warning.action, "Reload");
        assert_eq!(
            warning.regarding,
            ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("provenance-gate".into()),
                name: POLICY_CONFIGMAP.into(),
                uid: Some("cm-uid".into()),
            }
        );
        // The note names the located problem and what stays in force.
        let first_issue = source.issues()[0].to_string();
        assert!(warning.note.contains(&first_issue), "{}", warning.note);
        assert!(warning.note.contains("line "), "{}", warning.note);
        assert!(warning
            .note
            .ends_with("the last good policy stays in force"));
    }

    #[test]
    fn an_invalid_policy_at_startup_says_none_is_in_force() {
        let mut h = harness();
        let outcome = h.reloader.apply(&configmap("version: 1\nbogus: true\n"));
        assert!(matches!(outcome, ReloadOutcome::Rejected(_)), "{outcome:?}");
        assert!(h.cell.current().is_none());
        let events = h.events.events();
        assert!(
            events[0].note.ends_with("no policy is in force"),
            "{}",
            events[0].note
        );
        assert_eq!(h.reloads("failure"), 1);
    }

    #[test]
    fn the_event_names_the_first_few_issues_only() {
        let error = PolicySourceError::Invalid {
            configmap: "ns/cm".into(),
            key: POLICY_KEY.into(),
            source: PolicyError::Invalid {
                issues: (1..=5)
                    .map(|line| crate::policy::PolicyIssue {
                        location: Some(crate::policy::SourceLocation { line, column: 3 }),
                        path: format!("rules[{line}].refs[0]"),
                        message: "must not be empty".into(),
                    })
                    .collect(),
                omitted: 2,
            },
        };
        let note = event_note(&error, true);
        assert!(note.starts_with("policy.yaml rejected: line 1 column 3: rules[1].refs[0]"));
        assert!(note.contains("line 3 column 3"));
        assert!(!note.contains("line 4 column 3"));
        assert!(note.contains("(and 4 more)"), "{note}");
    }

    #[test]
    fn a_missing_key_is_rejected_like_an_invalid_policy() {
        let mut h = harness();
        h.reloader.apply(&configmap(VALID));
        let outcome = h
            .reloader
            .apply(&configmap_with(Some(("other.yaml", VALID))));
        assert_eq!(
            outcome,
            ReloadOutcome::Rejected(PolicySourceError::MissingKey {
                configmap: "provenance-gate/provenance-gate-policy".into(),
                key: POLICY_KEY.into(),
            })
        );
        assert_eq!(h.rules_in_force(), Some(vec!["acme".to_owned()]));
        assert_eq!(h.reloads("failure"), 1);
        let warning = h.events.events().pop().expect("an event");
        assert_eq!(warning.reason, "PolicyInvalid");
        assert!(
            warning.note.starts_with(
                "ConfigMap provenance-gate/provenance-gate-policy has no key policy.yaml"
            ),
            "{}",
            warning.note
        );
        // No data at all is the same, and is not reported twice.
        assert_eq!(
            h.reloader.apply(&configmap_with(None)),
            ReloadOutcome::Unchanged
        );
        assert_eq!(h.reloads("failure"), 1);
    }

    #[test]
    fn a_key_in_binary_data_is_named_as_such() {
        let mut h = harness();
        let mut binary = configmap_with(None);
        binary.binary_data = Some(BTreeMap::from([(
            POLICY_KEY.to_owned(),
            ByteString(VALID.as_bytes().to_vec()),
        )]));
        let outcome = h.reloader.apply(&binary);
        assert!(
            matches!(
                outcome,
                ReloadOutcome::Rejected(PolicySourceError::BinaryKey { .. })
            ),
            "{outcome:?}"
        );
        assert!(h.cell.current().is_none());
    }

    #[test]
    fn the_same_content_twice_is_not_reloaded() {
        let mut h = harness();
        assert_eq!(
            h.reloader.apply(&configmap(VALID)),
            ReloadOutcome::Loaded { rules: 1 }
        );
        let in_force = h.cell.current().expect("in force");
        // A re-list, or an edit elsewhere in the ConfigMap, delivers the same text again.
        let mut relabelled = configmap(VALID);
        relabelled.metadata.labels = Some(BTreeMap::from([("a".to_owned(), "b".to_owned())]));
        assert_eq!(h.reloader.apply(&relabelled), ReloadOutcome::Unchanged);
        assert!(Arc::ptr_eq(&in_force, &h.cell.current().expect("in force")));
        assert_eq!(h.reloads("success"), 1);
        assert_eq!(h.events.events().len(), 1);

        // The same invalid text twice is reported once.
        h.reloader.apply(&configmap(INVALID));
        assert_eq!(
            h.reloader.apply(&configmap(INVALID)),
            ReloadOutcome::Unchanged
        );
        assert_eq!(h.reloads("failure"), 1);

        // Going back to a text seen before is a change.
        assert_eq!(
            h.reloader.apply(&configmap(VALID_TWO_RULES)),
            ReloadOutcome::Loaded { rules: 2 }
        );
        assert_eq!(
            h.rules_in_force(),
            Some(vec!["acme".to_owned(), "beta".to_owned()])
        );
        assert_eq!(
            h.reloader.apply(&configmap(VALID)),
            ReloadOutcome::Loaded { rules: 1 }
        );
        assert_eq!(h.reloads("success"), 3);
    }

    #[test]
    fn other_objects_are_ignored() {
        let mut h = harness();
        let mut other = configmap(VALID);
        other.metadata.name = Some("something-else".into());
        assert_eq!(h.reloader.apply(&other), ReloadOutcome::Ignored);
        let mut elsewhere = configmap(VALID);
        elsewhere.metadata.namespace = Some("default".into());
        assert_eq!(h.reloader.apply(&elsewhere), ReloadOutcome::Ignored);
        assert!(h.cell.current().is_none());
        assert_eq!(h.reloads("success") + h.reloads("failure"), 0);
    }

    #[test]
    fn watcher_events_drive_reloads_and_deletion_keeps_the_last_good_policy() {
        let mut h = harness();
        h.reloader.handle(watcher::Event::Init);
        h.reloader
            .handle(watcher::Event::InitApply(configmap(VALID)));
        h.reloader.handle(watcher::Event::InitDone);
        assert_eq!(h.rules_in_force(), Some(vec!["acme".to_owned()]));

        h.reloader
            .handle(watcher::Event::Apply(configmap(VALID_TWO_RULES)));
        assert_eq!(h.reloads("success"), 2);

        // Deleted: nothing changes in force, nothing is counted.
        h.reloader
            .handle(watcher::Event::Delete(configmap(VALID_TWO_RULES)));
        assert_eq!(
            h.rules_in_force(),
            Some(vec!["acme".to_owned(), "beta".to_owned()])
        );
        assert_eq!(h.reloads("success") + h.reloads("failure"), 2);

        // Re-created with the same text: applied again (it was gone in between).
        h.reloader
            .handle(watcher::Event::Apply(configmap(VALID_TWO_RULES)));
        assert_eq!(h.reloads("success"), 3);

        // A re-list with the same content does nothing.
        h.reloader.handle(watcher::Event::Init);
        h.reloader
            .handle(watcher::Event::InitApply(configmap(VALID_TWO_RULES)));
        h.reloader.handle(watcher::Event::InitDone);
        assert_eq!(h.reloads("success"), 3);

        // A re-list without the ConfigMap (deleted while the watch was down) keeps the
        // policy, and the next version is applied even if its text is the same.
        h.reloader.handle(watcher::Event::Init);
        h.reloader.handle(watcher::Event::InitDone);
        assert!(h.cell.current().is_some());
        h.reloader
            .handle(watcher::Event::Apply(configmap(VALID_TWO_RULES)));
        assert_eq!(h.reloads("success"), 4);
    }

    #[test]
    fn errors_read_as_kube_rs_errors() {
        let error = PolicySourceError::Invalid {
            configmap: "ns/cm".into(),
            key: POLICY_KEY.into(),
            source: PolicyError::TooManyRules {
                count: 2000,
                limit: 1000,
            },
        };
        assert!(error.to_string().starts_with("failed to load the policy"));
        assert!(std::error::Error::source(&error).is_some());
    }
}
