//! One audit run: list what runs, check each distinct image once (a bounded number at a
//! time, through the same checker and caches as admissions; once per environment it runs in
//! where its rule narrows itself per environment), then [`assess`](super::assess).

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};

use super::{assess, AuditReport, ImageOutcomes, Inventory, CHECK_CONCURRENCY};
use crate::check::reference::ImageReference;
use crate::check::ImageChecker;
use crate::cluster::workloads::{list_inventory, WorkloadListError};
use crate::policy::{Destination, ImageClass, Policy};
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
    let checks = stream::iter(judged_for(&inventory, policy, images))
        .map(|(image, destination)| async move {
            let environment = destination.clone().unwrap_or_default();
            let check = checker.check_at(policy, &image, &environment, now).await;
            (image, destination, check.outcome)
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut outcomes = ImageOutcomes::default();
    for (image, destination, outcome) in checks {
        match destination {
            Some(destination) => outcomes.insert_in(destination_name(destination), image, outcome),
            None => outcomes.insert_everywhere(image, outcome),
        }
    }
    Ok(assess(&inventory, &outcomes, not_checked, policy, now))
}

/// Each image once (`None`: judged alike everywhere), or once per environment it runs in
/// when its rule narrows itself per environment: the caches hold the facts, so only the
/// judgement is repeated.
fn judged_for(
    inventory: &Inventory,
    policy: &Policy,
    images: Vec<String>,
) -> Vec<(String, Option<Destination>)> {
    let no_labels = BTreeMap::new();
    let labels: BTreeMap<&str, &BTreeMap<String, String>> = inventory
        .namespaces
        .iter()
        .map(|namespace| (namespace.name.as_str(), &namespace.labels))
        .collect();
    let mut environments: BTreeMap<&str, BTreeSet<Option<&str>>> = BTreeMap::new();
    for pod in &inventory.pods {
        let namespace_labels = labels
            .get(pod.namespace.as_str())
            .copied()
            .unwrap_or(&no_labels);
        let (environment, _) = policy.mode_for_namespace(namespace_labels);
        for running in &pod.images {
            environments
                .entry(running.image.as_str())
                .or_default()
                .insert(environment);
        }
    }
    let mut judged = Vec::with_capacity(images.len());
    for image in images {
        let narrowed = ImageReference::parse(&image).is_ok_and(|reference| {
            matches!(policy.classify_image(&reference.name()), ImageClass::Rule(rule) if !rule.environments().is_empty())
        });
        let Some(environments) = environments.get(image.as_str()).filter(|_| narrowed) else {
            judged.push((image, None));
            continue;
        };
        for environment in environments {
            judged.push((image.clone(), Some(Destination::of(*environment))));
        }
    }
    judged
}

fn destination_name(destination: Destination) -> Option<String> {
    match destination {
        Destination::Environment(name) => Some(name),
        Destination::Unselected | Destination::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{PodFacts, RunningImage};
    use crate::cluster::NamespaceInfo;

    #[test]
    fn images_are_judged_per_environment_only_where_their_rule_narrows() {
        let policy = Policy::from_yaml(
            "version: 1
environments:
  - {name: production, namespaceSelector: {matchLabels: {env: production}}, mode: enforce}
rules:
  - name: narrowed
    images: [\"ghcr.io/acme/api\"]
    owners: [{name: acme}]
    environments: [{name: production, refs: [\"refs/tags/v*\"]}]
  - name: plain
    images: [\"ghcr.io/acme/**\"]
    owners: [{name: acme}]
",
        )
        .expect("valid");
        let namespace = |name: &str, env: Option<&str>| NamespaceInfo {
            name: name.into(),
            labels: env
                .map(|env| BTreeMap::from([("env".to_owned(), env.to_owned())]))
                .unwrap_or_default(),
            annotations: BTreeMap::new(),
        };
        let pod = |namespace: &str, images: &[&str]| PodFacts {
            namespace: namespace.into(),
            name: "p".into(),
            owner: None,
            created: None,
            images: images
                .iter()
                .map(|image| RunningImage {
                    container: "c".into(),
                    image: image.to_string(),
                })
                .collect(),
        };
        let (api, web) = ("ghcr.io/acme/api:1", "ghcr.io/acme/web:1");
        let inventory = Inventory {
            namespaces: vec![
                namespace("shop", Some("production")),
                namespace("lab", None),
            ],
            pods: vec![pod("shop", &[api, web]), pod("lab", &[api, web])],
            pods_not_read: 0,
        };
        let judged = judged_for(&inventory, &policy, vec![api.into(), web.into()]);
        assert_eq!(
            judged,
            [
                (api.to_owned(), Some(Destination::Unselected)),
                (
                    api.to_owned(),
                    Some(Destination::Environment("production".into()))
                ),
                (web.to_owned(), None),
            ]
        );
    }
}
