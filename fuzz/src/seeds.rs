//! Each target's starting corpus, built from the real artefacts in `tests/data` and
//! `examples/` (and, for `registry_answers`, assembled so that every digest it names is
//! served: the fuzzer starts from answers that reach verification).

use serde_json::json;

use provenance_gate::check::reference::Digest;

use crate::registry::PART_SEPARATOR;
use crate::EXAMPLE_POLICY;

/// The real bundles, by file name.
pub const REAL_BUNDLES: [(&str, &[u8]); 4] = [
    (
        "reusable-workflow-attestation.sigstore.json",
        include_bytes!("../../tests/data/bundles/public-good/reusable-workflow-attestation.sigstore.json"),
    ),
    (
        "sigstore-js-2.1.0-bundle.json",
        include_bytes!("../../tests/data/bundles/public-good/sigstore-js-2.1.0-bundle.json"),
    ),
    (
        "sigstore-js-2.1.0-bundle-v0.1.json",
        include_bytes!("../../tests/data/bundles/public-good/sigstore-js-2.1.0-bundle-v0.1.json"),
    ),
    (
        "github_provenance_demo-0.0.12-py3-none-any-bundle.json",
        include_bytes!("../../tests/data/bundles/github/github_provenance_demo-0.0.12-py3-none-any-bundle.json"),
    ),
];

const GKE_POD_CREATE: &str = include_str!("../../tests/data/admission/pod-create.gke.json");
const REFERRER_MANIFEST: &[u8] =
    include_bytes!("../../tests/data/oci/attestation-referrer-manifest.ghcr.json");
const REFERRERS_INDEX: &[u8] =
    include_bytes!("../../tests/data/oci/referrers-index.spec-example.json");
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The seeds of `target`, named; empty for an unknown target.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let named = |name: &str, bytes: Vec<u8>| (name.to_owned(), bytes);
    match target {
        "admission_review" => admission_reviews(),
        "image_reference" => REFERENCES
            .iter()
            .enumerate()
            .map(|(index, text)| named(&format!("reference-{index}"), text.as_bytes().to_vec()))
            .collect(),
        "bundle" => {
            let mut seeds: Vec<_> = REAL_BUNDLES
                .iter()
                .map(|(name, bytes)| named(name, bytes.to_vec()))
                .collect();
            seeds.push(named("wrapped.json", json_lines_and_wrapper()));
            seeds
        }
        "policy" => vec![
            named("example-policy.yaml", EXAMPLE_POLICY.as_bytes().to_vec()),
            named("minimal-policy.yaml", b"version: 1\nrules: []\n".to_vec()),
        ],
        "registry_answers" => registry_answers(),
        "www_authenticate" => CHALLENGES
            .iter()
            .enumerate()
            .map(|(index, text)| named(&format!("challenge-{index}"), text.as_bytes().to_vec()))
            .collect(),
        _ => Vec::new(),
    }
}

const REFERENCES: &[&str] = &[
    "nginx",
    "docker.io/library/nginx:1.27",
    "Index.Docker.IO:443/library/nginx",
    "registry-1.docker.io/library/nginx@sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4",
    "ghcr.io/acme/api:v1@sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4",
    "localhost:5000/app",
    "[::1]:5000/team/app:dev",
    "10.0.0.5:5000/a/b/c",
    "registry.k8s.io/pause:3.9",
];

const CHALLENGES: &[&str] = &[
    r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/api:pull""#,
    r#"Basic realm="registry", Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
    r#"Bearer realm="https://example.com/\"quoted\",token", error="insufficient_scope""#,
    r#"{"token":"abc","expires_in":300}"#,
    r#"{"access_token":"abc"}"#,
];

fn admission_reviews() -> Vec<(String, Vec<u8>)> {
    let pod: serde_json::Value = serde_json::from_str(GKE_POD_CREATE).expect("the GKE review");
    let mut deployment = pod.clone();
    let spec = pod["request"]["object"]["spec"].clone();
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    deployment["request"]["object"] = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo", "namespace": "default"},
        "spec": {"template": {"metadata": {}, "spec": spec}},
    });
    let mut exempt = pod.clone();
    exempt["request"]["object"]["spec"]["containers"][0]["image"] =
        json!("registry.k8s.io/pause:3.9");
    let mut namespace = pod.clone();
    namespace["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Namespace"});
    namespace["request"]["operation"] = json!("UPDATE");
    namespace["request"]["object"] = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "prod", "labels": {"env": "production"}, "annotations": {
            "provenance-gate.dev/break-glass-ticket": "INC-1",
            "provenance-gate.dev/break-glass-reason": "fuzz",
            "provenance-gate.dev/break-glass-expires": "2026-11-28T12:00:00Z",
        }},
    });
    namespace["request"]["oldObject"] =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}});
    let mut beta = pod.clone();
    beta["apiVersion"] = json!("admission.k8s.io/v1beta1");
    [
        ("pod-create.gke.json", pod),
        ("deployment.json", deployment),
        ("exempt.json", exempt),
        ("namespace.json", namespace),
        ("v1beta1.json", beta),
    ]
    .into_iter()
    .map(|(name, review)| (name.to_owned(), serde_json::to_vec(&review).expect("JSON")))
    .collect()
}

/// A JSON-lines file of one bundle, then the same bundle in the `{"bundle": …}` wrapper.
fn json_lines_and_wrapper() -> Vec<u8> {
    let bundle: serde_json::Value = serde_json::from_slice(REAL_BUNDLES[0].1).expect("JSON");
    let mut text = serde_json::to_vec(&bundle).expect("JSON");
    text.push(b'\n');
    text.extend(serde_json::to_vec(&json!({"bundle": bundle})).expect("JSON"));
    text
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": Digest::of_bytes(bytes).to_string(), "size": bytes.len()})
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&PART_SEPARATOR)
}

/// Answers whose every named digest is served: an image with a referrer holding a real
/// bundle, and an index of two platforms and an attestation manifest.
fn registry_answers() -> Vec<(String, Vec<u8>)> {
    let bundle = REAL_BUNDLES[0].1;
    let image = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of_bytes(b"{}").to_string(), "size": 2},
        "layers": [],
    }))
    .expect("JSON");
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::of_bytes(b"{}").to_string(), "size": 2},
        "layers": [descriptor(BUNDLE_TYPE, bundle)],
        "subject": descriptor(OCI_MANIFEST, &image),
    }))
    .expect("JSON");
    let mut listed = descriptor(OCI_MANIFEST, &referrer);
    listed["artifactType"] = json!(BUNDLE_TYPE);
    let referrers = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [listed]}),
    )
    .expect("JSON");
    let mut amd64 = descriptor(OCI_MANIFEST, &image);
    amd64["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut attestation = descriptor(OCI_MANIFEST, &referrer);
    attestation["platform"] = json!({"os": "unknown", "architecture": "unknown"});
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64, attestation]}),
    )
    .expect("JSON");
    vec![
        (
            "image-with-referrer".to_owned(),
            join(&[&image, b"", &referrers, &referrer, bundle]),
        ),
        (
            "index".to_owned(),
            join(&[
                &index,
                OCI_INDEX.as_bytes(),
                &referrers,
                &image,
                &referrer,
                bundle,
            ]),
        ),
        (
            "real-oci-files".to_owned(),
            join(&[
                REFERRERS_INDEX,
                b"application/json",
                REFERRERS_INDEX,
                REFERRER_MANIFEST,
            ]),
        ),
    ]
}
