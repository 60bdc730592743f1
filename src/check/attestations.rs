//! Finding the attestation bundles stored for an image digest in its registry: the
//! referrers whose artifact type is a Sigstore bundle, each referrer manifest checked to
//! name that digest as its subject, and the bundle layer fetched and digest-checked.
//!
//! Problems with single referrers do not abort the search: they are kept as reasons, so a
//! denial can say both "no usable attestation" and why each candidate was unusable.
//!
//! Everything found is bounded before it costs anything: referrers that are not Sigstore
//! bundle artifacts are skipped without being fetched, at most [`MAX_REFERRERS`] are
//! examined, and fetching stops once the caller's bundle budget is full.

use serde::Deserialize;

use crate::check::reference::{Digest, ImageReference};
use crate::registry::{Descriptor, Registry, RegistryError, OCI_MANIFEST};
use crate::verify::bundle_file::{BUNDLE_MEDIA_TYPES, MAX_BUNDLE_BYTES};
use crate::verify::{read_bundles, ParsedBundle};

/// Artifact types of Sigstore bundles all start with this (v0.1–v0.3, both spellings); the
/// registry is asked for this prefix, and the exact types are checked here.
pub const SIGSTORE_BUNDLE_ARTIFACT_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// At most this many referrers are examined per digest; more is not a real build.
pub const MAX_REFERRERS: usize = 16;

/// What was found for one digest.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Bundles that could be read, numbered in the order found, at most the budget.
    pub bundles: Vec<ParsedBundle>,
    /// Why other referrers gave no bundle, or were not examined, one line each.
    pub problems: Vec<String>,
    /// False when fetching some referrer or bundle failed at the registry: what was found
    /// is then only part of what is there, and worth asking for again soon.
    pub complete: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerManifest {
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Why one referrer gave no bundle.
enum Unusable {
    /// The registry failed to serve it; it may well serve it next time.
    Unreachable(RegistryError),
    /// What it served is not a usable attestation for this digest.
    Invalid(String),
}

/// Whether a referrer descriptor can hold a Sigstore bundle at all, judged from the
/// descriptor alone (before anything is fetched): an image manifest whose artifact type is
/// one of the bundle media types exactly. The registry filters by prefix only, and not
/// every registry filters.
pub fn is_bundle_referrer(referrer: &Descriptor) -> bool {
    referrer.media_type == OCI_MANIFEST
        && referrer
            .artifact_type
            .as_deref()
            .is_some_and(|artifact_type| BUNDLE_MEDIA_TYPES.contains(&artifact_type))
}

/// Lists and fetches the Sigstore bundles attached to `digest`, keeping at most
/// `max_bundles` of them (in the order the registry lists the referrers); referrers past
/// that budget are not fetched.
///
/// Fails only when the referrers cannot be listed at all; the caller decides what a
/// registry failure means in its mode.
pub async fn find_bundles<R: Registry>(
    registry: &R,
    image: &ImageReference,
    digest: &Digest,
    max_bundles: usize,
) -> Result<Discovery, RegistryError> {
    let listed = registry
        .referrers(image, digest, SIGSTORE_BUNDLE_ARTIFACT_TYPE_PREFIX)
        .await?;
    let mut discovery = Discovery {
        bundles: Vec::new(),
        problems: Vec::new(),
        complete: true,
    };
    let listed_count = listed.len();
    let mut referrers: Vec<Descriptor> = listed.into_iter().filter(is_bundle_referrer).collect();
    let skipped = listed_count - referrers.len();
    if skipped > 0 {
        discovery.problems.push(format!(
            "{skipped} referrers skipped unfetched: not image manifests with a Sigstore bundle artifact type"
        ));
    }
    if referrers.len() > MAX_REFERRERS {
        discovery.problems.push(format!(
            "{} attestation referrers found; only the first {MAX_REFERRERS} were examined",
            referrers.len()
        ));
        referrers.truncate(MAX_REFERRERS);
    }
    for (position, referrer) in referrers.iter().enumerate() {
        let room = max_bundles.saturating_sub(discovery.bundles.len());
        if room == 0 {
            discovery.problems.push(format!(
                "{} referrers not examined: the first {max_bundles} bundles are all that are verified",
                referrers.len() - position
            ));
            break;
        }
        match bundle_of(registry, image, digest, referrer).await {
            Ok(bundles) => {
                let found = bundles.len();
                for mut bundle in bundles.into_iter().take(room) {
                    bundle.index = discovery.bundles.len() + 1;
                    discovery.bundles.push(bundle);
                }
                if found > room {
                    discovery.problems.push(format!(
                        "referrer {}: {} of its {found} bundles not examined: the first {max_bundles} bundles are all that are verified",
                        referrer.digest,
                        found - room
                    ));
                }
            }
            Err(Unusable::Unreachable(error)) => {
                discovery.complete = false;
                discovery
                    .problems
                    .push(format!("referrer {}: {error}", referrer.digest));
            }
            Err(Unusable::Invalid(problem)) => discovery
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
) -> Result<Vec<ParsedBundle>, Unusable> {
    let invalid = Unusable::Invalid;
    let referrer_digest = Digest::parse(&referrer.digest)
        .map_err(|error| invalid(format!("unusable digest: {error}")))?;
    let manifest = registry
        .fetch_manifest(image, &referrer_digest)
        .await
        .map_err(Unusable::Unreachable)?;
    let manifest: ReferrerManifest = serde_json::from_slice(&manifest.bytes)
        .map_err(|error| invalid(format!("referrer manifest is not an OCI manifest: {error}")))?;
    // A referrer listed for one digest but naming another is either a registry bug or an
    // attempt to pass one image's attestation off as another's.
    let named = manifest
        .subject
        .as_ref()
        .map(|subject| subject.digest.as_str());
    if named != Some(subject.to_string().as_str()) {
        return Err(invalid(format!(
            "referrer manifest names subject {}, not {subject}",
            named.unwrap_or("(none)")
        )));
    }
    let layer = manifest
        .layers
        .iter()
        .find(|layer| BUNDLE_MEDIA_TYPES.contains(&layer.media_type.as_str()))
        .ok_or_else(|| invalid("referrer manifest has no Sigstore bundle layer".to_owned()))?;
    let bytes = registry
        .fetch_blob(image, layer, MAX_BUNDLE_BYTES as u64)
        .await
        .map_err(Unusable::Unreachable)?;
    read_bundles(&bytes).map_err(|error| invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(media_type: &str, artifact_type: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: Digest::of_bytes(b"referrer").to_string(),
            size: 1,
            artifact_type: artifact_type.map(str::to_owned),
            annotations: Default::default(),
            platform: None,
        }
    }

    #[test]
    fn only_bundle_artifacts_are_fetched() {
        let index = crate::registry::OCI_INDEX;
        let cases = [
            (
                OCI_MANIFEST,
                Some("application/vnd.dev.sigstore.bundle.v0.3+json"),
                true,
            ),
            (
                OCI_MANIFEST,
                Some("application/vnd.dev.sigstore.bundle+json;version=0.3"),
                true,
            ),
            (
                OCI_MANIFEST,
                Some("application/vnd.dev.sigstore.bundle+json;version=0.1"),
                true,
            ),
            (
                OCI_MANIFEST,
                Some("application/vnd.dev.sigstore.bundle.junk+json"),
                false,
            ),
            (
                OCI_MANIFEST,
                Some("application/vnd.dev.sigstore.bundle"),
                false,
            ),
            (OCI_MANIFEST, Some("application/spdx+json"), false),
            (OCI_MANIFEST, None, false),
            (
                index,
                Some("application/vnd.dev.sigstore.bundle.v0.3+json"),
                false,
            ),
        ];
        for (media_type, artifact_type, expected) in cases {
            assert_eq!(
                is_bundle_referrer(&descriptor(media_type, artifact_type)),
                expected,
                "{media_type} / {artifact_type:?}"
            );
        }
    }
}
