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
    /// Classifies a normalised image repository: registry host, optional port and path,
    /// without tag or digest (`ghcr.io/acme/api`, `docker.io/library/nginx`). Exemptions
    /// are checked first, then rules in order.
    pub fn classify_image(&self, repository: &str) -> ImageClass<'_> {
        if self
            .exempt_images
            .iter()
            .any(|glob| glob.is_match(repository))
        {
            return ImageClass::Exempt;
        }
        self.rules
            .iter()
            .find(|rule| rule.images.iter().any(|glob| glob.is_match(repository)))
            .map_or(
                ImageClass::Unmatched(self.unmatched_images),
                ImageClass::Rule,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn unmatched_images_are_denied_by_default() {
        let policy = Policy::from_yaml("version: 1\n").expect("policy parses");
        assert_eq!(
            policy.classify_image("ghcr.io/acme/api"),
            ImageClass::Unmatched(UnmatchedAction::Deny)
        );
    }
}
