//! Differential: bundles minted by the test kit, checked by an independent
//! verifier, `@sigstore/verify` (sigstore-js), through
//! `tests/oracle/verify-bundle.mjs`. Good bundles must verify there too and
//! every tampered one must fail there too, so the kit cannot drift into
//! minting something only our own verifier accepts (or rejects).
//!
//! Needs Node.js and `npm ci --prefix tests/oracle` (which `scripts/test.sh`
//! runs); without them the test fails and says so instead of skipping.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use provenance_gate_testkit::{MintSpec, ReusableWorkflow, Tamper, TestInstance};
use serde_json::Value;

const IMAGE_DIGEST: &str = "9c24ac7eca13411bee8f335f96442c0b5ef8de65ff1f85da6f16fcb0c046bd78";

fn oracle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle")
}

/// Fails the test, with the fix, when the oracle cannot run.
fn require_oracle() {
    let installed = oracle_dir()
        .join("node_modules/@sigstore/verify/package.json")
        .is_file();
    assert!(
        installed,
        "@sigstore/verify is not installed: run `npm ci --prefix tests/oracle` (scripts/test.sh does)"
    );
}

struct OracleVerdict {
    verified: bool,
    exit_code: Option<i32>,
    output: Value,
}

/// Starts the oracle on one bundle; [`finish`] collects its verdict.
/// Starting every case before waiting for any keeps the test at a couple of
/// seconds although each Node.js start takes about half a second.
fn start_oracle(trusted_root: &Path, bundle: &Path, digest_hex: &str) -> Child {
    Command::new("node")
        .arg(oracle_dir().join("verify-bundle.mjs"))
        .arg("--trusted-root")
        .arg(trusted_root)
        .arg("--bundle")
        .arg(bundle)
        .arg("--digest")
        .arg(format!("sha256:{digest_hex}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot run `node` (Node.js >= 20.17 is needed for the oracle): {error}")
        })
}

fn finish(oracle: Child) -> OracleVerdict {
    let output = oracle
        .wait_with_output()
        .expect("the oracle process can be waited for");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "the oracle printed no JSON verdict (exit {:?})\nstdout: {stdout}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let verified = verdict["verified"] == Value::Bool(true);
    // The exit status and the verdict must agree; 2 would be a usage error.
    let expected_code = if verified { 0 } else { 1 };
    assert_eq!(
        output.status.code(),
        Some(expected_code),
        "exit status disagrees with the verdict {verdict}"
    );
    OracleVerdict {
        verified,
        exit_code: output.status.code(),
        output: verdict,
    }
}

fn oracle_verdict(trusted_root: &Path, bundle: &Path, digest_hex: &str) -> OracleVerdict {
    finish(start_oracle(trusted_root, bundle, digest_hex))
}

#[test]
fn sigstore_js_agrees_with_the_kit_on_good_and_tampered_bundles() {
    require_oracle();
    let instance = TestInstance::timestamp_only();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trusted_root = dir.path().join("trusted_root.json");
    std::fs::write(&trusted_root, instance.trusted_root_json()).expect("write the trusted root");

    let good_specs = [
        ("default build", MintSpec::github_build(IMAGE_DIGEST)),
        (
            "reusable signer workflow",
            MintSpec::github_build(IMAGE_DIGEST)
                .with_signer_workflow(ReusableWorkflow::github_attest()),
        ),
        (
            "tag build by a self-hosted runner",
            MintSpec::github_build(IMAGE_DIGEST)
                .with_repository("acme/web")
                .with_ref("refs/tags/v1.2.3")
                .with_runner("self-hosted")
                .with_trigger("release"),
        ),
        (
            "v0.2 bundle with a certificate chain",
            MintSpec::github_build(IMAGE_DIGEST)
                .with_media_type("application/vnd.dev.sigstore.bundle+json;version=0.2"),
        ),
    ];
    let mut cases: Vec<(String, MintSpec, bool)> = good_specs
        .into_iter()
        .map(|(name, spec)| (name.to_owned(), spec, true))
        .collect();
    for tamper in Tamper::ALL_BROKEN {
        // @sigstore/verify checks no extended key usage: a leaf for another
        // purpose passes there and only sigstore-verify rejects it. Asserted
        // so that a version that starts checking makes this test speak up.
        let oracle_accepts = tamper == Tamper::CertWithoutCodeSigningEku;
        cases.push((
            format!("{tamper:?}"),
            MintSpec::github_build(IMAGE_DIGEST).with_tamper(tamper),
            oracle_accepts,
        ));
    }

    let running: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(index, (_, spec, _))| {
            let bundle = dir.path().join(format!("bundle-{index}.json"));
            std::fs::write(&bundle, instance.mint(spec)).expect("write the bundle");
            start_oracle(&trusted_root, &bundle, IMAGE_DIGEST)
        })
        .collect();
    let mut disagreements = Vec::new();
    for ((name, _, expect_verified), oracle) in cases.iter().zip(running) {
        let verdict = finish(oracle);
        if verdict.verified != *expect_verified {
            disagreements.push(format!(
                "{name}: expected verified={expect_verified}, oracle said (exit {:?}) {}",
                verdict.exit_code, verdict.output
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "@sigstore/verify disagrees:\n{}",
        disagreements.join("\n")
    );
}

#[test]
fn sigstore_js_rejects_a_bundle_under_another_instances_root_or_for_another_digest() {
    require_oracle();
    let instance = TestInstance::timestamp_only();
    let other_instance = TestInstance::timestamp_only();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let other_root = dir.path().join("other_trusted_root.json");
    std::fs::write(&other_root, other_instance.trusted_root_json()).expect("write");
    let own_root = dir.path().join("trusted_root.json");
    std::fs::write(&own_root, instance.trusted_root_json()).expect("write");
    let bundle = dir.path().join("bundle.json");
    std::fs::write(
        &bundle,
        instance.mint(&MintSpec::github_build(IMAGE_DIGEST)),
    )
    .expect("write");

    assert!(oracle_verdict(&own_root, &bundle, IMAGE_DIGEST).verified);
    let foreign = oracle_verdict(&other_root, &bundle, IMAGE_DIGEST);
    assert!(
        !foreign.verified,
        "verified under a foreign root: {}",
        foreign.output
    );
    let other_digest = "0000000000000000000000000000000000000000000000000000000000000001";
    let wrong_subject = oracle_verdict(&own_root, &bundle, other_digest);
    assert!(!wrong_subject.verified);
    assert_eq!(wrong_subject.output["error"]["code"], "SUBJECT_ERROR");
}
