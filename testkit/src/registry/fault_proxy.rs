//! A counting, fault-injecting HTTP/1.1 proxy to put in front of a registry,
//! and a port that only counts connection attempts.
//!
//! The proxy parses each request (so it counts requests, not connections,
//! and keep-alive works), records it, and either forwards it to the
//! registry or answers for it as the active fault says. Faults are matched
//! by path prefix (and optionally method), first match wins, optionally for
//! a limited number of requests, so a test can say "the first manifest GET
//! gets a 429, then the registry answers".

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::http1::{self, Connection, Duplex, LoopbackServer, Request, Response};
use super::oci::TestRegistry;
use super::tls::{self, TestCa};

/// How the proxy answers a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 401 with `WWW-Authenticate: Basic realm="…"`, whatever the request
    /// carried, as a registry that wants credentials the client lacks.
    Unauthorized,
    /// 404 with the OCI error code that fits the path (`MANIFEST_UNKNOWN`,
    /// `BLOB_UNKNOWN`, else `NAME_UNKNOWN`).
    NotFound,
    /// 429 `TOOMANYREQUESTS` with `Retry-After: <seconds>`.
    TooManyRequests {
        /// The `Retry-After` value, in seconds.
        retry_after_seconds: u32,
    },
    /// 500 `UNKNOWN`.
    InternalServerError,
    /// Any status, with an OCI error body.
    Status(u16),
    /// Reads the request and never answers, until the client hangs up or
    /// the proxy is dropped (then the connection closes).
    Stall,
    /// Waits this long, then forwards: a slow registry.
    Delay(Duration),
    /// Forwards, then sends the registry's status line, headers (with the
    /// full Content-Length) and half of the body, and closes the
    /// connection: a truncated answer.
    Truncate,
    /// Forwards, then sends the registry's status line, headers and half of
    /// the body, and never the rest (until the client hangs up or the proxy
    /// is dropped).
    StallMidBody,
    /// Forwards, then flips the lowest bit of the body's last byte, as a
    /// corrupting cache or disk would.
    CorruptBody,
    /// Forwards, then replaces the body with these bytes (headers kept,
    /// Content-Length adjusted), as a substituting registry would.
    ReplaceBody(Vec<u8>),
}

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// e.g. `GET`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Path and query, as sent.
    pub target: String,
    /// Whether it carried an `Authorization` header.
    pub authorized: bool,
    /// The fault applied to it, if any.
    pub fault: Option<Fault>,
}

#[derive(Debug, Clone)]
struct FaultRule {
    method: Option<String>,
    path_prefix: String,
    fault: Fault,
    /// How many more requests it applies to; `None`: all.
    remaining: Option<usize>,
}

#[derive(Default)]
struct ProxyState {
    rules: Mutex<Vec<FaultRule>>,
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
    stalled: AtomicUsize,
}

/// Where the proxy forwards to.
#[derive(Clone)]
struct Upstream {
    address: SocketAddr,
    /// `http://HOST:PORT` / `https://HOST:PORT`, for rewriting `Location`.
    base_url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A running proxy on a loopback port, stopped when dropped.
pub struct FaultProxy {
    server: LoopbackServer,
    state: Arc<ProxyState>,
    ca: Option<TestCa>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// A plain-HTTP proxy in front of `registry` (which may use TLS: the
    /// proxy trusts its CA).
    pub fn start(registry: &dyn TestRegistry) -> FaultProxy {
        FaultProxy::start_to(&registry.base_url(), registry.ca_pem().as_deref(), false)
    }

    /// A proxy in front of `registry` that itself serves HTTPS with a
    /// certificate from a fresh CA ([`FaultProxy::ca_pem`]): e.g. to put
    /// TLS in front of a plain-HTTP registry.
    pub fn start_tls(registry: &dyn TestRegistry) -> FaultProxy {
        FaultProxy::start_to(&registry.base_url(), registry.ca_pem().as_deref(), true)
    }

    /// A proxy in front of `upstream_base_url` (`http://127.0.0.1:PORT` or
    /// `https://…`, verified against `upstream_ca_pem`); `serve_tls` makes
    /// the proxy's own side HTTPS.
    pub fn start_to(
        upstream_base_url: &str,
        upstream_ca_pem: Option<&str>,
        serve_tls: bool,
    ) -> FaultProxy {
        let (scheme, host) = upstream_base_url
            .trim_end_matches('/')
            .split_once("://")
            .unwrap_or_else(|| panic!("{upstream_base_url:?} is not an http(s) URL"));
        let address: SocketAddr = host
            .parse()
            .unwrap_or_else(|_| panic!("the upstream {host:?} is not an IP:PORT address"));
        let upstream_tls = match scheme {
            "http" => None,
            "https" => Some(tls::rustls_client_config(upstream_ca_pem.unwrap_or_else(
                || panic!("an HTTPS upstream ({upstream_base_url}) needs its CA"),
            ))),
            other => panic!("unsupported upstream scheme {other:?}"),
        };
        let upstream = Upstream {
            address,
            base_url: upstream_base_url.trim_end_matches('/').to_owned(),
            tls: upstream_tls,
        };
        let ca = serve_tls.then(TestCa::new);
        let server_tls = ca
            .as_ref()
            .map(|ca| ca.issue_server_identity().rustls_server_config());
        let state = Arc::new(ProxyState::default());
        let handler_state = state.clone();
        let server = LoopbackServer::start("fault-proxy", server_tls.clone(), move |connection| {
            handler_state.connections.fetch_add(1, Ordering::SeqCst);
            serve_connection(connection, &handler_state, &upstream, server_tls.is_some());
        });
        FaultProxy { server, state, ca }
    }

    /// `http://127.0.0.1:PORT` (or `https://` from [`FaultProxy::start_tls`]).
    pub fn base_url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.server.address())
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.address().to_string()
    }

    /// The CA of the proxy's own certificate ([`FaultProxy::start_tls`]).
    pub fn ca_pem(&self) -> Option<String> {
        self.ca.as_ref().map(TestCa::certificate_pem)
    }

    /// Applies `fault` to every request whose path starts with
    /// `path_prefix` (e.g. `/v2/acme/api/manifests/`; `/` for all), until
    /// [`FaultProxy::clear_faults`]. Earlier rules win.
    pub fn inject(&self, path_prefix: &str, fault: Fault) {
        self.add_rule(None, path_prefix, fault, None);
    }

    /// Like [`FaultProxy::inject`], for the next `times` matching requests
    /// only.
    pub fn inject_times(&self, path_prefix: &str, fault: Fault, times: usize) {
        self.add_rule(None, path_prefix, fault, Some(times));
    }

    /// Like [`FaultProxy::inject`], for requests with `method` only.
    pub fn inject_for_method(&self, method: &str, path_prefix: &str, fault: Fault) {
        self.add_rule(Some(method), path_prefix, fault, None);
    }

    /// Applies `fault` to every request.
    pub fn inject_everywhere(&self, fault: Fault) {
        self.inject("/", fault);
    }

    /// Removes every fault: requests are forwarded again (stalled ones stay
    /// stalled).
    pub fn clear_faults(&self) {
        self.state
            .rules
            .lock()
            .expect("the fault rules are never poisoned")
            .clear();
    }

    /// Every request received so far as (method, path without query),
    /// oldest first.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.recorded_requests()
            .into_iter()
            .map(|request| (request.method, request.path))
            .collect()
    }

    /// Every request received so far, with details.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .expect("the request log is never poisoned")
            .clone()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        self.state
            .requests
            .lock()
            .expect("the request log is never poisoned")
            .len()
    }

    /// How many requests with `method` had a path starting with
    /// `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.recorded_requests()
            .iter()
            .filter(|request| request.method == method && request.path.starts_with(path_prefix))
            .count()
    }

    /// Requests counted by "METHOD path", for readable assertion messages.
    pub fn request_summary(&self) -> BTreeMap<String, usize> {
        let mut summary = BTreeMap::new();
        for (method, path) in self.requests() {
            *summary.entry(format!("{method} {path}")).or_insert(0) += 1;
        }
        summary
    }

    /// Forgets the requests received so far (not the faults).
    pub fn clear_requests(&self) {
        self.state
            .requests
            .lock()
            .expect("the request log is never poisoned")
            .clear();
    }

    /// How many TCP connections clients opened to the proxy.
    pub fn connection_count(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// How many requests are being (or were) stalled.
    pub fn stalled_count(&self) -> usize {
        self.state.stalled.load(Ordering::SeqCst)
    }

    fn add_rule(
        &self,
        method: Option<&str>,
        path_prefix: &str,
        fault: Fault,
        times: Option<usize>,
    ) {
        self.state
            .rules
            .lock()
            .expect("the fault rules are never poisoned")
            .push(FaultRule {
                method: method.map(str::to_owned),
                path_prefix: path_prefix.to_owned(),
                fault,
                remaining: times,
            });
    }
}

impl ProxyState {
    /// The fault for `request` (consuming one use of a limited rule) and
    /// records the request.
    fn fault_for(&self, request: &Request) -> Option<Fault> {
        let fault = {
            let mut rules = self
                .rules
                .lock()
                .expect("the fault rules are never poisoned");
            let position = rules.iter().position(|rule| {
                rule.remaining != Some(0)
                    && request.path().starts_with(&rule.path_prefix)
                    && rule
                        .method
                        .as_ref()
                        .is_none_or(|method| method.eq_ignore_ascii_case(&request.method))
            });
            position.map(|position| {
                let rule = &mut rules[position];
                if let Some(remaining) = &mut rule.remaining {
                    *remaining -= 1;
                }
                rule.fault.clone()
            })
        };
        self.requests
            .lock()
            .expect("the request log is never poisoned")
            .push(RecordedRequest {
                method: request.method.clone(),
                path: request.path().to_owned(),
                target: request.target.clone(),
                authorized: request.header("authorization").is_some(),
                fault: fault.clone(),
            });
        fault
    }
}

fn serve_connection(
    mut connection: Connection,
    state: &ProxyState,
    upstream: &Upstream,
    tls: bool,
) {
    let mut upstream_connection: Option<BufReader<Box<dyn Duplex>>> = None;
    while let Some(mut request) = http1::next_request(&mut connection) {
        let client_wants_close = request.wants_close();
        let head_only = request.method.eq_ignore_ascii_case("HEAD");
        let fault = state.fault_for(&request);
        let response = match fault {
            Some(Fault::Stall) => {
                state.stalled.fetch_add(1, Ordering::SeqCst);
                hold_until_stopping(&mut connection);
                return;
            }
            Some(Fault::Unauthorized) => {
                Response::oci_error(401, "UNAUTHORIZED", "authentication required").with_header(
                    "WWW-Authenticate",
                    "Basic realm=\"provenance-gate testkit fault proxy\"",
                )
            }
            Some(Fault::NotFound) => {
                let code = if request.path().contains("/manifests/") {
                    "MANIFEST_UNKNOWN"
                } else if request.path().contains("/blobs/") {
                    "BLOB_UNKNOWN"
                } else {
                    "NAME_UNKNOWN"
                };
                Response::oci_error(404, code, "not found (injected by the fault proxy)")
            }
            Some(Fault::TooManyRequests {
                retry_after_seconds,
            }) => Response::oci_error(429, "TOOMANYREQUESTS", "too many requests")
                .with_header("Retry-After", &retry_after_seconds.to_string()),
            Some(Fault::InternalServerError) => Response::oci_error(
                500,
                "UNKNOWN",
                "internal error (injected by the fault proxy)",
            ),
            Some(Fault::Status(status)) => {
                Response::oci_error(status, "UNKNOWN", "status injected by the fault proxy")
            }
            forwarded => {
                if let Some(Fault::Delay(delay)) = &forwarded {
                    std::thread::sleep(*delay);
                }
                strip_hop_by_hop(&mut request.headers);
                let mut response = match forward(&mut upstream_connection, upstream, &request) {
                    Ok(response) => response,
                    Err(error) => {
                        Response::new(502, format!("fault proxy: upstream failed: {error}"))
                    }
                };
                strip_hop_by_hop(&mut response.headers);
                rewrite_location(&mut response, upstream, &request, tls);
                match forwarded {
                    Some(Fault::CorruptBody) => {
                        if let Some(last) = response.body.last_mut() {
                            *last ^= 0x01;
                        }
                    }
                    Some(Fault::ReplaceBody(bytes)) => response.body = bytes,
                    Some(Fault::StallMidBody) => {
                        state.stalled.fetch_add(1, Ordering::SeqCst);
                        let half = response.body.len() / 2;
                        send_partial(&mut connection, &response, half);
                        hold_until_stopping(&mut connection);
                        return;
                    }
                    Some(Fault::Truncate) => {
                        let half = response.body.len() / 2;
                        send_partial(&mut connection, &response, half);
                        return;
                    }
                    _ => {}
                }
                response
            }
        };
        let stream = connection.stream.get_mut();
        if http1::write_response(stream, &response, head_only).is_err() || client_wants_close {
            return;
        }
    }
}

/// Sends one request upstream on the connection's upstream socket,
/// reconnecting once if a kept-alive socket was closed meanwhile.
fn forward(
    upstream_connection: &mut Option<BufReader<Box<dyn Duplex>>>,
    upstream: &Upstream,
    request: &Request,
) -> std::io::Result<Response> {
    for attempt in 0..2 {
        if upstream_connection.is_none() {
            *upstream_connection = Some(connect(upstream)?);
        }
        let connection = upstream_connection.as_mut().expect("connected just above");
        let result = http1::write_request(connection.get_mut(), request)
            .and_then(|()| http1::read_response(connection, &request.method));
        match result {
            Ok(response) => {
                let closing = response.closed_by_peer
                    || response
                        .header("connection")
                        .is_some_and(|value| value.eq_ignore_ascii_case("close"));
                if closing {
                    *upstream_connection = None;
                }
                return Ok(response);
            }
            Err(error) => {
                *upstream_connection = None;
                if attempt == 1 {
                    return Err(error);
                }
            }
        }
    }
    unreachable!("the loop returns on its second attempt")
}

fn connect(upstream: &Upstream) -> std::io::Result<BufReader<Box<dyn Duplex>>> {
    let socket = TcpStream::connect_timeout(&upstream.address, Duration::from_secs(5))?;
    socket.set_nodelay(true)?;
    // The kit's registries answer in milliseconds; a minute means a bug.
    socket.set_read_timeout(Some(Duration::from_secs(60)))?;
    let stream: Box<dyn Duplex> = match &upstream.tls {
        None => Box::new(socket),
        Some(config) => {
            let name = ServerName::IpAddress(upstream.address.ip().into());
            let connection = rustls::ClientConnection::new(config.clone(), name)
                .map_err(std::io::Error::other)?;
            Box::new(rustls::StreamOwned::new(connection, socket))
        }
    };
    Ok(BufReader::new(stream))
}

/// Connection management is per hop: the proxy keeps its own.
fn strip_hop_by_hop(headers: &mut Vec<(String, String)>) {
    headers.retain(|(name, _)| {
        ![
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ]
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop))
    });
}

/// An absolute `Location` that names the registry (or names the proxy with
/// the registry's scheme, as distribution builds it from the Host header)
/// is rewritten to the proxy, so uploads through the proxy stay on it.
fn rewrite_location(response: &mut Response, upstream: &Upstream, request: &Request, tls: bool) {
    let Some(host) = request.header("host").map(str::to_owned) else {
        return;
    };
    let proxy_base = format!("{}://{host}", if tls { "https" } else { "http" });
    for (name, value) in &mut response.headers {
        if !name.eq_ignore_ascii_case("location") {
            continue;
        }
        for prefix in [
            upstream.base_url.clone(),
            format!("http://{host}"),
            format!("https://{host}"),
        ] {
            if let Some(rest) = value.strip_prefix(&prefix) {
                *value = format!("{proxy_base}{rest}");
                break;
            }
        }
    }
}

/// Writes the head (with the full Content-Length) and `length` body bytes.
fn send_partial(connection: &mut Connection, response: &Response, length: usize) {
    let stream = connection.stream.get_mut();
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, response.reason);
    for (name, value) in &response.headers {
        if !name.eq_ignore_ascii_case("content-length")
            && !name.eq_ignore_ascii_case("transfer-encoding")
        {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", response.body.len()));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&response.body[..length]);
    let _ = stream.flush();
}

/// Holds a stalled connection open until the proxy stops or the client hangs up: a client
/// that gave up must not leave a thread behind, or a long run under stalls piles them up.
/// The socket's short read timeout (set at accept) paces the loop.
fn hold_until_stopping(connection: &mut Connection) {
    let mut byte = [0u8; 1];
    while !connection.stopping.load(Ordering::SeqCst) {
        match connection.stream.get_mut().read(&mut byte) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// A loopback port that accepts TCP connections, counts them and closes
/// them at once: where a test points an image that must cause no network
/// traffic at all. Stopped when dropped.
pub struct ConnectionRecorder {
    server: LoopbackServer,
    connections: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ConnectionRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRecorder")
            .field("host", &self.host())
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl ConnectionRecorder {
    /// Starts listening on `127.0.0.1:0`.
    pub fn start() -> ConnectionRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let server = LoopbackServer::serve("connection-recorder", listener, move |socket, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        });
        ConnectionRecorder {
            server,
            connections,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.address().to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// How many connections were attempted so far.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
