//! `ferro-oci-server` (an OCI distribution-spec 1.1 registry with the
//! referrers API) served in-process on a loopback port: its own tokio
//! runtime on its own thread, blobs on disk in a temporary directory (so a
//! test can corrupt them), metadata in memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use ferro_oci_server::{probe_routes, router, AppState, InMemoryRegistryMeta};

use super::client::RegistryClient;
use super::oci::TestRegistry;

/// A running ferro-oci-server (plain HTTP, no auth), stopped when dropped.
pub struct FerroRegistry {
    address: SocketAddr,
    blob_root: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
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
        // Bound here, before the thread starts, so the port is known and
        // connections queue until the server accepts them.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener
            .set_nonblocking(true)
            .expect("a listener can be made non-blocking for tokio");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (shutdown, shutdown_requested) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ferro-oci-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("ferro-oci-server-worker")
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for ferro-oci-server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("tokio adopts the bound listener");
                    let state =
                        AppState::new(Arc::new(blob_store), Arc::new(InMemoryRegistryMeta::new()));
                    let app = router(state).merge(probe_routes());
                    tokio::spawn(async move {
                        if let Err(error) = axum::serve(listener, app).await {
                            eprintln!("ferro-oci-server stopped serving: {error}");
                        }
                    });
                    // Not a graceful shutdown: a test may leave a request
                    // hanging, and dropping the runtime cancels it.
                    let _ = shutdown_requested.await;
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            })
            .expect("the OS starts a thread");
        let registry = FerroRegistry {
            address,
            blob_root,
            shutdown: Some(shutdown),
            thread: Some(thread),
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
        format!("http://{}", self.address)
    }

    fn host(&self) -> String {
        self.address.to_string()
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

impl Drop for FerroRegistry {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
