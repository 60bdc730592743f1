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
use provenance_gate_testkit::large_policy::{generated_policy, resident_kib};

fn main() {
    println!("case                      bytes     load        RSS added");
    for (rules, globs) in [
        (10, 1000),
        (50, 10_000),
        (100, 20_000),
        (1000, 20_000),
        (50, 50_000),
    ] {
        let source = generated_policy(rules, globs);
        let before = resident_kib();
        let started = Instant::now();
        let result = Policy::from_yaml(&source);
        let elapsed = started.elapsed();
        let added = resident_kib().saturating_sub(before);
        let outcome = match &result {
            Ok(_) => format!("{:>6} MiB", added / 1024),
            Err(error) => format!(
                "refused: {}",
                error.to_string().lines().next().unwrap_or("")
            ),
        };
        println!(
            "{globs:>5} globs ({rules:>4} rules)  {:>8}  {:>8.2?}  {outcome}",
            source.len(),
            elapsed
        );
        drop(result);
    }
}
