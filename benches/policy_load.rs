//! Memory and time to load large policies: `cargo bench --bench policy_load` (or, faster to
//! build, `cargo test --bench policy_load`, in the unoptimised test profile).
//!
//! Each case is generated, loaded once, and reported as the resident memory the loaded
//! policy adds (VmRSS from /proc/self/status, after minus before, the policy still alive)
//! and the time `Policy::from_yaml` took. One case per process run would be cleaner for
//! RSS; freed memory is mostly returned to the allocator, not to the system, so the cases
//! run from the smallest up, and each is measured against the resident size before it.

use std::time::Instant;

use provenance_gate::policy::Policy;

/// `rules` rules of `per_rule` image globs each, every glob with a `*` inside a segment
/// (so none is a plain literal or prefix), in flow style to fit the most into the bytes.
fn generated(rules: usize, per_rule: usize) -> String {
    let mut source = String::from("version: 1\nrules:\n");
    for rule in 0..rules {
        source.push_str(&format!(
            "- {{name: r{rule}, owners: [{{name: a, id: \"1\"}}], images: ["
        ));
        for glob in 0..per_rule {
            if glob > 0 {
                source.push(',');
            }
            source.push_str(&format!("\"ghcr.io/a/{}*\"", rule * per_rule + glob));
        }
        source.push_str("]}\n");
    }
    source
}

fn resident_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    println!("case                      bytes     load        RSS added");
    for (rules, per_rule) in [(10, 100), (50, 200), (100, 200), (50, 1000)] {
        let source = generated(rules, per_rule);
        let before = resident_kib("VmRSS:");
        let started = Instant::now();
        let result = Policy::from_yaml(&source);
        let elapsed = started.elapsed();
        let added = resident_kib("VmRSS:").saturating_sub(before);
        let outcome = match &result {
            Ok(_) => format!("{:>6} MiB", added / 1024),
            Err(error) => format!(
                "refused: {}",
                error.to_string().lines().next().unwrap_or("")
            ),
        };
        println!(
            "{:>5} globs ({rules:>3} rules)  {:>8}  {:>8.2?}  {outcome}",
            rules * per_rule,
            source.len(),
            elapsed
        );
        drop(result);
    }
}
