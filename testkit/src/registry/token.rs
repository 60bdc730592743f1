//! A Docker registry token server (the "realm" of `auth: token`), as CNCF
//! distribution 2.8 expects one: it answers
//! `GET /token?service=…&scope=repository:NAME:pull,push` with a JWT signed
//! by a key whose certificate chains to the registry's `rootcertbundle`.
//!
//! distribution verifies the JWT header's `x5c` chain against that bundle,
//! the ES256 signature, `iss`, `aud` (= service), `exp`/`nbf`, and then the
//! `access` claim against what the request needs.

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

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state
            .requests
            .lock()
            .expect("the token request log is never poisoned")
            .clone()
    }
}

impl TokenState {
    fn answer(&self, request: &http1::Request) -> Response {
        if request.method != "GET" || request.path() != "/token" {
            return Response::new(404, "not found");
        }
        let scopes = request.query_values("scope");
        let presented = request.header("authorization").and_then(basic_credentials);
        let authenticated = match &presented {
            None => false,
            Some((username, password)) => {
                *username == self.credentials.username && *password == self.credentials.password
            }
        };
        let record = |granted| {
            self.requests
                .lock()
                .expect("the token request log is never poisoned")
                .push(TokenRequest {
                    scopes: scopes.clone(),
                    username: presented.as_ref().map(|(username, _)| username.clone()),
                    granted,
                });
        };
        // Wrong credentials are refused even where anonymous access would be
        // granted, as Docker Hub does.
        let refuse = presented.is_some() && !authenticated
            || presented.is_none() && self.access == TokenAccess::CredentialsRequired;
        if refuse {
            record(false);
            return Response::new(401, r#"{"details":"invalid credentials"}"#)
                .with_header("Content-Type", "application/json")
                .with_header("WWW-Authenticate", "Basic realm=\"testkit token server\"");
        }
        let access: Vec<serde_json::Value> = scopes
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
        let body = json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "issued_at": now.to_string(),
        });
        Response::new(200, body.to_string()).with_header("Content-Type", "application/json")
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

pub(crate) fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
