//! The admission webhook: AdmissionReview in, AdmissionReview out.
//!
//! - [`review`] decodes a review and says what is malformed;
//! - [`images`] lists the images of Pods and pod templates (containers and image volumes),
//!   with their JSON paths;
//! - `workload` orchestrates a Pod or workload review: checks its images under one time
//!   budget (`check::batch`), decides per namespace mode and break-glass (`decision`);
//!   `namespace` judges Namespace writes that declare break-glass or change a mode;
//! - [`patch`], `answer` and [`response`] build the answer;
//! - [`router`] serves `/validate` and `/mutate` with axum.
//!
//! Each review returns its answer and its [`ReviewOutcome`]; [`handle_review`] hands the
//! outcome to the one evidence handle ([`Evidence`]), once. Evidence is written once per
//! admission attempt: `/validate` always writes it (it sees the final object), `/mutate`
//! only when it refuses, since the validating webhooks are then never called. Both
//! endpoints decide the same way, so a refusal comes as early as possible.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use crate::check::ImageChecker;
use crate::cluster::pull_secrets::PullSecrets;
use crate::cluster::{EventRecorder, NamespaceDirectory, PolicySource};
use crate::evidence::metrics::{AdmissionLabels, KindLabel, Metrics, OperationLabel};
use crate::evidence::records::{Caller, DecisionSink};
use crate::evidence::review::{Evidence, ReviewOutcome};
use crate::registry::Registry;

mod answer;
#[cfg(test)]
mod fixtures;
pub mod images;
mod namespace;
pub mod patch;
pub mod response;
pub mod review;
mod router;
mod workload;

pub use crate::evidence::review::record_break_glass_state;
pub use response::{AdmissionResponse, AdmissionReviewResponse, Status};
pub use router::router;

use review::AdmissionRequest;

/// Limits of one review.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Time for all image checks of one review together, below the webhook's timeout
    /// (10 s by default) so that the answer is ours and not the API server's timeout.
    pub review_budget: Duration,
    /// Largest request body accepted; the API server's own limit is 3 MiB.
    pub max_body_bytes: usize,
    /// Most container images checked in one review; an object with more is refused in
    /// enforce mode rather than checked partially.
    pub max_images: usize,
    /// Time to receive a request's whole body once its headers are in; the API server sends
    /// it at once, so only a stalling client needs longer, and it gets a 408.
    pub body_timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            review_budget: crate::defaults::REVIEW_BUDGET,
            max_body_bytes: 3 * 1024 * 1024,
            max_images: 256,
            body_timeout: crate::defaults::BODY_TIMEOUT,
        }
    }
}

/// When a review's headers were in, put into its extensions by whatever makes it wait before
/// the router (the server's cap on reviews in flight). The body must arrive within
/// [`WebhookSettings::body_timeout`] of this, waiting included: a review that held a place
/// in flight without sending its body would otherwise hold it for the whole timeout after
/// every wait, and a queue of such reviews would hold every place in turn.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedAt(pub tokio::time::Instant);

/// Which webhook endpoint a review arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/validate`: decides and writes the evidence.
    Validate,
    /// `/mutate`: decides, pins Pod images to their verified digests, records the
    /// break-glass approver on Namespaces.
    Mutate,
}

/// A clock for break-glass expiry and record times; certificate validity never uses it
/// (that time comes from the bundle's log entry or timestamp).
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// Everything a review needs, shared by all requests.
pub struct WebhookState<R> {
    pub checker: Arc<ImageChecker<R>>,
    pub policy: Arc<dyn PolicySource>,
    pub namespaces: Arc<dyn NamespaceDirectory>,
    pub events: Arc<dyn EventRecorder>,
    pub records: Arc<dyn DecisionSink>,
    pub metrics: Metrics,
    pub settings: WebhookSettings,
    pub clock: Clock,
    /// With `serve --workload-credentials`: the imagePullSecrets of each reviewed workload
    /// are used for its registry requests. `None`: the webhook's own credentials only.
    pub pull_secrets: Option<Arc<PullSecrets>>,
}

impl<R> WebhookState<R> {
    /// The wall clock.
    pub fn system_clock() -> Clock {
        Arc::new(jiff::Timestamp::now)
    }

    /// Where this webhook's reviews leave their evidence.
    fn evidence(&self) -> Evidence<'_> {
        Evidence::new(&*self.records, &*self.events, &self.metrics)
    }
}

/// A review's answer, and what it leaves as evidence.
type Reviewed = (AdmissionResponse, ReviewOutcome);

/// Answers one AdmissionReview sent by `caller`. Never fails: a malformed review gets a 400
/// answer that says what is malformed.
pub async fn handle_review<R: Registry + 'static>(
    state: &WebhookState<R>,
    body: &[u8],
    endpoint: Endpoint,
    (caller, received): (Caller, ReceivedAt),
) -> AdmissionReviewResponse {
    let started = Instant::now();
    let request = match review::decode(body) {
        Ok(request) => AdmissionRequest {
            caller,
            received: received.0,
            ..request
        },
        Err(malformed) => {
            tracing::warn!(uid = %malformed.uid, error = %malformed.error, "malformed admission review");
            count_admission(state, KindLabel::Malformed, OperationLabel::Malformed);
            let message = format!("malformed AdmissionReview: {}", malformed.error);
            let response = AdmissionResponse::deny(&malformed.uid, 400, &message);
            return AdmissionReviewResponse::new(malformed.api_version, response);
        }
    };
    count_admission(
        state,
        KindLabel::of(&request.kind.group, &request.kind.kind),
        request.operation.into(),
    );
    // Every log line of this review, including those of the spawned per-image checks,
    // carries its uid, so an operator can follow one review through registry and verification.
    let span = tracing::info_span!("review", uid = %request.uid);
    let response = async {
        let (response, outcome) =
            if request.kind.group.is_empty() && request.kind.kind == "Namespace" {
                namespace::review_namespace(state, &request, endpoint)
            } else if let Some(spec_pointer) = images::pod_spec_pointer(&request.kind) {
                workload::review_workload(state, &request, endpoint, spec_pointer).await
            } else {
                // The webhook configuration sent a kind that runs no images: nothing to decide.
                tracing::debug!(kind = %request.kind.kind, "kind not inspected");
                (
                    AdmissionResponse::allow(&request.uid),
                    ReviewOutcome::Unjudged,
                )
            };
        state.evidence().record(&outcome);
        response
    }
    .instrument(span)
    .await;
    state
        .metrics
        .admission_duration
        .observe(started.elapsed().as_secs_f64());
    AdmissionReviewResponse::new(request.api_version, response)
}

fn count_admission<R>(state: &WebhookState<R>, kind: KindLabel, operation: OperationLabel) {
    state
        .metrics
        .admissions
        .get_or_create(&AdmissionLabels { kind, operation })
        .inc();
}
