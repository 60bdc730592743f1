//! Pushes images and GitHub artifact attestations into a registry, the way
//! the real producers do.
//!
//! An attestation is pushed exactly as `actions/attest-build-provenance`
//! (`push-to-registry: true`) pushes it (see
//! `tests/data/oci/attestation-referrer-manifest.ghcr.json`): an OCI
//! image manifest with `artifactType`
//! `application/vnd.dev.sigstore.bundle.v0.3+json`, the empty config
//! (`application/vnd.oci.empty.v1+json`, the two bytes `{}`), one layer holding
//! the bundle, `subject` = the image manifest's descriptor, and the
//! annotations `org.opencontainers.image.created`,
//! `dev.sigstore.bundle.content: dsse-envelope` and
//! `dev.sigstore.bundle.predicateType`; pushed by digest. Where the registry
//! does not acknowledge the subject (no `OCI-Subject` header on the manifest
//! PUT: no referrers API, as with distribution 2.8), the client also
//! maintains the referrers tag schema of OCI distribution-spec 1.1: an image
//! index under the tag `sha256-<hex of the subject>` that lists the referrer,
//! merged with whatever that tag already holds.

use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use super::client::{sha256_digest, RegistryClient};
use super::token::hex_string;
use crate::{MintSpec, TestInstance, BUNDLE_V0_3_MEDIA_TYPE, SLSA_PROVENANCE_V1};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// The OCI empty descriptor's media type (the config of an artifact).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The digest of `{}`, the OCI empty blob.
pub const OCI_EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The artifact type (and layer media type) of a Sigstore bundle v0.3.
pub const SIGSTORE_BUNDLE_ARTIFACT_TYPE: &str = BUNDLE_V0_3_MEDIA_TYPE;

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The media type of the content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The size in bytes the descriptor claims.
    pub size: u64,
    /// The artifact type, for referrers.
    pub artifact_type: Option<String>,
    /// The platform, for index entries.
    pub platform: Option<Platform>,
    /// Annotations, in order.
    pub annotations: Vec<(String, String)>,
}

impl Descriptor {
    /// A descriptor of `bytes` as `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            platform: None,
            annotations: Vec::new(),
        }
    }

    /// The lowercase hex of the digest, without `sha256:`.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// The descriptor as JSON, fields in the order GitHub's client writes them.
    pub fn to_json(&self) -> String {
        let mut fields = vec![
            ("mediaType", json_string(&self.media_type)),
            ("digest", json_string(&self.digest)),
            ("size", self.size.to_string()),
        ];
        if let Some(artifact_type) = &self.artifact_type {
            fields.push(("artifactType", json_string(artifact_type)));
        }
        if let Some(platform) = &self.platform {
            fields.push(("platform", platform.to_json()));
        }
        if !self.annotations.is_empty() {
            fields.push(("annotations", annotations_json(&self.annotations)));
        }
        ordered_object(&fields)
    }
}

/// A platform of a multi-architecture image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// e.g. `v8` for `arm64`.
    pub variant: Option<String>,
}

impl Platform {
    /// `os/architecture` without a variant.
    pub fn new(os: &str, architecture: &str) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// `linux/amd64`.
    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64")
    }

    /// `linux/arm64/v8`.
    pub fn linux_arm64() -> Platform {
        Platform {
            variant: Some("v8".into()),
            ..Platform::new("linux", "arm64")
        }
    }

    fn to_json(&self) -> String {
        let mut fields = vec![
            ("architecture", json_string(&self.architecture)),
            ("os", json_string(&self.os)),
        ];
        if let Some(variant) = &self.variant {
            fields.push(("variant", json_string(variant)));
        }
        ordered_object(&fields)
    }
}

/// An image manifest in a registry.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// The repository, e.g. `acme/api`.
    pub repository: String,
    /// The tag, for images pushed under one (platform images of an index
    /// are pushed by digest only).
    pub tag: Option<String>,
    /// `HOST:PORT/repository:tag` (or `@digest` when untagged): what a pod
    /// spec names.
    pub reference: String,
    /// `HOST:PORT/repository@sha256:…`.
    pub pinned_reference: String,
    /// The image manifest's descriptor (media type, digest, size).
    pub manifest: Descriptor,
    /// The image manifest's digest, `sha256:…` (same as `manifest.digest`).
    pub manifest_digest: String,
    /// The manifest bytes as pushed.
    pub manifest_bytes: Vec<u8>,
    /// The attestation pushed for it, if any.
    pub attestation: Option<PushedAttestation>,
}

impl PushedImage {
    /// The attestation; panics for an image pushed without one.
    pub fn attestation(&self) -> &PushedAttestation {
        self.attestation
            .as_ref()
            .unwrap_or_else(|| panic!("{} was pushed without an attestation", self.reference))
    }

    /// The bundle layer's digest (of an attested image).
    pub fn bundle_digest(&self) -> &str {
        &self.attestation().bundle.digest
    }

    /// The referrer manifest's digest (of an attested image).
    pub fn referrer_digest(&self) -> &str {
        &self.attestation().referrer.digest
    }
}

/// An attestation (referrer manifest + bundle layer) in a registry.
#[derive(Debug, Clone)]
pub struct PushedAttestation {
    /// The subject it is attached to.
    pub subject: Descriptor,
    /// The bundle (JSON) as minted.
    pub bundle_json: String,
    /// The bundle layer's descriptor as the referrer manifest lists it
    /// (for a corrupted layer: what the descriptor claims, not the truth).
    pub bundle: Descriptor,
    /// The referrer manifest's descriptor, with its artifact type and
    /// annotations, as a referrers index lists it.
    pub referrer: Descriptor,
    /// The referrer manifest bytes as pushed.
    pub referrer_manifest: Vec<u8>,
    /// The referrers tag schema tag updated (`sha256-<hex>`), if one was.
    pub referrers_tag: Option<String>,
}

/// Whether to maintain the referrers tag schema (`sha256-<hex>` index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrersTagSchema {
    /// As OCI distribution-spec 1.1 clients do: only when the registry's
    /// answer to the manifest PUT has no `OCI-Subject` header.
    Auto,
    /// Always, also where the registry has the referrers API.
    Always,
    /// Never: the attestation is only discoverable through the referrers
    /// API (if the registry has one).
    Never,
}

/// Which platform images of a multi-architecture index get an attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestPlatforms {
    /// Every platform image.
    All,
    /// None of them.
    None,
    /// All but the platform at this position of the list.
    AllExcept(usize),
    /// Only the platforms at these positions.
    Only(Vec<usize>),
}

impl AttestPlatforms {
    fn includes(&self, position: usize) -> bool {
        match self {
            AttestPlatforms::All => true,
            AttestPlatforms::None => false,
            AttestPlatforms::AllExcept(excluded) => position != *excluded,
            AttestPlatforms::Only(included) => included.contains(&position),
        }
    }
}

/// Which parts of a multi-architecture image get attestations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexAttestations {
    /// An attestation whose subject is the index itself.
    pub index: bool,
    /// The platform images that get their own.
    pub platforms: AttestPlatforms,
}

/// A multi-architecture image index in a registry.
#[derive(Debug, Clone)]
pub struct PushedIndex {
    /// The repository.
    pub repository: String,
    /// The tag the index is pushed under.
    pub tag: String,
    /// `HOST:PORT/repository:tag`.
    pub reference: String,
    /// `HOST:PORT/repository@sha256:…` (the index digest).
    pub pinned_reference: String,
    /// The index's descriptor.
    pub index: Descriptor,
    /// The index digest (same as `index.digest`).
    pub index_digest: String,
    /// The index bytes as pushed.
    pub index_bytes: Vec<u8>,
    /// The attestation whose subject is the index, if any.
    pub attestation: Option<PushedAttestation>,
    /// The platform images, in the order given, each with its attestation
    /// if it got one.
    pub platforms: Vec<(Platform, PushedImage)>,
}

/// How a referrer's bundle layer is broken by
/// [`push_referrer_with_corrupt_layer`].
///
/// A registry verifies a blob's digest when it is uploaded, so a client
/// cannot push a layer whose bytes disagree with their digest. What does
/// happen in the wild is a descriptor that lies about the size, and a
/// registry (or its storage, or something between it and the client) that
/// serves other bytes than were pushed under a digest. The at-rest variants
/// do the latter by rewriting the registry's stored blob after the push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCorruption {
    /// The referrer manifest's layer descriptor claims one byte more than
    /// the bundle has; the digest is right and the bytes are a valid bundle.
    SizeMismatch,
    /// After the push, the stored bundle is replaced by another valid
    /// bundle for the same subject and identity, padded to the same length:
    /// a client that does not check the digest of what it fetched accepts
    /// it, so only that check can deny it.
    SubstitutedAtRest,
    /// After the push, one bit of the stored bundle is flipped (its last
    /// byte, so it is no longer JSON either).
    BitFlipAtRest,
}

/// A registry the kit started, as the push kit needs it.
pub trait TestRegistry {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    fn base_url(&self) -> String;
    /// `127.0.0.1:PORT`.
    fn host(&self) -> String;
    /// The CA certificate (PEM) that TLS verifies against, when TLS is on.
    fn ca_pem(&self) -> Option<String>;
    /// A client with the CA and, where the registry needs them, credentials
    /// allowed to push.
    fn client(&self) -> RegistryClient;
    /// Whether the registry serves the OCI 1.1 referrers API.
    fn has_referrers_api(&self) -> bool;
    /// Rewrites the stored bytes of blob `digest` (to simulate storage that
    /// serves other bytes than were pushed). Panics if it is not stored.
    fn replace_stored_blob(&self, digest: &str, bytes: &[u8]);
}

/// Pushes a small random image (a config blob, one layer, an OCI image
/// manifest) under `repository:tag`.
pub fn push_unattested_image(client: &RegistryClient, repository: &str, tag: &str) -> PushedImage {
    push_image(client, repository, Some(tag), &Platform::linux_amd64())
}

/// Pushes a small random image under `repository:tag` and an attestation
/// for it as `actions/attest-build-provenance` does. The bundle is minted by
/// `instance` from `MintSpec::github_build(<manifest hex>)` with subject
/// `HOST:PORT/repository` and the manifest digest, then `spec_edit` (return
/// the spec unchanged for a valid attestation; change its subject to attach
/// an attestation about another digest).
pub fn push_attested_image(
    client: &RegistryClient,
    repository: &str,
    tag: &str,
    instance: &TestInstance,
    spec_edit: impl Fn(MintSpec) -> MintSpec,
) -> PushedImage {
    let mut image = push_unattested_image(client, repository, tag);
    let bundle = mint_for(client, repository, &image.manifest, instance, &spec_edit);
    image.attestation = Some(attach_attestation(
        client,
        repository,
        &image.manifest,
        &bundle,
        ReferrersTagSchema::Auto,
    ));
    image
}

/// Attaches `bundle_json` to `subject` in `repository`: pushes the empty
/// config, the bundle layer and the referrer manifest (by digest), and
/// updates the referrers tag schema as `tag_schema` says. Attach several
/// bundles to one subject by calling it several times.
pub fn attach_attestation(
    client: &RegistryClient,
    repository: &str,
    subject: &Descriptor,
    bundle_json: &str,
    tag_schema: ReferrersTagSchema,
) -> PushedAttestation {
    attach_artifact(
        client,
        repository,
        subject,
        SIGSTORE_BUNDLE_ARTIFACT_TYPE,
        bundle_json,
        tag_schema,
    )
}

/// Like [`attach_attestation`], with `artifact_type` as the referrer's
/// artifact type and its layer's media type, and `content` (any text, e.g.
/// JSON Lines of many bundles) as the layer: referrers that only look like
/// attestations.
pub fn attach_artifact(
    client: &RegistryClient,
    repository: &str,
    subject: &Descriptor,
    artifact_type: &str,
    content: &str,
    tag_schema: ReferrersTagSchema,
) -> PushedAttestation {
    client.push_blob(repository, content.as_bytes());
    let layer = Descriptor::of(artifact_type, content.as_bytes());
    push_referrer(
        client,
        repository,
        subject,
        content,
        layer,
        predicate_type_of(content),
        tag_schema,
    )
}

/// Pushes a random image under `repository:tag` and an attestation for it
/// whose bundle layer is broken as `corruption` says (see
/// [`LayerCorruption`] for what a real registry can and cannot be made to
/// serve). The bundle is minted as in [`push_attested_image`].
pub fn push_referrer_with_corrupt_layer(
    registry: &dyn TestRegistry,
    repository: &str,
    tag: &str,
    instance: &TestInstance,
    corruption: LayerCorruption,
    spec_edit: impl Fn(MintSpec) -> MintSpec,
) -> PushedImage {
    let client = registry.client();
    let mut image = push_unattested_image(&client, repository, tag);
    let mut bundle_json = mint_for(&client, repository, &image.manifest, instance, &spec_edit);
    let mut substitute = None;
    if corruption == LayerCorruption::SubstitutedAtRest {
        // Two bundles of one length: pad the shorter with trailing
        // whitespace, which JSON ignores.
        let mut other = mint_for(&client, repository, &image.manifest, instance, &spec_edit);
        let length = bundle_json.len().max(other.len());
        pad_to(&mut bundle_json, length);
        pad_to(&mut other, length);
        assert_ne!(bundle_json, other, "two mints differ (fresh keys)");
        substitute = Some(other);
    }
    let bundle_bytes = bundle_json.as_bytes();
    client.push_blob(&image.repository, bundle_bytes);
    let mut bundle = Descriptor::of(SIGSTORE_BUNDLE_ARTIFACT_TYPE, bundle_bytes);
    match corruption {
        LayerCorruption::SizeMismatch => bundle.size += 1,
        LayerCorruption::SubstitutedAtRest => registry.replace_stored_blob(
            &bundle.digest,
            substitute
                .as_ref()
                .expect("a substitute was minted above")
                .as_bytes(),
        ),
        LayerCorruption::BitFlipAtRest => {
            let mut flipped = bundle_bytes.to_vec();
            *flipped.last_mut().expect("a bundle is never empty") ^= 0x01;
            registry.replace_stored_blob(&bundle.digest, &flipped);
        }
    }
    image.attestation = Some(push_referrer(
        &client,
        repository,
        &image.manifest,
        &bundle_json,
        bundle,
        predicate_type_of(&bundle_json),
        ReferrersTagSchema::Auto,
    ));
    image
}

/// Pushes a multi-architecture image: one random image per platform (by
/// digest) and an OCI image index listing them under `repository:tag`.
/// `attestations` says whether the index gets an attestation (subject: the
/// index digest) and which platform images get their own. Every bundle is
/// minted as in [`push_attested_image`], `spec_edit` applied.
pub fn push_multi_arch_index(
    client: &RegistryClient,
    repository: &str,
    tag: &str,
    platforms: &[Platform],
    instance: &TestInstance,
    attestations: IndexAttestations,
    spec_edit: impl Fn(MintSpec) -> MintSpec,
) -> PushedIndex {
    assert!(
        !platforms.is_empty(),
        "an index lists at least one platform"
    );
    let mut pushed_platforms = Vec::new();
    for (position, platform) in platforms.iter().enumerate() {
        let mut image = push_image(client, repository, None, platform);
        if attestations.platforms.includes(position) {
            let bundle = mint_for(client, repository, &image.manifest, instance, &spec_edit);
            image.attestation = Some(attach_attestation(
                client,
                repository,
                &image.manifest,
                &bundle,
                ReferrersTagSchema::Auto,
            ));
        }
        pushed_platforms.push((platform.clone(), image));
    }
    let entries: Vec<Descriptor> = pushed_platforms
        .iter()
        .map(|(platform, image)| Descriptor {
            platform: Some(platform.clone()),
            ..image.manifest.clone()
        })
        .collect();
    let index_bytes = index_document(&entries);
    let index_digest = client.push_manifest(repository, tag, OCI_INDEX, &index_bytes);
    let index = Descriptor::of(OCI_INDEX, &index_bytes);
    let attestation = attestations.index.then(|| {
        let bundle = mint_for(client, repository, &index, instance, &spec_edit);
        attach_attestation(
            client,
            repository,
            &index,
            &bundle,
            ReferrersTagSchema::Auto,
        )
    });
    PushedIndex {
        repository: repository.to_owned(),
        tag: tag.to_owned(),
        reference: format!("{}/{repository}:{tag}", client.host()),
        pinned_reference: format!("{}/{repository}@{index_digest}", client.host()),
        index,
        index_digest,
        index_bytes,
        attestation,
        platforms: pushed_platforms,
    }
}

/// Pushes an OCI image index listing `entries` exactly as given (platforms,
/// annotations and all) under `repository:tag`; returns its descriptor.
/// The entries' manifests must be in the repository already.
pub fn push_index(
    client: &RegistryClient,
    repository: &str,
    tag: &str,
    entries: &[Descriptor],
) -> Descriptor {
    let index_bytes = index_document(entries);
    client.push_manifest(repository, tag, OCI_INDEX, &index_bytes);
    Descriptor::of(OCI_INDEX, &index_bytes)
}

/// Pushes a random runnable image for `platform` by digest only, without an
/// attestation, as the platform images of an index are pushed.
pub fn push_untagged_image(
    client: &RegistryClient,
    repository: &str,
    platform: &Platform,
) -> PushedImage {
    push_image(client, repository, None, platform)
}

/// Pushes an attestation manifest for `subject` as BuildKit does (by
/// digest): an image manifest whose config says `unknown/unknown` and whose
/// one layer is an in-toto statement (`application/vnd.in-toto+json`).
/// Returns the index entry BuildKit writes for it: platform
/// `unknown/unknown`, annotated `vnd.docker.reference.type:
/// attestation-manifest` and `vnd.docker.reference.digest: <subject>`.
pub fn push_buildkit_attestation_manifest(
    client: &RegistryClient,
    repository: &str,
    subject: &Descriptor,
) -> Descriptor {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "_", "digest": {"sha256": subject.hex()}}],
        "predicate": {"builder": {"id": ""}},
    })
    .to_string()
    .into_bytes();
    let mut layer = Descriptor::of("application/vnd.in-toto+json", &statement);
    layer.annotations = vec![(
        "in-toto.io/predicate-type".to_owned(),
        "https://slsa.dev/provenance/v0.2".to_owned(),
    )];
    let config_bytes = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    })
    .to_string()
    .into_bytes();
    let config = Descriptor::of(OCI_IMAGE_CONFIG, &config_bytes);
    client.push_blob(repository, &statement);
    client.push_blob(repository, &config_bytes);
    let manifest_bytes = image_manifest(&config, &layer, &[]);
    let digest = sha256_digest(&manifest_bytes);
    client.push_manifest(repository, &digest, OCI_MANIFEST, &manifest_bytes);
    Descriptor {
        platform: Some(Platform::new("unknown", "unknown")),
        annotations: vec![
            (
                "vnd.docker.reference.digest".to_owned(),
                subject.digest.clone(),
            ),
            (
                "vnd.docker.reference.type".to_owned(),
                "attestation-manifest".to_owned(),
            ),
        ],
        ..Descriptor::of(OCI_MANIFEST, &manifest_bytes)
    }
}

/// Pushes a valid OCI image manifest of exactly `size` bytes under
/// `repository:tag`: a random image whose manifest carries one long
/// annotation (`dev.provenance-gate.testkit.padding`). Returns the
/// registry's answer when it refuses the manifest.
///
/// Registries take manifests up to their own limit: distribution 2.8.2
/// refuses a body over 4 MiB (4,194,304 bytes: 400 `MANIFEST_INVALID`,
/// "http: request body too large"); ferro-oci-server takes up to 512 MiB.
/// To serve a larger manifest from distribution, put a [`super::FaultProxy`]
/// in front with [`super::Fault::ReplaceBody`].
pub fn push_oversized_manifest(
    client: &RegistryClient,
    repository: &str,
    tag: &str,
    size: usize,
) -> Result<PushedImage, super::HttpResponse> {
    let (config, layer) = push_image_blobs(client, repository, &Platform::linux_amd64());
    let padding_key = "dev.provenance-gate.testkit.padding";
    let unpadded = image_manifest(&config, &layer, &[(padding_key, "")]).len();
    assert!(
        size >= unpadded,
        "a manifest cannot be smaller than {unpadded} bytes"
    );
    let padding = "a".repeat(size - unpadded);
    let manifest_bytes = image_manifest(&config, &layer, &[(padding_key, &padding)]);
    debug_assert_eq!(manifest_bytes.len(), size);
    let response = client.try_push_manifest(repository, tag, OCI_MANIFEST, &manifest_bytes);
    if response.status != 201 {
        return Err(response);
    }
    Ok(image_from_pushed_manifest(
        client,
        repository,
        Some(tag),
        manifest_bytes,
    ))
}

/// Pushes a random image for `platform` (by tag, or by digest if `tag` is
/// `None`).
fn push_image(
    client: &RegistryClient,
    repository: &str,
    tag: Option<&str>,
    platform: &Platform,
) -> PushedImage {
    let (config, layer) = push_image_blobs(client, repository, platform);
    let manifest_bytes = image_manifest(&config, &layer, &[]);
    finish_image(client, repository, tag, manifest_bytes)
}

fn finish_image(
    client: &RegistryClient,
    repository: &str,
    tag: Option<&str>,
    manifest_bytes: Vec<u8>,
) -> PushedImage {
    let digest = sha256_digest(&manifest_bytes);
    let reference = tag.unwrap_or(&digest).to_owned();
    client.push_manifest(repository, &reference, OCI_MANIFEST, &manifest_bytes);
    image_from_pushed_manifest(client, repository, tag, manifest_bytes)
}

fn image_from_pushed_manifest(
    client: &RegistryClient,
    repository: &str,
    tag: Option<&str>,
    manifest_bytes: Vec<u8>,
) -> PushedImage {
    let manifest = Descriptor::of(OCI_MANIFEST, &manifest_bytes);
    let host = client.host();
    PushedImage {
        repository: repository.to_owned(),
        tag: tag.map(str::to_owned),
        reference: match tag {
            Some(tag) => format!("{host}/{repository}:{tag}"),
            None => format!("{host}/{repository}@{}", manifest.digest),
        },
        pinned_reference: format!("{host}/{repository}@{}", manifest.digest),
        manifest_digest: manifest.digest.clone(),
        manifest,
        manifest_bytes,
        attestation: None,
    }
}

/// Pushes a random one-file layer (an uncompressed tar) and a config that
/// names it; returns their descriptors.
fn push_image_blobs(
    client: &RegistryClient,
    repository: &str,
    platform: &Platform,
) -> (Descriptor, Descriptor) {
    let mut random = [0u8; 32];
    OsRng.fill_bytes(&mut random);
    let layer_bytes = single_file_tar("hello.txt", format!("{}\n", hex_string(&random)).as_bytes());
    let layer = Descriptor::of(OCI_LAYER_TAR, &layer_bytes);
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": { "Cmd": ["/hello.txt"] },
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = json!(variant);
    }
    let config_bytes = config.to_string().into_bytes();
    let config = Descriptor::of(OCI_IMAGE_CONFIG, &config_bytes);
    client.push_blob(repository, &layer_bytes);
    client.push_blob(repository, &config_bytes);
    (config, layer)
}

fn image_manifest(
    config: &Descriptor,
    layer: &Descriptor,
    annotations: &[(&str, &str)],
) -> Vec<u8> {
    let mut fields = vec![
        ("schemaVersion", "2".to_owned()),
        ("mediaType", json_string(OCI_MANIFEST)),
        ("config", config.to_json()),
        ("layers", format!("[{}]", layer.to_json())),
    ];
    if !annotations.is_empty() {
        let annotations: Vec<(String, String)> = annotations
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        fields.push(("annotations", annotations_json(&annotations)));
    }
    ordered_object(&fields).into_bytes()
}

/// Mints a bundle about `subject` as pushed to `client`'s registry.
fn mint_for(
    client: &RegistryClient,
    repository: &str,
    subject: &Descriptor,
    instance: &TestInstance,
    spec_edit: &dyn Fn(MintSpec) -> MintSpec,
) -> String {
    let subject_name = format!("{}/{repository}", client.host());
    let spec = MintSpec::github_build(subject.hex()).with_subject(&subject_name, subject.hex());
    instance.mint(&spec_edit(spec))
}

/// Pushes the empty config and a referrer manifest for the (already
/// pushed) `bundle` layer, then the tag schema index if called for.
fn push_referrer(
    client: &RegistryClient,
    repository: &str,
    subject: &Descriptor,
    bundle_json: &str,
    bundle: Descriptor,
    predicate_type: String,
    tag_schema: ReferrersTagSchema,
) -> PushedAttestation {
    client.push_blob(repository, b"{}");
    // The artifact type is the bundle layer's media type, as GitHub's client writes it.
    let artifact_type = bundle.media_type.clone();
    let annotations = vec![
        ("org.opencontainers.image.created".to_owned(), created_now()),
        (
            "dev.sigstore.bundle.content".to_owned(),
            "dsse-envelope".to_owned(),
        ),
        (
            "dev.sigstore.bundle.predicateType".to_owned(),
            predicate_type,
        ),
    ];
    let empty_config = Descriptor {
        media_type: OCI_EMPTY.into(),
        digest: OCI_EMPTY_DIGEST.into(),
        size: 2,
        artifact_type: None,
        platform: None,
        annotations: Vec::new(),
    };
    let subject_descriptor = Descriptor {
        media_type: subject.media_type.clone(),
        digest: subject.digest.clone(),
        size: subject.size,
        artifact_type: None,
        platform: None,
        annotations: Vec::new(),
    };
    let referrer_manifest = ordered_object(&[
        ("schemaVersion", "2".into()),
        ("mediaType", json_string(OCI_MANIFEST)),
        ("artifactType", json_string(&artifact_type)),
        ("config", empty_config.to_json()),
        ("layers", format!("[{}]", bundle.to_json())),
        ("subject", subject_descriptor.to_json()),
        ("annotations", annotations_json(&annotations)),
    ])
    .into_bytes();
    let referrer_digest = sha256_digest(&referrer_manifest);
    let response = client.try_push_manifest(
        repository,
        &referrer_digest,
        OCI_MANIFEST,
        &referrer_manifest,
    );
    assert_eq!(
        response.status,
        201,
        "pushing the referrer manifest {referrer_digest} to {}/{repository} failed: {}",
        client.base_url(),
        response.text()
    );
    let referrer = Descriptor {
        artifact_type: Some(artifact_type),
        annotations,
        ..Descriptor::of(OCI_MANIFEST, &referrer_manifest)
    };
    let acknowledged = response.header("oci-subject").is_some();
    let use_tag_schema = match tag_schema {
        ReferrersTagSchema::Auto => !acknowledged,
        ReferrersTagSchema::Always => true,
        ReferrersTagSchema::Never => false,
    };
    let referrers_tag =
        use_tag_schema.then(|| update_referrers_tag(client, repository, subject, &referrer));
    PushedAttestation {
        subject: subject.clone(),
        bundle_json: bundle_json.to_owned(),
        bundle,
        referrer,
        referrer_manifest,
        referrers_tag,
    }
}

/// Adds `referrer` to the index under the tag `sha256-<hex of subject>`,
/// creating it if missing; returns the tag.
fn update_referrers_tag(
    client: &RegistryClient,
    repository: &str,
    subject: &Descriptor,
    referrer: &Descriptor,
) -> String {
    let tag = format!("sha256-{}", subject.hex());
    let existing = client.get_manifest(repository, &tag);
    let mut entries: Vec<String> = match existing.status {
        200 => existing.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|entry| entry["digest"] != referrer.digest.as_str())
            .map(|entry| entry.to_string())
            .collect(),
        404 => Vec::new(),
        status => panic!(
            "reading the referrers tag {tag} of {}/{repository} failed ({status}): {}",
            client.base_url(),
            existing.text()
        ),
    };
    entries.push(referrer.to_json());
    let index = ordered_object(&[
        ("schemaVersion", "2".into()),
        ("mediaType", json_string(OCI_INDEX)),
        ("manifests", format!("[{}]", entries.join(","))),
    ]);
    client.push_manifest(repository, &tag, OCI_INDEX, index.as_bytes());
    tag
}

/// The predicate type a bundle's statement names (for the annotation).
fn predicate_type_of(bundle_json: &str) -> String {
    use base64::Engine;
    let predicate_type = || -> Option<String> {
        let bundle: Value = serde_json::from_str(bundle_json).ok()?;
        let payload = bundle["dsseEnvelope"]["payload"].as_str()?;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .ok()?;
        let statement: Value = serde_json::from_slice(&payload).ok()?;
        statement["predicateType"].as_str().map(str::to_owned)
    };
    predicate_type().unwrap_or_else(|| SLSA_PROVENANCE_V1.to_owned())
}

/// `2025-04-07T14:08:20.999Z`, as GitHub's client writes the creation time.
fn created_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn pad_to(text: &mut String, length: usize) {
    while text.len() < length {
        text.push(' ');
    }
}

/// A POSIX tar archive holding one regular file.
fn single_file_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[108..115].copy_from_slice(b"0000000");
    header[116..123].copy_from_slice(b"0000000");
    header[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
    header[148..155].copy_from_slice(format!("{checksum:06o}\0").as_bytes());
    let mut archive = header.to_vec();
    archive.extend_from_slice(content);
    archive.resize(archive.len().div_ceil(512) * 512, 0);
    // Two zero blocks end the archive.
    archive.extend_from_slice(&[0u8; 1024]);
    archive
}

/// An OCI image index listing `entries`, fields in GitHub's order.
fn index_document(entries: &[Descriptor]) -> Vec<u8> {
    let entries: Vec<String> = entries.iter().map(Descriptor::to_json).collect();
    ordered_object(&[
        ("schemaVersion", "2".into()),
        ("mediaType", json_string(OCI_INDEX)),
        ("manifests", format!("[{}]", entries.join(","))),
    ])
    .into_bytes()
}

fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn annotations_json(annotations: &[(String, String)]) -> String {
    let fields: Vec<(&str, String)> = annotations
        .iter()
        .map(|(key, value)| (key.as_str(), json_string(value)))
        .collect();
    ordered_object(&fields)
}

/// A JSON object with fields in the given order (serde_json's map sorts its
/// keys, and the kit wants GitHub's field order); values are JSON text.
fn ordered_object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", json_string(key)))
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrer_layout_matches_the_one_github_pushed() {
        // Same fields, same order, as the GHCR manifest in the shared test
        // data (the bundle and subject differ, of course).
        let subject = Descriptor::of(OCI_MANIFEST, b"{\"x\":1}");
        let bundle = Descriptor::of(SIGSTORE_BUNDLE_ARTIFACT_TYPE, b"{}");
        let manifest = ordered_object(&[
            ("schemaVersion", "2".into()),
            ("mediaType", json_string(OCI_MANIFEST)),
            ("artifactType", json_string(SIGSTORE_BUNDLE_ARTIFACT_TYPE)),
            ("layers", format!("[{}]", bundle.to_json())),
            ("subject", subject.to_json()),
        ]);
        let value: Value = serde_json::from_str(&manifest).expect("valid JSON");
        assert_eq!(
            value["layers"][0]["mediaType"],
            SIGSTORE_BUNDLE_ARTIFACT_TYPE
        );
        assert_eq!(value["subject"]["size"], 7);
    }

    #[test]
    fn the_empty_digest_is_the_digest_of_two_braces() {
        assert_eq!(sha256_digest(b"{}"), OCI_EMPTY_DIGEST);
    }

    #[test]
    fn tar_checksum_is_what_tar_expects() {
        let archive = single_file_tar("hello.txt", b"hi\n");
        assert_eq!(archive.len(), 512 + 512 + 1024);
        let stored = std::str::from_utf8(&archive[148..154]).expect("octal digits");
        let mut header = archive[..512].to_vec();
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).expect("octal"), sum);
    }
}
