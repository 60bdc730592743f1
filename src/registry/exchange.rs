//! The authenticated, bounded HTTP exchange with registries, beneath the OCI operations of
//! `client.rs`: which hosts may be contacted at all, one deadline per request covering
//! headers and body, bodies cut off at their cap while they arrive, one answered
//! authentication challenge per request (anonymous or credentialed bearer token, or basic)
//! with the answer cached, every request reported to the observer, and HTTP failures turned
//! into [`RegistryError`]s. Redirects and TLS are the transport's (`transport.rs`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::check::reference::{canonical_registry, ImageReference};

use super::auth::{
    basic_authorization, basic_cache_lifetime, parse_token_response, pull_scope,
    refresh_token_form, select_challenge, token_realm_url, token_request_url, AuthChallenge,
    AuthorizationCache,
};
use super::credentials::{DockerConfig, LoginFingerprint, RegistryLogin};
use super::limits::{declared_length_allowed, CappedBody};
use super::observer::{RegistryOperation, RequestObserver};
use super::transport::{
    error_chain, HostOptions, HostTransport, RegistryConfigError, TransportLimits,
};
use super::RegistryError;

/// Token endpoint answers are small JSON documents; a JWT is a few KiB.
const MAX_TOKEN_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Cached `Authorization` values, one per registry host and repository.
const MAX_CACHED_AUTHORIZATIONS: usize = 1024;
/// Longest pause a registry's `Retry-After` buys: a registry cannot switch itself off (and
/// the images it serves) for longer, nor a forged header for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Pause after a 429 without a usable `Retry-After`.
pub const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
/// Registries remembered as rate limiting at once (entries expire within a minute).
const MAX_RATE_LIMITED_REGISTRIES: usize = 1024;

tokio::task_local! {
    /// The logins of the workload whose images the current task checks (its
    /// imagePullSecrets), consulted before the client's own credentials. Task-local rather
    /// than a parameter of every [`super::Registry`] operation: the checks and caches between
    /// the admission and the exchange stay the same for every workload, and the logins
    /// cannot leak into a request of another task.
    static WORKLOAD_LOGINS: Arc<DockerConfig>;
}

/// Runs `future` with `logins` (a workload's imagePullSecrets) used, for every registry
/// request it makes in this task, before the client's own credentials: a registry (and
/// repository path) they have an entry for is asked with that entry, any other with the
/// client's credentials, as the kubelet falls back to the node's. Requests are still only
/// sent to the hosts the client allows; the logins never name a host to contact.
pub async fn with_workload_logins<F: std::future::Future>(
    logins: Arc<DockerConfig>,
    future: F,
) -> F::Output {
    WORKLOAD_LOGINS.scope(logins, future).await
}

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

/// One image's registry, repository and transport: what every request needs.
pub(super) struct Target<'a> {
    /// The registry as named in references; used in errors and metrics.
    pub registry: &'a str,
    /// The host serving its API (differs for Docker Hub).
    api_host: &'a str,
    pub repository: &'a str,
    transport: &'a HostTransport,
}

impl Target<'_> {
    /// The host serving the registry's API.
    pub fn api_host(&self) -> &str {
        self.api_host
    }
}

/// A response with the deadline its body must arrive by.
pub(super) struct Exchange {
    pub response: reqwest::Response,
    deadline: tokio::time::Instant,
}

/// Sends the requests of the OCI operations: allowed hosts only, each host over its own
/// transport, authenticated and bounded in time and size.
pub(super) struct Exchanger {
    pub allowed_registries: AllowedRegistries,
    /// Transports of the hosts with settings, keyed by canonical registry name.
    pub hosts: HashMap<String, HostTransport>,
    default_transport: HostTransport,
    credentials: DockerConfig,
    authorizations: AuthorizationCache,
    observer: Arc<dyn RequestObserver>,
    pub request_timeout: Duration,
    rate_limited: RateLimitedRegistries,
}

/// Registries that answered 429, until when they asked to be left alone. Without it every
/// new digest and every expired tag would ask a rate-limiting registry again at once: the
/// caches keep a failure per image, not per registry.
#[derive(Default)]
struct RateLimitedRegistries {
    until: std::sync::Mutex<HashMap<String, tokio::time::Instant>>,
}

impl RateLimitedRegistries {
    fn is_paused(&self, registry: &str) -> bool {
        let now = tokio::time::Instant::now();
        self.lock().get(registry).is_some_and(|until| *until > now)
    }

    fn pause(&self, registry: &str, pause: Duration) {
        let now = tokio::time::Instant::now();
        let mut until = self.lock();
        until.retain(|_, until| *until > now);
        if until.len() >= MAX_RATE_LIMITED_REGISTRIES && !until.contains_key(registry) {
            return;
        }
        until.insert(registry.to_owned(), now + pause);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::time::Instant>> {
        // Every update is one insert or retain: a poisoned map is still consistent.
        self.until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long a 429 asks to be left alone: `Retry-After` in seconds or as an HTTP date, at
/// most [`MAX_RETRY_AFTER`]; [`DEFAULT_RATE_LIMIT_PAUSE`] when absent or unreadable.
fn retry_after(value: Option<&HeaderValue>, now: jiff::Timestamp) -> Duration {
    let Some(text) = value.and_then(|value| value.to_str().ok()).map(str::trim) else {
        return DEFAULT_RATE_LIMIT_PAUSE;
    };
    let pause = if let Ok(seconds) = text.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if let Ok(date) = jiff::fmt::rfc2822::parse(text) {
        let seconds = date.timestamp().as_second().saturating_sub(now.as_second());
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    } else {
        DEFAULT_RATE_LIMIT_PAUSE
    };
    pause.min(MAX_RETRY_AFTER)
}

impl fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<&String> = self.hosts.keys().collect();
        hosts.sort();
        f.debug_struct("Exchanger")
            .field("allowed_registries", &self.allowed_registries)
            .field("hosts", &hosts)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Exchanger {
    /// Builds one HTTP client per configured host (each with its own CA and scheme) and one
    /// for all other hosts.
    pub fn new(
        allowed_registries: AllowedRegistries,
        host_options: &[HostOptions],
        credentials: DockerConfig,
        limits: &TransportLimits,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Self, RegistryConfigError> {
        let mut hosts = HashMap::new();
        for host in host_options {
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
                HostTransport::build(&host.host, host.insecure, host.ca_pem.as_deref(), limits)?;
            hosts.insert(key, transport);
        }
        let default_transport = HostTransport::build("(default)", false, None, limits)?;
        Ok(Self {
            allowed_registries,
            hosts,
            default_transport,
            credentials,
            authorizations: AuthorizationCache::new(MAX_CACHED_AUTHORIZATIONS),
            observer,
            request_timeout: limits.request_timeout,
            rate_limited: RateLimitedRegistries::default(),
        })
    }

    /// The target for `image`, or `NotAllowed` before anything touches the network.
    pub(super) fn target<'a>(
        &'a self,
        image: &'a ImageReference,
    ) -> Result<Target<'a>, RegistryError> {
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

    /// Sends a request to `/v2/<repository>/<path>`, answering one authentication challenge:
    /// a cached `Authorization` is sent up front; on 401 the challenge is answered (token or
    /// basic) and the request repeated once. A 401 that cannot be answered is returned as is.
    pub(super) async fn request(
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
        let login = self.login_for(target);
        let login_key = login.as_ref().map(RegistryLogin::fingerprint);
        let mut authorization =
            self.authorizations
                .get(target.api_host, &scope, login_key, Instant::now());
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
                self.authorizations
                    .remove(target.api_host, &scope, login_key);
            }
            let challenge = select_challenge(
                exchange
                    .response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|value| value.to_str().ok()),
            );
            match self
                .answer_challenge(target, challenge, &scope, login.as_ref())
                .await?
            {
                Some(answer) => authorization = Some(answer),
                None => return Ok(exchange),
            }
        }
    }

    /// The login for `target`: the current workload's entry for its registry and repository
    /// ([`with_workload_logins`]) or, without one, the client's own.
    fn login_for(&self, target: &Target<'_>) -> Option<RegistryLogin> {
        let workload = WORKLOAD_LOGINS
            .try_with(|logins| {
                logins
                    .login_for(target.registry, target.repository)
                    .cloned()
            })
            .ok()
            .flatten();
        workload.or_else(|| {
            self.credentials
                .login_for(target.registry, target.repository)
                .cloned()
        })
    }

    /// The `Authorization` value answering `challenge`, or `None` when there is none we can
    /// give (a Basic challenge without a password, an unknown scheme).
    async fn answer_challenge(
        &self,
        target: &Target<'_>,
        challenge: Option<AuthChallenge>,
        scope: &str,
        login: Option<&RegistryLogin>,
    ) -> Result<Option<String>, RegistryError> {
        let (value, lifetime) = match (challenge, login) {
            (Some(AuthChallenge::Bearer { realm, service }), login) => {
                let issued = self
                    .fetch_token(target, &realm, service.as_deref(), scope, login)
                    .await?;
                (format!("Bearer {}", issued.token), issued.cache_for)
            }
            (Some(AuthChallenge::Basic), Some(RegistryLogin::Password(credentials))) => {
                (basic_authorization(credentials), basic_cache_lifetime())
            }
            (Some(AuthChallenge::Basic), _) | (None, _) => return Ok(None),
        };
        if HeaderValue::from_str(&value).is_err() {
            return Err(RegistryError::Malformed {
                registry: target.registry.to_owned(),
                what: "token".to_owned(),
                reason: "the token contains characters not allowed in an HTTP header".to_owned(),
            });
        }
        let login_key: Option<LoginFingerprint> = login.map(RegistryLogin::fingerprint);
        self.authorizations.insert(
            (target.api_host, scope, login_key),
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
        login: Option<&RegistryLogin>,
    ) -> Result<super::auth::IssuedToken, RegistryError> {
        let insecure = target.transport.insecure;
        let url = match login {
            // OAuth2: the refresh token is posted to the realm itself, the service and
            // scope in the form rather than the query.
            Some(RegistryLogin::IdentityToken(_)) => token_realm_url(realm, insecure),
            _ => token_request_url(realm, service, scope, insecure),
        }
        .map_err(|reason| RegistryError::Malformed {
            registry: target.registry.to_owned(),
            what: "authentication challenge".to_owned(),
            reason,
        })?;
        let what = format!("token from {}", url.host_str().unwrap_or("the token realm"));
        // Docker's token flow: the registry's realm gets the login, the registry itself
        // only ever sees the token.
        let client = &target.transport.client;
        let request = match login {
            None => client.get(url),
            Some(RegistryLogin::Password(credentials)) => client
                .get(url)
                .header(AUTHORIZATION, basic_authorization(credentials)),
            Some(RegistryLogin::IdentityToken(refresh_token)) => client
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(refresh_token_form(service, scope, refresh_token)),
        };
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
        // A registry that asked to be left alone is not asked, by any image, until then.
        if self.rate_limited.is_paused(target.registry) {
            return Err(RegistryError::RateLimited {
                registry: target.registry.to_owned(),
            });
        }
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
                if response.status() == StatusCode::TOO_MANY_REQUESTS {
                    let pause = retry_after(
                        response.headers().get(reqwest::header::RETRY_AFTER),
                        jiff::Timestamp::now(),
                    );
                    self.rate_limited.pause(target.registry, pause);
                }
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
    pub(super) async fn read_body(
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

    pub(super) fn require_success(
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

    pub(super) fn status_error(
        &self,
        target: &Target<'_>,
        status: StatusCode,
        what: &str,
    ) -> RegistryError {
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

/// Seconds for messages: a 500 ms timeout reads as "1s", not "0s".
fn whole_seconds_rounded_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date_and_capped() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let header = |text: &str| HeaderValue::from_str(text).unwrap();
        assert_eq!(retry_after(Some(&header("7")), now), Duration::from_secs(7));
        assert_eq!(
            retry_after(Some(&header("Thu, 01 Jan 2026 00:00:30 GMT")), now),
            Duration::from_secs(30)
        );
        // A date in the past asks for no pause; a huge one is cut to the cap.
        assert_eq!(
            retry_after(Some(&header("Wed, 31 Dec 2025 23:00:00 GMT")), now),
            Duration::ZERO
        );
        assert_eq!(retry_after(Some(&header("86400")), now), MAX_RETRY_AFTER);
        for unusable in [None, Some(header("soon")), Some(header("-5"))] {
            assert_eq!(
                retry_after(unusable.as_ref(), now),
                DEFAULT_RATE_LIMIT_PAUSE
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_registry_is_paused_alone_and_until_its_time() {
        let limited = RateLimitedRegistries::default();
        limited.pause("ghcr.io", Duration::from_secs(10));
        assert!(limited.is_paused("ghcr.io"));
        assert!(!limited.is_paused("quay.io"));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!limited.is_paused("ghcr.io"));
    }

    #[test]
    fn timeout_seconds_round_up() {
        assert_eq!(whole_seconds_rounded_up(Duration::from_millis(500)), 1);
        assert_eq!(whole_seconds_rounded_up(Duration::from_secs(5)), 5);
    }
}
