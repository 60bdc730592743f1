//! Large generated policies and the resident memory they take, for the memory test and the
//! load bench.

/// A policy of `rules` rules sharing `globs` globs: each rule's own refs and workflows glob,
/// the rest image globs. Every glob has a `*` inside a segment, so that none is a cheap
/// literal or prefix match, and no two rules' lists are alike (so none is shared). Flow
/// style, to fit the most into the bytes.
pub fn generated_policy(rules: usize, globs: usize) -> String {
    let per_rule = (globs / rules).saturating_sub(2);
    let mut source = String::from("version: 1\nrules:\n");
    for rule in 0..rules {
        source.push_str(&format!(
            "- {{name: r{rule}, owners: [{{name: a, id: \"1\"}}], refs: [\"refs/tags/v{rule}.*\"], workflows: [\".github/workflows/r{rule}*.yml\"], images: ["
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

/// This process's resident memory (VmRSS of /proc/self/status), in KiB.
pub fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in kB")
}
