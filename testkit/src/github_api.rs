//! A FAKE of GitHub's artifact attestations REST API, because GitHub cannot be reached from
//! the tests: `GET /repos/{owner}/{repo}/attestations/{subject_digest}` and
//! `GET /orgs/{org}/attestations/{subject_digest}` answering the documented shape
//! (`{"attestations": [{"bundle": {…}, "repository_id": …, "bundle_url": …}]}`) with the
//! bundles a test adds (minted by [`TestInstance::mint`](crate::TestInstance::mint)),
//! `Link: <…>; rel="next"` pagination, `ETag` / `If-None-Match` → `304`, bundles behind
//! `bundle_url` (optionally on another host), rate-limit answers (403/429 with
//! `x-ratelimit-*` headers) and oversized pages on demand. Every request is recorded.
//!
//! Also `POST /orgs/{org}/attestations/bulk-list` (`{"subject_digests": […]}` in, the
//! documented `{"attestations_subject_digests": {…}, "page_info": {…}}` out, paged by an
//! `after` cursor), and GitHub App authentication: with [`FakeGithubApi::require_app`],
//! `POST /app/installations/{id}/access_tokens` checks the App's JWT (RS256 signature with
//! the App's public key, `iss`, `iat`, `exp` as GitHub documents them) and issues
//! installation tokens, which every other request must then carry.
//!
//! Plain HTTP on `127.0.0.1`; stops when dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::axum_server::AxumServer;
use crate::registry::sha256_digest;

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The request body (bulk listings), as text.
    pub body: String,
    pub status: u16,
    pub accept: Option<String>,
    pub api_version: Option<String>,
    pub authorization: Option<String>,
    pub if_none_match: Option<String>,
}

/// A rate-limit answer the fake gives instead of a listing.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// 403 (primary rate limit, as GitHub answers it) or 429 (secondary).
    pub status: u16,
    /// Seconds until `x-ratelimit-reset`.
    pub reset_in: i64,
    /// Answers given this way before the fake serves listings again.
    pub times: usize,
}

#[derive(Default)]
struct State {
    /// Bundles (JSON text) by `/repos/o/r/attestations/sha256:…` path.
    listings: BTreeMap<String, Vec<String>>,
    /// Attestations per page (`per_page` asked for, else this, else 30).
    page_size: Option<usize>,
    /// List `bundle_url` on this base URL instead of the bundle inline.
    bundle_url_base: Option<String>,
    rate_limit: Option<RateLimit>,
    /// Bytes of padding added to every listing page.
    padding: usize,
    /// When set, requests need an installation token issued for this App.
    app: Option<AppRegistration>,
    /// Installation tokens issued and still accepted.
    tokens: Vec<String>,
    issued: usize,
    /// Lifetime of the installation tokens issued.
    token_lifetime: i64,
    /// The claims of each JWT accepted.
    jwt_claims: Vec<Value>,
    /// Answer the bulk endpoint with 404 (an older GitHub Enterprise Server).
    bulk_missing: bool,
    /// Owners that are personal accounts: their bulk endpoint is under `/users`, not `/orgs`.
    user_accounts: Vec<String>,
    requests: Vec<GithubRequest>,
}

struct AppRegistration {
    app_id: u64,
    installation_id: u64,
    /// PKCS#1 `RSAPublicKey`, DER.
    public_key: Vec<u8>,
}

/// A GitHub App of the test: its IDs and a fresh RSA key, the private half as GitHub hands
/// it out (PKCS#1 PEM, `-----BEGIN RSA PRIVATE KEY-----`).
pub struct TestGithubApp {
    pub app_id: u64,
    pub installation_id: u64,
    pub private_key_pem: String,
    pkcs8: Vec<u8>,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for TestGithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestGithubApp")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

/// PKCS#8's `PrivateKeyInfo`, to take the PKCS#1 key out of it.
#[derive(der::Sequence)]
struct PrivateKeyInfo<'a> {
    version: u8,
    algorithm: der::asn1::AnyRef<'a>,
    private_key: der::asn1::OctetStringRef<'a>,
}

impl TestGithubApp {
    /// A new App with a 2048-bit RSA key.
    pub fn generate(app_id: u64, installation_id: u64) -> TestGithubApp {
        use der::Decode as _;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let pkcs8 = key.serialize_der();
        let info = PrivateKeyInfo::from_der(&pkcs8).expect("rcgen writes PKCS#8");
        TestGithubApp {
            app_id,
            installation_id,
            private_key_pem: pem("RSA PRIVATE KEY", info.private_key.as_bytes()),
            pkcs8: pkcs8.clone(),
            public_key: key.public_key_raw().to_vec(),
        }
    }

    /// The same key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn private_key_pkcs8_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// The fake API; see the module documentation.
pub struct FakeGithubApi {
    server: AxumServer,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeGithubApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGithubApi")
            .field("address", &self.server.address())
            .finish_non_exhaustive()
    }
}

fn locked(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeGithubApi {
    pub fn start() -> FakeGithubApi {
        let state = Arc::new(Mutex::new(State::default()));
        let served = Arc::clone(&state);
        let server = AxumServer::start("fake-github-api", 1, move || {
            axum::Router::new().fallback(move |request: Request<Body>| {
                let state = Arc::clone(&served);
                async move {
                    let (parts, body) = request.into_parts();
                    let body = axum::body::to_bytes(body, 1 << 20)
                        .await
                        .unwrap_or_default();
                    answer(&state, &Request::from_parts(parts, body.to_vec()))
                }
            })
        });
        FakeGithubApi { server, state }
    }

    /// `127.0.0.1:PORT`, as a policy's `github.apiHost` names it.
    pub fn host(&self) -> String {
        self.server.address().to_string()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.address())
    }

    /// Lists `bundle_json` for `digest` (`sha256:…`) under `location` (`repos/acme/api` or
    /// `orgs/acme`), after those added before.
    pub fn add(&self, location: &str, digest: &str, bundle_json: &str) {
        locked(&self.state)
            .listings
            .entry(format!("/{location}/attestations/{digest}"))
            .or_default()
            .push(bundle_json.to_owned());
    }

    /// Attestations per page, whatever `per_page` asks.
    pub fn set_page_size(&self, size: usize) {
        locked(&self.state).page_size = Some(size.max(1));
    }

    /// Lists a `bundle_url` under `base` (e.g. another host's URL) instead of each bundle;
    /// the fake serves `GET /bundles/...` itself.
    pub fn serve_bundles_by_url(&self, base: &str) {
        locked(&self.state).bundle_url_base = Some(base.to_owned());
    }

    /// Answers the next `limit.times` requests with a rate-limit refusal.
    pub fn rate_limit(&self, limit: RateLimit) {
        locked(&self.state).rate_limit = Some(limit);
    }

    /// Pads every listing page with `bytes` of JSON the client must read past.
    pub fn pad_listings(&self, bytes: usize) {
        locked(&self.state).padding = bytes;
    }

    /// From now on every request but the token exchange needs an installation token issued
    /// for `app` (else 401, as GitHub answers a bad token).
    pub fn require_app(&self, app: &TestGithubApp) {
        let mut state = locked(&self.state);
        state.app = Some(AppRegistration {
            app_id: app.app_id,
            installation_id: app.installation_id,
            public_key: app.public_key.clone(),
        });
        if state.token_lifetime == 0 {
            state.token_lifetime = 3600;
        }
    }

    /// Seconds the installation tokens issued from now on are valid (GitHub: 3600).
    pub fn set_token_lifetime(&self, seconds: i64) {
        locked(&self.state).token_lifetime = seconds;
    }

    /// Stops accepting every installation token issued so far (a revoked or expired token).
    pub fn revoke_tokens(&self) {
        locked(&self.state).tokens.clear();
    }

    /// Installation tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        locked(&self.state).issued
    }

    /// The claims of each App JWT the fake accepted, in order.
    pub fn jwt_claims(&self) -> Vec<Value> {
        locked(&self.state).jwt_claims.clone()
    }

    /// Answers the bulk endpoint with 404, as an older GitHub Enterprise Server does.
    pub fn without_bulk_endpoint(&self) {
        locked(&self.state).bulk_missing = true;
    }

    /// Makes `owner` a personal account: `POST /orgs/{owner}/attestations/bulk-list`
    /// answers 404, `POST /users/{owner}/attestations/bulk-list` lists.
    pub fn personal_account(&self, owner: &str) {
        locked(&self.state).user_accounts.push(owner.to_owned());
    }

    pub fn requests(&self) -> Vec<GithubRequest> {
        locked(&self.state).requests.clone()
    }

    /// Requests answered with `status`.
    pub fn count(&self, status: u16) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.status == status)
            .count()
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn answer(state: &Mutex<State>, request: &Request<Vec<u8>>) -> Response<Body> {
    let mut state = locked(state);
    let target = request
        .uri()
        .path_and_query()
        .map(|target| target.as_str().to_owned())
        .unwrap_or_default();
    let (status, headers, body) = respond(&mut state, request);
    state.requests.push(GithubRequest {
        method: request.method().to_string(),
        target,
        body: String::from_utf8_lossy(request.body()).into_owned(),
        status,
        accept: header(request.headers(), "accept"),
        api_version: header(request.headers(), "x-github-api-version"),
        authorization: header(request.headers(), "authorization"),
        if_none_match: header(request.headers(), "if-none-match"),
    });
    let mut response = Response::builder().status(StatusCode::from_u16(status).expect("status"));
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(Body::from(body)).expect("a response")
}

type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

fn json_answer(status: u16, value: &Value) -> Answer {
    (
        status,
        vec![("content-type", "application/json; charset=utf-8".to_owned())],
        value.to_string().into_bytes(),
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// `POST /app/installations/{id}/access_tokens`: the JWT checked as GitHub documents it.
fn access_token_answer(
    state: &mut State,
    request: &Request<Vec<u8>>,
    installation: &str,
) -> Answer {
    let refused = |message: &str| json_answer(401, &json!({"message": message}));
    let Some(app) = &state.app else {
        return json_answer(404, &json!({"message": "Not Found"}));
    };
    if request.method() != axum::http::Method::POST {
        return json_answer(404, &json!({"message": "Not Found"}));
    }
    let Some(jwt) = header(request.headers(), "authorization")
        .and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned))
    else {
        return refused("A JSON web token could not be decoded");
    };
    let claims = match verify_jwt(&jwt, &app.public_key) {
        Ok(claims) => claims,
        Err(reason) => return refused(&reason),
    };
    let now = unix_now();
    let issuer_ok = claims["iss"].as_u64() == Some(app.app_id)
        || claims["iss"].as_str() == Some(app.app_id.to_string().as_str());
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return refused("'iat' and 'exp' are required");
    };
    if !issuer_ok {
        return refused("'Issuer' claim ('iss') must be the App's ID");
    }
    if iat > now + 1 || exp <= now || exp > now + 600 {
        return refused(
            "'Expiration time' claim ('exp') is too far in the future, or 'iat' is in the future",
        );
    }
    if installation != app.installation_id.to_string() {
        return json_answer(404, &json!({"message": "Not Found"}));
    }
    state.jwt_claims.push(claims);
    state.issued += 1;
    let token = format!("ghs_fake{}", state.issued);
    state.tokens.push(token.clone());
    let expires_at = jiff::Timestamp::from_second(now + state.token_lifetime)
        .expect("a time")
        .to_string();
    json_answer(
        201,
        &json!({"token": token, "expires_at": expires_at, "permissions": {"attestations": "read"}}),
    )
}

/// The claims of an RS256 JWT whose signature `public_key` (PKCS#1 DER) verifies.
fn verify_jwt(jwt: &str, public_key: &[u8]) -> Result<Value, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("A JSON web token could not be decoded".into());
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|error| error.to_string())
    };
    let header: Value =
        serde_json::from_slice(&decode(header)?).map_err(|error| error.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {} is not RS256", header["alg"]));
    }
    let signed = &jwt[..jwt.rfind('.').expect("three parts")];
    webpki_rsa_sha256()
        .verify_signature(public_key, signed.as_bytes(), &decode(signature)?)
        .map_err(|_| "the JWT's signature does not verify with the App's key".to_owned())?;
    serde_json::from_slice(&decode(claims)?).map_err(|error| error.to_string())
}

fn webpki_rsa_sha256() -> &'static dyn rustls_pki_types::SignatureVerificationAlgorithm {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == rustls::SignatureScheme::RSA_PKCS1_SHA256)
        .map(|(_, algorithms)| algorithms[0])
        .expect("aws-lc-rs verifies RSA PKCS#1 SHA-256")
}

/// Whether the request carries an installation token the fake issued and still accepts.
fn authorized(state: &State, request: &Request<Vec<u8>>) -> bool {
    let presented = header(request.headers(), "authorization");
    presented
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| state.tokens.iter().any(|issued| issued == token))
}

/// The ID the fake gives a listing's repository: the kit's default build's for `acme/api`.
fn repository_id(path: &str) -> u64 {
    if path.starts_with("/repos/acme/api/") {
        return 804070735;
    }
    path.bytes().fold(1000u64, |sum, byte| {
        sum.wrapping_mul(31).wrapping_add(byte as u64)
    })
}

fn listed_json(state: &State, path: &str, index: usize, bundle: &str) -> Value {
    match &state.bundle_url_base {
        Some(base) => json!({
            "bundle": null,
            "repository_id": repository_id(path),
            "bundle_url": format!("{base}/bundles/{}", bundle_key(path, index)),
        }),
        None => json!({
            "bundle": serde_json::from_str::<Value>(bundle).expect("minted bundles are JSON"),
            "repository_id": repository_id(path),
        }),
    }
}

/// `POST /orgs/{org}/attestations/bulk-list` (or `/users/{username}/…`): every listing of
/// the owner (its own and its repositories') for each digest asked, `per_page` entries a page, `after` an offset.
fn bulk_answer(
    state: &State,
    request: &Request<Vec<u8>>,
    org: &str,
    query: &BTreeMap<String, String>,
) -> Answer {
    if state.bulk_missing || request.method() != axum::http::Method::POST {
        return json_answer(404, &json!({"message": "Not Found"}));
    }
    let Ok(body) = serde_json::from_slice::<Value>(request.body()) else {
        return json_answer(400, &json!({"message": "Problems parsing JSON"}));
    };
    let Some(digests) = body["subject_digests"].as_array() else {
        return json_answer(422, &json!({"message": "subject_digests is required"}));
    };
    let mut entries: Vec<(String, Value)> = Vec::new();
    let mut asked: Vec<String> = Vec::new();
    for digest in digests.iter().filter_map(Value::as_str) {
        asked.push(digest.to_owned());
        for (path, bundles) in &state.listings {
            let org_path = format!("/orgs/{org}/attestations/{digest}");
            let repo_path = path.starts_with(&format!("/repos/{org}/"))
                && path.ends_with(&format!("/attestations/{digest}"));
            if *path == org_path || repo_path {
                for (index, bundle) in bundles.iter().enumerate() {
                    entries.push((digest.to_owned(), listed_json(state, path, index, bundle)));
                }
            }
        }
    }
    let per_page = query
        .get("per_page")
        .and_then(|text| text.parse().ok())
        .unwrap_or(30usize)
        .max(1);
    let per_page = state.page_size.unwrap_or(per_page);
    let start: usize = query
        .get("after")
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    let mut by_digest = serde_json::Map::new();
    if start == 0 {
        for digest in &asked {
            by_digest.insert(digest.clone(), Value::Null);
        }
    }
    for (digest, listed) in entries.iter().skip(start).take(per_page) {
        match by_digest.get_mut(digest) {
            Some(Value::Array(list)) => list.push(listed.clone()),
            _ => {
                by_digest.insert(digest.clone(), Value::Array(vec![listed.clone()]));
            }
        }
    }
    let has_next = start + per_page < entries.len();
    json_answer(
        200,
        &json!({
            "attestations_subject_digests": by_digest,
            "page_info": {
                "has_next": has_next,
                "has_previous": start > 0,
                "next": if has_next { (start + per_page).to_string() } else { String::new() },
                "previous": "",
            },
        }),
    )
}

fn respond(state: &mut State, request: &Request<Vec<u8>>) -> Answer {
    let now = unix_now();
    if let Some(limit) = state.rate_limit.as_mut() {
        if limit.times > 0 {
            limit.times -= 1;
            let (status, reset) = (limit.status, now + limit.reset_in);
            let mut answer = json_answer(
                status,
                &json!({"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com/rest/rate-limit"}),
            );
            answer.1.extend([
                ("x-ratelimit-limit", "60".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", reset.to_string()),
            ]);
            return answer;
        }
    }
    let path = request.uri().path().to_owned();
    if let Some(installation) = path
        .strip_prefix("/app/installations/")
        .and_then(|rest| rest.strip_suffix("/access_tokens"))
    {
        return access_token_answer(state, request, installation);
    }
    if state.app.is_some() && !path.starts_with("/bundles/") && !authorized(state, request) {
        return json_answer(
            401,
            &json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
        );
    }
    if let Some(index) = path.strip_prefix("/bundles/") {
        return bundle_answer(state, index);
    }
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    for (prefix, personal) in [("/orgs/", false), ("/users/", true)] {
        if let Some(owner) = path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("/attestations/bulk-list"))
        {
            if state.user_accounts.iter().any(|user| user == owner) != personal {
                return json_answer(404, &json!({"message": "Not Found"}));
            }
            return bulk_answer(state, request, owner, &query);
        }
    }
    let not_found =
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"});
    let Some(bundles) = state.listings.get(&path) else {
        return json_answer(404, &not_found);
    };
    let per_page = state
        .page_size
        .or_else(|| query.get("per_page").and_then(|text| text.parse().ok()))
        .unwrap_or(30)
        .max(1);
    let page: usize = query
        .get("page")
        .and_then(|text| text.parse().ok())
        .unwrap_or(1)
        .max(1);
    let start = (page - 1) * per_page;
    let listed: Vec<Value> = bundles
        .iter()
        .enumerate()
        .skip(start)
        .take(per_page)
        .map(|(index, bundle)| listed_json(state, &path, index, bundle))
        .collect();
    let mut body = json!({ "attestations": listed });
    if state.padding > 0 {
        body["padding"] = Value::String(" ".repeat(state.padding));
    }
    let body = body.to_string().into_bytes();
    let etag = format!("W/\"{}\"", sha256_digest(&body));
    let mut headers = vec![
        ("content-type", "application/json; charset=utf-8".to_owned()),
        ("etag", etag.clone()),
        ("x-ratelimit-limit", "60".to_owned()),
        ("x-ratelimit-remaining", "59".to_owned()),
        ("x-ratelimit-reset", (now + 3600).to_string()),
    ];
    if start + per_page < bundles.len() {
        headers.push((
            "link",
            format!(
                "<http://{}{path}?per_page={per_page}&page={}>; rel=\"next\"",
                request
                    .headers()
                    .get("host")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("127.0.0.1"),
                page + 1
            ),
        ));
    }
    if header(request.headers(), "if-none-match").as_deref() == Some(etag.as_str()) {
        return (304, headers, Vec::new());
    }
    (200, headers, body)
}

/// `bundle_url`s name the listing's path and the bundle's position in it.
fn bundle_key(path: &str, index: usize) -> String {
    format!("{index}{}", path.replace('/', "~"))
}

fn bundle_answer(state: &State, key: &str) -> Answer {
    let found = state.listings.iter().find_map(|(path, bundles)| {
        bundles
            .iter()
            .enumerate()
            .find(|(index, _)| bundle_key(path, *index) == key)
            .map(|(_, bundle)| bundle.clone())
    });
    match found {
        Some(bundle) => (
            200,
            vec![("content-type", "application/json".to_owned())],
            bundle.into_bytes(),
        ),
        None => json_answer(404, &json!({"message": "Not Found"})),
    }
}
