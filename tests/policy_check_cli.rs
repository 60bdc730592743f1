//! `provenance-gate policy check` as operators run it: exit status, warnings and errors with
//! field path and line, `--strict`, and the JSON form.

use std::process::Command;

/// Exit code, stdout and stderr of `policy check` on `policy` with `extra` arguments.
fn policy_check(policy: &str, extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).expect("write policy");
    let output = Command::new(env!("CARGO_BIN_EXE_provenance-gate"))
        .args(["policy", "check"])
        .arg(&path)
        .args(extra)
        .output()
        .expect("the binary runs");
    let text = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes).replace(&path.display().to_string(), "policy.yaml")
    };
    (
        output.status.code().expect("exit code"),
        text(&output.stdout),
        text(&output.stderr),
    )
}

const WITH_WARNINGS: &str = r#"version: 1
rules:
  - name: acme
    images: ["ghcr.io/acme/**"]
    owners: [{name: acme}]
    triggers: [push, workflow_run]
  - name: api
    images: ["ghcr.io/acme/api"]
    repositories: [{name: acme/api, id: "804070735"}]
"#;

#[test]
fn warnings_pass_unless_strict() {
    let (code, stdout, stderr) = policy_check(WITH_WARNINGS, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "policy.yaml: valid policy with 2 rules, 3 warnings\n"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(
            "policy.yaml: warning: line 5 column 14: rules[0].owners[0]: owner `acme` has no `id`"
        ),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(
            "policy.yaml: warning: line 6 column 22: rules[0].triggers[1]: trigger `workflow_run`"
        ),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(
            "policy.yaml: warning: line 7 column 5: rules[1]: rule `api` is never tried"
        ),
        "{stderr}"
    );

    let (code, _, stderr) = policy_check(WITH_WARNINGS, &["--strict"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 3, "{stderr}");

    let (code, stdout, _) = policy_check(WITH_WARNINGS, &["--output", "json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["valid"], true);
    assert_eq!(json["warnings"][1]["path"], "rules[0].triggers[1]");
    assert_eq!(json["warnings"][1]["location"]["line"], 6);
}

#[test]
fn a_careful_policy_passes_strict() {
    let careful = WITH_WARNINGS
        .replace("{name: acme}", "{name: acme, id: \"16248153\"}")
        .replace(", workflow_run", "")
        .replace("\"ghcr.io/acme/**\"", "\"ghcr.io/acme/web\"");
    let (code, stdout, stderr) = policy_check(&careful, &["--strict"]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    assert_eq!(
        stdout,
        "policy.yaml: valid policy with 2 rules, 0 warnings\n"
    );
}

#[test]
fn every_impossible_value_is_an_error_at_once() {
    let policy = r#"version: 1
environments:
  - {name: p, namespaceSelector: {matchLabels: {env: production}}, mode: enforce}
rules:
  - name: acme
    images: ["ghcr.io/acme/**"]
    owners: [{name: acme, id: "016248153"}]
    signerWorkflows: ["acme/b/.github/workflows/build.yml@v2"]
    refs: ["refs/heads/..", "main"]
    workflows: [".github/workflows/ci/build.yml"]
    triggers: [push, pushed]
"#;
    let (code, stdout, stderr) = policy_check(policy, &["--strict"]);
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "policy.yaml: 6 problems in policy:", "{stderr}");
    let paths = [
        "line 7 column 31: rules[0].owners[0].id",
        "line 8 column 23: rules[0].signerWorkflows[0]",
        "line 9 column 12: rules[0].refs[0]",
        "line 9 column 29: rules[0].refs[1]",
        "line 10 column 17: rules[0].workflows[0]",
        "line 11 column 22: rules[0].triggers[1]",
    ];
    for (line, path) in lines[1..].iter().zip(paths) {
        assert!(line.trim_start().starts_with(path), "{path}\n{stderr}");
    }
}

#[test]
fn repeated_keys_are_errors() {
    let policy = "version: 1\nenvironments:\n  - name: p\n    namespaceSelector: {matchLabels: {env: production, env: dev}}\n    mode: enforce\n";
    let (code, _, stderr) = policy_check(policy, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("line 4 column 61: environments[0].namespaceSelector.matchLabels.env: duplicate key `env`"),
        "{stderr}"
    );
}

#[test]
fn help_documents_exit_status_and_strict() {
    let output = Command::new(env!("CARGO_BIN_EXE_provenance-gate"))
        .args(["policy", "check", "--help"])
        .output()
        .expect("the binary runs");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--strict"), "{help}");
    assert!(
        help.contains("Exit status: 0 the policy is valid"),
        "{help}"
    );
}

/// Before: the first shape problem (here the string where a list belongs) was the only one
/// reported, and each fix revealed the next.
#[test]
fn every_shape_error_is_reported_at_once() {
    let policy = "version: 1\nrules:\n  - name: acme\n    images: ghcr.io/acme/*\n    owners: [{name: acme}]\n  - name: web\n    image: [\"ghcr.io/acme/web\"]\n    owners: [{name: acme}]\nbogus: true\n";
    let (code, stdout, stderr) = policy_check(policy, &[]);
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "policy.yaml: 4 problems in policy:", "{stderr}");
    let expected = [
        "line 4 column 13: rules[0].images: invalid type: string \"ghcr.io/acme/*\", expected a sequence",
        "line 6 column 5: rules[1]: missing field `images`",
        "line 7 column 12: rules[1].image: unknown field `image`, expected one of",
        "line 9 column 8: bogus: unknown field `bogus`, expected one of",
    ];
    assert_eq!(lines.len(), 1 + expected.len(), "{stderr}");
    for (line, want) in lines[1..].iter().zip(expected) {
        assert!(line.trim_start().starts_with(want), "{want}\n{stderr}");
    }
    let (code, stdout, _) = policy_check(policy, &["--output", "json"]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["issues"].as_array().map(Vec::len), Some(4), "{json}");
    assert_eq!(json["issues"][3]["path"], "bogus");
}
