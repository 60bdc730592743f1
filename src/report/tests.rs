//! The summary over records made by the record type itself (`DecisionRecord`, serialised as
//! `JsonLinesSink` writes it), so that a change of the record's fields shows up here.

use super::*;
use crate::check::{FailureKind, ImageCheck, ImageOutcome};
use crate::decision::breakglass::{ModeChange as NamespaceModeChange, NamespaceMode};
use crate::decision::fixtures::verified_outcome;
use crate::decision::{decide, BreakGlass, Subject};
use crate::evidence::records::{DecisionRecord, RequestContext};
use crate::policy::{Mode, UnmatchedAction};
use crate::verify::claims::CertificateClaims;

const T0: &str = "2026-11-28T10:00:00Z";

fn at(minutes: i64) -> Timestamp {
    T0.parse::<Timestamp>().unwrap() + jiff::SignedDuration::from_mins(minutes)
}

fn verified() -> ImageOutcome {
    verified_outcome(
        &format!("sha256:{}", "a".repeat(64)),
        CertificateClaims::default(),
    )
}

fn no_attestation(digest_hex: char) -> ImageOutcome {
    let digest = format!("sha256:{}", digest_hex.to_string().repeat(64));
    ImageOutcome::Failed {
        rule: Some("acme".into()),
        reason: format!("no attestation found for ghcr.io/acme/worker@{digest}"),
        digest: Some(digest),
        kind: FailureKind::NoAttestation,
    }
}

fn unmatched(action: UnmatchedAction) -> ImageOutcome {
    ImageOutcome::Unmatched { action }
}

/// Where a record is made: namespace, its environment and mode, and when.
#[derive(Clone, Copy)]
struct Place {
    namespace: &'static str,
    environment: Option<&'static str>,
    mode: Mode,
    minute: i64,
}

const PROD: Place = Place {
    namespace: "prod",
    environment: Some("production"),
    mode: Mode::Enforce,
    minute: 0,
};
const DEV: Place = Place {
    namespace: "dev",
    environment: Some("development"),
    mode: Mode::Observe,
    minute: 0,
};

impl Place {
    fn at(self, minute: i64) -> Place {
        Place { minute, ..self }
    }

    fn in_namespace(self, namespace: &'static str) -> Place {
        Place { namespace, ..self }
    }
}

fn decision_record(
    place: Place,
    image: &str,
    outcome: ImageOutcome,
    break_glass: BreakGlass,
) -> DecisionRecord {
    let check = ImageCheck {
        image: image.into(),
        pinned: None,
        outcome,
    };
    let decision = decide(Subject::settled(&check.outcome), place.mode, break_glass);
    let context = RequestContext {
        namespace: Some(place.namespace.into()),
        ..RequestContext::default()
    };
    DecisionRecord::new(
        &context,
        &check,
        &decision,
        place.mode,
        place.environment,
        at(place.minute),
    )
}

fn line(record: &DecisionRecord) -> Vec<u8> {
    serde_json::to_vec(record).unwrap()
}

fn image_line(place: Place, image: &str, outcome: ImageOutcome) -> Vec<u8> {
    line(&decision_record(
        place,
        image,
        outcome,
        BreakGlass::Inactive,
    ))
}

/// An image admitted under break-glass, with what the admission path adds to its record.
fn break_glass_line(place: Place, image: &str, ticket: &str, approver: &str) -> Vec<u8> {
    let mut record = decision_record(place, image, no_attestation('b'), BreakGlass::Active);
    assert_eq!(record.result, "break_glass");
    record.break_glass_ticket = Some(ticket.into());
    record.break_glass_reason = Some("hotfix while CI is down".into());
    record.break_glass_approved_by = Some(approver.into());
    line(&record)
}

fn mode_change_line(minute: i64, result: Verdict) -> Vec<u8> {
    let change = NamespaceModeChange {
        from: NamespaceMode {
            mode: Mode::Enforce,
            environment: Some("production".into()),
        },
        to: NamespaceMode {
            mode: Mode::Observe,
            environment: Some("development".into()),
        },
    };
    let context = RequestContext {
        namespace: Some("payments".into()),
        ..RequestContext::default()
    };
    line(&DecisionRecord::mode_change(
        &context,
        &change,
        "mallory",
        result,
        "lowering the mode needs a break-glass approver",
        at(minute),
    ))
}

fn report(lines: &[Vec<u8>], window: Window, limits: Limits) -> Summary {
    summarise(lines.iter().map(Vec::as_slice), window, limits, 10)
}

fn group<'a>(table: &'a GroupTable, key: &str) -> &'a Tally {
    &table
        .groups
        .iter()
        .find(|group| group.key == key)
        .unwrap_or_else(|| panic!("no group {key}: {table:?}"))
        .tally
}

#[test]
fn pass_rate_counts_only_verified_images_and_leaves_exempt_ones_out() {
    let lines = [
        image_line(PROD, "ghcr.io/acme/api:1", verified()),
        image_line(PROD, "ghcr.io/acme/worker:2", no_attestation('b')),
        image_line(PROD, "registry.k8s.io/pause:3.9", ImageOutcome::Exempt),
        image_line(DEV, "nginx", unmatched(UnmatchedAction::Deny)),
        image_line(DEV, "busybox", unmatched(UnmatchedAction::Allow)),
        image_line(DEV, "ghcr.io/acme/api:1", verified()),
    ];
    let summary = report(&lines, Window::default(), Limits::default());

    let overall = &summary.overall;
    assert_eq!((overall.judged, overall.proven, overall.exempt), (5, 2, 1));
    assert_eq!(overall.pass_rate, Some(2.0 / 5.0));
    assert_eq!(
        (
            overall.denied,
            overall.would_deny,
            overall.allowed_unverified
        ),
        (1, 1, 1)
    );

    let production = group(&summary.by_environment, "production");
    assert_eq!((production.judged, production.proven), (2, 1));
    assert_eq!(production.pass_rate, Some(0.5));
    let development = group(&summary.by_namespace, "dev");
    assert_eq!((development.judged, development.proven), (3, 1));
    // Unmatched images have no rule; the exempt one is counted, not judged.
    let no_rule = group(&summary.by_rule, "(none)");
    assert_eq!((no_rule.judged, no_rule.exempt), (2, 1));
    assert_eq!(group(&summary.by_rule, "acme").judged, 3);
    assert_eq!(summary.lines.records, 6);
}

#[test]
fn nothing_judged_has_no_rate() {
    let lines = [image_line(
        PROD,
        "registry.k8s.io/pause:3.9",
        ImageOutcome::Exempt,
    )];
    let summary = report(&lines, Window::default(), Limits::default());
    assert_eq!(summary.overall.pass_rate, None);
    assert_eq!(summary.overall.exempt, 1);
}

#[test]
fn reasons_count_one_cause_once_whatever_the_digest() {
    let lines = [
        image_line(PROD, "ghcr.io/acme/worker:2", no_attestation('b')),
        image_line(PROD.at(1), "ghcr.io/acme/worker:3", no_attestation('c')),
        image_line(
            PROD.in_namespace("billing"),
            "nginx",
            unmatched(UnmatchedAction::Deny),
        ),
        image_line(PROD, "ghcr.io/acme/api:1", verified()),
    ];
    let summary = report(&lines, Window::default(), Limits::default());
    let reasons = &summary.reasons;
    assert_eq!(reasons.distinct, 2, "{reasons:?}");
    let first = &reasons.top[0];
    assert_eq!(first.count, 2);
    assert_eq!(
        first.reason,
        "rule \"acme\": no attestation found for ghcr.io/acme/worker@sha256:…"
    );
    assert_eq!(first.example_image, "ghcr.io/acme/worker:2");
    assert_eq!(reasons.top[1].count, 1);
    assert_eq!(reasons.top[1].example_namespace.as_deref(), Some("billing"));
}

#[test]
fn short_hex_and_hex_inside_words_are_kept() {
    assert_eq!(
        normalise_reason("rule \"acme\": signed by build.yml@deadbeef, commit 0123456789abcdef0123456789abcdef01234567"),
        "rule \"acme\": signed by build.yml@deadbeef, commit …"
    );
    let in_a_word = format!("x{}y", "a".repeat(40));
    assert_eq!(normalise_reason(&in_a_word), in_a_word);
}

#[test]
fn break_glass_uses_list_ticket_approver_and_images() {
    let in_payments = |minute, image| {
        let place = PROD.in_namespace("payments").at(minute);
        break_glass_line(place, image, "INC-4711", "alice@example.com")
    };
    let lines = [
        in_payments(5, "ghcr.io/acme/hotfix:1"),
        in_payments(2, "ghcr.io/acme/hotfix:1"),
        in_payments(9, "ghcr.io/acme/sidecar:1"),
        break_glass_line(
            PROD.in_namespace("billing").at(1),
            "ghcr.io/acme/billing:7",
            "INC-4800",
            "bob@example.com",
        ),
    ];
    let summary = report(&lines, Window::default(), Limits::default());
    assert_eq!(summary.overall.break_glass, 4);
    assert_eq!(summary.overall.proven, 0);
    let uses = &summary.break_glass;
    assert_eq!(uses.len(), 2, "{uses:?}");
    // First use first.
    assert_eq!(uses[0].ticket.as_deref(), Some("INC-4800"));
    let payments = &uses[1];
    assert_eq!(payments.namespace.as_deref(), Some("payments"));
    assert_eq!(payments.approved_by.as_deref(), Some("alice@example.com"));
    assert_eq!(payments.reason.as_deref(), Some("hotfix while CI is down"));
    assert_eq!(
        (payments.first_use, payments.last_use, payments.admissions),
        (at(2), at(9), 3)
    );
    assert_eq!(
        payments.images,
        ["ghcr.io/acme/hotfix:1", "ghcr.io/acme/sidecar:1"]
    );
    // Records do not carry the expiry (yet): unknown, not invented.
    assert_eq!(payments.expires, None);
}

#[test]
fn mode_changes_are_listed_not_counted_as_images() {
    let lines = [
        mode_change_line(3, Verdict::Denied),
        mode_change_line(1, Verdict::Allowed),
    ];
    let summary = report(&lines, Window::default(), Limits::default());
    assert_eq!(summary.overall, Tally::default());
    let changes = &summary.mode_changes;
    assert_eq!(changes.len(), 2);
    assert_eq!((changes[0].time, changes[0].result), (at(1), "allowed"));
    assert_eq!(changes[1].result, "denied");
    assert_eq!(changes[1].from_mode.as_deref(), Some("enforce"));
    assert_eq!(changes[1].to_mode, "observe");
    assert_eq!(changes[1].requested_by.as_deref(), Some("mallory"));
}

#[test]
fn the_window_includes_since_and_excludes_until() {
    let lines = [
        image_line(PROD.at(-1), "ghcr.io/acme/api:1", verified()),
        image_line(PROD.at(0), "ghcr.io/acme/api:2", verified()),
        image_line(PROD.at(59), "ghcr.io/acme/worker:2", no_attestation('b')),
        image_line(PROD.at(60), "ghcr.io/acme/api:3", verified()),
    ];
    let window = Window {
        since: Some(at(0)),
        until: Some(at(60)),
    };
    let summary = report(&lines, window, Limits::default());
    assert_eq!(
        (summary.lines.records, summary.lines.outside_window),
        (2, 2)
    );
    assert_eq!((summary.overall.judged, summary.overall.proven), (2, 1));
    assert_eq!(
        (summary.first_record, summary.last_record),
        (Some(at(0)), Some(at(59)))
    );
}

#[test]
fn dry_runs_are_counted_apart() {
    let mut record = decision_record(
        PROD,
        "ghcr.io/acme/worker:2",
        no_attestation('b'),
        BreakGlass::Inactive,
    );
    record.dry_run = true;
    let summary = report(&[line(&record)], Window::default(), Limits::default());
    assert_eq!((summary.lines.records, summary.lines.dry_runs), (1, 1));
    assert_eq!(summary.overall.judged, 0);
    assert!(summary.reasons.top.is_empty());
}

#[test]
fn bad_lines_are_counted_and_the_rest_is_read() {
    let good = image_line(PROD, "ghcr.io/acme/api:1", verified());
    let mut prefixed = b"[pod/provenance-gate-7d9f/provenance-gate] ".to_vec();
    prefixed.extend_from_slice(&good);
    let mut cri = b"2026-11-28T10:00:00.123456789Z stdout F ".to_vec();
    cri.extend_from_slice(&good);
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let unknown_result = String::from_utf8(good.clone())
        .unwrap()
        .replace("\"allowed\"", "\"maybe\"");
    let bad_time = String::from_utf8(good.clone())
        .unwrap()
        .replace(T0, "yesterday");
    let lines = [
        good.clone(),
        prefixed,
        cri,
        truncated,
        b"not json at all".to_vec(),
        b"[1, 2]".to_vec(),
        br#"{"timestamp":"2026-11-28T10:00:00Z","level":"INFO","fields":{"message":"serving"}}"#
            .to_vec(),
        unknown_result.into_bytes(),
        bad_time.into_bytes(),
        b"   ".to_vec(),
    ];
    let summary = report(&lines, Window::default(), Limits::default());
    let counts = &summary.lines;
    assert_eq!(counts.read, 9, "blank lines are not counted: {counts:?}");
    assert_eq!(counts.records, 3);
    assert_eq!(counts.not_records, 1);
    assert_eq!(counts.malformed, 5);
    assert_eq!(summary.overall.proven, 3);
}

#[test]
fn tables_stop_growing_at_their_limits() {
    let limits = Limits {
        groups: 2,
        reasons: 1,
        break_glass: 1,
        images_per_break_glass: 1,
        mode_changes: 1,
    };
    let namespaces = ["a", "b", "c", "d"];
    let mut lines: Vec<Vec<u8>> = namespaces
        .iter()
        .map(|namespace| {
            image_line(
                PROD.in_namespace(namespace),
                "ghcr.io/acme/api:1",
                verified(),
            )
        })
        .collect();
    lines.push(image_line(PROD, "nginx", unmatched(UnmatchedAction::Deny)));
    lines.push(image_line(
        PROD,
        "ghcr.io/acme/worker:2",
        no_attestation('b'),
    ));
    lines.push(break_glass_line(
        PROD.in_namespace("a"),
        "ghcr.io/acme/x:1",
        "INC-1",
        "alice",
    ));
    lines.push(break_glass_line(
        PROD.in_namespace("a"),
        "ghcr.io/acme/y:1",
        "INC-1",
        "alice",
    ));
    lines.push(break_glass_line(
        PROD.in_namespace("b"),
        "ghcr.io/acme/x:1",
        "INC-2",
        "alice",
    ));
    lines.push(mode_change_line(0, Verdict::Denied));
    lines.push(mode_change_line(1, Verdict::Denied));
    let summary = report(&lines, Window::default(), limits);

    let by_namespace = &summary.by_namespace;
    assert_eq!(by_namespace.groups.len(), 2);
    let kept: u64 = by_namespace
        .groups
        .iter()
        .map(|group| group.tally.judged)
        .sum();
    let other = by_namespace.other.as_ref().expect("other namespaces");
    assert_eq!(
        kept + other.judged,
        summary.overall.judged,
        "no record is lost"
    );

    assert_eq!(summary.reasons.distinct, 1);
    assert_eq!(
        summary.reasons.top[0].count + summary.reasons.uncounted_records,
        5
    );
    assert_eq!(summary.break_glass.len(), 1);
    assert_eq!(summary.break_glass[0].images.len(), 1);
    assert!(summary.break_glass[0].more_images);
    assert_eq!(summary.break_glass_uncounted, 1);
    assert_eq!(
        (summary.mode_changes.len(), summary.mode_changes_uncounted),
        (1, 1)
    );
}

#[test]
fn long_keys_are_cut() {
    let long = "n".repeat(10 * MAX_KEY_BYTES);
    let mut record = decision_record(PROD, "ghcr.io/acme/api:1", verified(), BreakGlass::Inactive);
    record.namespace = Some(long);
    let summary = report(&[line(&record)], Window::default(), Limits::default());
    assert!(summary.by_namespace.groups[0].key.len() <= MAX_KEY_BYTES);
}

#[test]
fn the_text_names_every_section() {
    let lines = [
        image_line(PROD, "ghcr.io/acme/api:1", verified()),
        break_glass_line(
            PROD.in_namespace("payments"),
            "ghcr.io/acme/hotfix:1",
            "INC-4711",
            "alice@example.com",
        ),
        mode_change_line(1, Verdict::Denied),
    ];
    let text = text::render(&report(&lines, Window::default(), Limits::default()));
    for expected in [
        "3 lines: 3 records in the window",
        "all images                50.0%      1/2",
        "By environment\n  production",
        "ticket INC-4711  approved by alice@example.com  expires (not in the records)",
        "namespace payments: enforce (production) -> observe (development) requested by mallory: denied",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn an_expiry_is_reported_once_records_carry_it() {
    // `DecisionRecord` has no expiry field yet; this is the name the report reads.
    let mut record: serde_json::Value = serde_json::from_slice(&break_glass_line(
        PROD.in_namespace("payments"),
        "ghcr.io/acme/hotfix:1",
        "INC-4711",
        "alice@example.com",
    ))
    .unwrap();
    record["breakGlassExpires"] = "2026-11-28T18:00:00Z".into();
    let summary = report(
        &[serde_json::to_vec(&record).unwrap()],
        Window::default(),
        Limits::default(),
    );
    assert_eq!(
        summary.break_glass[0].expires.as_deref(),
        Some("2026-11-28T18:00:00Z")
    );
}
