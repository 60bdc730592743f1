//! The provenance check of one image reference, as a pod spec names it: classify it by
//! policy (exempt and unmatched images cause no network traffic at all), resolve the tag to
//! a digest ([`resolve`]), find and verify the attestations of that digest, and hold them
//! against the rule. Registry answers and verified attestations are cached per digest; the
//! policy is evaluated afresh on every check, so a policy change never waits for a cache.
//! [`batch`] checks the images of one review together under its budget.
//!
//! Bundles are verified lazily and in order: a check stops at the first bundle that
//! satisfies its rule, and each bundle of a cached digest is verified at most once, so a
//! stricter policy verifies more of the cached bundles at once instead of waiting for the
//! cache. At most `max_verifications` bundles are kept per digest.

pub mod attestations;
pub mod batch;
pub mod cache;
pub mod provenance;
pub mod reference;
pub mod registry_binding;
pub mod resolve;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::OnceCell;

use self::attestations::find_bundles;
use self::cache::SingleFlightCache;
use self::reference::{Digest, ImageReference};
use self::resolve::TagResolver;
use crate::decision;
use crate::github::{
    locations_of, GithubAttestations, GithubClient, GithubError, GithubLocation, GithubOptions,
};
use crate::policy::{
    AttestationSource, Destination, GithubApi, ImageClass, Policy, Rule, UnmatchedAction,
    SLSA_PROVENANCE_V1,
};
use crate::registry::{
    with_workload_logins, Descriptor, DockerConfig, LoginFingerprint, Registry, RegistryError,
    RegistryLogin, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
use crate::verify::bundle_file::BUNDLE_MEDIA_TYPES;
use crate::verify::tuf::LiveTrustedRoots;
use crate::verify::{
    verify_bundle, ArtifactInput, ParsedBundle, TrustedRoots, VerifiedAttestation,
};

/// One bundle per referrer examined (`attestations::MAX_REFERRERS`): real images hold one
/// bundle per referrer, so only referrers stuffed with many bundles reach this cap.
pub const DEFAULT_MAX_VERIFICATIONS: usize = 16;
/// Longest reason of a failed check (bytes); the reason goes into denial messages, Events
/// and decision records.
pub const MAX_REASON_BYTES: usize = 2048;
/// Longest part of a reason about one bundle or referrer (bytes).
pub const MAX_REASON_PART_BYTES: usize = 512;

/// How long answers are kept, and how long one image may take.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// Whole check of one image, registry round trips and verification included.
    pub per_image_timeout: Duration,
    /// Tag → digest: tags move, so briefly.
    pub tag_ttl: Duration,
    /// Attestations of a digest with at least one verified bundle.
    pub verified_ttl: Duration,
    /// Registry failures and digests without a verified bundle: retried soon.
    pub failure_ttl: Duration,
    /// Entries per cache.
    pub cache_capacity: usize,
    /// Platform images of an index examined at most.
    pub max_platforms: usize,
    /// Bundles kept and verified per digest at most, however many referrers and bundles the
    /// registry holds: signature checks are what a check costs in CPU.
    pub max_verifications: usize,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            per_image_timeout: crate::defaults::PER_IMAGE_TIMEOUT,
            tag_ttl: Duration::from_secs(30),
            verified_ttl: Duration::from_secs(3600),
            failure_ttl: Duration::from_secs(10),
            cache_capacity: crate::defaults::CACHE_CAPACITY,
            max_platforms: 32,
            max_verifications: DEFAULT_MAX_VERIFICATIONS,
        }
    }
}

/// A bundle found for a digest, verified when first needed and then remembered: checks
/// walk the bundles in order and stop at the first that satisfies their rule, so the rest
/// of a digest's bundles cost nothing until some policy needs them.
#[derive(Debug)]
pub struct CandidateBundle {
    pub index: usize,
    pub bundle_digest: String,
    /// The bundle until it is verified, then released: a verified digest stays cached for
    /// an hour, decisions read only the verification's result, and a rotation of the roots
    /// drops the whole cache rather than verifying again. Most of a cached digest's memory
    /// was its bundle.
    unverified: std::sync::Mutex<Option<Arc<ParsedBundle>>>,
    verified: OnceCell<Result<VerifiedAttestation, String>>,
}

impl CandidateBundle {
    /// The verification result, if this bundle was verified yet.
    pub fn verified(&self) -> Option<&Result<VerifiedAttestation, String>> {
        self.verified.get()
    }
}

/// Policy-free facts about one digest: its bundles (verified or not yet) and why other
/// referrers gave none.
#[derive(Debug)]
pub struct DigestFacts {
    subject: Digest,
    pub bundles: Vec<CandidateBundle>,
    pub problems: Vec<String>,
    /// Every referrer and bundle could be fetched (see `attestations::Discovery`).
    pub complete: bool,
    /// Where the bundles were listed, for a source other than the image's registry.
    pub listed_at: Option<String>,
}

impl DigestFacts {
    fn any_verified(&self) -> bool {
        self.bundles
            .iter()
            .any(|bundle| matches!(bundle.verified(), Some(Ok(_))))
    }
}

/// Why an image failed its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    InvalidReference,
    Registry,
    NoAttestation,
    NotVerified,
    PolicyViolation,
    Timeout,
}

impl FailureKind {
    /// Label for metrics and records.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::InvalidReference => "invalid_reference",
            FailureKind::Registry => "registry_error",
            FailureKind::NoAttestation => "no_attestation",
            FailureKind::NotVerified => "not_verified",
            FailureKind::PolicyViolation => "policy_violation",
            FailureKind::Timeout => "timeout",
        }
    }
}

/// The outcome for one image, before the namespace's mode is applied.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ImageOutcome {
    /// Matches `exemptImages`; nothing was fetched.
    Exempt,
    /// No rule covers it; `unmatchedImages` decided; nothing was fetched.
    Unmatched { action: UnmatchedAction },
    /// Proven: an attestation verified and satisfied the rule.
    Verified {
        rule: String,
        digest: String,
        bundle_digest: String,
        attestation: Box<VerifiedAttestation>,
        /// Set when the index itself was not attested and every platform image was.
        platforms_checked: Option<usize>,
        /// Where the accepted bundle was found; none for a bundle given as a file.
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<AttestationSource>,
        /// The listing it was found in, for a source other than the image's registry.
        #[serde(skip_serializing_if = "Option::is_none")]
        source_url: Option<String>,
        /// Under a rule with `requireAttestations`: the bundle admitted for each required
        /// predicate type, in the rule's order (`bundle_digest` is the provenance's, or the
        /// first's). Empty otherwise.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        attestations: Vec<AttestedPredicate>,
    },
    /// Not proven.
    Failed {
        rule: Option<String>,
        digest: Option<String>,
        kind: FailureKind,
        reason: String,
    },
}

/// One required attestation an image was admitted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestedPredicate {
    pub predicate_type: String,
    pub bundle_digest: String,
}

/// One image's check: what was asked, what it was pinned to, and the outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageCheck {
    /// The reference as the pod spec wrote it.
    pub image: String,
    /// The reference pinned to the verified digest (`name:tag@sha256:…`).
    pub pinned: Option<String>,
    #[serde(flatten)]
    pub outcome: ImageOutcome,
}

/// What an index lists, as a runtime selecting by platform sees it.
#[derive(Debug)]
enum IndexEntries {
    /// Not an index: an image manifest (or something else that lists nothing).
    NotAnIndex,
    /// More entries than are examined; none was fetched.
    TooMany(usize),
    /// The entries a runtime can select: all but proven attestation manifests.
    Selectable(Vec<Descriptor>),
}

/// Cached per (repository, digest): what an index lists.
type ChildrenCache = SingleFlightCache<(String, Digest), Result<Arc<IndexEntries>, RegistryError>>;
/// Cached per (repository, digest): the bundles found.
type FactsCache = SingleFlightCache<(String, Digest), Result<Arc<DigestFacts>, RegistryError>>;
/// Cached per (API host and prefix, location, digest): the bundles GitHub lists.
type GithubFactsCache =
    SingleFlightCache<(String, GithubLocation, Digest), Result<Arc<DigestFacts>, GithubError>>;

/// Checks images against a policy over one registry implementation.
pub struct ImageChecker<R> {
    registry: R,
    roots: Arc<LiveTrustedRoots>,
    settings: CheckSettings,
    tags: TagResolver,
    facts: FactsCache,
    github: Arc<dyn GithubAttestations>,
    github_facts: GithubFactsCache,
    children: ChildrenCache,
    verifications: AtomicU64,
    /// Workloads bring their own logins ([`Self::check_for_workload`]), so access to a
    /// digest is proven per login before cached facts about it are used.
    per_workload_logins: bool,
    /// The roots' generation the cached verification results were reached under.
    roots_generation: AtomicU64,
}

impl<R: Registry> ImageChecker<R> {
    pub fn new(registry: R, roots: Arc<TrustedRoots>, settings: CheckSettings) -> Self {
        let capacity = settings.cache_capacity;
        ImageChecker {
            registry,
            roots: Arc::new(LiveTrustedRoots::fixed(roots)),
            tags: TagResolver::new(capacity, settings.tag_ttl, settings.failure_ttl),
            settings,
            facts: SingleFlightCache::new(capacity),
            github: Arc::new(GithubClient::new(GithubOptions::default())),
            github_facts: SingleFlightCache::new(capacity),
            children: SingleFlightCache::new(capacity),
            verifications: AtomicU64::new(0),
            per_workload_logins: false,
            roots_generation: AtomicU64::new(0),
        }
    }

    /// Prepares the checker for workloads with logins of their own
    /// ([`Self::check_for_workload`]): a reference pinned to a digest is then asked of the
    /// registry with the workload's login too (once per login, cached like a tag), so that
    /// facts cached for a digest that one workload could read are never used for a workload
    /// that cannot read it.
    pub fn with_workload_logins(mut self) -> Self {
        self.per_workload_logins = true;
        self
    }

    /// Asks `github` for the attestations of rules whose sources name GitHub, instead of
    /// the default client (GitHub's REST API with [`GithubOptions::default`]).
    pub fn with_github(mut self, github: Arc<dyn GithubAttestations>) -> Self {
        self.github = github;
        self
    }

    /// Verifies under `roots`, whichever set is in force when a bundle is verified, instead
    /// of the fixed roots given to [`ImageChecker::new`] (TUF rotation).
    pub fn with_live_roots(mut self, roots: Arc<LiveTrustedRoots>) -> Self {
        self.roots_generation = AtomicU64::new(roots.generation());
        self.roots = roots;
        self
    }

    /// A rotation can take a key out of the roots (a compromise): results verified under
    /// the old roots are dropped rather than trusted for the rest of their cache lifetime.
    fn forget_verifications_if_roots_changed(&self) {
        let generation = self.roots.generation();
        if self.roots_generation.swap(generation, Ordering::AcqRel) != generation {
            self.facts.clear();
            self.github_facts.clear();
        }
    }

    /// The caches' hit and miss counts: tags, attestations, index children.
    pub fn cache_stats(&self) -> [(&'static str, &crate::check::cache::CacheStats); 3] {
        [
            ("tag", self.tags.stats()),
            ("attestation", self.facts.stats()),
            ("index", self.children.stats()),
        ]
    }

    /// Bundle verifications started so far (each bundle of a cached digest once).
    pub fn verification_count(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Checks one image reference under `policy` as of the wall clock, for a namespace no
    /// environment selects (the rule alone), within the per-image time bound.
    pub async fn check(&self, policy: &Policy, image: &str) -> ImageCheck {
        self.check_at(
            policy,
            image,
            &Destination::Unselected,
            jiff::Timestamp::now(),
        )
        .await
    }

    /// Checks one image reference under `policy` for `destination` (the rule's constraints
    /// for that environment hold too), as reviewed at `now` (rules' `maxAge` is measured to
    /// it), within the per-image time bound.
    pub async fn check_at(
        &self,
        policy: &Policy,
        image: &str,
        destination: &Destination,
        now: jiff::Timestamp,
    ) -> ImageCheck {
        let no_logins = Arc::new(DockerConfig::empty());
        self.check_for_workload(policy, image, destination, now, &no_logins)
            .await
    }

    /// As [`Self::check_at`], for a workload whose imagePullSecrets are `logins`: the
    /// registry requests of this check use its entry for the image's registry where it has
    /// one, the webhook's own credentials otherwise (as the kubelet falls back to the
    /// node's). Tag answers are kept per login; facts about a digest's content (its
    /// attestations, verified) are shared, since they do not depend on who read them.
    pub async fn check_for_workload(
        &self,
        policy: &Policy,
        image: &str,
        destination: &Destination,
        now: jiff::Timestamp,
        logins: &Arc<DockerConfig>,
    ) -> ImageCheck {
        self.forget_verifications_if_roots_changed();
        let mut check = self
            .check_unbounded(policy, image, destination, now, logins)
            .await;
        // Reasons quote registries, bundles and rules; one place keeps them short for
        // every reader (denial messages, Events, decision records).
        if let ImageOutcome::Failed { reason, .. } = &mut check.outcome {
            bound_in_place(reason, MAX_REASON_BYTES);
        }
        check
    }

    async fn check_unbounded(
        &self,
        policy: &Policy,
        image: &str,
        destination: &Destination,
        now: jiff::Timestamp,
        logins: &Arc<DockerConfig>,
    ) -> ImageCheck {
        let reference = match ImageReference::parse(image) {
            Ok(reference) => reference,
            Err(error) => {
                return ImageCheck {
                    image: image.to_owned(),
                    pinned: None,
                    outcome: ImageOutcome::Failed {
                        rule: None,
                        digest: None,
                        kind: FailureKind::InvalidReference,
                        reason: error.to_string(),
                    },
                }
            }
        };
        let rule = match policy.classify_image(&reference.name()) {
            ImageClass::Exempt => return unfetched(image, ImageOutcome::Exempt),
            ImageClass::Unmatched(action) => {
                return unfetched(image, ImageOutcome::Unmatched { action })
            }
            ImageClass::Rule(rule) => rule,
        };
        let timeout = self.settings.per_image_timeout;
        let covered = Covered {
            rule,
            destination,
            github: policy.github(),
        };
        let login = logins
            .login_for(reference.registry(), reference.repository())
            .map(RegistryLogin::fingerprint);
        let checked = with_workload_logins(
            Arc::clone(logins),
            self.check_covered(&reference, covered, login, now),
        );
        match tokio::time::timeout(timeout, checked).await {
            Ok((pinned, outcome)) => ImageCheck {
                image: image.to_owned(),
                pinned,
                outcome,
            },
            Err(_) => ImageCheck {
                image: image.to_owned(),
                pinned: None,
                outcome: ImageOutcome::Failed {
                    rule: Some(rule.name().to_owned()),
                    digest: None,
                    kind: FailureKind::Timeout,
                    reason: format!(
                        "verification timed out after {:.1}s for {reference}",
                        timeout.as_secs_f64()
                    ),
                },
            },
        }
    }

    async fn check_covered(
        &self,
        reference: &ImageReference,
        covered: Covered<'_>,
        login: Option<LoginFingerprint>,
        now: jiff::Timestamp,
    ) -> (Option<String>, ImageOutcome) {
        let rule = covered.rule;
        let failed = |digest: Option<&Digest>, kind, reason: String| ImageOutcome::Failed {
            rule: Some(rule.name().to_owned()),
            digest: digest.map(ToString::to_string),
            kind,
            reason,
        };
        let resolved =
            self.tags
                .resolve(&self.registry, reference, login, self.per_workload_logins);
        let digest = match resolved.await {
            Ok(digest) => digest,
            Err(error) => return (None, failed(None, FailureKind::Registry, error.to_string())),
        };
        let pinned = Some(reference.with_digest(digest.clone()).to_string());
        let (own_kind, own_reason) = match self
            .accepted_from_sources(reference, covered, &digest, now)
            .await
        {
            Ok(accepted) => {
                let outcome = ImageOutcome::Verified {
                    rule: rule.name().to_owned(),
                    digest: digest.to_string(),
                    bundle_digest: accepted.bundle_digest,
                    attestation: accepted.attestation,
                    platforms_checked: None,
                    source: Some(accepted.source),
                    source_url: accepted.source_url,
                    attestations: accepted.attestations,
                };
                return (pinned, outcome);
            }
            Err(rejection) if rejection.unreachable => {
                return (
                    pinned,
                    failed(Some(&digest), FailureKind::Registry, rejection.reason),
                )
            }
            Err(rejection) => (rejection.kind, rejection.reason),
        };
        // Not attested itself: an index passes when every platform image in it does.
        let outcome = match self.index_entries(reference, &digest).await {
            Ok(entries) => match entries.as_ref() {
                IndexEntries::Selectable(children) if !children.is_empty() => {
                    self.check_platforms(reference, covered, &digest, children, &own_reason, now)
                        .await
                }
                IndexEntries::TooMany(listed) => failed(
                    Some(&digest),
                    FailureKind::NotVerified,
                    format!(
                        "index {digest} is not attested itself ({own_reason}) and lists {listed} entries, more than the {} examined",
                        self.max_index_entries()
                    ),
                ),
                IndexEntries::Selectable(_) | IndexEntries::NotAnIndex => {
                    failed(Some(&digest), own_kind, own_reason)
                }
            },
            Err(error) => failed(Some(&digest), FailureKind::Registry, error.to_string()),
        };
        (pinned, outcome)
    }

    async fn check_platforms(
        &self,
        reference: &ImageReference,
        covered: Covered<'_>,
        index_digest: &Digest,
        children: &[Descriptor],
        index_reason: &str,
        now: jiff::Timestamp,
    ) -> ImageOutcome {
        let rule = covered.rule;
        let failed = |kind, reason: String| ImageOutcome::Failed {
            rule: Some(rule.name().to_owned()),
            digest: Some(index_digest.to_string()),
            kind,
            reason,
        };
        if children.len() > self.settings.max_platforms {
            return failed(
                FailureKind::NotVerified,
                format!(
                    "index {index_digest} is not attested itself ({index_reason}) and lists {} platform images, more than the {} examined",
                    children.len(),
                    self.settings.max_platforms
                ),
            );
        }
        let mut first_accepted = None;
        for child in children {
            let platform = platform_name(child);
            let child_digest = match Digest::parse(&child.digest) {
                Ok(digest) => digest,
                Err(error) => {
                    return failed(
                        FailureKind::NotVerified,
                        format!("platform {platform} of index {index_digest} has an unusable digest: {error}"),
                    )
                }
            };
            match self
                .accepted_from_sources(reference, covered, &child_digest, now)
                .await
            {
                Ok(accepted) => {
                    first_accepted.get_or_insert(accepted);
                }
                Err(rejection) if rejection.unreachable => {
                    return failed(FailureKind::Registry, rejection.reason)
                }
                Err(Rejection { kind, reason, .. }) => {
                    return failed(
                        kind,
                        format!(
                            "index {index_digest} is not attested itself ({index_reason}), and platform {platform} ({child_digest}) fails: {reason}"
                        ),
                    )
                }
            }
        }
        match first_accepted {
            Some(accepted) => ImageOutcome::Verified {
                rule: rule.name().to_owned(),
                digest: index_digest.to_string(),
                bundle_digest: accepted.bundle_digest,
                attestation: accepted.attestation,
                platforms_checked: Some(children.len()),
                source: Some(accepted.source),
                source_url: accepted.source_url,
                attestations: accepted.attestations,
            },
            None => failed(FailureKind::NoAttestation, index_reason.to_owned()),
        }
    }

    /// The bundles of `digest`, verified in order up to the first that verifies: enough to
    /// know whether the digest is attested at all (which sets how long this is kept), and
    /// all most checks need.
    async fn facts_of(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<Arc<DigestFacts>, RegistryError> {
        let key = (reference.name(), digest.clone());
        self.facts
            .get_or_fill(&key, self.facts_ttl(), || async {
                let discovery = find_bundles(
                    &self.registry,
                    reference,
                    digest,
                    self.settings.max_verifications,
                )
                .await?;
                Ok(self
                    .facts_from(
                        digest,
                        discovery.bundles,
                        discovery.problems,
                        discovery.complete,
                        None,
                    )
                    .await)
            })
            .await
    }

    /// How long facts are kept, wherever they came from. Partial facts (a referrer or bundle
    /// that failed to arrive) are kept only briefly: the missing one may be the one a policy
    /// needs.
    fn facts_ttl<E>(&self) -> impl Fn(&Result<Arc<DigestFacts>, E>) -> Duration {
        let verified_ttl = self.settings.verified_ttl;
        let failure_ttl = self.settings.failure_ttl;
        move |result| match result {
            Ok(facts) if facts.complete && facts.any_verified() => verified_ttl,
            _ => failure_ttl,
        }
    }

    /// Before the checks of one review: the digests of its images whose rules ask GitHub
    /// and whose listings are not cached, told to the GitHub source per owner, so that many
    /// of one owner are asked for together (the bulk endpoint) rather than one by one. Tags
    /// are resolved here with the workload's `logins`, as its checks will (they then find
    /// them cached); nothing is judged.
    pub async fn prefetch_github(
        &self,
        policy: &Policy,
        images: &[String],
        logins: &Arc<DockerConfig>,
    ) {
        let api = policy.github();
        let resolved = futures::future::join_all(images.iter().map(|image| async move {
            let reference = ImageReference::parse(image).ok()?;
            let ImageClass::Rule(rule) = policy.classify_image(&reference.name()) else {
                return None;
            };
            if !rule
                .attestation_sources()
                .contains(&AttestationSource::Github)
            {
                return None;
            }
            let login = logins
                .login_for(reference.registry(), reference.repository())
                .map(RegistryLogin::fingerprint);
            let resolved =
                self.tags
                    .resolve(&self.registry, &reference, login, self.per_workload_logins);
            let digest = with_workload_logins(Arc::clone(logins), resolved)
                .await
                .ok()?;
            Some((rule, digest))
        }))
        .await;
        let mut by_owner: std::collections::BTreeMap<String, Vec<Digest>> = Default::default();
        for (rule, digest) in resolved.into_iter().flatten() {
            for location in locations_of(rule) {
                let key = (github_api_key(api), location.clone(), digest.clone());
                if !self.github_facts.contains_fresh(&key) {
                    by_owner
                        .entry(location.owner().to_ascii_lowercase())
                        .or_default()
                        .push(digest.clone());
                }
            }
        }
        for (owner, mut digests) in by_owner {
            digests.sort();
            digests.dedup();
            self.github.prefetch(api, &owner, &digests).await;
        }
    }

    /// What GitHub lists for `digest` under `location`, cached like registry answers.
    async fn github_facts_of(
        &self,
        api: &GithubApi,
        location: &GithubLocation,
        digest: &Digest,
    ) -> Result<Arc<DigestFacts>, GithubError> {
        let key = (github_api_key(api), location.clone(), digest.clone());
        self.github_facts
            .get_or_fill(&key, self.facts_ttl(), || async {
                let listing = self
                    .github
                    .attestations(api, location, digest, self.settings.max_verifications)
                    .await?;
                Ok(self
                    .facts_from(
                        digest,
                        listing.bundles,
                        listing.problems,
                        listing.complete,
                        Some(listing.url),
                    )
                    .await)
            })
            .await
    }

    /// Facts of the bundles found for `digest`, verified in order up to the first that
    /// verifies.
    async fn facts_from(
        &self,
        digest: &Digest,
        bundles: Vec<ParsedBundle>,
        problems: Vec<String>,
        complete: bool,
        listed_at: Option<String>,
    ) -> Arc<DigestFacts> {
        let facts = DigestFacts {
            subject: digest.clone(),
            bundles: bundles
                .into_iter()
                .map(|bundle| CandidateBundle {
                    index: bundle.index,
                    bundle_digest: bundle.digest.clone(),
                    unverified: std::sync::Mutex::new(Some(Arc::new(bundle))),
                    verified: OnceCell::new(),
                })
                .collect(),
            problems,
            complete,
            listed_at,
        };
        for bundle in &facts.bundles {
            if self.verified(&facts, bundle).await.is_ok() {
                break;
            }
        }
        Arc::new(facts)
    }

    /// The bundle the image is admitted on: the first that verifies and satisfies the rule
    /// or, under `requireAttestations`, one for each required predicate type (each judged
    /// against every identity check of the rule), the provenance's standing for all.
    async fn accepted_from_sources(
        &self,
        reference: &ImageReference,
        covered: Covered<'_>,
        digest: &Digest,
        now: jiff::Timestamp,
    ) -> Result<Accepted, Rejection> {
        let required = covered.rule.required_attestations_for(covered.destination);
        if required.is_empty() {
            return self
                .accepted_of_kind(reference, covered, digest, None, now)
                .await;
        }
        let mut accepted = Vec::with_capacity(required.len());
        let mut missing = Vec::new();
        for (predicate_type, environment) in required {
            match self
                .accepted_of_kind(reference, covered, digest, Some(predicate_type), now)
                .await
            {
                Ok(found) => accepted.push(found),
                Err(rejection) => {
                    let required_by = environment
                        .map(|name| {
                            format!(" (environment {name:?} of rule {:?})", covered.rule.name())
                        })
                        .unwrap_or_default();
                    missing.push((format!("required {predicate_type}{required_by}"), rejection))
                }
            }
        }
        if !missing.is_empty() {
            return Err(Rejection::named(missing));
        }
        let attestations = accepted
            .iter()
            .map(|found| AttestedPredicate {
                predicate_type: found.attestation.predicate_type.clone(),
                bundle_digest: found.bundle_digest.clone(),
            })
            .collect();
        let primary = accepted
            .iter()
            .position(|found| found.attestation.predicate_type == SLSA_PROVENANCE_V1)
            .unwrap_or(0);
        let mut primary = accepted.swap_remove(primary);
        primary.attestations = attestations;
        Ok(primary)
    }

    /// The first bundle that verifies and satisfies the rule (and is of type `wanted`, when
    /// given), source by source in the rule's order. When GitHub is out of reach (rate limit, outage) and the rule does not list the
    /// registry, the registry is asked instead, and the reason says so: a GitHub outage must
    /// not refuse images whose attestations the registry also holds.
    async fn accepted_of_kind(
        &self,
        reference: &ImageReference,
        covered: Covered<'_>,
        digest: &Digest,
        wanted: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<Accepted, Rejection> {
        let rule = covered.rule;
        let mut rejections = Vec::new();
        let mut registry_asked = false;
        let mut github_unavailable = false;
        for source in rule.attestation_sources() {
            match source {
                AttestationSource::Registry => {
                    registry_asked = true;
                    match self
                        .accepted_in_registry(reference, covered, digest, wanted, now)
                        .await
                    {
                        Ok(accepted) => return Ok(accepted),
                        Err(rejection) => rejections.push(("registry".to_owned(), rejection)),
                    }
                }
                AttestationSource::Github => {
                    for location in locations_of(rule) {
                        match self
                            .accepted_at_github(&location, covered, digest, wanted, now)
                            .await
                        {
                            Ok(accepted) => return Ok(accepted),
                            Err((rejection, unavailable)) => {
                                github_unavailable |= unavailable;
                                rejections.push((format!("github {location}"), rejection));
                            }
                        }
                    }
                }
            }
        }
        if github_unavailable && !registry_asked {
            self.github.degraded_to_registry();
            tracing::warn!(
                rule = rule.name(),
                %digest,
                "GitHub attestations API unavailable; asking the image's registry instead"
            );
            match self
                .accepted_in_registry(reference, covered, digest, wanted, now)
                .await
            {
                Ok(accepted) => return Ok(accepted),
                Err(rejection) => rejections.push((
                    "registry (asked because GitHub is unavailable)".to_owned(),
                    rejection,
                )),
            }
        }
        Err(Rejection::combine(rejections))
    }

    async fn accepted_in_registry(
        &self,
        reference: &ImageReference,
        covered: Covered<'_>,
        digest: &Digest,
        wanted: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<Accepted, Rejection> {
        let facts = self
            .facts_of(reference, digest)
            .await
            .map_err(|error| Rejection {
                kind: FailureKind::Registry,
                reason: error.to_string(),
                unreachable: true,
            })?;
        self.first_accepted(&facts, covered, wanted, now)
            .await
            .map_err(Rejection::judged)
    }

    /// As [`Self::accepted_in_registry`], for one GitHub location; the flag says GitHub is out of
    /// reach for now.
    async fn accepted_at_github(
        &self,
        location: &GithubLocation,
        covered: Covered<'_>,
        digest: &Digest,
        wanted: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<Accepted, (Rejection, bool)> {
        let facts = self
            .github_facts_of(covered.github, location, digest)
            .await
            .map_err(|error| {
                let rejection = Rejection {
                    kind: FailureKind::Registry,
                    reason: error.to_string(),
                    unreachable: true,
                };
                (rejection, error.is_unavailable())
            })?;
        self.first_accepted(&facts, covered, wanted, now)
            .await
            .map_err(|judged| (Rejection::judged(judged), false))
    }

    /// `bundle` verified for its digest, once: concurrent and later checks share the result.
    async fn verified<'f>(
        &self,
        facts: &'f DigestFacts,
        bundle: &'f CandidateBundle,
    ) -> &'f Result<VerifiedAttestation, String> {
        bundle
            .verified
            .get_or_init(|| async {
                let unverified = || {
                    bundle
                        .unverified
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                };
                // Released only below, with the result in hand: an initialisation cut short
                // (a timeout) leaves the bundle for the next one.
                let Some(parsed) = unverified().clone() else {
                    return Err("the bundle was released before it was verified".to_owned());
                };
                self.verifications.fetch_add(1, Ordering::Relaxed);
                let roots = self.roots.current();
                let subject = digest_bytes(&facts.subject);
                // Signature checks are CPU work; keep them off the async workers.
                let verification = tokio::task::spawn_blocking(move || {
                    verify_bundle(&roots, &parsed, ArtifactInput::Sha256(subject))
                        .map_err(|error| error.to_string())
                })
                .await;
                // A verification that panicked proves nothing, and the reason says why.
                let result = verification
                    .unwrap_or_else(|error| Err(format!("verification did not complete: {error}")));
                *unverified() = None;
                result
            })
            .await
    }

    /// The current rule over cached, policy-free facts ([`decision::judge`] per bundle): the
    /// first bundle in order that verifies and satisfies the rule is accepted; bundles after
    /// it stay unverified. With `wanted`, bundles of other predicate types are passed over.
    async fn first_accepted(
        &self,
        facts: &DigestFacts,
        Covered {
            rule, destination, ..
        }: Covered<'_>,
        wanted: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<Accepted, (FailureKind, String)> {
        // Reasons by how close their bundle came: a provenance attestation that verified and
        // broke the rule is the root cause, before attestations of other kinds (an SBOM
        // beside the provenance) and bundles that did not verify.
        let mut reasons: Vec<(Closeness, String)> = Vec::new();
        let mut any_verified = false;
        let mut other_kind_verified = false;
        for bundle in &facts.bundles {
            match self.verified(facts, bundle).await {
                Ok(attestation)
                    if wanted.is_some_and(|wanted| wanted != attestation.predicate_type) =>
                {
                    other_kind_verified = true;
                }
                Ok(attestation) => {
                    any_verified = true;
                    match decision::judge(attestation, &[rule], destination, now) {
                        Ok(_) => {
                            let source = match facts.listed_at {
                                Some(_) => AttestationSource::Github,
                                None => AttestationSource::Registry,
                            };
                            return Ok(Accepted {
                                bundle_digest: bundle.bundle_digest.clone(),
                                attestation: Box::new(attestation.clone()),
                                source,
                                source_url: facts.listed_at.clone(),
                                attestations: Vec::new(),
                            });
                        }
                        Err(violations) => {
                            let closeness = Closeness::of(attestation, rule);
                            reasons.extend(
                                violations.iter().map(|reason| {
                                    (closeness, bounded(reason, MAX_REASON_PART_BYTES))
                                }),
                            )
                        }
                    }
                }
                Err(error) => reasons.push((
                    Closeness::NotVerified,
                    bounded(
                        &format!("bundle {}: {error}", bundle.index),
                        MAX_REASON_PART_BYTES,
                    ),
                )),
            }
        }
        reasons.sort_by_key(|(closeness, _)| *closeness);
        // Bundles of one build break a rule alike; each reason is said once.
        let mut reasons: Vec<String> =
            reasons
                .into_iter()
                .map(|(_, reason)| reason)
                .fold(Vec::new(), |mut unique, reason| {
                    if !unique.contains(&reason) {
                        unique.push(reason);
                    }
                    unique
                });
        let problems = facts
            .problems
            .iter()
            .map(|problem| bounded(problem, MAX_REASON_PART_BYTES));
        if facts.bundles.is_empty() {
            let mut reason = format!("no attestation found for {}", facts.subject);
            if !facts.problems.is_empty() {
                reason.push_str(&format!(" ({})", problems.collect::<Vec<_>>().join("; ")));
            }
            return Err((FailureKind::NoAttestation, reason));
        }
        reasons.extend(problems);
        if let (Some(wanted), false) = (wanted, any_verified) {
            reasons.insert(
                0,
                format!("no verified {wanted} attestation for {}", facts.subject),
            );
            if other_kind_verified {
                return Err((FailureKind::NoAttestation, reasons.join("; ")));
            }
        }
        let kind = if any_verified {
            FailureKind::PolicyViolation
        } else {
            FailureKind::NotVerified
        };
        Err((kind, reasons.join("; ")))
    }

    /// Every attestation of `digest` (in `reference`'s repository) that verifies, from the
    /// facts an earlier check left in the cache (fetched again once they expired): what the
    /// command line explains a policy violation with.
    pub async fn verified_attestations(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<Vec<VerifiedAttestation>, RegistryError> {
        let facts = self.facts_of(reference, digest).await?;
        let mut verified = Vec::new();
        for bundle in &facts.bundles {
            if let Ok(attestation) = self.verified(&facts, bundle).await {
                verified.push(attestation.clone());
            }
        }
        Ok(verified)
    }

    /// Entries of one index examined at most: every platform may come with an attestation
    /// manifest (as BuildKit pushes them).
    fn max_index_entries(&self) -> usize {
        self.settings.max_platforms.saturating_mul(2)
    }

    /// What the index `digest` lists that a runtime can select. The kubelet picks an entry
    /// by platform alone, so every entry counts but those proven to be attestation
    /// manifests: platform `unknown/unknown` *and* content that is nothing but attestation
    /// layers. An annotation proves nothing; anyone who pushes the index writes it.
    async fn index_entries(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<Arc<IndexEntries>, RegistryError> {
        let key = (reference.name(), digest.clone());
        let verified_ttl = self.settings.verified_ttl;
        let failure_ttl = self.settings.failure_ttl;
        let max_entries = self.max_index_entries();
        self.children
            .get_or_fill(
                &key,
                |result| {
                    if result.is_ok() {
                        verified_ttl
                    } else {
                        failure_ttl
                    }
                },
                || async {
                    let manifest = self.registry.fetch_manifest(reference, digest).await?;
                    let Some(entries) = listed_entries(&manifest.media_type, &manifest.bytes)
                    else {
                        return Ok(Arc::new(IndexEntries::NotAnIndex));
                    };
                    if entries.len() > max_entries {
                        return Ok(Arc::new(IndexEntries::TooMany(entries.len())));
                    }
                    let mut selectable = Vec::with_capacity(entries.len());
                    for entry in entries {
                        if !self.is_attestation_manifest(reference, &entry).await? {
                            selectable.push(entry);
                        }
                    }
                    Ok(Arc::new(IndexEntries::Selectable(selectable)))
                },
            )
            .await
    }

    async fn is_attestation_manifest(
        &self,
        reference: &ImageReference,
        entry: &Descriptor,
    ) -> Result<bool, RegistryError> {
        if !has_unknown_platform(entry) {
            return Ok(false);
        }
        // An unusable digest stays selectable, and the platform check refuses it.
        let Ok(digest) = Digest::parse(&entry.digest) else {
            return Ok(false);
        };
        let manifest = self.registry.fetch_manifest(reference, &digest).await?;
        Ok(is_attestation_content(
            &manifest.media_type,
            &manifest.bytes,
        ))
    }
}

fn unfetched(image: &str, outcome: ImageOutcome) -> ImageCheck {
    ImageCheck {
        image: image.to_owned(),
        pinned: None,
        outcome,
    }
}

/// How close a bundle came to admitting an image, closest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Closeness {
    /// Verified, of a predicate type the rule accepts: its violations are the root cause.
    RuleBroken,
    /// Verified, but an attestation of another kind (an SBOM, a test report).
    OtherKind,
    /// Did not verify.
    NotVerified,
}

impl Closeness {
    fn of(attestation: &VerifiedAttestation, rule: &Rule) -> Closeness {
        let accepted_kind = rule
            .effective_predicate_types()
            .contains(&attestation.predicate_type);
        if accepted_kind {
            Closeness::RuleBroken
        } else {
            Closeness::OtherKind
        }
    }
}

/// The bundle an image is admitted on.
struct Accepted {
    bundle_digest: String,
    attestation: Box<VerifiedAttestation>,
    source: AttestationSource,
    source_url: Option<String>,
    /// Every required attestation, under `requireAttestations`.
    attestations: Vec<AttestedPredicate>,
}

/// The API part of a GitHub listing's cache key: host and path prefix.
fn github_api_key(api: &GithubApi) -> String {
    format!("{}{}", api.api_host, api.path_prefix)
}

/// The rule an image is checked under, the environment it is judged for, and where the
/// policy says GitHub is.
#[derive(Clone, Copy)]
struct Covered<'p> {
    rule: &'p Rule,
    destination: &'p Destination,
    github: &'p GithubApi,
}

/// Why no source gave an acceptable bundle for a digest.
#[derive(Debug)]
struct Rejection {
    kind: FailureKind,
    reason: String,
    /// Nothing could be examined: every source failed to answer.
    unreachable: bool,
}

impl Rejection {
    fn judged((kind, reason): (FailureKind, String)) -> Self {
        Rejection {
            kind,
            reason,
            unreachable: false,
        }
    }

    /// One rejection from those of each source asked: a single one as it is (so that a rule
    /// with one source reads as before sources existed), several named by source, with the
    /// kind that says most (a violated rule over an unverified bundle over a failed fetch
    /// over nothing found).
    fn combine(mut rejections: Vec<(String, Rejection)>) -> Rejection {
        if rejections.len() == 1 {
            return rejections.remove(0).1;
        }
        Rejection::named(rejections)
    }

    /// One rejection from several, each named, with the kind that says most; unreachable
    /// only when all were.
    fn named(rejections: Vec<(String, Rejection)>) -> Rejection {
        if rejections.is_empty() {
            return Rejection {
                kind: FailureKind::NoAttestation,
                reason: "no attestation source was asked".to_owned(),
                unreachable: false,
            };
        }
        let rank = |kind: FailureKind| match kind {
            FailureKind::PolicyViolation => 3,
            FailureKind::NotVerified => 2,
            FailureKind::Registry => 1,
            _ => 0,
        };
        let kind = rejections
            .iter()
            .map(|(_, rejection)| rejection.kind)
            .max_by_key(|kind| rank(*kind))
            .unwrap_or(FailureKind::NoAttestation);
        let unreachable = rejections
            .iter()
            .all(|(_, rejection)| rejection.unreachable);
        let reason = rejections
            .iter()
            .map(|(source, rejection)| {
                bounded(
                    &format!("{source}: {}", rejection.reason),
                    MAX_REASON_PART_BYTES,
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        Rejection {
            kind,
            reason,
            unreachable,
        }
    }
}

/// `text` cut to at most `max_bytes` (on a character boundary), marked when cut.
pub fn bounded(text: &str, max_bytes: usize) -> String {
    let mut text = text.to_owned();
    bound_in_place(&mut text, max_bytes);
    text
}

/// Cuts `text` to at most `max_bytes` bytes, the last of them saying that it was cut.
pub fn bound_in_place(text: &mut String, max_bytes: usize) {
    const MARK: &str = " …(truncated)";
    if text.len() <= max_bytes {
        return;
    }
    let mark = if MARK.len() <= max_bytes { MARK } else { "" };
    let mut end = max_bytes - mark.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(mark);
}

fn digest_bytes(digest: &Digest) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    // `Digest` only holds validated 64-hex sha256 values.
    let _ = hex::decode_to_slice(digest.hex(), &mut bytes);
    bytes
}

fn platform_name(descriptor: &Descriptor) -> String {
    descriptor.platform.as_ref().map_or_else(
        || "(unnamed)".to_owned(),
        |platform| match &platform.variant {
            Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
            None => format!("{}/{}", platform.os, platform.architecture),
        },
    )
}

/// The entries of an index, in order; `None` for anything that is not an index.
fn listed_entries(media_type: &str, bytes: &[u8]) -> Option<Vec<Descriptor>> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    let index = serde_json::from_slice::<Index>(bytes).ok()?;
    // The manifest's own mediaType is covered by the digest; the Content-Type header is not.
    let declared = index.media_type.as_deref().unwrap_or(media_type);
    (declared == OCI_INDEX || declared == DOCKER_MANIFEST_LIST).then_some(index.manifests)
}

/// Whether no runtime would select `entry` for a node: only `unknown/unknown` (BuildKit's
/// platform for attestation manifests). An entry without a platform may be selected by
/// default, so it is not unknown.
fn has_unknown_platform(entry: &Descriptor) -> bool {
    entry.platform.as_ref().is_some_and(|platform| {
        platform.os.eq_ignore_ascii_case("unknown")
            && platform.architecture.eq_ignore_ascii_case("unknown")
    })
}

/// Layer media types that hold attestations, never a filesystem a runtime could unpack.
const ATTESTATION_LAYER_MEDIA_TYPES: &[&str] = &[
    // BuildKit's provenance and SBOM attestations.
    "application/vnd.in-toto+json",
    "application/vnd.dsse.envelope.v1+json",
];

/// Whether a manifest is an attestation, not a runnable image: an image manifest with at
/// least one layer and only attestation layers. Anything else (an index, an image with one
/// filesystem layer) could be run and must be checked like any platform image.
fn is_attestation_content(media_type: &str, bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let Ok(manifest) = serde_json::from_slice::<Manifest>(bytes) else {
        return false;
    };
    let declared = manifest.media_type.as_deref().unwrap_or(media_type);
    let is_image_manifest = declared == OCI_MANIFEST || declared == DOCKER_MANIFEST;
    is_image_manifest
        && manifest.manifests.is_none()
        && !manifest.layers.is_empty()
        && manifest.layers.iter().all(|layer| {
            ATTESTATION_LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str())
                || BUNDLE_MEDIA_TYPES.contains(&layer.media_type.as_str())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(platform: Option<(&str, &str)>, annotations: &[(&str, &str)]) -> serde_json::Value {
        let mut entry = json!({
            "mediaType": OCI_MANIFEST,
            "digest": Digest::of_bytes(b"entry").to_string(),
            "size": 10,
        });
        if let Some((os, architecture)) = platform {
            entry["platform"] = json!({"os": os, "architecture": architecture});
        }
        if !annotations.is_empty() {
            entry["annotations"] = annotations
                .iter()
                .map(|(key, value)| ((*key).to_owned(), json!(value)))
                .collect();
        }
        entry
    }

    fn descriptor(value: serde_json::Value) -> Descriptor {
        serde_json::from_value(value).expect("descriptor")
    }

    const ATTESTATION_ANNOTATION: (&str, &str) =
        ("vnd.docker.reference.type", "attestation-manifest");

    #[test]
    fn only_unknown_platforms_may_be_skipped_whatever_the_annotations() {
        let cases = [
            (entry(Some(("linux", "amd64")), &[]), false),
            // The annotation alone never takes an entry out: amd64 nodes pull it.
            (
                entry(Some(("linux", "amd64")), &[ATTESTATION_ANNOTATION]),
                false,
            ),
            (
                entry(Some(("linux", "arm64")), &[ATTESTATION_ANNOTATION]),
                false,
            ),
            // No platform: a runtime may pick it as the default.
            (entry(None, &[ATTESTATION_ANNOTATION]), false),
            (entry(Some(("unknown", "amd64")), &[]), false),
            (entry(Some(("linux", "unknown")), &[]), false),
            (
                entry(Some(("unknown", "unknown")), &[ATTESTATION_ANNOTATION]),
                true,
            ),
            (entry(Some(("unknown", "unknown")), &[]), true),
            (entry(Some(("Unknown", "UNKNOWN")), &[]), true),
        ];
        for (value, expected) in cases {
            assert_eq!(
                has_unknown_platform(&descriptor(value.clone())),
                expected,
                "{value}"
            );
        }
    }

    fn manifest(media_type: Option<&str>, layer_types: &[&str]) -> Vec<u8> {
        let mut manifest = json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of_bytes(b"c").to_string(), "size": 2},
            "layers": layer_types.iter().map(|media_type| json!({
                "mediaType": media_type,
                "digest": Digest::of_bytes(media_type.as_bytes()).to_string(),
                "size": 3,
            })).collect::<Vec<_>>(),
        });
        if let Some(media_type) = media_type {
            manifest["mediaType"] = json!(media_type);
        }
        serde_json::to_vec(&manifest).expect("json")
    }

    #[test]
    fn attestation_content_is_nothing_but_attestation_layers() {
        let in_toto = "application/vnd.in-toto+json";
        let tar = "application/vnd.oci.image.layer.v1.tar+gzip";
        let bundle = "application/vnd.dev.sigstore.bundle.v0.3+json";
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            // BuildKit's attestation manifest.
            (OCI_MANIFEST, manifest(Some(OCI_MANIFEST), &[in_toto, in_toto]), true),
            (OCI_MANIFEST, manifest(Some(OCI_MANIFEST), &[bundle]), true),
            // The header names the type when the manifest does not.
            (DOCKER_MANIFEST, manifest(None, &[in_toto]), true),
            // A runnable image: a filesystem layer, alone or among attestations.
            (OCI_MANIFEST, manifest(Some(OCI_MANIFEST), &[tar]), false),
            (OCI_MANIFEST, manifest(Some(OCI_MANIFEST), &[in_toto, tar]), false),
            (OCI_MANIFEST, manifest(Some(OCI_MANIFEST), &[]), false),
            (OCI_MANIFEST, manifest(Some(OCI_MANIFEST), &["application/vnd.in-toto+json+junk"]), false),
            // An index could list runnable images.
            (OCI_INDEX, manifest(Some(OCI_INDEX), &[in_toto]), false),
            (
                OCI_MANIFEST,
                serde_json::to_vec(&json!({"mediaType": OCI_MANIFEST, "layers": [{"mediaType": in_toto, "digest": "sha256:00", "size": 1}], "manifests": []})).unwrap(),
                false,
            ),
            (OCI_MANIFEST, b"not json".to_vec(), false),
        ];
        for (header, bytes, expected) in cases {
            assert_eq!(
                is_attestation_content(header, &bytes),
                expected,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn index_entries_are_all_listed_annotations_or_not() {
        let entries = vec![
            entry(Some(("linux", "amd64")), &[]),
            entry(Some(("linux", "arm64")), &[ATTESTATION_ANNOTATION]),
            entry(Some(("unknown", "unknown")), &[ATTESTATION_ANNOTATION]),
        ];
        let index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
        )
        .unwrap();
        assert_eq!(
            listed_entries(OCI_INDEX, &index).map(|found| found.len()),
            Some(3)
        );
        let bare = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": entries})).unwrap();
        assert_eq!(
            listed_entries(DOCKER_MANIFEST_LIST, &bare).map(|found| found.len()),
            Some(3)
        );
        assert!(listed_entries(OCI_MANIFEST, &bare).is_none());
        assert!(listed_entries(OCI_INDEX, &manifest(Some(OCI_MANIFEST), &[])).is_none());
        assert!(listed_entries(OCI_INDEX, b"not json").is_none());
    }

    fn rejection(kind: FailureKind, reason: &str, unreachable: bool) -> Rejection {
        Rejection {
            kind,
            reason: reason.to_owned(),
            unreachable,
        }
    }

    #[test]
    fn one_source_reads_as_before_and_several_are_named_with_the_kind_that_says_most() {
        let alone = Rejection::combine(vec![(
            "registry".to_owned(),
            rejection(FailureKind::NoAttestation, "no attestation found", false),
        )]);
        assert_eq!(alone.kind, FailureKind::NoAttestation);
        assert_eq!(alone.reason, "no attestation found");

        let cases = [
            (
                FailureKind::NoAttestation,
                FailureKind::Registry,
                FailureKind::Registry,
            ),
            (
                FailureKind::NotVerified,
                FailureKind::Registry,
                FailureKind::NotVerified,
            ),
            (
                FailureKind::PolicyViolation,
                FailureKind::NotVerified,
                FailureKind::PolicyViolation,
            ),
            (
                FailureKind::NoAttestation,
                FailureKind::NoAttestation,
                FailureKind::NoAttestation,
            ),
        ];
        for (first, second, expected) in cases {
            let combined = Rejection::combine(vec![
                ("registry".to_owned(), rejection(first, "one", false)),
                (
                    "github repos/a/b".to_owned(),
                    rejection(second, "two", true),
                ),
            ]);
            assert_eq!(combined.kind, expected, "{first:?} + {second:?}");
            assert_eq!(combined.reason, "registry: one; github repos/a/b: two");
            // Something was examined: the index's platforms are still worth checking.
            assert!(!combined.unreachable);
        }
        let unreachable = Rejection::combine(vec![
            (
                "registry".to_owned(),
                rejection(FailureKind::Registry, "down", true),
            ),
            (
                "github x".to_owned(),
                rejection(FailureKind::Registry, "down", true),
            ),
        ]);
        assert!(unreachable.unreachable);
        assert_eq!(
            Rejection::combine(Vec::new()).kind,
            FailureKind::NoAttestation
        );
    }

    #[test]
    fn reasons_are_cut_on_character_boundaries_and_marked() {
        assert_eq!(bounded("short", 100), "short");
        let long = "é".repeat(1000);
        let cut = bounded(&long, 101);
        assert!(cut.len() <= 101, "{}", cut.len());
        assert!(cut.ends_with("(truncated)"), "{cut}");
        assert!(cut.starts_with("éé"));
        assert_eq!(bounded(&long, 3).len(), 2);
    }
}
