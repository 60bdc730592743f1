//! Break-glass: a namespace annotation that admits unproven images for a bounded time, with
//! a ticket, a reason and a recorded approver. Pure: annotations, the policy's limits and
//! the current time in; a state or a verdict out.
//!
//! ```text
//! provenance-gate.dev/break-glass-ticket:       INC-4711
//! provenance-gate.dev/break-glass-reason:       hotfix while CI is down
//! provenance-gate.dev/break-glass-expires:      2026-11-28T18:00:00Z
//! provenance-gate.dev/break-glass-approved-by:  alice@example.com   (set by the webhook)
//! ```
//!
//! The approver annotation is written by the webhook's mutating endpoint from the request's
//! userInfo, never taken from the requester: a break-glass without it was not approved
//! through the webhook and does not take effect.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::policy::{self, Approvers, BreakGlassDuration};

/// The incident or change ticket that justifies the break-glass.
pub const TICKET_ANNOTATION: &str = "provenance-gate.dev/break-glass-ticket";
/// Why, for the people reading the records later.
pub const REASON_ANNOTATION: &str = "provenance-gate.dev/break-glass-reason";
/// When it ends (RFC 3339), at most the policy's `maxDuration` ahead.
pub const EXPIRES_ANNOTATION: &str = "provenance-gate.dev/break-glass-expires";
/// Who declared it; set by the webhook only.
pub const APPROVED_BY_ANNOTATION: &str = "provenance-gate.dev/break-glass-approved-by";

/// The annotations a person declares; the approver annotation is the webhook's.
const DECLARED: [&str; 3] = [TICKET_ANNOTATION, REASON_ANNOTATION, EXPIRES_ANNOTATION];

/// A namespace's break-glass, as its annotations stand at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakGlassState {
    /// No break-glass declared.
    Absent,
    /// In force: failures are admitted, with a warning, an Event and a record.
    Active {
        ticket: String,
        reason: String,
        expires: Timestamp,
        approved_by: String,
    },
    /// Declared, but its time is over.
    Expired {
        ticket: String,
        expired_at: Timestamp,
    },
    /// Declared, but unusable; `why` says what is wrong.
    Malformed { why: String },
}

impl BreakGlassState {
    /// Reads the break-glass of a namespace. Active only when ticket, reason and a future
    /// expiry at most `max_duration` ahead are present, and the webhook recorded the
    /// approver.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        max_duration: BreakGlassDuration,
        now: Timestamp,
    ) -> BreakGlassState {
        let value = |key: &str| {
            annotations
                .get(key)
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
        };
        let declared: Vec<_> = DECLARED.iter().map(|key| value(key)).collect();
        if declared.iter().all(Option::is_none) {
            // A leftover approver annotation alone declares nothing.
            return BreakGlassState::Absent;
        }
        let [Some(ticket), Some(reason), Some(expires)] = [declared[0], declared[1], declared[2]]
        else {
            return BreakGlassState::Malformed {
                why: format!("missing {}", missing(&declared)),
            };
        };
        let expires_at = match parse_expiry(expires) {
            Ok(expires_at) => expires_at,
            Err(why) => return BreakGlassState::Malformed { why },
        };
        if expires_at <= now {
            return BreakGlassState::Expired {
                ticket: ticket.to_owned(),
                expired_at: expires_at,
            };
        }
        if let Err(why) = within_limit(expires_at, max_duration, now) {
            return BreakGlassState::Malformed { why };
        }
        let Some(approved_by) = value(APPROVED_BY_ANNOTATION) else {
            return BreakGlassState::Malformed {
                why: format!(
                    "not approved through the webhook ({APPROVED_BY_ANNOTATION} is not set)"
                ),
            };
        };
        BreakGlassState::Active {
            ticket: ticket.to_owned(),
            reason: reason.to_owned(),
            expires: expires_at,
            approved_by: approved_by.to_owned(),
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self, BreakGlassState::Active { .. })
    }

    /// The warning for a declared break-glass that does not take effect; `None` when there
    /// is nothing to warn about. `consequence` says what applies instead ("enforcing").
    pub fn ignored_warning(&self, namespace: &str, consequence: &str) -> Option<String> {
        match self {
            BreakGlassState::Absent | BreakGlassState::Active { .. } => None,
            BreakGlassState::Expired { expired_at, .. } => Some(format!(
                "break-glass on namespace {namespace} expired at {expired_at}; {consequence}"
            )),
            BreakGlassState::Malformed { why } => Some(format!(
                "break-glass on namespace {namespace} ignored ({why}); {consequence}"
            )),
        }
    }
}

/// "the ticket and reason annotations" for the declared values that are missing.
fn missing(declared: &[Option<&str>]) -> String {
    let names: Vec<_> = DECLARED
        .iter()
        .zip(declared)
        .filter(|(_, value)| value.is_none())
        .map(|(key, _)| *key)
        .collect();
    match names.as_slice() {
        [one] => format!("annotation {one}"),
        many => format!("annotations {}", many.join(", ")),
    }
}

fn parse_expiry(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>().map_err(|_| {
        format!(
            "{EXPIRES_ANNOTATION} {text:?} is not an RFC 3339 time such as 2026-11-28T18:00:00Z"
        )
    })
}

fn within_limit(
    expires: Timestamp,
    max_duration: BreakGlassDuration,
    now: Timestamp,
) -> Result<(), String> {
    if now.duration_until(expires) > max_duration.as_signed_duration() {
        return Err(format!(
            "expiry {expires} is more than the policy's maxDuration of {max_duration} ahead"
        ));
    }
    Ok(())
}

/// The user behind an admission request (its `userInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    pub username: String,
    pub groups: Vec<String>,
}

/// Whether `requester` may declare break-glass: listed by name, or in a listed group.
pub fn is_approver(approvers: &Approvers, requester: &Requester) -> bool {
    // An anonymous or nameless request can never be recorded as an approver.
    if requester.username.is_empty() {
        return false;
    }
    approvers.users.contains(&requester.username)
        || requester
            .groups
            .iter()
            .any(|group| approvers.groups.contains(group))
}

/// The verdict on a Namespace create or update, as far as break-glass is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceWrite {
    /// The write leaves the break-glass annotations as they were.
    Untouched,
    /// The write only removes break-glass annotations: always allowed. `clear_approval`
    /// when nothing is declared any more but the approver annotation is still there.
    Removal { clear_approval: bool },
    /// The write sets or changes the break-glass, by an approver. `recorded` when the
    /// approver annotation already names `approver` (the mutating endpoint has run).
    Approved {
        approver: String,
        ticket: String,
        expires: Timestamp,
        recorded: bool,
    },
    /// Refused; `why` is for the person who tried.
    Denied { why: String },
}

/// Judges a Namespace write: `old` is `None` on CREATE. Only approvers may set or change
/// the break-glass annotations, with an expiry within the policy's `maxDuration`; the
/// approver annotation may name nobody but the requester; removal is always allowed.
pub fn review_namespace_write(
    old: Option<&BTreeMap<String, String>>,
    new: &BTreeMap<String, String>,
    requester: &Requester,
    config: Option<&policy::BreakGlass>,
    now: Timestamp,
) -> NamespaceWrite {
    let before = |key: &str| old.and_then(|old| old.get(key));
    let after = |key: &str| new.get(key);
    let set_or_changed = |key: &str| after(key).is_some() && after(key) != before(key);

    let approval = after(APPROVED_BY_ANNOTATION);
    let approval_set = set_or_changed(APPROVED_BY_ANNOTATION);
    if approval_set && approval.map(String::as_str) != Some(requester.username.as_str()) {
        return NamespaceWrite::Denied {
            why: format!(
                "{APPROVED_BY_ANNOTATION} is recorded by the webhook and may only name the requesting user ({:?}), not {:?}",
                requester.username,
                approval.map_or("", String::as_str)
            ),
        };
    }
    let declares = DECLARED.iter().any(|key| set_or_changed(key));
    if !declares && !approval_set {
        let removed = DECLARED
            .iter()
            .chain([&APPROVED_BY_ANNOTATION])
            .any(|key| before(key).is_some() && after(key).is_none());
        if !removed {
            return NamespaceWrite::Untouched;
        }
        let nothing_declared = DECLARED.iter().all(|key| after(key).is_none());
        return NamespaceWrite::Removal {
            clear_approval: nothing_declared && approval.is_some(),
        };
    }

    let Some(config) = config else {
        return NamespaceWrite::Denied {
            why: "break-glass is not enabled in the policy (no breakGlass section)".into(),
        };
    };
    if !is_approver(&config.approvers, requester) {
        return NamespaceWrite::Denied {
            why: format!(
                "user {:?} may not declare break-glass: not among the policy's break-glass approvers (users or groups)",
                requester.username
            ),
        };
    }
    let value = |key: &str| {
        after(key)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    };
    let declared: Vec<_> = DECLARED.iter().map(|key| value(key)).collect();
    let [Some(ticket), Some(_reason), Some(expires)] = [declared[0], declared[1], declared[2]]
    else {
        return NamespaceWrite::Denied {
            why: format!(
                "break-glass needs a ticket, a reason and an expiry together: missing {}",
                missing(&declared)
            ),
        };
    };
    let expires = match parse_expiry(expires) {
        Ok(expires) => expires,
        Err(why) => return NamespaceWrite::Denied { why },
    };
    if expires <= now {
        return NamespaceWrite::Denied {
            why: format!("break-glass expiry {expires} has already passed"),
        };
    }
    if let Err(why) = within_limit(expires, config.max_duration, now) {
        return NamespaceWrite::Denied { why };
    }
    NamespaceWrite::Approved {
        approver: requester.username.clone(),
        ticket: ticket.to_owned(),
        expires,
        recorded: approval.map(String::as_str) == Some(requester.username.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-28T10:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn eight_hours() -> BreakGlassDuration {
        BreakGlassDuration::parse("8h").unwrap()
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn declared(expires: &str) -> Vec<(&'static str, String)> {
        vec![
            (TICKET_ANNOTATION, "INC-4711".into()),
            (REASON_ANNOTATION, "hotfix while CI is down".into()),
            (EXPIRES_ANNOTATION, expires.into()),
        ]
    }

    fn with(
        base: &[(&'static str, String)],
        extra: &[(&'static str, &str)],
    ) -> BTreeMap<String, String> {
        let mut map: BTreeMap<String, String> = base
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect();
        for (key, value) in extra {
            map.insert(key.to_string(), value.to_string());
        }
        map
    }

    #[test]
    fn break_glass_states_from_annotations() {
        let approved = [(APPROVED_BY_ANNOTATION, "alice")];
        type Case = (
            &'static str,
            BTreeMap<String, String>,
            Result<BreakGlassState, &'static str>,
        );
        let cases: Vec<Case> = vec![
            ("none", annotations(&[("team", "payments")]), Ok(BreakGlassState::Absent)),
            (
                "leftover approver only",
                annotations(&[(APPROVED_BY_ANNOTATION, "alice")]),
                Ok(BreakGlassState::Absent),
            ),
            (
                "active",
                with(&declared("2026-11-28T18:00:00Z"), &approved),
                Ok(BreakGlassState::Active {
                    ticket: "INC-4711".into(),
                    reason: "hotfix while CI is down".into(),
                    expires: "2026-11-28T18:00:00Z".parse().unwrap(),
                    approved_by: "alice".into(),
                }),
            ),
            (
                "active with an offset",
                with(&declared("2026-11-28T19:00:00+01:00"), &approved),
                Ok(BreakGlassState::Active {
                    ticket: "INC-4711".into(),
                    reason: "hotfix while CI is down".into(),
                    expires: "2026-11-28T18:00:00Z".parse().unwrap(),
                    approved_by: "alice".into(),
                }),
            ),
            (
                "expired",
                with(&declared("2026-11-28T09:59:59Z"), &approved),
                Ok(BreakGlassState::Expired {
                    ticket: "INC-4711".into(),
                    expired_at: "2026-11-28T09:59:59Z".parse().unwrap(),
                }),
            ),
            (
                "expires exactly now",
                with(&declared(NOW), &approved),
                Ok(BreakGlassState::Expired {
                    ticket: "INC-4711".into(),
                    expired_at: now(),
                }),
            ),
            (
                "too long",
                with(&declared("2026-11-28T18:00:01Z"), &approved),
                Err("more than the policy's maxDuration of 8h ahead"),
            ),
            (
                "missing ticket",
                annotations(&[
                    (REASON_ANNOTATION, "hotfix"),
                    (EXPIRES_ANNOTATION, "2026-11-28T12:00:00Z"),
                    (APPROVED_BY_ANNOTATION, "alice"),
                ]),
                Err("missing annotation provenance-gate.dev/break-glass-ticket"),
            ),
            (
                "blank reason",
                with(&declared("2026-11-28T12:00:00Z"), &[(REASON_ANNOTATION, "  "), approved[0]]),
                Err("missing annotation provenance-gate.dev/break-glass-reason"),
            ),
            (
                "only a ticket",
                annotations(&[(TICKET_ANNOTATION, "INC-1")]),
                Err("missing annotations provenance-gate.dev/break-glass-reason, provenance-gate.dev/break-glass-expires"),
            ),
            (
                "malformed time",
                with(&declared("tomorrow 6pm"), &approved),
                Err("\"tomorrow 6pm\" is not an RFC 3339 time"),
            ),
            (
                "time without offset",
                with(&declared("2026-11-28T18:00:00"), &approved),
                Err("is not an RFC 3339 time"),
            ),
            (
                "not approved",
                with(&declared("2026-11-28T18:00:00Z"), &[]),
                Err("not approved through the webhook"),
            ),
        ];
        for (name, annotations, expected) in cases {
            let state = BreakGlassState::from_annotations(&annotations, eight_hours(), now());
            match expected {
                Ok(expected) => assert_eq!(state, expected, "{name}"),
                Err(why) => match &state {
                    BreakGlassState::Malformed { why: actual } => {
                        assert!(actual.contains(why), "{name}: {actual}")
                    }
                    other => panic!("{name}: expected malformed, got {other:?}"),
                },
            }
        }
    }

    #[test]
    fn ignored_break_glass_is_warned_about() {
        let expired = BreakGlassState::Expired {
            ticket: "INC-1".into(),
            expired_at: "2026-11-28T09:00:00Z".parse().unwrap(),
        };
        assert_eq!(
            expired.ignored_warning("payments", "enforcing").as_deref(),
            Some("break-glass on namespace payments expired at 2026-11-28T09:00:00Z; enforcing")
        );
        let malformed = BreakGlassState::Malformed {
            why: "missing x".into(),
        };
        assert_eq!(
            malformed
                .ignored_warning("payments", "enforcing")
                .as_deref(),
            Some("break-glass on namespace payments ignored (missing x); enforcing")
        );
        assert_eq!(
            BreakGlassState::Absent.ignored_warning("payments", "enforcing"),
            None
        );
    }

    fn policy_break_glass() -> policy::BreakGlass {
        policy::BreakGlass {
            max_duration: eight_hours(),
            approvers: Approvers {
                groups: vec!["sre-oncall".into()],
                users: vec!["bob@example.com".into()],
            },
        }
    }

    fn requester(username: &str, groups: &[&str]) -> Requester {
        Requester {
            username: username.into(),
            groups: groups.iter().map(|group| group.to_string()).collect(),
        }
    }

    #[test]
    fn namespace_writes_are_judged() {
        let config = policy_break_glass();
        let alice_sre = requester("alice@example.com", &["system:authenticated", "sre-oncall"]);
        let bob = requester("bob@example.com", &["system:authenticated"]);
        let mallory = requester("mallory@example.com", &["system:authenticated"]);
        let set = with(&declared("2026-11-28T18:00:00Z"), &[]);
        let set_recorded = with(
            &declared("2026-11-28T18:00:00Z"),
            &[(APPROVED_BY_ANNOTATION, "alice@example.com")],
        );
        let labels_only = annotations(&[("team", "payments")]);
        let expires = || "2026-11-28T18:00:00Z".parse::<Timestamp>().unwrap();
        let approved = |approver: &str, recorded| NamespaceWrite::Approved {
            approver: approver.into(),
            ticket: "INC-4711".into(),
            expires: expires(),
            recorded,
        };
        type Case<'a> = (
            &'a str,
            Option<&'a BTreeMap<String, String>>,
            &'a BTreeMap<String, String>,
            &'a Requester,
            Option<&'a policy::BreakGlass>,
            Result<NamespaceWrite, &'a str>,
        );
        let changed_reason = with(
            &declared("2026-11-28T18:00:00Z"),
            &[
                (REASON_ANNOTATION, "still down"),
                (APPROVED_BY_ANNOTATION, "alice@example.com"),
            ],
        );
        let self_declared = with(
            &declared("2026-11-28T18:00:00Z"),
            &[(APPROVED_BY_ANNOTATION, "bob@example.com")],
        );
        let partial = annotations(&[(TICKET_ANNOTATION, "INC-1")]);
        let too_long = with(&declared("2026-11-29T10:00:00Z"), &[]);
        let bad_time = with(&declared("soon"), &[]);
        let past = with(&declared("2026-11-28T09:00:00Z"), &[]);
        let ticket_removed = with(
            &[
                (REASON_ANNOTATION, "hotfix while CI is down".to_owned()),
                (EXPIRES_ANNOTATION, "2026-11-28T18:00:00Z".to_owned()),
            ],
            &[(APPROVED_BY_ANNOTATION, "alice@example.com")],
        );
        let only_approval = annotations(&[(APPROVED_BY_ANNOTATION, "alice@example.com")]);
        let empty = BTreeMap::new();
        let cases: Vec<Case> = vec![
            ("no break-glass at all", None, &labels_only, &mallory, Some(&config), Ok(NamespaceWrite::Untouched)),
            ("unrelated update", Some(&set_recorded), &set_recorded, &mallory, Some(&config), Ok(NamespaceWrite::Untouched)),
            ("non-approver denied", None, &set, &mallory, Some(&config), Err("\"mallory@example.com\" may not declare break-glass")),
            ("approver via group", Some(&labels_only), &set, &alice_sre, Some(&config), Ok(approved("alice@example.com", false))),
            ("approver via group, recorded", Some(&labels_only), &set_recorded, &alice_sre, Some(&config), Ok(approved("alice@example.com", true))),
            ("approver by name", None, &set, &bob, Some(&config), Ok(approved("bob@example.com", false))),
            ("self-declared approver denied", None, &self_declared, &mallory, Some(&config), Err("may only name the requesting user (\"mallory@example.com\"), not \"bob@example.com\"")),
            ("approver naming someone else denied", None, &self_declared, &alice_sre, Some(&config), Err("may only name the requesting user")),
            ("change by a non-approver denied", Some(&set_recorded), &changed_reason, &mallory, Some(&config), Err("may not declare break-glass")),
            ("removal by anybody", Some(&set_recorded), &labels_only, &mallory, Some(&config), Ok(NamespaceWrite::Removal { clear_approval: false })),
            ("partial removal by anybody", Some(&set_recorded), &ticket_removed, &mallory, Some(&config), Ok(NamespaceWrite::Removal { clear_approval: false })),
            ("removal leaving the approver", Some(&set_recorded), &only_approval, &mallory, Some(&config), Ok(NamespaceWrite::Removal { clear_approval: true })),
            ("removal with break-glass disabled", Some(&set_recorded), &empty, &mallory, None, Ok(NamespaceWrite::Removal { clear_approval: false })),
            ("disabled break-glass", None, &set, &alice_sre, None, Err("break-glass is not enabled in the policy")),
            ("incomplete", None, &partial, &alice_sre, Some(&config), Err("missing annotations provenance-gate.dev/break-glass-reason, provenance-gate.dev/break-glass-expires")),
            ("too long", None, &too_long, &alice_sre, Some(&config), Err("more than the policy's maxDuration of 8h ahead")),
            ("malformed expiry", None, &bad_time, &alice_sre, Some(&config), Err("\"soon\" is not an RFC 3339 time")),
            ("past expiry", None, &past, &alice_sre, Some(&config), Err("has already passed")),
        ];
        for (name, old, new, who, config, expected) in cases {
            let verdict = review_namespace_write(old, new, who, config, now());
            match expected {
                Ok(expected) => assert_eq!(verdict, expected, "{name}"),
                Err(why) => match &verdict {
                    NamespaceWrite::Denied { why: actual } => {
                        assert!(actual.contains(why), "{name}: {actual}")
                    }
                    other => panic!("{name}: expected a denial, got {other:?}"),
                },
            }
        }
    }

    #[test]
    fn nameless_requesters_are_never_approvers() {
        let approvers = Approvers {
            groups: vec!["system:unauthenticated".into()],
            users: vec![String::new()],
        };
        assert!(!is_approver(
            &approvers,
            &requester("", &["system:unauthenticated"])
        ));
    }
}
