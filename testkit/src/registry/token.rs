//! A Docker registry token server (the "realm" of `auth: token`), as CNCF
//! distribution 2.8 expects one: it answers
//! `GET /token?service=…&scope=repository:NAME:pull,push` with a JWT signed
//! by a key whose certificate chains to the registry's `rootcertbundle`.
//!
//! distribution verifies the JWT header's `x5c` chain against that bundle,
//! the ES256 signature, `iss`, `aud` (= service), `exp`/`nbf`, and then the
//! `access` claim against what the request needs.
//!
//! It also answers the OAuth2 form of the token endpoint that Docker clients use with an
//! `identitytoken`: `POST /token` with `grant_type=refresh_token`, the service, the scope
//! and the refresh token ([`TokenServer::identity_token`]) in a form body, answered with an
//! `access_token` only.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use rand_core::{OsRng, RngCore};
use serde_json::json;

use super::http1::{self, LoopbackServer, Response};
use super::tls::TestCa;
use super::Credentials;

/// How long an issued token is valid.
const TOKEN_LIFETIME_SECONDS: i64 = 300;

/// Who gets a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAccess {
    /// Like a public repository on Docker Hub: a request without
    /// credentials gets a token for `pull` only; with the right credentials,
    /// every action asked for.
    AnonymousPull,
    /// Like a private repository: no token at all without the right
    /// credentials (the realm answers 401).
    CredentialsRequired,
}

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `scope` parameters, e.g. `repository:acme/api:pull`.
    pub scopes: Vec<String>,
    /// The user named by Basic credentials, if any were sent.
    pub username: Option<String>,
    /// Whether an OAuth2 refresh token was presented (`POST`, `grant_type=refresh_token`).
    pub refresh_token: bool,
    /// Whether a token was issued (false: the realm answered 401).
    pub granted: bool,
}

/// A running token server (HTTPS, loopback), stopped when dropped.
pub struct TokenServer {
    server: LoopbackServer,
    state: Arc<TokenState>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("realm", &self.realm())
            .field("service", &self.state.service)
            .finish_non_exhaustive()
    }
}

struct TokenState {
    service: String,
    issuer: String,
    access: TokenAccess,
    credentials: Credentials,
    /// The refresh token that stands for `credentials` in the OAuth2 form.
    identity_token: String,
    signing_key: SigningKey,
    signer_certificate_der: Vec<u8>,
    requests: Mutex<Vec<TokenRequest>>,
}

impl TokenServer {
    /// Starts a token server over HTTPS with a certificate from `ca`, signing
    /// tokens with a key certified by `ca` (so `ca`'s certificate is the
    /// registry's `rootcertbundle`).
    pub(crate) fn start(
        ca: &TestCa,
        service: &str,
        issuer: &str,
        access: TokenAccess,
        credentials: Credentials,
    ) -> TokenServer {
        let signer = ca.issue_signing_identity("provenance-gate testkit token signer");
        let signing_key = SigningKey::from_pkcs8_der(&signer.private_key_pkcs8_der)
            .expect("rcgen's P-256 PKCS #8 key loads into p256");
        let state = Arc::new(TokenState {
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            access,
            credentials,
            identity_token: format!("refresh-{}", random_hex()),
            signing_key,
            signer_certificate_der: signer.certificate_der,
            requests: Mutex::new(Vec::new()),
        });
        let tls = ca.issue_server_identity().rustls_server_config();
        let handler_state = state.clone();
        let server = LoopbackServer::start("token-server", Some(tls), move |mut connection| {
            while let Some(request) = http1::next_request(&mut connection) {
                let response = handler_state.answer(&request);
                let close = request.wants_close();
                let stream = connection.stream.get_mut();
                if http1::write_response(stream, &response, request.method == "HEAD").is_err()
                    || close
                {
                    break;
                }
                let _ = stream.flush();
            }
        });
        TokenServer { server, state }
    }

    /// The realm URL: `https://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("https://{}/token", self.server.address())
    }

    /// The `service` the tokens are for.
    pub fn service(&self) -> &str {
        &self.state.service
    }

    /// The tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The OAuth2 refresh token that logs in as the server's user: what `docker login`
    /// keeps as `identitytoken` for a registry with an OAuth2 token service.
    pub fn identity_token(&self) -> &str {
        &self.state.identity_token
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state
            .requests
            .lock()
            .expect("the token request log is never poisoned")
            .clone()
    }
}

/// Who asked for a token, and how.
struct Presented {
    scopes: Vec<String>,
    username: Option<String>,
    /// The request carried a login (Basic credentials or a refresh token).
    logged_in: bool,
    /// The login is the server's user.
    authenticated: bool,
    refresh_token: bool,
}

impl TokenState {
    fn answer(&self, request: &http1::Request) -> Response {
        if request.path() != "/token" {
            return Response::new(404, "not found");
        }
        let presented = match request.method.as_str() {
            "GET" => self.presented_basic(request),
            "POST" => match self.presented_refresh_token(request) {
                Ok(presented) => presented,
                Err(refused) => return refused,
            },
            _ => return Response::new(404, "not found"),
        };
        let record = |granted| {
            self.requests
                .lock()
                .expect("the token request log is never poisoned")
                .push(TokenRequest {
                    scopes: presented.scopes.clone(),
                    username: presented.username.clone(),
                    refresh_token: presented.refresh_token,
                    granted,
                });
        };
        // Wrong credentials are refused even where anonymous access would be
        // granted, as Docker Hub does.
        let refuse = presented.logged_in && !presented.authenticated
            || !presented.logged_in && self.access == TokenAccess::CredentialsRequired;
        if refuse {
            record(false);
            return Response::new(401, r#"{"details":"invalid credentials"}"#)
                .with_header("Content-Type", "application/json")
                .with_header("WWW-Authenticate", "Basic realm=\"testkit token server\"");
        }
        let authenticated = presented.authenticated;
        let access: Vec<serde_json::Value> = presented
            .scopes
            .iter()
            .filter_map(|scope| parse_scope(scope))
            .map(|(kind, name, actions)| {
                let granted: Vec<&str> = actions
                    .into_iter()
                    .filter(|action| authenticated || *action == "pull")
                    .collect();
                json!({ "type": kind, "name": name, "actions": granted })
            })
            .collect();
        let subject = if authenticated {
            self.credentials.username.clone()
        } else {
            String::new()
        };
        let token = self.sign(&subject, access);
        record(true);
        let now = jiff::Timestamp::now();
        let body = if presented.refresh_token {
            // The OAuth2 answer: `access_token` only, as Azure's and distribution's do.
            json!({
                "access_token": token,
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "scope": presented.scopes.join(" "),
            })
        } else {
            json!({
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "issued_at": now.to_string(),
            })
        };
        Response::new(200, body.to_string()).with_header("Content-Type", "application/json")
    }

    /// `GET /token?service=…&scope=…`, with or without Basic credentials.
    fn presented_basic(&self, request: &http1::Request) -> Presented {
        let basic = request.header("authorization").and_then(basic_credentials);
        let authenticated = basic.as_ref().is_some_and(|(username, password)| {
            *username == self.credentials.username && *password == self.credentials.password
        });
        Presented {
            scopes: request.query_values("scope"),
            logged_in: basic.is_some(),
            username: basic.map(|(username, _)| username),
            authenticated,
            refresh_token: false,
        }
    }

    /// `POST /token` with an OAuth2 form; any grant but `refresh_token` is refused (400).
    fn presented_refresh_token(&self, request: &http1::Request) -> Result<Presented, Response> {
        let body = String::from_utf8_lossy(&request.body);
        let form = |name: &str| -> Vec<String> {
            body.split('&')
                .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                .filter(|(key, _)| http1::percent_decode(key) == name)
                .map(|(_, value)| http1::percent_decode(value))
                .collect()
        };
        if form("grant_type") != ["refresh_token"] {
            return Err(Response::new(400, r#"{"error":"unsupported_grant_type"}"#)
                .with_header("Content-Type", "application/json"));
        }
        let token = form("refresh_token");
        Ok(Presented {
            scopes: form("scope")
                .iter()
                .flat_map(|scopes| scopes.split(' '))
                .filter(|scope| !scope.is_empty())
                .map(str::to_owned)
                .collect(),
            username: None,
            logged_in: true,
            authenticated: token == [self.identity_token.as_str()],
            refresh_token: true,
        })
    }

    /// An ES256 JWT whose header carries the signing certificate (`x5c`).
    fn sign(&self, subject: &str, access: Vec<serde_json::Value>) -> String {
        let now = jiff::Timestamp::now().as_second();
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [BASE64.encode(&self.signer_certificate_der)],
        });
        let mut jti = [0u8; 16];
        OsRng.fill_bytes(&mut jti);
        let claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            // A little slack for clock reads in different processes.
            "nbf": now - 10,
            "iat": now,
            "jti": hex_string(&jti),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            BASE64URL.encode(header.to_string()),
            BASE64URL.encode(claims.to_string())
        );
        // JOSE wants the raw r || s form, not DER.
        let signature: Signature = self.signing_key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", BASE64URL.encode(signature.to_bytes()))
    }
}

/// `repository:acme/api:pull,push` → ("repository", "acme/api", [pull, push]).
fn parse_scope(scope: &str) -> Option<(&str, &str, Vec<&str>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((kind, name, actions.split(',').collect()))
}

/// The user and password of an `Authorization: Basic …` header.
pub(crate) fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex_string(&bytes)
}

pub(crate) fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
