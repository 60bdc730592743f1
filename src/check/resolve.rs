//! Tag → digest: the first step of every covered image's check. A reference that names a
//! digest is its own answer and costs no request; a tag is asked of the registry once per
//! fill (single flight) and remembered briefly, since tags move, and a failure more briefly
//! still, so that a registry outage is retried soon.

use std::time::Duration;

use super::cache::{CacheStats, SingleFlightCache};
use super::reference::{Digest, ImageReference};
use crate::registry::{Registry, RegistryError};

/// Resolves image references to digests, caching the answers per reference.
pub struct TagResolver {
    tags: SingleFlightCache<String, Result<Digest, RegistryError>>,
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

    /// The digest `reference` names now, asked of `registry` when it names only a tag.
    pub async fn resolve<R: Registry>(
        &self,
        registry: &R,
        reference: &ImageReference,
    ) -> Result<Digest, RegistryError> {
        if let Some(digest) = reference.digest() {
            return Ok(digest.clone());
        }
        let key = reference.to_string();
        let (ttl, failure_ttl) = (self.ttl, self.failure_ttl);
        self.tags
            .get_or_fill(
                &key,
                |result| if result.is_ok() { ttl } else { failure_ttl },
                || registry.resolve(reference),
            )
            .await
    }

    /// Hits and misses of the tag cache.
    pub fn stats(&self) -> &CacheStats {
        self.tags.stats()
    }
}
