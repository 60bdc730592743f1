//! `provenance-gate serve` end to end: the real binary, started with `--policy FILE
//! --namespace-labels …` (no cluster) and a serving certificate from a throwaway CA, answering
//! real AdmissionReviews over HTTPS; its probes and metrics over plain HTTP; certificate
//! rotation by a Kubernetes-style `..data` symlink swap; policy edits; SIGTERM.
//!
//! The registry tests push attested and unattested images to Debian's `docker-registry`
//! (started by the test kit) and fail, not skip, when it is missing.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use provenance_gate_testkit::registry::{
    push_attested_image, push_unattested_image, DistributionRegistry, TestRegistry,
};
use provenance_gate_testkit::TestInstance;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_provenance-gate");
const POD_CREATE: &str = include_str!("data/admission/pod-create.gke.json");
/// How long a started server may take to listen, and a reload to show.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// Environments of examples/policy.yaml; the pod's image (`jmalloc/echo-server`) is covered by no rule.
const POLICY: &str = r#"version: 1
defaultMode: enforce
environments:
  - name: production
    namespaceSelector: {matchLabels: {env: production}}
    mode: enforce
  - name: staging
    namespaceSelector: {matchLabels: {env: staging}}
    mode: warn
exemptImages: ["registry.k8s.io/**"]
unmatchedImages: deny
rules:
  - name: acme
    images: ["ghcr.io/acme/**"]
    repositories: [{name: acme/api}]
"#;

// ---------------------------------------------------------------------------------------------
// A certificate authority and serving certificates.

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

struct ServingCertificate {
    certificate_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "serve_https test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Pki {
            ca: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A certificate for 127.0.0.1 and localhost, named `common_name`, with `serial`.
    fn issue(&self, common_name: &str, serial: u64) -> ServingCertificate {
        self.issue_for(common_name, serial, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate, as the API server presents to webhooks.
    fn issue_client(&self, common_name: &str) -> ServingCertificate {
        self.issue_for(common_name, 100, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue_for(
        &self,
        common_name: &str,
        serial: u64,
        usage: ExtendedKeyUsagePurpose,
    ) -> ServingCertificate {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("subject alternative names");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("serving key");
        let certificate = params
            .signed_by(&key, &self.ca)
            .expect("serving certificate");
        ServingCertificate {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            der: certificate.der().clone(),
        }
    }
}

/// The certificate as a Kubernetes Secret volume holds it: `tls.crt` and `tls.key` are
/// symlinks into `..data`, itself a symlink to a timestamped directory, and an update swaps
/// `..data` atomically.
struct SecretVolume {
    dir: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(dir: &Path, serving: &ServingCertificate) -> SecretVolume {
        let mut volume = SecretVolume {
            dir: dir.join("tls"),
            version: 0,
        };
        std::fs::create_dir_all(&volume.dir).expect("volume directory");
        volume.update(serving);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(name), volume.dir.join(name))
                .expect("file symlink");
        }
        volume
    }

    fn update(&mut self, serving: &ServingCertificate) {
        self.version += 1;
        let version = format!("..2026_01_01_00_00_{:02}.{}", self.version, self.version);
        let target = self.dir.join(&version);
        std::fs::create_dir(&target).expect("version directory");
        std::fs::write(target.join("tls.crt"), &serving.certificate_pem).expect("certificate");
        std::fs::write(target.join("tls.key"), &serving.key_pem).expect("key");
        let temporary = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &temporary).expect("data symlink");
        std::fs::rename(&temporary, self.dir.join("..data")).expect("swap ..data");
    }

    fn certificate(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

// ---------------------------------------------------------------------------------------------
// The server under test.

struct Gate {
    child: Child,
    webhook: SocketAddr,
    metrics: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

/// What a test changes about `serve`.
struct GateSetup<'a> {
    volume: &'a SecretVolume,
    policy: &'a Path,
    namespace_labels: &'a str,
    extra: Vec<String>,
}

impl Gate {
    fn start(setup: GateSetup<'_>) -> Gate {
        let mut child = Command::new(BINARY)
            .arg("serve")
            .arg("--tls-cert")
            .arg(setup.volume.certificate())
            .arg("--tls-key")
            .arg(setup.volume.key())
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--policy")
            .arg(setup.policy)
            .args(["--namespace-labels", setup.namespace_labels])
            .args(["--log-format", "json"])
            .args(&setup.extra)
            .env("RUST_LOG", "info")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start provenance-gate serve");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (addresses, listening) = mpsc::channel();
        collect(
            child.stdout.take().expect("stdout"),
            Arc::clone(&stdout),
            None,
        );
        collect(
            child.stderr.take().expect("stderr"),
            Arc::clone(&stderr),
            Some(addresses),
        );
        let started = Instant::now();
        loop {
            match listening.recv_timeout(Duration::from_millis(100)) {
                Ok((webhook, metrics)) => {
                    return Gate {
                        child,
                        webhook,
                        metrics,
                        stdout,
                        stderr,
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed before "serving": the process is ending.
                    let status = child.wait().expect("wait");
                    panic!(
                        "serve exited with {status} before listening:\n{}",
                        text(&stderr)
                    );
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "serve exited with {status} before listening:\n{}",
                    text(&stderr)
                );
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "serve did not listen within {START_TIMEOUT:?}:\n{}",
                text(&stderr)
            );
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.webhook)
    }

    fn metrics_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics)
    }

    /// Decision records written so far (stdout, one JSON object per line).
    fn records(&self) -> Vec<Value> {
        text(&self.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn logs(&self) -> String {
        text(&self.stderr)
    }

    async fn metrics_text(&self) -> String {
        let response = plain_client()
            .get(self.metrics_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics body")
    }

    /// Sends SIGTERM and waits up to `bound` for the exit.
    fn terminate(&mut self, bound: Duration) -> ExitStatus {
        send_sigterm(&self.child);
        self.wait_for_exit(bound)
    }

    /// Waits up to `bound` for the process to exit.
    fn wait_for_exit(&mut self, bound: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < bound,
                "serve did not exit within {bound:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

/// Copies `stream` into `sink` line by line; on the `serving` log line, sends the addresses.
fn collect(
    stream: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    addresses: Option<mpsc::Sender<(SocketAddr, SocketAddr)>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(sender) = &addresses {
                if let Some(found) = serving_addresses(&line) {
                    let _ = sender.send(found);
                }
            }
            let mut sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            sink.push_str(&line);
            sink.push('\n');
        }
    });
}

fn serving_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let entry: Value = serde_json::from_str(line).ok()?;
    let fields = entry.get("fields")?;
    if fields.get("message")?.as_str()? != "serving" {
        return None;
    }
    Some((
        fields.get("webhook")?.as_str()?.parse().ok()?,
        fields.get("metrics")?.as_str()?.parse().ok()?,
    ))
}

fn text(buffer: &Arc<Mutex<String>>) -> String {
    buffer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).expect("write policy");
    path
}

// ---------------------------------------------------------------------------------------------
// Clients.

fn client_config(ca: &CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA certificate");
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// Like [`client_config`], presenting `identity` as the client certificate.
fn client_config_with_identity(
    ca: &CertificateDer<'static>,
    identity: &ServingCertificate,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA certificate");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .expect("client key");
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![identity.der.clone()], key)
    .expect("client certificate")
}

fn https_client_with(config: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTPS client")
}

/// An HTTPS client trusting `ca` that reports the server's certificate of each response.
/// Each client has its own connection pool: a new client means a new connection.
fn https_client(ca: &CertificateDer<'static>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(ca))
        .tls_info(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTPS client")
}

fn plain_client() -> reqwest::Client {
    // A TLS configuration is required to build the client even for plain HTTP.
    let ca = Pki::new().ca_der();
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(&ca))
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the response reports the server certificate")
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// AdmissionReviews.

/// The real GKE review with `image` as its only container's image and a fresh uid.
fn pod_review(image: &str, uid: &str) -> Value {
    let mut review: Value = serde_json::from_str(POD_CREATE).expect("review JSON");
    review["request"]["uid"] = json!(uid);
    review["request"]["object"]["spec"]["containers"][0]["image"] = json!(image);
    review
}

/// POSTs `review` and returns the response's `response` object, after checking the
/// envelope (kind, echoed apiVersion and uid).
async fn post_review(client: &reqwest::Client, url: &str, review: &Value) -> Value {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(review.to_string())
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {url}: {error}"));
    assert_eq!(response.status(), 200, "POST {url}");
    let body: Value = response.json_value().await;
    assert_eq!(body["kind"], "AdmissionReview", "{body}");
    assert_eq!(body["apiVersion"], review["apiVersion"], "{body}");
    assert_eq!(body["response"]["uid"], review["request"]["uid"], "{body}");
    body["response"].clone()
}

trait JsonBody {
    async fn json_value(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_value(self) -> Value {
        let bytes = self.bytes().await.expect("response body");
        serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            panic!("not JSON ({error}): {}", String::from_utf8_lossy(&bytes))
        })
    }
}

fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|warnings| {
            warnings
                .iter()
                .filter_map(|warning| warning.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn decoded_patch(response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("patch"))
        .expect("base64 patch");
    serde_json::from_slice(&patch).expect("JSON patch")
}

async fn wait_for<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < bound, "{what} within {bound:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_over_https_follow_each_namespaces_mode_and_probes_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let serving = pki.issue("provenance-gate.test", 1);
    let volume = SecretVolume::new(dir.path(), &serving);
    let policy = write_policy(dir.path(), POLICY);
    let setup = |labels| GateSetup {
        volume: &volume,
        policy: &policy,
        namespace_labels: labels,
        extra: Vec::new(),
    };
    let production = Gate::start(setup("env=production"));
    let staging = Gate::start(setup("env=staging,team=web"));
    let client = https_client(&pki.ca_der());

    // Probes and metrics, on the plain-HTTP port.
    let plain = plain_client();
    for path in ["/healthz", "/readyz"] {
        let response = plain
            .get(production.metrics_url(path))
            .send()
            .await
            .expect("probe");
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = plain
        .get(production.metrics_url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let metrics = response.text().await.expect("metrics body");
    assert!(
        metrics.contains(r#"provenance_gate_policy_reloads_total{result="success"} 1"#),
        "{metrics}"
    );

    // The pod's image is covered by no rule and `unmatchedImages: deny`.
    let review = pod_review(
        "jmalloc/echo-server",
        "9f1d2c3b-0000-4000-8000-000000000001",
    );
    let denied = post_review(&client, &production.url("/validate"), &review).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["status"]["code"], 403, "{denied}");
    let message = denied["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("jmalloc/echo-server"), "{message}");

    let warned = post_review(&client, &staging.url("/validate"), &review).await;
    assert_eq!(warned["allowed"], true, "{warned}");
    assert!(
        warnings(&warned)
            .iter()
            .any(|warning| warning.contains("jmalloc/echo-server")),
        "{warned}"
    );

    // Exempt images are admitted everywhere, without a registry.
    let exempt = pod_review(
        "registry.k8s.io/pause:3.9",
        "9f1d2c3b-0000-4000-8000-000000000002",
    );
    let admitted = post_review(&client, &production.url("/validate"), &exempt).await;
    assert_eq!(admitted["allowed"], true, "{admitted}");

    // Evidence: a decision record per image, and the decision metrics.
    wait_for("the denial's decision record", RELOAD_TIMEOUT, || async {
        production.records().iter().any(|record| {
            record["uid"] == "9f1d2c3b-0000-4000-8000-000000000001"
                && record["result"] == "denied"
                && record["image"] == "jmalloc/echo-server"
        })
    })
    .await;
    let metrics = production.metrics_text().await;
    assert!(
        metrics.contains(r#"provenance_gate_decisions_total{mode="enforce",result="denied""#),
        "{metrics}"
    );
    assert!(
        metrics.contains("provenance_gate_admissions_total{"),
        "{metrics}"
    );
    // The GitHub source's metrics are served too (no rule here reads GitHub).
    assert!(
        metrics.contains("provenance_gate_github_degraded_to_registry_total 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attested_images_from_a_real_registry_are_admitted_and_pinned() {
    let registry = DistributionRegistry::plain();
    let host = registry.host();
    let instance = TestInstance::timestamp_only();
    let attested =
        push_attested_image(&registry.client(), "acme/api", "v1", &instance, |spec| spec);
    let unattested = push_unattested_image(&registry.client(), "acme/api", "unsigned");

    let dir = tempfile::tempdir().expect("tempdir");
    let roots = dir.path().join("testkit-root.json");
    std::fs::write(&roots, instance.trusted_root_json()).expect("trusted root");
    let pki = Pki::new();
    let volume = SecretVolume::new(dir.path(), &pki.issue("provenance-gate.test", 1));
    let policy = write_policy(
        dir.path(),
        &format!(
            r#"version: 1
environments:
  - name: production
    namespaceSelector: {{matchLabels: {{env: production}}}}
    mode: enforce
  - name: staging
    namespaceSelector: {{matchLabels: {{env: staging}}}}
    mode: warn
unmatchedImages: deny
rules:
  - name: acme
    images: ["{host}/acme/**"]
    repositories: [{{name: acme/api, id: "804070735"}}]
    workflows: [".github/workflows/release.yml"]
registries:
  - {{host: "{host}", insecure: true}}
"#
        ),
    );
    let setup = |labels| GateSetup {
        volume: &volume,
        policy: &policy,
        namespace_labels: labels,
        extra: vec!["--trusted-root".to_owned(), roots.display().to_string()],
    };
    let production = Gate::start(setup("env=production"));
    let staging = Gate::start(setup("env=staging"));
    let client = https_client(&pki.ca_der());

    // Attested: /mutate pins the image to the verified digest, and /validate admits the Pod
    // as /mutate left it.
    let review = pod_review(&attested.reference, "7a0c0000-0000-4000-8000-000000000001");
    let mutated = post_review(&client, &production.url("/mutate"), &review).await;
    assert_eq!(mutated["allowed"], true, "{mutated}");
    let patch = decoded_patch(&mutated);
    let pinned = format!("{}@{}", attested.reference, attested.manifest_digest);
    assert!(
        patch.as_array().is_some_and(|operations| operations
            .iter()
            .any(|operation| operation["path"] == "/spec/containers/0/image"
                && operation["value"] == pinned.as_str())),
        "{patch}"
    );
    assert!(
        patch
            .to_string()
            .contains("provenance-gate.dev~1provenance")
            || patch.to_string().contains("provenance-gate.dev/provenance"),
        "{patch}"
    );
    let review = pod_review(&pinned, "7a0c0000-0000-4000-8000-000000000001");
    let allowed = post_review(&client, &production.url("/validate"), &review).await;
    assert_eq!(allowed["allowed"], true, "{allowed}");

    // Unattested: denied in enforce, admitted with a warning in warn.
    let review = pod_review(
        &unattested.reference,
        "7a0c0000-0000-4000-8000-000000000002",
    );
    let denied = post_review(&client, &production.url("/validate"), &review).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["status"]["code"], 403, "{denied}");
    assert!(
        denied["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("acme/api"),
        "{denied}"
    );
    let warned = post_review(&client, &staging.url("/validate"), &review).await;
    assert_eq!(warned["allowed"], true, "{warned}");
    assert!(!warnings(&warned).is_empty(), "{warned}");

    // The record of the admitted image names its build.
    wait_for(
        "the attested image's decision record",
        RELOAD_TIMEOUT,
        || async {
            production.records().iter().any(|record| {
                record["uid"] == "7a0c0000-0000-4000-8000-000000000001"
                    && record["result"] == "allowed"
            })
        },
    )
    .await;
    let record = production
        .records()
        .into_iter()
        .find(|record| {
            record["uid"] == "7a0c0000-0000-4000-8000-000000000001" && record["result"] == "allowed"
        })
        .expect("record");
    assert_eq!(
        record["digest"],
        attested.manifest_digest.as_str(),
        "{record}"
    );
    assert_eq!(
        record["commit"], "7d2f0a4c9e1b5a3f8c6d4e2b0a9f7e5d3c1b8a6f",
        "{record}"
    );
    assert!(
        record["runUrl"]
            .as_str()
            .is_some_and(|url| url.contains("/actions/runs/")),
        "{record}"
    );

    // Metrics: requests to the registry, and the cache answering the repeated review.
    let metrics = production.metrics_text().await;
    assert!(
        metrics.contains(&format!(
            r#"provenance_gate_registry_requests_total{{registry="{host}",operation="resolve",code="200"}}"#
        )),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"provenance_gate_cache_requests_total{cache="attestation",result="hit"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"provenance_gate_decisions_total{mode="enforce",result="allowed""#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_reaches_new_connections_and_open_ones_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let first = pki.issue("first.provenance-gate.test", 1001);
    let second = pki.issue("second.provenance-gate.test", 1002);
    let mut volume = SecretVolume::new(dir.path(), &first);
    let policy = write_policy(dir.path(), POLICY);
    let gate = Gate::start(GateSetup {
        volume: &volume,
        policy: &policy,
        namespace_labels: "env=production",
        extra: Vec::new(),
    });
    let review = pod_review(
        "registry.k8s.io/pause:3.9",
        "c0ffee00-0000-4000-8000-000000000001",
    );
    let url = gate.url("/validate");

    // A connection opened before the rotation (reqwest keeps it alive in its pool).
    let kept_alive = https_client(&pki.ca_der());
    let response = kept_alive
        .post(&url)
        .body(review.to_string())
        .send()
        .await
        .expect("first request");
    assert_eq!(peer_certificate(&response), first.der.to_vec());
    response.bytes().await.expect("body");

    // A mismatched pair is refused and the first certificate stays.
    let mismatched = ServingCertificate {
        certificate_pem: second.certificate_pem.clone(),
        key_pem: first.key_pem.clone(),
        der: second.der.clone(),
    };
    volume.update(&mismatched);
    wait_for(
        "the mismatched pair to be refused",
        RELOAD_TIMEOUT,
        || async { gate.logs().contains("new serving certificate refused") },
    )
    .await;
    let response = https_client(&pki.ca_der())
        .post(&url)
        .body(review.to_string())
        .send()
        .await
        .expect("request after a bad rotation");
    assert_eq!(peer_certificate(&response), first.der.to_vec());

    // The new pair: new connections get it.
    let rotated_at = Instant::now();
    volume.update(&second);
    wait_for(
        "new connections to present the new certificate",
        RELOAD_TIMEOUT,
        || async {
            match https_client(&pki.ca_der())
                .post(&url)
                .body(review.to_string())
                .send()
                .await
            {
                Ok(response) => peer_certificate(&response) == second.der.to_vec(),
                Err(_) => false,
            }
        },
    )
    .await;
    eprintln!(
        "new certificate served {:?} after the swap",
        rotated_at.elapsed()
    );

    // The connection opened before still works, on the certificate it was opened with.
    let response = kept_alive
        .post(&url)
        .body(review.to_string())
        .send()
        .await
        .expect("request on the kept-alive connection");
    assert_eq!(response.status(), 200);
    assert_eq!(
        peer_certificate(&response),
        first.der.to_vec(),
        "the kept-alive connection was replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_edits_apply_to_the_next_review_and_invalid_ones_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(dir.path(), &pki.issue("provenance-gate.test", 1));
    let policy = write_policy(dir.path(), POLICY);
    let gate = Gate::start(GateSetup {
        volume: &volume,
        policy: &policy,
        namespace_labels: "env=production",
        extra: Vec::new(),
    });
    let client = https_client(&pki.ca_der());
    let url = gate.url("/validate");
    let review = pod_review(
        "jmalloc/echo-server",
        "ed170000-0000-4000-8000-000000000001",
    );
    let denied = post_review(&client, &url, &review).await;
    assert_eq!(denied["allowed"], false, "{denied}");

    // A valid edit: the image becomes exempt.
    write_policy(
        dir.path(),
        &POLICY.replace(
            r#"exemptImages: ["registry.k8s.io/**"]"#,
            r#"exemptImages: ["registry.k8s.io/**", "docker.io/jmalloc/**"]"#,
        ),
    );
    wait_for("the edit to apply", RELOAD_TIMEOUT, || async {
        post_review(&client, &url, &review).await["allowed"] == true
    })
    .await;

    // An invalid edit: refused, counted, and the last good policy stays.
    write_policy(
        dir.path(),
        "version: 1\ndefaultMode: sometimes\nrules: []\n",
    );
    wait_for("the invalid edit to be counted", RELOAD_TIMEOUT, || async {
        gate.metrics_text()
            .await
            .contains(r#"provenance_gate_policy_reloads_total{result="failure"} 1"#)
    })
    .await;
    let still = post_review(&client, &url, &review).await;
    assert_eq!(still["allowed"], true, "{still}");
    let metrics = gate.metrics_text().await;
    assert!(
        metrics.contains(r#"provenance_gate_policy_reloads_total{result="success"} 2"#),
        "{metrics}"
    );
    assert!(gate.logs().contains("line 2"), "{}", gate.logs());
    let response = plain_client()
        .get(gate.metrics_url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_review_and_exits_zero() {
    // A "registry" that accepts connections and never answers: the review waits for its
    // budget, so it is in flight when SIGTERM arrives.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let host = black_hole.local_addr().expect("address").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(dir.path(), &pki.issue("provenance-gate.test", 1));
    let policy = write_policy(
        dir.path(),
        &format!(
            "version: 1\ndefaultMode: enforce\nrules:\n  - name: slow\n    images: [\"{host}/slow/**\"]\n    repositories: [{{name: acme/api}}]\nregistries:\n  - {{host: \"{host}\", insecure: true}}\n"
        ),
    );
    let mut gate = Gate::start(GateSetup {
        volume: &volume,
        policy: &policy,
        namespace_labels: "",
        extra: vec!["--review-budget".to_owned(), "3".to_owned()],
    });
    let client = https_client(&pki.ca_der());
    let url = gate.url("/validate");
    let review = pod_review(
        &format!("{host}/slow/app:v1"),
        "5107d000-0000-4000-8000-000000000001",
    );
    let in_flight = tokio::spawn({
        let review = review.clone();
        async move { post_review(&client, &url, &review).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let signalled = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = gate.terminate(Duration::from_secs(20));
        (status, gate)
    })
    .await
    .expect("terminate");
    let (status, gate) = status;
    let answer = in_flight.await.expect("the in-flight review");
    assert_eq!(answer["allowed"], false, "{answer}");
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{answer}"
    );
    assert_eq!(status.code(), Some(0), "{}", gate.logs());
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    drop(black_hole);
}

/// SIGTERM must not close a kept-alive connection under its client: the API server keeps
/// sending reviews over the connections it holds to a terminating replica, and a review lost
/// on a connection closed under it fails the creation ("use of closed network connection").
/// During the shutdown delay the server is unready but answers, on open and on new
/// connections, and each HTTP/1.1 answer says `Connection: close` before the server closes
/// that connection; then it exits.
#[test]
fn after_sigterm_open_connections_are_answered_and_handed_back_before_the_exit() {
    let fixture = Fixture::new();
    let delay = Duration::from_secs(3);
    let mut gate = fixture.start(vec![
        "--shutdown-delay".to_owned(),
        delay.as_secs().to_string(),
    ]);
    let config = fixture.tls_config();
    let review = pod_review(
        "registry.k8s.io/pause:3.9",
        "5107d000-0000-4000-8000-000000000002",
    );
    let mut kept_alive = tls_connect(gate.webhook, &config).expect("handshake");
    let (head, answer) = post_kept_alive(&mut kept_alive, &review).expect("the first answer");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(readyz_status(gate.metrics), "200");

    send_sigterm(&gate.child);
    let signalled = Instant::now();
    wait_until("/readyz fails after SIGTERM", || {
        readyz_status(gate.metrics) == "503"
    });
    // The connection the client holds, used again after the signal.
    let (head, answer) = post_kept_alive(&mut kept_alive, &review).unwrap_or_else(|error| {
        panic!(
            "the open connection was closed under its client: {error}\n{}",
            gate.logs()
        )
    });
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let mut rest = Vec::new();
    assert!(
        matches!(peek(&mut kept_alive, &mut rest, MARGIN), Peek::Closed),
        "the server kept the connection open after asking to close it"
    );
    // A client that has not seen the endpoint change yet still gets an answer.
    let mut late = tls_connect(gate.webhook, &config).expect("a new connection during the delay");
    let (head, _) = post_kept_alive(&mut late, &review).expect("an answer during the delay");
    assert!(
        head.starts_with("http/1.1 200") && head.contains("connection: close"),
        "{head}"
    );
    assert!(
        signalled.elapsed() < delay,
        "the checks took longer than the delay ({:?}); nothing was shown",
        signalled.elapsed()
    );

    // No second signal: it would cut the delay short.
    let status = gate.wait_for_exit(delay + MARGIN * 2);
    assert_eq!(status.code(), Some(0), "{}", gate.logs());
    let exited = signalled.elapsed();
    assert!(
        exited >= delay,
        "exited {exited:?} after SIGTERM, before the delay"
    );
    eprintln!("exited {exited:?} after SIGTERM (delay {delay:?})");
}

/// Sends a review on a kept-alive HTTP/1.1 connection and reads exactly one answer: its head
/// (lower-cased) and JSON body. An error: the connection was closed or reset.
fn post_kept_alive(stream: &mut TlsStream, review: &Value) -> std::io::Result<(String, Value)> {
    let body = review.to_string();
    stream.write_all(format!("{}{body}", post_head(body.len())).as_bytes())?;
    stream.flush()?;
    stream
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                let body = serde_json::from_slice(&received[end + 4..end + 4 + length])
                    .unwrap_or(Value::Null);
                return Ok((head, body));
            }
        }
        match stream.read(&mut buffer)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            read => received.extend_from_slice(&buffer[..read]),
        }
    }
}

/// The status code `/readyz` answers with, over plain HTTP.
fn readyz_status(metrics: SocketAddr) -> String {
    let Ok(mut socket) = std::net::TcpStream::connect_timeout(&metrics, Duration::from_secs(2))
    else {
        return "unreachable".to_owned();
    };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
    let _ =
        socket.write_all(b"GET /readyz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    answer.split(' ').nth(1).unwrap_or("none").to_owned()
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < RELOAD_TIMEOUT,
            "{what}: not within {RELOAD_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn start_up_refuses_an_invalid_policy_or_certificate_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let volume = SecretVolume::new(dir.path(), &pki.issue("provenance-gate.test", 1));
    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(&invalid, "version: 1\nrules:\n  - name: x\n    images: 3\n").expect("policy");
    let valid = write_policy(dir.path(), POLICY);
    let run = |certificate: &Path, policy: &Path| {
        Command::new(BINARY)
            .arg("serve")
            .arg("--tls-cert")
            .arg(certificate)
            .arg("--tls-key")
            .arg(volume.key())
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--policy")
            .arg(policy)
            .args(["--log-format", "text"])
            .stdin(Stdio::null())
            .output()
            .expect("run serve")
    };

    let output = run(&volume.certificate(), &invalid);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid.yaml"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");

    let output = run(&dir.path().join("missing.crt"), &valid);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.crt"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Slow clients, connection limits and client certificates.

/// A serving certificate, its CA and the test policy in a temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
    pki: Pki,
    volume: SecretVolume,
    policy: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new();
        let volume = SecretVolume::new(dir.path(), &pki.issue("provenance-gate.test", 1));
        let policy = write_policy(dir.path(), POLICY);
        Fixture {
            dir,
            pki,
            volume,
            policy,
        }
    }

    fn start(&self, extra: Vec<String>) -> Gate {
        Gate::start(GateSetup {
            volume: &self.volume,
            policy: &self.policy,
            namespace_labels: "env=production",
            extra,
        })
    }

    fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::new(client_config(&self.pki.ca_der()))
    }
}

/// `serve`'s default `--body-timeout`.
const BODY_TIMEOUT: Duration = Duration::from_secs(3);
/// Slack for scheduling on a loaded machine; the behaviour under test is "closed", not "fast".
const MARGIN: Duration = Duration::from_secs(4);

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A TLS connection with the handshake done, for sending bytes at any pace. A connection the
/// server refuses fails here.
fn tls_connect(
    address: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream> {
    let socket = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    socket.set_write_timeout(Some(Duration::from_secs(5)))?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let connection =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The head of a POST /validate announcing `length` body bytes.
fn post_head(length: usize) -> String {
    format!(
        "POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n\r\n"
    )
}

/// What one look at a connection found.
enum Peek {
    Nothing,
    Data,
    Closed,
}

/// Reads what has arrived within `wait` into `received`.
fn peek(stream: &mut TlsStream, received: &mut Vec<u8>, wait: Duration) -> Peek {
    stream
        .sock
        .set_read_timeout(Some(wait))
        .expect("read timeout");
    let mut buffer = [0u8; 4096];
    match stream.read(&mut buffer) {
        Ok(0) => Peek::Closed,
        Ok(read) => {
            received.extend_from_slice(&buffer[..read]);
            Peek::Data
        }
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Peek::Nothing
        }
        // A reset or an EOF without close_notify: closed too.
        Err(_) => Peek::Closed,
    }
}

/// Sends a complete request with `connection: close` and returns the status line and body.
fn post_once(stream: &mut TlsStream, review: &Value) -> (String, Value) {
    let body = review.to_string();
    let request = format!(
        "POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the review");
    let mut received = Vec::new();
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Peek::Closed = peek(stream, &mut received, Duration::from_millis(200)) {
            break;
        }
    }
    split_response(&received)
}

/// Status line and JSON body of an HTTP/1.1 response.
fn split_response(received: &[u8]) -> (String, Value) {
    let text = String::from_utf8_lossy(received);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_body_trickled_byte_by_byte_is_cut_off_with_408() {
    let fixture = Fixture::new();
    let gate = fixture.start(Vec::new());
    let mut stream = tls_connect(gate.webhook, &fixture.tls_config()).expect("handshake");
    stream
        .write_all(post_head(10_000).as_bytes())
        .expect("send the head");
    let started = Instant::now();
    let mut received = Vec::new();
    let mut closed = false;
    // JSON whitespace, one byte every 250 ms, until the server answers; then read to the end.
    while started.elapsed() < BODY_TIMEOUT + MARGIN {
        match peek(&mut stream, &mut received, Duration::from_millis(250)) {
            Peek::Closed => {
                closed = true;
                break;
            }
            Peek::Data => {}
            Peek::Nothing if received.is_empty() => {
                let _ = stream.write_all(b" ");
            }
            Peek::Nothing => {}
        }
    }
    let elapsed = started.elapsed();
    let (status, body) = split_response(&received);
    assert!(
        status.starts_with("HTTP/1.1 408"),
        "after {elapsed:?}: {:?}\n{}",
        String::from_utf8_lossy(&received),
        gate.logs()
    );
    assert_eq!(body["response"]["status"]["code"], 408, "{body}");
    assert!(closed, "the connection is still open after {elapsed:?}");
    eprintln!("trickled body cut off after {elapsed:?}");
}

#[test]
fn three_hundred_slow_connections_are_capped_and_memory_stays_bounded() {
    const ATTEMPTS: usize = 300;
    let cap = provenance_gate::server::DEFAULT_MAX_CONNECTIONS;
    let fixture = Fixture::new();
    let gate = fixture.start(Vec::new());
    let config = fixture.tls_config();
    let pid = gate.child.id();
    let review = pod_review(
        "registry.k8s.io/pause:3.9",
        "5105-0000-4000-8000-000000000001",
    );
    let (status, _) = post_once(
        &mut tls_connect(gate.webhook, &config).expect("handshake"),
        &review,
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let baseline = resident_kib(pid);

    // Each connection announces a 3 MB body, sends 512 KiB of it at once, then trickles.
    let started = Instant::now();
    let mut held = Vec::new();
    let mut refused = 0;
    let chunk = vec![b' '; 512 * 1024];
    for _ in 0..ATTEMPTS {
        let Ok(mut stream) = tls_connect(gate.webhook, &config) else {
            refused += 1;
            continue;
        };
        // A connection waiting for its turn is not read: do not wait long on a full buffer.
        let _ = stream
            .sock
            .set_write_timeout(Some(Duration::from_millis(500)));
        let _ = stream
            .write_all(post_head(3_000_000).as_bytes())
            .and_then(|()| stream.write_all(&chunk));
        held.push((stream, Vec::new(), false));
    }
    let while_held = resident_kib(pid);
    let accepted = held.len();

    // Trickle to every open connection until the server has closed them all.
    let bound = started.elapsed() + BODY_TIMEOUT + MARGIN;
    while started.elapsed() < bound && held.iter().any(|(_, _, closed)| !closed) {
        for (stream, received, closed) in held.iter_mut().filter(|(_, _, closed)| !closed) {
            match peek(stream, received, Duration::from_millis(2)) {
                Peek::Closed => *closed = true,
                Peek::Nothing if received.is_empty() => {
                    let _ = stream.write_all(b" ");
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let still_open = held.iter().filter(|(_, _, closed)| !closed).count();
    let not_408 = held
        .iter()
        .filter(|(_, received, _)| {
            !received.is_empty() && !split_response(received).0.starts_with("HTTP/1.1 408")
        })
        .count();
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    let after = resident_kib(pid);
    eprintln!(
        "{ATTEMPTS} slow connections: {accepted} accepted, {refused} refused; RSS {baseline} KiB \
         before, {while_held} KiB while held, {after} KiB after"
    );

    assert!(
        accepted <= cap,
        "{accepted} connections accepted, cap {cap}"
    );
    assert_eq!(accepted + refused, ATTEMPTS);
    assert_eq!(still_open, 0, "connections still open after {bound:?}");
    assert_eq!(not_408, 0, "answers other than 408");
    assert!(
        while_held.saturating_sub(baseline) < 128 * 1024,
        "RSS grew from {baseline} KiB to {while_held} KiB"
    );
    // Places are given back: a review is answered again.
    let (status, _) = post_once(
        &mut tls_connect(gate.webhook, &config).expect("handshake after the slow clients"),
        &review,
    );
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "{status}\n{}",
        gate.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_with_its_certificates_are_answered() {
    let fixture = Fixture::new();
    let api_servers = Pki::new();
    let client_ca = fixture.dir.path().join("client-ca.crt");
    std::fs::write(&client_ca, api_servers.ca.pem()).expect("client CA");
    let gate = fixture.start(vec![
        "--client-ca".to_owned(),
        client_ca.display().to_string(),
    ]);
    let open = fixture.start(Vec::new());
    let url = gate.url("/validate");
    let review = |uid: &str| pod_review("jmalloc/echo-server", uid);

    // No certificate, or one from another CA: the handshake fails.
    let anonymous = https_client(&fixture.pki.ca_der());
    let stranger = https_client_with(client_config_with_identity(
        &fixture.pki.ca_der(),
        &Pki::new().issue_client("kube-apiserver"),
    ));
    for (client, who) in [
        (&anonymous, "without a client certificate"),
        (&stranger, "with a certificate of another CA"),
    ] {
        let result = client
            .post(&url)
            .body(review("c11e0000-0000-4000-8000-000000000001").to_string())
            .send()
            .await;
        assert!(result.is_err(), "answered {who}: {result:?}");
    }

    // The API server's certificate: answered, and the records name it.
    let identity = api_servers.issue_client("kube-apiserver-webhook-client");
    let api_server = https_client_with(client_config_with_identity(
        &fixture.pki.ca_der(),
        &identity,
    ));
    let authenticated = review("c11e0000-0000-4000-8000-000000000003");
    let answer = post_review(&api_server, &url, &authenticated).await;
    assert_eq!(answer["allowed"], false, "{answer}");

    // Without a client CA, anyone is answered and the records say so.
    let unauthenticated = review("c11e0000-0000-4000-8000-000000000004");
    post_review(&anonymous, &open.url("/validate"), &unauthenticated).await;

    let caller_of = |gate: &Gate, uid: &str| {
        gate.records()
            .into_iter()
            .find(|record| record["uid"] == uid)
            .map(|record| record["caller"].clone())
    };
    wait_for("both decision records", RELOAD_TIMEOUT, || async {
        caller_of(&gate, "c11e0000-0000-4000-8000-000000000003").is_some()
            && caller_of(&open, "c11e0000-0000-4000-8000-000000000004").is_some()
    })
    .await;
    let caller = caller_of(&gate, "c11e0000-0000-4000-8000-000000000003").unwrap_or_default();
    assert_eq!(caller["authenticated"], true, "{caller}");
    assert!(
        caller["subject"]
            .as_str()
            .unwrap_or_default()
            .contains("CN=kube-apiserver-webhook-client"),
        "{caller}"
    );
    let caller = caller_of(&open, "c11e0000-0000-4000-8000-000000000004").unwrap_or_default();
    assert_eq!(caller, json!({"authenticated": false}));
}

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len())
        .expect("a small frame")
        .to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HTTP/2 connection that starts `streams` POST /validate reviews and never sends their
/// bodies.
fn bodiless_h2_reviews(
    address: SocketAddr,
    ca: &CertificateDer<'static>,
    streams: u32,
) -> TlsStream {
    const HEADERS: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    const END_HEADERS: u8 = 0x4;
    let mut config = client_config(ca);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let mut stream = tls_connect(address, &Arc::new(config)).expect("handshake");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frames.extend(h2_frame(SETTINGS, 0, 0, &[]));
    // HPACK: :method POST and :scheme https from the static table, :path written out.
    let mut block = vec![0x83, 0x87, 0x04, 9];
    block.extend_from_slice(b"/validate");
    for index in 0..streams {
        frames.extend(h2_frame(HEADERS, END_HEADERS, 1 + 2 * index, &block));
    }
    stream.write_all(&frames).expect("send the headers");
    stream.flush().expect("flush");
    stream
}

#[test]
fn reviews_that_never_send_their_body_cannot_queue_up_the_places_in_flight() {
    // Two connections start 64 reviews without bodies, against 4 places in flight. Were the
    // body timeout counted from the place, each would hold it 3 s in turn, and a review
    // behind them would wait 45 s, past the API server's timeout.
    const PLACES: &str = "4";
    const API_SERVER_TIMEOUT: Duration = Duration::from_secs(10);
    let fixture = Fixture::new();
    let gate = fixture.start(vec!["--max-in-flight".into(), PLACES.into()]);
    let config = fixture.tls_config();
    let review = pod_review(
        "registry.k8s.io/pause:3.9",
        "5105-0000-4000-8000-000000000002",
    );
    let (status, _) = post_once(
        &mut tls_connect(gate.webhook, &config).expect("handshake"),
        &review,
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    let ca = fixture.pki.ca_der();
    let held: Vec<TlsStream> = (0..2)
        .map(|_| bodiless_h2_reviews(gate.webhook, &ca, 32))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (status, answer) = post_once(
        &mut tls_connect(gate.webhook, &config).expect("handshake"),
        &review,
    );
    let waited = started.elapsed();
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "{status} after {waited:?}\n{}",
        gate.logs()
    );
    assert_eq!(answer["response"]["allowed"], true);
    assert!(
        waited < API_SERVER_TIMEOUT,
        "answered after {waited:?}, past the API server's timeout"
    );
    drop(held);
}

/// `serve --tuf-mirror`: a reachable TUF repository's trusted root is refreshed in the
/// background and the metrics say so; an unreachable mirror (the offline case) leaves the
/// embedded root in force, counted and logged, and the server serves throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refreshes_trusted_roots_from_tuf_and_keeps_the_embedded_ones_when_offline() {
    let fixture = Fixture::new();
    let instance = TestInstance::timestamp_only();
    let repository =
        provenance_gate_testkit::tuf::TufRepository::new(&instance.trusted_root_json()).await;
    let tuf_root = fixture.dir.path().join("github.root.json");
    std::fs::write(&tuf_root, repository.initial_root()).expect("TUF root");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let offline = format!("http://{}/", closed.local_addr().expect("address"));
    drop(closed);
    let gate = fixture.start(vec![
        format!("--tuf-mirror=github={}", repository.url()),
        format!("--tuf-root=github={}", tuf_root.display()),
        format!("--tuf-mirror=public-good={offline}"),
    ]);

    wait_for("both refreshes to end", Duration::from_secs(20), || async {
        let metrics = gate.metrics_text().await;
        metrics.contains("provenance_gate_trusted_root_tuf_root_version{sigstore_instance=\"github\"} 1")
            && metrics.contains(
                "provenance_gate_trusted_root_refreshes_total{sigstore_instance=\"public-good\",result=\"error\"} 1",
            )
    })
    .await;
    let metrics = gate.metrics_text().await;
    for line in [
        "provenance_gate_trusted_root_from_tuf{sigstore_instance=\"github\"} 1",
        "provenance_gate_trusted_root_from_tuf{sigstore_instance=\"public-good\"} 0",
        "provenance_gate_trusted_root_refreshes_total{sigstore_instance=\"github\",result=\"ok\"} 1",
        "provenance_gate_trusted_root_tuf_root_version{sigstore_instance=\"public-good\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    let logs = gate.logs();
    assert!(
        logs.contains("trusted-root refresh failed; the trusted root in force stays")
            && logs.contains("\"in_force\":\"embedded\""),
        "{logs}"
    );
}
