//! Differential: for every real bundle case it supports, the reference verifier
//! (PyPI `sigstore`, `verify identity --offline` with a client trust config wrapping our
//! embedded public-good root) reaches the same verdict as ours.
//!
//! sigstore-python cannot check log-less roots, so GitHub-instance bundles are out of its
//! reach (they are covered against `@sigstore/verify` through the minting kit), and it
//! rejects Rekor `intoto` 0.0.2 entries as unsupported; that case asserts exactly that, so
//! a future version that supports them makes this test ask to be extended.
//!
//! The CLI is found through `SIGSTORE_PYTHON_CLI` (set by `.ci/run`) or `sigstore` on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use provenance_gate::verify::{read_bundles, verify_bundle, ArtifactInput, TrustedRoots};

const PUBLIC_GOOD_ROOT: &str = include_str!("../trusted-roots/public-good.json");
const REUSABLE_BUNDLE: &str =
    include_str!("data/bundles/public-good/reusable-workflow-attestation.sigstore.json");
const REUSABLE_ARTIFACT: &str = "tests/data/bundles/public-good/reusable-workflow-artifact";
const REUSABLE_SIGNER: &str = "https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn reference_cli() -> String {
    std::env::var("SIGSTORE_PYTHON_CLI").unwrap_or_else(|_| "sigstore".into())
}

/// A ClientTrustConfig: the trusted root plus a signing config that offline verification
/// never contacts (the service URLs use the reserved `.invalid` domain).
fn write_trust_config(dir: &Path) -> PathBuf {
    let service = |url: &str| {
        serde_json::json!({"url": url, "majorApiVersion": 1,
            "validFor": {"start": "2020-01-01T00:00:00Z"}, "operator": "test"})
    };
    let config = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": serde_json::from_str::<serde_json::Value>(PUBLIC_GOOD_ROOT).unwrap(),
        "signingConfig": {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [service("https://fulcio.example.invalid")],
            "oidcUrls": [],
            "rekorTlogUrls": [service("https://rekor.example.invalid")],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaUrls": [],
            "tsaConfig": {"selector": "ANY"}
        }
    });
    let path = dir.join("trust-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

struct Verdicts {
    ours: Result<(), String>,
    reference: Result<(), String>,
}

fn both_verdicts(bundle_json: &str, artifact: &str, identity: &str) -> Verdicts {
    let dir = tempfile::tempdir().unwrap();
    let bundle_path = dir.path().join("bundle.json");
    std::fs::write(&bundle_path, bundle_json).unwrap();
    let trust_config = write_trust_config(dir.path());

    let roots = TrustedRoots::from_json(&[(
        provenance_gate::verify::Instance::PublicGood,
        PUBLIC_GOOD_ROOT,
    )])
    .unwrap();
    let artifact_bytes;
    let input = if artifact.starts_with("sha256:") {
        ArtifactInput::parse_sha256(artifact).unwrap()
    } else {
        artifact_bytes = std::fs::read(artifact).unwrap();
        ArtifactInput::Bytes(&artifact_bytes)
    };
    let ours = read_bundles(bundle_json.as_bytes())
        .map_err(|error| error.to_string())
        .and_then(|bundles| {
            verify_bundle(&roots, &bundles[0], input)
                .map(|_| ())
                .map_err(|error| error.to_string())
        });

    let output = Command::new(reference_cli())
        .arg("--trust-config")
        .arg(&trust_config)
        .args(["verify", "identity", "--offline", "--bundle"])
        .arg(&bundle_path)
        .args([
            "--cert-identity",
            identity,
            "--cert-oidc-issuer",
            ISSUER,
            artifact,
        ])
        // Its log formatter wraps at the terminal width; keep messages on one line.
        .env("COLUMNS", "400")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run the reference verifier {:?} ({error}); install it with \
                 `pip install -r tests/oracle/requirements.txt` and set SIGSTORE_PYTHON_CLI",
                reference_cli()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let reference = if output.status.success() {
        Ok(())
    } else {
        Err(text)
    };
    Verdicts { ours, reference }
}

fn edited(edit: impl Fn(&mut serde_json::Value)) -> String {
    let mut value: serde_json::Value = serde_json::from_str(REUSABLE_BUNDLE).unwrap();
    edit(&mut value);
    value.to_string()
}

fn flip_bit(value: &mut serde_json::Value, pointer: &str) {
    let slot = value.pointer_mut(pointer).unwrap();
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(slot.as_str().unwrap()).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    *slot = serde_json::Value::String(engine.encode(bytes));
}

#[test]
fn reference_verifier_agrees_on_the_real_public_good_attestation_and_its_tamperings() {
    let cases: Vec<(&str, String, &str, bool)> = vec![
        (
            "genuine bundle and artifact",
            REUSABLE_BUNDLE.into(),
            REUSABLE_ARTIFACT,
            true,
        ),
        (
            "genuine bundle and its subject digest",
            REUSABLE_BUNDLE.into(),
            "sha256:49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25",
            true,
        ),
        (
            "digest that is not the subject",
            REUSABLE_BUNDLE.into(),
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            false,
        ),
        (
            "flipped payload bit",
            edited(|v| flip_bit(v, "/dsseEnvelope/payload")),
            REUSABLE_ARTIFACT,
            false,
        ),
        (
            "flipped signature bit",
            edited(|v| flip_bit(v, "/dsseEnvelope/signatures/0/sig")),
            REUSABLE_ARTIFACT,
            false,
        ),
        (
            "moved integrated time",
            edited(|v| {
                let slot = v
                    .pointer_mut("/verificationMaterial/tlogEntries/0/integratedTime")
                    .unwrap();
                *slot = serde_json::Value::String("1716578000".into());
            }),
            REUSABLE_ARTIFACT,
            false,
        ),
        (
            "flipped SET bit",
            edited(|v| {
                flip_bit(
                    v,
                    "/verificationMaterial/tlogEntries/0/inclusionPromise/signedEntryTimestamp",
                )
            }),
            REUSABLE_ARTIFACT,
            false,
        ),
        (
            "removed log entry",
            edited(|v| {
                v.pointer_mut("/verificationMaterial/tlogEntries")
                    .unwrap()
                    .as_array_mut()
                    .unwrap()
                    .clear()
            }),
            REUSABLE_ARTIFACT,
            false,
        ),
    ];
    for (name, bundle, artifact, expected) in cases {
        let verdicts = both_verdicts(&bundle, artifact, REUSABLE_SIGNER);
        assert_eq!(
            verdicts.ours.is_ok(),
            expected,
            "{name}: ours said {:?}",
            verdicts.ours
        );
        assert_eq!(
            verdicts.reference.is_ok(),
            expected,
            "{name}: the reference verifier said {:?}",
            verdicts.reference
        );
    }
}

#[test]
fn reference_verifier_still_lacks_intoto_entries_which_we_verify() {
    let bundle = include_str!("data/bundles/public-good/sigstore-js-2.1.0-bundle.json");
    let verdicts = both_verdicts(
        bundle,
        "tests/data/bundles/public-good/sigstore-js-2.1.0.tgz",
        "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main",
    );
    assert!(verdicts.ours.is_ok(), "{:?}", verdicts.ours);
    let reference = verdicts.reference.expect_err(
        "the reference verifier now accepts intoto 0.0.2: turn this case into an agreement check",
    );
    assert!(
        reference.contains("Integrated time only supported for dsse/hashedrekord 0.0.1"),
        "{reference}"
    );
}
