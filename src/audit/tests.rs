use super::*;
use crate::check::FailureKind;
use crate::decision::breakglass::{
    APPROVED_BY_ANNOTATION, EXPIRES_ANNOTATION, REASON_ANNOTATION, TICKET_ANNOTATION,
};
use crate::policy::UnmatchedAction;

const POLICY: &str = "\
version: 1
defaultMode: enforce
environments:
  - name: production
    namespaceSelector: {matchLabels: {env: production}}
    mode: enforce
  - name: dev
    namespaceSelector: {matchLabels: {env: dev}}
    mode: observe
exemptImages: [\"registry.k8s.io/pause\"]
rules:
  - name: acme
    images: [\"ghcr.io/acme/**\"]
    owners: [{name: acme}]
breakGlass:
  maxDuration: 8h
  approvers: {users: [\"alice\"]}
";

const PROVEN: &str = "registry.k8s.io/pause:3.10";
const UNPROVEN: &str = "ghcr.io/acme/api:1.2";

fn now() -> Timestamp {
    "2026-12-01T12:00:00Z".parse().unwrap()
}

fn namespace(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> NamespaceInfo {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    };
    NamespaceInfo {
        name: name.into(),
        labels: map(labels),
        annotations: map(annotations),
    }
}

fn pod(namespace: &str, name: &str, created: &str, images: &[&str]) -> PodFacts {
    PodFacts {
        namespace: namespace.into(),
        name: name.into(),
        owner: Some(format!("ReplicaSet/{name}-rs")),
        created: Some(created.parse().unwrap()),
        images: images
            .iter()
            .enumerate()
            .map(|(index, image)| RunningImage {
                container: format!("c{index}"),
                image: image.to_string(),
            })
            .collect(),
    }
}

/// The outcomes a check would give: the exempt image admitted, the other one without an
/// attestation.
fn outcomes() -> BTreeMap<String, ImageOutcome> {
    BTreeMap::from([
        (PROVEN.to_owned(), ImageOutcome::Exempt),
        (
            UNPROVEN.to_owned(),
            ImageOutcome::Failed {
                rule: Some("acme".into()),
                digest: Some(format!("sha256:{}", "a".repeat(64))),
                kind: FailureKind::NoAttestation,
                reason: "no attestation found".into(),
            },
        ),
    ])
}

fn policy() -> Policy {
    Policy::from_yaml(POLICY).expect("policy parses")
}

#[test]
fn every_unproven_image_is_listed_with_what_its_namespace_does_today() {
    let inventory = Inventory {
        namespaces: vec![
            namespace("shop", &[("env", "production")], &[]),
            namespace("lab", &[("env", "dev")], &[]),
        ],
        pods: vec![
            pod("shop", "api", "2026-12-01T10:00:00Z", &[PROVEN, UNPROVEN]),
            pod("shop", "pause", "2026-12-01T10:00:00Z", &[PROVEN]),
            pod("lab", "try", "2026-12-01T10:00:00Z", &[UNPROVEN]),
        ],
        pods_not_read: 0,
    };
    let report = assess(&inventory, &outcomes().into(), 0, &policy(), now());

    assert_eq!(report.pods, 3);
    assert_eq!(report.pods_denied_under_enforce, 2);
    assert!(!report.clean());
    let shop = &report.namespaces[1];
    assert_eq!(shop.namespace, "shop");
    assert_eq!(shop.environment.as_deref(), Some("production"));
    assert_eq!((shop.pods, shop.pods_denied_under_enforce), (2, 1));
    assert_eq!(shop.findings.len(), 1, "the exempt container is not listed");
    assert_eq!(shop.findings[0].pod, "api");
    assert_eq!(shop.findings[0].container, "c1");
    assert_eq!(shop.findings[0].today, Verdict::Denied);
    assert_eq!(shop.findings[0].reason_code, "no_attestation");
    assert!(shop.findings[0].reason.contains("no attestation found"));
    let lab = &report.namespaces[0];
    assert_eq!(lab.mode, Mode::Observe);
    assert_eq!(
        lab.findings[0].today,
        Verdict::WouldDeny,
        "observe admits it today; enforce would not"
    );
    assert_eq!(
        report.environments["production"].pods_denied_under_enforce,
        1
    );
    assert_eq!(report.environments["dev"].pods_denied_under_enforce, 1);
}

#[test]
fn a_cluster_of_proven_and_exempt_images_is_clean() {
    let inventory = Inventory {
        namespaces: vec![namespace("shop", &[], &[])],
        pods: vec![pod("shop", "pause", "2026-12-01T10:00:00Z", &[PROVEN])],
        pods_not_read: 0,
    };
    let mut outcomes = outcomes();
    outcomes.insert(
        "nginx".into(),
        ImageOutcome::Unmatched {
            action: UnmatchedAction::Allow,
        },
    );
    let report = assess(&inventory, &outcomes.into(), 0, &policy(), now());
    assert!(report.clean());
    assert_eq!(report.environments[""].pods, 1, "no environment: key \"\"");
    assert!(report.namespaces[0].findings.is_empty());
}

#[test]
fn images_left_out_by_the_bound_count_against_enforcing() {
    let inventory = Inventory {
        namespaces: vec![namespace("shop", &[], &[])],
        pods: vec![pod(
            "shop",
            "x",
            "2026-12-01T10:00:00Z",
            &["ghcr.io/acme/other:1"],
        )],
        pods_not_read: 0,
    };
    let report = assess(&inventory, &outcomes().into(), 1, &policy(), now());
    assert_eq!(report.pods_denied_under_enforce, 1);
    assert_eq!(report.namespaces[0].findings[0].reason_code, "not_checked");
    assert!(!report.clean());
    let unread = Inventory {
        pods_not_read: 3,
        ..Inventory::default()
    };
    assert!(!assess(&unread, &outcomes().into(), 0, &policy(), now()).clean());
}

#[test]
fn pods_created_under_a_break_glass_that_has_expired_are_listed() {
    let expired = [
        (TICKET_ANNOTATION, "INC-7"),
        (REASON_ANNOTATION, "hotfix"),
        (EXPIRES_ANNOTATION, "2026-12-01T11:00:00Z"),
        (APPROVED_BY_ANNOTATION, "alice"),
    ];
    let inventory = Inventory {
        namespaces: vec![namespace("shop", &[], &expired)],
        pods: vec![
            pod("shop", "during", "2026-12-01T10:30:00Z", &[UNPROVEN]),
            pod("shop", "after", "2026-12-01T11:30:00Z", &[UNPROVEN]),
            pod("shop", "proven", "2026-12-01T10:30:00Z", &[PROVEN]),
        ],
        pods_not_read: 0,
    };
    let report = assess(&inventory, &outcomes().into(), 0, &policy(), now());
    let shop = &report.namespaces[0];
    assert_eq!(shop.break_glass, "expired");
    assert_eq!(shop.expired_break_glass.len(), 1, "{shop:?}");
    let listed = &shop.expired_break_glass[0];
    assert_eq!(
        (listed.pod.as_str(), listed.ticket.as_str()),
        ("during", "INC-7")
    );
    assert_eq!(listed.images, vec![UNPROVEN.to_owned()]);
    assert_eq!(report.pods_on_expired_break_glass, 1);
    let text = render_text(&report);
    assert!(text.contains("break-glass INC-7"), "{text}");
}

#[test]
fn an_active_break_glass_shows_in_what_happens_today_but_not_in_enforce() {
    let active = [
        (TICKET_ANNOTATION, "INC-8"),
        (REASON_ANNOTATION, "hotfix"),
        (EXPIRES_ANNOTATION, "2026-12-01T14:00:00Z"),
        (APPROVED_BY_ANNOTATION, "alice"),
    ];
    let inventory = Inventory {
        namespaces: vec![namespace("shop", &[], &active)],
        pods: vec![pod("shop", "api", "2026-12-01T11:30:00Z", &[UNPROVEN])],
        pods_not_read: 0,
    };
    let report = assess(&inventory, &outcomes().into(), 0, &policy(), now());
    let finding = &report.namespaces[0].findings[0];
    assert_eq!(finding.today, Verdict::BreakGlass);
    assert_eq!(report.pods_denied_under_enforce, 1);
    assert!(report.namespaces[0].expired_break_glass.is_empty());
}

#[test]
fn findings_are_bounded_per_namespace_and_counted_beyond() {
    let images: Vec<&str> = vec![UNPROVEN; MAX_FINDINGS_PER_NAMESPACE + 5];
    let inventory = Inventory {
        namespaces: vec![namespace("shop", &[], &[])],
        pods: vec![pod("shop", "wide", "2026-12-01T10:00:00Z", &images)],
        pods_not_read: 0,
    };
    let report = assess(&inventory, &outcomes().into(), 0, &policy(), now());
    let shop = &report.namespaces[0];
    assert_eq!(shop.findings.len(), MAX_FINDINGS_PER_NAMESPACE);
    assert_eq!(shop.findings_not_listed, 5);
    assert_eq!(shop.pods_denied_under_enforce, 1);
}

#[test]
fn distinct_images_are_bounded_and_the_rest_counted() {
    let inventory = Inventory {
        namespaces: Vec::new(),
        pods: vec![
            pod("a", "p", "2026-12-01T10:00:00Z", &["b:1", "a:1", "b:1"]),
            pod("a", "q", "2026-12-01T10:00:00Z", &["c:1"]),
        ],
        pods_not_read: 0,
    };
    assert_eq!(
        inventory.distinct_images(10),
        (vec!["a:1".into(), "b:1".into(), "c:1".into()], 0)
    );
    assert_eq!(
        inventory.distinct_images(2),
        (vec!["a:1".into(), "b:1".into()], 1)
    );
}

/// Issue 13, item 3: an image whose rule narrows itself per environment is judged for each
/// environment it runs in; a finding only where its environment's bar refuses it.
#[test]
fn an_image_is_assessed_with_its_outcome_for_each_environment() {
    let inventory = Inventory {
        namespaces: vec![
            namespace("shop", &[("env", "production")], &[]),
            namespace("lab", &[("env", "dev")], &[]),
        ],
        pods: vec![
            pod("shop", "api", "2026-12-01T10:00:00Z", &[UNPROVEN]),
            pod("lab", "api", "2026-12-01T10:00:00Z", &[UNPROVEN]),
        ],
        pods_not_read: 0,
    };
    let refused = outcomes().remove(UNPROVEN).expect("a failed outcome");
    let mut judged = ImageOutcomes::default();
    judged.insert_in(Some("production".into()), UNPROVEN.into(), refused);
    judged.insert_in(
        Some("dev".into()),
        UNPROVEN.into(),
        ImageOutcome::Unmatched {
            action: UnmatchedAction::Allow,
        },
    );
    let report = assess(&inventory, &judged, 0, &policy(), now());
    assert_eq!(report.images_checked, 1);
    let findings: Vec<(&str, usize)> = report
        .namespaces
        .iter()
        .map(|audit| (audit.namespace.as_str(), audit.findings.len()))
        .collect();
    assert_eq!(findings, [("lab", 0), ("shop", 1)]);
}
