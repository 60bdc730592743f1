//! Bounds on what clients of the webhook port can hold: connections (refused past the cap,
//! before the TLS handshake), reviews in flight (queued past the cap, before their body is
//! read), and who the caller is (from the verified client certificate, if any).
//!
//! Together with the header, body and handshake timeouts, these keep the memory of the
//! server bounded however many clients connect and however slowly they send.

use std::future::Ready;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admission::ReceivedAt;
use crate::evidence::records::Caller;

/// Accepts a TCP connection only while fewer than the limit are open; the permit lives as
/// long as the connection's stream, so a closed connection frees its place.
#[derive(Debug, Clone)]
pub(super) struct ConnectionLimit {
    permits: Arc<Semaphore>,
    limit: usize,
    refused: Counter,
    /// Refusals logged so far are counted here too; only the first and every power of two
    /// is logged, so that a flood of connections does not flood the log.
    logged: Arc<AtomicU64>,
}

impl ConnectionLimit {
    pub fn new(limit: usize, refused: Counter) -> Self {
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            refused,
            logged: Arc::default(),
        }
    }
}

impl<S> axum_server::accept::Accept<TcpStream, S> for ConnectionLimit {
    type Stream = Limited<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Limited<TcpStream>, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        // As axum-server's default acceptor does: without it, a response written in two
        // segments waits for the client's delayed ACK (40 ms on Linux) before its second.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "failed to disable Nagle's algorithm on a webhook connection");
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            // Dropping the stream closes the connection.
            self.refused.inc();
            let refusals = self.logged.fetch_add(1, Ordering::Relaxed) + 1;
            if refusals.is_power_of_two() {
                tracing::warn!(
                    limit = self.limit,
                    refusals,
                    "connection refused: the webhook's connection limit is reached"
                );
            }
            return std::future::ready(Err(io::Error::other("connection limit reached")));
        };
        std::future::ready(Ok((
            Limited {
                inner: stream,
                _permit: permit,
            },
            service,
        )))
    }
}

/// A stream holding its place under the connection limit.
#[derive(Debug)]
pub(super) struct Limited<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Lets at most the semaphore's permits of reviews past this point at once; the others wait
/// here, before their body is read, so that waiting costs no body buffer. The wait counts
/// against the body timeout ([`ReceivedAt`]): a place is held for the body at most until
/// the review's own deadline, so a queue of bodiless reviews drains as fast as it formed.
pub(super) async fn limit_in_flight(
    State(permits): State<Arc<Semaphore>>,
    mut request: Request,
    next: Next,
) -> Response {
    request
        .extensions_mut()
        .insert(ReceivedAt(tokio::time::Instant::now()));
    // The semaphore is never closed, so acquiring only waits.
    let _permit = permits.acquire().await;
    next.run(request).await
}

/// Puts the request's [`Caller`] into its extensions: authenticated with the subject of the
/// client certificate when the handshake verified one (rustls reports peer certificates
/// only then, and asks for them only when a client CA is configured).
pub(super) async fn identify_caller(mut request: Request, next: Next) -> Response {
    let caller = request
        .extensions()
        .get::<Arc<axum_server::tls::TlsInfo>>()
        .and_then(|info| info.peer_certificates.first())
        .map(|leaf| Caller::verified(crate::server::tls::certificate_subject(leaf)))
        .unwrap_or_default();
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_disable_nagle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        assert!(!stream.nodelay().unwrap(), "a fresh socket has Nagle on");
        let limit = ConnectionLimit::new(1, Counter::default());
        let (limited, ()) = axum_server::accept::Accept::accept(&limit, stream, ())
            .await
            .unwrap();
        assert!(limited.inner.nodelay().unwrap());
    }
}
