//! How the client reaches one registry host: https with Mozilla's roots plus the host's own
//! CA bundle, or plain HTTP when the policy marks the host `insecure`; connect and request
//! timeouts; which redirects are followed; and the proxy, only when one is configured
//! (`serve --registry-proxy`): the proxy environment variables are ignored, so that where
//! registry requests go is decided by the configuration alone.
//!
//! TLS is rustls with the aws-lc-rs provider, configured here rather than by reqwest, so that
//! the trusted roots are exactly the compiled-in webpki roots plus what the policy adds (no
//! dependence on the container image's system store) and no second crypto provider is linked.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

/// Connection settings for one registry host, from the policy's `registries` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOptions {
    /// Host with optional port, as in image references (`registry.internal:5000`).
    pub host: String,
    /// Plain HTTP instead of https, for in-cluster registries.
    pub insecure: bool,
    /// PEM CA certificates trusted for this host, in addition to the webpki roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl HostOptions {
    /// https with the default roots.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            insecure: false,
            ca_pem: None,
        }
    }

    /// Plain HTTP for this host.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Also trust the CA certificates in `pem` for this host (tests, private PKIs).
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The policy's entry for a host, reading its `caFile` now so that a missing file is a
    /// configuration error at load time, not a failure at the first admission.
    pub fn from_policy(registry: &crate::policy::Registry) -> Result<Self, RegistryConfigError> {
        let ca_pem = registry
            .ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|error| RegistryConfigError::ReadCaFile {
                    host: registry.host.clone(),
                    path: path.clone(),
                    reason: error.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            host: registry.host.clone(),
            insecure: registry.insecure,
            ca_pem,
        })
    }
}

/// Why a registry client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryConfigError {
    #[error("cannot read CA file {path} for registry {host}: {reason}")]
    ReadCaFile {
        host: String,
        path: String,
        reason: String,
    },
    #[error("CA bundle for registry {host} is unusable: {reason}")]
    InvalidCa { host: String, reason: String },
    #[error("registry {host} is listed more than once in the registry settings")]
    DuplicateHost { host: String },
    #[error("registry settings name {host:?}, which is not a registry host: {reason}")]
    InvalidHost { host: String, reason: String },
    #[error("cannot build the HTTP client for registry {host}: {reason}")]
    Client { host: String, reason: String },
}

/// Timeouts, limits and the proxy shared by every host's HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct TransportLimits {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_redirects: usize,
    pub proxy: Option<Url>,
}

/// The proxy URL without its credentials, for logs and debug output.
pub(crate) fn redacted_proxy(proxy: &Url) -> String {
    let mut shown = proxy.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return format!("{shown} (with credentials)");
    }
    shown.to_string()
}

/// The HTTP client for one host, with its scheme.
#[derive(Debug, Clone)]
pub(crate) struct HostTransport {
    pub client: reqwest::Client,
    pub insecure: bool,
}

impl HostTransport {
    pub fn scheme(&self) -> &'static str {
        if self.insecure {
            "http"
        } else {
            "https"
        }
    }

    /// Builds the client for `host` (used in error messages only).
    pub fn build(
        host: &str,
        insecure: bool,
        ca_pem: Option<&[u8]>,
        limits: &TransportLimits,
    ) -> Result<Self, RegistryConfigError> {
        let extra_roots = match ca_pem {
            Some(pem) => parse_ca_bundle(host, pem)?,
            None => Vec::new(),
        };
        let tls = tls_config(host, &extra_roots)?;
        let client_error = |reason: String| RegistryConfigError::Client {
            host: host.to_owned(),
            reason,
        };
        // reqwest would pick up HTTPS_PROXY and friends on its own; only the configured
        // proxy is used.
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(proxy) = &limits.proxy {
            let proxy = reqwest::Proxy::all(proxy.clone()).map_err(|error| {
                client_error(format!("proxy {}: {error}", redacted_proxy(proxy)))
            })?;
            builder = builder.proxy(proxy);
        }
        let client = builder
            .tls_backend_preconfigured(tls)
            // A secure host's client cannot send plain HTTP at all, redirects and token realms
            // included; an insecure host's client still refuses https → http redirects.
            .https_only(!insecure)
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.request_timeout)
            .redirect(redirect_policy(limits.max_redirects))
            .user_agent(concat!("provenance-gate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| client_error(error_chain(&error)))?;
        Ok(Self { client, insecure })
    }
}

/// The certificates of a PEM bundle; a bundle without any certificate is an error, because
/// an operator who configured one expects it to be used.
fn parse_ca_bundle(
    host: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, RegistryConfigError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| RegistryConfigError::InvalidCa {
            host: host.to_owned(),
            reason: format!("not PEM: {error}"),
        })?;
    if certificates.is_empty() {
        return Err(RegistryConfigError::InvalidCa {
            host: host.to_owned(),
            reason: "no CERTIFICATE block found".to_owned(),
        });
    }
    Ok(certificates)
}

fn tls_config(
    host: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, RegistryConfigError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in extra_roots {
        roots
            .add(certificate.clone())
            .map_err(|error| RegistryConfigError::InvalidCa {
                host: host.to_owned(),
                reason: error.to_string(),
            })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| RegistryConfigError::Client {
            host: host.to_owned(),
            reason: error.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest is built without HTTP/2, so only offer what it speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What to do with one redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedirectDecision {
    Follow,
    Refuse(String),
}

/// Registries redirect blob downloads to storage hosts (S3, CDNs), so redirects are followed,
/// but only `max_redirects` of them, only to http(s), and never from https down to http:
/// content fetched over https must not be replaceable by someone on the network path.
/// `previous` holds the URLs already visited, the original request first.
pub(crate) fn decide_redirect(
    previous: &[Url],
    next: &Url,
    max_redirects: usize,
) -> RedirectDecision {
    if previous.len() > max_redirects {
        return RedirectDecision::Refuse(format!("more than {max_redirects} redirects"));
    }
    match next.scheme() {
        "https" => RedirectDecision::Follow,
        "http" if previous.iter().any(|url| url.scheme() == "https") => {
            RedirectDecision::Refuse(format!(
                "redirect from https to plain http ({}) refused",
                redact_query(next)
            ))
        }
        "http" => RedirectDecision::Follow,
        scheme => RedirectDecision::Refuse(format!("redirect to a {scheme}: URL refused")),
    }
}

fn redirect_policy(max_redirects: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match decide_redirect(attempt.previous(), attempt.url(), max_redirects) {
            RedirectDecision::Follow => attempt.follow(),
            RedirectDecision::Refuse(reason) => attempt.error(reason),
        }
    })
}

/// A URL for messages: storage redirects carry signed query strings that must not be logged.
pub(crate) fn redact_query(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// An error and its sources on one line: reqwest's top-level message alone ("error sending
/// request") does not say what went wrong.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URL")
    }

    #[test]
    fn follows_up_to_the_limit() {
        let start = url("https://registry.example/v2/a/blobs/sha256:1");
        let hop = url("https://storage.example/blob?sig=secret");
        assert_eq!(
            decide_redirect(std::slice::from_ref(&start), &hop, 3),
            RedirectDecision::Follow
        );
        let three = [start.clone(), hop.clone(), hop.clone()];
        assert_eq!(decide_redirect(&three, &hop, 3), RedirectDecision::Follow);
        let four = [start, hop.clone(), hop.clone(), hop.clone()];
        assert!(matches!(
            decide_redirect(&four, &hop, 3),
            RedirectDecision::Refuse(_)
        ));
    }

    #[test]
    fn refuses_https_to_http_and_keeps_signed_queries_out_of_messages() {
        let start = url("https://registry.example/v2/a/blobs/sha256:1");
        let downgrade = url("http://storage.example/blob?sig=secret");
        let RedirectDecision::Refuse(reason) = decide_redirect(&[start], &downgrade, 3) else {
            panic!("a downgrade must be refused");
        };
        assert!(reason.contains("https to plain http"));
        assert!(!reason.contains("secret"));
    }

    #[test]
    fn an_insecure_registry_may_redirect_over_http_and_up_to_https() {
        let start = url("http://registry.internal:5000/v2/a/blobs/sha256:1");
        assert_eq!(
            decide_redirect(
                std::slice::from_ref(&start),
                &url("http://minio.internal/b"),
                3
            ),
            RedirectDecision::Follow
        );
        assert_eq!(
            decide_redirect(&[start], &url("https://s3.example/b"), 3),
            RedirectDecision::Follow
        );
    }

    #[test]
    fn refuses_other_schemes() {
        let start = url("https://registry.example/v2/");
        assert!(matches!(
            decide_redirect(&[start], &url("file:///etc/passwd"), 3),
            RedirectDecision::Refuse(_)
        ));
    }

    /// A self-signed P-256 CA certificate, only ever parsed here.
    const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUU0OVlSI/tPHdvRb01vOv6c5GNCAwCgYIKoZIzj0EAwIw
IjEgMB4GA1UEAwwXcHJvdmVuYW5jZS1nYXRlIHRlc3QgQ0EwIBcNMjYxMTI4MDYx
ODM5WhgPMjEyNjExMDQwNjE4MzlaMCIxIDAeBgNVBAMMF3Byb3ZlbmFuY2UtZ2F0
ZSB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyDOtFixIktcaYNK3
BbGO4XPR6qbrNzv+6YyGQVkyhHbUQLd17CI54BgW2WxNCJ+3u55mQwt4SK0v8Drh
5UW9uqNTMFEwHQYDVR0OBBYEFAhnXCrkgrl7TNkfRR2BDezMLkGZMB8GA1UdIwQY
MBaAFAhnXCrkgrl7TNkfRR2BDezMLkGZMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSAAwRQIhAKsHJDCqGud5FVqpOkJhxihd6soPY9sWEw61goo8vEpTAiB6
ArDWBAGH8EPKWOmL6X95XRGIFg0hKVi21liSGAvs0g==
-----END CERTIFICATE-----\n";

    #[test]
    fn a_policy_ca_file_is_read_and_added_to_the_roots() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, TEST_CA_PEM).expect("write CA file");
        let entry = crate::policy::Registry {
            host: "registry.internal:5000".to_owned(),
            insecure: false,
            ca_file: Some(path.display().to_string()),
        };
        let options = [HostOptions::from_policy(&entry).expect("CA file read")];
        assert_eq!(options[0].ca_pem.as_deref(), Some(TEST_CA_PEM.as_bytes()));
        let roots = parse_ca_bundle(&entry.host, TEST_CA_PEM.as_bytes()).expect("one certificate");
        assert_eq!(roots.len(), 1);
        let transport = HostTransport::build(
            &entry.host,
            false,
            options[0].ca_pem.as_deref(),
            &test_limits(None),
        )
        .expect("client with the extra root");
        assert_eq!(transport.scheme(), "https");
    }

    #[test]
    fn a_missing_ca_file_is_a_configuration_error() {
        let entry = crate::policy::Registry {
            host: "registry.internal".to_owned(),
            insecure: false,
            ca_file: Some("does/not/exist.pem".to_owned()),
        };
        assert!(matches!(
            HostOptions::from_policy(&entry),
            Err(RegistryConfigError::ReadCaFile { .. })
        ));
    }

    #[test]
    fn ca_bundle_must_hold_a_certificate() {
        assert!(matches!(
            parse_ca_bundle("h", b"not pem at all"),
            Err(RegistryConfigError::InvalidCa { .. })
        ));
    }

    fn test_limits(proxy: Option<Url>) -> TransportLimits {
        TransportLimits {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            max_redirects: 3,
            proxy,
        }
    }

    #[test]
    fn builds_secure_and_insecure_transports() {
        let limits = test_limits(None);
        let secure = HostTransport::build("ghcr.io", false, None, &limits).expect("client");
        assert_eq!(secure.scheme(), "https");
        let insecure = HostTransport::build("r:5000", true, None, &limits).expect("client");
        assert_eq!(insecure.scheme(), "http");
    }

    #[test]
    fn proxy_credentials_are_not_shown() {
        let proxy = Url::parse("http://user:secret@proxy.internal:3128/").unwrap();
        let shown = redacted_proxy(&proxy);
        assert!(
            !shown.contains("secret") && !shown.contains("user"),
            "{shown}"
        );
        assert!(shown.contains("proxy.internal:3128"), "{shown}");
    }

    /// A one-shot HTTP server on loopback answering 200 to the first request; its request
    /// line comes back through the handle.
    async fn answer_once() -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).await.unwrap();
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&request).into_owned();
            text.lines().next().unwrap_or_default().to_owned()
        });
        (address, served)
    }

    /// Set by [`proxy_environment_is_ignored`] for the copy of itself it runs.
    const PROXY_CHILD: &str = "PROVENANCE_GATE_TEST_PROXY_CHILD";

    /// The proxy variables are process-wide, so the check runs in a child process of this
    /// test binary with them set (pointing at a port nobody listens on); the child asserts.
    #[test]
    fn proxy_environment_is_ignored() {
        if std::env::var_os(PROXY_CHILD).is_some() {
            return registry_requests_go_direct_and_through_the_configured_proxy();
        }
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_proxy = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "registry::transport::tests::proxy_environment_is_ignored",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROXY_CHILD, "1")
            .env("HTTPS_PROXY", &dead_proxy)
            .env("HTTP_PROXY", &dead_proxy)
            .env("ALL_PROXY", &dead_proxy)
            .env("https_proxy", &dead_proxy)
            .env("http_proxy", &dead_proxy)
            .env("all_proxy", &dead_proxy)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn registry_requests_go_direct_and_through_the_configured_proxy() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Direct, although the environment names a proxy.
            let (registry, served) = answer_once().await;
            let transport =
                HostTransport::build("registry", true, None, &test_limits(None)).unwrap();
            let response = transport
                .client
                .get(format!("http://{registry}/v2/"))
                .send()
                .await
                .expect("a direct request, not one through the environment's proxy");
            assert_eq!(response.status(), 200);
            assert_eq!(served.await.unwrap(), "GET /v2/ HTTP/1.1");

            // Through the configured proxy, which sees the absolute URL.
            let (proxy, proxied) = answer_once().await;
            let proxy = Url::parse(&format!("http://{proxy}")).unwrap();
            let transport =
                HostTransport::build("registry", true, None, &test_limits(Some(proxy))).unwrap();
            let response = transport
                .client
                .get("http://registry.invalid/v2/")
                .send()
                .await
                .expect("a request through the configured proxy");
            assert_eq!(response.status(), 200);
            assert_eq!(
                proxied.await.unwrap(),
                "GET http://registry.invalid/v2/ HTTP/1.1"
            );
        });
    }
}
