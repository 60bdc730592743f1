//! Real registries on loopback for the registry tests, a fault-injecting
//! proxy to put in front of them, and a push kit that fills them with
//! images and GitHub-style attestations.
//!
//! - [`DistributionRegistry`]: CNCF distribution 2.8 (Debian's
//!   `docker-registry`), no referrers API: plain, TLS + Basic auth, TLS +
//!   token auth (with a [`TokenServer`]).
//! - [`FerroRegistry`]: `ferro-oci-server`, an OCI 1.1 registry with the
//!   referrers API, served in-process.
//! - [`FaultProxy`]: counts the requests a registry receives and answers
//!   401, 404, 429, 500, stalls, or corrupts bodies on demand.
//! - [`ConnectionRecorder`]: a port that only counts connection attempts.
//! - [`push_attested_image`] and friends: images, indexes and attestations
//!   pushed as `actions/attest-build-provenance` pushes them.
//!
//! Every server listens on `127.0.0.1` only and stops when its guard drops.
//!
//! ```no_run
//! use provenance_gate_testkit::registry::{
//!     push_attested_image, DistributionRegistry, TestRegistry,
//! };
//! use provenance_gate_testkit::TestInstance;
//!
//! let registry = DistributionRegistry::tls_with_basic_auth();
//! let instance = TestInstance::timestamp_only();
//! let image = push_attested_image(&registry.client(), "acme/api", "v1", &instance, |spec| spec);
//! // image.reference == "127.0.0.1:PORT/acme/api:v1"; trust registry.ca_pem(),
//! // log in with registry.credentials(), verify under instance.trusted_root_json().
//! # let _ = image;
//! ```

mod client;
mod distribution;
mod fault_proxy;
mod ferro;
mod http1;
mod oci;
mod tls;
mod token;

pub use client::{sha256_digest, HttpResponse, RegistryClient, MANIFEST_ACCEPT};
pub use distribution::{
    DistributionAuth, DistributionRegistry, BASIC_REALM, TOKEN_ISSUER, TOKEN_SERVICE,
};
pub use fault_proxy::{ConnectionRecorder, Fault, FaultProxy, RecordedRequest};
pub use ferro::FerroRegistry;
pub use oci::{
    attach_artifact, attach_attestation, push_attested_image, push_buildkit_attestation_manifest,
    push_index, push_multi_arch_index, push_oversized_manifest, push_referrer_with_corrupt_layer,
    push_unattested_image, push_untagged_image, AttestPlatforms, Descriptor, IndexAttestations,
    LayerCorruption, Platform, PushedAttestation, PushedImage, PushedIndex, ReferrersTagSchema,
    TestRegistry, OCI_EMPTY, OCI_EMPTY_DIGEST, OCI_IMAGE_CONFIG, OCI_INDEX, OCI_LAYER_TAR,
    OCI_MANIFEST, SIGSTORE_BUNDLE_ARTIFACT_TYPE,
};
pub use tls::{ServerIdentity, TestCa};
pub use token::{TokenAccess, TokenRequest, TokenServer};

/// A user name and password (Basic auth, or at a token realm).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl Credentials {
    /// `username` / `password`.
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The same user with a wrong password.
    pub fn with_wrong_password(&self) -> Credentials {
        Credentials::new(&self.username, &format!("{}-wrong", self.password))
    }

    /// The `.dockerconfigjson` document (what an imagePullSecret holds)
    /// for these credentials at `host`.
    pub fn docker_config_json(&self, host: &str) -> String {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password));
        serde_json::json!({
            "auths": { host: {
                "username": self.username,
                "password": self.password,
                "auth": auth,
            }}
        })
        .to_string()
    }
}

impl std::fmt::Debug for Credentials {
    /// The password stays out of test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}
