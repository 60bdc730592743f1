//! Just enough HTTP/1.1 for the kit's own servers (the token server and the
//! fault-injecting proxy): read a message head and its body (Content-Length
//! or chunked), write a message with a Content-Length. Threads and blocking
//! sockets, one thread per connection, keep-alive honoured.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A message head larger than this is refused: the kit's peers are test
/// clients and registries, whose heads are a few hundred bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A body larger than this is refused, so a runaway client cannot make a
/// test process allocate without bound.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// A bidirectional byte stream: a TCP socket, with or without TLS.
pub(crate) trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The request target as sent: path and query.
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// One HTTP response as received or to send.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// The peer ended the body by closing the connection, so the connection
    /// cannot be reused.
    pub(crate) closed_by_peer: bool,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The path without the query.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Every value of the query parameter `name`, percent-decoded.
    pub(crate) fn query_values(&self, name: &str) -> Vec<String> {
        let Some((_, query)) = self.target.split_once('?') else {
            return Vec::new();
        };
        query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .filter(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
            .collect()
    }

    /// Whether the client asked to close the connection after this exchange.
    pub(crate) fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }
}

impl Response {
    pub(crate) fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers: Vec::new(),
            body: body.into(),
            closed_by_peer: false,
        }
    }

    pub(crate) fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// An OCI distribution error body (`{"errors":[{code, message}]}`).
    pub(crate) fn oci_error(status: u16, code: &str, message: &str) -> Response {
        let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
        Response::new(status, body.to_string()).with_header("Content-Type", "application/json")
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Reads one request; `Ok(None)` when the peer closed the connection
/// cleanly before sending anything (the end of a keep-alive connection).
pub(crate) fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let Some(head) = read_head(reader)? else {
        return Ok(None);
    };
    let mut lines = head.into_iter();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("malformed request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("unsupported protocol {version:?}")));
    }
    let headers = parse_headers(lines)?;
    let body = read_body(reader, &headers, BodyFraming::Request)?.0;
    Ok(Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body,
    }))
}

/// Reads one response to a request with `request_method`.
pub(crate) fn read_response(
    reader: &mut impl BufRead,
    request_method: &str,
) -> io::Result<Response> {
    let head = read_head(reader)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection without answering",
        )
    })?;
    let mut lines = head.into_iter();
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(_version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("malformed status line {status_line:?}")));
    };
    let status: u16 = status
        .parse()
        .map_err(|_| invalid(format!("malformed status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers = parse_headers(lines)?;
    let framing = if request_method.eq_ignore_ascii_case("HEAD")
        || status / 100 == 1
        || status == 204
        || status == 304
    {
        BodyFraming::None
    } else {
        BodyFraming::Response
    };
    let (body, closed_by_peer) = read_body(reader, &headers, framing)?;
    Ok(Response {
        status,
        reason,
        headers,
        body,
        closed_by_peer,
    })
}

/// Writes `request` with a Content-Length (any Transfer-Encoding dropped).
pub(crate) fn write_request(writer: &mut impl Write, request: &Request) -> io::Result<()> {
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    append_headers(&mut head, &request.headers, request.body.len(), true);
    writer.write_all(head.as_bytes())?;
    writer.write_all(&request.body)?;
    writer.flush()
}

/// Writes `response`; `head_only` for a response to HEAD, which keeps the
/// Content-Length of the body it does not send.
pub(crate) fn write_response(
    writer: &mut impl Write,
    response: &Response,
    head_only: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, response.reason);
    // A HEAD response or a 204/304 carries the upstream's own Content-Length
    // (or none); any other gets the length of the body actually sent.
    let set_length = !(head_only || response.status == 204 || response.status == 304);
    append_headers(
        &mut head,
        &response.headers,
        response.body.len(),
        set_length,
    );
    writer.write_all(head.as_bytes())?;
    if !head_only {
        writer.write_all(&response.body)?;
    }
    writer.flush()
}

fn append_headers(
    head: &mut String,
    headers: &[(String, String)],
    body_length: usize,
    set_length: bool,
) {
    for (name, value) in headers {
        let drop = name.eq_ignore_ascii_case("transfer-encoding")
            || (set_length && name.eq_ignore_ascii_case("content-length"));
        if !drop {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if set_length {
        head.push_str(&format!("Content-Length: {body_length}\r\n"));
    }
    head.push_str("\r\n");
}

enum BodyFraming {
    /// No body whatever the headers say (HEAD, 1xx, 204, 304).
    None,
    /// A request: no length means no body.
    Request,
    /// A response: no length means "until the connection closes".
    Response,
}

fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    framing: BodyFraming,
) -> io::Result<(Vec<u8>, bool)> {
    if matches!(framing, BodyFraming::None) {
        return Ok((Vec::new(), false));
    }
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return read_chunked(reader).map(|body| (body, false));
    }
    if let Some(length) = header(headers, "content-length") {
        let length: usize = length
            .trim()
            .parse()
            .map_err(|_| invalid(format!("malformed Content-Length {length:?}")))?;
        if length > MAX_BODY_BYTES {
            return Err(invalid(format!("a {length}-byte body is too large")));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        return Ok((body, false));
    }
    match framing {
        BodyFraming::Response => {
            let mut body = Vec::new();
            reader
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_end(&mut body)?;
            if body.len() > MAX_BODY_BYTES {
                return Err(invalid("a close-delimited body is too large".into()));
            }
            Ok((body, true))
        }
        _ => Ok((Vec::new(), false)),
    }
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?
            .ok_or_else(|| invalid("the connection closed inside a chunked body".into()))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("malformed chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while let Some(trailer) = read_line(reader)? {
                if trailer.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(invalid("a chunked body is too large".into()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// The lines of a message head, without the empty line that ends it.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let Some(line) = read_line(reader)? else {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed inside a message head",
            ));
        };
        // Tolerate empty lines before a request line (RFC 9112 section 2.2).
        if line.is_empty() && lines.is_empty() {
            continue;
        }
        if line.is_empty() {
            return Ok(Some(lines));
        }
        total += line.len();
        if total > MAX_HEAD_BYTES {
            return Err(invalid("a message head is too large".into()));
        }
        lines.push(line);
    }
}

/// One CRLF- (or LF-) terminated line; `None` at end of stream.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader
        .take(MAX_HEAD_BYTES as u64 + 2)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(invalid("a header line is too long or unterminated".into()));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("a header line is not UTF-8".into()))
}

fn parse_headers(lines: impl Iterator<Item = String>) -> io::Result<Vec<(String, String)>> {
    lines
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(format!("malformed header line {line:?}")))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        decoded.push(byte);
                        index += 3;
                    }
                    Err(_) => {
                        decoded.push(b'%');
                        index += 1;
                    }
                }
            }
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A loopback listener whose accept loop runs on its own thread, handing
/// each connection to `handle` on a thread of its own, until dropped.
pub(crate) struct LoopbackServer {
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

/// What a connection handler gets: the stream (TLS already wrapped, the
/// handshake happens on first use) and whether the server is stopping.
pub(crate) struct Connection {
    pub(crate) stream: BufReader<Box<dyn Duplex>>,
    pub(crate) stopping: Arc<AtomicBool>,
}

impl LoopbackServer {
    /// Binds `127.0.0.1:0` and serves until dropped; `tls` makes it HTTPS.
    pub(crate) fn start(
        name: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        handle: impl Fn(Connection) + Send + Sync + 'static,
    ) -> LoopbackServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|error| panic!("{name}: cannot bind a loopback port: {error}"));
        LoopbackServer::serve(name, listener, move |socket, stopping| {
            let stream: Box<dyn Duplex> = match &tls {
                Some(config) => match rustls::ServerConnection::new(config.clone()) {
                    Ok(connection) => Box::new(rustls::StreamOwned::new(connection, socket)),
                    Err(_) => return,
                },
                None => Box::new(socket),
            };
            handle(Connection {
                stream: BufReader::new(stream),
                stopping,
            });
        })
    }

    /// Serves an already bound listener, handing raw sockets to `handle`.
    pub(crate) fn serve(
        name: &str,
        listener: TcpListener,
        handle: impl Fn(TcpStream, Arc<AtomicBool>) + Send + Sync + 'static,
    ) -> LoopbackServer {
        let address = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let stopping = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let accept_stopping = stopping.clone();
        let accept_thread = std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || {
                for socket in listener.incoming() {
                    if accept_stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(socket) = socket else { continue };
                    // Reads wake up now and then, so a handler notices a
                    // stopping server even on an idle keep-alive connection.
                    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = socket.set_nodelay(true);
                    let handle = handle.clone();
                    let stopping = accept_stopping.clone();
                    let _ = std::thread::Builder::new()
                        .name("testkit-connection".into())
                        .spawn(move || handle(socket, stopping));
                }
            })
            .expect("the OS starts a thread");
        LoopbackServer {
            address,
            stopping,
            accept_thread: Some(accept_thread),
        }
    }

    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so its thread sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the next request of a keep-alive connection, waiting through the
/// read timeouts that exist only to notice a stopping server. `None` when
/// the peer closed, the server is stopping, or the bytes are not HTTP.
pub(crate) fn next_request(connection: &mut Connection) -> Option<Request> {
    loop {
        if connection.stopping.load(Ordering::SeqCst) {
            return None;
        }
        // Wait for the first byte of a request without consuming it, so a
        // timeout never splits a message.
        match connection.stream.fill_buf() {
            Ok([]) => return None,
            Ok(_) => break,
            Err(error) if is_timeout(&error) => continue,
            Err(_) => return None,
        }
    }
    // Once a request has begun, read it through; a stalling client gets the
    // same patience as a slow one, bounded by the stop flag.
    let mut reader = PatientReader {
        inner: &mut connection.stream,
        stopping: &connection.stopping,
    };
    read_request(&mut reader).ok().flatten()
}

pub(crate) fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A reader that retries on read timeouts until the server stops.
struct PatientReader<'a, R> {
    inner: &'a mut R,
    stopping: &'a AtomicBool,
}

impl<R: BufRead> Read for PatientReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(error) if is_timeout(&error) && !self.stopping.load(Ordering::SeqCst) => {
                    continue
                }
                other => return other,
            }
        }
    }
}

impl<R: BufRead> BufRead for PatientReader<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.inner.fill_buf() {
                Err(error) if is_timeout(&error) && !self.stopping.load(Ordering::SeqCst) => {
                    continue
                }
                // Re-borrow to satisfy the borrow checker across the loop.
                Err(error) => return Err(error),
                Ok(_) => break,
            }
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
    }
}
