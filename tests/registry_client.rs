//! The HTTP registry client against a real registry: Debian's `docker-registry` (CNCF
//! distribution 2.8, which has no referrers API, so referrers come from the tag schema),
//! started and stopped by each test on loopback. What a real registry will not do — never
//! answer, omit `Docker-Content-Digest`, ask for a bearer token, redirect in circles, stream
//! an endless body — is played by tiny scripted servers in this file.
//!
//! The tests fail, not skip, when `docker-registry` is missing: install Debian's
//! `docker-registry` package, or point `DOCKER_REGISTRY_BIN` at the binary.

use std::io::{ErrorKind, Read as _};
use std::net::TcpListener as StdTcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use provenance_gate::check::reference::{Digest, ImageReference};
use provenance_gate::registry::{
    AllowedRegistries, Credentials, Descriptor, DockerConfig, HostOptions, HttpRegistry, Registry,
    RegistryError, RegistryOperation, RegistryOptions, RequestCounter, OCI_INDEX, OCI_MANIFEST,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const BUNDLE_WITH_VERSION_PARAMETER: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
const SBOM: &str = "application/spdx+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const REPOSITORY: &str = "acme/api";

// ---------------------------------------------------------------------------------------------
// A real registry: Debian's docker-registry, one per test.

struct DistributionRegistry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl DistributionRegistry {
    async fn start() -> Self {
        let binary =
            std::env::var("DOCKER_REGISTRY_BIN").unwrap_or_else(|_| "docker-registry".to_owned());
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = match Command::new(&binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == ErrorKind::NotFound => panic!(
                "`{binary}` not found: these tests need Debian's docker-registry \
                 (apt-get install docker-registry) or DOCKER_REGISTRY_BIN pointing at it"
            ),
            Err(error) => panic!("cannot start `{binary}`: {error}"),
        };
        let mut registry = DistributionRegistry {
            child,
            host,
            _dir: dir,
        };
        registry.wait_until_ready().await;
        registry
    }

    async fn wait_until_ready(&mut self) {
        let url = format!("http://{}/v2/", self.host);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            if let Ok(response) = plain_http_client().get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "docker-registry did not answer {url} within 15s: {}",
            self.log()
        );
    }

    fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self._dir.path().join("registry.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn image(&self, rest: &str) -> ImageReference {
        ImageReference::parse(&format!("{}/{REPOSITORY}{rest}", self.host)).expect("reference")
    }

    async fn push_blob(&self, bytes: &[u8]) -> (Digest, u64) {
        let digest = Digest::of_bytes(bytes);
        let http = plain_http_client();
        let start = http
            .post(format!(
                "http://{}/v2/{REPOSITORY}/blobs/uploads/",
                self.host
            ))
            .send()
            .await
            .expect("start upload");
        assert_eq!(
            start.status(),
            reqwest::StatusCode::ACCEPTED,
            "start upload"
        );
        let location = start
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .expect("upload location")
            .to_owned();
        let mut url = reqwest::Url::parse(&format!("http://{}/", self.host))
            .and_then(|base| base.join(&location))
            .expect("upload URL");
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let finish = http
            .put(url)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("finish upload");
        assert_eq!(
            finish.status(),
            reqwest::StatusCode::CREATED,
            "finish upload"
        );
        (digest, bytes.len() as u64)
    }

    async fn push_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Digest {
        let response = plain_http_client()
            .put(format!(
                "http://{}/v2/{REPOSITORY}/manifests/{reference}",
                self.host
            ))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("push manifest");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(
            status,
            reqwest::StatusCode::CREATED,
            "push manifest {reference}: {body}"
        );
        Digest::of_bytes(bytes)
    }
}

impl Drop for DistributionRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain reqwest client for seeding the registry. reqwest is built without its own crypto
/// provider (the registry client brings a preconfigured rustls), so one must be installed
/// before a default client can be built; installing it twice is harmless.
fn plain_http_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::new()
}

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

fn descriptor_json(media_type: &str, digest: &Digest, size: u64) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

/// An image (config + one layer) under tag `v1`, and its referrers as GitHub's
/// `attest-build-provenance` pushes them: artifact manifests with an empty config, the bundle
/// as the only layer and the image as subject, listed in the tag-schema index `sha256-<hex>`.
struct SeededImage {
    registry: DistributionRegistry,
    manifest: Vec<u8>,
    manifest_digest: Digest,
    layer: Vec<u8>,
    layer_digest: Digest,
    bundle_referrers: Vec<Digest>,
}

async fn seeded_registry() -> SeededImage {
    let registry = DistributionRegistry::start().await;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (config_digest, config_size) = registry.push_blob(config).await;
    let layer = b"pretend this is a tar.gz layer".to_vec();
    let (layer_digest, layer_size) = registry.push_blob(&layer).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor_json("application/vnd.oci.image.config.v1+json", &config_digest, config_size),
        "layers": [descriptor_json("application/vnd.oci.image.layer.v1.tar+gzip", &layer_digest, layer_size)],
    }))
    .expect("json");
    let manifest_digest = registry.push_manifest("v1", OCI_MANIFEST, &manifest).await;

    let (empty_digest, empty_size) = registry.push_blob(b"{}").await;
    let mut index_entries = Vec::new();
    let mut bundle_referrers = Vec::new();
    for (artifact_type, content) in [
        (BUNDLE_V03, "bundle one"),
        (SBOM, "an sbom"),
        (BUNDLE_WITH_VERSION_PARAMETER, "bundle two"),
    ] {
        let (blob_digest, blob_size) = registry.push_blob(content.as_bytes()).await;
        let referrer = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor_json(EMPTY_CONFIG, &empty_digest, empty_size),
            "layers": [descriptor_json(artifact_type, &blob_digest, blob_size)],
            "subject": descriptor_json(OCI_MANIFEST, &manifest_digest, manifest.len() as u64),
        }))
        .expect("json");
        let referrer_digest = Digest::of_bytes(&referrer);
        registry
            .push_manifest(&referrer_digest.to_string(), OCI_MANIFEST, &referrer)
            .await;
        let mut entry = descriptor_json(OCI_MANIFEST, &referrer_digest, referrer.len() as u64);
        entry["artifactType"] = artifact_type.into();
        index_entries.push(entry);
        if artifact_type.starts_with(BUNDLE_PREFIX) {
            bundle_referrers.push(referrer_digest);
        }
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index_entries,
    }))
    .expect("json");
    registry
        .push_manifest(
            &format!("sha256-{}", manifest_digest.hex()),
            OCI_INDEX,
            &index,
        )
        .await;

    SeededImage {
        registry,
        manifest,
        manifest_digest,
        layer,
        layer_digest,
        bundle_referrers,
    }
}

/// A client for plain-HTTP loopback hosts, counting its requests.
fn client_for(
    hosts: &[&str],
    configure: impl FnOnce(&mut RegistryOptions),
) -> (HttpRegistry, Arc<RequestCounter>) {
    let counter = Arc::new(RequestCounter::new());
    let mut options = RegistryOptions::new(AllowedRegistries::only(hosts.iter().copied()));
    options.hosts = hosts
        .iter()
        .map(|host| HostOptions::new(*host).insecure())
        .collect();
    options.observer = counter.clone();
    configure(&mut options);
    (
        HttpRegistry::new(options).expect("registry client"),
        counter,
    )
}

// ---------------------------------------------------------------------------------------------
// Against docker-registry.

#[tokio::test]
async fn resolves_a_tag_with_a_single_head_request() {
    let seeded = seeded_registry().await;
    let (client, counter) = client_for(&[&seeded.registry.host], |_| {});

    let digest = client
        .resolve(&seeded.registry.image(":v1"))
        .await
        .expect("resolve");

    assert_eq!(digest, seeded.manifest_digest);
    // One HEAD that carried Docker-Content-Digest; no GET fallback.
    assert_eq!(counter.count_of(RegistryOperation::Resolve), 1);
    assert_eq!(counter.total(), 1);
}

#[tokio::test]
async fn a_reference_with_a_digest_is_not_resolved_again() {
    let registry = DistributionRegistry::start().await;
    let (client, counter) = client_for(&[&registry.host], |_| {});
    let pinned = Digest::of_bytes(b"some manifest");

    let digest = client
        .resolve(&registry.image(&format!(":v1@{pinned}")))
        .await
        .expect("resolve");

    assert_eq!(digest, pinned);
    assert_eq!(counter.total(), 0);
}

#[tokio::test]
async fn fetches_a_manifest_by_digest_and_checks_it() {
    let seeded = seeded_registry().await;
    let (client, _) = client_for(&[&seeded.registry.host], |_| {});
    let image = seeded.registry.image(":v1");

    let fetched = client
        .fetch_manifest(&image, &seeded.manifest_digest)
        .await
        .expect("manifest");

    assert_eq!(fetched.digest, seeded.manifest_digest);
    assert_eq!(fetched.media_type, OCI_MANIFEST);
    assert_eq!(fetched.bytes, seeded.manifest);

    let absent = Digest::of_bytes(b"no such manifest");
    assert!(matches!(
        client.fetch_manifest(&image, &absent).await,
        Err(RegistryError::NotFound { .. })
    ));
}

#[tokio::test]
async fn fetches_a_blob_within_its_declared_size() {
    let seeded = seeded_registry().await;
    let (client, counter) = client_for(&[&seeded.registry.host], |_| {});
    let image = seeded.registry.image(":v1");
    let descriptor = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
        digest: seeded.layer_digest.to_string(),
        size: seeded.layer.len() as u64,
        artifact_type: None,
        annotations: Default::default(),
        platform: None,
    };

    let bytes = client
        .fetch_blob(&image, &descriptor, 1024)
        .await
        .expect("blob");
    assert_eq!(bytes, seeded.layer);

    // A descriptor claiming fewer bytes than the blob has: cut off at the declared size.
    let understated = Descriptor {
        size: 5,
        ..descriptor.clone()
    };
    assert!(matches!(
        client.fetch_blob(&image, &understated, 1024).await,
        Err(RegistryError::TooLarge { limit: 5, .. })
    ));

    // Over the caller's limit: refused without a request.
    let before = counter.total();
    assert!(matches!(
        client.fetch_blob(&image, &descriptor, 4).await,
        Err(RegistryError::TooLarge { limit: 4, .. })
    ));
    assert_eq!(counter.total(), before);
}

#[tokio::test]
async fn finds_bundle_referrers_through_the_tag_schema() {
    let seeded = seeded_registry().await;
    let (client, counter) = client_for(&[&seeded.registry.host], |_| {});
    let image = seeded.registry.image(":v1");

    let referrers = client
        .referrers(&image, &seeded.manifest_digest, BUNDLE_PREFIX)
        .await
        .expect("referrers");

    let digests: Vec<&str> = referrers.iter().map(|d| d.digest.as_str()).collect();
    let expected: Vec<String> = seeded
        .bundle_referrers
        .iter()
        .map(Digest::to_string)
        .collect();
    assert_eq!(digests, expected, "both bundle spellings, not the SBOM");
    assert_eq!(referrers[0].artifact_type.as_deref(), Some(BUNDLE_V03));
    // distribution 2.8 has no referrers API: one 404 there, then the tag.
    let counts = counter.snapshot();
    let host = seeded.registry.host.clone();
    assert_eq!(
        counts.get(&(host.clone(), RegistryOperation::Referrers, Some(404))),
        Some(&1)
    );
    assert_eq!(
        counts.get(&(host, RegistryOperation::ReferrersTag, Some(200))),
        Some(&1)
    );

    // The referrer manifests themselves are fetchable and digest-checked.
    let referrer = client
        .fetch_manifest(&image, &seeded.bundle_referrers[0])
        .await
        .expect("referrer manifest");
    assert_eq!(referrer.media_type, OCI_MANIFEST);
}

#[tokio::test]
async fn a_digest_without_a_referrers_tag_has_no_referrers() {
    let seeded = seeded_registry().await;
    let (client, _) = client_for(&[&seeded.registry.host], |_| {});

    let referrers = client
        .referrers(
            &seeded.registry.image(":v1"),
            &seeded.layer_digest,
            BUNDLE_PREFIX,
        )
        .await
        .expect("referrers");

    assert!(referrers.is_empty());
}

#[tokio::test]
async fn an_unknown_tag_is_not_found() {
    let registry = DistributionRegistry::start().await;
    let (client, _) = client_for(&[&registry.host], |_| {});

    let error = client
        .resolve(&registry.image(":does-not-exist"))
        .await
        .expect_err("unknown tag");

    assert!(
        matches!(&error, RegistryError::NotFound { what, .. } if what == "tag does-not-exist"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_manifest_over_the_cap_is_refused() {
    let registry = DistributionRegistry::start().await;
    let (config_digest, config_size) = registry.push_blob(b"{}").await;
    let big = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor_json("application/vnd.oci.image.config.v1+json", &config_digest, config_size),
        "layers": [],
        "annotations": {"padding": "x".repeat(4096)},
    }))
    .expect("json");
    let digest = registry.push_manifest("big", OCI_MANIFEST, &big).await;
    let (client, _) = client_for(&[&registry.host], |options| {
        options.max_manifest_bytes = 1024;
    });

    let error = client
        .fetch_manifest(&registry.image(":big"), &digest)
        .await
        .expect_err("too large");

    assert!(
        matches!(error, RegistryError::TooLarge { limit: 1024, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_host_outside_the_allow_list_is_never_contacted() {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let host = format!(
        "127.0.0.1:{}",
        listener.local_addr().expect("address").port()
    );
    let (client, counter) = client_for(&["ghcr.io"], |options| {
        options.hosts.push(HostOptions::new(&host).insecure());
    });
    let image = ImageReference::parse(&format!("{host}/{REPOSITORY}:v1")).expect("reference");
    let digest = Digest::of_bytes(b"x");

    assert!(matches!(
        client.resolve(&image).await,
        Err(RegistryError::NotAllowed { .. })
    ));
    assert!(matches!(
        client.fetch_manifest(&image, &digest).await,
        Err(RegistryError::NotAllowed { .. })
    ));
    assert!(matches!(
        client.referrers(&image, &digest, BUNDLE_PREFIX).await,
        Err(RegistryError::NotAllowed { .. })
    ));

    assert_eq!(counter.total(), 0);
    match listener.accept() {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the refused host was connected to: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted servers, for behaviour no real registry shows on demand.

#[derive(Debug, Clone)]
struct SeenRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl SeenRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

enum Reply {
    /// A complete response; the connection is closed after it.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Accept the request and never answer.
    Stall,
    /// Headers, the first bytes of the body, then silence.
    StallInBody { declared_length: u64, sent: Vec<u8> },
    /// 200 without Content-Length, then body bytes until the client hangs up.
    Endless,
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
    Reply::Full {
        status,
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        body: body.into(),
    }
}

/// An HTTP/1.1 server on loopback answering each request (one per connection) with what
/// `script` returns, and remembering every request it saw. Stops with the test's runtime.
struct ScriptedServer {
    host: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl ScriptedServer {
    async fn start(script: impl Fn(&SeenRequest, &str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let host = format!(
            "127.0.0.1:{}",
            listener.local_addr().expect("address").port()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let (task_seen, task_host) = (seen.clone(), host.clone());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (script, seen, host) = (script.clone(), task_seen.clone(), task_host.clone());
                tokio::spawn(async move { serve_one(socket, &*script, &seen, &host).await });
            }
        });
        ScriptedServer { host, seen }
    }

    fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("seen requests").clone()
    }

    fn image(&self, rest: &str) -> ImageReference {
        ImageReference::parse(&format!("{}/{REPOSITORY}{rest}", self.host)).expect("reference")
    }
}

async fn serve_one(
    mut socket: tokio::net::TcpStream,
    script: &(dyn Fn(&SeenRequest, &str) -> Reply + Send + Sync),
    seen: &Mutex<Vec<SeenRequest>>,
    host: &str,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let request = SeenRequest {
        method: request_line.next().unwrap_or("").to_owned(),
        target: request_line.next().unwrap_or("").to_owned(),
        headers: lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect(),
    };
    seen.lock().expect("seen requests").push(request.clone());
    match script(&request, host) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut response = format!("HTTP/1.1 {status} Scripted\r\nConnection: close\r\n");
            for (name, value) in headers {
                response.push_str(&format!("{name}: {value}\r\n"));
            }
            response.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut bytes = response.into_bytes();
            if request.method != "HEAD" {
                bytes.extend_from_slice(&body);
            }
            let _ = socket.write_all(&bytes).await;
            let _ = socket.shutdown().await;
        }
        Reply::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Reply::StallInBody {
            declared_length,
            sent,
        } => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {declared_length}\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&sent).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Reply::Endless => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nConnection: close\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            // Bounded so the server stops by itself even if the client never hangs up.
            for _ in 0..16 * 1024 {
                if socket.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn scripted_client(
    server: &ScriptedServer,
    configure: impl FnOnce(&mut RegistryOptions),
) -> (HttpRegistry, Arc<RequestCounter>) {
    client_for(&[&server.host], configure)
}

#[tokio::test]
async fn a_stalled_connection_ends_in_a_timeout_within_the_bound() {
    let server = ScriptedServer::start(|_, _| Reply::Stall).await;
    let timeout = Duration::from_secs(1);
    let (client, counter) = scripted_client(&server, |options| options.request_timeout = timeout);

    let started = Instant::now();
    let error = client
        .resolve(&server.image(":v1"))
        .await
        .expect_err("stalled");
    let elapsed = started.elapsed();

    assert!(
        matches!(error, RegistryError::Timeout { seconds: 1, .. }),
        "{error:?}"
    );
    assert!(
        elapsed < timeout + Duration::from_secs(1),
        "took {elapsed:?}"
    );
    let host = server.host.clone();
    assert_eq!(
        counter
            .snapshot()
            .get(&(host, RegistryOperation::Resolve, None)),
        Some(&1)
    );
}

#[tokio::test]
async fn a_body_that_stops_arriving_ends_in_a_timeout_within_the_bound() {
    let manifest_digest = Digest::of_bytes(b"whatever");
    let server = ScriptedServer::start(|_, _| Reply::StallInBody {
        declared_length: 1000,
        sent: b"{\"schemaVersion\":".to_vec(),
    })
    .await;
    let timeout = Duration::from_secs(1);
    let (client, _) = scripted_client(&server, |options| options.request_timeout = timeout);

    let started = Instant::now();
    let error = client
        .fetch_manifest(&server.image(":v1"), &manifest_digest)
        .await
        .expect_err("stalled body");
    let elapsed = started.elapsed();

    assert!(matches!(error, RegistryError::Timeout { .. }), "{error:?}");
    assert!(
        elapsed < timeout + Duration::from_secs(1),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn an_endless_manifest_is_cut_off_at_the_cap() {
    let server = ScriptedServer::start(|_, _| Reply::Endless).await;
    let (client, _) = scripted_client(&server, |_| {});

    let started = Instant::now();
    let error = client
        .fetch_manifest(&server.image(":v1"), &Digest::of_bytes(b"x"))
        .await
        .expect_err("endless");

    assert!(
        matches!(error, RegistryError::TooLarge { limit, .. } if limit == 4 * 1024 * 1024),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn without_docker_content_digest_the_tag_is_resolved_by_hashing_the_manifest() {
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let server = ScriptedServer::start(move |_, _| {
        reply(200, &[("Content-Type", OCI_MANIFEST)], manifest.to_vec())
    })
    .await;
    let (client, counter) = scripted_client(&server, |_| {});

    let digest = client.resolve(&server.image(":v1")).await.expect("resolve");

    assert_eq!(digest, Digest::of_bytes(manifest));
    let seen = server.seen();
    let methods: Vec<&str> = seen.iter().map(|request| request.method.as_str()).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
    let accept = seen[0].header("accept").unwrap_or_default();
    for media_type in [
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ] {
        assert!(
            accept.contains(media_type),
            "HEAD Accept lacks {media_type}: {accept}"
        );
    }
    assert_eq!(counter.count_of(RegistryOperation::Resolve), 2);
}

#[tokio::test]
async fn a_manifest_whose_bytes_do_not_match_the_digest_is_refused() {
    let server = ScriptedServer::start(|_, _| {
        reply(
            200,
            &[("Content-Type", OCI_MANIFEST)],
            br#"{"schemaVersion":2}"#.to_vec(),
        )
    })
    .await;
    let (client, _) = scripted_client(&server, |_| {});

    let asked = Digest::of_bytes(b"another manifest");
    let error = client
        .fetch_manifest(&server.image(":v1"), &asked)
        .await
        .expect_err("mismatch");

    assert!(
        matches!(error, RegistryError::DigestMismatch { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_referrers_api_is_used_and_filtered_by_prefix_on_the_client() {
    let subject = Digest::of_bytes(b"subject");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": (0..100u32).map(|i| serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": Digest::of_bytes(&i.to_be_bytes()).to_string(),
            "size": 500,
            "artifactType": if i % 2 == 0 { BUNDLE_V03 } else { SBOM },
        })).collect::<Vec<_>>(),
    }))
    .expect("json");
    let server = ScriptedServer::start(move |request, _| {
        if request.path().contains("/referrers/") {
            reply(200, &[("Content-Type", OCI_INDEX)], index.clone())
        } else {
            reply(500, &[], "unexpected")
        }
    })
    .await;
    let (client, counter) = scripted_client(&server, |options| options.max_referrers = 10);

    let referrers = client
        .referrers(&server.image(":v1"), &subject, BUNDLE_PREFIX)
        .await
        .expect("referrers");

    assert_eq!(referrers.len(), 10);
    assert!(referrers
        .iter()
        .all(|referrer| referrer.artifact_type.as_deref() == Some(BUNDLE_V03)));
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "no tag-schema fallback when the API answers");
    // Unfiltered on purpose: the server's filter is an exact match, ours a prefix.
    assert_eq!(
        seen[0].target,
        format!("/v2/{REPOSITORY}/referrers/{subject}")
    );
    assert_eq!(counter.count_of(RegistryOperation::ReferrersTag), 0);
}

/// The `Link` target a paged server gives for a page (`None`: no header).
type LinkOf = dyn Fn(usize, &str) -> Option<String> + Send + Sync;

/// A referrers list split into pages (OCI 1.1 `Link: <…>; rel="next"`). Neither registry the
/// test kit runs splits its lists, so a scripted server answers with the documented shape.
fn paged_referrers_server(
    pages: usize,
    link_of: impl Fn(usize, &str) -> Option<String> + Send + Sync + 'static,
) -> impl Fn(&SeenRequest, &str) -> Reply + Send + Sync + 'static {
    move |request, host| {
        if !request.path().contains("/referrers/") {
            return reply(404, &[], "");
        }
        let page: usize = request
            .target
            .split_once("?page=")
            .and_then(|(_, page)| page.parse().ok())
            .unwrap_or(1);
        // The bundle is on the last page only.
        let artifact_type = if page == pages { BUNDLE_V03 } else { SBOM };
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": Digest::of_bytes(&page.to_be_bytes()).to_string(),
                "size": 500,
                "artifactType": artifact_type,
            }],
        }))
        .expect("json");
        let link = (page < pages)
            .then(|| link_of(page + 1, host))
            .flatten()
            .map(|target| format!("<{target}>; rel=\"next\""));
        let mut headers = vec![("Content-Type", OCI_INDEX)];
        if let Some(link) = &link {
            headers.push(("Link", link.as_str()));
        }
        reply(200, &headers, index)
    }
}

#[tokio::test]
async fn a_bundle_on_a_later_referrers_page_is_found_within_the_page_bound() {
    let subject = Digest::of_bytes(b"subject");
    let list = format!("/v2/{REPOSITORY}/referrers/{subject}");
    let same_list = move |page: usize, _: &str| Some(format!("{list}?page={page}"));
    let server = ScriptedServer::start(paged_referrers_server(3, same_list.clone())).await;
    let (client, _) = scripted_client(&server, |_| {});
    let referrers = client
        .referrers(&server.image(":v1"), &subject, BUNDLE_PREFIX)
        .await
        .expect("referrers");
    assert_eq!(referrers.len(), 1, "the bundle on page 3: {referrers:?}");
    assert_eq!(server.seen().len(), 3);

    // A list that never ends is read for 8 pages, then given up on (the bundle is not found).
    let endless = ScriptedServer::start(paged_referrers_server(1000, same_list)).await;
    let (client, _) = scripted_client(&endless, |_| {});
    let referrers = client
        .referrers(&endless.image(":v1"), &subject, BUNDLE_PREFIX)
        .await
        .expect("referrers");
    assert!(referrers.is_empty());
    assert_eq!(endless.seen().len(), 8);
}

#[tokio::test]
async fn a_next_page_elsewhere_is_never_requested() {
    let subject = Digest::of_bytes(b"subject");
    let other_host = ScriptedServer::start(paged_referrers_server(2, |_, _| None)).await;
    let elsewhere = format!(
        "http://{}/v2/{REPOSITORY}/referrers/{subject}",
        other_host.host
    );
    let other_repository = format!("/v2/other/repo/referrers/{subject}");
    let cases: Vec<Box<LinkOf>> = vec![
        Box::new(move |page, _| Some(format!("{elsewhere}?page={page}"))),
        Box::new(|_, _| Some(format!("/v2/{REPOSITORY}/manifests/latest"))),
        Box::new(move |_, _| Some(other_repository.clone())),
    ];
    for link_of in cases {
        let server = ScriptedServer::start(paged_referrers_server(2, link_of)).await;
        let (client, _) = scripted_client(&server, |_| {});
        let error = client
            .referrers(&server.image(":v1"), &subject, BUNDLE_PREFIX)
            .await
            .expect_err("a next page elsewhere is refused");
        assert!(
            matches!(error, RegistryError::Malformed { .. }),
            "{error:?}"
        );
        assert_eq!(server.seen().len(), 1, "only the first page was requested");
    }
    assert!(
        other_host.seen().is_empty(),
        "the other host was never contacted"
    );
}

#[tokio::test]
async fn anonymous_bearer_tokens_are_fetched_once_and_reused() {
    let server = ScriptedServer::start(|request, host| {
        if request.path() == "/token" {
            if request.header("authorization").is_some() {
                return reply(400, &[], "anonymous token requests carry no credentials");
            }
            let expected_scope = format!("scope=repository%3A{}%3Apull", REPOSITORY.replace('/', "%2F"));
            if !request.target.contains(&expected_scope) || !request.target.contains("service=scripted") {
                return reply(400, &[], "bad token request");
            }
            return reply(200, &[("Content-Type", "application/json")], r#"{"token":"t0k3n","expires_in":300}"#);
        }
        if request.header("authorization") == Some("Bearer t0k3n") {
            let digest = Digest::of_bytes(b"manifest").to_string();
            return reply(200, &[("Docker-Content-Digest", digest.as_str())], "");
        }
        let challenge = format!(
            r#"Bearer realm="http://{host}/token",service="scripted",scope="repository:{REPOSITORY}:pull""#
        );
        reply(401, &[("WWW-Authenticate", challenge.as_str())], "")
    })
    .await;
    let (client, counter) = scripted_client(&server, |_| {});
    let image = server.image(":v1");

    assert_eq!(
        client.resolve(&image).await,
        Ok(Digest::of_bytes(b"manifest"))
    );
    assert_eq!(
        client.resolve(&image).await,
        Ok(Digest::of_bytes(b"manifest"))
    );

    // 401, token, retry; then the cached token straight away.
    assert_eq!(counter.count_of(RegistryOperation::Token), 1);
    assert_eq!(counter.count_of(RegistryOperation::Resolve), 3);
}

#[tokio::test]
async fn credentials_go_to_the_token_realm_as_basic_auth() {
    let server = ScriptedServer::start(|request, host| {
        if request.path() == "/token" {
            // base64("robot:s3cret")
            return if request.header("authorization") == Some("Basic cm9ib3Q6czNjcmV0") {
                reply(200, &[], r#"{"access_token":"private"}"#)
            } else {
                reply(401, &[], "")
            };
        }
        if request.header("authorization") == Some("Bearer private") {
            let digest = Digest::of_bytes(b"private manifest").to_string();
            return reply(200, &[("Docker-Content-Digest", digest.as_str())], "");
        }
        let challenge = format!(r#"Bearer realm="http://{host}/token",service="scripted""#);
        reply(401, &[("WWW-Authenticate", challenge.as_str())], "")
    })
    .await;
    let host = server.host.clone();
    let (client, _) = scripted_client(&server, |options| {
        options.credentials =
            DockerConfig::empty().with_credentials(&host, Credentials::new("robot", "s3cret"));
    });
    assert_eq!(
        client.resolve(&server.image(":v1")).await,
        Ok(Digest::of_bytes(b"private manifest"))
    );

    // Without credentials the realm refuses: Unauthorized, not a hang or a loop.
    let (anonymous, _) = scripted_client(&server, |_| {});
    assert!(matches!(
        anonymous.resolve(&server.image(":v1")).await,
        Err(RegistryError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn basic_auth_is_answered_only_with_credentials() {
    let server = ScriptedServer::start(|request, _| {
        if request.header("authorization") == Some("Basic dXNlcjpwYXNz") {
            let digest = Digest::of_bytes(b"m").to_string();
            return reply(200, &[("Docker-Content-Digest", digest.as_str())], "");
        }
        reply(
            401,
            &[("WWW-Authenticate", r#"Basic realm="Registry Realm""#)],
            "",
        )
    })
    .await;
    let host = server.host.clone();
    let (client, _) = scripted_client(&server, |options| {
        options.credentials = DockerConfig::from_json(
            format!(r#"{{"auths": {{"{host}": {{"auth": "dXNlcjpwYXNz"}}}}}}"#).as_bytes(),
        )
        .expect("docker config");
    });
    assert_eq!(
        client.resolve(&server.image(":v1")).await,
        Ok(Digest::of_bytes(b"m"))
    );

    let (anonymous, _) = scripted_client(&server, |_| {});
    assert!(matches!(
        anonymous.resolve(&server.image(":v1")).await,
        Err(RegistryError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn status_codes_map_to_their_errors() {
    let server = ScriptedServer::start(|request, _| match request.path().rsplit('/').next() {
        Some("forbidden") => reply(403, &[], ""),
        Some("limited") => reply(429, &[], ""),
        Some("broken") => reply(500, &[], "internal error"),
        _ => reply(404, &[], ""),
    })
    .await;
    let (client, _) = scripted_client(&server, |_| {});

    let outcome = |tag: &'static str| {
        let image = server.image(&format!(":{tag}"));
        let client = &client;
        async move { client.resolve(&image).await }
    };
    assert!(matches!(
        outcome("forbidden").await,
        Err(RegistryError::Unauthorized { .. })
    ));
    assert!(matches!(
        outcome("broken").await,
        Err(RegistryError::Status { status: 500, .. })
    ));
    assert!(matches!(
        outcome("missing").await,
        Err(RegistryError::NotFound { .. })
    ));
    // Last: a 429 leaves the registry alone for a while (1 s without `Retry-After`), so a
    // request after it would be refused as rate limited without being sent.
    assert!(matches!(
        outcome("limited").await,
        Err(RegistryError::RateLimited { .. })
    ));
    assert!(matches!(
        outcome("missing").await,
        Err(RegistryError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn blob_redirects_are_followed_up_to_three_times() {
    let blob = b"blob behind redirects".to_vec();
    let blob_digest = Digest::of_bytes(&blob);
    let served = blob.clone();
    let server = ScriptedServer::start(move |request, host| {
        // /v2/.../blobs/<digest> → /hop/1 → /hop/2 → /hop/3 (→ /hop/4 for the long chain)
        let path = request.path();
        let hops_wanted = if path.contains("long") || request.target.contains("long") {
            4
        } else {
            3
        };
        let next = match path.strip_prefix("/hop/") {
            None => 1,
            Some(number) => number.parse::<u32>().unwrap_or(99) + 1,
        };
        if next <= hops_wanted {
            let marker = if hops_wanted == 4 { "?long" } else { "" };
            let location = format!("http://{host}/hop/{next}{marker}");
            reply(307, &[("Location", location.as_str())], "")
        } else {
            reply(200, &[], served.clone())
        }
    })
    .await;
    let (client, _) = scripted_client(&server, |_| {});
    let descriptor = Descriptor {
        media_type: "application/octet-stream".to_owned(),
        digest: blob_digest.to_string(),
        size: blob.len() as u64,
        artifact_type: None,
        annotations: Default::default(),
        platform: None,
    };

    let bytes = client
        .fetch_blob(&server.image(":v1"), &descriptor, 1024)
        .await
        .expect("three redirects are fine");
    assert_eq!(bytes, blob);

    // The repository name marks the request whose chain is one hop too long.
    let long = ImageReference::parse(&format!("{}/long/chain:v1", server.host)).expect("reference");
    let error = client
        .fetch_blob(&long, &descriptor, 1024)
        .await
        .expect_err("four redirects");
    assert!(
        matches!(&error, RegistryError::Connection { reason, .. } if reason.contains("more than 3 redirects")),
        "{error:?}"
    );
}
