//! `provenance-gate report`: a summary of decision records (the JSON lines `serve` writes to
//! stdout, kept by the cluster's log pipeline) over a time window. Pass rate per environment,
//! namespace and rule, the most frequent reasons images were not proven, break-glass use (the
//! post-incident review list) and namespace mode changes.
//!
//! The summary is pure: lines in, [`Summary`] out. [`command`] reads files or stdin and prints.
//! Memory is bounded whatever the input: lines are cut off at [`MAX_LINE_BYTES`], and every
//! table stops adding keys at its [`Limits`], counting the rest under "other".
//!
//! What counts as a pass matches the KPI the runbook means: an image whose provenance was
//! verified against a rule. Exempt images are left out of the rate; images admitted without
//! proof (no rule covers them and `unmatchedImages: allow`, warn and observe modes,
//! break-glass) are judged and not passed. Dry runs created nothing and are only counted.

mod command;
mod text;

use std::collections::HashMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::decision::Verdict;

pub use command::{command, ReportArgs};

/// Longest line read (bytes); a record is a few kilobytes at most (its reason is bounded to
/// 4 KiB), so a longer line is not one, and is counted as too long without being kept.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest key (namespace, environment, rule) or reason kept; longer ones are cut.
const MAX_KEY_BYTES: usize = 256;
const MAX_REASON_BYTES: usize = 512;

/// Every verdict, to read a record's `result` back.
const VERDICTS: [Verdict; 6] = [
    Verdict::Allowed,
    Verdict::Exempt,
    Verdict::Warned,
    Verdict::WouldDeny,
    Verdict::Denied,
    Verdict::BreakGlass,
];

/// How many distinct keys each table keeps; records with further keys are counted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Environments, namespaces and rules, each.
    pub groups: usize,
    /// Distinct reasons.
    pub reasons: usize,
    /// Distinct break-glass uses (namespace, ticket, approver).
    pub break_glass: usize,
    /// Images listed per break-glass use.
    pub images_per_break_glass: usize,
    /// Mode changes listed.
    pub mode_changes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            groups: 10_000,
            reasons: 1_000,
            break_glass: 1_000,
            images_per_break_glass: 20,
            mode_changes: 1_000,
        }
    }
}

/// Records from `since` (inclusive) to `until` (exclusive); either may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Window {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

impl Window {
    fn contains(&self, time: Timestamp) -> bool {
        self.since.is_none_or(|since| time >= since) && self.until.is_none_or(|until| time < until)
    }
}

/// The fields of a decision record the summary reads (`evidence::records::DecisionRecord`
/// writes them); every one optional, so that a line can be told apart as "not a record"
/// (none of `time`, `mode`, `result`) or "malformed" (some, but unusable).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordLine {
    time: Option<String>,
    mode: Option<String>,
    result: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    image: String,
    environment: Option<String>,
    previous_mode: Option<String>,
    previous_environment: Option<String>,
    requested_by: Option<String>,
    #[serde(default)]
    reason: String,
    rule: Option<String>,
    #[serde(default)]
    dry_run: bool,
    break_glass_ticket: Option<String>,
    break_glass_reason: Option<String>,
    break_glass_approved_by: Option<String>,
    /// Not written by records yet; read when it is, and reported as unknown until then.
    break_glass_expires: Option<String>,
}

/// What the lines were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineCounts {
    /// Non-empty lines read.
    pub read: u64,
    /// Decision records inside the window (dry runs included).
    pub records: u64,
    pub outside_window: u64,
    /// Records of dry-run requests: counted here, in no other figure.
    pub dry_runs: u64,
    /// JSON objects that are not decision records (log lines, when stderr is mixed in).
    pub not_records: u64,
    /// Lines that are not JSON objects, or records with a missing or unreadable time, mode or
    /// result.
    pub malformed: u64,
    /// Lines longer than [`MAX_LINE_BYTES`], skipped.
    pub too_long: u64,
}

/// Image decisions of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Decisions counted in the pass rate: all but exempt images.
    pub judged: u64,
    /// Of them, verified against a rule.
    pub proven: u64,
    /// `proven / judged`; none when nothing was judged.
    pub pass_rate: Option<f64>,
    /// Admitted although not proven: no rule covers the image and `unmatchedImages: allow`.
    pub allowed_unverified: u64,
    pub warned: u64,
    pub would_deny: u64,
    pub denied: u64,
    pub break_glass: u64,
    /// Not judged.
    pub exempt: u64,
}

impl Tally {
    fn add(&mut self, verdict: Verdict, has_rule: bool) {
        match verdict {
            Verdict::Exempt => {
                self.exempt += 1;
                return;
            }
            Verdict::Allowed if has_rule => self.proven += 1,
            Verdict::Allowed => self.allowed_unverified += 1,
            Verdict::Warned => self.warned += 1,
            Verdict::WouldDeny => self.would_deny += 1,
            Verdict::Denied => self.denied += 1,
            Verdict::BreakGlass => self.break_glass += 1,
        }
        self.judged += 1;
    }

    fn finish(&mut self) {
        self.pass_rate = (self.judged > 0).then(|| self.proven as f64 / self.judged as f64);
    }
}

/// One key's tally.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// Tallies by key, in key order; `other` holds the records whose key came after the limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupTable {
    pub groups: Vec<Group>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<Tally>,
}

/// A reason images were not proven, with digests and commits elided so that the same cause
/// on different images counts once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    pub reason: String,
    pub count: u64,
    /// The first record with this reason: where to start looking.
    pub example_namespace: Option<String>,
    pub example_image: String,
}

/// Reasons, most frequent first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonTable {
    pub top: Vec<ReasonCount>,
    /// Distinct reasons seen (up to the limit).
    pub distinct: usize,
    /// Records whose reason came after the limit of distinct reasons.
    pub uncounted_records: u64,
}

/// Images admitted under one break-glass: a namespace's ticket and approver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassUse {
    pub namespace: Option<String>,
    pub ticket: Option<String>,
    pub approved_by: Option<String>,
    pub reason: Option<String>,
    /// When the break-glass ended, if the records say.
    pub expires: Option<String>,
    pub first_use: Timestamp,
    pub last_use: Timestamp,
    pub admissions: u64,
    /// Distinct images admitted, up to the limit.
    pub images: Vec<String>,
    pub more_images: bool,
}

/// A Namespace write that changed its mode (allowed or refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeChange {
    pub time: Timestamp,
    pub namespace: Option<String>,
    pub from_mode: Option<String>,
    pub from_environment: Option<String>,
    pub to_mode: String,
    pub to_environment: Option<String>,
    pub requested_by: Option<String>,
    pub result: &'static str,
    pub reason: String,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub window: Window,
    /// The earliest and latest record inside the window.
    pub first_record: Option<Timestamp>,
    pub last_record: Option<Timestamp>,
    pub lines: LineCounts,
    pub overall: Tally,
    pub by_environment: GroupTable,
    pub by_namespace: GroupTable,
    pub by_rule: GroupTable,
    pub reasons: ReasonTable,
    pub break_glass: Vec<BreakGlassUse>,
    /// Admissions under break-glass uses after the limit of distinct uses.
    pub break_glass_uncounted: u64,
    pub mode_changes: Vec<ModeChange>,
    pub mode_changes_uncounted: u64,
}

/// Key used for a record without environment, namespace or rule.
const NONE_KEY: &str = "(none)";

#[derive(Debug)]
struct BoundedGroups {
    groups: HashMap<String, Tally>,
    other: Option<Tally>,
    limit: usize,
}

impl BoundedGroups {
    fn new(limit: usize) -> Self {
        BoundedGroups {
            groups: HashMap::new(),
            other: None,
            limit,
        }
    }

    fn tally(&mut self, key: Option<&str>) -> &mut Tally {
        let key = key.unwrap_or(NONE_KEY);
        if !self.groups.contains_key(key) && self.groups.len() >= self.limit {
            return self.other.get_or_insert_with(Tally::default);
        }
        self.groups.entry(bounded_key(key)).or_default()
    }

    fn finish(self) -> GroupTable {
        let mut groups: Vec<Group> = self
            .groups
            .into_iter()
            .map(|(key, mut tally)| {
                tally.finish();
                Group { key, tally }
            })
            .collect();
        groups.sort_by(|a, b| a.key.cmp(&b.key));
        GroupTable {
            groups,
            other: self.other.map(|mut tally| {
                tally.finish();
                tally
            }),
        }
    }
}

/// A break-glass use: namespace, ticket and approver.
type BreakGlassKey = (Option<String>, Option<String>, Option<String>);

/// Summarises lines one at a time; [`Summariser::finish`] gives the [`Summary`].
#[derive(Debug)]
pub struct Summariser {
    window: Window,
    limits: Limits,
    first_record: Option<Timestamp>,
    last_record: Option<Timestamp>,
    lines: LineCounts,
    overall: Tally,
    by_environment: BoundedGroups,
    by_namespace: BoundedGroups,
    by_rule: BoundedGroups,
    reasons: HashMap<String, ReasonCount>,
    reasons_uncounted: u64,
    break_glass: HashMap<BreakGlassKey, BreakGlassUse>,
    break_glass_uncounted: u64,
    mode_changes: Vec<ModeChange>,
    mode_changes_uncounted: u64,
}

impl Summariser {
    pub fn new(window: Window, limits: Limits) -> Self {
        Summariser {
            window,
            limits,
            first_record: None,
            last_record: None,
            lines: LineCounts::default(),
            overall: Tally::default(),
            by_environment: BoundedGroups::new(limits.groups),
            by_namespace: BoundedGroups::new(limits.groups),
            by_rule: BoundedGroups::new(limits.groups),
            reasons: HashMap::new(),
            reasons_uncounted: 0,
            break_glass: HashMap::new(),
            break_glass_uncounted: 0,
            mode_changes: Vec::new(),
            mode_changes_uncounted: 0,
        }
    }

    /// One line of input, without its line end. Blank lines are skipped. Anything before the
    /// first `{` is ignored, so that `kubectl logs --prefix` and CRI log file lines
    /// (`TIME stdout F {...}`) are read as they come.
    pub fn line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines.read += 1;
        let Some(start) = line.iter().position(|&byte| byte == b'{') else {
            self.lines.malformed += 1;
            return;
        };
        let Ok(record) = serde_json::from_slice::<RecordLine>(&line[start..]) else {
            self.lines.malformed += 1;
            return;
        };
        if record.time.is_none() && record.mode.is_none() && record.result.is_none() {
            self.lines.not_records += 1;
            return;
        }
        let (Some(time), Some(mode), Some(verdict)) = (
            record
                .time
                .as_deref()
                .and_then(|time| time.parse::<Timestamp>().ok()),
            record.mode.as_deref(),
            record.result.as_deref().and_then(verdict_of),
        ) else {
            self.lines.malformed += 1;
            return;
        };
        if !self.window.contains(time) {
            self.lines.outside_window += 1;
            return;
        }
        self.lines.records += 1;
        self.first_record = Some(self.first_record.map_or(time, |first| first.min(time)));
        self.last_record = Some(self.last_record.map_or(time, |last| last.max(time)));
        if record.dry_run {
            self.lines.dry_runs += 1;
        } else if record.previous_mode.is_some() {
            self.mode_change(&record, time, mode, verdict);
        } else {
            self.image_decision(&record, time, verdict);
        }
    }

    /// A line longer than [`MAX_LINE_BYTES`], which the reader did not keep.
    pub fn line_too_long(&mut self) {
        self.lines.read += 1;
        self.lines.too_long += 1;
    }

    fn image_decision(&mut self, record: &RecordLine, time: Timestamp, verdict: Verdict) {
        let has_rule = record.rule.is_some();
        self.overall.add(verdict, has_rule);
        self.by_environment
            .tally(record.environment.as_deref())
            .add(verdict, has_rule);
        self.by_namespace
            .tally(record.namespace.as_deref())
            .add(verdict, has_rule);
        self.by_rule
            .tally(record.rule.as_deref())
            .add(verdict, has_rule);
        let proven_or_exempt =
            verdict == Verdict::Exempt || (verdict == Verdict::Allowed && has_rule);
        if !proven_or_exempt {
            self.reason(record);
        }
        if verdict == Verdict::BreakGlass {
            self.break_glass_use(record, time);
        }
    }

    fn reason(&mut self, record: &RecordLine) {
        let reason = normalise_reason(&record.reason);
        if let Some(counted) = self.reasons.get_mut(&reason) {
            counted.count += 1;
        } else if self.reasons.len() < self.limits.reasons {
            self.reasons.insert(
                reason.clone(),
                ReasonCount {
                    reason,
                    count: 1,
                    example_namespace: record.namespace.as_deref().map(bounded_key),
                    example_image: bounded_key(&record.image),
                },
            );
        } else {
            self.reasons_uncounted += 1;
        }
    }

    fn break_glass_use(&mut self, record: &RecordLine, time: Timestamp) {
        use std::collections::hash_map::Entry;
        let bounded = |value: &Option<String>| value.as_deref().map(bounded_key);
        let key = (
            bounded(&record.namespace),
            bounded(&record.break_glass_ticket),
            bounded(&record.break_glass_approved_by),
        );
        let full = self.break_glass.len() >= self.limits.break_glass;
        let used = match self.break_glass.entry(key) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(_) if full => {
                self.break_glass_uncounted += 1;
                return;
            }
            Entry::Vacant(new) => {
                let (namespace, ticket, approved_by) = new.key().clone();
                new.insert(BreakGlassUse {
                    namespace,
                    ticket,
                    approved_by,
                    reason: record.break_glass_reason.as_deref().map(bounded_reason),
                    expires: None,
                    first_use: time,
                    last_use: time,
                    admissions: 0,
                    images: Vec::new(),
                    more_images: false,
                })
            }
        };
        used.first_use = used.first_use.min(time);
        used.last_use = used.last_use.max(time);
        used.admissions += 1;
        if used.expires.is_none() {
            used.expires = bounded(&record.break_glass_expires);
        }
        let image = bounded_key(&record.image);
        if !used.images.contains(&image) {
            if used.images.len() < self.limits.images_per_break_glass {
                used.images.push(image);
            } else {
                used.more_images = true;
            }
        }
    }

    fn mode_change(&mut self, record: &RecordLine, time: Timestamp, mode: &str, verdict: Verdict) {
        if self.mode_changes.len() >= self.limits.mode_changes {
            self.mode_changes_uncounted += 1;
            return;
        }
        let bounded = |value: &Option<String>| value.as_deref().map(bounded_key);
        self.mode_changes.push(ModeChange {
            time,
            namespace: bounded(&record.namespace),
            from_mode: bounded(&record.previous_mode),
            from_environment: bounded(&record.previous_environment),
            to_mode: bounded_key(mode),
            to_environment: bounded(&record.environment),
            requested_by: bounded(&record.requested_by),
            result: verdict.as_str(),
            reason: bounded_reason(&record.reason),
        });
    }

    /// The summary, with at most `top` reasons.
    pub fn finish(self, top: usize) -> Summary {
        let mut overall = self.overall;
        overall.finish();
        let distinct = self.reasons.len();
        let mut reasons: Vec<ReasonCount> = self.reasons.into_values().collect();
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        reasons.truncate(top);
        let mut break_glass: Vec<BreakGlassUse> = self.break_glass.into_values().collect();
        break_glass.sort_by(|a, b| {
            (a.first_use, &a.namespace, &a.ticket).cmp(&(b.first_use, &b.namespace, &b.ticket))
        });
        let mut mode_changes = self.mode_changes;
        mode_changes.sort_by_key(|change| change.time);
        Summary {
            window: self.window,
            first_record: self.first_record,
            last_record: self.last_record,
            lines: self.lines,
            overall,
            by_environment: self.by_environment.finish(),
            by_namespace: self.by_namespace.finish(),
            by_rule: self.by_rule.finish(),
            reasons: ReasonTable {
                top: reasons,
                distinct,
                uncounted_records: self.reasons_uncounted,
            },
            break_glass,
            break_glass_uncounted: self.break_glass_uncounted,
            mode_changes,
            mode_changes_uncounted: self.mode_changes_uncounted,
        }
    }
}

/// Summarises `lines` (each without its line end) inside `window`.
pub fn summarise<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    window: Window,
    limits: Limits,
    top: usize,
) -> Summary {
    let mut summariser = Summariser::new(window, limits);
    for line in lines {
        summariser.line(line);
    }
    summariser.finish(top)
}

fn verdict_of(result: &str) -> Option<Verdict> {
    VERDICTS
        .into_iter()
        .find(|verdict| verdict.as_str() == result)
}

fn bounded_key(text: &str) -> String {
    crate::check::bounded(text, MAX_KEY_BYTES)
}

fn bounded_reason(text: &str) -> String {
    crate::check::bounded(text, MAX_REASON_BYTES)
}

/// The reason with what differs between images of one cause elided: digests
/// (`sha256:<hex>` → `sha256:…`) and other long hex strings (commits, bundle digests).
fn normalise_reason(reason: &str) -> String {
    const LONG_HEX: usize = 32;
    let mut normal = String::with_capacity(reason.len().min(MAX_REASON_BYTES));
    let mut rest = reason;
    while let Some(start) = rest.find(|c: char| c.is_ascii_hexdigit()) {
        let (before, from) = rest.split_at(start);
        normal.push_str(before);
        let run = from
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(from.len());
        let after = &from[run..];
        let standalone = !before.ends_with(|c: char| c.is_alphanumeric())
            && !after.starts_with(|c: char| c.is_alphanumeric());
        if run >= LONG_HEX && standalone {
            normal.push('…');
        } else {
            normal.push_str(&from[..run]);
        }
        rest = after;
        if normal.len() > MAX_REASON_BYTES {
            break;
        }
    }
    normal.push_str(rest);
    bounded_reason(&normal)
}

#[cfg(test)]
mod tests;
