//! GitHub's attestations API as a source of bundles, end to end: a REAL registry from the
//! test kit (`ferro-oci-server`) holds the images, and a FAKE GitHub API from the test kit
//! (`testkit/src/github_api.rs`) lists the attestations — a fake because GitHub cannot be
//! reached from here. It serves the documented response shape with bundles minted by the
//! kit's private Sigstore instance, so every bundle is verified for real.

use std::sync::Arc;
use std::time::Duration;

use provenance_gate::check::{CheckSettings, FailureKind, ImageCheck, ImageChecker, ImageOutcome};
use provenance_gate::decision::{decide, BreakGlass, Subject};
use provenance_gate::evidence::records::{DecisionRecord, RequestContext};
use provenance_gate::github::{GithubClient, GithubOptions, GITHUB_API_VERSION};
use provenance_gate::policy::{AttestationSource, Destination, Mode, Policy};
use provenance_gate::registry::{AllowedRegistries, HostOptions, HttpRegistry, RegistryOptions};
use provenance_gate::verify::{Instance, TrustedRoots};
use provenance_gate_testkit::github_api::{FakeGithubApi, RateLimit};
use provenance_gate_testkit::registry::{
    attach_attestation, push_attested_image, push_unattested_image, ConnectionRecorder,
    FerroRegistry, PushedImage, ReferrersTagSchema, TestRegistry,
};
use provenance_gate_testkit::{MintSpec, TestInstance};

const REPOSITORY: &str = "repos/acme/api";

struct Setup {
    instance: TestInstance,
    roots: Arc<TrustedRoots>,
    registry: FerroRegistry,
    github: FakeGithubApi,
}

impl Setup {
    fn new() -> Setup {
        let instance = TestInstance::timestamp_only();
        let roots = TrustedRoots::from_json(&[(
            Instance::Custom("test".into()),
            &instance.trusted_root_json(),
        )])
        .expect("kit root loads");
        Setup {
            instance,
            roots: Arc::new(roots),
            registry: FerroRegistry::start(),
            github: FakeGithubApi::start(),
        }
    }

    /// The kit's default build (`acme/api`, id 804070735) trusted for `<registry>/acme/**`,
    /// its attestations looked for in `sources`; `github` is `extra` lines of the github block.
    fn policy(&self, sources: &str, github: &str) -> Policy {
        self.policy_with_rule(sources, github, "")
    }

    /// As [`Setup::policy`], `rule_extra` lines added to the rule, with a `production`
    /// environment (namespaces labelled env=production).
    fn policy_with_rule(&self, sources: &str, github: &str, rule_extra: &str) -> Policy {
        Policy::from_yaml(&format!(
            r#"
version: 1
github:
  apiHost: "{api}"
  insecure: true
{github}
environments:
  - {{name: production, namespaceSelector: {{matchLabels: {{env: production}}}}, mode: enforce}}
rules:
  - name: acme
    images: ["{host}/acme/**"]
    repositories: [{{name: acme/api, id: "804070735"}}]
    attestationSources: {sources}
{rule_extra}"#,
            api = self.github.host(),
            host = self.registry.host(),
        ))
        .expect("test policy is valid")
    }

    fn checker(
        &self,
        settings: CheckSettings,
        options: GithubOptions,
    ) -> ImageChecker<HttpRegistry> {
        let mut registry = RegistryOptions::new(AllowedRegistries::Any);
        registry.hosts = vec![HostOptions::new(self.registry.host()).insecure()];
        registry.request_timeout = Duration::from_secs(2);
        let registry = HttpRegistry::new(registry).expect("registry client builds");
        ImageChecker::new(registry, Arc::clone(&self.roots), settings)
            .with_github(Arc::new(GithubClient::new(options)))
    }

    fn default_checker(&self) -> ImageChecker<HttpRegistry> {
        self.checker(CheckSettings::default(), GithubOptions::default())
    }

    /// A bundle for `image`'s digest as the kit's default build signs it, `edit` applied.
    fn mint_for(&self, image: &PushedImage, edit: impl Fn(MintSpec) -> MintSpec) -> String {
        let hex = image.manifest.hex();
        let spec = MintSpec::github_build(hex).with_subject(
            &format!("{}/{}", self.registry.host(), image.repository),
            hex,
        );
        self.instance.mint(&edit(spec))
    }

    /// An image with nothing in the registry, listed at GitHub with a valid bundle about
    /// another image.
    fn image_listed_with_another_images_bundle(&self) -> PushedImage {
        let image = push_unattested_image(&self.registry.client(), "acme/api", "v1");
        let other = push_unattested_image(&self.registry.client(), "acme/api", "other");
        self.github.add(
            REPOSITORY,
            &image.manifest.digest,
            &self.mint_for(&other, |spec| spec),
        );
        image
    }

    /// An image with nothing in the registry, and a valid attestation for it at GitHub.
    fn image_attested_at_github(&self, tag: &str) -> PushedImage {
        let image = push_unattested_image(&self.registry.client(), "acme/api", tag);
        self.github.add(
            REPOSITORY,
            &image.manifest.digest,
            &self.mint_for(&image, |spec| spec),
        );
        image
    }
}

fn assert_verified_from(check: &ImageCheck, image: &PushedImage, expected: AttestationSource) {
    match &check.outcome {
        ImageOutcome::Verified { digest, source, .. } => {
            assert_eq!(digest, &image.manifest.digest);
            assert_eq!(*source, Some(expected));
        }
        other => panic!("{} should verify, got {other:?}", check.image),
    }
}

fn failure(check: &ImageCheck) -> (FailureKind, &str) {
    match &check.outcome {
        ImageOutcome::Failed { kind, reason, .. } => (*kind, reason.as_str()),
        other => panic!("{} should fail, got {other:?}", check.image),
    }
}

#[tokio::test]
async fn an_image_without_registry_attestations_is_admitted_through_the_github_api() {
    let setup = Setup::new();
    let image = setup.image_attested_at_github("v1");
    let checker = setup.default_checker();

    // Defaults unchanged: a rule without `attestationSources` asks the registry only.
    let registry_only = Policy::from_yaml(&format!(
        "version: 1\nrules:\n  - name: acme\n    images: [\"{}/acme/**\"]\n    repositories: [{{name: acme/api, id: \"804070735\"}}]\n",
        setup.registry.host()
    ))
    .unwrap();
    let check = checker.check(&registry_only, &image.reference).await;
    assert_eq!(failure(&check).0, FailureKind::NoAttestation);
    assert!(
        setup.github.requests().is_empty(),
        "{:?}",
        setup.github.requests()
    );

    let check = checker
        .check(&setup.policy("[registry, github]", ""), &image.reference)
        .await;
    assert_verified_from(&check, &image, AttestationSource::Github);
    let ImageOutcome::Verified { source_url, .. } = &check.outcome else {
        unreachable!()
    };
    let listing = format!(
        "{}/{REPOSITORY}/attestations/{}",
        setup.github.base_url(),
        image.manifest.digest
    );
    assert!(
        source_url
            .as_deref()
            .is_some_and(|url| url.starts_with(&listing)),
        "{source_url:?}"
    );

    let requests = setup.github.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].accept.as_deref(),
        Some("application/vnd.github+json")
    );
    assert_eq!(requests[0].api_version.as_deref(), Some(GITHUB_API_VERSION));
    assert_eq!(
        requests[0].authorization, None,
        "no token configured, none sent"
    );

    // The decision record says where the attestation came from.
    let decision = decide(
        Subject::settled(&check.outcome),
        Mode::Enforce,
        BreakGlass::Inactive,
    );
    let record = DecisionRecord::new(
        &RequestContext::default(),
        &check,
        &decision,
        Mode::Enforce,
        None,
        jiff::Timestamp::now(),
    );
    let record = serde_json::to_value(&record).unwrap();
    assert_eq!(record["attestationSource"], "github");
    assert!(record["attestationUrl"]
        .as_str()
        .unwrap()
        .starts_with(&listing));
}

#[tokio::test]
async fn the_token_file_is_sent_to_the_api_host() {
    let setup = Setup::new();
    let image = setup.image_attested_at_github("v1");
    let directory = tempfile::tempdir().unwrap();
    let token = directory.path().join("token");
    std::fs::write(&token, "github_pat_example\n").unwrap();
    let policy = setup.policy("[github]", &format!("  tokenFile: \"{}\"", token.display()));
    let check = setup
        .default_checker()
        .check(&policy, &image.reference)
        .await;
    assert_verified_from(&check, &image, AttestationSource::Github);
    assert_eq!(
        setup.github.requests()[0].authorization.as_deref(),
        Some("Bearer github_pat_example")
    );
}

#[tokio::test]
async fn a_bundle_for_another_digest_is_refused() {
    let setup = Setup::new();
    let image = setup.image_listed_with_another_images_bundle();
    let check = setup
        .default_checker()
        .check(&setup.policy("[github]", ""), &image.reference)
        .await;
    let (kind, reason) = failure(&check);
    assert_eq!(kind, FailureKind::NotVerified, "{reason}");
    assert!(reason.contains("bundle 1"), "{reason}");
}

#[tokio::test]
async fn pagination_finds_a_bundle_on_page_two() {
    let setup = Setup::new();
    let image = setup.image_listed_with_another_images_bundle();
    setup.github.add(
        REPOSITORY,
        &image.manifest.digest,
        &setup.mint_for(&image, |spec| spec),
    );
    setup.github.set_page_size(1);
    let check = setup
        .default_checker()
        .check(&setup.policy("[github]", ""), &image.reference)
        .await;
    assert_verified_from(&check, &image, AttestationSource::Github);
    let pages: Vec<String> = setup
        .github
        .requests()
        .into_iter()
        .map(|request| request.target)
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[1].contains("page=2"), "{pages:?}");

    // Pages are bounded: with one page allowed, the bundle on page 2 is never seen.
    let setup_one_page = GithubOptions {
        max_pages: 1,
        ..GithubOptions::default()
    };
    let check = setup
        .checker(CheckSettings::default(), setup_one_page)
        .check(&setup.policy("[github]", ""), &image.reference)
        .await;
    let (kind, reason) = failure(&check);
    assert_eq!(kind, FailureKind::NotVerified, "{reason}");
    assert!(reason.contains("more than 1 pages"), "{reason}");
}

#[tokio::test]
async fn an_unchanged_listing_is_revalidated_with_its_etag() {
    let setup = Setup::new();
    let image = setup.image_attested_at_github("v1");
    // Nothing kept per digest, so every check asks GitHub again.
    let settings = CheckSettings {
        verified_ttl: Duration::ZERO,
        failure_ttl: Duration::ZERO,
        tag_ttl: Duration::ZERO,
        ..CheckSettings::default()
    };
    let checker = setup.checker(settings, GithubOptions::default());
    let policy = setup.policy("[github]", "");
    for _ in 0..3 {
        let check = checker.check(&policy, &image.reference).await;
        assert_verified_from(&check, &image, AttestationSource::Github);
    }
    let requests = setup.github.requests();
    assert_eq!(setup.github.count(200), 1, "{requests:?}");
    assert_eq!(setup.github.count(304), 2, "{requests:?}");
    assert!(requests[1].if_none_match.is_some(), "{requests:?}");
}

#[tokio::test]
async fn a_rate_limited_github_degrades_to_the_registry_and_says_so() {
    let setup = Setup::new();
    let in_registry = push_attested_image(
        &setup.registry.client(),
        "acme/api",
        "registry",
        &setup.instance,
        |spec| spec,
    );
    let at_github_only = setup.image_attested_at_github("github");
    setup.github.rate_limit(RateLimit {
        status: 429,
        reset_in: 120,
        times: 1,
    });
    let checker = setup.default_checker();
    let policy = setup.policy("[github]", "");

    // GitHub refuses: the registry is asked instead, and admits what it holds.
    let check = checker.check(&policy, &in_registry.reference).await;
    assert_verified_from(&check, &in_registry, AttestationSource::Registry);
    assert_eq!(setup.github.count(429), 1);

    // Until the reset GitHub is not asked again, though it would answer now; an image
    // attested only there fails as a source failure (not "no attestation": GitHub may hold
    // one), with a reason that says why.
    let check = checker.check(&policy, &at_github_only.reference).await;
    let (kind, reason) = failure(&check);
    assert_eq!(kind, FailureKind::Registry, "{reason}");
    assert!(reason.contains("rate limiting"), "{reason}");
    assert!(
        reason.contains("registry (asked because GitHub is unavailable)"),
        "{reason}"
    );
    assert_eq!(
        setup.github.requests().len(),
        1,
        "{:?}",
        setup.github.requests()
    );
}

#[tokio::test]
async fn a_primary_rate_limit_403_is_a_rate_limit() {
    let setup = Setup::new();
    let image = setup.image_attested_at_github("v1");
    // GitHub answers its primary rate limit with 403 and `x-ratelimit-remaining: 0` (a 403
    // without those headers is a refused token: see the client's unit tests).
    setup.github.rate_limit(RateLimit {
        status: 403,
        reset_in: 30,
        times: 1,
    });
    let check = setup
        .default_checker()
        .check(&setup.policy("[github]", ""), &image.reference)
        .await;
    let (kind, reason) = failure(&check);
    assert_eq!(kind, FailureKind::Registry, "{reason}");
    assert!(reason.contains("rate limiting"), "{reason}");
    assert!(
        reason.contains("asked because GitHub is unavailable"),
        "{reason}"
    );
}

#[tokio::test]
async fn bundle_urls_are_followed_only_to_hosts_the_policy_names() {
    let setup = Setup::new();
    let image = setup.image_attested_at_github("v1");
    let policy = setup.policy("[github]", "");

    // Newer API versions give only a bundle_url: on the API host, it is followed.
    setup.github.serve_bundles_by_url(&setup.github.base_url());
    let check = setup
        .default_checker()
        .check(&policy, &image.reference)
        .await;
    assert_verified_from(&check, &image, AttestationSource::Github);
    assert!(setup
        .github
        .requests()
        .iter()
        .any(|request| request.target.starts_with("/bundles/")));

    // On a host the policy does not name, it is not: no connection is even attempted.
    let elsewhere = ConnectionRecorder::start();
    setup.github.serve_bundles_by_url(&elsewhere.base_url());
    let check = setup
        .default_checker()
        .check(&policy, &image.reference)
        .await;
    let (kind, reason) = failure(&check);
    assert_eq!(kind, FailureKind::NoAttestation, "{reason}");
    assert!(reason.contains("not followed"), "{reason}");
    assert_eq!(elsewhere.connection_count(), 0);

    // Named in bundleHosts, the same host is followed (and asked).
    let named = setup.policy(
        "[github]",
        &format!("  bundleHosts: [\"{}\"]", elsewhere.host()),
    );
    let check = setup
        .default_checker()
        .check(&named, &image.reference)
        .await;
    assert!(matches!(check.outcome, ImageOutcome::Failed { .. }));
    assert!(elsewhere.connection_count() > 0);
}

#[tokio::test]
async fn an_oversized_listing_is_refused_within_its_bound() {
    let setup = Setup::new();
    let image = setup.image_attested_at_github("v1");
    setup.github.pad_listings(64 * 1024);
    let options = GithubOptions {
        max_listing_bytes: 32 * 1024,
        ..GithubOptions::default()
    };
    let check = setup
        .checker(CheckSettings::default(), options)
        .check(&setup.policy("[github]", ""), &image.reference)
        .await;
    let (kind, reason) = failure(&check);
    assert_eq!(kind, FailureKind::Registry, "{reason}");
    assert!(
        reason.contains("larger than the 32768 bytes allowed"),
        "{reason}"
    );
}

const SPDX: &str = "https://spdx.dev/Document/v2.3";

/// The predicate types an image was admitted on, in the rule's order, with where it was found.
fn attested_types(check: &ImageCheck) -> Vec<&str> {
    match &check.outcome {
        ImageOutcome::Verified { attestations, .. } => attestations
            .iter()
            .map(|entry| entry.predicate_type.as_str())
            .collect(),
        other => panic!("{} should verify, got {other:?}", check.image),
    }
}

/// Issue 13, item 2 with item 1: each required attestation is looked for source by source in
/// the rule's order. Provenance and SBOM both listed by GitHub admit the image from there; an
/// SBOM only in the registry counts when the rule lists the registry too, and is named missing
/// when it does not.
#[tokio::test(flavor = "multi_thread")]
async fn required_attestations_are_found_at_github_and_in_the_registry() {
    let setup = Setup::new();
    let checker = setup.default_checker();
    let required = "    requireAttestations: [provenance, spdx]\n";

    let both_at_github = setup.image_attested_at_github("both");
    setup.github.add(
        REPOSITORY,
        &both_at_github.manifest.digest,
        &setup.mint_for(&both_at_github, |spec| spec.with_predicate_type(SPDX)),
    );
    let github_only = setup.policy_with_rule("[github]", "", required);
    let check = checker.check(&github_only, &both_at_github.reference).await;
    assert_verified_from(&check, &both_at_github, AttestationSource::Github);
    assert_eq!(
        attested_types(&check),
        ["https://slsa.dev/provenance/v1", SPDX]
    );

    let split = setup.image_attested_at_github("split");
    let client = setup.registry.client();
    attach_attestation(
        &client,
        &split.repository,
        &split.manifest,
        &setup.mint_for(&split, |spec| spec.with_predicate_type(SPDX)),
        ReferrersTagSchema::Auto,
    );
    let check = checker.check(&github_only, &split.reference).await;
    let (kind, reason) = failure(&check);
    assert_eq!(kind, FailureKind::NoAttestation, "{reason}");
    assert!(reason.contains(&format!("required {SPDX}")), "{reason}");
    assert!(
        !reason.contains("required https://slsa.dev/provenance/v1"),
        "the provenance was found at GitHub: {reason}"
    );
    let both_sources = setup.policy_with_rule("[github, registry]", "", required);
    let check = checker.check(&both_sources, &split.reference).await;
    assert_eq!(
        attested_types(&check),
        ["https://slsa.dev/provenance/v1", SPDX]
    );
}

/// Issue 13, item 3 with items 1 and 2: an environment that requires an SBOM refuses, in its
/// namespaces only, an image whose only attestation GitHub lists is its provenance, and the
/// reason names the environment; the same cached listing admits it elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn an_environment_requiring_an_sbom_is_held_to_it_with_github_listings() {
    let setup = Setup::new();
    let checker = setup.default_checker();
    let image = setup.image_attested_at_github("v1");
    let policy = setup.policy_with_rule(
        "[github]",
        "",
        "    environments:\n      - {name: production, requireAttestations: [provenance, spdx]}\n",
    );
    let now = jiff::Timestamp::now();
    let elsewhere = checker
        .check_at(&policy, &image.reference, &Destination::Unselected, now)
        .await;
    assert_verified_from(&elsewhere, &image, AttestationSource::Github);
    let production = Destination::Environment("production".into());
    let check = checker
        .check_at(&policy, &image.reference, &production, now)
        .await;
    let (kind, reason) = failure(&check);
    assert_eq!(kind, FailureKind::NoAttestation, "{reason}");
    assert!(
        reason.contains(&format!(
            "required {SPDX} (environment \"production\" of rule \"acme\")"
        )),
        "{reason}"
    );
    assert_eq!(
        setup.github.requests().len(),
        1,
        "one listing, judged for both environments"
    );
}
