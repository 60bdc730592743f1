//! The report as text for a person.

use std::fmt::Write as _;

use super::{GroupTable, Summary, Tally};

pub(super) fn render(summary: &Summary) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, summary);
    out
}

fn write_summary(out: &mut String, summary: &Summary) -> std::fmt::Result {
    let open =
        |time: Option<jiff::Timestamp>| time.map_or("…".to_owned(), |time| time.to_string());
    writeln!(
        out,
        "Decision records from {} to {}",
        open(summary.window.since),
        open(summary.window.until)
    )?;
    if let (Some(first), Some(last)) = (summary.first_record, summary.last_record) {
        writeln!(out, "  first record {first}, last record {last}")?;
    }
    let lines = &summary.lines;
    writeln!(
        out,
        "  {} lines: {} records in the window ({} dry runs, not counted below), {} outside it, \
         {} not decision records, {} malformed, {} too long",
        lines.read,
        lines.records,
        lines.dry_runs,
        lines.outside_window,
        lines.not_records,
        lines.malformed,
        lines.too_long
    )?;

    writeln!(out)?;
    writeln!(
        out,
        "Pass rate: verified / judged (exempt images are not judged; images admitted without proof are judged, not passed)"
    )?;
    tally_line(out, "all images", &summary.overall)?;
    for (title, table) in [
        ("By environment", &summary.by_environment),
        ("By namespace", &summary.by_namespace),
        ("By rule", &summary.by_rule),
    ] {
        group_table(out, title, table)?;
    }

    writeln!(out)?;
    let reasons = &summary.reasons;
    writeln!(
        out,
        "Why images were not proven (top {} of {} distinct reasons{})",
        reasons.top.len(),
        reasons.distinct,
        note_if_any(
            reasons.uncounted_records,
            "records with further reasons not counted"
        )
    )?;
    for reason in &reasons.top {
        writeln!(
            out,
            "  {:>6}  {}\n          e.g. {} in namespace {}",
            reason.count,
            reason.reason,
            reason.example_image,
            reason.example_namespace.as_deref().unwrap_or("(none)")
        )?;
    }

    writeln!(out)?;
    writeln!(
        out,
        "Break-glass use, for post-incident review ({} uses{})",
        summary.break_glass.len(),
        note_if_any(
            summary.break_glass_uncounted,
            "admissions of further uses not listed"
        )
    )?;
    let or_unknown = |value: &Option<String>| value.clone().unwrap_or_else(|| "(unknown)".into());
    for used in &summary.break_glass {
        writeln!(
            out,
            "  namespace {}  ticket {}  approved by {}  expires {}",
            or_unknown(&used.namespace),
            or_unknown(&used.ticket),
            or_unknown(&used.approved_by),
            used.expires.as_deref().unwrap_or("(not in the records)")
        )?;
        writeln!(
            out,
            "    {} admissions from {} to {}; reason: {}",
            used.admissions,
            used.first_use,
            used.last_use,
            or_unknown(&used.reason)
        )?;
        writeln!(
            out,
            "    images: {}{}",
            used.images.join(", "),
            if used.more_images { ", …" } else { "" }
        )?;
    }

    writeln!(out)?;
    writeln!(
        out,
        "Namespace mode changes ({}{})",
        summary.mode_changes.len(),
        note_if_any(summary.mode_changes_uncounted, "more not listed")
    )?;
    for change in &summary.mode_changes {
        writeln!(
            out,
            "  {} namespace {}: {} ({}) -> {} ({}) requested by {}: {}",
            change.time,
            or_unknown(&change.namespace),
            or_unknown(&change.from_mode),
            change
                .from_environment
                .as_deref()
                .unwrap_or("no environment"),
            change.to_mode,
            change.to_environment.as_deref().unwrap_or("no environment"),
            or_unknown(&change.requested_by),
            change.result
        )?;
    }
    Ok(())
}

/// `"; COUNT WHAT"` when `count` is not zero: records past a limit.
fn note_if_any(count: u64, what: &str) -> String {
    if count > 0 {
        format!("; {count} {what}")
    } else {
        String::new()
    }
}

fn group_table(out: &mut String, title: &str, table: &GroupTable) -> std::fmt::Result {
    writeln!(out, "{title}")?;
    for group in &table.groups {
        tally_line(out, &group.key, &group.tally)?;
    }
    if let Some(other) = &table.other {
        tally_line(out, "(other: past the key limit)", other)?;
    }
    Ok(())
}

fn tally_line(out: &mut String, key: &str, tally: &Tally) -> std::fmt::Result {
    let rate = tally
        .pass_rate
        .map_or("     -".to_owned(), |rate| format!("{:5.1}%", rate * 100.0));
    writeln!(
        out,
        "  {key:<24} {rate} {:>6}/{:<6} denied {}, would_deny {}, warned {}, break_glass {}, allowed unverified {}; exempt {}",
        tally.proven,
        tally.judged,
        tally.denied,
        tally.would_deny,
        tally.warned,
        tally.break_glass,
        tally.allowed_unverified,
        tally.exempt
    )
}
