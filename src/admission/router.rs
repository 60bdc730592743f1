//! `POST /validate` and `POST /mutate`, for the server to mount. Any content type is
//! accepted (the body is parsed as JSON whatever it claims), and the body is size-limited.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use crate::registry::Registry;

use super::response::{AdmissionResponse, AdmissionReviewResponse};
use super::review::ApiVersion;
use super::{handle_review, Endpoint, WebhookState};

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
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(&state, body, Endpoint::Validate).await
}

async fn mutate<R: Registry + 'static>(
    State(state): State<Arc<WebhookState<R>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(&state, body, Endpoint::Mutate).await
}

async fn answer<R: Registry + 'static>(
    state: &WebhookState<R>,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Response {
    match body {
        Ok(body) => Json(handle_review(state, &body, endpoint).await.to_json()).into_response(),
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
    (status, Json(review.to_json())).into_response()
}
