//! `POST /validate` and `POST /mutate`, for the server to mount. Any content type is
//! accepted (the body is parsed as JSON whatever it claims), and the body is limited in size
//! and in the time it may take to arrive. Who sent the request is the [`Caller`] the server
//! put in the request's extensions (unauthenticated when there is none).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest as _, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use crate::evidence::records::Caller;
use crate::registry::Registry;

use super::response::{AdmissionResponse, AdmissionReviewResponse};
use super::review::ApiVersion;
use super::{handle_review, Endpoint, ReceivedAt, WebhookState};

/// The webhook's routes over `state`.
pub fn router<R: Registry + 'static>(state: Arc<WebhookState<R>>) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route("/validate", post(validate::<R>))
        .route("/mutate", post(mutate::<R>))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn validate<R: Registry + 'static>(
    State(state): State<Arc<WebhookState<R>>>,
    request: Request,
) -> Response {
    answer(&state, request, Endpoint::Validate).await
}

async fn mutate<R: Registry + 'static>(
    State(state): State<Arc<WebhookState<R>>>,
    request: Request,
) -> Response {
    answer(&state, request, Endpoint::Mutate).await
}

async fn answer<R: Registry + 'static>(
    state: &WebhookState<R>,
    request: Request,
    endpoint: Endpoint,
) -> Response {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default();
    let http1 = request.version() < Version::HTTP_2;
    let timeout = state.settings.body_timeout;
    let received = request
        .extensions()
        .get::<ReceivedAt>()
        .map_or_else(tokio::time::Instant::now, |received| received.0);
    // A client trickling its body would otherwise hold the connection and its buffers for
    // as long as it likes. A body already in when the deadline has passed is still read.
    let body = Bytes::from_request(request, &());
    let Ok(body) = tokio::time::timeout_at(received + timeout, body).await else {
        tracing::warn!(?timeout, "admission review body not received in time");
        let message = format!(
            "malformed AdmissionReview: the request body did not arrive within {timeout:?}"
        );
        let mut response = unreadable(StatusCode::REQUEST_TIMEOUT, 408, &message);
        if http1 {
            // The rest of the body may still be on its way: do not read it as a next request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return response;
    };
    match body {
        Ok(body) => {
            Json(handle_review(state, &body, endpoint, (caller, ReceivedAt(received))).await)
                .into_response()
        }
        // The API server never sends more than 3 MiB, so this is somebody else; the status
        // says what happened and the body still says it as an AdmissionReview.
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = state.settings.max_body_bytes;
            tracing::warn!(limit, "admission review body too large");
            let message =
                format!("malformed AdmissionReview: the request body is larger than the {limit} bytes accepted");
            unreadable(StatusCode::PAYLOAD_TOO_LARGE, 413, &message)
        }
        Err(rejection) => {
            let message = format!(
                "malformed AdmissionReview: the request body could not be read: {}",
                rejection.body_text()
            );
            unreadable(StatusCode::BAD_REQUEST, 400, &message)
        }
    }
}

/// A body that was never read: there is no uid to echo.
fn unreadable(status: StatusCode, code: u16, message: &str) -> Response {
    let response = AdmissionResponse::deny("", code, message);
    let review = AdmissionReviewResponse::new(ApiVersion::V1, response);
    (status, Json(review)).into_response()
}
