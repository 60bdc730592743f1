//! Which environment, and so which mode, applies to a namespace.

use super::config::{LabelRequirement, Mode, NamespaceSelector, Policy, SelectorOperator};
use std::collections::BTreeMap;

impl NamespaceSelector {
    /// Kubernetes label selector semantics: every `matchLabels` pair and every
    /// `matchExpressions` requirement must hold; an empty selector matches every namespace.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self
                .match_expressions
                .iter()
                .all(|requirement| requirement.matches(labels))
    }
}

impl LabelRequirement {
    /// Whether the labels satisfy this requirement (`NotIn` also holds when the key is absent).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|value| self.values.contains(value)),
            SelectorOperator::NotIn => value.is_none_or(|value| !self.values.contains(value)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl Policy {
    /// The first environment whose selector matches the namespace labels, and its mode;
    /// `(None, defaultMode)` when none does.
    pub fn mode_for_namespace(&self, labels: &BTreeMap<String, String>) -> (Option<&str>, Mode) {
        self.environments
            .iter()
            .find(|environment| environment.namespace_selector.matches(labels))
            .map_or((None, self.default_mode), |environment| {
                (Some(environment.name.as_str()), environment.mode)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn requirement(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelRequirement {
        LabelRequirement {
            key: key.to_string(),
            operator,
            values: values.iter().map(|value| value.to_string()).collect(),
        }
    }

    #[test]
    fn requirements_follow_kubernetes_semantics() {
        use SelectorOperator::*;
        let prod = labels(&[("env", "production"), ("team", "payments")]);
        let bare = labels(&[]);
        let cases = [
            (
                requirement("env", In, &["production", "staging"]),
                &prod,
                true,
            ),
            (requirement("env", In, &["staging"]), &prod, false),
            (requirement("env", In, &["production"]), &bare, false),
            (requirement("env", NotIn, &["dev"]), &prod, true),
            (requirement("env", NotIn, &["production"]), &prod, false),
            (requirement("env", NotIn, &["production"]), &bare, true),
            (requirement("team", Exists, &[]), &prod, true),
            (requirement("team", Exists, &[]), &bare, false),
            (requirement("team", DoesNotExist, &[]), &prod, false),
            (requirement("team", DoesNotExist, &[]), &bare, true),
        ];
        for (requirement, labels, expected) in cases {
            assert_eq!(
                requirement.matches(labels),
                expected,
                "{requirement:?} on {labels:?}"
            );
        }
    }

    #[test]
    fn selectors_and_all_their_parts() {
        let selector = NamespaceSelector {
            match_labels: labels(&[("env", "production")]),
            match_expressions: vec![requirement("team", SelectorOperator::In, &["payments"])],
        };
        assert!(selector.matches(&labels(&[("env", "production"), ("team", "payments")])));
        assert!(!selector.matches(&labels(&[("env", "production"), ("team", "search")])));
        assert!(!selector.matches(&labels(&[("team", "payments")])));
        assert!(!selector.matches(&labels(&[("env", "Production"), ("team", "payments")])));
        assert!(NamespaceSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn first_matching_environment_wins() {
        let policy = Policy::from_yaml(
            "\
version: 1
defaultMode: warn
environments:
  - name: production
    namespaceSelector: {matchLabels: {env: production}}
    mode: enforce
  - name: not-dev
    namespaceSelector:
      matchExpressions: [{key: env, operator: NotIn, values: [dev]}]
    mode: observe
  - name: everything
    namespaceSelector: {}
    mode: enforce
",
        )
        .expect("policy parses");
        let cases = [
            (
                labels(&[("env", "production")]),
                Some("production"),
                Mode::Enforce,
            ),
            (
                labels(&[("env", "staging")]),
                Some("not-dev"),
                Mode::Observe,
            ),
            (labels(&[]), Some("not-dev"), Mode::Observe),
            (labels(&[("env", "dev")]), Some("everything"), Mode::Enforce),
        ];
        for (namespace_labels, environment, mode) in cases {
            assert_eq!(
                policy.mode_for_namespace(&namespace_labels),
                (environment, mode),
                "{namespace_labels:?}"
            );
        }
    }

    #[test]
    fn default_mode_applies_when_no_environment_matches() {
        let policy = Policy::from_yaml(
            "version: 1\nenvironments:\n  - {name: prod, namespaceSelector: {matchLabels: {env: prod}}, mode: observe}\n",
        )
        .expect("policy parses");
        assert_eq!(
            policy.mode_for_namespace(&labels(&[("env", "dev")])),
            (None, Mode::Enforce)
        );
        assert_eq!(
            policy.mode_for_namespace(&labels(&[("env", "prod")])),
            (Some("prod"), Mode::Observe)
        );
    }
}
