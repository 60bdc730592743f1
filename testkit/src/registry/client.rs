//! A small blocking OCI distribution client for the kit's pushes and the
//! tests' own checks: Basic and Bearer (token) auth as registries challenge
//! for it, a custom CA, plain HTTP.
//!
//! It is deliberately independent of the webhook's registry client (another
//! HTTP stack, written separately), so that the tests do not check that
//! code against itself. Blocking on purpose: `ureq` has no async runtime,
//! so tests may call it from inside `#[tokio::test]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest as _, Sha256};

use super::tls;
use super::Credentials;

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON; panics with the body in the message if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "expected a JSON body ({error}), got status {} and {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as (lossy) text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client for one registry, e.g. `http://127.0.0.1:5000`.
#[derive(Clone)]
pub struct RegistryClient {
    base_url: String,
    credentials: Option<Credentials>,
    ca_pem: Option<String>,
    agent: ureq::Agent,
    /// The Authorization header that last worked, per repository (or "" for
    /// requests outside one), so a push does not pay a challenge per request.
    authorizations: Arc<Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base_url", &self.base_url)
            .field(
                "username",
                &self.credentials.as_ref().map(|c| c.username.clone()),
            )
            .field("custom_ca", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for `base_url` (`http://HOST:PORT` or `https://HOST:PORT`),
    /// anonymous, trusting no CA (so HTTPS needs [`RegistryClient::with_ca_pem`]).
    pub fn new(base_url: &str) -> RegistryClient {
        let base_url = base_url.trim_end_matches('/').to_owned();
        RegistryClient {
            agent: agent(None),
            base_url,
            credentials: None,
            ca_pem: None,
            authorizations: Arc::default(),
        }
    }

    /// Trusts the CA certificates in `ca_pem` (and only those) for HTTPS.
    pub fn with_ca_pem(mut self, ca_pem: &str) -> RegistryClient {
        self.agent = agent(Some(ca_pem));
        self.ca_pem = Some(ca_pem.to_owned());
        self
    }

    /// Answers Basic challenges, and authenticates at token realms, as
    /// `username` / `password`.
    pub fn with_credentials(mut self, username: &str, password: &str) -> RegistryClient {
        self.credentials = Some(Credentials::new(username, password));
        self.authorizations = Arc::default();
        self
    }

    /// The same registry and CA, without credentials.
    pub fn anonymous(&self) -> RegistryClient {
        RegistryClient {
            credentials: None,
            authorizations: Arc::default(),
            ..self.clone()
        }
    }

    /// The same client, for another base URL (e.g. a proxy in front of the
    /// registry), with the same CA and credentials.
    pub fn with_base_url(&self, base_url: &str) -> RegistryClient {
        RegistryClient {
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorizations: Arc::default(),
            ..self.clone()
        }
    }

    /// `http://…` or `https://…`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `HOST:PORT`, as an image reference names the registry.
    pub fn host(&self) -> &str {
        self.base_url
            .split_once("://")
            .map_or(self.base_url.as_str(), |(_, host)| host)
    }

    /// The CA bundle this client trusts, if any.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The credentials this client presents, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// Sends a request to `path_or_url` (a path like `/v2/` is joined to the
    /// base URL), answering one auth challenge if the registry makes one.
    /// Any status is returned, never an error; a transport failure panics.
    pub fn request(
        &self,
        method: &str,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let url = self.url(path_or_url);
        let repository = repository_of(&url).unwrap_or_default();
        let cached = self
            .authorizations
            .lock()
            .expect("the authorization cache is never poisoned")
            .get(&repository)
            .cloned();
        let response = self.send(method, &url, headers, body, cached.as_deref());
        if response.status != 401 {
            return response;
        }
        let Some(authorization) = self.answer_challenge(&response) else {
            return response;
        };
        let retried = self.send(method, &url, headers, body, Some(&authorization));
        if retried.status != 401 {
            self.authorizations
                .lock()
                .expect("the authorization cache is never poisoned")
                .insert(repository, authorization);
        }
        retried
    }

    /// Sends a request exactly as given: no cached authorization, no
    /// challenge answered (to see what a registry says to a bare client).
    pub fn request_without_auth(
        &self,
        method: &str,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        self.send(method, &self.url(path_or_url), headers, body, None)
    }

    /// `GET /v2/` (the API version check).
    pub fn ping(&self) -> HttpResponse {
        self.request("GET", "/v2/", &[], &[])
    }

    /// Uploads `bytes` as a blob of `repository` (POST then PUT, the
    /// monolithic upload every registry supports) and returns its digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let started = self.request(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            &[],
        );
        assert_eq!(
            started.status,
            202,
            "starting a blob upload to {}/{repository} failed: {}",
            self.base_url,
            started.text()
        );
        let location = started
            .header("location")
            .expect("a 202 to an upload start names the upload's Location");
        let separator = if location.contains('?') { '&' } else { '?' };
        let finish = format!("{location}{separator}digest={digest}");
        let finished = self.request(
            "PUT",
            &finish,
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        assert_eq!(
            finished.status,
            201,
            "finishing the upload of blob {digest} to {}/{repository} failed: {}",
            self.base_url,
            finished.text()
        );
        digest
    }

    /// Pushes a manifest under `reference` (a tag or its digest); returns
    /// the response, whatever its status.
    pub fn try_push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> HttpResponse {
        self.request(
            "PUT",
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            bytes,
        )
    }

    /// Pushes a manifest under `reference` and returns its digest; panics
    /// unless the registry answers 201.
    pub fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let response = self.try_push_manifest(repository, reference, media_type, bytes);
        assert_eq!(
            response.status,
            201,
            "pushing manifest {reference} ({media_type}, {} bytes) to {}/{repository} failed: {}",
            bytes.len(),
            self.base_url,
            response.text()
        );
        sha256_digest(bytes)
    }

    /// `GET` a manifest, accepting the OCI and Docker manifest and index
    /// types (distribution 2.8 answers 404 to a GET without them).
    pub fn get_manifest(&self, repository: &str, reference: &str) -> HttpResponse {
        self.request(
            "GET",
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("Accept", MANIFEST_ACCEPT)],
            &[],
        )
    }

    /// `GET` a blob.
    pub fn get_blob(&self, repository: &str, digest: &str) -> HttpResponse {
        self.request("GET", &format!("/v2/{repository}/blobs/{digest}"), &[], &[])
    }

    /// `GET /v2/<repository>/referrers/<digest>` (OCI 1.1 referrers API).
    pub fn get_referrers(&self, repository: &str, digest: &str) -> HttpResponse {
        self.request(
            "GET",
            &format!("/v2/{repository}/referrers/{digest}"),
            &[("Accept", super::oci::OCI_INDEX)],
            &[],
        )
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{}", self.base_url, path_or_url)
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        authorization: Option<&str>,
    ) -> HttpResponse {
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(authorization) = authorization {
            builder = builder.header("Authorization", authorization);
        }
        let result = if body.is_empty() && method != "PUT" {
            self.agent.run(
                builder
                    .body(())
                    .expect("the kit builds valid HTTP requests"),
            )
        } else {
            self.agent.run(
                builder
                    .body(body.to_vec())
                    .expect("the kit builds valid HTTP requests"),
            )
        };
        let mut response = result
            .unwrap_or_else(|error| panic!("{method} {url} failed before any response: {error}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(MAX_RESPONSE_BYTES)
                .read_to_vec()
                .unwrap_or_else(|error| panic!("reading the body of {method} {url}: {error}"))
        };
        HttpResponse {
            status,
            headers,
            body,
        }
    }

    /// The Authorization header that answers the 401's challenge, if the
    /// client can answer it.
    fn answer_challenge(&self, response: &HttpResponse) -> Option<String> {
        let challenge = response.header("www-authenticate")?;
        let (scheme, parameters) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let credentials = self.credentials.as_ref()?;
            return Some(basic_authorization(credentials));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let parameters = challenge_parameters(parameters);
        let realm = parameters.get("realm")?;
        let mut query = Vec::new();
        if let Some(service) = parameters.get("service") {
            query.push(format!("service={}", percent_encode(service)));
        }
        if let Some(scope) = parameters.get("scope") {
            query.push(format!("scope={}", percent_encode(scope)));
        }
        let url = if query.is_empty() {
            realm.clone()
        } else {
            format!("{realm}?{}", query.join("&"))
        };
        let authorization = self.credentials.as_ref().map(basic_authorization);
        let token_response = self.send("GET", &url, &[], &[], authorization.as_deref());
        if token_response.status != 200 {
            return None;
        }
        let token = token_response.json();
        let token = token["token"]
            .as_str()
            .or_else(|| token["access_token"].as_str())?;
        Some(format!("Bearer {token}"))
    }
}

/// What the kit accepts when it fetches a manifest.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Larger responses are cut off: the kit never fetches anything near this.
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

fn agent(ca_pem: Option<&str>) -> ureq::Agent {
    let roots: Vec<ureq::tls::Certificate<'static>> = ca_pem
        .map(tls::certificates_from_pem)
        .unwrap_or_default()
        .into_iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let tls_config = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(tls::crypto_provider())
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls_config)
        .http_status_as_error(false)
        // Uploads and token requests are never redirected by the kit's
        // registries; a redirect would be a bug to see, not to follow.
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

fn basic_authorization(credentials: &Credentials) -> String {
    format!(
        "Basic {}",
        BASE64.encode(format!("{}:{}", credentials.username, credentials.password))
    )
}

/// `realm="…",service="…",scope="…"` → a map.
fn challenge_parameters(text: &str) -> HashMap<String, String> {
    let mut parameters = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after_key)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, after_value) = if let Some(quoted) = after_key.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or_default())
        } else {
            let end = after_key.find(',').unwrap_or(after_key.len());
            (&after_key[..end], &after_key[end..])
        };
        parameters.insert(key, value.to_owned());
        rest = after_value
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    parameters
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The repository a `/v2/<name>/…` URL addresses.
fn repository_of(url: &str) -> Option<String> {
    let path = url.split_once("/v2/")?.1;
    let path = path.split('?').next().unwrap_or_default();
    ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|marker| path.find(marker))
        .min()
        .map(|end| path[..end].to_owned())
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        super::token::hex_string(&Sha256::digest(bytes))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_are_parsed_as_registries_send_them() {
        let parameters = challenge_parameters(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:acme/api:pull,push""#,
        );
        assert_eq!(parameters["realm"], "https://auth.example/token");
        assert_eq!(parameters["service"], "registry.example");
        assert_eq!(parameters["scope"], "repository:acme/api:pull,push");
    }

    #[test]
    fn repository_is_found_in_nested_names() {
        assert_eq!(
            repository_of("http://h:1/v2/acme/team/api/blobs/uploads/?x=1").as_deref(),
            Some("acme/team/api")
        );
        assert_eq!(repository_of("http://h:1/v2/"), None);
    }
}
