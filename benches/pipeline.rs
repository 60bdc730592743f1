//! Medians of the hot paths, on this machine, in one run: `cargo bench --bench pipeline`.
//!
//! - verifying a real public-good bundle and a real GitHub-instance bundle (what a cache
//!   miss costs in CPU, without the registry round trips);
//! - evaluating a rule over verified claims (what every admission pays, cached or not);
//! - a whole image check whose digest is cached (the steady state of a busy cluster),
//!   against a whole check of a new digest, over an in-memory registry that answers at once
//!   (so the ratio is the CPU cost of verification, not network time).
//!
//! Plain `std::time` with a median over many samples; no benchmark framework, to keep the
//! build small. Absolute times are noisy on shared machines: compare ratios within one run.
//!
//! `cargo bench --bench pipeline -- FILTER --repeat N` runs only the measurements whose name
//! contains FILTER, with N times the samples (for `perf record` of one of them).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use provenance_gate::check::reference::{Digest, ImageReference};
use provenance_gate::check::{CheckSettings, ImageChecker, ImageOutcome};
use provenance_gate::policy::{evaluate, Destination, Policy};
use provenance_gate::registry::{Descriptor, FetchedManifest, Registry, RegistryError};
use provenance_gate::verify::{read_bundles, verify_bundle, ArtifactInput, Instance, TrustedRoots};
use provenance_gate_testkit::{MintSpec, TestInstance};

const REUSABLE: &str =
    include_str!("../tests/data/bundles/public-good/reusable-workflow-attestation.sigstore.json");
const REUSABLE_DIGEST: &str =
    "sha256:49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25";
const GITHUB: &str = include_str!(
    "../tests/data/bundles/github/github_provenance_demo-0.0.12-py3-none-any-bundle.json"
);
const GITHUB_DIGEST: &str =
    "sha256:ae57936def59bc4c75edd3a837d89bcefc6d3a5e31d55a6fa7a71624f92c3c3b";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Which measurements run, and how many times over.
struct Selection {
    filter: Option<String>,
    repeat: usize,
}

impl Selection {
    fn from_args() -> Self {
        let mut selection = Selection {
            filter: None,
            repeat: 1,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--repeat" => {
                    selection.repeat = args
                        .next()
                        .and_then(|count| count.parse().ok())
                        .filter(|&count| count > 0)
                        .expect("--repeat takes a positive count");
                }
                // `cargo bench` passes `--bench`; other flags are libtest's and mean nothing here.
                flag if flag.starts_with("--") => {}
                filter => selection.filter = Some(filter.to_owned()),
            }
        }
        selection
    }

    fn measure(&self, name: &str, iterations: usize, operation: impl FnMut()) -> Option<Duration> {
        let selected = self
            .filter
            .as_ref()
            .is_none_or(|filter| name.contains(filter.as_str()));
        selected.then(|| measure(name, iterations * self.repeat, operation))
    }
}

fn measure(name: &str, iterations: usize, mut operation: impl FnMut()) -> Duration {
    for _ in 0..iterations.min(20) {
        operation();
    }
    let samples = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            operation();
            started.elapsed()
        })
        .collect();
    let median = median(samples);
    println!(
        "{name:<58} median {:>10.1} µs  ({iterations} samples)",
        median.as_secs_f64() * 1e6
    );
    median
}

/// A registry answering from memory: one image manifest with one attestation.
struct MemoryRegistry {
    digest: Digest,
    bundle: Vec<u8>,
}

impl Registry for MemoryRegistry {
    fn resolve(
        &self,
        _: &ImageReference,
    ) -> impl Future<Output = Result<Digest, RegistryError>> + Send {
        let digest = self.digest.clone();
        async move { Ok(digest) }
    }

    fn fetch_manifest(
        &self,
        _: &ImageReference,
        digest: &Digest,
    ) -> impl Future<Output = Result<FetchedManifest, RegistryError>> + Send {
        let bundle_digest = Digest::of_bytes(&self.bundle);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": self.digest.to_string(), "size": 1},
            "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "digest": bundle_digest.to_string(), "size": self.bundle.len()}]
        })
        .to_string()
        .into_bytes();
        let fetched = FetchedManifest {
            digest: digest.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes: manifest,
        };
        async move { Ok(fetched) }
    }

    fn fetch_blob(
        &self,
        _: &ImageReference,
        _: &Descriptor,
        _: u64,
    ) -> impl Future<Output = Result<Vec<u8>, RegistryError>> + Send {
        let bundle = self.bundle.clone();
        async move { Ok(bundle) }
    }

    fn referrers(
        &self,
        _: &ImageReference,
        _: &Digest,
        _: &str,
    ) -> impl Future<Output = Result<Vec<Descriptor>, RegistryError>> + Send {
        let referrer = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::of_bytes(b"referrer").to_string(),
            size: 1,
            artifact_type: Some("application/vnd.dev.sigstore.bundle.v0.3+json".into()),
            annotations: Default::default(),
            platform: None,
        };
        async move { Ok(vec![referrer]) }
    }
}

fn main() {
    let roots = TrustedRoots::embedded().expect("embedded roots");
    let reusable = read_bundles(REUSABLE.as_bytes()).unwrap().remove(0);
    let github = read_bundles(GITHUB.as_bytes()).unwrap().remove(0);
    let reusable_digest = ArtifactInput::parse_sha256(REUSABLE_DIGEST).unwrap();
    let github_digest = ArtifactInput::parse_sha256(GITHUB_DIGEST).unwrap();

    let selection = Selection::from_args();
    println!("provenance-gate benchmarks (debug or release as built; run with `cargo bench`)");
    let public_good = selection.measure("verify real public-good bundle (log + SCT)", 200, || {
        verify_bundle(&roots, &reusable, reusable_digest).unwrap();
    });
    // What the reference verifier's loop (benches/reference_verify.py) times: parsing included.
    selection.measure("parse + verify real public-good bundle", 200, || {
        let parsed = read_bundles(REUSABLE.as_bytes()).unwrap().remove(0);
        verify_bundle(&roots, &parsed, reusable_digest).unwrap();
    });
    selection.measure("verify real GitHub-instance bundle (RFC 3161)", 200, || {
        verify_bundle(&roots, &github, github_digest).unwrap();
    });
    selection.measure("parse a bundle (JSON → Bundle)", 500, || {
        read_bundles(REUSABLE.as_bytes()).unwrap();
    });

    let policy = Policy::from_yaml(include_str!("../examples/policy.yaml")).unwrap();
    let attestation = verify_bundle(&roots, &reusable, reusable_digest).unwrap();
    let rule = policy.rule("attest-demo").expect("example rule");
    let now = jiff::Timestamp::now();
    let evaluation = selection.measure("evaluate a rule over verified claims", 5000, || {
        evaluate(rule, &Destination::Unselected, &attestation, now).unwrap();
    });

    // Whole checks through the pipeline, over the in-memory registry.
    let instance = TestInstance::timestamp_only();
    let kit_roots = Arc::new(
        TrustedRoots::from_json(&[(
            Instance::Custom("bench".into()),
            &instance.trusted_root_json(),
        )])
        .unwrap(),
    );
    let image_digest = Digest::of_bytes(b"bench image");
    let bundle = instance
        .mint(
            &MintSpec::github_build(image_digest.hex())
                .with_subject("bench.local/acme/api", image_digest.hex()),
        )
        .into_bytes();
    let bench_policy = Policy::from_yaml(
        "version: 1\nrules:\n  - name: acme\n    images: [\"bench.local/acme/**\"]\n    repositories: [{name: acme/api, id: \"804070735\"}]\n",
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cached_checker = ImageChecker::new(
        MemoryRegistry {
            digest: image_digest.clone(),
            bundle: bundle.clone(),
        },
        Arc::clone(&kit_roots),
        CheckSettings::default(),
    );
    let cold = selection.measure(
        "image check, new digest (discovery + verification)",
        200,
        || {
            // A fresh checker each time: nothing cached.
            let checker = ImageChecker::new(
                MemoryRegistry {
                    digest: image_digest.clone(),
                    bundle: bundle.clone(),
                },
                Arc::clone(&kit_roots),
                CheckSettings::default(),
            );
            let check = runtime.block_on(checker.check(&bench_policy, "bench.local/acme/api:1"));
            assert!(
                matches!(check.outcome, ImageOutcome::Verified { .. }),
                "{check:?}"
            );
        },
    );
    let warm = selection.measure(
        "image check, cached digest (policy still evaluated)",
        5000,
        || {
            let check =
                runtime.block_on(cached_checker.check(&bench_policy, "bench.local/acme/api:1"));
            assert!(matches!(check.outcome, ImageOutcome::Verified { .. }));
        },
    );
    println!();
    if let (Some(cold), Some(warm)) = (cold, warm) {
        println!(
            "ratio: a cached check is {:.0}x faster than a new digest",
            cold.as_secs_f64() / warm.as_secs_f64()
        );
    }
    if let (Some(evaluation), Some(public_good)) = (evaluation, public_good) {
        println!(
            "ratio: rule evaluation is {:.1}% of a public-good verification",
            100.0 * evaluation.as_secs_f64() / public_good.as_secs_f64()
        );
    }
}
