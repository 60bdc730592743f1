//! [`HttpRegistry`]: the [`Registry`] trait over the OCI distribution HTTP API.
//!
//! Every request is bounded: only allowed registry hosts, a connect timeout, one deadline per
//! request covering headers and body, bodies cut off at their cap while they arrive, at most
//! a few redirects and never from https down to http. Authentication answers one challenge
//! per request (anonymous or credentialed bearer token, or basic) and caches the result.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::check::reference::{canonical_registry, Digest, ImageReference};

use super::auth::{
    basic_authorization, basic_cache_lifetime, parse_token_response, pull_scope, select_challenge,
    token_request_url, AuthChallenge, AuthorizationCache,
};
use super::credentials::{Credentials, DockerConfig};
use super::limits::{declared_length_allowed, CappedBody};
use super::manifest::{announced_digest, manifest_media_type, MANIFEST_ACCEPT};
use super::observer::{IgnoreRequests, RegistryOperation, RequestObserver};
use super::referrers::{matching_referrers, referrers_path, referrers_tag, NotAnIndex};
use super::transport::{
    error_chain, redacted_proxy, HostOptions, HostTransport, RegistryConfigError, TransportLimits,
};
use super::{Descriptor, FetchedManifest, Registry, RegistryError, OCI_INDEX};

/// Time allowed for one request, from sending it to the last byte of its body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to open a TCP (and TLS) connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest manifest, index or referrers list read.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Most referrers of one digest returned (after filtering by artifact type).
pub const DEFAULT_MAX_REFERRERS: usize = 64;
/// Most redirects followed for one request (blob downloads go to storage hosts).
pub const DEFAULT_MAX_REDIRECTS: usize = 3;

/// Token endpoint answers are small JSON documents; a JWT is a few KiB.
const MAX_TOKEN_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Cached `Authorization` values, one per registry host and repository.
const MAX_CACHED_AUTHORIZATIONS: usize = 1024;

/// Which registries the client may contact at all. Image references come from pod specs, so
/// this is the last line that keeps a pod from making the webhook connect anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedRegistries {
    /// Only these registries, named as in image references (`ghcr.io`, `docker.io`,
    /// `registry.internal:5000`), compared in their canonical spelling.
    Only(BTreeSet<String>),
    /// Any registry: for the command line, where the user names the images.
    Any,
}

impl AllowedRegistries {
    /// Allows exactly `registries`.
    pub fn only<I, S>(registries: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        AllowedRegistries::Only(
            registries
                .into_iter()
                .map(|registry| spelled_canonically(registry.as_ref()))
                .collect(),
        )
    }

    /// Whether `registry` (as in image references) may be contacted.
    pub fn allows(&self, registry: &str) -> bool {
        match self {
            AllowedRegistries::Any => true,
            AllowedRegistries::Only(registries) => {
                registries.contains(&spelled_canonically(registry))
            }
        }
    }
}

/// A name that is no valid registry host keeps its lower-cased text, which no canonical
/// registry equals: it allows nothing.
fn spelled_canonically(registry: &str) -> String {
    canonical_registry(registry).unwrap_or_else(|_| registry.to_ascii_lowercase())
}

/// Everything [`HttpRegistry::new`] needs. [`RegistryOptions::new`] fills in the defaults.
#[derive(Clone)]
pub struct RegistryOptions {
    pub allowed_registries: AllowedRegistries,
    /// Per-host transport settings (plain HTTP, CA bundle); other hosts get https with the
    /// webpki roots.
    pub hosts: Vec<HostOptions>,
    pub credentials: DockerConfig,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_manifest_bytes: u64,
    pub max_referrers: usize,
    pub max_redirects: usize,
    pub observer: Arc<dyn RequestObserver>,
    /// Proxy for every registry request (http or https URL); `None`: direct connections.
    /// The `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` environment is never read.
    pub proxy: Option<reqwest::Url>,
}

impl RegistryOptions {
    /// Defaults: anonymous, https everywhere, 3 s connect and 5 s request timeouts, 4 MiB
    /// manifests, 64 referrers, 3 redirects, no observer.
    pub fn new(allowed_registries: AllowedRegistries) -> Self {
        Self {
            allowed_registries,
            hosts: Vec::new(),
            credentials: DockerConfig::empty(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_referrers: DEFAULT_MAX_REFERRERS,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            observer: Arc::new(IgnoreRequests),
            proxy: None,
        }
    }
}

impl fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("allowed_registries", &self.allowed_registries)
            .field("hosts", &self.hosts)
            .field("credentials", &self.credentials)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_manifest_bytes", &self.max_manifest_bytes)
            .field("max_referrers", &self.max_referrers)
            .field("max_redirects", &self.max_redirects)
            .field("proxy", &self.proxy.as_ref().map(redacted_proxy))
            .finish_non_exhaustive()
    }
}

/// The registry client. Cheap to share: put it in an `Arc`.
pub struct HttpRegistry {
    allowed_registries: AllowedRegistries,
    /// Transports of the hosts with settings, keyed by canonical registry name.
    hosts: HashMap<String, HostTransport>,
    default_transport: HostTransport,
    credentials: DockerConfig,
    authorizations: AuthorizationCache,
    observer: Arc<dyn RequestObserver>,
    request_timeout: Duration,
    max_manifest_bytes: u64,
    max_referrers: usize,
}

impl fmt::Debug for HttpRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<&String> = self.hosts.keys().collect();
        hosts.sort();
        f.debug_struct("HttpRegistry")
            .field("allowed_registries", &self.allowed_registries)
            .field("hosts", &hosts)
            .field("request_timeout", &self.request_timeout)
            .field("max_manifest_bytes", &self.max_manifest_bytes)
            .field("max_referrers", &self.max_referrers)
            .finish_non_exhaustive()
    }
}

/// One image's registry, repository and transport: what every request needs.
struct Target<'a> {
    /// The registry as named in references; used in errors and metrics.
    registry: &'a str,
    /// The host serving its API (differs for Docker Hub).
    api_host: &'a str,
    repository: &'a str,
    transport: &'a HostTransport,
}

/// A response with the deadline its body must arrive by.
struct Exchange {
    response: reqwest::Response,
    deadline: tokio::time::Instant,
}

impl HttpRegistry {
    /// Builds one HTTP client per configured host (each with its own CA and scheme) and one
    /// for all other hosts.
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryConfigError> {
        let limits = TransportLimits {
            connect_timeout: options.connect_timeout,
            request_timeout: options.request_timeout,
            max_redirects: options.max_redirects,
            proxy: options.proxy.clone(),
        };
        let mut hosts = HashMap::new();
        for host in &options.hosts {
            let key = canonical_registry(&host.host).map_err(|error| {
                RegistryConfigError::InvalidHost {
                    host: host.host.clone(),
                    reason: error.problem.to_owned(),
                }
            })?;
            if hosts.contains_key(&key) {
                return Err(RegistryConfigError::DuplicateHost {
                    host: host.host.clone(),
                });
            }
            let transport =
                HostTransport::build(&host.host, host.insecure, host.ca_pem.as_deref(), &limits)?;
            hosts.insert(key, transport);
        }
        let default_transport = HostTransport::build("(default)", false, None, &limits)?;
        Ok(Self {
            allowed_registries: options.allowed_registries,
            hosts,
            default_transport,
            credentials: options.credentials,
            authorizations: AuthorizationCache::new(MAX_CACHED_AUTHORIZATIONS),
            observer: options.observer,
            request_timeout: options.request_timeout,
            max_manifest_bytes: options.max_manifest_bytes,
            max_referrers: options.max_referrers,
        })
    }

    /// The target for `image`, or `NotAllowed` before anything touches the network.
    fn target<'a>(&'a self, image: &'a ImageReference) -> Result<Target<'a>, RegistryError> {
        let registry = image.registry();
        if !self.allowed_registries.allows(registry) {
            return Err(RegistryError::NotAllowed {
                registry: registry.to_owned(),
            });
        }
        // Both sides are canonical: `registry-1.docker.io` settings were keyed as `docker.io`.
        let transport = self.hosts.get(registry).unwrap_or(&self.default_transport);
        Ok(Target {
            registry,
            api_host: image.api_host(),
            repository: image.repository(),
            transport,
        })
    }

    async fn resolve_tag(&self, image: &ImageReference) -> Result<Digest, RegistryError> {
        if let Some(digest) = image.digest() {
            return Ok(digest.clone());
        }
        let target = self.target(image)?;
        let Some(tag) = image.tag() else {
            return Err(RegistryError::Malformed {
                registry: target.registry.to_owned(),
                what: format!("image reference {image}"),
                reason: "it names neither a tag nor a digest".to_owned(),
            });
        };
        let what = format!("tag {tag}");
        let path = format!("manifests/{tag}");

        let head = self
            .request(
                &target,
                RegistryOperation::Resolve,
                Method::HEAD,
                &path,
                Some(MANIFEST_ACCEPT),
                &what,
            )
            .await?;
        self.require_success(&target, &head, &what)?;
        if let Some(digest) = announced_digest(head.response.headers().get("docker-content-digest"))
        {
            return Ok(digest);
        }
        drop(head);

        // No usable Docker-Content-Digest: the digest is that of the bytes the registry
        // serves for the tag, which is what a pull by the pinned digest will get.
        let get = self
            .request(
                &target,
                RegistryOperation::Resolve,
                Method::GET,
                &path,
                Some(MANIFEST_ACCEPT),
                &what,
            )
            .await?;
        self.require_success(&target, &get, &what)?;
        let bytes = self
            .read_body(&target, get, self.max_manifest_bytes, &what)
            .await?;
        Ok(Digest::of_bytes(&bytes))
    }

    async fn get_manifest(
        &self,
        image: &ImageReference,
        digest: &Digest,
    ) -> Result<FetchedManifest, RegistryError> {
        let target = self.target(image)?;
        let what = format!("manifest {digest}");
        let exchange = self
            .request(
                &target,
                RegistryOperation::Manifest,
                Method::GET,
                &format!("manifests/{digest}"),
                Some(MANIFEST_ACCEPT),
                &what,
            )
            .await?;
        self.require_success(&target, &exchange, &what)?;
        let content_type = exchange
            .response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = self
            .read_body(&target, exchange, self.max_manifest_bytes, &what)
            .await?;
        check_digest(&target, &what, digest, &bytes)?;
        let media_type =
            manifest_media_type(&bytes, content_type.as_deref()).map_err(|reason| {
                RegistryError::Malformed {
                    registry: target.registry.to_owned(),
                    what: what.clone(),
                    reason,
                }
            })?;
        Ok(FetchedManifest {
            digest: digest.clone(),
            media_type,
            bytes,
        })
    }

    async fn get_blob(
        &self,
        image: &ImageReference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let target = self.target(image)?;
        let digest =
            Digest::parse(&descriptor.digest).map_err(|error| RegistryError::Malformed {
                registry: target.registry.to_owned(),
                what: "blob descriptor".to_owned(),
                reason: error.to_string(),
            })?;
        let what = format!("blob {digest}");
        // Refused before any request: the descriptor already says it is too big.
        if descriptor.size > limit {
            return Err(RegistryError::TooLarge {
                registry: target.registry.to_owned(),
                what,
                limit,
            });
        }
        let exchange = self
            .request(
                &target,
                RegistryOperation::Blob,
                Method::GET,
                &format!("blobs/{digest}"),
                None,
                &what,
            )
            .await?;
        self.require_success(&target, &exchange, &what)?;
        // The descriptor's size is at most `limit` here, so it is the tighter cap.
        let bytes = self
            .read_body(&target, exchange, descriptor.size, &what)
            .await?;
        check_digest(&target, &what, &digest, &bytes)?;
        if bytes.len() as u64 != descriptor.size {
            return Err(RegistryError::Malformed {
                registry: target.registry.to_owned(),
                what,
                reason: format!(
                    "it is {} bytes but its descriptor says {}",
                    bytes.len(),
                    descriptor.size
                ),
            });
        }
        Ok(bytes)
    }

    async fn list_referrers(
        &self,
        image: &ImageReference,
        digest: &Digest,
        artifact_type_prefix: &str,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let target = self.target(image)?;
        let what = format!("referrers of {digest}");
        // Unfiltered on purpose: the API's filter is an exact match and we want a prefix.
        let exchange = self
            .request(
                &target,
                RegistryOperation::Referrers,
                Method::GET,
                &referrers_path(digest, None),
                Some(OCI_INDEX),
                &what,
            )
            .await?;
        let status = exchange.response.status();
        if status.is_success() {
            let bytes = self
                .read_body(&target, exchange, self.max_manifest_bytes, &what)
                .await?;
            // Not an index: a registry without the API answering its catch-all page with 200.
            if let Ok(found) = matching_referrers(&bytes, artifact_type_prefix, self.max_referrers)
            {
                return Ok(found);
            }
        } else if referrers_api_missing(status) {
            drop(exchange);
        } else {
            return Err(self.status_error(&target, status, &what));
        }
        self.referrers_from_tag(&target, digest, artifact_type_prefix)
            .await
    }

    /// The referrers tag schema: an index under tag `sha256-<hex>`; no such tag, no referrers.
    async fn referrers_from_tag(
        &self,
        target: &Target<'_>,
        digest: &Digest,
        artifact_type_prefix: &str,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let tag = referrers_tag(digest);
        let what = format!("referrers tag {tag}");
        let exchange = self
            .request(
                target,
                RegistryOperation::ReferrersTag,
                Method::GET,
                &format!("manifests/{tag}"),
                Some(MANIFEST_ACCEPT),
                &what,
            )
            .await?;
        if exchange.response.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        self.require_success(target, &exchange, &what)?;
        let bytes = self
            .read_body(target, exchange, self.max_manifest_bytes, &what)
            .await?;
        matching_referrers(&bytes, artifact_type_prefix, self.max_referrers).map_err(
            |NotAnIndex(reason)| RegistryError::Malformed {
                registry: target.registry.to_owned(),
                what,
                reason,
            },
        )
    }

    /// Sends a request to `/v2/<repository>/<path>`, answering one authentication challenge:
    /// a cached `Authorization` is sent up front; on 401 the challenge is answered (token or
    /// basic) and the request repeated once. A 401 that cannot be answered is returned as is.
    async fn request(
        &self,
        target: &Target<'_>,
        operation: RegistryOperation,
        method: Method,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Exchange, RegistryError> {
        let url = format!(
            "{}://{}/v2/{}/{}",
            target.transport.scheme(),
            target.api_host,
            target.repository,
            path
        );
        let scope = pull_scope(target.repository);
        let mut authorization = self
            .authorizations
            .get(target.api_host, &scope, Instant::now());
        let mut challenge_answered = false;
        loop {
            let mut request = target.transport.client.request(method.clone(), &url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(authorization) = &authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            let exchange = self.execute(target, operation, request, what).await?;
            if exchange.response.status() != StatusCode::UNAUTHORIZED || challenge_answered {
                return Ok(exchange);
            }
            challenge_answered = true;
            if authorization.is_some() {
                // Expired or revoked early: forget it and follow the new challenge.
                self.authorizations.remove(target.api_host, &scope);
            }
            let challenge = select_challenge(
                exchange
                    .response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|value| value.to_str().ok()),
            );
            match self.answer_challenge(target, challenge, &scope).await? {
                Some(answer) => authorization = Some(answer),
                None => return Ok(exchange),
            }
        }
    }

    /// The `Authorization` value answering `challenge`, or `None` when there is none we can
    /// give (a Basic challenge without credentials, an unknown scheme).
    async fn answer_challenge(
        &self,
        target: &Target<'_>,
        challenge: Option<AuthChallenge>,
        scope: &str,
    ) -> Result<Option<String>, RegistryError> {
        let credentials = self
            .credentials
            .credentials_for(target.registry, target.repository);
        let (value, lifetime) = match (challenge, credentials) {
            (Some(AuthChallenge::Bearer { realm, service }), credentials) => {
                let issued = self
                    .fetch_token(target, &realm, service.as_deref(), scope, credentials)
                    .await?;
                (format!("Bearer {}", issued.token), issued.cache_for)
            }
            (Some(AuthChallenge::Basic), Some(credentials)) => {
                (basic_authorization(credentials), basic_cache_lifetime())
            }
            (Some(AuthChallenge::Basic), None) | (None, _) => return Ok(None),
        };
        if HeaderValue::from_str(&value).is_err() {
            return Err(RegistryError::Malformed {
                registry: target.registry.to_owned(),
                what: "token".to_owned(),
                reason: "the token contains characters not allowed in an HTTP header".to_owned(),
            });
        }
        self.authorizations.insert(
            target.api_host,
            scope,
            value.clone(),
            lifetime,
            Instant::now(),
        );
        Ok(Some(value))
    }

    async fn fetch_token(
        &self,
        target: &Target<'_>,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<super::auth::IssuedToken, RegistryError> {
        let url = token_request_url(realm, service, scope, target.transport.insecure).map_err(
            |reason| RegistryError::Malformed {
                registry: target.registry.to_owned(),
                what: "authentication challenge".to_owned(),
                reason,
            },
        )?;
        let what = format!("token from {}", url.host_str().unwrap_or("the token realm"));
        let mut request = target.transport.client.get(url);
        if let Some(credentials) = credentials {
            // Docker's token flow: the registry's realm gets the credentials, the registry
            // itself only ever sees the token.
            request = request.header(AUTHORIZATION, basic_authorization(credentials));
        }
        let exchange = self
            .execute(target, RegistryOperation::Token, request, &what)
            .await?;
        self.require_success(target, &exchange, &what)?;
        let bytes = self
            .read_body(target, exchange, MAX_TOKEN_RESPONSE_BYTES, &what)
            .await?;
        parse_token_response(&bytes).map_err(|reason| RegistryError::Malformed {
            registry: target.registry.to_owned(),
            what,
            reason,
        })
    }

    /// Sends one request within the request timeout and reports it to the observer.
    async fn execute(
        &self,
        target: &Target<'_>,
        operation: RegistryOperation,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Exchange, RegistryError> {
        // reqwest enforces the same timeout; this outer deadline also bounds the body read
        // and guarantees the error is a Timeout whatever layer notices first.
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let sent = tokio::time::timeout_at(deadline, request.send()).await;
        match sent {
            Ok(Ok(response)) => {
                self.observer.request_finished(
                    target.registry,
                    operation,
                    Some(response.status().as_u16()),
                );
                Ok(Exchange { response, deadline })
            }
            Ok(Err(error)) => {
                self.observer
                    .request_finished(target.registry, operation, None);
                Err(self.transport_error(target, error, what))
            }
            Err(_elapsed) => {
                self.observer
                    .request_finished(target.registry, operation, None);
                Err(self.timeout_error(target, what))
            }
        }
    }

    /// The body of `exchange`, refused as soon as it passes `cap` bytes.
    async fn read_body(
        &self,
        target: &Target<'_>,
        exchange: Exchange,
        cap: u64,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let Exchange {
            mut response,
            deadline,
        } = exchange;
        let too_large = || RegistryError::TooLarge {
            registry: target.registry.to_owned(),
            what: what.to_owned(),
            limit: cap,
        };
        if !declared_length_allowed(response.content_length(), cap) {
            return Err(too_large());
        }
        let mut body = CappedBody::new(cap, response.content_length());
        loop {
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Ok(Ok(Some(chunk))) => body.push(&chunk).map_err(|_| too_large())?,
                Ok(Ok(None)) => return Ok(body.into_bytes()),
                Ok(Err(error)) => return Err(self.transport_error(target, error, what)),
                Err(_elapsed) => return Err(self.timeout_error(target, what)),
            }
        }
    }

    fn require_success(
        &self,
        target: &Target<'_>,
        exchange: &Exchange,
        what: &str,
    ) -> Result<(), RegistryError> {
        let status = exchange.response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(self.status_error(target, status, what))
        }
    }

    fn status_error(&self, target: &Target<'_>, status: StatusCode, what: &str) -> RegistryError {
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                registry: target.registry.to_owned(),
                repository: target.repository.to_owned(),
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                registry: target.registry.to_owned(),
                repository: target.repository.to_owned(),
                what: what.to_owned(),
            },
            StatusCode::TOO_MANY_REQUESTS => RegistryError::RateLimited {
                registry: target.registry.to_owned(),
            },
            other => RegistryError::Status {
                registry: target.registry.to_owned(),
                status: other.as_u16(),
                what: what.to_owned(),
            },
        }
    }

    fn transport_error(
        &self,
        target: &Target<'_>,
        error: reqwest::Error,
        what: &str,
    ) -> RegistryError {
        if error.is_timeout() {
            return self.timeout_error(target, what);
        }
        // Without the URL: a redirect target may carry a signed query string.
        let error = error.without_url();
        RegistryError::Connection {
            registry: target.registry.to_owned(),
            reason: format!("{what}: {}", error_chain(&error)),
        }
    }

    fn timeout_error(&self, target: &Target<'_>, what: &str) -> RegistryError {
        RegistryError::Timeout {
            registry: target.registry.to_owned(),
            seconds: whole_seconds_rounded_up(self.request_timeout),
            what: what.to_owned(),
        }
    }
}

/// Registries without the referrers API answer 404 (as OCI specifies); some answer 405 or 501.
fn referrers_api_missing(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
    )
}

fn check_digest(
    target: &Target<'_>,
    what: &str,
    expected: &Digest,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    let actual = Digest::of_bytes(bytes);
    if &actual == expected {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch {
            registry: target.registry.to_owned(),
            what: what.to_owned(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

/// Seconds for messages: a 500 ms timeout reads as "1s", not "0s".
fn whole_seconds_rounded_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

impl Registry for HttpRegistry {
    async fn resolve(&self, image: &ImageReference) -> Result<Digest, RegistryError> {
        self.resolve_tag(image).await
    }

    async fn fetch_manifest(
        &self,
        image: &ImageReference,
        digest: &Digest,
    ) -> Result<FetchedManifest, RegistryError> {
        self.get_manifest(image, digest).await
    }

    async fn fetch_blob(
        &self,
        image: &ImageReference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        self.get_blob(image, descriptor, limit).await
    }

    async fn referrers(
        &self,
        image: &ImageReference,
        digest: &Digest,
        artifact_type_prefix: &str,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        self.list_referrers(image, digest, artifact_type_prefix)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(allowed: AllowedRegistries) -> HttpRegistry {
        HttpRegistry::new(RegistryOptions::new(allowed)).expect("client")
    }

    #[test]
    fn allow_list_is_case_insensitive_and_explicit() {
        let allowed = AllowedRegistries::only(["GHCR.io", "registry.internal:5000"]);
        assert!(allowed.allows("ghcr.io"));
        assert!(allowed.allows("ghcr.io:443"));
        assert!(!allowed.allows("ghcr.io:8443"));
        assert!(AllowedRegistries::only(["registry-1.docker.io"]).allows("docker.io"));
        assert!(allowed.allows("registry.internal:5000"));
        assert!(!allowed.allows("registry.internal"));
        assert!(!allowed.allows("evil.example"));
        assert!(AllowedRegistries::Any.allows("evil.example"));
    }

    #[tokio::test]
    async fn a_registry_outside_the_allow_list_is_refused_without_a_request() {
        let counter = Arc::new(crate::registry::RequestCounter::new());
        let mut options = RegistryOptions::new(AllowedRegistries::only(["ghcr.io"]));
        options.observer = counter.clone();
        let client = HttpRegistry::new(options).expect("client");
        let image = ImageReference::parse("evil.example/a/b:1").expect("reference");
        let error = client.resolve(&image).await.expect_err("not allowed");
        assert_eq!(
            error,
            RegistryError::NotAllowed {
                registry: "evil.example".to_owned()
            }
        );
        let digest = Digest::of_bytes(b"x");
        assert!(matches!(
            client.referrers(&image, &digest, "a").await,
            Err(RegistryError::NotAllowed { .. })
        ));
        assert_eq!(counter.total(), 0);
    }

    #[tokio::test]
    async fn a_pinned_reference_resolves_without_a_request_even_when_not_allowed() {
        let client = registry(AllowedRegistries::only(Vec::<String>::new()));
        let digest = Digest::of_bytes(b"manifest");
        let image = ImageReference::parse(&format!("ghcr.io/a/b:1@{digest}")).expect("reference");
        assert_eq!(client.resolve(&image).await, Ok(digest));
    }

    #[tokio::test]
    async fn an_oversized_descriptor_is_refused_before_any_request() {
        let counter = Arc::new(crate::registry::RequestCounter::new());
        let mut options = RegistryOptions::new(AllowedRegistries::Any);
        options.observer = counter.clone();
        let client = HttpRegistry::new(options).expect("client");
        let image = ImageReference::parse("unreachable.invalid/a/b:1").expect("reference");
        let descriptor = Descriptor {
            media_type: "application/octet-stream".to_owned(),
            digest: Digest::of_bytes(b"x").to_string(),
            size: 1001,
            artifact_type: None,
            annotations: Default::default(),
            platform: None,
        };
        assert!(matches!(
            client.fetch_blob(&image, &descriptor, 1000).await,
            Err(RegistryError::TooLarge { limit: 1000, .. })
        ));
        assert_eq!(counter.total(), 0);
    }

    fn client_with_hosts(hosts: Vec<HostOptions>) -> Result<HttpRegistry, RegistryConfigError> {
        let mut options = RegistryOptions::new(AllowedRegistries::Any);
        options.hosts = hosts;
        HttpRegistry::new(options)
    }

    #[test]
    fn duplicate_host_settings_are_refused() {
        for spellings in [["r:5000", "R:5000"], ["r.io", "r.io:443"]] {
            assert!(matches!(
                client_with_hosts(vec![
                    HostOptions::new(spellings[0]),
                    HostOptions::new(spellings[1]).insecure(),
                ]),
                Err(RegistryConfigError::DuplicateHost { .. })
            ));
        }
        assert!(matches!(
            client_with_hosts(vec![HostOptions::new("https://r.io")]),
            Err(RegistryConfigError::InvalidHost { .. })
        ));
    }

    #[test]
    fn timeout_seconds_round_up() {
        assert_eq!(whole_seconds_rounded_up(Duration::from_millis(500)), 1);
        assert_eq!(whole_seconds_rounded_up(Duration::from_secs(5)), 5);
    }

    #[test]
    fn the_client_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HttpRegistry>();
        assert_send_sync::<Arc<HttpRegistry>>();
    }
}
