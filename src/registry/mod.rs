//! The OCI registry, behind a narrow trait: resolve a tag to a digest, fetch manifests and
//! blobs by digest (size-bounded and digest-checked), and list the referrers of a digest.
//!
//! Callers only ever reach a registry for an image that a policy rule covers; the trait
//! takes the image reference so that an implementation can refuse any other host.

use std::future::Future;

use crate::check::reference::{Digest, ImageReference};

mod auth;
mod client;
mod credentials;
mod exchange;
mod limits;
mod manifest;
mod observer;
mod referrers;
mod transport;
#[doc(hidden)]
pub mod wire;

pub use client::{
    HttpRegistry, RegistryOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MANIFEST_BYTES,
    DEFAULT_MAX_REDIRECTS, DEFAULT_MAX_REFERRERS, DEFAULT_REQUEST_TIMEOUT,
};
pub use credentials::{
    Credentials, CredentialsError, DockerConfig, LoginFingerprint, RegistryLogin,
};
pub use exchange::{with_workload_logins, AllowedRegistries};
pub(crate) use limits::{read_capped, BodyError};
pub use observer::{
    IgnoreRequests, RegistryOperation, RequestCounter, RequestKey, RequestObserver,
};
pub(crate) use transport::{error_chain, HostTransport, TransportLimits};
pub use transport::{HostOptions, RegistryConfigError};

/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A manifest as fetched: its digest (checked against the bytes), media type and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// An OCI content descriptor, as listed by an index or the referrers API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a registry operation failed. Each says what happened in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} refused the credentials or requires them (HTTP 401/403) for {repository}")]
    Unauthorized {
        registry: String,
        repository: String,
    },
    #[error("{what} not found in {registry}/{repository}")]
    NotFound {
        registry: String,
        repository: String,
        what: String,
    },
    #[error("registry {registry} is rate limiting requests (HTTP 429); retry later")]
    RateLimited { registry: String },
    #[error("registry {registry} answered HTTP {status} for {what}")]
    Status {
        registry: String,
        status: u16,
        what: String,
    },
    #[error("registry {registry} did not answer within {seconds}s for {what}")]
    Timeout {
        registry: String,
        seconds: u64,
        what: String,
    },
    #[error("failed to reach registry {registry}: {reason}")]
    Connection { registry: String, reason: String },
    #[error("{what} from {registry} is larger than the {limit} bytes allowed")]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
    #[error("{what} from {registry} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        registry: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what} from {registry} is malformed: {reason}")]
    Malformed {
        registry: String,
        what: String,
        reason: String,
    },
    #[error("registry {registry} is not covered by the policy; refusing to contact it")]
    NotAllowed { registry: String },
}

/// The registry operations provenance checking needs, and nothing more.
pub trait Registry: Send + Sync {
    /// The digest the image's tag names now (`HEAD`, falling back to `GET` and hashing);
    /// an image that already names a digest is returned as is, without a request.
    fn resolve(
        &self,
        image: &ImageReference,
    ) -> impl Future<Output = Result<Digest, RegistryError>> + Send;

    /// The manifest (or index) with `digest` in the image's repository.
    fn fetch_manifest(
        &self,
        image: &ImageReference,
        digest: &Digest,
    ) -> impl Future<Output = Result<FetchedManifest, RegistryError>> + Send;

    /// The blob `descriptor` names, refused when larger than its declared size or `limit`,
    /// and checked against its digest.
    fn fetch_blob(
        &self,
        image: &ImageReference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<u8>, RegistryError>> + Send;

    /// Referrers of `digest` whose artifact type starts with `artifact_type_prefix`: the OCI
    /// 1.1 referrers API, or the referrers tag schema (`sha256-<hex>`) where the registry has
    /// none. An empty list when there are none.
    fn referrers(
        &self,
        image: &ImageReference,
        digest: &Digest,
        artifact_type_prefix: &str,
    ) -> impl Future<Output = Result<Vec<Descriptor>, RegistryError>> + Send;
}
