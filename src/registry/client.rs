//! [`HttpRegistry`]: the [`Registry`] trait over the OCI distribution HTTP API. The OCI
//! operations live here (resolve a tag, fetch a manifest or a blob and check its digest,
//! list referrers by the API or the tag schema); every request goes through the bounded,
//! authenticated exchange of `exchange.rs`: only allowed registry hosts, a connect timeout,
//! one deadline per request covering headers and body, bodies cut off at their cap while
//! they arrive, at most a few redirects and never from https down to http, one answered
//! authentication challenge per request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};

use crate::check::reference::{Digest, ImageReference};

use super::credentials::DockerConfig;
use super::exchange::{AllowedRegistries, Exchanger, Target};
use super::manifest::{announced_digest, manifest_media_type, MANIFEST_ACCEPT};
use super::observer::{IgnoreRequests, RegistryOperation, RequestObserver};
use super::referrers::{
    matching_referrers, next_page, referrers_path, referrers_tag, NotAnIndex, MAX_REFERRER_PAGES,
};
use super::transport::{redacted_proxy, HostOptions, RegistryConfigError, TransportLimits};
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
    exchange: Exchanger,
    max_manifest_bytes: u64,
    max_referrers: usize,
}

impl fmt::Debug for HttpRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<&String> = self.exchange.hosts.keys().collect();
        hosts.sort();
        f.debug_struct("HttpRegistry")
            .field("allowed_registries", &self.exchange.allowed_registries)
            .field("hosts", &hosts)
            .field("request_timeout", &self.exchange.request_timeout)
            .field("max_manifest_bytes", &self.max_manifest_bytes)
            .field("max_referrers", &self.max_referrers)
            .finish_non_exhaustive()
    }
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
        let exchange = Exchanger::new(
            options.allowed_registries,
            &options.hosts,
            options.credentials,
            &limits,
            options.observer,
        )?;
        Ok(Self {
            exchange,
            max_manifest_bytes: options.max_manifest_bytes,
            max_referrers: options.max_referrers,
        })
    }

    async fn resolve_tag(&self, image: &ImageReference) -> Result<Digest, RegistryError> {
        if let Some(digest) = image.digest() {
            return Ok(digest.clone());
        }
        let target = self.exchange.target(image)?;
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
            .exchange
            .request(
                &target,
                RegistryOperation::Resolve,
                Method::HEAD,
                &path,
                Some(MANIFEST_ACCEPT),
                &what,
            )
            .await?;
        self.exchange.require_success(&target, &head, &what)?;
        if let Some(digest) = announced_digest(head.response.headers().get("docker-content-digest"))
        {
            return Ok(digest);
        }
        drop(head);

        // No usable Docker-Content-Digest: the digest is that of the bytes the registry
        // serves for the tag, which is what a pull by the pinned digest will get.
        let get = self
            .exchange
            .request(
                &target,
                RegistryOperation::Resolve,
                Method::GET,
                &path,
                Some(MANIFEST_ACCEPT),
                &what,
            )
            .await?;
        self.exchange.require_success(&target, &get, &what)?;
        let bytes = self
            .exchange
            .read_body(&target, get, self.max_manifest_bytes, &what)
            .await?;
        Ok(Digest::of_bytes(&bytes))
    }

    async fn get_manifest(
        &self,
        image: &ImageReference,
        digest: &Digest,
    ) -> Result<FetchedManifest, RegistryError> {
        let target = self.exchange.target(image)?;
        let what = format!("manifest {digest}");
        let exchange = self
            .exchange
            .request(
                &target,
                RegistryOperation::Manifest,
                Method::GET,
                &format!("manifests/{digest}"),
                Some(MANIFEST_ACCEPT),
                &what,
            )
            .await?;
        self.exchange.require_success(&target, &exchange, &what)?;
        let content_type = exchange
            .response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = self
            .exchange
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
        let target = self.exchange.target(image)?;
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
            .exchange
            .request(
                &target,
                RegistryOperation::Blob,
                Method::GET,
                &format!("blobs/{digest}"),
                None,
                &what,
            )
            .await?;
        self.exchange.require_success(&target, &exchange, &what)?;
        // The descriptor's size is at most `limit` here, so it is the tighter cap.
        let bytes = self
            .exchange
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
        let target = self.exchange.target(image)?;
        let what = format!("referrers of {digest}");
        let mut found = Vec::new();
        // Unfiltered on purpose: the API's filter is an exact match and we want a prefix.
        let mut page = referrers_path(digest, None);
        for page_number in 1..=MAX_REFERRER_PAGES {
            let exchange = self
                .exchange
                .request(
                    &target,
                    RegistryOperation::Referrers,
                    Method::GET,
                    &page,
                    Some(OCI_INDEX),
                    &what,
                )
                .await?;
            let status = exchange.response.status();
            if !status.is_success() {
                if page_number == 1 && referrers_api_missing(status) {
                    break;
                }
                return Err(self.exchange.status_error(&target, status, &what));
            }
            let link = exchange
                .response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let bytes = self
                .exchange
                .read_body(&target, exchange, self.max_manifest_bytes, &what)
                .await?;
            let remaining = self.max_referrers - found.len();
            match matching_referrers(&bytes, artifact_type_prefix, remaining) {
                Ok(on_page) => found.extend(on_page),
                // Not an index: a registry without the API answering its catch-all page
                // with 200.
                Err(_) if page_number == 1 => break,
                Err(NotAnIndex(reason)) => {
                    return Err(RegistryError::Malformed {
                        registry: target.registry.to_owned(),
                        what: format!("{what}, page {page_number}"),
                        reason,
                    })
                }
            }
            let next = match link {
                Some(link) => next_page(&link, target.api_host(), target.repository, digest)
                    .map_err(|error| RegistryError::Malformed {
                        registry: target.registry.to_owned(),
                        what: what.clone(),
                        reason: error.to_string(),
                    })?,
                None => None,
            };
            match next {
                Some(next) if found.len() < self.max_referrers => page = next,
                _ => return Ok(found),
            }
        }
        if page != referrers_path(digest, None) {
            // More pages than are read: a bundle listed beyond them is not found, so the
            // image is unproven (closed), never admitted on an unread page.
            return Ok(found);
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
            .exchange
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
        self.exchange.require_success(target, &exchange, &what)?;
        let bytes = self
            .exchange
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
    fn the_client_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HttpRegistry>();
        assert_send_sync::<Arc<HttpRegistry>>();
    }
}
