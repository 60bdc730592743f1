//! "What would break if I enforce today?": the images of every running Pod, checked against
//! the policy and judged as enforce mode would judge them, per namespace and environment.
//!
//! The flow mirrors one admission, for many Pods at once: [`Inventory`] (what runs, from
//! `cluster::workloads`), one check per distinct image (`check`, the webhook's pipeline and
//! caches), then [`assess`], a pure function that asks `decision::decide` twice per image —
//! once as the namespace's mode and break-glass stand, once as enforce mode without
//! break-glass — and lists what enforce would refuse and which Pods still run on a
//! break-glass whose window is over. `provenance-gate audit` prints the result once;
//! `serve --audit-interval` repeats it and exports the counts as metrics.

pub mod metrics;
pub mod scan;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use crate::check::ImageOutcome;
use crate::cluster::NamespaceInfo;
use crate::decision::breakglass::{self, BreakGlassState};
use crate::decision::{decide, BreakGlass, Subject, Verdict};
use crate::policy::{Mode, Policy};

/// Distinct images checked in one audit at most; the rest are listed as not checked.
pub const DEFAULT_MAX_IMAGES: usize = 2_000;
/// Running Pods read in one audit at most (a list is paged; the rest are counted as not read).
pub const DEFAULT_MAX_PODS: usize = 50_000;
/// Images checked at once: enough to hide registry latency, few enough not to hammer one.
pub const CHECK_CONCURRENCY: usize = 8;
/// Findings listed per namespace at most (counts stay exact).
pub const MAX_FINDINGS_PER_NAMESPACE: usize = 200;

/// One container (or image volume) of a running Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningImage {
    /// The container's name, or `volume:NAME` for an image volume.
    pub container: String,
    /// The reference as the Pod spec names it.
    pub image: String,
}

/// A Pod that has not finished, as the audit sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    /// The controlling owner as `Kind/name` (e.g. `ReplicaSet/api-7d9c`), if any.
    pub owner: Option<String>,
    pub created: Option<Timestamp>,
    pub images: Vec<RunningImage>,
}

/// What runs in the cluster, as listed.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub namespaces: Vec<NamespaceInfo>,
    pub pods: Vec<PodFacts>,
    /// Pods left unread because the list exceeded its bound.
    pub pods_not_read: usize,
}

impl Inventory {
    /// The distinct image references, in a stable order, at most `max`; and how many more
    /// there were.
    pub fn distinct_images(&self, max: usize) -> (Vec<String>, usize) {
        let all: BTreeSet<&str> = self
            .pods
            .iter()
            .flat_map(|pod| pod.images.iter().map(|image| image.image.as_str()))
            .collect();
        let skipped = all.len().saturating_sub(max);
        (
            all.into_iter().take(max).map(str::to_owned).collect(),
            skipped,
        )
    }
}

/// The audit's checks: each image's outcome, for all its namespaces, or per environment where
/// its rule narrows itself per environment (the outcome then depends on where it runs).
#[derive(Debug, Clone, Default)]
pub struct ImageOutcomes {
    everywhere: BTreeMap<String, ImageOutcome>,
    /// By (environment, image); `None`: namespaces no environment selects.
    per_environment: BTreeMap<(Option<String>, String), ImageOutcome>,
}

impl ImageOutcomes {
    /// `image`'s outcome in every environment.
    pub fn insert_everywhere(&mut self, image: String, outcome: ImageOutcome) {
        self.everywhere.insert(image, outcome);
    }

    /// `image`'s outcome in the namespaces of `environment`.
    pub fn insert_in(&mut self, environment: Option<String>, image: String, outcome: ImageOutcome) {
        self.per_environment.insert((environment, image), outcome);
    }

    fn get(&self, environment: Option<&str>, image: &str) -> Option<&ImageOutcome> {
        self.per_environment
            .get(&(environment.map(str::to_owned), image.to_owned()))
            .or_else(|| self.everywhere.get(image))
    }

    /// Distinct images checked.
    pub fn images(&self) -> usize {
        let per_environment: BTreeSet<&str> = self
            .per_environment
            .keys()
            .map(|(_, image)| image.as_str())
            .filter(|image| !self.everywhere.contains_key(*image))
            .collect();
        self.everywhere.len() + per_environment.len()
    }
}

impl From<BTreeMap<String, ImageOutcome>> for ImageOutcomes {
    fn from(everywhere: BTreeMap<String, ImageOutcome>) -> Self {
        ImageOutcomes {
            everywhere,
            per_environment: BTreeMap::new(),
        }
    }
}

/// One image of one Pod that enforce mode would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub pod: String,
    pub owner: Option<String>,
    pub container: String,
    pub image: String,
    /// What the webhook does with this image today, in the namespace's mode.
    pub today: Verdict,
    /// Why enforce mode would refuse it (`no_attestation`, `policy_violation`, …,
    /// `not_checked` when the audit's image bound left it out).
    pub reason_code: &'static str,
    pub reason: String,
}

/// A Pod still running on unproven images after its namespace's break-glass expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiredBreakGlass {
    pub pod: String,
    pub owner: Option<String>,
    pub ticket: String,
    pub expired_at: Timestamp,
    /// The unproven images of the Pod.
    pub images: Vec<String>,
}

/// One namespace's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceAudit {
    pub namespace: String,
    pub environment: Option<String>,
    /// The namespace's mode today.
    pub mode: Mode,
    /// The namespace's break-glass as it stands (`absent`, `active`, `expired`, `malformed`).
    pub break_glass: &'static str,
    pub pods: usize,
    /// Pods with at least one image that enforce mode would refuse.
    pub pods_denied_under_enforce: usize,
    pub findings: Vec<Finding>,
    /// Findings beyond [`MAX_FINDINGS_PER_NAMESPACE`], counted but not listed.
    pub findings_not_listed: usize,
    pub expired_break_glass: Vec<ExpiredBreakGlass>,
}

/// Counts per environment (`None`: namespaces no environment selects).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentTotals {
    pub namespaces: usize,
    pub pods: usize,
    pub pods_denied_under_enforce: usize,
    pub pods_on_expired_break_glass: usize,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub generated_at: Timestamp,
    pub pods: usize,
    pub images_checked: usize,
    /// Distinct images beyond the audit's bound: their Pods are listed as `not_checked`.
    pub images_not_checked: usize,
    pub pods_not_read: usize,
    pub pods_denied_under_enforce: usize,
    pub pods_on_expired_break_glass: usize,
    /// Keyed by environment name; `""` for namespaces no environment selects.
    pub environments: BTreeMap<String, EnvironmentTotals>,
    /// Only namespaces with running Pods, by name.
    pub namespaces: Vec<NamespaceAudit>,
}

impl AuditReport {
    /// Whether enforcing everywhere would refuse nothing that runs today (and nothing was
    /// left unchecked).
    pub fn clean(&self) -> bool {
        self.pods_denied_under_enforce == 0
            && self.images_not_checked == 0
            && self.pods_not_read == 0
    }
}

/// Judges every running image as enforce mode would, next to what the namespace's mode does
/// today. `outcomes` holds the checked images by reference (and environment); an image
/// missing from it was left out by the audit's bound and counts against enforcing. Pure:
/// `now` is the clock.
pub fn assess(
    inventory: &Inventory,
    outcomes: &ImageOutcomes,
    images_not_checked: usize,
    policy: &Policy,
    now: Timestamp,
) -> AuditReport {
    let namespaces: BTreeMap<&str, &NamespaceInfo> = inventory
        .namespaces
        .iter()
        .map(|namespace| (namespace.name.as_str(), namespace))
        .collect();
    let mut pods_by_namespace: BTreeMap<&str, Vec<&PodFacts>> = BTreeMap::new();
    for pod in &inventory.pods {
        pods_by_namespace
            .entry(pod.namespace.as_str())
            .or_default()
            .push(pod);
    }
    let mut report = AuditReport {
        generated_at: now,
        pods: inventory.pods.len(),
        images_checked: outcomes.images(),
        images_not_checked,
        pods_not_read: inventory.pods_not_read,
        pods_denied_under_enforce: 0,
        pods_on_expired_break_glass: 0,
        environments: BTreeMap::new(),
        namespaces: Vec::new(),
    };
    for (name, pods) in pods_by_namespace {
        let namespace = namespaces.get(name).copied();
        let audit = assess_namespace(name, namespace, &pods, outcomes, policy, now);
        let totals = report
            .environments
            .entry(audit.environment.clone().unwrap_or_default())
            .or_default();
        totals.namespaces += 1;
        totals.pods += audit.pods;
        totals.pods_denied_under_enforce += audit.pods_denied_under_enforce;
        totals.pods_on_expired_break_glass += audit.expired_break_glass.len();
        report.pods_denied_under_enforce += audit.pods_denied_under_enforce;
        report.pods_on_expired_break_glass += audit.expired_break_glass.len();
        report.namespaces.push(audit);
    }
    report
}

fn assess_namespace(
    name: &str,
    namespace: Option<&NamespaceInfo>,
    pods: &[&PodFacts],
    outcomes: &ImageOutcomes,
    policy: &Policy,
    now: Timestamp,
) -> NamespaceAudit {
    // A namespace the list did not return (deleted meanwhile) is judged like the webhook
    // judges an unknown one: no labels, so the policy's default mode, and no break-glass.
    let empty = BTreeMap::new();
    let labels = namespace.map_or(&empty, |namespace| &namespace.labels);
    let annotations = namespace.map_or(&empty, |namespace| &namespace.annotations);
    let (environment, mode) = policy.mode_for_namespace(labels);
    let break_glass = match policy.break_glass() {
        Some(config) => breakglass::in_force(annotations, config, now),
        None => BreakGlassState::Absent,
    };
    let mut audit = NamespaceAudit {
        namespace: name.to_owned(),
        environment: environment.map(str::to_owned),
        mode,
        break_glass: break_glass_label(&break_glass),
        pods: pods.len(),
        pods_denied_under_enforce: 0,
        findings: Vec::new(),
        findings_not_listed: 0,
        expired_break_glass: Vec::new(),
    };
    for pod in pods {
        let mut unproven = Vec::new();
        for running in &pod.images {
            let finding = match outcomes.get(environment, &running.image) {
                Some(outcome) => {
                    let enforced = decide(
                        Subject::settled(outcome),
                        Mode::Enforce,
                        BreakGlass::Inactive,
                    );
                    if enforced.admits() {
                        continue;
                    }
                    let today = decide(Subject::settled(outcome), mode, (&break_glass).into());
                    Finding {
                        pod: pod.name.clone(),
                        owner: pod.owner.clone(),
                        container: running.container.clone(),
                        image: running.image.clone(),
                        today: today.verdict,
                        reason_code: enforced.reason_code,
                        reason: enforced.reason,
                    }
                }
                None => Finding {
                    pod: pod.name.clone(),
                    owner: pod.owner.clone(),
                    container: running.container.clone(),
                    image: running.image.clone(),
                    today: Verdict::WouldDeny,
                    reason_code: "not_checked",
                    reason: "not checked: the audit checks a bounded number of distinct images \
                             (raise --max-images)"
                        .into(),
                },
            };
            unproven.push(running.image.clone());
            if audit.findings.len() < MAX_FINDINGS_PER_NAMESPACE {
                audit.findings.push(finding);
            } else {
                audit.findings_not_listed += 1;
            }
        }
        if unproven.is_empty() {
            continue;
        }
        audit.pods_denied_under_enforce += 1;
        // Only a Pod created before the window closed can have been admitted by it.
        if let BreakGlassState::Expired { ticket, expired_at } = &break_glass {
            if pod.created.is_none_or(|created| created < *expired_at) {
                audit.expired_break_glass.push(ExpiredBreakGlass {
                    pod: pod.name.clone(),
                    owner: pod.owner.clone(),
                    ticket: ticket.clone(),
                    expired_at: *expired_at,
                    images: unproven,
                });
            }
        }
    }
    audit
}

fn break_glass_label(state: &BreakGlassState) -> &'static str {
    match state {
        BreakGlassState::Absent => "absent",
        BreakGlassState::Active { .. } => "active",
        BreakGlassState::Expired { .. } => "expired",
        BreakGlassState::Malformed { .. } => "malformed",
    }
}

/// The report for a person: per namespace what enforce would refuse, then the Pods on an
/// expired break-glass, then the totals per environment.
pub fn render_text(report: &AuditReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for namespace in &report.namespaces {
        if namespace.findings.is_empty() && namespace.expired_break_glass.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "namespace {} (environment {}, mode {}, break-glass {}): {} of {} pods would be denied under enforce",
            namespace.namespace,
            namespace.environment.as_deref().unwrap_or("-"),
            namespace.mode.as_str(),
            namespace.break_glass,
            namespace.pods_denied_under_enforce,
            namespace.pods,
        );
        for finding in &namespace.findings {
            let _ = writeln!(
                out,
                "  pod {}{} container {}: {} ({} today): {}: {}",
                finding.pod,
                finding
                    .owner
                    .as_deref()
                    .map(|owner| format!(" ({owner})"))
                    .unwrap_or_default(),
                finding.container,
                finding.image,
                finding.today.as_str(),
                finding.reason_code,
                finding.reason,
            );
        }
        if namespace.findings_not_listed > 0 {
            let _ = writeln!(out, "  … and {} more", namespace.findings_not_listed);
        }
        for expired in &namespace.expired_break_glass {
            let _ = writeln!(
                out,
                "  pod {} still runs unproven images admitted under break-glass {} (expired {}): {}",
                expired.pod,
                expired.ticket,
                expired.expired_at,
                expired.images.join(", "),
            );
        }
    }
    for (environment, totals) in &report.environments {
        let _ = writeln!(
            out,
            "environment {}: {} namespaces, {} pods, {} would be denied under enforce, {} on an expired break-glass",
            if environment.is_empty() { "-" } else { environment },
            totals.namespaces,
            totals.pods,
            totals.pods_denied_under_enforce,
            totals.pods_on_expired_break_glass,
        );
    }
    let _ = writeln!(
        out,
        "{} pods, {} images checked: {} pods would be denied under enforce, {} run on an expired break-glass{}{}",
        report.pods,
        report.images_checked,
        report.pods_denied_under_enforce,
        report.pods_on_expired_break_glass,
        if report.images_not_checked > 0 {
            format!("; {} images not checked (bound reached)", report.images_not_checked)
        } else {
            String::new()
        },
        if report.pods_not_read > 0 {
            format!("; {} pods not read (bound reached)", report.pods_not_read)
        } else {
            String::new()
        },
    );
    out
}

#[cfg(test)]
mod tests;
