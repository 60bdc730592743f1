//! The largest policy the limits allow must fit the webhook's memory limit with room to
//! spare: the chart gives the container 512 MiB, and a reload holds two policies at once.
//!
//! Measured as resident memory (VmRSS in /proc/self/status) of a child process that does
//! nothing but load the policy: this test runs itself again with an environment variable
//! naming the shape to load, so no other test's memory is counted.

use std::process::Command;

use provenance_gate::policy::{Policy, MAX_GLOBS, MAX_POLICY_BYTES, MAX_RULES};
use provenance_gate_testkit::large_policy::{generated_policy, resident_kib};

/// What one loaded policy may add to the process. Two of them, plus the webhook's caches
/// and buffers, must stay well below the chart's 512 MiB.
const LIMIT_MIB: u64 = 128;
const CHILD: &str = "PROVENANCE_GATE_POLICY_MEMORY_CHILD";
const TEST_NAME: &str = "the_largest_allowed_policy_fits_the_memory_limit";

fn largest(rules: usize) -> String {
    generated_policy(rules, MAX_GLOBS)
}

/// In the child: loads the shape and prints what it added.
fn load_and_report(rules: usize) {
    let source = largest(rules);
    assert!(source.len() <= MAX_POLICY_BYTES, "{} bytes", source.len());
    let before = resident_kib();
    let policy = Policy::from_yaml(&source).expect("the largest allowed policy loads");
    let added = resident_kib().saturating_sub(before);
    assert!(policy.rules().len() == rules);
    println!("rss-added-kib={added}");
}

#[test]
fn the_largest_allowed_policy_fits_the_memory_limit() {
    if let Ok(rules) = std::env::var(CHILD) {
        load_and_report(rules.parse().expect("a rule count"));
        return;
    }
    for rules in [MAX_RULES, 20] {
        let output = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, rules.to_string())
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let added: u64 = stdout
            .lines()
            .find_map(|line| line.split_once("rss-added-kib="))
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no measurement in {stdout}"));
        println!("{rules} rules, {MAX_GLOBS} globs: {} MiB", added / 1024);
        assert!(
            added / 1024 < LIMIT_MIB,
            "{rules} rules: the largest allowed policy adds {} MiB, more than {LIMIT_MIB} MiB",
            added / 1024
        );
    }
}

#[test]
fn one_glob_more_is_refused_before_anything_is_compiled() {
    let over = format!(
        "{}  - {{name: extra, owners: [{{name: a}}], images: [\"ghcr.io/b/*\"]}}\n",
        largest(20).replace("\n- {", "\n  - {")
    );
    let error = Policy::from_yaml(&over).expect_err("over the limit");
    assert_eq!(
        error.to_string(),
        format!("policy has {} globs (exemptImages, and rules' images, refs and workflows), more than the limit of {MAX_GLOBS}", MAX_GLOBS + 1)
    );
}
