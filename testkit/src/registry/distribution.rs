//! CNCF distribution 2.8 (Debian's `docker-registry`) on a loopback port:
//! plain HTTP, or TLS with Basic (htpasswd) or token auth. No referrers API,
//! so attestations are found through the referrers tag schema.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use serde_json::json;

use super::client::RegistryClient;
use super::oci::TestRegistry;
use super::tls::TestCa;
use super::token::{hex_string, TokenAccess, TokenServer};
use super::Credentials;

/// The Debian package's binary name.
const BINARY_NAME: &str = "docker-registry";
/// Where Debian installs it, for a PATH without `/usr/bin`.
const DEBIAN_BINARY_PATH: &str = "/usr/bin/docker-registry";
/// How long a registry may take to listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// The `service` of token auth (the `aud` of the tokens).
pub const TOKEN_SERVICE: &str = "provenance-gate-testkit-registry";
/// The `iss` of the tokens.
pub const TOKEN_ISSUER: &str = "provenance-gate-testkit-token-issuer";
/// The realm of Basic auth.
pub const BASIC_REALM: &str = "provenance-gate-testkit";

/// How a registry authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistributionAuth {
    /// Anyone may pull and push.
    None,
    /// Basic auth against an htpasswd file (bcrypt) with one user.
    Basic,
    /// Bearer tokens from a token server the guard runs (HTTPS, same CA);
    /// `TokenAccess` says whether anonymous clients may pull.
    Token(TokenAccess),
}

/// A running `docker-registry serve`, killed (with its storage removed)
/// when dropped.
pub struct DistributionRegistry {
    address: SocketAddr,
    tls: bool,
    ca: Option<TestCa>,
    auth: DistributionAuth,
    credentials: Option<Credentials>,
    token_server: Option<TokenServer>,
    process: Option<Child>,
    /// Closing it tells the watchdog shell to kill the registry (see
    /// `WATCHDOG_SCRIPT`).
    watchdog_stdin: Option<ChildStdin>,
    registry_pid: u32,
    storage_root: PathBuf,
    log_path: PathBuf,
    _work_dir: tempfile::TempDir,
}

impl std::fmt::Debug for DistributionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributionRegistry")
            .field("base_url", &self.base_url())
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Runs the registry as a child of a shell that kills it when its stdin
/// closes, i.e. when the guard drops it or the test process dies in any
/// way, so no registry outlives its test. The registry's own exit ends the
/// shell too, which is how a failed start is noticed. Prints the
/// registry's PID first, on a pipe the guard then closes: so the registry's
/// own stdout (its access log) goes to the log file, or a Go program would
/// die of SIGPIPE at its first request.
const WATCHDOG_SCRIPT: &str = r#"
exec 3<&0
"$0" serve "$1" 3<&- </dev/null >&2 &
pid=$!
echo "$pid"
( read -r _ <&3; kill "$pid" 2>/dev/null ) &
wait "$pid"
"#;

impl DistributionRegistry {
    /// Plain HTTP, no auth.
    pub fn plain() -> DistributionRegistry {
        DistributionRegistry::start(false, DistributionAuth::None)
    }

    /// Plain HTTP, no auth, listening on `ip` instead of loopback: for a client in another
    /// network namespace (see [`crate::netns`]), which cannot reach this one's loopback.
    pub fn plain_on(ip: Ipv4Addr) -> DistributionRegistry {
        DistributionRegistry::start_on(ip, false, DistributionAuth::None)
    }

    /// TLS (a fresh CA, see [`TestRegistry::ca_pem`]) with Basic auth; the
    /// user is [`DistributionRegistry::credentials`].
    pub fn tls_with_basic_auth() -> DistributionRegistry {
        DistributionRegistry::start(true, DistributionAuth::Basic)
    }

    /// TLS with token auth; the token server's realm is HTTPS under the same
    /// CA, and [`DistributionRegistry::credentials`] may push.
    pub fn tls_with_token_auth(access: TokenAccess) -> DistributionRegistry {
        DistributionRegistry::start(true, DistributionAuth::Token(access))
    }

    /// Any combination; token auth requires TLS (its realm is HTTPS under
    /// the registry's CA).
    pub fn start(tls: bool, auth: DistributionAuth) -> DistributionRegistry {
        DistributionRegistry::start_on(Ipv4Addr::LOCALHOST, tls, auth)
    }

    fn start_on(ip: Ipv4Addr, tls: bool, auth: DistributionAuth) -> DistributionRegistry {
        assert!(
            tls || !matches!(auth, DistributionAuth::Token(_)),
            "token auth needs TLS in the kit: the realm shares the registry's CA"
        );
        let binary = find_binary();
        let work_dir = tempfile::Builder::new()
            .prefix("testkit-distribution-")
            .tempdir()
            .expect("a temporary directory for the registry");
        let storage_root = work_dir.path().join("storage");
        let ca = tls.then(TestCa::new);
        let credentials = (auth != DistributionAuth::None).then(random_credentials);
        let token_server = match auth {
            DistributionAuth::Token(access) => Some(TokenServer::start(
                ca.as_ref().expect("token auth implies TLS"),
                TOKEN_SERVICE,
                TOKEN_ISSUER,
                access,
                credentials.clone().expect("token auth has credentials"),
            )),
            _ => None,
        };

        let mut last_failure = String::new();
        // A port picked by binding :0 may be taken again before the registry
        // binds it; try a few.
        for _attempt in 0..5 {
            let address = SocketAddr::from((ip, free_port(ip)));
            let config_path = write_config(
                work_dir.path(),
                address,
                &storage_root,
                ca.as_ref(),
                auth,
                credentials.as_ref(),
                token_server.as_ref(),
            );
            let log_path = work_dir
                .path()
                .join(format!("registry-{}.log", address.port()));
            match spawn_and_wait(&binary, &config_path, address, &log_path) {
                Ok(spawned) => {
                    let registry = DistributionRegistry {
                        address,
                        tls,
                        ca,
                        auth,
                        credentials,
                        token_server,
                        process: Some(spawned.process),
                        watchdog_stdin: Some(spawned.watchdog_stdin),
                        registry_pid: spawned.registry_pid,
                        storage_root,
                        log_path,
                        _work_dir: work_dir,
                    };
                    registry.check_api_answers();
                    return registry;
                }
                Err(failure) => last_failure = failure,
            }
        }
        panic!("docker-registry did not start: {last_failure}");
    }

    /// The user allowed to pull and push (Basic and token auth).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The `.dockerconfigjson` document logging in at this registry with the token
    /// server's OAuth2 refresh token (`identitytoken`; token auth only).
    pub fn identity_token_docker_config_json(&self) -> Option<String> {
        let token = self.token_server.as_ref()?.identity_token();
        Some(json!({"auths": {self.host(): {"identitytoken": token}}}).to_string())
    }

    /// The token server (token auth only).
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// How clients authenticate.
    pub fn auth(&self) -> DistributionAuth {
        self.auth
    }

    /// A client with the CA but without credentials.
    pub fn anonymous_client(&self) -> RegistryClient {
        self.client().anonymous()
    }

    /// The registry's log so far (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET /v2/` must answer 200, or 401 with the challenge the auth mode
    /// implies: the registry is up and configured as intended.
    fn check_api_answers(&self) {
        let response = self
            .anonymous_client()
            .request_without_auth("GET", "/v2/", &[], &[]);
        let expected = match self.auth {
            DistributionAuth::None => 200,
            _ => 401,
        };
        assert_eq!(
            response.status,
            expected,
            "docker-registry at {} answered GET /v2/ with {} (expected {expected}); its log:\n{}",
            self.base_url(),
            response.status,
            self.log()
        );
    }
}

impl TestRegistry for DistributionRegistry {
    fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    fn host(&self) -> String {
        self.address.to_string()
    }

    fn ca_pem(&self) -> Option<String> {
        self.ca.as_ref().map(TestCa::certificate_pem)
    }

    fn client(&self) -> RegistryClient {
        let mut client = RegistryClient::new(&self.base_url());
        if let Some(ca_pem) = self.ca_pem() {
            client = client.with_ca_pem(&ca_pem);
        }
        if let Some(credentials) = &self.credentials {
            client = client.with_credentials(&credentials.username, &credentials.password);
        }
        client
    }

    fn has_referrers_api(&self) -> bool {
        false
    }

    fn replace_stored_blob(&self, digest: &str, bytes: &[u8]) {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("{digest:?} is not a sha256 digest"));
        // distribution's filesystem layout (registry/storage/paths.go).
        let path = self
            .storage_root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        assert!(
            path.is_file(),
            "blob {digest} is not stored in this registry"
        );
        std::fs::write(&path, bytes).expect("the registry's blob file is writable");
    }
}

impl Drop for DistributionRegistry {
    fn drop(&mut self) {
        // Closing the watchdog's stdin makes it kill the registry.
        drop(self.watchdog_stdin.take());
        let Some(mut process) = self.process.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still draining connections: end it for good.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.registry_pid.to_string())
            .status();
        let _ = process.kill();
        let _ = process.wait();
    }
}

/// `docker-registry` on PATH, else Debian's path; panics with how to
/// install it: the tests need a real registry and must not skip silently.
fn find_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|directory| directory.join(BINARY_NAME))
            .find(|candidate| candidate.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from(DEBIAN_BINARY_PATH)).filter(|path| path.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "`{BINARY_NAME}` (CNCF distribution 2.8, Debian package docker-registry) is not \
                 installed: run scripts/install-test-tools.sh (apt-get install -y docker-registry)"
            )
        })
}

/// A registry process that listens.
struct Spawned {
    process: Child,
    watchdog_stdin: ChildStdin,
    registry_pid: u32,
}

/// Starts the registry under the watchdog and waits until it listens on
/// `address`; on failure, ends it and returns why, with its log.
fn spawn_and_wait(
    binary: &Path,
    config_path: &Path,
    address: SocketAddr,
    log_path: &Path,
) -> Result<Spawned, String> {
    let log = std::fs::File::create(log_path).expect("the registry log file");
    let mut process = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg(binary)
        .arg(config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start sh to run {}: {error}", binary.display()));
    let mut pid_line = String::new();
    BufReader::new(process.stdout.take().expect("stdout is piped"))
        .read_line(&mut pid_line)
        .expect("the watchdog prints the registry's PID");
    let registry_pid: u32 = pid_line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the watchdog printed {pid_line:?}, not a PID"));
    let watchdog_stdin = process.stdin.take().expect("stdin is piped");
    let log = || std::fs::read_to_string(log_path).unwrap_or_default();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let failure = loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(Spawned {
                process,
                watchdog_stdin,
                registry_pid,
            });
        }
        if let Ok(Some(status)) = process.try_wait() {
            break format!(
                "it exited ({status}) before listening on {address}; its log:\n{}",
                log()
            );
        }
        if Instant::now() > deadline {
            break format!(
                "it did not listen on {address} within {STARTUP_TIMEOUT:?}; its log:\n{}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    drop(watchdog_stdin);
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(registry_pid.to_string())
        .status();
    let _ = process.wait();
    Err(failure)
}

fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|error| panic!("no free port on {ip}: {error}"))
        .port()
}

fn random_credentials() -> Credentials {
    let mut secret = [0u8; 12];
    OsRng.fill_bytes(&mut secret);
    Credentials::new("testkit-pusher", &hex_string(&secret))
}

/// Writes the registry's configuration (JSON, which YAML parsers read) and
/// the files it names; returns its path.
fn write_config(
    directory: &Path,
    address: SocketAddr,
    storage_root: &Path,
    ca: Option<&TestCa>,
    auth: DistributionAuth,
    credentials: Option<&Credentials>,
    token_server: Option<&TokenServer>,
) -> PathBuf {
    let mut secret = [0u8; 16];
    OsRng.fill_bytes(&mut secret);
    let mut http = json!({
        "addr": address.to_string(),
        "secret": hex_string(&secret),
        "draintimeout": "1s",
    });
    if let Some(ca) = ca {
        let identity = ca.issue_server_identity();
        let certificate = directory.join("server.crt");
        let key = directory.join("server.key");
        write_file(&certificate, identity.certificate_pem.as_bytes());
        write_file(&key, identity.private_key_pem.as_bytes());
        http["tls"] = json!({ "certificate": certificate, "key": key });
    }
    let auth = match auth {
        DistributionAuth::None => json!(null),
        DistributionAuth::Basic => {
            let credentials = credentials.expect("Basic auth has credentials");
            // The lowest bcrypt cost: the test wants a real htpasswd check,
            // not a slow one.
            let hash = bcrypt::hash(&credentials.password, 4).expect("bcrypt hashes a password");
            let htpasswd = directory.join("htpasswd");
            write_file(
                &htpasswd,
                format!("{}:{hash}\n", credentials.username).as_bytes(),
            );
            json!({ "htpasswd": { "realm": BASIC_REALM, "path": htpasswd } })
        }
        DistributionAuth::Token(_) => {
            let token_server = token_server.expect("token auth has a token server");
            let bundle = directory.join("token-root.crt");
            write_file(
                &bundle,
                ca.expect("token auth implies TLS")
                    .certificate_pem()
                    .as_bytes(),
            );
            json!({ "token": {
                "realm": token_server.realm(),
                "service": token_server.service(),
                "issuer": token_server.issuer(),
                "rootcertbundle": bundle,
            }})
        }
    };
    let mut config = json!({
        "version": "0.1",
        "log": { "level": "info", "formatter": "text", "accesslog": { "disabled": false } },
        "storage": {
            "filesystem": { "rootdirectory": storage_root },
            "delete": { "enabled": true },
            "maintenance": { "uploadpurging": { "enabled": false } },
        },
        "http": http,
    });
    if !auth.is_null() {
        config["auth"] = auth;
    }
    let path = directory.join(format!("config-{}.yml", address.port()));
    write_file(&path, config.to_string().as_bytes());
    path
}

fn write_file(path: &Path, contents: &[u8]) {
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(contents))
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}
