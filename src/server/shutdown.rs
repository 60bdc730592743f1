//! The order of a graceful stop: the signal, then a delay in which the webhook still serves
//! but hands its HTTP/1.1 connections back, then the drain of what is in flight.
//!
//! The API server keeps a pool of connections per webhook Service, keyed by the Service's
//! name, not by the endpoint it dialled: after a replica leaves the endpoints, reviews keep
//! arriving over the connections already open to it. Closing an idle one races the API
//! server's next request on it, and a POST lost that way is not retried: the creation fails
//! with "use of closed network connection". During the delay every HTTP/1.1 answer says
//! `Connection: close`, so each connection is closed by the client after an answer, never
//! under a request. HTTP/2 connections are ended with GOAWAY by the drain, which clients retry
//! safely.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Version};
use axum::middleware::Next;
use axum::response::Response;

/// Set at the first signal; read by `/readyz` and by [`close_connections_when_stopping`].
#[derive(Debug, Clone, Default)]
pub(super) struct Stopping(Arc<AtomicBool>);

impl Stopping {
    pub fn begin(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Once stopping, asks HTTP/1.x clients to close the connection after this answer (hyper
/// then closes it too, once the answer is written).
pub(super) async fn close_connections_when_stopping(
    State(stopping): State<Stopping>,
    request: Request,
    next: Next,
) -> Response {
    let http1 = request.version() < Version::HTTP_2;
    let mut response = next.run(request).await;
    if http1 && stopping.is_set() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Resolves at the next SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
pub(super) async fn signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

/// Serves on for `delay` after the first signal; a second signal cuts the delay short (a
/// developer's second Ctrl-C).
pub(super) async fn delay(delay: std::time::Duration) {
    if delay.is_zero() {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        signal = signal() => {
            if let Ok(name) = signal {
                tracing::info!(signal = name, "second signal: the shutdown delay is cut short");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt as _;

    fn router(stopping: Stopping) -> axum::Router {
        axum::Router::new()
            .route("/validate", post(|| async { "answer" }))
            .layer(axum::middleware::from_fn_with_state(
                stopping,
                close_connections_when_stopping,
            ))
    }

    async fn connection_header(stopping: &Stopping, version: Version) -> Option<HeaderValue> {
        let request = Request::post("/validate")
            .version(version)
            .body(Body::empty())
            .expect("request");
        let response = router(stopping.clone())
            .oneshot(request)
            .await
            .expect("response");
        response.headers().get(header::CONNECTION).cloned()
    }

    #[tokio::test]
    async fn only_http1_answers_after_the_signal_ask_to_close() {
        let stopping = Stopping::default();
        for version in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
            assert_eq!(
                connection_header(&stopping, version).await,
                None,
                "{version:?}"
            );
        }
        stopping.begin();
        for version in [Version::HTTP_10, Version::HTTP_11] {
            assert_eq!(
                connection_header(&stopping, version).await,
                Some(HeaderValue::from_static("close")),
                "{version:?}"
            );
        }
        // A connection header is illegal in HTTP/2: GOAWAY ends those connections.
        assert_eq!(connection_header(&stopping, Version::HTTP_2).await, None);
    }
}
