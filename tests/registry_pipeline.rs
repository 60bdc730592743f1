//! The whole image pipeline (policy → resolve → referrers → bundle → verify → rule) against
//! REAL registries started by the test kit: Debian's `docker-registry` (distribution 2.8, no
//! referrers API, so the tag-schema path; plain, TLS + Basic auth, TLS + token auth) and
//! `ferro-oci-server` (OCI 1.1 referrers API). Faults come from a proxy in front of a real
//! registry. Attestations are minted by the kit's private Sigstore instance and pushed as
//! `actions/attest-build-provenance` pushes them.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use provenance_gate::check::{
    CheckSettings, FailureKind, ImageCheck, ImageChecker, ImageOutcome, DEFAULT_MAX_VERIFICATIONS,
    MAX_REASON_BYTES,
};
use provenance_gate::decision::{decide, BreakGlass, Subject};
use provenance_gate::evidence::records::{DecisionRecord, RequestContext};
use provenance_gate::policy::{Mode, Policy};
use provenance_gate::registry::{
    AllowedRegistries, DockerConfig, HostOptions, HttpRegistry, RegistryOptions,
};
use provenance_gate::verify::TrustedRoots;
use provenance_gate_testkit::registry::{
    attach_artifact, attach_attestation, push_attested_image, push_buildkit_attestation_manifest,
    push_index, push_multi_arch_index, push_oversized_manifest, push_referrer_with_corrupt_layer,
    push_unattested_image, push_untagged_image, AttestPlatforms, ConnectionRecorder, Descriptor,
    DistributionRegistry, Fault, FaultProxy, FerroRegistry, IndexAttestations, LayerCorruption,
    Platform, PushedAttestation, PushedImage, ReferrersTagSchema, RegistryClient, TestRegistry,
    TokenAccess, SIGSTORE_BUNDLE_ARTIFACT_TYPE,
};
use provenance_gate_testkit::{MintSpec, TestInstance};

/// The rule trusts the kit's default build (`acme/api`, id 804070735) for `<host>/acme/**`.
fn policy_for(host: &str, extra: &str) -> Policy {
    Policy::from_yaml(&format!(
        r#"
version: 1
exemptImages: ["{host}/exempt/**"]
unmatchedImages: deny
rules:
  - name: acme
    images: ["{host}/acme/**"]
    repositories: [{{name: acme/api, id: "804070735"}}]
{extra}"#
    ))
    .expect("test policy is valid")
}

/// Like [`policy_for`], but only the `deploy.yml` workflow's builds are trusted.
fn deploy_only_policy(host: &str) -> Policy {
    Policy::from_yaml(&format!(
        "version: 1\nrules:\n  - name: acme\n    images: [\"{host}/acme/**\"]\n    repositories: [{{name: acme/api, id: \"804070735\"}}]\n    workflows: [\".github/workflows/deploy.yml\"]\n"
    ))
    .expect("test policy is valid")
}

struct Setup {
    instance: TestInstance,
    roots: Arc<TrustedRoots>,
}

impl Setup {
    fn new() -> Setup {
        let instance = TestInstance::timestamp_only();
        let roots = common::kit_roots(&instance);
        Setup {
            instance,
            roots: Arc::new(roots),
        }
    }

    fn checker(
        &self,
        host: HostOptions,
        credentials: DockerConfig,
        settings: CheckSettings,
    ) -> ImageChecker<HttpRegistry> {
        let mut options = RegistryOptions::new(AllowedRegistries::Any);
        options.hosts = vec![host];
        options.credentials = credentials;
        options.request_timeout = Duration::from_secs(2);
        options.connect_timeout = Duration::from_secs(1);
        let registry = HttpRegistry::new(options).expect("registry client builds");
        ImageChecker::new(registry, Arc::clone(&self.roots), settings)
    }

    fn plain_checker(&self, registry: &dyn TestRegistry) -> ImageChecker<HttpRegistry> {
        self.checker(
            HostOptions::new(registry.host()).insecure(),
            DockerConfig::empty(),
            CheckSettings::default(),
        )
    }

    /// A bundle about `subject` in `client`'s `repository`, as the kit's default build
    /// signs it, `edit` applied; on one line, ready for JSON Lines.
    fn mint(
        &self,
        client: &RegistryClient,
        repository: &str,
        subject: &Descriptor,
        edit: impl Fn(MintSpec) -> MintSpec,
    ) -> String {
        let spec = MintSpec::github_build(subject.hex())
            .with_subject(&format!("{}/{repository}", client.host()), subject.hex());
        let bundle: serde_json::Value =
            serde_json::from_str(&self.instance.mint(&edit(spec))).expect("minted JSON");
        bundle.to_string()
    }

    /// Attaches a valid attestation (`edit` applied) to `subject`.
    fn attest(
        &self,
        client: &RegistryClient,
        subject: &Descriptor,
        edit: impl Fn(MintSpec) -> MintSpec,
    ) -> PushedAttestation {
        let bundle = self.mint(client, "acme/api", subject, edit);
        attach_attestation(
            client,
            "acme/api",
            subject,
            &bundle,
            ReferrersTagSchema::Auto,
        )
    }
}

/// An attested image in a plain distribution registry, reached through a fault-injecting,
/// counting proxy.
struct Proxied {
    setup: Setup,
    registry: DistributionRegistry,
    image: PushedImage,
    proxy: FaultProxy,
    /// The image's reference through the proxy.
    reference: String,
}

impl Proxied {
    fn attested_image() -> Proxied {
        Proxied::with_image(|client, instance| {
            push_attested_image(client, "acme/api", "v1", instance, |spec| spec)
        })
    }

    /// The image `push` pushes (directly, not through the proxy).
    fn with_image(push: impl FnOnce(&RegistryClient, &TestInstance) -> PushedImage) -> Proxied {
        let setup = Setup::new();
        let registry = DistributionRegistry::plain();
        let image = push(&registry.client(), &setup.instance);
        let proxy = FaultProxy::start(&registry);
        let reference = image.reference.replace(&registry.host(), &proxy.host());
        Proxied {
            setup,
            registry,
            image,
            proxy,
            reference,
        }
    }

    /// Attaches a valid attestation (`edit` applied) to the image, after the ones it has.
    fn attest(&self, edit: impl Fn(MintSpec) -> MintSpec) -> PushedAttestation {
        self.setup
            .attest(&self.registry.client(), &self.image.manifest, edit)
    }

    /// Attaches referrers of the bundle artifact type, each holding `count` copies of a
    /// bundle about another digest (verifiable, never for this image), in JSON Lines.
    fn attach_stuffed_referrers(&self, referrers: usize, count: usize) -> Vec<PushedAttestation> {
        let client = self.registry.client();
        let elsewhere = self
            .setup
            .mint(&client, "acme/api", &self.image.manifest, |spec| {
                spec.with_subject("elsewhere", &"ab".repeat(32))
            });
        let lines = vec![elsewhere; count].join("\n");
        (0..referrers)
            .map(|position| {
                // Trailing blank lines, which JSON Lines ignores, keep the blobs distinct.
                let content = format!("{lines}{}", "\n".repeat(position + 1));
                attach_artifact(
                    &client,
                    "acme/api",
                    &self.image.manifest,
                    SIGSTORE_BUNDLE_ARTIFACT_TYPE,
                    &content,
                    ReferrersTagSchema::Auto,
                )
            })
            .collect()
    }

    fn manifest_gets(&self, digest: &str) -> usize {
        self.proxy
            .count("GET", &format!("/v2/acme/api/manifests/{digest}"))
    }

    /// A checker (with its own, empty caches) that reaches the registry through the proxy.
    fn checker(&self, settings: CheckSettings) -> ImageChecker<HttpRegistry> {
        self.setup.checker(
            HostOptions::new(self.proxy.host()).insecure(),
            DockerConfig::empty(),
            settings,
        )
    }
}

fn assert_verified(check: &ImageCheck, expected_digest: &str) {
    match &check.outcome {
        ImageOutcome::Verified {
            digest,
            attestation,
            ..
        } => {
            assert_eq!(digest, expected_digest);
            assert_eq!(
                attestation.certificate.source_repository_uri.as_deref(),
                Some("https://github.com/acme/api")
            );
            let pinned = check.pinned.as_deref().expect("pinned reference");
            assert!(pinned.ends_with(&format!("@{expected_digest}")), "{pinned}");
        }
        other => panic!("{} should verify, got {other:?}", check.image),
    }
}

/// The decision record of `check` in an enforcing namespace.
fn enforced_record(check: &ImageCheck) -> DecisionRecord {
    let decision = decide(
        Subject::settled(&check.outcome),
        Mode::Enforce,
        BreakGlass::Inactive,
    );
    DecisionRecord::new(
        &RequestContext::default(),
        check,
        &decision,
        Mode::Enforce,
        None,
        jiff::Timestamp::now(),
    )
}

fn assert_failed(check: &ImageCheck, kind: FailureKind, fragment: &str) {
    match &check.outcome {
        ImageOutcome::Failed {
            kind: actual,
            reason,
            ..
        } => {
            assert_eq!(*actual, kind, "{}: {reason}", check.image);
            assert!(
                reason.contains(fragment),
                "{}: reason {reason:?} lacks {fragment:?}",
                check.image
            );
        }
        other => panic!("{} should fail, got {other:?}", check.image),
    }
}

/// Attested allowed, unattested denied, another digest's attestation and an untrusted
/// repository denied: the same table on the tag-schema registry and the referrers-API one.
async fn basic_cases(registry: &dyn TestRegistry) {
    let setup = Setup::new();
    let host = registry.host();
    let client = registry.client();
    let policy = policy_for(&host, "");
    let checker = setup.plain_checker(registry);

    let attested = push_attested_image(&client, "acme/api", "v1", &setup.instance, |spec| spec);
    assert_verified(
        &checker.check(&policy, &attested.reference).await,
        &attested.manifest_digest,
    );

    let unattested = push_unattested_image(&client, "acme/api", "bare");
    let check = checker.check(&policy, &unattested.reference).await;
    assert_failed(
        &check,
        FailureKind::NoAttestation,
        &format!("no attestation found for {}", unattested.manifest_digest),
    );

    let other_subject = push_attested_image(
        &client,
        "acme/api",
        "other-subject",
        &setup.instance,
        |spec: MintSpec| spec.with_subject("elsewhere", &"ab".repeat(32)),
    );
    let check = checker.check(&policy, &other_subject.reference).await;
    assert_failed(
        &check,
        FailureKind::NotVerified,
        "does not match any subject",
    );

    let untrusted = push_attested_image(
        &client,
        "acme/api",
        "fork",
        &setup.instance,
        |spec: MintSpec| {
            spec.with_repository("mallory/api")
                .with_repository_ids("999", "888")
        },
    );
    let check = checker.check(&policy, &untrusted.reference).await;
    assert_failed(&check, FailureKind::PolicyViolation, "mallory/api");
}

#[tokio::test(flavor = "multi_thread")]
async fn distribution_tag_schema_basic_cases() {
    basic_cases(&DistributionRegistry::plain()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ferro_referrers_api_basic_cases() {
    basic_cases(&FerroRegistry::start()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_referrer_layer_and_an_oversized_manifest_are_refused() {
    let setup = Setup::new();
    let registry = DistributionRegistry::plain();
    let policy = policy_for(&registry.host(), "");
    let checker = setup.plain_checker(&registry);
    for (tag, corruption) in [
        ("flipped", LayerCorruption::BitFlipAtRest),
        ("substituted", LayerCorruption::SubstitutedAtRest),
        ("size", LayerCorruption::SizeMismatch),
    ] {
        let image = push_referrer_with_corrupt_layer(
            &registry,
            "acme/api",
            tag,
            &setup.instance,
            corruption,
            |spec| spec,
        );
        let check = checker.check(&policy, &image.reference).await;
        match &check.outcome {
            ImageOutcome::Failed { reason, .. } => {
                assert!(
                    reason.contains(image.referrer_digest()),
                    "{corruption:?}: {reason}"
                );
            }
            other => panic!("{corruption:?} must be denied, got {other:?}"),
        }
    }
    // Distribution refuses manifests over 4 MiB itself; ferro stores them.
    let ferro = FerroRegistry::start();
    let oversized = push_oversized_manifest(&ferro.client(), "acme/api", "huge", 5 * 1024 * 1024)
        .expect("ferro stores a 5 MiB manifest");
    let checker = setup.plain_checker(&ferro);
    let check = checker
        .check(&policy_for(&ferro.host(), ""), &oversized.reference)
        .await;
    assert_failed(&check, FailureKind::Registry, "larger than");
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_indexes() {
    let setup = Setup::new();
    let registry = FerroRegistry::start();
    let client = registry.client();
    let policy = policy_for(&registry.host(), "");
    let checker = setup.plain_checker(&registry);
    let platforms = [Platform::linux_amd64(), Platform::linux_arm64()];

    let attested_index = push_multi_arch_index(
        &client,
        "acme/api",
        "index",
        &platforms,
        &setup.instance,
        IndexAttestations {
            index: true,
            platforms: AttestPlatforms::None,
        },
        |spec| spec,
    );
    let check = checker.check(&policy, &attested_index.reference).await;
    assert_verified(&check, &attested_index.index_digest);
    assert!(matches!(
        check.outcome,
        ImageOutcome::Verified {
            platforms_checked: None,
            ..
        }
    ));

    let platforms_only = push_multi_arch_index(
        &client,
        "acme/api",
        "platforms",
        &platforms,
        &setup.instance,
        IndexAttestations {
            index: false,
            platforms: AttestPlatforms::All,
        },
        |spec| spec,
    );
    let check = checker.check(&policy, &platforms_only.reference).await;
    assert_verified(&check, &platforms_only.index_digest);
    assert!(matches!(
        check.outcome,
        ImageOutcome::Verified {
            platforms_checked: Some(2),
            ..
        }
    ));

    let one_missing = push_multi_arch_index(
        &client,
        "acme/api",
        "one-missing",
        &platforms,
        &setup.instance,
        IndexAttestations {
            index: false,
            platforms: AttestPlatforms::AllExcept(1),
        },
        |spec| spec,
    );
    let check = checker.check(&policy, &one_missing.reference).await;
    let missing_digest = &one_missing.platforms[1].1.manifest_digest;
    assert_failed(
        &check,
        FailureKind::NoAttestation,
        &format!("platform linux/arm64/v8 ({missing_digest})"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_failures_give_a_reason_within_the_time_bound() {
    let proxied = Proxied::attested_image();
    let policy = policy_for(&proxied.proxy.host(), "");
    let cases = [
        (Fault::Unauthorized, "credentials"),
        (Fault::NotFound, "not found"),
        (
            Fault::TooManyRequests {
                retry_after_seconds: 30,
            },
            "rate limiting",
        ),
        (Fault::InternalServerError, "HTTP 500"),
        (Fault::Stall, "did not answer within"),
    ];
    for (fault, fragment) in cases {
        // A fresh checker each time: nothing cached from the previous fault.
        let checker = proxied.checker(CheckSettings {
            per_image_timeout: Duration::from_secs(6),
            ..CheckSettings::default()
        });
        proxied.proxy.clear_faults();
        proxied.proxy.inject_everywhere(fault.clone());
        let started = Instant::now();
        let check = checker.check(&policy, &proxied.reference).await;
        let took = started.elapsed();
        assert_failed(&check, FailureKind::Registry, fragment);
        assert!(took < Duration::from_secs(4), "{fault:?} took {took:?}");
    }
    proxied.proxy.clear_faults();
}

/// A registry that answers 429 with `Retry-After` is not asked again, for any image, until
/// then: the caches remember failures per image, so without the pause every new image (and
/// every expired tag) asked the rate-limiting registry at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limiting_registry_is_left_alone_until_its_retry_after() {
    let proxied = Proxied::attested_image();
    let client = proxied.registry.client();
    for tag in ["v2", "v3", "v4"] {
        push_attested_image(&client, "acme/api", tag, &proxied.setup.instance, |spec| {
            spec
        });
    }
    let through_proxy = |tag: &str| proxied.reference.replace(":v1", &format!(":{tag}"));
    let policy = policy_for(&proxied.proxy.host(), "");
    let checker = proxied.checker(CheckSettings::default());
    proxied.proxy.inject_everywhere(Fault::TooManyRequests {
        retry_after_seconds: 30,
    });
    for tag in ["v1", "v2", "v3"] {
        let check = checker.check(&policy, &through_proxy(tag)).await;
        assert_failed(&check, FailureKind::Registry, "rate limiting");
    }
    assert_eq!(
        proxied.proxy.request_count(),
        1,
        "only the first image asks: {:?}",
        proxied.proxy.request_summary()
    );
    // Healthy again, but within its Retry-After: still not asked.
    proxied.proxy.clear_faults();
    let check = checker.check(&policy, &through_proxy("v4")).await;
    assert_failed(&check, FailureKind::Registry, "rate limiting");
    assert_eq!(proxied.proxy.request_count(), 1);
    // The pause belongs to this client's registry; another client asks and verifies.
    let fresh = proxied.checker(CheckSettings::default());
    let check = fresh.check(&policy, &through_proxy("v4")).await;
    assert!(
        matches!(check.outcome, ImageOutcome::Verified { .. }),
        "{:?}",
        check.outcome
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_checks_of_one_new_digest_cause_one_fetch_sequence() {
    let proxied = Proxied::attested_image();
    let (proxy, image) = (&proxied.proxy, &proxied.image);
    let policy = Arc::new(policy_for(&proxy.host(), ""));
    let reference = proxied.reference.clone();
    let checker = Arc::new(proxied.checker(CheckSettings::default()));
    proxy.clear_requests();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (checker, policy, reference) =
                (Arc::clone(&checker), Arc::clone(&policy), reference.clone());
            tokio::spawn(async move { checker.check(&policy, &reference).await })
        })
        .collect();
    for task in tasks {
        assert_verified(&task.await.unwrap(), &image.manifest_digest);
    }
    // One sequence: HEAD the tag; the referrers API (absent: 404); the referrers tag; the
    // referrer manifest; the bundle blob.
    let summary = proxy.request_summary();
    assert_eq!(proxy.request_count(), 5, "{summary:#?}");
    assert_eq!(
        proxy.count("HEAD", "/v2/acme/api/manifests/v1"),
        1,
        "{summary:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exempt_and_unmatched_images_cause_no_connection_attempt() {
    let setup = Setup::new();
    let recorder = ConnectionRecorder::start();
    let host = recorder.host();
    let policy = policy_for(
        "ghcr.io",
        "  - name: unreachable\n    images: [\"never.example/**\"]\n    owners: [{name: acme}]\n",
    );
    let exempt_policy = Policy::from_yaml(&format!(
        "version: 1\nexemptImages: [\"{host}/**\"]\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/**\"]\n    owners: [{{name: acme}}]\n"
    ))
    .unwrap();
    let checker = setup.checker(
        HostOptions::new(host.clone()).insecure(),
        DockerConfig::empty(),
        CheckSettings::default(),
    );
    let unmatched = checker.check(&policy, &format!("{host}/team/app:1")).await;
    assert!(
        matches!(unmatched.outcome, ImageOutcome::Unmatched { .. }),
        "{unmatched:?}"
    );
    let exempt = checker
        .check(&exempt_policy, &format!("{host}/team/app:1"))
        .await;
    assert!(matches!(exempt.outcome, ImageOutcome::Exempt), "{exempt:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(recorder.connection_count(), 0);
    // The recorder does count: a covered image on the same host connects.
    let covered_policy = policy_for(&host, "");
    let covered = checker
        .check(&covered_policy, &format!("{host}/acme/api:1"))
        .await;
    assert!(matches!(covered.outcome, ImageOutcome::Failed { .. }));
    assert!(
        recorder.connection_count() > 0,
        "the recorder must see a covered image's connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_basic_auth() {
    let setup = Setup::new();
    let registry = DistributionRegistry::tls_with_basic_auth();
    let image = push_attested_image(
        &registry.client(),
        "acme/api",
        "v1",
        &setup.instance,
        |spec| spec,
    );
    let host = registry.host();
    let policy = policy_for(&host, "");
    let ca = registry.ca_pem().expect("TLS registry has a CA");
    let credentials = registry.credentials().expect("basic auth credentials");
    let with_credentials = setup.checker(
        HostOptions::new(host.clone()).with_ca_pem(ca.clone()),
        DockerConfig::from_json(credentials.docker_config_json(&host).as_bytes()).unwrap(),
        CheckSettings::default(),
    );
    assert_verified(
        &with_credentials.check(&policy, &image.reference).await,
        &image.manifest_digest,
    );

    let anonymous = setup.checker(
        HostOptions::new(host.clone()).with_ca_pem(ca),
        DockerConfig::empty(),
        CheckSettings::default(),
    );
    assert_failed(
        &anonymous.check(&policy, &image.reference).await,
        FailureKind::Registry,
        "credentials",
    );

    let untrusted_ca = setup.checker(
        HostOptions::new(host.clone()),
        DockerConfig::empty(),
        CheckSettings::default(),
    );
    assert_failed(
        &untrusted_ca.check(&policy, &image.reference).await,
        FailureKind::Registry,
        "failed to reach registry",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_token_auth() {
    let setup = Setup::new();
    for access in [TokenAccess::AnonymousPull, TokenAccess::CredentialsRequired] {
        let registry = DistributionRegistry::tls_with_token_auth(access);
        let image = push_attested_image(
            &registry.client(),
            "acme/api",
            "v1",
            &setup.instance,
            |spec| spec,
        );
        let host = registry.host();
        let policy = policy_for(&host, "");
        let credentials = match registry.credentials() {
            Some(credentials) if access == TokenAccess::CredentialsRequired => {
                DockerConfig::from_json(credentials.docker_config_json(&host).as_bytes()).unwrap()
            }
            _ => DockerConfig::empty(),
        };
        let checker = setup.checker(
            HostOptions::new(host.clone()).with_ca_pem(registry.ca_pem().unwrap()),
            credentials,
            CheckSettings::default(),
        );
        assert_verified(
            &checker.check(&policy, &image.reference).await,
            &image.manifest_digest,
        );
        if access == TokenAccess::CredentialsRequired {
            let anonymous = setup.checker(
                HostOptions::new(host.clone()).with_ca_pem(registry.ca_pem().unwrap()),
                DockerConfig::empty(),
                CheckSettings::default(),
            );
            assert_failed(
                &anonymous.check(&policy, &image.reference).await,
                FailureKind::Registry,
                "credentials",
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_applies_at_once_to_a_cached_digest() {
    let proxied = Proxied::attested_image();
    let (proxy, image, reference) = (&proxied.proxy, &proxied.image, &proxied.reference);
    let checker = proxied.checker(CheckSettings::default());
    let lenient = policy_for(&proxy.host(), "");
    assert_verified(
        &checker.check(&lenient, reference).await,
        &image.manifest_digest,
    );
    let requests_after_first_check = proxy.request_count();

    // Same digest, cached facts, a stricter rule: denied at once. The only new request is
    // one GET of the manifest, to learn whether it is an index whose platforms might pass.
    let strict = deploy_only_policy(&proxy.host());
    let check = checker.check(&strict, reference).await;
    assert_failed(
        &check,
        FailureKind::PolicyViolation,
        ".github/workflows/release.yml",
    );
    let manifest_path = format!("/v2/acme/api/manifests/{}", image.manifest_digest);
    assert_eq!(
        proxy.request_count(),
        requests_after_first_check + 1,
        "{:#?}",
        proxy.request_summary()
    );
    assert_eq!(
        proxy.count("GET", &manifest_path),
        1,
        "{:#?}",
        proxy.request_summary()
    );
    let requests_after_denial = proxy.request_count();
    let again = checker.check(&strict, reference).await;
    assert_failed(
        &again,
        FailureKind::PolicyViolation,
        ".github/workflows/release.yml",
    );
    assert_eq!(proxy.request_count(), requests_after_denial);
    // And back: allowed again, still from the cache.
    assert_verified(
        &checker.check(&lenient, reference).await,
        &image.manifest_digest,
    );
    assert_eq!(proxy.request_count(), requests_after_denial);
}

/// The index `tag` in `client`'s `acme/api`, listing `entries`, checked under `policy`.
async fn check_index(
    checker: &ImageChecker<HttpRegistry>,
    policy: &Policy,
    client: &RegistryClient,
    tag: &str,
    entries: &[Descriptor],
) -> (ImageCheck, String) {
    let index = push_index(client, "acme/api", tag, entries);
    let reference = format!("{}/acme/api:{tag}", client.host());
    (checker.check(policy, &reference).await, index.digest)
}

fn index_entry(image: &PushedImage, platform: Option<Platform>, annotated: bool) -> Descriptor {
    let mut entry = Descriptor {
        platform,
        ..image.manifest.clone()
    };
    if annotated {
        entry.annotations = vec![(
            "vnd.docker.reference.type".to_owned(),
            "attestation-manifest".to_owned(),
        )];
    }
    entry
}

#[tokio::test(flavor = "multi_thread")]
async fn index_entries_are_judged_by_platform_and_content_not_by_annotation() {
    let setup = Setup::new();
    let registry = FerroRegistry::start();
    let client = registry.client();
    let policy = policy_for(&registry.host(), "");
    let checker = setup.plain_checker(&registry);
    let amd64 = push_untagged_image(&client, "acme/api", &Platform::linux_amd64());
    setup.attest(&client, &amd64.manifest, |spec| spec);
    let attested = index_entry(&amd64, Some(Platform::linux_amd64()), false);
    let runnable = push_untagged_image(&client, "acme/api", &Platform::linux_arm64());

    // A real BuildKit attestation manifest (unknown/unknown, in-toto layer) is no image.
    let buildkit = push_buildkit_attestation_manifest(&client, "acme/api", &amd64.manifest);
    let (check, index_digest) = check_index(
        &checker,
        &policy,
        &client,
        "buildkit",
        &[attested.clone(), buildkit],
    )
    .await;
    assert_verified(&check, &index_digest);
    assert!(
        matches!(
            check.outcome,
            ImageOutcome::Verified {
                platforms_checked: Some(1),
                ..
            }
        ),
        "{check:?}"
    );

    // An unattested runnable image labelled as an attestation manifest: a node of its
    // platform pulls it, and one with an unknown platform is still an image.
    let mislabelled = [
        ("arm64", Some(Platform::linux_arm64()), "linux/arm64/v8"),
        (
            "unknown",
            Some(Platform::new("unknown", "unknown")),
            "unknown/unknown",
        ),
        ("unnamed", None, "(unnamed)"),
    ];
    for (tag, platform, name) in mislabelled {
        let second = index_entry(&runnable, platform, true);
        let (check, _) =
            check_index(&checker, &policy, &client, tag, &[attested.clone(), second]).await;
        assert_failed(
            &check,
            FailureKind::NoAttestation,
            &format!("platform {name} ({})", runnable.manifest_digest),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verifications_per_digest_are_capped_and_non_bundle_referrers_never_fetched() {
    let proxied =
        Proxied::with_image(|client, _| push_unattested_image(client, "acme/api", "stuffed"));
    let client = proxied.registry.client();
    // Referrers whose artifact type only starts like a bundle's.
    let junk: Vec<PushedAttestation> = (0..3)
        .map(|position| {
            attach_artifact(
                &client,
                "acme/api",
                &proxied.image.manifest,
                "application/vnd.dev.sigstore.bundle.junk+json",
                &format!("{{\"junk\":{position}}}"),
                ReferrersTagSchema::Auto,
            )
        })
        .collect();
    let stuffed = proxied.attach_stuffed_referrers(3, 40);
    let policy = policy_for(&proxied.proxy.host(), "");
    let checker = proxied.checker(CheckSettings::default());

    let check = checker.check(&policy, &proxied.reference).await;
    assert_failed(
        &check,
        FailureKind::NotVerified,
        "does not match any subject",
    );
    assert_eq!(
        checker.verification_count(),
        DEFAULT_MAX_VERIFICATIONS as u64
    );
    // Junk is skipped unfetched, and the first stuffed referrer fills the budget: the
    // others are not even fetched.
    let summary = proxied.proxy.request_summary();
    assert_eq!(proxied.manifest_gets(&stuffed[0].referrer.digest), 1);
    for referrer in junk.iter().chain(&stuffed[1..]) {
        assert_eq!(
            proxied.manifest_gets(&referrer.referrer.digest),
            0,
            "{summary:#?}"
        );
    }
    assert_eq!(
        proxied.proxy.count("GET", "/v2/acme/api/blobs/"),
        1,
        "{summary:#?}"
    );

    // The reason, and the decision record carrying it, stay small.
    let ImageOutcome::Failed { reason, .. } = &check.outcome else {
        unreachable!("asserted above")
    };
    assert!(reason.len() <= MAX_REASON_BYTES, "{}", reason.len());
    let line = serde_json::to_string(&enforced_record(&check)).expect("record serialises");
    assert!(
        line.len() < 8 * 1024,
        "decision record is {} bytes",
        line.len()
    );

    // Checked again: nothing new is verified for the cached digest.
    let again = checker.check(&policy, &proxied.reference).await;
    assert_failed(
        &again,
        FailureKind::NotVerified,
        "does not match any subject",
    );
    assert_eq!(
        checker.verification_count(),
        DEFAULT_MAX_VERIFICATIONS as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_stops_at_the_first_satisfying_bundle_and_a_stricter_policy_verifies_more() {
    let proxied = Proxied::attested_image();
    let deploy = proxied.attest(|spec| spec.with_workflow(".github/workflows/deploy.yml"));
    proxied.attach_stuffed_referrers(2, 20);
    let checker = proxied.checker(CheckSettings::default());
    let lenient = policy_for(&proxied.proxy.host(), "");
    let check = checker.check(&lenient, &proxied.reference).await;
    assert_verified(&check, &proxied.image.manifest_digest);
    assert_eq!(checker.verification_count(), 1);
    let requests = proxied.proxy.request_count();

    // The release build does not satisfy this rule; the deploy build, next in line, does:
    // verified now from the cached bundles, without asking the registry again.
    let strict = deploy_only_policy(&proxied.proxy.host());
    let check = checker.check(&strict, &proxied.reference).await;
    assert_verified(&check, &proxied.image.manifest_digest);
    match &check.outcome {
        ImageOutcome::Verified { bundle_digest, .. } => {
            assert_eq!(bundle_digest, &deploy.bundle.digest);
        }
        other => unreachable!("asserted above: {other:?}"),
    }
    assert_eq!(checker.verification_count(), 2);
    assert_eq!(proxied.proxy.request_count(), requests);

    // Verified bundles are released from the cache once verified; their results still
    // answer both policies, with nothing verified or fetched again.
    for policy in [&lenient, &strict] {
        let check = checker.check(policy, &proxied.reference).await;
        assert_verified(&check, &proxied.image.manifest_digest);
    }
    assert_eq!(checker.verification_count(), 2);
    assert_eq!(proxied.proxy.request_count(), requests);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_referrer_the_registry_failed_to_serve_is_asked_for_again() {
    let proxied = Proxied::attested_image();
    let second = proxied.attest(|spec| spec.with_workflow(".github/workflows/deploy.yml"));
    let second_path = format!("/v2/acme/api/manifests/{}", second.referrer.digest);
    proxied
        .proxy
        .inject_times(&second_path, Fault::InternalServerError, 1);
    let failure_ttl = Duration::from_millis(200);
    let checker = proxied.checker(CheckSettings {
        failure_ttl,
        ..CheckSettings::default()
    });
    let policy = policy_for(&proxied.proxy.host(), "");

    // The first bundle verifies while the second referrer fails: partial facts.
    let check = checker.check(&policy, &proxied.reference).await;
    assert_verified(&check, &proxied.image.manifest_digest);
    assert_eq!(proxied.manifest_gets(&second.referrer.digest), 1);

    // Kept only as long as a failure: the next check asks for the referrer again.
    tokio::time::sleep(failure_ttl * 2).await;
    let check = checker.check(&policy, &proxied.reference).await;
    assert_verified(&check, &proxied.image.manifest_digest);
    assert_eq!(
        proxied.manifest_gets(&second.referrer.digest),
        2,
        "{:#?}",
        proxied.proxy.request_summary()
    );

    // Complete now, so kept as verified: no third fetch.
    tokio::time::sleep(failure_ttl * 2).await;
    let check = checker.check(&policy, &proxied.reference).await;
    assert_verified(&check, &proxied.image.manifest_digest);
    assert_eq!(proxied.manifest_gets(&second.referrer.digest), 2);
}

// Bad input from the registry: rows of SECURITY.md's bad-input catalogue.

/// An index that lists one image under a thousand platform names is refused unexamined:
/// more entries than a check examines, and not one of them is fetched.
#[tokio::test(flavor = "multi_thread")]
async fn an_index_of_a_thousand_platforms_is_refused_without_fetching_them() {
    let proxied =
        Proxied::with_image(|client, _| push_unattested_image(client, "acme/api", "base"));
    let client = proxied.registry.client();
    let entries: Vec<Descriptor> = (0..1000)
        .map(|index| {
            let platform = Platform::new("linux", &format!("arch{index}"));
            index_entry(&proxied.image, Some(platform), false)
        })
        .collect();
    push_index(&client, "acme/api", "wide", &entries);
    let policy = policy_for(&proxied.proxy.host(), "");
    let checker = proxied.checker(CheckSettings::default());
    let reference = format!("{}/acme/api:wide", proxied.proxy.host());
    let check = checker.check(&policy, &reference).await;
    assert_failed(
        &check,
        FailureKind::NotVerified,
        "lists 1000 entries, more than the 64 examined",
    );
    assert_eq!(proxied.manifest_gets(&proxied.image.manifest_digest), 0);
    // Resolve, the index, its referrers: a handful of requests, not a thousand.
    let requests = proxied.proxy.request_count();
    assert!(
        requests <= 6,
        "{requests} requests: {:?}",
        proxied.proxy.requests()
    );
}

/// The referrers of an image list the image itself as a bundle referrer (under the referrers
/// tag schema anyone who can push writes that list): it is read once, holds no bundle, and
/// the check ends denied instead of following the loop.
#[tokio::test(flavor = "multi_thread")]
async fn a_referrer_chain_pointing_at_itself_ends_denied() {
    let proxied =
        Proxied::with_image(|client, _| push_unattested_image(client, "acme/api", "loop"));
    let client = proxied.registry.client();
    let itself = Descriptor {
        artifact_type: Some(SIGSTORE_BUNDLE_ARTIFACT_TYPE.to_owned()),
        ..proxied.image.manifest.clone()
    };
    let referrers_tag = format!("sha256-{}", proxied.image.manifest.hex());
    push_index(&client, "acme/api", &referrers_tag, &[itself]);
    let policy = policy_for(&proxied.proxy.host(), "");
    let checker = proxied.checker(CheckSettings::default());
    let check = checker.check(&policy, &proxied.reference).await;
    let digest = &proxied.image.manifest_digest;
    assert_failed(
        &check,
        FailureKind::NoAttestation,
        &format!("referrer {digest}: referrer manifest names subject (none), not {digest}"),
    );
    let gets = proxied.manifest_gets(&proxied.image.manifest_digest);
    assert!(gets <= 2, "the image manifest was fetched {gets} times");
    let requests = proxied.proxy.request_count();
    assert!(
        requests <= 6,
        "{requests} requests: {:?}",
        proxied.proxy.requests()
    );
}

const SPDX: &str = "https://spdx.dev/Document/v2.3";

/// The reason of a failed check, or a panic naming what it was instead.
fn failure_reason(check: &ImageCheck) -> &str {
    match &check.outcome {
        ImageOutcome::Failed { reason, .. } => reason,
        other => panic!("{} should fail, got {other:?}", check.image),
    }
}

/// A rule requiring provenance and an SPDX SBOM, over a referrers-API registry.
struct RequiredSbom {
    setup: Setup,
    registry: FerroRegistry,
    policy: Policy,
    checker: ImageChecker<HttpRegistry>,
}

impl RequiredSbom {
    fn start() -> RequiredSbom {
        let setup = Setup::new();
        let registry = FerroRegistry::start();
        let policy = policy_for(
            &registry.host(),
            "    requireAttestations: [provenance, spdx]\n",
        );
        let checker = setup.plain_checker(&registry);
        RequiredSbom {
            setup,
            registry,
            policy,
            checker,
        }
    }

    /// An image under `tag` with one attestation per edit (the kit's default build signs
    /// each), checked under the rule.
    async fn check(
        &self,
        tag: &str,
        edits: &[fn(MintSpec) -> MintSpec],
    ) -> (PushedImage, Vec<PushedAttestation>, ImageCheck) {
        let client = self.registry.client();
        let image = push_unattested_image(&client, "acme/api", tag);
        let attestations = edits
            .iter()
            .map(|edit| self.setup.attest(&client, &image.manifest, edit))
            .collect();
        let check = self.checker.check(&self.policy, &image.reference).await;
        (image, attestations, check)
    }
}

fn provenance(spec: MintSpec) -> MintSpec {
    spec
}

fn sbom(spec: MintSpec) -> MintSpec {
    spec.with_predicate_type(SPDX)
}

/// Both required attestations from the trusted build: admitted, and the outcome and the
/// decision record name each with its bundle.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_requiring_provenance_and_an_sbom_admits_an_image_with_both() {
    let case = RequiredSbom::start();
    let (image, pushed, check) = case.check("both", &[provenance, sbom]).await;
    assert_verified(&check, &image.manifest_digest);
    let ImageOutcome::Verified {
        bundle_digest,
        attestations,
        ..
    } = &check.outcome
    else {
        unreachable!("asserted above")
    };
    // The provenance stands for the image in the record's certificate fields.
    assert_eq!(bundle_digest, &pushed[0].bundle.digest);
    let attested: Vec<(&str, &str)> = attestations
        .iter()
        .map(|entry| (entry.predicate_type.as_str(), entry.bundle_digest.as_str()))
        .collect();
    assert_eq!(
        attested,
        [
            (
                "https://slsa.dev/provenance/v1",
                pushed[0].bundle.digest.as_str()
            ),
            (SPDX, pushed[1].bundle.digest.as_str()),
        ]
    );
    let record = serde_json::to_value(enforced_record(&check)).expect("record serialises");
    assert_eq!(
        record["attestations"],
        serde_json::json!([
            {"predicateType": "https://slsa.dev/provenance/v1", "bundleDigest": pushed[0].bundle.digest},
            {"predicateType": SPDX, "bundleDigest": pushed[1].bundle.digest},
        ])
    );
}

/// Provenance alone: denied, the SBOM named as missing; a rule without
/// `requireAttestations` admits the same image, and its outcome lists no attestations.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_requiring_an_sbom_denies_provenance_alone_naming_the_sbom() {
    let case = RequiredSbom::start();
    let (image, _, check) = case.check("provenance-only", &[provenance]).await;
    assert_failed(
        &check,
        FailureKind::NoAttestation,
        &format!("required {SPDX}: no verified {SPDX} attestation"),
    );
    let reason = failure_reason(&check);
    assert!(
        !reason.contains("required https://slsa.dev/provenance/v1"),
        "{reason}"
    );

    let lenient = policy_for(&case.registry.host(), "");
    let check = case.checker.check(&lenient, &image.reference).await;
    assert_verified(&check, &image.manifest_digest);
    let ImageOutcome::Verified { attestations, .. } = &check.outcome else {
        unreachable!("asserted above")
    };
    assert!(attestations.is_empty(), "{attestations:?}");
}

/// An SBOM signed by another repository's workflow does not count for the trusted build.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_requiring_an_sbom_denies_one_signed_by_another_repository() {
    let case = RequiredSbom::start();
    let foreign = |spec: MintSpec| {
        sbom(spec)
            .with_repository("mallory/api")
            .with_repository_ids("999", "888")
    };
    let (_, _, check) = case.check("foreign-sbom", &[provenance, foreign]).await;
    assert_failed(
        &check,
        FailureKind::PolicyViolation,
        &format!("required {SPDX}: "),
    );
    let reason = failure_reason(&check);
    assert!(reason.contains("mallory/api"), "{reason}");
    assert!(
        !reason.contains("required https://slsa.dev/provenance/v1"),
        "{reason}"
    );
}

/// A trusted root rotated out (by a TUF refresh) stops admitting a digest at once, although
/// its verified facts were cached for an hour.
#[tokio::test]
async fn a_trusted_root_rotated_out_stops_admitting_a_cached_digest() {
    use provenance_gate::verify::tuf::{LiveTrustedRoots, TufInstance};
    let proxied = Proxied::attested_image();
    let live = Arc::new(LiveTrustedRoots::embedded().unwrap());
    let kit_root = proxied.setup.instance.trusted_root_json();
    live.replace(TufInstance::Github, &kit_root).unwrap();
    let checker = proxied
        .checker(CheckSettings::default())
        .with_live_roots(Arc::clone(&live));
    let policy = policy_for(&proxied.proxy.host(), "");
    assert_verified(
        &checker.check(&policy, &proxied.reference).await,
        &proxied.image.manifest_digest,
    );

    let embedded_github = TrustedRoots::embedded_json()[1].1;
    assert!(live.replace(TufInstance::Github, embedded_github).unwrap());
    let check = checker.check(&policy, &proxied.reference).await;
    assert_failed(
        &check,
        FailureKind::NotVerified,
        "did not verify under any trusted root",
    );
}
