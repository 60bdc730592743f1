//! The pieces of registry authentication that need no network: parsing `WWW-Authenticate`
//! challenges, building the token request URL, reading the token response, and caching the
//! resulting `Authorization` value per registry host and scope.
//!
//! The flow itself (401 → token → retry) lives in the client; this module only decides.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Url;

use super::credentials::{Credentials, LoginFingerprint};

/// Docker's token spec: a token without `expires_in` is valid for 60 seconds.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are dropped this long before they expire, so a request never carries a token that
/// runs out while it is in flight.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// A registry may claim any lifetime; we re-authenticate at least this often.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Basic credentials do not expire, but the cached decision to send them is renewed hourly.
const BASIC_AUTH_LIFETIME: Duration = Duration::from_secs(3600);

/// One challenge of a `WWW-Authenticate` header: scheme (lower case) and parameters (keys in
/// lower case, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// What a registry asked for, in the order we prefer to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthChallenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

/// The challenge to answer among all `WWW-Authenticate` header values: Bearer (with a realm)
/// before Basic, because Bearer never sends the password to the registry itself.
pub(crate) fn select_challenge<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
) -> Option<AuthChallenge> {
    let challenges: Vec<Challenge> = header_values
        .into_iter()
        .flat_map(parse_challenges)
        .collect();
    let bearer = challenges.iter().find_map(|challenge| {
        let realm = challenge.params.get("realm")?;
        (challenge.scheme == "bearer" && !realm.is_empty()).then(|| AuthChallenge::Bearer {
            realm: realm.clone(),
            service: challenge.params.get("service").cloned(),
        })
    });
    bearer.or_else(|| {
        challenges
            .iter()
            .any(|challenge| challenge.scheme == "basic")
            .then_some(AuthChallenge::Basic)
    })
}

/// Parses a `WWW-Authenticate` value (RFC 7235): one or more challenges, each a scheme and
/// comma-separated `name=value` parameters whose values may be quoted strings containing
/// commas and backslash escapes. Anything unparseable is skipped, never an error or a panic.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut cursor = Cursor {
        bytes: header.as_bytes(),
        position: 0,
    };
    let mut challenges = Vec::new();
    // A token read while looking for a parameter that turned out to start the next challenge.
    let mut next_scheme: Option<String> = None;
    loop {
        let scheme = match next_scheme.take() {
            Some(scheme) => scheme,
            None => {
                cursor.skip_while(|byte| byte == b' ' || byte == b'\t' || byte == b',');
                if cursor.at_end() {
                    break;
                }
                match cursor.token() {
                    Some(token) => token,
                    None => {
                        // Not a token character: skip it so parsing always advances.
                        cursor.position += 1;
                        continue;
                    }
                }
            }
        };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        loop {
            cursor.skip_while(|byte| byte == b' ' || byte == b'\t' || byte == b',');
            let Some(name) = cursor.token() else { break };
            cursor.skip_while(|byte| byte == b' ' || byte == b'\t');
            if cursor.eat(b'=') {
                cursor.skip_while(|byte| byte == b' ' || byte == b'\t');
                let value = if cursor.peek() == Some(b'"') {
                    cursor.quoted_string()
                } else {
                    cursor.token().unwrap_or_default()
                };
                challenge.params.insert(name.to_ascii_lowercase(), value);
            } else {
                next_scheme = Some(name);
                break;
            }
        }
        challenges.push(challenge);
    }
    challenges
}

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.position >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn eat(&mut self, expected: u8) -> bool {
        if self.peek() == Some(expected) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn skip_while(&mut self, predicate: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&predicate) {
            self.position += 1;
        }
    }

    /// An RFC 7230 token (`tchar`s), or `None` when the next byte cannot start one.
    fn token(&mut self) -> Option<String> {
        let start = self.position;
        self.skip_while(is_token_char);
        (self.position > start)
            .then(|| String::from_utf8_lossy(&self.bytes[start..self.position]).into_owned())
    }

    /// A quoted string starting at `"`; an unterminated one runs to the end of the header.
    fn quoted_string(&mut self) -> String {
        self.position += 1;
        let mut value = Vec::new();
        while let Some(byte) = self.peek() {
            self.position += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.position += 1;
                    }
                }
                other => value.push(other),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }
}

fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The scope we ask for: pull access to one repository, never more.
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The realm of a Bearer challenge as a URL. The realm is chosen by the registry, so it is
/// only followed over https, unless the registry itself is plain HTTP by policy.
pub(crate) fn token_realm_url(realm: &str, allow_plain_http: bool) -> Result<Url, String> {
    let url = Url::parse(realm).map_err(|error| format!("token realm is not a URL: {error}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_plain_http => Ok(url),
        scheme => Err(format!(
            "token realm uses {scheme}; only https is allowed for this registry"
        )),
    }
}

/// The token request URL for a Bearer challenge ([`token_realm_url`] with the service and
/// scope in its query).
pub(crate) fn token_request_url(
    realm: &str,
    service: Option<&str>,
    scope: &str,
    allow_plain_http: bool,
) -> Result<Url, String> {
    let mut url = token_realm_url(realm, allow_plain_http)?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        query.append_pair("scope", scope);
    }
    Ok(url)
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A bearer token and how long it may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssuedToken {
    pub token: String,
    pub cache_for: Duration,
}

/// OAuth2 client id sent with refresh-token grants, as `docker` sends `docker`.
const OAUTH_CLIENT_ID: &str = "provenance-gate";

/// The form body of an OAuth2 refresh-token grant at a token realm (Docker's
/// `identitytoken`): `grant_type=refresh_token`, the service, the pull scope, the token.
pub(crate) fn refresh_token_form(
    service: Option<&str>,
    scope: &str,
    refresh_token: &str,
) -> String {
    // The URL query serializer is application/x-www-form-urlencoded, which a form body is.
    let mut form = Url::parse("https://form.invalid/").expect("a constant URL parses");
    {
        let mut pairs = form.query_pairs_mut();
        pairs.append_pair("grant_type", "refresh_token");
        if let Some(service) = service {
            pairs.append_pair("service", service);
        }
        pairs.append_pair("client_id", OAUTH_CLIENT_ID);
        pairs.append_pair("scope", scope);
        pairs.append_pair("refresh_token", refresh_token);
    }
    form.query().unwrap_or_default().to_owned()
}

/// Reads a token endpoint's answer: `token` or (OAuth2 style) `access_token`, and
/// `expires_in` seconds.
pub(crate) fn parse_token_response(bytes: &[u8]) -> Result<IssuedToken, String> {
    let response: TokenResponse = serde_json::from_slice(bytes)
        .map_err(|error| format!("token response is not JSON: {error}"))?;
    let token = response
        .token
        .filter(|token| !token.is_empty())
        .or(response.access_token.filter(|token| !token.is_empty()))
        .ok_or("token response has neither \"token\" nor \"access_token\"")?;
    let lifetime = response
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .min(MAX_TOKEN_LIFETIME);
    Ok(IssuedToken {
        token,
        cache_for: lifetime.saturating_sub(TOKEN_EXPIRY_MARGIN),
    })
}

/// `Authorization: Basic …` for `credentials`.
pub(crate) fn basic_authorization(credentials: &Credentials) -> String {
    let pair = format!("{}:{}", credentials.username(), credentials.password());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// How long a Basic authorization decision is reused before a registry is asked again.
pub(crate) fn basic_cache_lifetime() -> Duration {
    BASIC_AUTH_LIFETIME
}

struct CachedAuthorization {
    value: String,
    expires_at: Instant,
}

/// What a cached `Authorization` was obtained for: a registry host, a scope and the login
/// used (none: anonymous). The login is part of the key so that a token one workload's pull
/// secret obtained is never sent on behalf of another workload, or of the webhook itself.
type AuthorizationKey = (String, String, Option<LoginFingerprint>);

/// `Authorization` values per (registry host, scope, login), until they expire. Bounded: a
/// pod spec can name many repositories in an allowed registry, each with its own scope.
pub(crate) struct AuthorizationCache {
    entries: Mutex<HashMap<AuthorizationKey, CachedAuthorization>>,
    max_entries: usize,
}

impl AuthorizationCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_entries,
        }
    }

    pub fn get(
        &self,
        host: &str,
        scope: &str,
        login: Option<LoginFingerprint>,
        now: Instant,
    ) -> Option<String> {
        let entries = self.lock();
        entries
            .get(&(host.to_owned(), scope.to_owned(), login))
            .filter(|cached| cached.expires_at > now)
            .map(|cached| cached.value.clone())
    }

    pub fn insert(
        &self,
        (host, scope, login): (&str, &str, Option<LoginFingerprint>),
        value: String,
        lifetime: Duration,
        now: Instant,
    ) {
        if lifetime.is_zero() || self.max_entries == 0 {
            return;
        }
        // `now + lifetime` cannot overflow for the capped lifetimes used here, but the cache
        // must never panic on a value that came from the network.
        let Some(expires_at) = now.checked_add(lifetime) else {
            return;
        };
        let mut entries = self.lock();
        if entries.len() >= self.max_entries {
            entries.retain(|_, cached| cached.expires_at > now);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(
            (host.to_owned(), scope.to_owned(), login),
            CachedAuthorization { value, expires_at },
        );
    }

    pub fn remove(&self, host: &str, scope: &str, login: Option<LoginFingerprint>) {
        self.lock()
            .remove(&(host.to_owned(), scope.to_owned(), login));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AuthorizationKey, CachedAuthorization>> {
        // The map holds only plain values; one left by a panicking thread is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge_with_comma_in_quoted_scope() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#;
        let challenges = parse_challenges(header);
        assert_eq!(challenges.len(), 1);
        let challenge = &challenges[0];
        assert_eq!(challenge.scheme, "bearer");
        assert_eq!(challenge.params["realm"], "https://auth.docker.io/token");
        assert_eq!(challenge.params["service"], "registry.docker.io");
        assert_eq!(
            challenge.params["scope"],
            "repository:library/nginx:pull,push"
        );
    }

    #[test]
    fn parses_escapes_spaces_case_and_unquoted_values() {
        let header = r#"BEARER Realm = "https://r.example/t?a=\"b\"" , service=reg.example"#;
        let challenges = parse_challenges(header);
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].scheme, "bearer");
        assert_eq!(
            challenges[0].params["realm"],
            r#"https://r.example/t?a="b""#
        );
        assert_eq!(challenges[0].params["service"], "reg.example");
    }

    #[test]
    fn parses_several_challenges_in_one_value() {
        let header =
            r#"Basic realm="Registry Realm", Bearer realm="https://t.example/token",service="s""#;
        let challenges = parse_challenges(header);
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer"]);
        assert_eq!(challenges[0].params["realm"], "Registry Realm");
        assert_eq!(challenges[1].params["service"], "s");
    }

    #[test]
    fn survives_garbage_and_unterminated_quotes() {
        for header in [
            "",
            "=",
            "\"",
            ",,,",
            "Bearer realm=\"unterminated",
            "Basic dXNlcg==",
            "=x y=\"",
            "Bearer ===,=\"\\",
        ] {
            // Must terminate and not panic; the content does not matter.
            let _ = parse_challenges(header);
        }
        let challenges = parse_challenges("Bearer realm=\"https://a/b,c");
        assert_eq!(challenges[0].params["realm"], "https://a/b,c");
    }

    #[test]
    fn prefers_bearer_over_basic_and_requires_a_realm() {
        assert_eq!(
            select_challenge([
                r#"Basic realm="x""#,
                r#"Bearer realm="https://t/",service="s""#
            ]),
            Some(AuthChallenge::Bearer {
                realm: "https://t/".to_owned(),
                service: Some("s".to_owned())
            })
        );
        assert_eq!(
            select_challenge([r#"Bearer service="s""#, r#"Basic realm="x""#]),
            Some(AuthChallenge::Basic)
        );
        assert_eq!(select_challenge([r#"Negotiate abc"#]), None);
    }

    #[test]
    fn token_url_adds_service_and_scope_and_keeps_realm_query() {
        let url = token_request_url(
            "https://auth.example/token?x=1",
            Some("registry.example"),
            &pull_scope("acme/api"),
            false,
        )
        .expect("https realm");
        assert_eq!(
            url.as_str(),
            "https://auth.example/token?x=1&service=registry.example&scope=repository%3Aacme%2Fapi%3Apull"
        );
    }

    #[test]
    fn token_url_refuses_plain_http_unless_allowed() {
        assert!(token_request_url("http://auth.example/token", None, "s", false).is_err());
        assert!(token_request_url("http://auth.example/token", None, "s", true).is_ok());
        assert!(token_request_url("file:///etc/passwd", None, "s", true).is_err());
        assert!(token_request_url("not a url", None, "s", true).is_err());
    }

    #[test]
    fn token_response_fields_and_lifetimes() {
        let issued = parse_token_response(br#"{"token":"abc","expires_in":300}"#).expect("token");
        assert_eq!(issued.token, "abc");
        assert_eq!(issued.cache_for, Duration::from_secs(290));

        let issued = parse_token_response(br#"{"access_token":"xyz"}"#).expect("token");
        assert_eq!(issued.token, "xyz");
        assert_eq!(issued.cache_for, Duration::from_secs(50));

        let issued = parse_token_response(br#"{"token":"t","expires_in":18446744073709551615}"#)
            .expect("token");
        assert_eq!(issued.cache_for, Duration::from_secs(3590));

        let issued = parse_token_response(br#"{"token":"t","expires_in":5}"#).expect("token");
        assert_eq!(issued.cache_for, Duration::ZERO);

        assert!(parse_token_response(br#"{"token":""}"#).is_err());
        assert!(parse_token_response(b"<html>").is_err());
    }

    #[test]
    fn basic_authorization_encodes_user_and_password() {
        let value = basic_authorization(&Credentials::new("user", "pa:ss"));
        assert_eq!(value, "Basic dXNlcjpwYTpzcw==");
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let cache = AuthorizationCache::new(2);
        let now = Instant::now();
        let ten = Duration::from_secs(10);
        cache.insert(("h", "s1", None), "Bearer a".into(), ten, now);
        assert_eq!(cache.get("h", "s1", None, now).as_deref(), Some("Bearer a"));
        assert_eq!(
            cache.get("h", "s1", None, now + Duration::from_secs(11)),
            None
        );
        assert_eq!(cache.get("other", "s1", None, now), None);

        cache.insert(("h", "s2", None), "Bearer b".into(), ten, now);
        cache.insert(("h", "s3", None), "Bearer c".into(), ten, now);
        assert!(cache.lock().len() <= 2);
        assert_eq!(cache.get("h", "s3", None, now).as_deref(), Some("Bearer c"));

        cache.insert(("h", "zero", None), "Bearer z".into(), Duration::ZERO, now);
        assert_eq!(cache.get("h", "zero", None, now), None);

        cache.remove("h", "s3", None);
        assert_eq!(cache.get("h", "s3", None, now), None);
    }

    #[test]
    fn a_token_is_only_found_again_for_the_login_that_obtained_it() {
        let cache = AuthorizationCache::new(8);
        let now = Instant::now();
        let alice = crate::registry::RegistryLogin::Password(Credentials::new("alice", "1"));
        let bob = crate::registry::RegistryLogin::Password(Credentials::new("bob", "2"));
        let key = |login: Option<&crate::registry::RegistryLogin>| {
            login.map(crate::registry::RegistryLogin::fingerprint)
        };
        cache.insert(
            ("h", "s", key(Some(&alice))),
            "Bearer alice".into(),
            Duration::from_secs(10),
            now,
        );
        assert_eq!(
            cache.get("h", "s", key(Some(&alice)), now).as_deref(),
            Some("Bearer alice")
        );
        assert_eq!(cache.get("h", "s", key(Some(&bob)), now), None);
        assert_eq!(cache.get("h", "s", key(None), now), None);
    }

    #[test]
    fn refresh_token_forms_are_url_encoded() {
        assert_eq!(
            refresh_token_form(Some("reg.example"), &pull_scope("acme/api"), "a+b/c=="),
            "grant_type=refresh_token&service=reg.example&client_id=provenance-gate&scope=repository%3Aacme%2Fapi%3Apull&refresh_token=a%2Bb%2Fc%3D%3D"
        );
        assert!(!refresh_token_form(None, "s", "t").contains("service"));
    }
}
