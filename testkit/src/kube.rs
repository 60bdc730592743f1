//! A real Kubernetes control plane for the cluster tests: `etcd`, `kube-apiserver` and, when
//! a test asks for it, `kube-controller-manager` (built from source by
//! `scripts/install-kube.sh` into `target/tools/bin`) run in a temporary directory and are
//! killed when their guards ([`KubeApiServer`], [`KubeControllerManager`]) drop.
//!
//! The API server stores and serves objects, authenticates bearer tokens (a static admin token
//! in `system:masters`, and ServiceAccount tokens from the TokenRequest API) and authorizes with
//! RBAC only, so that a test can prove exactly what a Role grants. It listens on loopback, or on
//! another local address ([`ApiServerOptions::bind`]) that a process in a test's network
//! namespace can reach. There are no nodes: Pods are stored, never run.
//!
//! ```no_run
//! use provenance_gate_testkit::kube::KubeApiServer;
//!
//! let server = KubeApiServer::start();
//! let kubeconfig = server.kubeconfig_path(); // admin, for kube::Config / KUBECONFIG
//! let token = server.admin_token();
//! # let _ = (kubeconfig, token);
//! ```
//!
//! Binaries are looked up in `$PROVENANCE_GATE_KUBE_BIN` when set, else in the
//! workspace's `target/tools/bin`, else on `PATH`. When they are missing, [`KubeApiServer::start`]
//! panics with a message naming `scripts/install-kube.sh`: a cluster test never skips.

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rcgen::KeyPair;

use crate::registry::TestCa;

/// Environment variable naming a directory that holds `etcd` and `kube-apiserver`.
pub const KUBE_BIN_ENV: &str = "PROVENANCE_GATE_KUBE_BIN";

/// The ServiceAccount token issuer (and the default audience of its tokens).
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Time allowed for etcd, then the API server, to become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Attempts at starting, each with fresh ports (a port picked free may be taken by then).
const START_ATTEMPTS: usize = 3;

/// How the API server listens and what it is told beyond the defaults.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// `--bind-address` and `--advertise-address`; the serving certificate names it (and
    /// `127.0.0.1`, `localhost`).
    pub bind: Ipv4Addr,
    /// Appended to the API server's arguments.
    pub extra_args: Vec<String>,
}

impl Default for ApiServerOptions {
    fn default() -> ApiServerOptions {
        ApiServerOptions {
            bind: Ipv4Addr::LOCALHOST,
            extra_args: Vec::new(),
        }
    }
}

/// A running etcd + kube-apiserver pair; both are killed when this drops.
pub struct KubeApiServer {
    url: String,
    ca_pem: String,
    admin_token: String,
    kubeconfig: PathBuf,
    etcd: Child,
    apiserver: Child,
    startup: Duration,
    // Last, so that the processes are gone before their directory is removed.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for KubeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApiServer")
            .field("url", &self.url)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// Why one start attempt failed.
enum StartError {
    /// A listening port was taken between picking and binding it: try other ports.
    PortTaken(String),
    /// Anything else: report.
    Failed(String),
}

impl StartError {
    fn message(&self) -> &str {
        match self {
            StartError::PortTaken(message) | StartError::Failed(message) => message,
        }
    }
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver on free loopback ports and waits until
    /// `/readyz` answers 200. Panics (naming `scripts/install-kube.sh` when the
    /// binaries are missing) when it cannot.
    pub fn start() -> KubeApiServer {
        KubeApiServer::start_with(&ApiServerOptions::default())
    }

    /// [`start`](Self::start), listening and advertising on `options.bind`, with
    /// `options.extra_args`.
    pub fn start_with(options: &ApiServerOptions) -> KubeApiServer {
        let binaries = Binaries::find();
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match KubeApiServer::try_start(&binaries, options) {
                Ok(server) => return server,
                Err(StartError::PortTaken(why)) => {
                    eprintln!("kube test server: attempt {attempt}: port taken, retrying: {why}");
                    last = why;
                }
                Err(StartError::Failed(why)) => panic!("kube test server failed to start: {why}"),
            }
        }
        panic!("kube test server failed to start after {START_ATTEMPTS} attempts: {last}")
    }

    fn try_start(
        binaries: &Binaries,
        options: &ApiServerOptions,
    ) -> Result<KubeApiServer, StartError> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("kube-apiserver-")
            .tempdir()
            .map_err(|error| StartError::Failed(format!("temporary directory: {error}")))?;
        let path = |name: &str| dir.path().join(name);

        // Serving certificate (127.0.0.1, localhost), ServiceAccount signing key, admin token.
        let ca = TestCa::new();
        let bind = options.bind.to_string();
        let serving = ca.issue_server_identity_for(&[&bind, "127.0.0.1", "localhost"]);
        let sa_key = KeyPair::generate()
            .map_err(|error| StartError::Failed(format!("ServiceAccount key: {error}")))?;
        let admin_token = random_token();
        write(&path("serving.crt"), &serving.certificate_pem)?;
        write(&path("serving.key"), &serving.private_key_pem)?;
        write(&path("service-account.key"), &sa_key.serialize_pem())?;
        write(&path("service-account.pub"), &sa_key.public_key_pem())?;
        write(
            &path("tokens.csv"),
            &format!("{admin_token},admin,admin-uid,\"system:masters\"\n"),
        )?;

        let etcd_client_port = free_port(Ipv4Addr::LOCALHOST)?;
        let etcd_peer_port = free_port(Ipv4Addr::LOCALHOST)?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let mut etcd = spawn(
            Command::new(&binaries.etcd)
                .arg("--name=test")
                .arg(format!("--data-dir={}", path("etcd").display()))
                .arg(format!("--listen-client-urls={etcd_url}"))
                .arg(format!("--advertise-client-urls={etcd_url}"))
                .arg(format!("--listen-peer-urls={etcd_peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={etcd_peer_url}"))
                .arg(format!("--initial-cluster=test={etcd_peer_url}"))
                .arg("--listen-metrics-urls=")
                // Throwaway data: no fsync, which is most of etcd's latency on a slow disk.
                .arg("--unsafe-no-fsync")
                .arg("--log-level=warn"),
            &path("etcd.log"),
        )?;
        let deadline = started + STARTUP_TIMEOUT;
        if let Err(error) = wait_for_etcd(&mut etcd, &etcd_url, &path("etcd.log"), deadline) {
            stop(&mut etcd);
            return Err(error);
        }

        let port = free_port(options.bind)?;
        let url = format!("https://{bind}:{port}");
        let apiserver = spawn(
            Command::new(&binaries.apiserver)
                .arg(format!("--etcd-servers={etcd_url}"))
                .arg(format!("--bind-address={bind}"))
                .arg(format!("--advertise-address={bind}"))
                .arg(format!("--secure-port={port}"))
                .arg(format!("--cert-dir={}", path("certs").display()))
                .arg(format!("--tls-cert-file={}", path("serving.crt").display()))
                .arg(format!(
                    "--tls-private-key-file={}",
                    path("serving.key").display()
                ))
                .arg(format!(
                    "--token-auth-file={}",
                    path("tokens.csv").display()
                ))
                .arg("--authorization-mode=RBAC")
                .arg(format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"))
                .arg(format!(
                    "--service-account-key-file={}",
                    path("service-account.pub").display()
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    path("service-account.key").display()
                ))
                // Allocated in etcd only: nothing routes to it, nothing is sent there.
                .arg("--service-cluster-ip-range=10.0.0.0/24")
                // No Endpoints for the `kubernetes` Service (they could not hold 127.0.0.1).
                .arg("--endpoint-reconciler-type=none")
                .arg("--profiling=false")
                .arg("--v=1")
                .args(&options.extra_args),
            &path("kube-apiserver.log"),
        );
        let mut apiserver = match apiserver {
            Ok(child) => child,
            Err(error) => {
                stop(&mut etcd);
                return Err(error);
            }
        };
        let ca_pem = ca.certificate_pem();
        let agent = agent(&ca_pem);
        if let Err(error) = wait_for_readyz(
            &agent,
            &mut apiserver,
            &url,
            &admin_token,
            &path("kube-apiserver.log"),
            deadline,
        ) {
            stop(&mut apiserver);
            stop(&mut etcd);
            return Err(error);
        }

        let kubeconfig = path("kubeconfig");
        let mut server = KubeApiServer {
            url,
            ca_pem,
            admin_token,
            kubeconfig,
            etcd,
            apiserver,
            startup: Duration::ZERO,
            dir,
        };
        write(
            &server.kubeconfig,
            &server.kubeconfig_for_token(&server.admin_token),
        )?;
        server.startup = started.elapsed();
        eprintln!(
            "kube test server: {} ready in {:.1}s",
            server.url,
            server.startup.as_secs_f64()
        );
        Ok(server)
    }

    /// `https://BIND:PORT` (`127.0.0.1` unless [`ApiServerOptions::bind`] says otherwise).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that signed the serving certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A bearer token of user `admin` in group `system:masters`.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A kubeconfig file for the admin (context `test`, current).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig (YAML) for this server that authenticates with `token`.
    pub fn kubeconfig_for_token(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: test\n  \
               cluster:\n    \
                 server: {server}\n    \
                 certificate-authority-data: {ca}\n\
             users:\n\
             - name: test\n  \
               user:\n    \
                 token: {token}\n\
             contexts:\n\
             - name: test\n  \
               context:\n    \
                 cluster: test\n    \
                 user: test\n\
             current-context: test\n",
            server = self.url,
            ca = BASE64.encode(&self.ca_pem),
        )
    }

    /// Writes [`kubeconfig_for_token`](Self::kubeconfig_for_token) to a file in the
    /// server's directory named `name`, and returns its path.
    pub fn write_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, self.kubeconfig_for_token(token))
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        path
    }

    /// Wall time from [`start`](Self::start) to a ready `/readyz`.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The server's temporary directory (logs, certificates, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `max_bytes` of the API server's log, for a failure message.
    pub fn apiserver_log_tail(&self, max_bytes: usize) -> String {
        log_tail(&self.dir.path().join("kube-apiserver.log"), max_bytes)
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        stop(&mut self.apiserver);
        stop(&mut self.etcd);
    }
}

/// A running kube-controller-manager (every controller but those a test turns off, each with
/// its own ServiceAccount, as in a cluster); killed when this drops.
pub struct KubeControllerManager {
    process: Child,
    log: PathBuf,
    startup: Duration,
}

impl std::fmt::Debug for KubeControllerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeControllerManager")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl KubeApiServer {
    /// Starts kube-controller-manager against this server with `--controllers=CONTROLLERS`
    /// (for example `*,-endpoint`), the admin's credentials for itself and a ServiceAccount
    /// token per controller (`--use-service-account-credentials`), and waits until its
    /// ServiceAccount controller has created `default/default` (Pods need their namespace's
    /// `default` ServiceAccount). Panics, naming `scripts/install-kube.sh` when the binary is
    /// missing, when it cannot.
    pub fn start_controller_manager(&self, controllers: &str) -> KubeControllerManager {
        let started = Instant::now();
        let binary = find_binary("kube-controller-manager");
        let path = |name: &str| self.dir.path().join(name);
        let ca = path("ca.crt");
        std::fs::write(&ca, &self.ca_pem)
            .unwrap_or_else(|error| panic!("writing {}: {error}", ca.display()));
        let log = path("kube-controller-manager.log");
        let mut process = spawn(
            Command::new(binary)
                .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
                .arg(format!("--controllers={controllers}"))
                .arg("--use-service-account-credentials=true")
                .arg(format!(
                    "--service-account-private-key-file={}",
                    path("service-account.key").display()
                ))
                .arg(format!("--root-ca-file={}", ca.display()))
                .arg("--leader-elect=false")
                // No HTTPS endpoint of its own: nothing here scrapes or probes it.
                .arg("--secure-port=0")
                .arg("--v=1"),
            &log,
        )
        .unwrap_or_else(|error| panic!("kube-controller-manager: {}", error.message()));
        let agent = agent(&self.ca_pem);
        let url = format!(
            "{}/api/v1/namespaces/default/serviceaccounts/default",
            self.url
        );
        let deadline = started + STARTUP_TIMEOUT;
        loop {
            if let Some(error) = exited(&mut process, "kube-controller-manager", &log) {
                panic!("{}", error.message());
            }
            let status = agent
                .get(&url)
                .header("Authorization", &format!("Bearer {}", self.admin_token))
                .call()
                .map(|response| response.status().as_u16())
                .unwrap_or(0);
            if status == 200 {
                break;
            }
            if Instant::now() > deadline {
                stop(&mut process);
                panic!(
                    "kube-controller-manager did not create the default ServiceAccount within \
                     {}s; end of its log:\n{}",
                    STARTUP_TIMEOUT.as_secs(),
                    log_excerpt(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let startup = started.elapsed();
        eprintln!(
            "kube test server: controller manager ready in {:.1}s",
            startup.as_secs_f64()
        );
        KubeControllerManager {
            process,
            log,
            startup,
        }
    }
}

impl KubeControllerManager {
    /// Wall time from start to the `default` ServiceAccount.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The last `max_bytes` of its log, for a failure message.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        log_tail(&self.log, max_bytes)
    }
}

impl Drop for KubeControllerManager {
    fn drop(&mut self) {
        stop(&mut self.process);
    }
}

struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
}

/// Where the binaries are looked up, in order.
fn binary_directories() -> Vec<PathBuf> {
    let from_env = std::env::var_os(KUBE_BIN_ENV).map(PathBuf::from);
    let workspace_tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/bin");
    let mut candidates: Vec<PathBuf> = from_env.into_iter().collect();
    candidates.push(workspace_tools);
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
}

fn find_optional_binary(name: &str) -> Option<PathBuf> {
    binary_directories()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn find_binary(name: &str) -> PathBuf {
    find_optional_binary(name).unwrap_or_else(|| {
        panic!(
            "the cluster tests need a real {name}, and it was not found (looked in \
             ${KUBE_BIN_ENV}, target/tools/bin and PATH): run scripts/install-kube.sh (it \
             builds the control plane from source through the Go module proxy, into \
             target/tools/bin)"
        )
    })
}

impl Binaries {
    fn find() -> Binaries {
        let find = find_optional_binary;
        match (find("etcd"), find("kube-apiserver")) {
            (Some(etcd), Some(apiserver)) => Binaries { etcd, apiserver },
            (etcd, apiserver) => panic!(
                "the cluster tests need a real etcd and kube-apiserver, and {missing} not found \
                 (looked in ${KUBE_BIN_ENV}, target/tools/bin and PATH): run scripts/install-kube.sh \
                 (it builds both from source through the Go module proxy, into target/tools/bin)",
                missing = match (etcd, apiserver) {
                    (None, None) => "neither was",
                    (None, Some(_)) => "etcd was",
                    _ => "kube-apiserver was",
                }
            ),
        }
    }
}

fn write(path: &Path, contents: &str) -> Result<(), StartError> {
    std::fs::write(path, contents)
        .map_err(|error| StartError::Failed(format!("writing {}: {error}", path.display())))
}

fn free_port(ip: Ipv4Addr) -> Result<u16, StartError> {
    TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| StartError::Failed(format!("no free port on {ip}: {error}")))
}

fn spawn(command: &mut Command, log: &Path) -> Result<Child, StartError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = File::create(log)
        .map_err(|error| StartError::Failed(format!("creating {}: {error}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|error| StartError::Failed(format!("{}: {error}", log.display())))?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|error| StartError::Failed(format!("running {program}: {error}")))
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The process has exited during startup: why, from its log.
fn exited(child: &mut Child, name: &str, log: &Path) -> Option<StartError> {
    let status = child.try_wait().ok().flatten()?;
    let tail = log_excerpt(log);
    let message = format!("{name} exited ({status}) during startup; end of its log:\n{tail}");
    Some(if tail.contains("address already in use") {
        StartError::PortTaken(message)
    } else {
        StartError::Failed(message)
    })
}

fn wait_for_etcd(
    etcd: &mut Child,
    url: &str,
    log: &Path,
    deadline: Instant,
) -> Result<(), StartError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    loop {
        if let Some(error) = exited(etcd, "etcd", log) {
            return Err(error);
        }
        if let Ok(mut response) = agent.get(&format!("{url}/health")).call() {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            if response.status() == 200 && body.contains("\"true\"") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(StartError::Failed(format!(
                "etcd not healthy within {}s; end of its log:\n{}",
                STARTUP_TIMEOUT.as_secs(),
                log_excerpt(log)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_readyz(
    agent: &ureq::Agent,
    apiserver: &mut Child,
    url: &str,
    token: &str,
    log: &Path,
    deadline: Instant,
) -> Result<(), StartError> {
    loop {
        if let Some(error) = exited(apiserver, "kube-apiserver", log) {
            return Err(error);
        }
        let last = match agent
            .get(&format!("{url}/readyz"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
        {
            Ok(mut response) => {
                let status = response.status();
                let body = response.body_mut().read_to_string().unwrap_or_default();
                if status == 200 {
                    return Ok(());
                }
                // The failing checks, e.g. `[-]poststarthook/rbac/bootstrap-roles failed`.
                let failing: Vec<&str> = body.lines().filter(|line| line.contains("[-]")).collect();
                format!("{status}: {}", failing.join(", "))
            }
            Err(error) => error.to_string(),
        };
        if Instant::now() > deadline {
            return Err(StartError::Failed(format!(
                "kube-apiserver not ready within {}s (last /readyz: {last}); end of its log:\n{}",
                STARTUP_TIMEOUT.as_secs(),
                log_excerpt(log)
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A ureq agent that trusts exactly `ca_pem` (rustls on aws-lc-rs).
fn agent(ca_pem: &str) -> ureq::Agent {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let roots: Vec<ureq::tls::Certificate<'static>> =
        CertificateDer::pem_slice_iter(ca_pem.as_bytes())
            .map(|der| {
                let der = der.expect("the test CA is well-formed PEM");
                ureq::tls::Certificate::from_der(der.as_ref()).to_owned()
            })
            .collect();
    let tls_config = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls_config)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent()
}

/// 32 random bytes, hex: the admin bearer token.
fn random_token() -> String {
    use rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// For a failure message: the log's error lines (klog `E…`/`F…`, zap `"level":"error"`)
/// and its last lines, at most a few kB.
fn log_excerpt(path: &Path) -> String {
    let text = log_tail(path, 64 * 1024);
    let lines: Vec<&str> = text.lines().collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| {
            line.starts_with('E') || line.starts_with('F') || line.contains("\"level\":\"error\"")
        })
        .collect();
    let last = &lines[lines.len().saturating_sub(15)..];
    let excerpt = format!(
        "errors:\n{}\n... last lines:\n{}",
        errors[errors.len().saturating_sub(15)..].join("\n"),
        last.join("\n")
    );
    let mut cut = excerpt.len().min(6000);
    while !excerpt.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} (full log: {})", &excerpt[..cut], path.display())
}

fn log_tail(path: &Path, max_bytes: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    if text.len() <= max_bytes {
        return text;
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}
