//! The README's demo of the whole pipeline against a local registry, on a fresh machine
//! with nothing but Rust: starts an OCI 1.1 registry (ferro-oci-server) on loopback,
//! pushes three images with attestations exactly as `actions/attest-build-provenance`
//! pushes them (minted by the test kit's private Sigstore instance), writes a policy and
//! the instance's trusted root, and runs `provenance-gate verify` on each image:
//!
//! - `acme/api:1.0`, built by acme/api's release workflow on main: allowed;
//! - `acme/api:untested`, no attestation: denied;
//! - `acme/api:fork`, built by a fork's pull-request run: denied.
//!
//! Exits 0 when every verdict is the expected one. Test support, never shipped.

use std::process::{Command, ExitCode};

use provenance_gate_testkit::registry::{
    push_attested_image, push_unattested_image, FerroRegistry, TestRegistry,
};
use provenance_gate_testkit::{MintSpec, TestInstance};

fn main() -> ExitCode {
    let gate = match std::env::current_exe() {
        Ok(me) => me.with_file_name("provenance-gate"),
        Err(error) => {
            eprintln!("error: cannot locate this program: {error}");
            return ExitCode::from(2);
        }
    };
    if !gate.exists() {
        eprintln!(
            "error: {} not found; build both binaries first: cargo build --release -p provenance-gate -p provenance-gate-testkit --bins",
            gate.display()
        );
        return ExitCode::from(2);
    }
    let work = match tempfile::Builder::new()
        .prefix("provenance-gate-demo-")
        .tempdir()
    {
        Ok(work) => work,
        Err(error) => {
            eprintln!("error: cannot create a temporary directory: {error}");
            return ExitCode::from(2);
        }
    };

    println!("== starting an OCI registry on loopback and pushing three images");
    let registry = FerroRegistry::start();
    let host = registry.host();
    let client = registry.client();
    let instance = TestInstance::timestamp_only();
    let attested = push_attested_image(&client, "acme/api", "1.0", &instance, |spec| spec);
    let unattested = push_unattested_image(&client, "acme/api", "untested");
    let fork = push_attested_image(&client, "acme/api", "fork", &instance, |spec: MintSpec| {
        spec.with_repository("mallory/api")
            .with_repository_ids("999999", "888888")
            .with_ref("refs/pull/31/merge")
            .with_trigger("pull_request")
    });

    let policy = format!(
        r#"version: 1
defaultMode: enforce
unmatchedImages: deny
rules:
  - name: acme
    images: ["{host}/acme/**"]
    repositories: [{{name: acme/api, id: "804070735"}}]
    workflows: [".github/workflows/release.yml"]
registries:
  - {{host: "{host}", insecure: true}}
"#
    );
    let policy_path = work.path().join("policy.yaml");
    let root_path = work.path().join("trusted-root.json");
    if let Err(error) = std::fs::write(&policy_path, &policy)
        .and_then(|()| std::fs::write(&root_path, instance.trusted_root_json()))
    {
        eprintln!("error: cannot write the demo files: {error}");
        return ExitCode::from(2);
    }
    println!("== policy.yaml\n{policy}");

    let cases = [
        (
            &attested.reference,
            0,
            "built by acme/api's release workflow on main",
        ),
        (&unattested.reference, 1, "pushed without an attestation"),
        (&fork.reference, 1, "built by a fork's pull-request run"),
    ];
    let mut all_as_expected = true;
    for (reference, expected, story) in cases {
        println!("== provenance-gate verify {reference}   ({story})");
        let status = Command::new(&gate)
            .arg("verify")
            .arg(reference)
            .arg("--policy")
            .arg(&policy_path)
            .arg("--trusted-root")
            .arg(&root_path)
            .arg("--namespace-labels")
            .arg("env=production")
            .status();
        let code = match status {
            Ok(status) => status.code().unwrap_or(-1),
            Err(error) => {
                eprintln!("error: cannot run {}: {error}", gate.display());
                return ExitCode::from(2);
            }
        };
        let as_expected = code == expected;
        all_as_expected &= as_expected;
        println!(
            "   exit {code} ({})\n",
            if as_expected {
                "as expected"
            } else {
                "NOT as expected"
            }
        );
    }
    // The registry had to outlive the verifications; dropping it stops it.
    drop(registry);
    if all_as_expected {
        println!("demo: every verdict as expected");
        ExitCode::SUCCESS
    } else {
        println!("demo: some verdicts were not as expected");
        ExitCode::from(1)
    }
}
