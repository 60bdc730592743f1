//! [`GithubClient`]: the attestations API over reqwest. One listing is at most
//! `max_pages` pages (`Link: rel="next"`, only on the API host), each at most
//! `max_listing_bytes` and answered within `request_timeout`; pages are revalidated with
//! their `ETag` (a `304 Not Modified` reuses the stored page and costs no rate limit); a
//! host that answers 403/429 with rate-limit headers (or `x-ratelimit-remaining: 0`) is not
//! asked again until its reset, at most `max_backoff` ahead.
//!
//! Redirects are never followed: a listing that moved is an error, so the only hosts
//! contacted are the policy's. The token goes to the API host only, never to a bundle host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, ETAG, IF_NONE_MATCH, LINK};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::{
    GithubApi, GithubAttestations, GithubError, GithubListing, GithubLocation, ListingFuture,
};
use crate::check::reference::Digest;
use crate::registry::{read_capped, HostTransport, TransportLimits};
use crate::verify::bundle_file::MAX_BUNDLE_BYTES;
use crate::verify::read_bundles;

/// The REST API version asked for (`X-GitHub-Api-Version`).
pub const GITHUB_API_VERSION: &str = "2022-11-28";
const GITHUB_MEDIA_TYPE: &str = "application/vnd.github+json";
/// A token file larger than this is not a token.
const MAX_TOKEN_BYTES: u64 = 16 * 1024;

/// Bounds of every exchange with GitHub.
#[derive(Debug, Clone)]
pub struct GithubOptions {
    pub connect_timeout: Duration,
    /// One page or one bundle, headers and body.
    pub request_timeout: Duration,
    /// One page of a listing (bundles inline: about 10 KiB each).
    pub max_listing_bytes: u64,
    /// Pages of one listing read at most.
    pub max_pages: usize,
    /// `per_page` asked for (GitHub allows up to 100).
    pub per_page: usize,
    /// Pages kept for ETag revalidation.
    pub max_cached_pages: usize,
    /// How long a 429 without rate-limit headers keeps the host unasked.
    pub default_backoff: Duration,
    /// The longest a host is left unasked, whatever its headers say.
    pub max_backoff: Duration,
}

impl Default for GithubOptions {
    fn default() -> Self {
        GithubOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            max_listing_bytes: 4 * 1024 * 1024,
            max_pages: 4,
            per_page: 30,
            max_cached_pages: 1024,
            default_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

/// The HTTP client and the policy settings it was built for.
struct Transport {
    insecure: bool,
    ca_file: Option<String>,
    client: reqwest::Client,
}

/// A page as last answered, for `If-None-Match`.
struct CachedPage {
    etag: String,
    page: Arc<Page>,
}

/// One page of a listing, as used.
#[derive(Debug, Default)]
struct Page {
    attestations: Vec<ListedAttestation>,
    next: Option<Url>,
}

#[derive(Debug, Default, Deserialize)]
struct PageBody {
    #[serde(default)]
    attestations: Vec<ListedAttestation>,
}

#[derive(Debug, Deserialize)]
struct ListedAttestation {
    #[serde(default)]
    bundle: Option<serde_json::Value>,
    #[serde(default)]
    bundle_url: Option<String>,
}

/// GitHub's attestations API over HTTP(S), for the hosts the policy in force names.
pub struct GithubClient {
    options: GithubOptions,
    transport: Mutex<Option<Arc<Transport>>>,
    pages: Mutex<HashMap<String, CachedPage>>,
    /// Hosts not to be asked before the time given.
    blocked: Mutex<HashMap<String, jiff::Timestamp>>,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GithubClient {
    pub fn new(options: GithubOptions) -> Self {
        GithubClient {
            options,
            transport: Mutex::new(None),
            pages: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// The client for the policy's settings, rebuilt only when they change.
    fn transport(&self, api: &GithubApi) -> Result<Arc<Transport>, GithubError> {
        let mut slot = locked(&self.transport);
        if let Some(transport) = slot.as_ref() {
            if transport.insecure == api.insecure && transport.ca_file == api.ca_file {
                return Ok(Arc::clone(transport));
            }
        }
        let config_error = |reason: String| GithubError::Config {
            host: api.api_host.clone(),
            reason,
        };
        let ca_pem = match &api.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|error| config_error(format!("caFile {path}: {error}")))?,
            ),
            None => None,
        };
        let limits = TransportLimits {
            connect_timeout: self.options.connect_timeout,
            request_timeout: self.options.request_timeout,
            // No redirects: every host contacted is one the policy names.
            max_redirects: 0,
            proxy: None,
        };
        let built = HostTransport::build(&api.api_host, api.insecure, ca_pem.as_deref(), &limits)
            .map_err(|error| config_error(error.to_string()))?;
        let transport = Arc::new(Transport {
            insecure: api.insecure,
            ca_file: api.ca_file.clone(),
            client: built.client,
        });
        *slot = Some(Arc::clone(&transport));
        Ok(transport)
    }

    fn refuse_if_blocked(&self, host: &str) -> Result<(), GithubError> {
        let mut blocked = locked(&self.blocked);
        if let Some(until) = blocked.get(host).copied() {
            if jiff::Timestamp::now() < until {
                return Err(GithubError::RateLimited {
                    host: host.to_owned(),
                    until,
                });
            }
            blocked.remove(host);
        }
        Ok(())
    }

    /// Reads the rate-limit headers: when the host says no more requests (now, or after
    /// this one), it is left unasked until its reset. Returns that time when set.
    fn note_rate_limit(
        &self,
        host: &str,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<jiff::Timestamp> {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.trim().parse::<i64>().ok())
        };
        let now = jiff::Timestamp::now();
        let exhausted = number("x-ratelimit-remaining") == Some(0);
        let refused = status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
        let until = if let (true, Some(seconds)) = (refused, number("retry-after")) {
            now.as_second().saturating_add(seconds.max(1))
        } else if exhausted {
            number("x-ratelimit-reset").unwrap_or_else(|| {
                now.as_second()
                    .saturating_add(self.options.default_backoff.as_secs() as i64)
            })
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            now.as_second()
                .saturating_add(self.options.default_backoff.as_secs() as i64)
        } else {
            return None;
        };
        let latest = now
            .as_second()
            .saturating_add(self.options.max_backoff.as_secs() as i64);
        let until = until.clamp(now.as_second() + 1, latest);
        let until = jiff::Timestamp::from_second(until).unwrap_or(now);
        tracing::warn!(host, %until, status = status.as_u16(), "GitHub API rate limit reached; asking the registry only until the reset");
        locked(&self.blocked).insert(host.to_owned(), until);
        Some(until)
    }

    fn remember_page(&self, url: &Url, etag: String, page: Arc<Page>) {
        let mut pages = locked(&self.pages);
        if pages.len() >= self.options.max_cached_pages && !pages.contains_key(url.as_str()) {
            // Any entry will do: a forgotten page costs one unconditional request.
            if let Some(evicted) = pages.keys().next().cloned() {
                pages.remove(&evicted);
            }
        }
        pages.insert(url.to_string(), CachedPage { etag, page });
    }

    async fn page(
        &self,
        http: &reqwest::Client,
        api: &GithubApi,
        url: &Url,
        token: Option<&str>,
    ) -> Result<Arc<Page>, GithubError> {
        let host = &api.api_host;
        self.refuse_if_blocked(host)?;
        let what = format!("attestations listing {}", url.path());
        let cached = locked(&self.pages)
            .get(url.as_str())
            .map(|cached| (cached.etag.clone(), Arc::clone(&cached.page)));
        let mut request = http
            .get(url.clone())
            .header(ACCEPT, GITHUB_MEDIA_TYPE)
            .header("X-GitHub-Api-Version", GITHUB_API_VERSION);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some((etag, _)) = &cached {
            request = request.header(IF_NONE_MATCH, etag.as_str());
        }
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        let response = self.send(request, host, &what, deadline).await?;
        let status = response.status();
        let blocked_until = self.note_rate_limit(host, status, response.headers());
        match status {
            StatusCode::NOT_MODIFIED => match cached {
                Some((_, page)) => Ok(page),
                None => Err(GithubError::Status {
                    host: host.clone(),
                    status: status.as_u16(),
                    what,
                }),
            },
            // GitHub answers 404 when nothing is stored for the subject.
            StatusCode::NOT_FOUND => Ok(Arc::new(Page::default())),
            StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(ETAG)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let next = next_link(response.headers(), url, api);
                let body = read_capped(response, self.options.max_listing_bytes, deadline)
                    .await
                    .map_err(|error| self.body_error(error, host, &what))?;
                let parsed: PageBody =
                    serde_json::from_slice(&body).map_err(|error| GithubError::Malformed {
                        host: host.clone(),
                        what: what.clone(),
                        reason: error.to_string(),
                    })?;
                let page = Arc::new(Page {
                    attestations: parsed.attestations,
                    next: next?,
                });
                if let Some(etag) = etag {
                    self.remember_page(url, etag, Arc::clone(&page));
                }
                Ok(page)
            }
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS if blocked_until.is_some() => {
                Err(GithubError::RateLimited {
                    host: host.clone(),
                    until: blocked_until.unwrap_or_else(jiff::Timestamp::now),
                })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(GithubError::Unauthorized {
                host: host.clone(),
                status: status.as_u16(),
                what,
            }),
            _ => Err(GithubError::Status {
                host: host.clone(),
                status: status.as_u16(),
                what,
            }),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        host: &str,
        what: &str,
        deadline: tokio::time::Instant,
    ) -> Result<reqwest::Response, GithubError> {
        match tokio::time::timeout_at(deadline, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) if !error.is_timeout() => Err(GithubError::Connection {
                host: host.to_owned(),
                reason: format!(
                    "{what}: {}",
                    crate::registry::error_chain(&error.without_url())
                ),
            }),
            _ => Err(self.timeout(host, what)),
        }
    }

    fn timeout(&self, host: &str, what: &str) -> GithubError {
        GithubError::Timeout {
            host: host.to_owned(),
            seconds: self.options.request_timeout.as_secs_f64().ceil() as u64,
            what: what.to_owned(),
        }
    }

    fn body_error(&self, error: crate::registry::BodyError, host: &str, what: &str) -> GithubError {
        match error {
            crate::registry::BodyError::TooLarge { limit } => GithubError::TooLarge {
                host: host.to_owned(),
                what: what.to_owned(),
                limit,
            },
            crate::registry::BodyError::Timeout => self.timeout(host, what),
            crate::registry::BodyError::Transport(reason) => GithubError::Connection {
                host: host.to_owned(),
                reason: format!("{what}: {reason}"),
            },
        }
    }

    /// A listed attestation's bundle: inline, or behind its `bundle_url` when that names a
    /// host the policy allows.
    async fn bundle_bytes(
        &self,
        http: &reqwest::Client,
        api: &GithubApi,
        listed: &ListedAttestation,
        token: Option<&str>,
    ) -> Result<Vec<u8>, BundleProblem> {
        if let Some(bundle) = &listed.bundle {
            if !bundle.is_null() {
                return serde_json::to_vec(bundle)
                    .map_err(|error| BundleProblem::Invalid(error.to_string()));
            }
        }
        let Some(text) = &listed.bundle_url else {
            return Err(BundleProblem::Invalid(
                "neither a bundle nor a bundle_url".to_owned(),
            ));
        };
        let url = Url::parse(text)
            .map_err(|error| BundleProblem::Invalid(format!("unusable bundle_url: {error}")))?;
        let host = allowed_bundle_host(&url, api).map_err(BundleProblem::Invalid)?;
        self.refuse_if_blocked(&host)
            .map_err(|error| BundleProblem::Unreachable(error.to_string()))?;
        let what = format!("bundle {}", url.path());
        let mut request = http.get(url.clone());
        // Bundle URLs may point at storage hosts: the token is GitHub's alone.
        if host == api.api_host {
            request = request
                .header(ACCEPT, GITHUB_MEDIA_TYPE)
                .header("X-GitHub-Api-Version", GITHUB_API_VERSION);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
        }
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        let response = self
            .send(request, &host, &what, deadline)
            .await
            .map_err(|error| BundleProblem::Unreachable(error.to_string()))?;
        let status = response.status();
        self.note_rate_limit(&host, status, response.headers());
        if status != StatusCode::OK {
            return Err(BundleProblem::Unreachable(format!(
                "{host} answered HTTP {} for {what}",
                status.as_u16()
            )));
        }
        let body = read_capped(response, MAX_BUNDLE_BYTES as u64, deadline)
            .await
            .map_err(|error| {
                BundleProblem::Unreachable(self.body_error(error, &host, &what).to_string())
            })?;
        decode_bundle_body(body).map_err(BundleProblem::Invalid)
    }
}

/// Why one listed attestation gave no bundle.
enum BundleProblem {
    /// Its host failed to serve it; it may next time.
    Unreachable(String),
    /// Not usable, and asking again will not change that.
    Invalid(String),
}

/// The host (`host[:port]`) of a `bundle_url`, when the policy names it and the scheme is the
/// one the policy uses for GitHub.
fn allowed_bundle_host(url: &Url, api: &GithubApi) -> Result<String, String> {
    let scheme = if api.insecure { "http" } else { "https" };
    let Some(name) = url.host_str() else {
        return Err("bundle_url names no host".to_owned());
    };
    let host = match url.port() {
        Some(port) => format!("{name}:{port}"),
        None => name.to_owned(),
    };
    if host != api.api_host && !api.bundle_hosts.contains(&host) {
        return Err(format!(
            "bundle_url host {host} is neither the API host nor one of github.bundleHosts; not followed"
        ));
    }
    if url.scheme() != scheme {
        return Err(format!(
            "bundle_url uses {}, not {scheme}; not followed",
            url.scheme()
        ));
    }
    Ok(host)
}

/// A bundle as a bundle URL serves it: JSON, or Snappy-compressed JSON (as GitHub stores
/// them), its decompressed size bounded before anything is decompressed.
fn decode_bundle_body(body: Vec<u8>) -> Result<Vec<u8>, String> {
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(body);
    }
    let length = snap::raw::decompress_len(&body)
        .map_err(|error| format!("bundle is neither JSON nor Snappy-compressed: {error}"))?;
    if length > MAX_BUNDLE_BYTES {
        return Err(format!(
            "bundle decompresses to {length} bytes, more than the {MAX_BUNDLE_BYTES} allowed"
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(&body)
        .map_err(|error| format!("bundle is not valid Snappy: {error}"))
}

/// The `rel="next"` page of a `Link` header, only on the host (and scheme) of `current`:
/// pagination never leads anywhere else.
fn next_link(
    headers: &HeaderMap,
    current: &Url,
    api: &GithubApi,
) -> Result<Option<Url>, GithubError> {
    let Some(value) = headers.get(LINK).and_then(|value| value.to_str().ok()) else {
        return Ok(None);
    };
    for part in value.split(',') {
        let mut pieces = part.split(';');
        let Some(target) = pieces.next() else {
            continue;
        };
        let is_next = pieces.any(|param| {
            let param = param.trim();
            param == "rel=\"next\"" || param == "rel=next"
        });
        if !is_next {
            continue;
        }
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        let url = current
            .join(target)
            .map_err(|error| GithubError::Malformed {
                host: api.api_host.clone(),
                what: "Link header".to_owned(),
                reason: error.to_string(),
            })?;
        if url.scheme() != current.scheme()
            || url.host_str() != current.host_str()
            || url.port_or_known_default() != current.port_or_known_default()
        {
            return Err(GithubError::Malformed {
                host: api.api_host.clone(),
                what: "Link header".to_owned(),
                reason: format!(
                    "next page on another host ({}) refused",
                    url.origin().ascii_serialization()
                ),
            });
        }
        return Ok(Some(url));
    }
    Ok(None)
}

/// The token in `api.token_file`, read on every listing so that a rotated Secret is used
/// at once; none when no file is configured.
fn read_token(api: &GithubApi) -> Result<Option<String>, GithubError> {
    let Some(path) = &api.token_file else {
        return Ok(None);
    };
    let failed = |reason: String| GithubError::Token {
        path: path.clone(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|error| failed(error.to_string()))?;
    if metadata.len() > MAX_TOKEN_BYTES {
        return Err(failed(format!(
            "{} bytes, more than the {MAX_TOKEN_BYTES} a token can be",
            metadata.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(failed(
            "not a token: empty, or more than one word".to_owned(),
        ));
    }
    Ok(Some(token.to_owned()))
}

impl GithubClient {
    async fn listing(
        &self,
        api: &GithubApi,
        location: &GithubLocation,
        digest: &Digest,
        max_bundles: usize,
    ) -> Result<GithubListing, GithubError> {
        let transport = self.transport(api)?;
        let token = read_token(api)?;
        let scheme = if api.insecure { "http" } else { "https" };
        let first = format!(
            "{scheme}://{}{}/{}/attestations/{digest}?per_page={}",
            api.api_host,
            api.path_prefix,
            location.api_path(),
            self.options.per_page
        );
        let first = Url::parse(&first).map_err(|error| GithubError::Config {
            host: api.api_host.clone(),
            reason: error.to_string(),
        })?;
        let mut listing = GithubListing {
            complete: true,
            url: first.to_string(),
            ..GithubListing::default()
        };
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            if pages == self.options.max_pages {
                listing.problems.push(format!(
                    "more than {} pages of attestations listed; the rest were not read",
                    self.options.max_pages
                ));
                break;
            }
            pages += 1;
            let page = self
                .page(&transport.client, api, &url, token.as_deref())
                .await?;
            for (position, listed) in page.attestations.iter().enumerate() {
                if listing.bundles.len() >= max_bundles {
                    listing.problems.push(format!(
                        "attestations past the first {max_bundles} bundles not examined"
                    ));
                    return Ok(listing);
                }
                let label = format!("{location} page {pages} attestation {}", position + 1);
                match self
                    .bundle_bytes(&transport.client, api, listed, token.as_deref())
                    .await
                {
                    Ok(bytes) => match read_bundles(&bytes) {
                        Ok(bundles) => {
                            let room = max_bundles - listing.bundles.len();
                            for mut bundle in bundles.into_iter().take(room) {
                                bundle.index = listing.bundles.len() + 1;
                                listing.bundles.push(bundle);
                            }
                        }
                        Err(error) => listing.problems.push(format!("{label}: {error}")),
                    },
                    Err(BundleProblem::Unreachable(reason)) => {
                        listing.complete = false;
                        listing.problems.push(format!("{label}: {reason}"));
                    }
                    Err(BundleProblem::Invalid(reason)) => {
                        listing.problems.push(format!("{label}: {reason}"));
                    }
                }
            }
            next = page.next.clone();
        }
        Ok(listing)
    }
}

impl GithubAttestations for GithubClient {
    fn attestations<'a>(
        &'a self,
        api: &'a GithubApi,
        location: &'a GithubLocation,
        digest: &'a Digest,
        max_bundles: usize,
    ) -> ListingFuture<'a> {
        Box::pin(self.listing(api, location, digest, max_bundles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(bundle_hosts: &[&str]) -> GithubApi {
        GithubApi {
            bundle_hosts: bundle_hosts.iter().map(|host| (*host).to_owned()).collect(),
            ..GithubApi::default()
        }
    }

    #[test]
    fn bundle_urls_are_followed_only_to_named_hosts_over_the_policys_scheme() {
        let api = api(&["tmaproduction.blob.core.windows.net"]);
        let cases = [
            ("https://api.github.com/bundles/1", Ok("api.github.com")),
            (
                "https://tmaproduction.blob.core.windows.net/x?sig=1",
                Ok("tmaproduction.blob.core.windows.net"),
            ),
            ("https://evil.example/bundle", Err("neither the API host")),
            (
                "https://api.github.com:8443/bundle",
                Err("neither the API host"),
            ),
            ("http://api.github.com/bundle", Err("uses http, not https")),
        ];
        for (url, expected) in cases {
            let found = allowed_bundle_host(&Url::parse(url).unwrap(), &api);
            match (found, expected) {
                (Ok(host), Ok(want)) => assert_eq!(host, want, "{url}"),
                (Err(reason), Err(fragment)) => {
                    assert!(reason.contains(fragment), "{url}: {reason}")
                }
                (found, _) => panic!("{url}: {found:?}"),
            }
        }
    }

    #[test]
    fn next_links_stay_on_the_api_host() {
        let current =
            Url::parse("https://api.github.com/repos/a/b/attestations/sha256:1?per_page=30")
                .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            "<https://api.github.com/repos/a/b/attestations/sha256:1?per_page=30&after=x>; rel=\"next\", <https://api.github.com/x>; rel=\"prev\""
                .parse()
                .unwrap(),
        );
        let next = next_link(&headers, &current, &GithubApi::default()).unwrap();
        assert_eq!(next.unwrap().query(), Some("per_page=30&after=x"));
        headers.insert(
            LINK,
            "<https://elsewhere.example/p2>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert!(next_link(&headers, &current, &GithubApi::default()).is_err());
        headers.insert(
            LINK,
            "<https://api.github.com/p0>; rel=\"prev\"".parse().unwrap(),
        );
        assert_eq!(
            next_link(&headers, &current, &GithubApi::default()).unwrap(),
            None
        );
    }

    #[test]
    fn snappy_bundles_are_bounded_before_decompression() {
        let json = br#"{"mediaType":"x"}"#.to_vec();
        assert_eq!(decode_bundle_body(json.clone()).unwrap(), json);
        let compressed = snap::raw::Encoder::new().compress_vec(&json).unwrap();
        assert_eq!(decode_bundle_body(compressed).unwrap(), json);
        let huge = snap::raw::Encoder::new()
            .compress_vec(&vec![b' '; MAX_BUNDLE_BYTES + 1])
            .unwrap();
        assert!(decode_bundle_body(huge).unwrap_err().contains("more than"));
        assert!(decode_bundle_body(b"\xff\xff\xff".to_vec()).is_err());
    }

    #[test]
    fn rate_limit_headers_block_the_host_until_the_reset_within_the_bound() {
        let client = GithubClient::new(GithubOptions::default());
        let now = jiff::Timestamp::now().as_second();
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        headers.insert(
            "x-ratelimit-reset",
            (now + 120).to_string().parse().unwrap(),
        );
        let until = client
            .note_rate_limit("api.github.com", StatusCode::FORBIDDEN, &headers)
            .expect("blocked");
        assert!((until.as_second() - (now + 120)).abs() <= 1);
        assert!(matches!(
            client.refuse_if_blocked("api.github.com"),
            Err(GithubError::RateLimited { .. })
        ));
        // A reset far ahead is cut to max_backoff.
        headers.insert(
            "x-ratelimit-reset",
            (now + 999_999).to_string().parse().unwrap(),
        );
        let until = client
            .note_rate_limit("h", StatusCode::OK, &headers)
            .expect("blocked");
        assert!(until.as_second() <= now + 3601);
        // A 403 without rate-limit headers is a refusal, not a rate limit.
        assert!(client
            .note_rate_limit("other", StatusCode::FORBIDDEN, &HeaderMap::new())
            .is_none());
        assert!(client.refuse_if_blocked("other").is_ok());
    }
}
