//! [`GithubClient`]: the attestations API over reqwest. One listing is at most
//! `max_pages` pages (`Link: rel="next"`, only on the API host), each at most
//! `max_listing_bytes` and answered within `request_timeout`; pages are revalidated with
//! their `ETag` (a `304 Not Modified` reuses the stored page and costs no rate limit); a
//! host that answers 403/429 with rate-limit headers (or `x-ratelimit-remaining: 0`) is not
//! asked again until its reset, at most `max_backoff` ahead.
//!
//! Redirects are never followed: a listing that moved is an error, so the only hosts
//! contacted are the policy's. The token goes to the API host only, never to a bundle host.
//!
//! Credentials are a token file, or GitHub App credentials exchanged for an installation
//! token (`app.rs`) that is kept until shortly before it expires and renewed once on a 401.
//! Many digests of one owner in one review are asked for together (`bulk.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, ETAG, IF_NONE_MATCH, LINK};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::app::{AccessTokenBody, AppCredentials, InstallationToken, TokenCache};
use super::bulk::Prefetched;
use super::metrics::{Endpoint, GithubMetrics};
use super::{
    GithubApi, GithubAttestations, GithubError, GithubListing, GithubLocation, ListingFuture,
    PrefetchFuture,
};
use crate::check::reference::Digest;
use crate::policy::GithubAppFiles;
use crate::registry::{read_capped, HostTransport, TransportLimits};
use crate::reload::{fingerprint, LastSeen};
use crate::verify::bundle_file::MAX_BUNDLE_BYTES;
use crate::verify::read_bundles;

/// The REST API version asked for (`X-GitHub-Api-Version`).
pub const GITHUB_API_VERSION: &str = "2022-11-28";
const GITHUB_MEDIA_TYPE: &str = "application/vnd.github+json";
/// A token file larger than this is not a token.
const MAX_TOKEN_BYTES: u64 = 16 * 1024;
/// A `caFile` larger than this is not a CA bundle.
const MAX_CA_BYTES: u64 = 1024 * 1024;
/// An access-token answer larger than this is not one (GitHub's is under 2 KiB).
const MAX_ACCESS_TOKEN_BYTES: u64 = 64 * 1024;

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
    /// Uncached digests of one owner in one review from which the bulk endpoint is used
    /// instead of one listing per digest.
    pub bulk_min_digests: usize,
    /// Digests per bulk request at most; more are split over several requests.
    pub bulk_max_digests: usize,
    /// Bulk requests of one prefetch at most; digests beyond are listed one by one.
    pub bulk_max_requests: usize,
    /// How long a bulk answer stands in for the per-digest listings that follow it.
    pub bulk_ttl: Duration,
    /// Digests kept from bulk answers at most.
    pub bulk_max_entries: usize,
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
            bulk_min_digests: 3,
            bulk_max_digests: 32,
            bulk_max_requests: 4,
            bulk_ttl: Duration::from_secs(30),
            bulk_max_entries: 1024,
        }
    }
}

/// The HTTP client and the policy settings (and CA content) it was built for.
struct Transport {
    insecure: bool,
    ca_file: Option<String>,
    ca_fingerprint: Option<[u8; 32]>,
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

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ListedAttestation {
    #[serde(default)]
    pub bundle: Option<serde_json::Value>,
    #[serde(default)]
    pub bundle_url: Option<String>,
    #[serde(default)]
    pub repository_id: Option<u64>,
}

/// GitHub's attestations API over HTTP(S), for the hosts the policy in force names.
pub struct GithubClient {
    options: GithubOptions,
    transport: Mutex<Option<Arc<Transport>>>,
    pages: Mutex<HashMap<String, CachedPage>>,
    /// Hosts not to be asked before the time given.
    blocked: Mutex<HashMap<String, jiff::Timestamp>>,
    app_tokens: TokenCache,
    /// The last `caFile` content refused, so that it is reported once.
    refused_ca: LastSeen,
    pub(super) prefetched: Prefetched,
    metrics: GithubMetrics,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

pub(super) fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GithubClient {
    pub fn new(options: GithubOptions) -> Self {
        GithubClient {
            prefetched: Prefetched::new(options.bulk_max_entries, options.bulk_ttl),
            options,
            transport: Mutex::new(None),
            pages: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashMap::new()),
            app_tokens: TokenCache::default(),
            refused_ca: LastSeen::new([0; 32]),
            metrics: GithubMetrics::default(),
        }
    }

    pub(super) fn options(&self) -> &GithubOptions {
        &self.options
    }

    /// The HTTP client for `api`'s settings (see [`Self::transport`]).
    pub(super) fn transport_for(&self, api: &GithubApi) -> Result<reqwest::Client, GithubError> {
        self.transport(api)
            .map(|transport| transport.client.clone())
    }

    /// Counts requests, rate-limit budgets and fallbacks into `metrics`.
    pub fn with_metrics(mut self, metrics: GithubMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The client for the policy's settings and the `caFile`'s content, rebuilt only when
    /// either changes (a rotated CA Secret keeps its path). A changed content that does not
    /// build leaves the last good client in force, reported once, as `reload.rs` does for
    /// other files.
    fn transport(&self, api: &GithubApi) -> Result<Arc<Transport>, GithubError> {
        let config_error = |reason: String| GithubError::Config {
            host: api.api_host.clone(),
            reason,
        };
        let mut slot = locked(&self.transport);
        let same_settings = |transport: &Transport| {
            transport.insecure == api.insecure && transport.ca_file == api.ca_file
        };
        let ca_pem = match &api.ca_file {
            Some(path) => match super::app::read_bounded(path, MAX_CA_BYTES) {
                Ok(pem) => Some(pem),
                Err(reason) => {
                    let error = config_error(format!("caFile {path}: {reason}"));
                    return match slot.as_ref().filter(|transport| same_settings(transport)) {
                        Some(last_good) => {
                            self.report_refused_ca(reason.as_bytes(), &error);
                            Ok(Arc::clone(last_good))
                        }
                        None => Err(error),
                    };
                }
            },
            None => None,
        };
        let ca_fingerprint = ca_pem.as_deref().map(|pem| fingerprint(&[pem]));
        if let Some(transport) = slot.as_ref() {
            if same_settings(transport) && transport.ca_fingerprint == ca_fingerprint {
                return Ok(Arc::clone(transport));
            }
        }
        let limits = TransportLimits {
            connect_timeout: self.options.connect_timeout,
            request_timeout: self.options.request_timeout,
            // No redirects: every host contacted is one the policy names.
            max_redirects: 0,
            proxy: None,
        };
        let built =
            match HostTransport::build(&api.api_host, api.insecure, ca_pem.as_deref(), &limits) {
                Ok(built) => built,
                Err(error) => {
                    let error = config_error(error.to_string());
                    return match slot.as_ref().filter(|transport| same_settings(transport)) {
                        Some(last_good) => {
                            self.report_refused_ca(ca_pem.as_deref().unwrap_or_default(), &error);
                            Ok(Arc::clone(last_good))
                        }
                        None => Err(error),
                    };
                }
            };
        if slot.is_some() {
            tracing::info!(host = %api.api_host, "GitHub API client rebuilt for new TLS settings or CA content");
        }
        let transport = Arc::new(Transport {
            insecure: api.insecure,
            ca_file: api.ca_file.clone(),
            ca_fingerprint,
            client: built.client,
        });
        *slot = Some(Arc::clone(&transport));
        Ok(transport)
    }

    fn report_refused_ca(&self, content: &[u8], error: &GithubError) {
        if self.refused_ca.changed(fingerprint(&[content])) {
            tracing::error!(%error, "new GitHub caFile refused; the last good one stays in force");
        }
    }

    pub(super) fn refuse_if_blocked(&self, host: &str) -> Result<(), GithubError> {
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
    pub(super) fn note_rate_limit(
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
        let remaining = number("x-ratelimit-remaining");
        if let Some(remaining) = remaining {
            self.metrics.rate_limit_remaining(host, remaining);
        }
        let exhausted = remaining == Some(0);
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
        let what = format!("attestations listing {}", url.path());
        let cached = locked(&self.pages)
            .get(url.as_str())
            .map(|cached| (cached.etag.clone(), Arc::clone(&cached.page)));
        let mut request = api_request(http.get(url.clone()), token);
        if let Some((etag, _)) = &cached {
            request = request.header(IF_NONE_MATCH, etag.as_str());
        }
        let (response, blocked_until, deadline) = self
            .api_exchange(request, Endpoint::Listing, host, &what)
            .await?;
        let status = response.status();
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
            _ => Err(refusal(host, status, blocked_until, what)),
        }
    }

    /// One request to the API host within `request_timeout`, its rate-limit headers read:
    /// the answer, until when the host is now left alone (if it is), and the deadline for
    /// reading the body.
    pub(super) async fn api_exchange(
        &self,
        request: reqwest::RequestBuilder,
        endpoint: Endpoint,
        host: &str,
        what: &str,
    ) -> Result<
        (
            reqwest::Response,
            Option<jiff::Timestamp>,
            tokio::time::Instant,
        ),
        GithubError,
    > {
        self.refuse_if_blocked(host)?;
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        let response = self.send(request, endpoint, host, what, deadline).await?;
        let blocked_until = self.note_rate_limit(host, response.status(), response.headers());
        Ok((response, blocked_until, deadline))
    }

    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        endpoint: Endpoint,
        host: &str,
        what: &str,
        deadline: tokio::time::Instant,
    ) -> Result<reqwest::Response, GithubError> {
        let answer = tokio::time::timeout_at(deadline, request.send()).await;
        let status = match &answer {
            Ok(Ok(response)) => Some(response.status().as_u16()),
            _ => None,
        };
        self.metrics.request_finished(endpoint, status);
        match answer {
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

    pub(super) fn body_error(
        &self,
        error: crate::registry::BodyError,
        host: &str,
        what: &str,
    ) -> GithubError {
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
            request = api_request(request, token);
        }
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        let response = self
            .send(request, Endpoint::Bundle, &host, &what, deadline)
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

/// `request` as GitHub's REST API wants it: its media type and version, and the credential
/// when there is one.
pub(super) fn api_request(
    request: reqwest::RequestBuilder,
    credential: Option<&str>,
) -> reqwest::RequestBuilder {
    let request = request
        .header(ACCEPT, GITHUB_MEDIA_TYPE)
        .header("X-GitHub-Api-Version", GITHUB_API_VERSION);
    match credential {
        Some(credential) => request.bearer_auth(credential),
        None => request,
    }
}

/// The error for an answer that is neither the resource nor "none stored": a rate limit
/// (when the headers said so), a refused credential, or another status.
pub(super) fn refusal(
    host: &str,
    status: StatusCode,
    blocked_until: Option<jiff::Timestamp>,
    what: String,
) -> GithubError {
    match status {
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS if blocked_until.is_some() => {
            GithubError::RateLimited {
                host: host.to_owned(),
                until: blocked_until.unwrap_or_else(jiff::Timestamp::now),
            }
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => GithubError::Unauthorized {
            host: host.to_owned(),
            status: status.as_u16(),
            what,
        },
        _ => GithubError::Status {
            host: host.to_owned(),
            status: status.as_u16(),
            what,
        },
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
pub(super) fn next_link(
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
    let bytes = super::app::read_bounded(path, MAX_TOKEN_BYTES)
        .map_err(|reason| failed(format!("{reason} (a token is at most that)")))?;
    let text = String::from_utf8(bytes).map_err(|_| failed("not UTF-8 text".to_owned()))?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(failed(
            "not a token: empty, or more than one word".to_owned(),
        ));
    }
    Ok(Some(token.to_owned()))
}

/// `{scheme}://{apiHost}{pathPrefix}/{path}`.
pub(super) fn api_url(api: &GithubApi, path: &str) -> Result<Url, GithubError> {
    let scheme = if api.insecure { "http" } else { "https" };
    Url::parse(&format!(
        "{scheme}://{}{}/{path}",
        api.api_host, api.path_prefix
    ))
    .map_err(|error| GithubError::Config {
        host: api.api_host.clone(),
        reason: error.to_string(),
    })
}

impl GithubClient {
    /// The token to send to the API host: the token file's, an installation token of the
    /// App's credentials, or none.
    pub(super) async fn credential(
        &self,
        http: &reqwest::Client,
        api: &GithubApi,
    ) -> Result<Option<String>, GithubError> {
        match &api.app {
            None => read_token(api),
            Some(files) => self.installation_token(http, api, files).await.map(Some),
        }
    }

    /// Forgets an installation token GitHub refused, so that the next credential is a new
    /// one; whether there is anything to renew (App credentials are configured).
    pub(super) fn forget_refused(&self, api: &GithubApi, token: Option<&str>) -> bool {
        if api.app.is_none() {
            return false;
        }
        if let Some(token) = token {
            self.app_tokens.forget(token);
        }
        true
    }

    /// An installation token for the App's credentials: the one held while it is not due for
    /// renewal, else one exchange (shared by concurrent callers; a failure is answered from
    /// memory for a few seconds rather than exchanged again).
    async fn installation_token(
        &self,
        http: &reqwest::Client,
        api: &GithubApi,
        files: &GithubAppFiles,
    ) -> Result<String, GithubError> {
        let credentials = AppCredentials::read(api, files).map_err(|error| GithubError::App {
            host: api.api_host.clone(),
            reason: error.to_string(),
        })?;
        let identity = credentials.identity;
        if let Some(token) = self.app_tokens.usable(&identity, jiff::Timestamp::now()) {
            return Ok(token);
        }
        let _exchanging = self.app_tokens.exchanging.lock().await;
        // Another listing may have exchanged while this one waited.
        if let Some(token) = self.app_tokens.usable(&identity, jiff::Timestamp::now()) {
            return Ok(token);
        }
        if let Some(error) = self.app_tokens.recent_failure(&identity) {
            return Err(error);
        }
        match self.exchange(http, api, &credentials).await {
            Ok(token) => {
                let text = token.token.clone();
                self.app_tokens.store(token);
                Ok(text)
            }
            Err(error) => {
                tracing::warn!(%error, "GitHub App installation token not obtained");
                self.app_tokens.failed(identity, error.clone());
                Err(error)
            }
        }
    }

    /// `POST /app/installations/{id}/access_tokens` with the App's JWT.
    async fn exchange(
        &self,
        http: &reqwest::Client,
        api: &GithubApi,
        credentials: &AppCredentials,
    ) -> Result<InstallationToken, GithubError> {
        let host = &api.api_host;
        let app_error = |reason: String| GithubError::App {
            host: host.clone(),
            reason,
        };
        let jwt = credentials
            .jwt(jiff::Timestamp::now().as_second())
            .map_err(|error| app_error(error.to_string()))?;
        let url = api_url(
            api,
            &format!(
                "app/installations/{}/access_tokens",
                credentials.installation_id
            ),
        )?;
        let what = format!(
            "installation token of installation {}",
            credentials.installation_id
        );
        let request = api_request(http.post(url), Some(&jwt));
        let (response, blocked_until, deadline) = self
            .api_exchange(request, Endpoint::AccessToken, host, &what)
            .await?;
        let status = response.status();
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                let body = read_capped(response, MAX_ACCESS_TOKEN_BYTES, deadline)
                    .await
                    .map_err(|error| self.body_error(error, host, &what))?;
                let malformed = |reason: String| GithubError::Malformed {
                    host: host.clone(),
                    what: what.clone(),
                    reason,
                };
                let parsed: AccessTokenBody = serde_json::from_slice(&body)
                    .map_err(|error| malformed(error.to_string()))?;
                InstallationToken::from_answer(credentials.identity, parsed, jiff::Timestamp::now())
                    .map_err(malformed)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
                if blocked_until.is_none() =>
            {
                Err(app_error(format!(
                    "GitHub refused the App's JWT (HTTP {}) for the {what}: check the App ID, the private key and the installation ID, and that the clock is right",
                    status.as_u16()
                )))
            }
            _ => Err(refusal(host, status, blocked_until, what)),
        }
    }

    /// One page, with one renewal of a refused installation token.
    async fn page_with_credential(
        &self,
        http: &reqwest::Client,
        api: &GithubApi,
        url: &Url,
        token: &mut Option<String>,
    ) -> Result<Arc<Page>, GithubError> {
        match self.page(http, api, url, token.as_deref()).await {
            Err(GithubError::Unauthorized { status: 401, .. })
                if self.forget_refused(api, token.as_deref()) =>
            {
                *token = self.credential(http, api).await?;
                self.page(http, api, url, token.as_deref()).await
            }
            answer => answer,
        }
    }

    /// The bundles of `attested`, read into `listing` up to `max_bundles`; false when the
    /// budget was reached (the rest not examined).
    async fn read_listed(
        &self,
        (http, api, token): (&reqwest::Client, &GithubApi, Option<&str>),
        attested: &[ListedAttestation],
        label: &str,
        listing: &mut GithubListing,
        max_bundles: usize,
    ) -> bool {
        for (position, listed) in attested.iter().enumerate() {
            if listing.bundles.len() >= max_bundles {
                listing.problems.push(format!(
                    "attestations past the first {max_bundles} bundles not examined"
                ));
                return false;
            }
            let label = format!("{label} attestation {}", position + 1);
            match self.bundle_bytes(http, api, listed, token).await {
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
        true
    }

    async fn listing(
        &self,
        api: &GithubApi,
        location: &GithubLocation,
        digest: &Digest,
        max_bundles: usize,
    ) -> Result<GithubListing, GithubError> {
        let transport = self.transport(api)?;
        let mut token = self.credential(&transport.client, api).await?;
        if let Some((url, attested)) = self.prefetched.listed(api, location, digest) {
            let mut listing = GithubListing {
                complete: true,
                url,
                ..GithubListing::default()
            };
            let label = format!("{location} (bulk)");
            self.read_listed(
                (&transport.client, api, token.as_deref()),
                &attested,
                &label,
                &mut listing,
                max_bundles,
            )
            .await;
            return Ok(listing);
        }
        let first = api_url(
            api,
            &format!(
                "{}/attestations/{digest}?per_page={}",
                location.api_path(),
                self.options.per_page
            ),
        )?;
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
                .page_with_credential(&transport.client, api, &url, &mut token)
                .await?;
            let label = format!("{location} page {pages}");
            let within_budget = self
                .read_listed(
                    (&transport.client, api, token.as_deref()),
                    &page.attestations,
                    &label,
                    &mut listing,
                    max_bundles,
                )
                .await;
            if !within_budget {
                return Ok(listing);
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

    fn prefetch<'a>(
        &'a self,
        api: &'a GithubApi,
        owner: &'a str,
        digests: &'a [Digest],
    ) -> PrefetchFuture<'a> {
        Box::pin(self.bulk_prefetch(api, owner, digests))
    }

    fn degraded_to_registry(&self) {
        self.metrics.degraded_to_registry();
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

    fn ca_pem(name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_changed_ca_file_content_rebuilds_the_client_and_a_broken_one_keeps_the_last_good() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ca.pem");
        std::fs::write(&path, ca_pem("one.example")).unwrap();
        let api = GithubApi {
            ca_file: Some(path.display().to_string()),
            ..GithubApi::default()
        };
        let client = GithubClient::new(GithubOptions::default());
        let first = client.transport(&api).unwrap();
        let again = client.transport(&api).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same content: same client");
        // A rotated CA Secret: same path, new content.
        std::fs::write(&path, ca_pem("two.example")).unwrap();
        let second = client.transport(&api).unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "new content: new client");
        for broken in [Some("not a certificate"), None] {
            match broken {
                Some(content) => std::fs::write(&path, content).unwrap(),
                None => std::fs::remove_file(&path).unwrap(),
            }
            let kept = client.transport(&api).unwrap();
            assert!(Arc::ptr_eq(&second, &kept), "{broken:?}: last good kept");
            // Without a last good client, the same file is an error.
            let fresh = GithubClient::new(GithubOptions::default());
            assert!(matches!(
                fresh.transport(&api),
                Err(GithubError::Config { .. })
            ));
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
