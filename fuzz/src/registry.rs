//! What a registry sends. `registry_answers` splits its input at 0xFF bytes (never in UTF-8,
//! so never in JSON) into: the manifest or index a tag names, the `Content-Type` sent with it,
//! the referrers index, and further blobs (platform manifests, referrer manifests, bundles).
//! An honest, content-addressed in-memory registry serves them, the registry client's own
//! readers parse them, and the image check runs over them. A verified image must be bound to
//! content the registry served: the fuzzer cannot forge a digest, so any verdict it reaches
//! must hold for a real registry too.

use std::collections::HashMap;

use provenance_gate::check::reference::{Digest, ImageReference};
use provenance_gate::check::{CheckSettings, ImageChecker, ImageOutcome, MAX_REASON_BYTES};
use provenance_gate::policy::Destination;
use provenance_gate::registry::wire;
use provenance_gate::registry::{
    Descriptor, FetchedManifest, Registry, RegistryError, DEFAULT_MAX_REFERRERS,
};

use crate::{block_on, embedded_roots, example_policy, now};

/// The separator of the parts of an input.
pub const PART_SEPARATOR: u8 = 0xFF;
/// The artifact type prefix the image check asks referrers for.
const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// Covered by the example policy's `attest-demo` rule, whose repository signed a real bundle.
const IMAGE: &str = "ghcr.io/malancas/attest-demo:1";

struct Store {
    root: Digest,
    content_type: Option<String>,
    referrers: Vec<u8>,
    blobs: HashMap<Digest, Vec<u8>>,
}

impl Store {
    fn from_parts(data: &[u8]) -> Store {
        let mut parts = data.split(|byte| *byte == PART_SEPARATOR);
        let root = parts.next().unwrap_or_default().to_vec();
        let content_type = parts
            .next()
            .map(|text| String::from_utf8_lossy(text).into_owned())
            .filter(|text| !text.is_empty());
        let referrers = parts.next().unwrap_or_default().to_vec();
        let root_digest = Digest::of_bytes(&root);
        let mut blobs: HashMap<Digest, Vec<u8>> = parts
            .map(|blob| (Digest::of_bytes(blob), blob.to_vec()))
            .collect();
        blobs.insert(root_digest.clone(), root);
        Store {
            root: root_digest,
            content_type,
            referrers,
            blobs,
        }
    }

    fn not_found(image: &ImageReference, what: String) -> RegistryError {
        RegistryError::NotFound {
            registry: image.registry().to_owned(),
            repository: image.repository().to_owned(),
            what,
        }
    }

    fn malformed(image: &ImageReference, what: &str, reason: String) -> RegistryError {
        RegistryError::Malformed {
            registry: image.registry().to_owned(),
            what: what.to_owned(),
            reason,
        }
    }
}

impl Registry for Store {
    async fn resolve(&self, image: &ImageReference) -> Result<Digest, RegistryError> {
        Ok(image.digest().cloned().unwrap_or_else(|| self.root.clone()))
    }

    async fn fetch_manifest(
        &self,
        image: &ImageReference,
        digest: &Digest,
    ) -> Result<FetchedManifest, RegistryError> {
        let bytes = self
            .blobs
            .get(digest)
            .ok_or_else(|| Self::not_found(image, format!("manifest {digest}")))?;
        let media_type = wire::manifest_media_type(bytes, self.content_type.as_deref())
            .map_err(|reason| Self::malformed(image, "manifest", reason))?;
        Ok(FetchedManifest {
            digest: digest.clone(),
            media_type,
            bytes: bytes.clone(),
        })
    }

    async fn fetch_blob(
        &self,
        image: &ImageReference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let digest = Digest::parse(&descriptor.digest)
            .map_err(|error| Self::malformed(image, "descriptor", error.to_string()))?;
        let bytes = self
            .blobs
            .get(&digest)
            .ok_or_else(|| Self::not_found(image, format!("blob {digest}")))?;
        if bytes.len() as u64 > descriptor.size.min(limit) {
            return Err(RegistryError::TooLarge {
                registry: image.registry().to_owned(),
                what: format!("blob {digest}"),
                limit: descriptor.size.min(limit),
            });
        }
        Ok(bytes.clone())
    }

    async fn referrers(
        &self,
        image: &ImageReference,
        _digest: &Digest,
        artifact_type_prefix: &str,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        wire::matching_referrers(&self.referrers, artifact_type_prefix, DEFAULT_MAX_REFERRERS)
            .map_err(|reason| Self::malformed(image, "referrers", reason))
    }
}

pub(crate) fn registry_answers(data: &[u8]) {
    let store = Store::from_parts(data);
    if let Ok(found) = wire::matching_referrers(&store.referrers, BUNDLE_PREFIX, 4) {
        assert!(found.len() <= 4);
        assert!(found.iter().all(|descriptor| descriptor
            .artifact_type
            .as_deref()
            .is_some_and(|artifact_type| artifact_type.starts_with(BUNDLE_PREFIX))));
    }
    let served: Vec<String> = store
        .blobs
        .keys()
        .map(|digest| digest.hex().to_owned())
        .collect();
    let checker = ImageChecker::new(store, embedded_roots(), CheckSettings::default());
    let check =
        block_on(checker.check_at(example_policy(), IMAGE, &Destination::Unselected, now()));
    match &check.outcome {
        ImageOutcome::Verified {
            digest,
            attestation,
            platforms_checked,
            ..
        } => {
            let named: Vec<&str> = attestation
                .subjects
                .iter()
                .filter_map(|subject| subject.digest.get("sha256").map(String::as_str))
                .collect();
            let bound = match platforms_checked {
                None => named
                    .iter()
                    .any(|hex| Some(*hex) == digest.strip_prefix("sha256:")),
                Some(_) => named
                    .iter()
                    .any(|hex| served.iter().any(|served| served == hex)),
            };
            assert!(
                bound,
                "verified {digest} by an attestation naming {named:?}"
            );
        }
        ImageOutcome::Failed { reason, .. } => assert!(reason.len() <= MAX_REASON_BYTES),
        ImageOutcome::Exempt | ImageOutcome::Unmatched { .. } => {
            panic!("{IMAGE} is covered by a rule: {:?}", check.outcome)
        }
    }
}

/// Docker's token spec caps nothing; the client caches a token for an hour at most.
const MAX_TOKEN_CACHE_SECONDS: u64 = 3600;

pub(crate) fn www_authenticate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for (scheme, params) in wire::challenges(&text) {
        assert!(!scheme.is_empty());
        assert_eq!(scheme, scheme.to_ascii_lowercase());
        assert!(params.keys().all(|key| *key == key.to_ascii_lowercase()));
    }
    if let Some(Some((realm, _service))) = wire::chosen_challenge(text.split('\n')) {
        assert!(
            !realm.is_empty(),
            "a Bearer challenge without a realm is answered"
        );
    }
    if let Ok((token, cache_for)) = wire::token_response(data) {
        assert!(!token.is_empty());
        assert!(cache_for.as_secs() <= MAX_TOKEN_CACHE_SECONDS);
    }
}
