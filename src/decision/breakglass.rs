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
//! The approver annotations are written by the webhook's mutating endpoint from the
//! request's userInfo, never taken from the requester: a break-glass without them was not
//! approved through the webhook and does not take effect. The approver is checked again
//! whenever the break-glass is used, against the policy's approvers of that moment.
//!
//! The same approvers guard a namespace's mode: a label change that lowers it (the first
//! environment whose selector matches, else `defaultMode`) is theirs alone, and one that
//! raises it while break-glass annotations are present re-judges the break-glass as if it
//! were declared anew (an approver must make the change, and is recorded as its approver),
//! since a break-glass declared where it did nothing must not take effect unexamined where
//! it does.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::policy::{self, Approvers, BreakGlassDuration, Mode, Policy};

/// The incident or change ticket that justifies the break-glass.
pub const TICKET_ANNOTATION: &str = "provenance-gate.dev/break-glass-ticket";
/// Why, for the people reading the records later.
pub const REASON_ANNOTATION: &str = "provenance-gate.dev/break-glass-reason";
/// When it ends (RFC 3339), at most the policy's `maxDuration` ahead.
pub const EXPIRES_ANNOTATION: &str = "provenance-gate.dev/break-glass-expires";
/// Who declared it; set by the webhook only.
pub const APPROVED_BY_ANNOTATION: &str = "provenance-gate.dev/break-glass-approved-by";
/// The policy's approver groups the approver was in when declaring it (a JSON list of
/// strings), so that the approval can be checked again without the request's userInfo;
/// set by the webhook only, absent when the approver is listed by name alone.
pub const APPROVER_GROUPS_ANNOTATION: &str = "provenance-gate.dev/break-glass-approver-groups";

/// Most approver names shown in a message.
const MAX_NAMES_SHOWN: usize = 10;

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

/// The break-glass of a namespace as it applies now: as declared ([`BreakGlassState::from_annotations`]),
/// and only while the recorded approver is still among `config`'s approvers, by name or by
/// one of the groups recorded with the approval.
pub fn in_force(
    annotations: &BTreeMap<String, String>,
    config: &policy::BreakGlass,
    now: Timestamp,
) -> BreakGlassState {
    let state = BreakGlassState::from_annotations(annotations, config.max_duration, now);
    let BreakGlassState::Active { approved_by, .. } = &state else {
        return state;
    };
    let approvers = &config.approvers;
    let by_name = approvers.users.contains(approved_by);
    let by_group = recorded_groups(annotations)
        .iter()
        .any(|group| approvers.groups.contains(group));
    if by_name || by_group {
        return state;
    }
    BreakGlassState::Malformed {
        why: format!(
            "its recorded approver {approved_by:?} is no longer among the policy's break-glass approvers ({})",
            describe_approvers(approvers)
        ),
    }
}

/// A namespace's break-glass under `policy`, its approver checked against the policy's
/// approvers ([`in_force`]). Without `breakGlass` in the policy, declared annotations are
/// ignored, with the reason.
pub fn under_policy(
    policy: &Policy,
    annotations: &BTreeMap<String, String>,
    now: Timestamp,
) -> BreakGlassState {
    match policy.break_glass() {
        Some(config) => in_force(annotations, config, now),
        None if [TICKET_ANNOTATION, REASON_ANNOTATION, EXPIRES_ANNOTATION]
            .iter()
            .any(|key| annotations.contains_key(*key)) =>
        {
            BreakGlassState::Malformed {
                why: "break-glass is not enabled in the policy".into(),
            }
        }
        None => BreakGlassState::Absent,
    }
}

/// The groups recorded in [`APPROVER_GROUPS_ANNOTATION`]; none when absent or unreadable.
fn recorded_groups(annotations: &BTreeMap<String, String>) -> Vec<String> {
    annotations
        .get(APPROVER_GROUPS_ANNOTATION)
        .and_then(|text| serde_json::from_str::<Vec<String>>(text).ok())
        .unwrap_or_default()
}

/// The value of [`APPROVER_GROUPS_ANNOTATION`] for `requester`: the policy's approver groups
/// they are in, or `None` when in none (approved by name).
fn approver_groups_value(approvers: &Approvers, requester: &Requester) -> Option<String> {
    let mut groups: Vec<&String> = requester
        .groups
        .iter()
        .filter(|group| approvers.groups.contains(group))
        .collect();
    groups.sort();
    groups.dedup();
    if groups.is_empty() {
        return None;
    }
    serde_json::to_string(&groups).ok()
}

/// "groups sre-oncall; users bob@example.com", at most [`MAX_NAMES_SHOWN`] of each.
pub fn describe_approvers(approvers: &Approvers) -> String {
    let list = |names: &[String]| {
        let mut shown = names
            .iter()
            .take(MAX_NAMES_SHOWN)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > MAX_NAMES_SHOWN {
            shown.push_str(&format!(" and {} more", names.len() - MAX_NAMES_SHOWN));
        }
        if shown.is_empty() {
            "none".to_owned()
        } else {
            shown
        }
    };
    format!(
        "groups: {}; users: {}",
        list(&approvers.groups),
        list(&approvers.users)
    )
}

/// A namespace's mode under a policy, and the environment that gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceMode {
    pub mode: Mode,
    /// `None`: no environment matches; the policy's `defaultMode`.
    pub environment: Option<String>,
}

impl NamespaceMode {
    pub fn of(policy: &Policy, labels: &BTreeMap<String, String>) -> NamespaceMode {
        let (environment, mode) = policy.mode_for_namespace(labels);
        NamespaceMode {
            mode,
            environment: environment.map(str::to_owned),
        }
    }

    /// Observe < warn < enforce.
    fn strictness(&self) -> u8 {
        match self.mode {
            Mode::Observe => 0,
            Mode::Warn => 1,
            Mode::Enforce => 2,
        }
    }
}

impl std::fmt::Display for NamespaceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.environment {
            Some(environment) => write!(f, "{} (environment {environment})", self.mode),
            None => write!(f, "{} (defaultMode)", self.mode),
        }
    }
}

/// A Namespace UPDATE that changes its labels: the mode before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeChange {
    pub from: NamespaceMode,
    pub to: NamespaceMode,
}

impl ModeChange {
    pub fn lowers(&self) -> bool {
        self.to.strictness() < self.from.strictness()
    }

    pub fn raises(&self) -> bool {
        self.to.strictness() > self.from.strictness()
    }
}

/// The verdict on a label change, as far as the namespace's mode is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeVerdict {
    /// The mode stays, or becomes stricter: anybody may.
    Allowed,
    /// Lowered by a break-glass approver: allowed, and evidence of who did it is owed.
    Lowered { approver: String },
    /// Refused; `why` names both modes and who may lower it.
    Denied { why: String },
}

/// Judges a label change: only break-glass approvers may lower a namespace's mode.
pub fn review_mode_change(
    change: &ModeChange,
    requester: &Requester,
    config: Option<&policy::BreakGlass>,
) -> ModeVerdict {
    if !change.lowers() {
        return ModeVerdict::Allowed;
    }
    let lowering = format!("lowering the mode from {} to {}", change.from, change.to);
    match config {
        Some(config) if is_approver(&config.approvers, requester) => ModeVerdict::Lowered {
            approver: requester.username.clone(),
        },
        Some(config) => ModeVerdict::Denied {
            why: format!(
                "user {:?} may not: {lowering} is for the policy's break-glass approvers only ({})",
                requester.username,
                describe_approvers(&config.approvers)
            ),
        },
        None => ModeVerdict::Denied {
            why: format!(
                "{lowering} is for the policy's break-glass approvers only, and the policy names none (no breakGlass section); change the policy instead"
            ),
        },
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
    /// when nothing is declared any more but approver annotations are still there.
    Removal { clear_approval: bool },
    /// The write sets or changes the break-glass (or raises the mode under it), by an
    /// approver. `recorded` when the approver annotations already name `approver` and
    /// `groups` (the mutating endpoint has run).
    Approved {
        approver: String,
        /// The value for [`APPROVER_GROUPS_ANNOTATION`]; `None`: the annotation is absent.
        groups: Option<String>,
        ticket: String,
        expires: Timestamp,
        recorded: bool,
    },
    /// Refused; `why` is for the person who tried.
    Denied { why: String },
}

/// Judges a Namespace write: `old` is `None` on CREATE; `mode_change` is the change of mode
/// its labels make, if any. Only approvers may set or change the break-glass annotations,
/// with an expiry within the policy's `maxDuration`; the approver annotations may name
/// nobody but the requester; removal is always allowed. A write that raises the mode while
/// a break-glass is in force is judged as declaring it.
pub fn review_namespace_write(
    old: Option<&BTreeMap<String, String>>,
    new: &BTreeMap<String, String>,
    requester: &Requester,
    config: Option<&policy::BreakGlass>,
    now: Timestamp,
    mode_change: Option<&ModeChange>,
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
    let groups_set = set_or_changed(APPROVER_GROUPS_ANNOTATION);
    let declares = DECLARED.iter().any(|key| set_or_changed(key));
    // Only a break-glass that would be in force in the stricter mode is judged again:
    // expired or incomplete annotations admit nothing, and completing them is a change.
    let raised_under_break_glass = mode_change
        .filter(|change| change.raises())
        .filter(|_| config.is_some_and(|config| in_force(new, config, now).is_active()));
    if !declares && !approval_set && !groups_set && raised_under_break_glass.is_none() {
        let removed = DECLARED
            .iter()
            .chain([&APPROVED_BY_ANNOTATION, &APPROVER_GROUPS_ANNOTATION])
            .any(|key| before(key).is_some() && after(key).is_none());
        if !removed {
            return NamespaceWrite::Untouched;
        }
        let nothing_declared = DECLARED.iter().all(|key| after(key).is_none());
        let approval_left = approval.is_some() || after(APPROVER_GROUPS_ANNOTATION).is_some();
        return NamespaceWrite::Removal {
            clear_approval: nothing_declared && approval_left,
        };
    }
    let verdict = judge_declaration(new, requester, config, now, groups_set);
    match (verdict, raised_under_break_glass) {
        (NamespaceWrite::Denied { why }, Some(change)) if !declares => NamespaceWrite::Denied {
            why: format!(
                "raising the mode from {} to {} re-judges the break-glass in force: {why}; remove them first, or have a break-glass approver make the change",
                change.from, change.to
            ),
        },
        (verdict, _) => verdict,
    }
}

/// Judges the break-glass annotations of `new` as declared by `requester`.
fn judge_declaration(
    new: &BTreeMap<String, String>,
    requester: &Requester,
    config: Option<&policy::BreakGlass>,
    now: Timestamp,
    groups_set: bool,
) -> NamespaceWrite {
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
    let groups = approver_groups_value(&config.approvers, requester);
    let recorded_groups = new.get(APPROVER_GROUPS_ANNOTATION);
    if groups_set && recorded_groups != groups.as_ref() {
        return NamespaceWrite::Denied {
            why: format!(
                "{APPROVER_GROUPS_ANNOTATION} is recorded by the webhook and may only list the requesting user's approver groups ({})",
                groups.as_deref().unwrap_or("none")
            ),
        };
    }
    let value = |key: &str| {
        new.get(key)
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
    let recorded = new.get(APPROVED_BY_ANNOTATION).map(String::as_str)
        == Some(requester.username.as_str())
        && recorded_groups == groups.as_ref();
    NamespaceWrite::Approved {
        approver: requester.username.clone(),
        groups,
        ticket: ticket.to_owned(),
        expires,
        recorded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-28T10:00:00Z";
    /// The approver groups annotation of an approval through group `sre-oncall`.
    const SRE: &str = r#"["sre-oncall"]"#;

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn expires() -> Timestamp {
        "2026-11-28T18:00:00Z".parse().unwrap()
    }

    /// The approval of the [`declared`] break-glass expiring at [`expires`].
    fn approved(approver: &str, groups: Option<&str>, recorded: bool) -> NamespaceWrite {
        NamespaceWrite::Approved {
            approver: approver.into(),
            groups: groups.map(str::to_owned),
            ticket: "INC-4711".into(),
            expires: expires(),
            recorded,
        }
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
            &[
                (APPROVED_BY_ANNOTATION, "alice@example.com"),
                (APPROVER_GROUPS_ANNOTATION, SRE),
            ],
        );
        let labels_only = annotations(&[("team", "payments")]);
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
            ("approver via group", Some(&labels_only), &set, &alice_sre, Some(&config), Ok(approved("alice@example.com", Some(SRE), false))),
            ("approver via group, recorded", Some(&labels_only), &set_recorded, &alice_sre, Some(&config), Ok(approved("alice@example.com", Some(SRE), true))),
            ("approver by name", None, &set, &bob, Some(&config), Ok(approved("bob@example.com", None, false))),
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
            let verdict = review_namespace_write(old, new, who, config, now(), None);
            assert_verdict(name, verdict, expected, write_denial);
        }
    }

    /// Asserts `verdict` is `expected`, or (`Err`) a denial whose reason contains the text.
    fn assert_verdict<V: PartialEq + std::fmt::Debug>(
        name: &str,
        verdict: V,
        expected: Result<V, &str>,
        denial: fn(&V) -> Option<&str>,
    ) {
        match expected {
            Ok(expected) => assert_eq!(verdict, expected, "{name}"),
            Err(why) => match denial(&verdict) {
                Some(actual) => assert!(actual.contains(why), "{name}: {actual}"),
                None => panic!("{name}: expected a denial with {why:?}, got {verdict:?}"),
            },
        }
    }

    fn write_denial(verdict: &NamespaceWrite) -> Option<&str> {
        match verdict {
            NamespaceWrite::Denied { why } => Some(why),
            _ => None,
        }
    }

    fn mode_denial(verdict: &ModeVerdict) -> Option<&str> {
        match verdict {
            ModeVerdict::Denied { why } => Some(why),
            _ => None,
        }
    }

    #[test]
    fn approver_groups_are_recorded_by_the_webhook_only() {
        let config = policy_break_glass();
        let alice_sre = requester("alice@example.com", &["sre-oncall", "sre-oncall", "dev"]);
        let bob = requester("bob@example.com", &[]);
        let mallory = requester("mallory@example.com", &[]);
        let alice_recorded = with(
            &declared("2026-11-28T18:00:00Z"),
            &[
                (APPROVED_BY_ANNOTATION, "alice@example.com"),
                (APPROVER_GROUPS_ANNOTATION, SRE),
            ],
        );
        let widened = with(
            &declared("2026-11-28T18:00:00Z"),
            &[
                (APPROVED_BY_ANNOTATION, "alice@example.com"),
                (APPROVER_GROUPS_ANNOTATION, r#"["sre-oncall","dev"]"#),
            ],
        );
        let judge = |old: &BTreeMap<String, String>, new, who| {
            review_namespace_write(Some(old), new, who, Some(&config), now(), None)
        };
        let denied = |verdict, want| assert_verdict("refused", verdict, Err(want), write_denial);
        // A non-approver may not add a group; an approver may not list one they are not
        // recorded in by the webhook.
        denied(
            judge(&alice_recorded, &widened, &mallory),
            "may not declare break-glass",
        );
        denied(
            judge(&alice_recorded, &widened, &alice_sre),
            "may only list the requesting user's approver groups ([\"sre-oncall\"])",
        );
        // Bob (approved by name) taking over: the mutating endpoint must drop alice's groups.
        let bob_named = with(
            &declared("2026-11-28T18:00:00Z"),
            &[
                (REASON_ANNOTATION, "still down"),
                (APPROVED_BY_ANNOTATION, "bob@example.com"),
                (APPROVER_GROUPS_ANNOTATION, SRE),
            ],
        );
        assert_eq!(
            judge(&alice_recorded, &bob_named, &bob),
            approved("bob@example.com", None, false)
        );
        // Dropping the groups alone is a removal, which anybody may make.
        let without_groups = with(
            &declared("2026-11-28T18:00:00Z"),
            &[(APPROVED_BY_ANNOTATION, "alice@example.com")],
        );
        assert_eq!(
            judge(&alice_recorded, &without_groups, &mallory),
            NamespaceWrite::Removal {
                clear_approval: false
            }
        );
    }

    #[test]
    fn the_approver_is_checked_again_whenever_break_glass_is_used() {
        let approved_via = |groups: Option<&str>, approver: &str| {
            let mut annotations = with(
                &declared("2026-11-28T18:00:00Z"),
                &[(APPROVED_BY_ANNOTATION, approver)],
            );
            if let Some(groups) = groups {
                annotations.insert(APPROVER_GROUPS_ANNOTATION.into(), groups.into());
            }
            annotations
        };
        let config = policy_break_glass();
        let mut without_sre = policy_break_glass();
        without_sre.approvers.groups.clear();
        let mut without_bob = policy_break_glass();
        without_bob.approvers.users.clear();
        type Case<'a> = (
            &'a str,
            BTreeMap<String, String>,
            &'a policy::BreakGlass,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            ("through a listed group", approved_via(Some(SRE), "alice"), &config, None),
            ("by name", approved_via(None, "bob@example.com"), &config, None),
            ("group removed from the policy", approved_via(Some(SRE), "alice"), &without_sre, Some("its recorded approver \"alice\" is no longer among the policy's break-glass approvers (groups: none; users: bob@example.com)")),
            ("user removed from the policy", approved_via(None, "bob@example.com"), &without_bob, Some("\"bob@example.com\" is no longer among")),
            ("no groups recorded", approved_via(None, "alice"), &config, Some("no longer among")),
            ("groups unreadable", approved_via(Some("sre-oncall"), "alice"), &config, Some("no longer among")),
        ];
        for (name, annotations, config, expected) in cases {
            let state = in_force(&annotations, config, now());
            match expected {
                None => assert!(state.is_active(), "{name}: {state:?}"),
                Some(why) => {
                    let warning = state.ignored_warning("payments", "enforcing");
                    assert!(
                        warning
                            .as_deref()
                            .is_some_and(|warning| warning.contains(why)),
                        "{name}: {warning:?}"
                    );
                }
            }
        }
        // Expired and malformed states are left as they are.
        let expired = with(&declared("2026-11-28T09:00:00Z"), &[]);
        assert!(matches!(
            in_force(&expired, &config, now()),
            BreakGlassState::Expired { .. }
        ));
    }

    fn mode(mode: Mode, environment: Option<&str>) -> NamespaceMode {
        NamespaceMode {
            mode,
            environment: environment.map(str::to_owned),
        }
    }

    fn change(from: NamespaceMode, to: NamespaceMode) -> ModeChange {
        ModeChange { from, to }
    }

    #[test]
    fn only_approvers_lower_a_namespace_mode() {
        let config = policy_break_glass();
        let production = || mode(Mode::Enforce, Some("production"));
        let staging = || mode(Mode::Warn, Some("staging"));
        let development = || mode(Mode::Observe, Some("development"));
        let default = || mode(Mode::Observe, None);
        let alice_sre = requester("alice@example.com", &["sre-oncall"]);
        let mallory = requester("mallory@example.com", &["system:authenticated"]);
        type Case<'a> = (
            &'a str,
            ModeChange,
            &'a Requester,
            Option<&'a policy::BreakGlass>,
            Result<ModeVerdict, &'a str>,
        );
        let cases: Vec<Case> = vec![
            ("lowered by a non-approver", change(production(), development()), &mallory, Some(&config),
             Err("user \"mallory@example.com\" may not: lowering the mode from enforce (environment production) to observe (environment development) is for the policy's break-glass approvers only (groups: sre-oncall; users: bob@example.com)")),
            ("lowered to the default", change(staging(), default()), &mallory, Some(&config), Err("from warn (environment staging) to observe (defaultMode)")),
            ("lowered without break-glass approvers", change(production(), staging()), &alice_sre, None, Err("the policy names none")),
            ("lowered by an approver", change(production(), development()), &alice_sre, Some(&config), Ok(ModeVerdict::Lowered { approver: "alice@example.com".into() })),
            ("raised by anybody", change(development(), production()), &mallory, Some(&config), Ok(ModeVerdict::Allowed)),
            ("another environment, same mode", change(development(), default()), &mallory, None, Ok(ModeVerdict::Allowed)),
        ];
        for (name, change, who, config, expected) in cases {
            let verdict = review_mode_change(&change, who, config);
            assert_verdict(name, verdict, expected, mode_denial);
        }
    }

    #[test]
    fn raising_the_mode_re_judges_break_glass() {
        let config = policy_break_glass();
        let raise = change(
            mode(Mode::Observe, Some("development")),
            mode(Mode::Enforce, Some("production")),
        );
        let lower = change(raise.to.clone(), raise.from.clone());
        // Written in full, approver and all, while nothing judged it.
        let forged = with(
            &declared("2026-11-28T18:00:00Z"),
            &[
                (APPROVED_BY_ANNOTATION, "alice@example.com"),
                (APPROVER_GROUPS_ANNOTATION, SRE),
            ],
        );
        let mallory = requester("mallory@example.com", &[]);
        let bob = requester("bob@example.com", &[]);
        let judge = |who, change: Option<&ModeChange>, annotations| {
            review_namespace_write(
                Some(annotations),
                annotations,
                who,
                Some(&config),
                now(),
                change,
            )
        };
        match judge(&mallory, Some(&raise), &forged) {
            NamespaceWrite::Denied { why } => assert!(
                why.starts_with("raising the mode from observe (environment development) to enforce (environment production) re-judges the break-glass in force: user \"mallory@example.com\" may not declare break-glass"),
                "{why}"
            ),
            other => panic!("expected a denial, got {other:?}"),
        }
        // An approver may raise it, and becomes the recorded approver.
        assert_eq!(
            judge(&bob, Some(&raise), &forged),
            approved("bob@example.com", None, false)
        );
        // An expired or unapproved leftover would admit nothing: it is left alone.
        let expired = with(
            &declared("2026-11-28T09:00:00Z"),
            &[
                (APPROVED_BY_ANNOTATION, "alice@example.com"),
                (APPROVER_GROUPS_ANNOTATION, SRE),
            ],
        );
        assert_eq!(
            judge(&mallory, Some(&raise), &expired),
            NamespaceWrite::Untouched
        );
        let unapproved = with(&declared("2026-11-28T18:00:00Z"), &[]);
        assert_eq!(
            judge(&mallory, Some(&raise), &unapproved),
            NamespaceWrite::Untouched
        );
        // Lowering, or raising without break-glass, leaves break-glass alone.
        assert_eq!(
            judge(&mallory, Some(&lower), &forged),
            NamespaceWrite::Untouched
        );
        let plain = annotations(&[("team", "payments")]);
        assert_eq!(
            judge(&mallory, Some(&raise), &plain),
            NamespaceWrite::Untouched
        );
        assert_eq!(judge(&mallory, None, &forged), NamespaceWrite::Untouched);
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
