//! `provenance-gate verify` and `verify-bundle` as a CI deploy gate runs them: the binary
//! against a real registry started by the test kit (Debian's `docker-registry`) holding images
//! attested by the kit's Sigstore instance, and the real GitHub bundles of tests/data. The exit
//! status says whether an image is proven, whatever the namespace's mode.

use std::path::PathBuf;
use std::process::Command;

use provenance_gate_testkit::registry::{
    attach_attestation, push_attested_image, push_unattested_image, DistributionRegistry,
    PushedImage, ReferrersTagSchema, TestRegistry,
};
use provenance_gate_testkit::{MintSpec, TestInstance};

/// A registry with an attested image (the kit's default build: `acme/api`, id 804070735,
/// `release.yml` on main, push) and an unattested one, and the files the CLI reads.
struct Gate {
    registry: DistributionRegistry,
    instance: TestInstance,
    attested: PushedImage,
    unattested: PushedImage,
    dir: tempfile::TempDir,
}

/// Exit code, stdout and stderr of one run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn gate_cli(args: &[&str]) -> Run {
    gate_cli_with_policy_variable(args, None)
}

/// A run with `PROVENANCE_GATE_POLICY` set to `policy` (unset for `None`).
fn gate_cli_with_policy_variable(args: &[&str], policy: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provenance-gate"));
    command.args(args);
    match policy {
        Some(path) => command.env("PROVENANCE_GATE_POLICY", path),
        None => command.env_remove("PROVENANCE_GATE_POLICY"),
    };
    let output = command.output().expect("the binary runs");
    Run {
        code: output.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Gate {
    fn start() -> Gate {
        let registry = DistributionRegistry::plain();
        let client = registry.client();
        let instance = TestInstance::timestamp_only();
        let attested = push_attested_image(&client, "acme/api", "1.0", &instance, |spec| spec);
        let unattested = push_unattested_image(&client, "acme/worker", "1.0");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("root.json"), instance.trusted_root_json())
            .expect("write root");
        Gate {
            registry,
            instance,
            attested,
            unattested,
            dir,
        }
    }

    /// Writes a policy whose rule `acme` covers the registry's `acme/**`, `rule_extra` added
    /// to it, with `staging` namespaces (env=staging) in warn mode.
    fn policy(&self, rule_extra: &str) -> PathBuf {
        let host = self.registry.host();
        let path = self.dir.path().join("policy.yaml");
        std::fs::write(
            &path,
            format!(
                r#"version: 1
environments:
  - {{name: staging, namespaceSelector: {{matchLabels: {{env: staging}}}}, mode: warn}}
rules:
  - name: acme
    images: ["{host}/acme/**"]
    repositories: [{{name: acme/api, id: "804070735"}}]
{rule_extra}registries:
  - {{host: "{host}", insecure: true}}
"#
            ),
        )
        .expect("write policy");
        path
    }

    fn root(&self) -> String {
        self.dir.path().join("root.json").display().to_string()
    }

    /// `verify IMAGE --trusted-root … extra…`.
    fn verify(&self, image: &str, extra: &[&str]) -> Run {
        let root = self.root();
        let mut args = vec!["verify", image, "--trusted-root", &root];
        args.extend_from_slice(extra);
        gate_cli(&args)
    }

    fn verify_with_policy(&self, image: &str, policy: &std::path::Path, extra: &[&str]) -> Run {
        let policy = policy.display().to_string();
        let mut args = vec!["--policy", policy.as_str()];
        args.extend_from_slice(extra);
        self.verify(image, &args)
    }
}

/// Before: `verify` exited 0 for an unproven image when the namespace labels picked warn or
/// observe (`warned`/`would_deny` admit), so a deploy gate reusing the cluster policy passed it.
#[test]
fn an_unproven_image_fails_the_gate_in_every_mode_and_the_mode_is_shown() {
    let gate = Gate::start();
    let policy = gate.policy("");
    let image = &gate.unattested.reference;
    let cases = [
        (vec!["--namespace-labels", "env=staging"], "admit it with a warning (mode warn, environment \"staging\")"),
        (vec!["--namespace-labels", "env=production"], "deny it (mode enforce)"),
        (vec!["--namespace-labels", "env=staging", "--mode", "observe"], "admit it and record that it would have been denied (mode observe, environment \"staging\")"),
    ];
    for (extra, webhook) in cases {
        let run = gate.verify_with_policy(image, &policy, &extra);
        assert_eq!(run.code, 1, "{extra:?}\n{run}");
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert!(
            lines[0].starts_with(&format!(
                "denied: {image}: rule \"acme\": no attestation found for sha256:"
            )),
            "the root cause leads\n{run}"
        );
        assert!(lines[1].starts_with("  hint: was the image attested with actions/attest-build-provenance and `push-to-registry: true`"), "{run}");
        assert_eq!(
            lines.last().copied(),
            Some(format!("  the webhook would {webhook}").as_str()),
            "{run}"
        );
        assert_eq!(run.stdout, "", "{run}");
    }

    let run = gate.verify_with_policy(
        image,
        &policy,
        &["--namespace-labels", "env=staging", "--output", "json"],
    );
    assert_eq!(run.code, 1, "{run}");
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(
        answer["result"], "warned",
        "the webhook's record for the namespace's mode"
    );
    assert_eq!(answer["mode"], "warn");
    assert_eq!(answer["passed"], false);
    assert!(
        answer["hints"][0]
            .as_str()
            .unwrap()
            .contains("push-to-registry"),
        "{answer}"
    );

    let run = gate.verify_with_policy(
        &gate.attested.reference,
        &policy,
        &["--namespace-labels", "env=staging", "--output", "json"],
    );
    assert_eq!(run.code, 0, "{run}");
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(
        (answer["result"].as_str(), answer["passed"].as_bool()),
        (Some("allowed"), Some(true)),
        "{answer}"
    );
    assert_eq!(answer["hints"], serde_json::json!([]));

    // Both at once: one unproven image fails the run.
    let run = gate.verify_with_policy(&gate.attested.reference, &policy, &[image]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stdout
            .starts_with(&format!("allowed: {} -> ", gate.attested.reference)),
        "{run}"
    );
}

#[test]
fn exempt_and_allowed_unmatched_images_pass_as_the_webhook_admits_them() {
    let gate = Gate::start();
    let host = gate.registry.host();
    let policy = gate.policy("");
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "rules:",
        &format!("exemptImages: [\"{host}/acme/worker\"]\nrules:"),
    );
    std::fs::write(&policy, text).unwrap();
    let run = gate.verify_with_policy(&gate.unattested.reference, &policy, &[]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.starts_with("exempt: "), "{run}");
}

/// Issue 13, item 3: `--environment NAME` judges as the webhook does in that environment's
/// namespaces, the rule's constraints for it included; an unknown name is bad usage.
#[test]
fn environment_judges_with_that_environments_constraints() {
    let gate = Gate::start();
    let policy = gate.policy(
        "    refs: [refs/heads/main, \"refs/tags/v*\"]
    environments:
      - {name: production, refs: [\"refs/tags/v*\"]}
",
    );
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "environments:\n  - {name: staging",
        "environments:\n  - {name: production, namespaceSelector: {matchLabels: {env: production}}, mode: enforce}\n  - {name: staging",
    );
    std::fs::write(&policy, text).unwrap();
    let image = &gate.attested.reference;

    let staged = gate.verify_with_policy(image, &policy, &["--environment", "staging"]);
    assert_eq!(staged.code, 0, "{staged}");
    let production_bar = "environment \"production\" of rule \"acme\" allows refs: refs/tags/v*";
    for selected in [
        vec!["--environment", "production"],
        vec!["--namespace-labels", "env=production"],
    ] {
        let run = gate.verify_with_policy(image, &policy, &selected);
        assert_eq!(run.code, 1, "{selected:?}\n{run}");
        assert!(run.stderr.contains(production_bar), "{run}");
        assert!(
            !run.stderr.contains("hint:"),
            "the rule itself admits main: {run}"
        );
        assert!(
            run.stderr.ends_with(
                "  the webhook would deny it (mode enforce, environment \"production\")\n"
            ),
            "{run}"
        );
    }
    let run = gate.verify_with_policy(
        image,
        &policy,
        &["--environment", "production", "--output", "json"],
    );
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(answer["environment"], "production", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains(production_bar),
        "{answer}"
    );

    let unknown = gate.verify_with_policy(image, &policy, &["--environment", "prod"]);
    assert_eq!(unknown.code, 2, "{unknown}");
    assert!(
        unknown.stderr.contains(
            "--environment \"prod\": no such environment; the policy's environments are production, staging"
        ),
        "{unknown}"
    );
}

#[test]
fn a_calling_workflow_the_rule_does_not_list_gets_the_rule_line_to_add() {
    let gate = Gate::start();
    let policy = gate.policy("    workflows: [\".github/workflows/deploy.yml\"]\n");
    let run = gate.verify_with_policy(&gate.attested.reference, &policy, &[]);
    assert_eq!(run.code, 1, "{run}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines[0].contains("calling workflow .github/workflows/release.yml is not allowed"),
        "{run}"
    );
    assert_eq!(
        lines[1],
        "  hint: if this build is to be trusted, add to rule \"acme\": workflows: [\".github/workflows/deploy.yml\", \".github/workflows/release.yml\"]",
        "{run}"
    );
}

/// Before: an image with an SBOM attestation beside its provenance was first refused for the
/// SBOM's predicate type, the provenance's actual violation after it.
#[test]
fn the_provenance_that_broke_the_rule_leads_an_sbom_beside_it() {
    let gate = Gate::start();
    let client = gate.registry.client();
    let image = push_unattested_image(&client, "acme/tool", "1.0");
    let subject = format!("{}/acme/tool", client.host());
    for predicate_type in [
        "https://spdx.dev/Document/v2.3",
        "https://slsa.dev/provenance/v1",
    ] {
        let spec = MintSpec::github_build(image.manifest.hex())
            .with_subject(&subject, image.manifest.hex())
            .with_predicate_type(predicate_type);
        let bundle = gate.instance.mint(&spec);
        attach_attestation(
            &client,
            "acme/tool",
            &image.manifest,
            &bundle,
            ReferrersTagSchema::Auto,
        );
    }
    let policy = gate.policy("    workflows: [\".github/workflows/deploy.yml\"]\n");
    let run = gate.verify_with_policy(&image.reference, &policy, &[]);
    assert_eq!(run.code, 1, "{run}");
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("denied: {}: rule \"acme\": calling workflow .github/workflows/release.yml is not allowed", image.reference)),
        "{run}"
    );
    assert!(
        first.contains("predicate type https://spdx.dev/Document/v2.3 is not allowed"),
        "{run}"
    );
}

#[test]
fn repo_and_owner_verify_without_a_policy_with_the_default_rule() {
    let gate = Gate::start();
    let host = gate.registry.host();
    let image = gate.attested.reference.as_str();
    for trusted in [
        ["--repo", "acme/api"],
        ["--owner", "acme"],
        ["--repo", "ACME/api"],
    ] {
        let run = gate.verify(
            image,
            &[trusted[0], trusted[1], "--insecure-registry", &host],
        );
        assert_eq!(run.code, 0, "{trusted:?}\n{run}");
        assert!(
            run.stdout
                .contains("built from https://github.com/acme/api@refs/heads/main"),
            "{run}"
        );
    }
    let run = gate.verify(image, &["--repo", "acme/web", "--insecure-registry", &host]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr
            .contains("source repository https://github.com/acme/api is not trusted"),
        "{run}"
    );

    // A build from a tag, or by a pull request, is not what the defaults trust.
    let client = gate.registry.client();
    for (tag, edit) in [
        (
            "tag",
            (|spec: MintSpec| spec.with_ref("refs/tags/v1")) as fn(MintSpec) -> MintSpec,
        ),
        ("pr", |spec: MintSpec| spec.with_trigger("pull_request")),
    ] {
        let pushed = push_attested_image(&client, "acme/api", tag, &gate.instance, edit);
        let run = gate.verify(
            &pushed.reference,
            &["--repo", "acme/api", "--insecure-registry", &host],
        );
        assert_eq!(run.code, 1, "{tag}\n{run}");
    }

    // Usage errors are exit 2: no source of trust, both sources, a malformed repository.
    let root = gate.root();
    for args in [
        vec!["verify", image, "--trusted-root", &root],
        vec![
            "verify",
            image,
            "--repo",
            "acme/api",
            "--policy",
            "policy.yaml",
        ],
        vec!["verify", image, "--repo", "acme"],
        vec!["verify", image, "--repo", "acme/api", "--mode", "block"],
        vec![
            "verify",
            image,
            "--insecure-registry",
            &host,
            "--trusted-root",
            &root,
        ],
    ] {
        let run = gate_cli(&args);
        assert_eq!(run.code, 2, "{args:?}\n{run}");
    }
    // A policy in the environment is the default source of trust, not a conflict.
    let with_repo = [
        "verify",
        image,
        "--repo",
        "acme/api",
        "--insecure-registry",
        &host,
        "--trusted-root",
        &root,
    ];
    let run = gate_cli_with_policy_variable(&with_repo, Some("no-such-policy.yaml"));
    assert_eq!(run.code, 0, "{run}");
    let policy = gate.policy("").display().to_string();
    let run =
        gate_cli_with_policy_variable(&["verify", image, "--trusted-root", &root], Some(&policy));
    assert_eq!(run.code, 0, "{run}");
}

const GITHUB_BUNDLE: &str =
    "tests/data/bundles/github/github_provenance_demo-0.0.12-py3-none-any-bundle.json";
const PUBLIC_GOOD_ARTIFACT: &str = "tests/data/bundles/public-good/reusable-workflow-artifact";

/// Before: a GitHub-instance bundle checked for the wrong artifact was first refused with
/// "public-good: no transparency-log entry" (the root it was never meant for, tried first),
/// the artifact mismatch under the GitHub root after it.
#[test]
fn a_wrong_artifact_is_reported_before_the_root_the_bundle_was_not_made_for() {
    let run = gate_cli(&[
        "verify-bundle",
        "--bundle",
        GITHUB_BUNDLE,
        "--artifact",
        PUBLIC_GOOD_ARTIFACT,
        "--policy",
        "examples/policy.yaml",
    ]);
    assert_eq!(run.code, 1, "{run}");
    let reason = run.stderr.lines().nth(1).expect("a reason line");
    assert!(
        reason.starts_with("  - bundle did not verify under any trusted root: github: "),
        "{run}"
    );
    let github = reason.find("github: ").unwrap();
    let public_good = reason
        .find("public-good: no transparency-log entry")
        .expect("still listed");
    assert!(github < public_good, "{run}");
}

#[test]
fn help_documents_exit_status_and_output() {
    for args in [vec!["--help"], vec!["verify", "--help"]] {
        let run = gate_cli(&args);
        assert_eq!(run.code, 0, "{run}");
        assert!(run.stdout.contains("Exit status: 0"), "{args:?}\n{run}");
        assert!(
            run.stdout.contains("2 bad usage or unreadable input"),
            "{args:?}\n{run}"
        );
        assert!(run.stdout.contains("--output"), "{args:?}\n{run}");
    }
    let run = gate_cli(&["verify", "--help"]);
    for fragment in [
        "--repo <OWNER/REPO>",
        "--owner <OWNER>",
        "--mode <MODE>",
        "whatever mode",
        "`passed`",
    ] {
        assert!(run.stdout.contains(fragment), "{fragment}\n{run}");
    }
}

/// The real reusable-workflow bundle of tests/data under a rule that lists no signer: the hint
/// names the signing workflow pinned to the commit that signed.
#[test]
fn verify_bundle_hints_the_signer_workflow_to_pin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: demo\n    images: [\"**\"]\n    repositories: [{name: malancas/attest-demo, id: \"804070735\"}]\n",
    )
    .expect("write policy");
    let policy = policy.display().to_string();
    let args = [
        "verify-bundle",
        "--bundle",
        "tests/data/bundles/public-good/reusable-workflow-attestation.sigstore.json",
        "--artifact",
        PUBLIC_GOOD_ARTIFACT,
        "--policy",
        &policy,
        "--rule",
        "demo",
    ];
    let run = gate_cli(&args);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("  hint: if this build is to be trusted, add to rule \"demo\": signerWorkflows: [\"github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d\"]"),
        "{run}"
    );
    let mut json_args = args.to_vec();
    json_args.extend(["--output", "json"]);
    let run = gate_cli(&json_args);
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(
        answer["hints"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
}
