//! Which part of the policy covers an image.

use super::config::{Policy, Rule, UnmatchedAction};

/// How the policy treats an image repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageClass<'a> {
    /// Matches `exemptImages`: admitted without verification.
    Exempt,
    /// The first rule whose `images` match.
    Rule(&'a Rule),
    /// No rule covers it; `unmatchedImages` decides.
    Unmatched(UnmatchedAction),
}

impl Policy {
    /// Classifies a canonical image name, [`ImageReference::name`]: registry host, optional
    /// port and path, without tag or digest (`ghcr.io/acme/api`, `docker.io/library/nginx`).
    /// Patterns are compared as written, so the name must be canonical: other spellings of a
    /// host never match (policy load refuses patterns that spell a host another way).
    /// Exemptions are checked first, then rules in order.
    ///
    /// [`ImageReference::name`]: crate::check::reference::ImageReference::name
    pub fn classify_image(&self, repository: &str) -> ImageClass<'_> {
        if self.exempt_images.is_match(repository) {
            return ImageClass::Exempt;
        }
        self.rules
            .iter()
            .find(|rule| rule.images.is_match(repository))
            .map_or(
                ImageClass::Unmatched(self.unmatched_images),
                ImageClass::Rule,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::reference::ImageReference;

    const POLICY: &str = r#"
version: 1
exemptImages: ["registry.k8s.io/**", "docker.io/library/busybox"]
unmatchedImages: allow
rules:
  - name: acme-top
    images: ["ghcr.io/acme/*"]
    owners: [{name: acme}]
  - name: acme-deep
    images: ["ghcr.io/acme/**", "registry.internal:5000/acme/*"]
    owners: [{name: acme}]
"#;

    fn class_name(class: ImageClass<'_>) -> String {
        match class {
            ImageClass::Exempt => "exempt".to_string(),
            ImageClass::Rule(rule) => format!("rule {}", rule.name()),
            ImageClass::Unmatched(action) => format!("unmatched {action}"),
        }
    }

    #[test]
    fn exemptions_first_then_first_matching_rule() {
        let policy = Policy::from_yaml(POLICY).expect("policy parses");
        let cases = [
            ("registry.k8s.io/pause", "exempt"),
            ("registry.k8s.io/sig-storage/csi-provisioner", "exempt"),
            ("docker.io/library/busybox", "exempt"),
            ("docker.io/library/nginx", "unmatched allow"),
            ("ghcr.io/acme/api", "rule acme-top"),
            ("ghcr.io/acme/team/api", "rule acme-deep"),
            ("registry.internal:5000/acme/api", "rule acme-deep"),
            ("registry.internal:5001/acme/api", "unmatched allow"),
            ("ghcr.io/acmecorp/api", "unmatched allow"),
        ];
        for (repository, expected) in cases {
            assert_eq!(
                class_name(policy.classify_image(repository)),
                expected,
                "{repository}"
            );
        }
    }

    /// Each spelling of a covered host, as written in a pod spec, with the class it must get.
    #[rustfmt::skip]
    const SPELLINGS: &[(&str, &str)] = &[
        ("LOCALHOST:5000/acme/api:1", "rule local"),
        ("localhost:5000/acme/api:1", "rule local"),
        ("GHCR.IO/acme/api:1", "rule acme-top"),
        ("ghcr.io:443/acme/api:1", "rule acme-top"),
        ("Ghcr.Io:443/acme/team/api:1", "rule acme-deep"),
        ("registry-1.docker.io/acme/api:1", "rule hub"),
        ("index.docker.io/acme/api:1", "rule hub"),
        ("DOCKER.IO:443/acme/api:1", "rule hub"),
        ("acme/api:1", "rule hub"),
        ("LOCALHOST:5000/tools/debug:1", "exempt"),
        ("GHCR.IO/tools/debug:1", "exempt"),
        ("ghcr.io:443/tools/debug:1", "exempt"),
        ("REGISTRY.K8S.IO/pause:3.9", "exempt"),
        ("registry.k8s.io:443/pause:3.9", "exempt"),
        ("registry-1.docker.io/library/busybox:1", "exempt"),
        ("index.docker.io/busybox:1", "exempt"),
        ("busybox", "exempt"),
        // Another port is another registry.
        ("localhost:5001/acme/api:1", "unmatched allow"),
        ("ghcr.io:8443/acme/api:1", "unmatched allow"),
    ];

    #[test]
    fn every_spelling_of_a_host_gets_the_same_class() {
        let policy = Policy::from_yaml(&format!(
            "{POLICY}  - name: local\n    images: [\"localhost:5000/acme/**\"]\n    owners: [{{name: acme}}]\n  - name: hub\n    images: [\"docker.io/acme/**\"]\n    owners: [{{name: acme}}]\n"
        ).replace(
            "exemptImages: [",
            "exemptImages: [\"localhost:5000/tools/**\", \"ghcr.io/tools/**\", ",
        ))
        .expect("policy parses");
        for &(image, expected) in SPELLINGS {
            let name = ImageReference::parse(image)
                .unwrap_or_else(|error| panic!("{image}: {error}"))
                .name();
            assert_eq!(
                class_name(policy.classify_image(&name)),
                expected,
                "{image}"
            );
        }
        // Leading-zero ports are refused outright, never classified under some other name.
        assert!(ImageReference::parse("localhost:05000/acme/api:1").is_err());
    }

    #[test]
    fn unmatched_images_are_denied_by_default() {
        let policy = Policy::from_yaml("version: 1\n").expect("policy parses");
        assert_eq!(
            policy.classify_image("ghcr.io/acme/api"),
            ImageClass::Unmatched(UnmatchedAction::Deny)
        );
    }
}
