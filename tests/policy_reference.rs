//! The YAML examples of docs/policy.md load as the reference says they do, so the reference
//! cannot drift from the parser: each fragment is completed to a whole policy and checked.

use provenance_gate::policy::Policy;

const REFERENCE: &str = include_str!("../docs/policy.md");

/// The fenced ```yaml blocks of the reference, in order.
fn yaml_examples() -> Vec<&'static str> {
    REFERENCE
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default())
        .collect()
}

/// A fragment (one top-level key) as a whole policy: rules need nothing else, the other keys
/// are completed with a minimal rule so that every fragment is checked in the same way.
fn as_policy(fragment: &str) -> String {
    let mut policy = String::from("version: 1\n");
    policy.push_str(fragment);
    if !fragment.starts_with("rules:") {
        policy.push_str(
            "rules:\n  - name: minimal\n    images: [\"ghcr.io/x/*\"]\n    owners: [{name: x, id: \"1\"}]\n",
        );
    }
    policy
}

#[test]
fn every_example_of_the_reference_loads() {
    let examples = yaml_examples();
    assert!(
        examples.len() >= 6,
        "found {} yaml examples",
        examples.len()
    );
    for example in examples {
        let source = as_policy(example);
        if let Err(error) = Policy::check_yaml(&source) {
            panic!("docs/policy.md example does not load: {error}\n{source}");
        }
    }
}

#[test]
fn only_the_shadowing_example_warns() {
    let warned: Vec<(String, Vec<String>)> = yaml_examples()
        .into_iter()
        .filter_map(|example| {
            let checked = Policy::check_yaml(&as_policy(example)).ok()?;
            let messages: Vec<String> = checked
                .warnings
                .into_iter()
                .map(|warning| warning.message)
                .collect();
            (!messages.is_empty()).then(|| (example.to_string(), messages))
        })
        .collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    let (example, messages) = &warned[0];
    assert!(example.contains("name: acme-api"), "{example}");
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].contains("rule `acme-api` is never tried"),
        "{}",
        messages[0]
    );
}
