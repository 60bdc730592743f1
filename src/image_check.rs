//! The provenance check of one image reference, as a pod spec names it: classify it by
//! policy (exempt and unmatched images cause no network traffic at all), resolve the tag to
//! a digest, find and verify the attestations of that digest, and hold them against the
//! rule. Registry answers and verified attestations are cached per digest; the policy is
//! evaluated afresh on every check, so a policy change never waits for a cache.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::attestations::find_bundles;
use crate::cache::SingleFlightCache;
use crate::image::{Digest, ImageReference};
use crate::policy::{self, ImageClass, Policy, Rule, UnmatchedAction};
use crate::registry::{Descriptor, Registry, RegistryError, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::verify::{verify_bundle, ArtifactInput, TrustedRoots, VerifiedAttestation};

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
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            per_image_timeout: Duration::from_secs(8),
            tag_ttl: Duration::from_secs(30),
            verified_ttl: Duration::from_secs(3600),
            failure_ttl: Duration::from_secs(10),
            cache_capacity: 4096,
            max_platforms: 32,
        }
    }
}

/// A bundle as checked for a digest, before any policy.
#[derive(Debug, Clone)]
pub struct CheckedBundle {
    pub index: usize,
    pub bundle_digest: String,
    pub verified: Result<VerifiedAttestation, String>,
}

/// Policy-free facts about one digest: its verified (or failed) bundles.
#[derive(Debug, Clone)]
pub struct DigestFacts {
    pub bundles: Vec<CheckedBundle>,
    pub problems: Vec<String>,
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
    },
    /// Not proven.
    Failed {
        rule: Option<String>,
        digest: Option<String>,
        kind: FailureKind,
        reason: String,
    },
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

/// Cached per (repository, digest): the platform images an index lists.
type ChildrenCache =
    SingleFlightCache<(String, Digest), Result<Arc<Vec<Descriptor>>, RegistryError>>;
/// Cached per (repository, digest): the verified bundles.
type FactsCache = SingleFlightCache<(String, Digest), Result<Arc<DigestFacts>, RegistryError>>;

/// Checks images against a policy over one registry implementation.
pub struct ImageChecker<R> {
    registry: R,
    roots: Arc<TrustedRoots>,
    settings: CheckSettings,
    tags: SingleFlightCache<String, Result<Digest, RegistryError>>,
    facts: FactsCache,
    children: ChildrenCache,
}

impl<R: Registry> ImageChecker<R> {
    pub fn new(registry: R, roots: Arc<TrustedRoots>, settings: CheckSettings) -> Self {
        let capacity = settings.cache_capacity;
        ImageChecker {
            registry,
            roots,
            settings,
            tags: SingleFlightCache::new(capacity),
            facts: SingleFlightCache::new(capacity),
            children: SingleFlightCache::new(capacity),
        }
    }

    pub fn registry(&self) -> &R {
        &self.registry
    }

    /// The caches' hit and miss counts: tags, attestations, index children.
    pub fn cache_stats(&self) -> [(&'static str, &crate::cache::CacheStats); 3] {
        [
            ("tag", self.tags.stats()),
            ("attestation", self.facts.stats()),
            ("index", self.children.stats()),
        ]
    }

    /// Checks one image reference under `policy`, within the per-image time bound.
    pub async fn check(&self, policy: &Policy, image: &str) -> ImageCheck {
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
        match tokio::time::timeout(timeout, self.check_covered(&reference, rule)).await {
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
        rule: &Rule,
    ) -> (Option<String>, ImageOutcome) {
        let failed = |digest: Option<&Digest>, kind, reason: String| ImageOutcome::Failed {
            rule: Some(rule.name().to_owned()),
            digest: digest.map(ToString::to_string),
            kind,
            reason,
        };
        let digest = match self.resolve(reference).await {
            Ok(digest) => digest,
            Err(error) => return (None, failed(None, FailureKind::Registry, error.to_string())),
        };
        let pinned = Some(reference.with_digest(digest.clone()).to_string());
        let facts = match self.facts_of(reference, &digest).await {
            Ok(facts) => facts,
            Err(error) => {
                return (
                    pinned,
                    failed(Some(&digest), FailureKind::Registry, error.to_string()),
                )
            }
        };
        let (own_kind, own_reason) = match judge(&facts, rule, &digest) {
            Ok(accepted) => {
                let outcome = ImageOutcome::Verified {
                    rule: rule.name().to_owned(),
                    digest: digest.to_string(),
                    bundle_digest: accepted.bundle_digest,
                    attestation: accepted.attestation,
                    platforms_checked: None,
                };
                return (pinned, outcome);
            }
            Err(rejection) => rejection,
        };
        // Not attested itself: an index passes when every platform image in it does.
        match self.index_children(reference, &digest).await {
            Ok(children) if !children.is_empty() => {
                let outcome = self
                    .check_platforms(reference, rule, &digest, &children, &own_reason)
                    .await;
                (pinned, outcome)
            }
            Ok(_) => (pinned, failed(Some(&digest), own_kind, own_reason)),
            Err(error) => (
                pinned,
                failed(Some(&digest), FailureKind::Registry, error.to_string()),
            ),
        }
    }

    async fn check_platforms(
        &self,
        reference: &ImageReference,
        rule: &Rule,
        index_digest: &Digest,
        children: &[Descriptor],
        index_reason: &str,
    ) -> ImageOutcome {
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
            let facts = match self.facts_of(reference, &child_digest).await {
                Ok(facts) => facts,
                Err(error) => return failed(FailureKind::Registry, error.to_string()),
            };
            match judge(&facts, rule, &child_digest) {
                Ok(accepted) => {
                    first_accepted.get_or_insert(accepted);
                }
                Err((kind, reason)) => {
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
            },
            None => failed(FailureKind::NoAttestation, index_reason.to_owned()),
        }
    }

    async fn resolve(&self, reference: &ImageReference) -> Result<Digest, RegistryError> {
        if let Some(digest) = reference.digest() {
            return Ok(digest.clone());
        }
        let key = reference.to_string();
        let ttl = self.settings.tag_ttl;
        let failure_ttl = self.settings.failure_ttl;
        self.tags
            .get_or_fill(
                &key,
                |result| if result.is_ok() { ttl } else { failure_ttl },
                || self.registry.resolve(reference),
            )
            .await
    }

    async fn facts_of(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<Arc<DigestFacts>, RegistryError> {
        let key = (reference.name(), digest.clone());
        let verified_ttl = self.settings.verified_ttl;
        let failure_ttl = self.settings.failure_ttl;
        self.facts
            .get_or_fill(
                &key,
                |result| match result {
                    Ok(facts) if facts.bundles.iter().any(|bundle| bundle.verified.is_ok()) => {
                        verified_ttl
                    }
                    _ => failure_ttl,
                },
                || async {
                    let discovery = find_bundles(&self.registry, reference, digest).await?;
                    let roots = Arc::clone(&self.roots);
                    let subject = digest_bytes(digest);
                    // Signature checks are CPU work; keep them off the async workers.
                    let crate::attestations::Discovery {
                        bundles: found,
                        mut problems,
                    } = discovery;
                    let verification = tokio::task::spawn_blocking(move || {
                        found
                            .iter()
                            .map(|bundle| CheckedBundle {
                                index: bundle.index,
                                bundle_digest: bundle.digest.clone(),
                                verified: verify_bundle(
                                    &roots,
                                    bundle,
                                    ArtifactInput::Sha256(subject),
                                )
                                .map_err(|error| error.to_string()),
                            })
                            .collect::<Vec<_>>()
                    })
                    .await;
                    // A verification that panicked proves nothing: no bundle counts, and
                    // the reason says why.
                    let bundles = verification.unwrap_or_else(|error| {
                        problems.push(format!("verification did not complete: {error}"));
                        Vec::new()
                    });
                    Ok(Arc::new(DigestFacts { bundles, problems }))
                },
            )
            .await
    }

    /// The platform images an index lists (attestation manifests left out); empty for an
    /// image manifest.
    async fn index_children(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<Arc<Vec<Descriptor>>, RegistryError> {
        let key = (reference.name(), digest.clone());
        let verified_ttl = self.settings.verified_ttl;
        let failure_ttl = self.settings.failure_ttl;
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
                    Ok(Arc::new(platform_images(
                        &manifest.media_type,
                        &manifest.bytes,
                    )))
                },
            )
            .await
    }
}

fn unfetched(image: &str, outcome: ImageOutcome) -> ImageCheck {
    ImageCheck {
        image: image.to_owned(),
        pinned: None,
        outcome,
    }
}

/// The bundle an image is admitted on.
struct Accepted {
    bundle_digest: String,
    attestation: Box<VerifiedAttestation>,
}

/// The current rule over cached, policy-free facts.
fn judge(
    facts: &DigestFacts,
    rule: &Rule,
    digest: &Digest,
) -> Result<Accepted, (FailureKind, String)> {
    let mut reasons = Vec::new();
    let mut any_verified = false;
    for bundle in &facts.bundles {
        match &bundle.verified {
            Ok(attestation) => {
                any_verified = true;
                match policy::evaluate(rule, attestation) {
                    Ok(()) => {
                        return Ok(Accepted {
                            bundle_digest: bundle.bundle_digest.clone(),
                            attestation: Box::new(attestation.clone()),
                        })
                    }
                    Err(violation) => reasons.extend(violation.reasons()),
                }
            }
            Err(error) => reasons.push(format!("bundle {}: {error}", bundle.index)),
        }
    }
    if facts.bundles.is_empty() {
        let mut reason = format!("no attestation found for {digest}");
        if !facts.problems.is_empty() {
            reason.push_str(&format!(" ({})", facts.problems.join("; ")));
        }
        return Err((FailureKind::NoAttestation, reason));
    }
    reasons.extend(facts.problems.iter().cloned());
    let kind = if any_verified {
        FailureKind::PolicyViolation
    } else {
        FailureKind::NotVerified
    };
    Err((kind, reasons.join("; ")))
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

/// The platform image entries of an index; BuildKit's attestation manifests
/// (`vnd.docker.reference.type: attestation-manifest`, platform unknown/unknown) are not
/// images and are left out.
fn platform_images(media_type: &str, bytes: &[u8]) -> Vec<Descriptor> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    let Ok(index) = serde_json::from_slice::<Index>(bytes) else {
        return Vec::new();
    };
    // The manifest's own mediaType is covered by the digest; the Content-Type header is not.
    let declared = index.media_type.as_deref().unwrap_or(media_type);
    if declared != OCI_INDEX && declared != DOCKER_MANIFEST_LIST {
        return Vec::new();
    }
    index
        .manifests
        .into_iter()
        .filter(|entry| {
            entry
                .annotations
                .get("vnd.docker.reference.type")
                .map(String::as_str)
                != Some("attestation-manifest")
        })
        .collect()
}
