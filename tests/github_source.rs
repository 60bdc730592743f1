//! GitHub's attestations API as a source of bundles, end to end: a REAL registry from the
//! test kit (`ferro-oci-server`) holds the images, and a FAKE GitHub API from the test kit
//! (`testkit/src/github_api.rs`) lists the attestations — a fake because GitHub cannot be
//! reached from here. It serves the documented response shape with bundles minted by the
//! kit's private Sigstore instance, so every bundle is verified for real.

mod common;

use std::sync::Arc;
use std::time::Duration;

use provenance_gate::check::batch::{check_all, Budget};
use provenance_gate::check::{CheckSettings, FailureKind, ImageCheck, ImageChecker, ImageOutcome};
use provenance_gate::decision::{decide, BreakGlass, Subject};
use provenance_gate::evidence::records::{DecisionRecord, RequestContext};
use provenance_gate::github::{GithubClient, GithubMetrics, GithubOptions, GITHUB_API_VERSION};
use provenance_gate::policy::{AttestationSource, Destination, Mode, Policy};
use provenance_gate::registry::{
    AllowedRegistries, DockerConfig, HostOptions, HttpRegistry, RegistryOptions,
};
use provenance_gate::verify::TrustedRoots;
use provenance_gate_testkit::github_api::{FakeGithubApi, RateLimit, TestGithubApp};
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
        let roots = common::kit_roots(&instance);
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
        self.checker_with(settings, GithubClient::new(options))
    }

    fn checker_with(
        &self,
        settings: CheckSettings,
        github: GithubClient,
    ) -> ImageChecker<HttpRegistry> {
        let mut registry = RegistryOptions::new(AllowedRegistries::Any);
        registry.hosts = vec![HostOptions::new(self.registry.host()).insecure()];
        registry.request_timeout = Duration::from_secs(2);
        let registry = HttpRegistry::new(registry).expect("registry client builds");
        ImageChecker::new(registry, Arc::clone(&self.roots), settings).with_github(Arc::new(github))
    }

    /// A checker that keeps nothing per digest, so that every check asks GitHub again.
    fn uncached_checker(&self) -> ImageChecker<HttpRegistry> {
        self.checker(uncached(), GithubOptions::default())
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

fn uncached() -> CheckSettings {
    CheckSettings {
        verified_ttl: Duration::ZERO,
        failure_ttl: Duration::ZERO,
        tag_ttl: Duration::ZERO,
        ..CheckSettings::default()
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

/// A failure of the source (GitHub or the registry out of reach, or refusing), whose reason
/// names each of `fragments`.
fn assert_source_failure(check: &ImageCheck, fragments: &[&str]) {
    let (kind, reason) = failure(check);
    assert_eq!(kind, FailureKind::Registry, "{reason}");
    for fragment in fragments {
        assert!(reason.contains(fragment), "{fragment}: {reason}");
    }
}

fn assert_request_count(github: &FakeGithubApi, expected: usize) {
    let requests = github.requests();
    assert_eq!(requests.len(), expected, "{requests:?}");
}

fn assert_all_verified_at_github(checks: &[ImageCheck], images: &[PushedImage]) {
    assert_eq!(checks.len(), images.len());
    for (check, image) in checks.iter().zip(images) {
        assert_verified_from(check, image, AttestationSource::Github);
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
    let checker = setup.uncached_checker();
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
    assert_source_failure(
        &check,
        &[
            "rate limiting",
            "registry (asked because GitHub is unavailable)",
        ],
    );
    assert_request_count(&setup.github, 1);
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

/// The App's three files, as a mounted Secret holds them, and the policy's `app` block.
struct AppFiles {
    directory: tempfile::TempDir,
}

impl AppFiles {
    fn write(app: &TestGithubApp, key_pem: &str) -> AppFiles {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("app-id"), format!("{}\n", app.app_id)).unwrap();
        std::fs::write(
            directory.path().join("installation-id"),
            app.installation_id.to_string(),
        )
        .unwrap();
        std::fs::write(directory.path().join("private-key.pem"), key_pem).unwrap();
        AppFiles { directory }
    }

    fn policy_lines(&self) -> String {
        let path = |name: &str| self.directory.path().join(name).display().to_string();
        format!(
            "  app:\n    appIdFile: \"{}\"\n    installationIdFile: \"{}\"\n    privateKeyFile: \"{}\"",
            path("app-id"),
            path("installation-id"),
            path("private-key.pem")
        )
    }
}

fn targets_with_status(github: &FakeGithubApi, status: u16) -> Vec<String> {
    github
        .requests()
        .into_iter()
        .filter(|request| request.status == status)
        .map(|request| request.target)
        .collect()
}

// The fake GitHub API checks the App's JWT (signature with the App's public key, issuer,
// lifetime) as GitHub documents it, and then requires the installation tokens it issued.
#[tokio::test]
async fn github_app_credentials_are_exchanged_for_an_installation_token_that_is_kept_and_renewed_on_401(
) {
    let setup = Setup::new();
    let image = setup.image_attested_at_github("v1");
    let app = TestGithubApp::generate(123456, 424242);
    setup.github.require_app(&app);
    let files = AppFiles::write(&app, &app.private_key_pem);
    let policy = setup.policy("[github]", &files.policy_lines());
    let checker = setup.uncached_checker();

    for _ in 0..3 {
        let check = checker.check(&policy, &image.reference).await;
        assert_verified_from(&check, &image, AttestationSource::Github);
    }
    // One exchange, its token used for every listing while it is valid.
    assert_eq!(setup.github.tokens_issued(), 1);
    let requests = setup.github.requests();
    let exchange = &requests[0];
    assert_eq!(exchange.method, "POST");
    assert_eq!(exchange.target, "/app/installations/424242/access_tokens");
    assert_eq!(exchange.status, 201);
    let listings: Vec<_> = requests.iter().skip(1).collect();
    assert_eq!(listings.len(), 3, "{requests:?}");
    assert!(listings
        .iter()
        .all(|request| request.authorization.as_deref() == Some("Bearer ghs_fake1")));
    // The JWT: issued by the App, iat backdated 60 s, at most 10 minutes ahead.
    let claims = &setup.github.jwt_claims()[0];
    let now = jiff::Timestamp::now().as_second();
    assert_eq!(claims["iss"], 123456);
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!((now - 62..=now - 58).contains(&iat), "{claims}");
    assert!(exp > now && exp <= now + 600, "{claims}");

    // GitHub stops accepting the token: the listing's 401 renews it once, and admits.
    setup.github.revoke_tokens();
    let check = checker.check(&policy, &image.reference).await;
    assert_verified_from(&check, &image, AttestationSource::Github);
    assert_eq!(setup.github.tokens_issued(), 2);
    assert_eq!(setup.github.count(401), 1, "{:?}", setup.github.requests());
    assert_eq!(
        setup
            .github
            .requests()
            .last()
            .unwrap()
            .authorization
            .as_deref(),
        Some("Bearer ghs_fake2")
    );
}

#[tokio::test]
async fn a_wrong_app_key_is_refused_once_and_the_reason_says_so_and_pkcs8_keys_work() {
    let setup = Setup::new();
    let image = setup.image_attested_at_github("v1");
    let app = TestGithubApp::generate(7, 8);
    setup.github.require_app(&app);
    let impostor = TestGithubApp::generate(7, 8);
    let files = AppFiles::write(&app, &impostor.private_key_pem);
    let policy = setup.policy("[github]", &files.policy_lines());
    let checker = setup.uncached_checker();
    for _ in 0..2 {
        let check = checker.check(&policy, &image.reference).await;
        assert_source_failure(&check, &["refused the App's JWT (HTTP 401)"]);
    }
    // A refused exchange is not repeated for every listing.
    assert_request_count(&setup.github, 1);
    assert_eq!(setup.github.tokens_issued(), 0);

    // The right key, written as PKCS#8, is read as well (a rotated Secret: new content,
    // new exchange).
    std::fs::write(
        files.directory.path().join("private-key.pem"),
        app.private_key_pkcs8_pem(),
    )
    .unwrap();
    let check = checker.check(&policy, &image.reference).await;
    assert_verified_from(&check, &image, AttestationSource::Github);
    assert_eq!(setup.github.tokens_issued(), 1);

    // A key file that holds no key: refused before anything is sent.
    std::fs::write(files.directory.path().join("private-key.pem"), "not a key").unwrap();
    let asked = setup.github.requests().len();
    let check = checker.check(&policy, &image.reference).await;
    assert_source_failure(&check, &["private key", "is unusable"]);
    assert_request_count(&setup.github, asked);
}

/// `count` images, each with nothing in the registry and a valid attestation at GitHub.
fn images_attested_at_github(setup: &Setup, count: usize) -> Vec<PushedImage> {
    (0..count)
        .map(|index| setup.image_attested_at_github(&format!("v{index}")))
        .collect()
}

async fn check_review(
    checker: &Arc<ImageChecker<HttpRegistry>>,
    policy: &Arc<Policy>,
    images: &[PushedImage],
) -> Vec<ImageCheck> {
    let references: Vec<String> = images.iter().map(|image| image.reference.clone()).collect();
    let histogram = prometheus_client::metrics::histogram::Histogram::new([1.0]);
    let no_pull_secrets = Arc::new(DockerConfig::empty());
    check_all(
        checker,
        policy,
        (&references, &no_pull_secrets),
        &Destination::Unselected,
        jiff::Timestamp::now(),
        Budget::from_now(Duration::from_secs(20)),
        &histogram,
    )
    .await
}

#[tokio::test]
async fn many_digests_of_one_owner_in_one_review_are_listed_in_bulk() {
    let setup = Setup::new();
    let images = images_attested_at_github(&setup, 4);
    // Two entries a page: the four attestations take two pages, by the `after` cursor.
    setup.github.set_page_size(2);
    let checks = check_review(
        &Arc::new(setup.default_checker()),
        &Arc::new(setup.policy("[github]", "")),
        &images,
    )
    .await;
    for (check, image) in checks.iter().zip(&images) {
        assert_verified_from(check, image, AttestationSource::Github);
        let ImageOutcome::Verified { source_url, .. } = &check.outcome else {
            unreachable!()
        };
        assert!(
            source_url
                .as_deref()
                .unwrap()
                .contains("/orgs/acme/attestations/bulk-list"),
            "{source_url:?}"
        );
    }
    let requests = setup.github.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|request| request.method == "POST"));
    assert!(requests[1].target.contains("after=2"), "{requests:?}");
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    let mut asked: Vec<&str> = body["subject_digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|digest| digest.as_str().unwrap())
        .collect();
    asked.sort();
    let mut expected: Vec<&str> = images
        .iter()
        .map(|image| image.manifest.digest.as_str())
        .collect();
    expected.sort();
    assert_eq!(asked, expected);
}

#[tokio::test]
async fn without_the_bulk_endpoint_or_below_the_threshold_digests_are_listed_one_by_one() {
    let setup = Setup::new();
    let images = images_attested_at_github(&setup, 3);
    setup.github.without_bulk_endpoint();
    let checks = check_review(
        &Arc::new(setup.default_checker()),
        &Arc::new(setup.policy("[github]", "")),
        &images,
    )
    .await;
    assert_all_verified_at_github(&checks, &images);
    // Neither the organisation's nor a personal account's bulk endpoint exists.
    assert_eq!(targets_with_status(&setup.github, 404).len(), 2);
    let listings = targets_with_status(&setup.github, 200);
    assert_eq!(listings.len(), 3, "{listings:?}");
    assert!(listings
        .iter()
        .all(|target| target.starts_with("/repos/acme/api/attestations/")));

    // Two uncached digests are below the default threshold of three: no bulk request.
    let setup = Setup::new();
    let images = images_attested_at_github(&setup, 2);
    let checks = check_review(
        &Arc::new(setup.default_checker()),
        &Arc::new(setup.policy("[github]", "")),
        &images,
    )
    .await;
    assert_all_verified_at_github(&checks, &images);
    assert!(setup
        .github
        .requests()
        .iter()
        .all(|request| request.method == "GET"));
}

#[tokio::test]
async fn github_requests_rate_limits_and_fallbacks_are_in_the_metrics() {
    let setup = Setup::new();
    let image = setup.image_attested_at_github("v1");
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = GithubMetrics::register(&mut registry);
    let checker = setup.checker_with(
        uncached(),
        GithubClient::new(GithubOptions::default()).with_metrics(metrics),
    );
    let policy = setup.policy("[github]", "");
    let check = checker.check(&policy, &image.reference).await;
    assert_verified_from(&check, &image, AttestationSource::Github);
    setup.github.rate_limit(RateLimit {
        status: 429,
        reset_in: 120,
        times: 1,
    });
    let check = checker.check(&policy, &image.reference).await;
    assert_eq!(failure(&check).0, FailureKind::Registry);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "provenance_gate_github_requests_total{endpoint=\"listing\",status=\"2xx\"} 1".to_owned(),
        "provenance_gate_github_requests_total{endpoint=\"listing\",status=\"4xx\"} 1".to_owned(),
        format!(
            "provenance_gate_github_rate_limit_remaining{{host=\"{}\"}} 0",
            setup.github.host()
        ),
        "provenance_gate_github_degraded_to_registry_total 1".to_owned(),
    ] {
        assert!(
            text.lines().any(|found| found == line),
            "{line} not in\n{text}"
        );
    }
}

#[tokio::test]
async fn bulk_requests_are_bounded_in_digests_and_count() {
    let setup = Setup::new();
    let images = images_attested_at_github(&setup, 5);
    let options = GithubOptions {
        bulk_max_digests: 2,
        bulk_max_requests: 2,
        ..GithubOptions::default()
    };
    let checks = check_review(
        &Arc::new(setup.checker(CheckSettings::default(), options)),
        &Arc::new(setup.policy("[github]", "")),
        &images,
    )
    .await;
    assert_all_verified_at_github(&checks, &images);
    let requests = setup.github.requests();
    let bulk: Vec<_> = requests
        .iter()
        .filter(|request| request.method == "POST")
        .collect();
    assert_eq!(bulk.len(), 2, "{requests:?}");
    for request in &bulk {
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(
            body["subject_digests"].as_array().unwrap().len(),
            2,
            "{body}"
        );
    }
    // The fifth digest, past the two requests allowed, is listed on its own.
    let single: Vec<_> = requests
        .iter()
        .filter(|request| request.method == "GET")
        .collect();
    assert_eq!(single.len(), 1, "{requests:?}");
}

#[tokio::test]
async fn a_personal_accounts_digests_are_listed_in_bulk_under_users() {
    let setup = Setup::new();
    setup.github.personal_account("acme");
    let first = images_attested_at_github(&setup, 3);
    let checker = Arc::new(setup.default_checker());
    let policy = Arc::new(setup.policy("[github]", ""));
    let review = |images: Vec<PushedImage>| {
        let (checker, policy) = (Arc::clone(&checker), Arc::clone(&policy));
        async move {
            let checks = check_review(&checker, &policy, &images).await;
            assert_all_verified_at_github(&checks, &images);
        }
    };
    review(first).await;
    let targets = |method: &str| -> Vec<String> {
        setup
            .github
            .requests()
            .into_iter()
            .filter(|request| request.method == method)
            .map(|request| format!("{} {}", request.status, request.target))
            .collect()
    };
    let posts = targets("POST");
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts[0].starts_with("404 /orgs/acme/"), "{posts:?}");
    assert!(posts[1].starts_with("200 /users/acme/"), "{posts:?}");
    assert!(targets("GET").is_empty(), "{:?}", targets("GET"));

    // The next review asks the personal account's endpoint at once.
    let second: Vec<PushedImage> = (10..13)
        .map(|index| setup.image_attested_at_github(&format!("v{index}")))
        .collect();
    review(second).await;
    let posts = targets("POST");
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert!(posts[2].starts_with("200 /users/acme/"), "{posts:?}");
}
