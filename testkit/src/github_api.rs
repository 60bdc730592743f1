//! A FAKE of GitHub's artifact attestations REST API, because GitHub cannot be reached from
//! the tests: `GET /repos/{owner}/{repo}/attestations/{subject_digest}` and
//! `GET /orgs/{org}/attestations/{subject_digest}` answering the documented shape
//! (`{"attestations": [{"bundle": {…}, "repository_id": …, "bundle_url": …}]}`) with the
//! bundles a test adds (minted by [`TestInstance::mint`](crate::TestInstance::mint)),
//! `Link: <…>; rel="next"` pagination, `ETag` / `If-None-Match` → `304`, bundles behind
//! `bundle_url` (optionally on another host), rate-limit answers (403/429 with
//! `x-ratelimit-*` headers) and oversized pages on demand. Every request is recorded.
//!
//! Plain HTTP on `127.0.0.1`; stops when dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::axum_server::AxumServer;
use crate::registry::sha256_digest;

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubRequest {
    /// Path and query.
    pub target: String,
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
    requests: Vec<GithubRequest>,
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
                async move { answer(&state, &request) }
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

fn answer(state: &Mutex<State>, request: &Request<Body>) -> Response<Body> {
    let mut state = locked(state);
    let target = request
        .uri()
        .path_and_query()
        .map(|target| target.as_str().to_owned())
        .unwrap_or_default();
    let (status, headers, body) = respond(&mut state, request);
    state.requests.push(GithubRequest {
        target,
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

fn respond(state: &mut State, request: &Request<Body>) -> Answer {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
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
    let path = request.uri().path();
    if let Some(index) = path.strip_prefix("/bundles/") {
        return bundle_answer(state, index);
    }
    let not_found =
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"});
    let Some(bundles) = state.listings.get(path) else {
        return json_answer(404, &not_found);
    };
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
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
        .map(|(index, bundle)| match &state.bundle_url_base {
            Some(base) => json!({
                "bundle": null,
                "repository_id": 804070735u64,
                "bundle_url": format!("{base}/bundles/{}", bundle_key(path, index)),
            }),
            None => json!({
                "bundle": serde_json::from_str::<Value>(bundle).expect("minted bundles are JSON"),
                "repository_id": 804070735u64,
            }),
        })
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
