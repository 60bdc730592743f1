//! Every distinct image of one review, checked concurrently under the review's budget.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use prometheus_client::metrics::histogram::Histogram;
use tracing::Instrument as _;

use super::reference::ImageReference;
use super::{FailureKind, ImageCheck, ImageChecker, ImageOutcome};
use crate::policy::{Destination, ImageClass, Policy};
use crate::registry::{DockerConfig, Registry};

/// A review's time: `total` from `since`, the review's arrival, so that whatever it waited
/// for before its checks (a place in flight, its body, lookups) is not granted again.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub total: Duration,
    pub since: tokio::time::Instant,
}

impl Budget {
    /// A budget of `total` from now.
    pub fn from_now(total: Duration) -> Budget {
        Budget {
            total,
            since: tokio::time::Instant::now(),
        }
    }
}

/// Checks each image concurrently for `destination` (the namespace's environment), with the
/// workload's `logins` (its imagePullSecrets; empty: the webhook's own credentials only);
/// whatever is unfinished when the budget runs out fails with "verification timed out".
pub async fn check_all<R: Registry + 'static>(
    checker: &Arc<ImageChecker<R>>,
    policy: &Arc<Policy>,
    (images, logins): (&[String], &Arc<DockerConfig>),
    destination: &Destination,
    now: jiff::Timestamp,
    budget: Budget,
    verification_duration: &Histogram,
) -> Vec<ImageCheck> {
    let deadline = budget.since + budget.total;
    // Many digests of one GitHub owner are asked for together first; bounded to half of
    // what is left, after which the checks list what is left one by one.
    let prefetch_until = tokio::time::Instant::now()
        + deadline.saturating_duration_since(tokio::time::Instant::now()) / 2;
    let _ = tokio::time::timeout_at(
        prefetch_until,
        checker.prefetch_github(policy, images, logins),
    )
    .await;
    let tasks: Vec<_> = images
        .iter()
        .map(|image| {
            let checker = Arc::clone(checker);
            let policy = Arc::clone(policy);
            let destination = destination.clone();
            let verification_duration = verification_duration.clone();
            let image = image.clone();
            let logins = Arc::clone(logins);
            // The span's parent is the review's, so registry and verification logs keep its uid.
            let span = tracing::info_span!("image_check", image = %image);
            let mut check = Box::pin(
                async move {
                    let started = Instant::now();
                    let check = checker
                        .check_for_workload(&policy, &image, &destination, now, &logins)
                        .await;
                    let covered = matches!(
                        &check.outcome,
                        ImageOutcome::Verified { .. } | ImageOutcome::Failed { rule: Some(_), .. }
                    );
                    if covered {
                        verification_duration.observe(started.elapsed().as_secs_f64());
                    }
                    tracing::debug!(
                        verified = matches!(check.outcome, ImageOutcome::Verified { .. }),
                        "image checked"
                    );
                    check
                }
                .instrument(span),
            );
            // A cached image is answered on the first poll: then it costs no task, and the
            // review no trip through the scheduler's queue. Any other check is spawned
            // rather than awaited in place: one that outlives the budget still finishes
            // (within its own per-image timeout) and fills the cache, so the API server's
            // retry is answered at once.
            // A panic is caught here as the spawned task's would be.
            let first_poll =
                std::panic::catch_unwind(AssertUnwindSafe(|| (&mut check).now_or_never()));
            match first_poll {
                Ok(Some(done)) => Checking::Done(done),
                Ok(None) => Checking::Spawned(tokio::spawn(check)),
                Err(_) => Checking::Panicked,
            }
        })
        .collect();
    let mut checks = Vec::with_capacity(images.len());
    for (image, task) in images.iter().zip(tasks) {
        let task = match task {
            Checking::Done(check) => {
                checks.push(check);
                continue;
            }
            Checking::Spawned(task) => task,
            Checking::Panicked => {
                checks.push(failed_unexpectedly(policy, image, "the check panicked"));
                continue;
            }
        };
        let check = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(check)) => check,
            Ok(Err(error)) => failed_unexpectedly(policy, image, error),
            Err(_) => unfinished(
                policy,
                image,
                FailureKind::Timeout,
                format!(
                    "verification timed out (the review's budget of {:.1}s ran out)",
                    budget.total.as_secs_f64()
                ),
            ),
        };
        checks.push(check);
    }
    checks
}

/// One image's check: answered on its first poll, or still running in its own task.
enum Checking {
    Done(ImageCheck),
    Spawned(tokio::task::JoinHandle<ImageCheck>),
    Panicked,
}

fn failed_unexpectedly(policy: &Policy, image: &str, error: impl std::fmt::Display) -> ImageCheck {
    unfinished(
        policy,
        image,
        FailureKind::NotVerified,
        format!("verification failed unexpectedly: {error}"),
    )
}

/// A failed check for an image whose check did not finish.
fn unfinished(policy: &Policy, image: &str, kind: FailureKind, reason: String) -> ImageCheck {
    let rule = ImageReference::parse(image).ok().and_then(|reference| {
        match policy.classify_image(&reference.name()) {
            ImageClass::Rule(rule) => Some(rule.name().to_owned()),
            ImageClass::Exempt | ImageClass::Unmatched(_) => None,
        }
    });
    ImageCheck {
        image: image.to_owned(),
        pinned: None,
        outcome: ImageOutcome::Failed {
            rule,
            digest: None,
            kind,
            reason,
        },
    }
}
