//! What runs in the cluster, for the audit: every Namespace and every Pod that has not
//! finished, read from the API server in bounded pages.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};

use super::namespace_watch::namespace_info;
use crate::admission::images::list_images;
use crate::audit::{Inventory, PodFacts, RunningImage};

/// Objects per list page: the API server's own default page size for kubectl.
const PAGE_SIZE: u32 = 500;
/// One page may take this long.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the cluster's workloads could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadListError {
    #[error("failed to list {what} from the API server: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("failed to list {what} from the API server within {timeout:?} per page")]
    TimedOut {
        what: &'static str,
        timeout: Duration,
    },
}

/// Lists the Namespaces and at most `max_pods` Pods that are pending or running (finished
/// Pods run nothing); the Pods beyond the bound are counted, not read.
pub async fn list_inventory(
    client: kube::Client,
    max_pods: usize,
) -> Result<Inventory, WorkloadListError> {
    let mut namespaces = Vec::new();
    list_pages(
        Api::<Namespace>::all(client.clone()),
        "namespaces",
        |namespace| {
            namespaces.extend(namespace_info(&namespace.metadata));
            true
        },
    )
    .await?;
    let mut pods = Vec::new();
    let mut pods_not_read = 0;
    list_pages(Api::<Pod>::all(client), "pods", |pod| {
        if let Some(facts) = running_pod(&pod) {
            if pods.len() < max_pods {
                pods.push(facts);
            } else {
                pods_not_read += 1;
            }
        }
        true
    })
    .await?;
    Ok(Inventory {
        namespaces,
        pods,
        pods_not_read,
    })
}

async fn list_pages<K>(
    api: Api<K>,
    what: &'static str,
    mut each: impl FnMut(K) -> bool,
) -> Result<(), WorkloadListError>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        let page = tokio::time::timeout(PAGE_TIMEOUT, api.list(&params))
            .await
            .map_err(|_| WorkloadListError::TimedOut {
                what,
                timeout: PAGE_TIMEOUT,
            })?
            .map_err(|source| WorkloadListError::Api { what, source })?;
        let next = page
            .metadata
            .continue_
            .clone()
            .filter(|token| !token.is_empty());
        for item in page.items {
            if !each(item) {
                return Ok(());
            }
        }
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// What the audit keeps of a Pod; `None` when it has finished (or has no name).
pub fn running_pod(pod: &Pod) -> Option<PodFacts> {
    let phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| format!("{}/{}", owner.kind, owner.name));
    // The same reading of a pod spec as admission's, so the audit sees every image the
    // webhook would check (init, ephemeral, image volumes).
    let object = serde_json::to_value(pod).ok()?;
    let images = list_images(&object, "/spec")
        .unwrap_or_default()
        .into_iter()
        .map(|image| RunningImage {
            container: image.annotation_key(),
            image: image.image,
        })
        .collect();
    Some(PodFacts {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        owner,
        created: meta.creation_timestamp.as_ref().map(|time| time.0),
        images,
    })
}
