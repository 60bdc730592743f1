//! Tag → digest: the first step of every covered image's check. A reference that names a
//! digest is its own answer and costs no request; a tag is asked of the registry once per
//! fill (single flight) and remembered briefly, since tags move, and a failure more briefly
//! still, so that a registry outage is retried soon.
//!
//! Answers are kept per login ([`LoginFingerprint`]; none: the webhook's own credentials):
//! whether a tag can be read at all depends on who asks, so a workload whose pull secrets
//! resolved a private tag never lends that answer to a workload without them. Where
//! workloads bring their own logins, a reference that names a digest is no proof of access
//! either: its manifest is fetched once per login before anything cached about the digest
//! is used for it.

use std::time::Duration;

use super::cache::{CacheStats, SingleFlightCache};
use super::reference::{Digest, ImageReference};
use crate::registry::{LoginFingerprint, Registry, RegistryError};

/// Resolves image references to digests, caching the answers per login and reference.
pub struct TagResolver {
    tags: SingleFlightCache<(Option<LoginFingerprint>, String), Result<Digest, RegistryError>>,
    /// How long a resolved tag is trusted to still name its digest.
    ttl: Duration,
    /// How long a failed resolution is answered from the cache.
    failure_ttl: Duration,
}

impl TagResolver {
    pub fn new(capacity: usize, ttl: Duration, failure_ttl: Duration) -> Self {
        TagResolver {
            tags: SingleFlightCache::new(capacity),
            ttl,
            failure_ttl,
        }
    }

    /// The digest `reference` names now, asked of `registry` (with `login`, the one the
    /// registry requests of this task use) when it names only a tag. With `prove_access`, a
    /// reference that names a digest is answered only once its manifest could be read with
    /// `login`.
    pub async fn resolve<R: Registry>(
        &self,
        registry: &R,
        reference: &ImageReference,
        login: Option<LoginFingerprint>,
        prove_access: bool,
    ) -> Result<Digest, RegistryError> {
        let pinned = reference.digest();
        if let (Some(digest), false) = (pinned, prove_access) {
            return Ok(digest.clone());
        }
        let key = (login, reference.to_string());
        let (ttl, failure_ttl) = (self.ttl, self.failure_ttl);
        self.tags
            .get_or_fill(
                &key,
                |result| if result.is_ok() { ttl } else { failure_ttl },
                || async move {
                    match pinned {
                        Some(digest) => registry
                            .fetch_manifest(reference, digest)
                            .await
                            .map(|_| digest.clone()),
                        None => registry.resolve(reference).await,
                    }
                },
            )
            .await
    }

    /// Hits and misses of the tag cache.
    pub fn stats(&self) -> &CacheStats {
        self.tags.stats()
    }
}
