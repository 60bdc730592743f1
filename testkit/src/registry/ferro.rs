//! `ferro-oci-server` (an OCI distribution-spec 1.1 registry with the
//! referrers API) served in-process on a loopback port: its own tokio
//! runtime on its own thread, blobs on disk in a temporary directory (so a
//! test can corrupt them), metadata in memory.

use std::path::PathBuf;
use std::sync::Arc;

use ferro_oci_server::{probe_routes, router, AppState, InMemoryRegistryMeta};

use super::client::RegistryClient;
use super::oci::TestRegistry;
use crate::axum_server::AxumServer;

/// A running ferro-oci-server (plain HTTP, no auth), stopped when dropped.
pub struct FerroRegistry {
    blob_root: PathBuf,
    /// Declared before the storage: it stops before the blobs are removed.
    server: AxumServer,
    _storage: tempfile::TempDir,
}

impl std::fmt::Debug for FerroRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FerroRegistry")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl FerroRegistry {
    /// Starts the registry and returns once it accepts connections.
    pub fn start() -> FerroRegistry {
        let storage = tempfile::Builder::new()
            .prefix("testkit-ferro-")
            .tempdir()
            .expect("a temporary directory for ferro's blobs");
        let blob_root = storage.path().join("blobs");
        let blob_store = ferro_blob_store::FsBlobStore::new(blob_root.clone())
            .expect("ferro's filesystem blob store opens in a fresh directory");
        let server = AxumServer::start("ferro-oci-server", 2, move || {
            let state = AppState::new(Arc::new(blob_store), Arc::new(InMemoryRegistryMeta::new()));
            router(state).merge(probe_routes())
        });
        let registry = FerroRegistry {
            blob_root,
            server,
            _storage: storage,
        };
        let ping = registry.client().ping();
        assert_eq!(
            ping.status,
            200,
            "ferro-oci-server answered GET /v2/ with {}: {}",
            ping.status,
            ping.text()
        );
        registry
    }
}

impl TestRegistry for FerroRegistry {
    fn base_url(&self) -> String {
        format!("http://{}", self.server.address())
    }

    fn host(&self) -> String {
        self.server.address().to_string()
    }

    fn ca_pem(&self) -> Option<String> {
        None
    }

    fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.base_url())
    }

    fn has_referrers_api(&self) -> bool {
        true
    }

    fn replace_stored_blob(&self, digest: &str, bytes: &[u8]) {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("{digest:?} is not a sha256 digest"));
        // ferro-blob-store's layout: <root>/sha256/<2 hex>/<rest of hex>.
        let path = self
            .blob_root
            .join("sha256")
            .join(&hex[..2])
            .join(&hex[2..]);
        assert!(
            path.is_file(),
            "blob {digest} is not stored in this registry"
        );
        std::fs::write(&path, bytes).expect("ferro's blob file is writable");
    }
}
