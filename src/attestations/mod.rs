//! Finding the attestation bundles stored for an image digest in its registry: the
//! referrers whose artifact type is a Sigstore bundle, each referrer manifest checked to
//! name that digest as its subject, and the bundle layer fetched and digest-checked.
//!
//! Problems with single referrers do not abort the search: they are kept as reasons, so a
//! denial can say both "no usable attestation" and why each candidate was unusable.

use serde::Deserialize;

use crate::image::{Digest, ImageReference};
use crate::registry::{Descriptor, Registry, RegistryError};
use crate::verify::bundle_file::MAX_BUNDLE_BYTES;
use crate::verify::{read_bundles, ParsedBundle};

/// Artifact types of Sigstore bundles all start with this (v0.1–v0.3, both spellings).
pub const SIGSTORE_BUNDLE_ARTIFACT_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// At most this many referrers are examined per digest; more is not a real build.
pub const MAX_REFERRERS: usize = 16;

/// What was found for one digest.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Bundles that could be read, numbered in the order found.
    pub bundles: Vec<ParsedBundle>,
    /// Why other referrers gave no bundle, one line each.
    pub problems: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerManifest {
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Lists and fetches the Sigstore bundles attached to `digest`.
///
/// Fails only when the referrers cannot be listed at all; the caller decides what a
/// registry failure means in its mode.
pub async fn find_bundles<R: Registry>(
    registry: &R,
    image: &ImageReference,
    digest: &Digest,
) -> Result<Discovery, RegistryError> {
    let mut referrers = registry
        .referrers(image, digest, SIGSTORE_BUNDLE_ARTIFACT_TYPE_PREFIX)
        .await?;
    let mut discovery = Discovery::default();
    if referrers.len() > MAX_REFERRERS {
        discovery.problems.push(format!(
            "{} attestation referrers found; only the first {MAX_REFERRERS} were examined",
            referrers.len()
        ));
        referrers.truncate(MAX_REFERRERS);
    }
    for referrer in &referrers {
        match bundle_of(registry, image, digest, referrer).await {
            Ok(bundles) => {
                for mut bundle in bundles {
                    bundle.index = discovery.bundles.len() + 1;
                    discovery.bundles.push(bundle);
                }
            }
            Err(problem) => discovery
                .problems
                .push(format!("referrer {}: {problem}", referrer.digest)),
        }
    }
    Ok(discovery)
}

async fn bundle_of<R: Registry>(
    registry: &R,
    image: &ImageReference,
    subject: &Digest,
    referrer: &Descriptor,
) -> Result<Vec<ParsedBundle>, String> {
    let referrer_digest =
        Digest::parse(&referrer.digest).map_err(|error| format!("unusable digest: {error}"))?;
    let manifest = registry
        .fetch_manifest(image, &referrer_digest)
        .await
        .map_err(|error| error.to_string())?;
    let manifest: ReferrerManifest = serde_json::from_slice(&manifest.bytes)
        .map_err(|error| format!("referrer manifest is not an OCI manifest: {error}"))?;
    // A referrer listed for one digest but naming another is either a registry bug or an
    // attempt to pass one image's attestation off as another's.
    let named = manifest
        .subject
        .as_ref()
        .map(|subject| subject.digest.as_str());
    if named != Some(subject.to_string().as_str()) {
        return Err(format!(
            "referrer manifest names subject {}, not {subject}",
            named.unwrap_or("(none)")
        ));
    }
    let layer = manifest
        .layers
        .iter()
        .find(|layer| {
            layer
                .media_type
                .starts_with(SIGSTORE_BUNDLE_ARTIFACT_TYPE_PREFIX)
        })
        .ok_or_else(|| "referrer manifest has no Sigstore bundle layer".to_owned())?;
    let bytes = registry
        .fetch_blob(image, layer, MAX_BUNDLE_BYTES as u64)
        .await
        .map_err(|error| error.to_string())?;
    read_bundles(&bytes).map_err(|error| error.to_string())
}
