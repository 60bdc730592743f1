//! Policy YAML: parsing and checking agree, never panic, and a policy that loads can be
//! printed and applied to images and namespaces.

use std::collections::BTreeMap;

use provenance_gate::policy::Policy;

/// Image names as `ImageReference::name` gives them, for the policy to classify.
const NAMES: [&str; 5] = [
    "ghcr.io/acme/api",
    "docker.io/library/nginx",
    "registry.k8s.io/pause",
    "localhost:5000/app",
    "ghcr.io/malancas/attest-demo",
];

pub(crate) fn policy(data: &[u8]) {
    // The policy file reader refuses text that is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Policy::from_yaml(text);
    let checked = Policy::check_yaml(text);
    match (parsed, checked) {
        (Ok(policy), Ok(checked)) => {
            assert_eq!(policy, checked.policy, "check_yaml builds another policy");
            serde_json::to_string(&policy).expect("a loaded policy prints");
            for name in NAMES {
                let _ = policy.classify_image(name);
            }
            for env in ["production", "staging", "dev", ""] {
                let labels = BTreeMap::from([("env".to_owned(), env.to_owned())]);
                let _ = policy.mode_for_namespace(&labels);
            }
        }
        (Err(parsed), Err(checked)) => {
            assert_eq!(parsed.to_string(), checked.to_string());
            assert!(!parsed.to_string().is_empty());
        }
        (parsed, checked) => panic!(
            "from_yaml and check_yaml disagree: {:?} / {:?}",
            parsed.err(),
            checked.err()
        ),
    }
}
