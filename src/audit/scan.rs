//! One audit run: list what runs, check each distinct image once (a bounded number at a
//! time, through the same checker and caches as admissions), then [`assess`](super::assess).

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};

use super::{assess, AuditReport, CHECK_CONCURRENCY};
use crate::check::ImageChecker;
use crate::cluster::workloads::{list_inventory, WorkloadListError};
use crate::policy::{Destination, Policy};
use crate::registry::Registry;

/// Bounds of one run.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub max_pods: usize,
    pub max_images: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_pods: super::DEFAULT_MAX_PODS,
            max_images: super::DEFAULT_MAX_IMAGES,
        }
    }
}

/// Audits the cluster behind `client` under `policy`.
pub async fn scan<R: Registry>(
    client: kube::Client,
    checker: &ImageChecker<R>,
    policy: &Policy,
    limits: ScanLimits,
) -> Result<AuditReport, WorkloadListError> {
    let inventory = list_inventory(client, limits.max_pods).await?;
    let (images, not_checked) = inventory.distinct_images(limits.max_images);
    let now = jiff::Timestamp::now();
    let outcomes: BTreeMap<_, _> = stream::iter(images)
        .map(|image| async move {
            let check = checker
                .check_at(policy, &image, &Destination::Unselected, now)
                .await;
            (image, check.outcome)
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .collect()
        .await;
    Ok(assess(&inventory, &outcomes, not_checked, policy, now))
}
