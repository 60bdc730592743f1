//! The webhook's registry client: bound to the policy in force, and counted in the metrics.
//!
//! Image references come from pod specs, so the registry client is the last line that keeps
//! a pod from making the webhook connect anywhere it names. [`PolicyRegistry`] refuses every
//! request for an image that the current policy does not route to a rule, and a rule's image
//! patterns always write their registry host out (policy load refuses host globs), so the
//! hosts a pod can make the webhook contact are exactly those the rules name; a rule of `**`
//! alone (every image) is the one deliberate exception, and `policy check` warns about it. Images are
//! classified by their canonical name, the one spelling of the host the patterns use. The
//! underlying client still allows any host: the policy, which may be reloaded, decides. The
//! image checker already fetches nothing for exempt and unmatched images; this makes that a
//! property of the client too.
//!
//! The policy's `registries` (plain HTTP hosts, CA bundles) shape the HTTP clients, so the
//! client is rebuilt when a reloaded policy changes them, and kept (with its connection pools
//! and cached tokens) when it does not.

use std::future::Future;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::check::reference::{Digest, ImageReference};
use crate::cluster::PolicySource;
use crate::evidence::metrics::RegistryRequestLabels;
use crate::policy::{self, ImageClass};
use crate::registry::{
    Descriptor, FetchedManifest, HostOptions, HttpRegistry, Registry, RegistryConfigError,
    RegistryError, RegistryOperation, RegistryOptions, RequestObserver,
};

/// Distinct `registry` label values at most; later hosts are counted as `other`. The hosts
/// come from pod specs (within what the policy routes to a rule), so they are bounded here
/// too rather than trusted to the policy's globs.
const MAX_REGISTRY_LABELS: usize = 64;

/// Feeds `provenance_gate_registry_requests_total{registry,operation,code}`; `code` is the
/// final HTTP status, `0` when no response arrived.
#[derive(Debug, Clone)]
pub struct RegistryMetrics {
    requests: Family<RegistryRequestLabels, Counter>,
    hosts: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl RegistryMetrics {
    pub fn new(requests: Family<RegistryRequestLabels, Counter>) -> Self {
        RegistryMetrics {
            requests,
            hosts: Arc::default(),
        }
    }

    fn label(&self, registry: &str) -> String {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if hosts.contains(registry) {
            return registry.to_owned();
        }
        if hosts.len() >= MAX_REGISTRY_LABELS {
            return "other".to_owned();
        }
        hosts.insert(registry.to_owned());
        registry.to_owned()
    }
}

impl RequestObserver for RegistryMetrics {
    fn request_finished(&self, registry: &str, operation: RegistryOperation, status: Option<u16>) {
        tracing::debug!(registry, %operation, status, "registry request finished");
        self.requests
            .get_or_create(&RegistryRequestLabels {
                registry: self.label(registry),
                operation: operation.as_str().to_owned(),
                code: status.unwrap_or(0).to_string(),
            })
            .inc();
    }
}

/// The HTTP client and the policy `registries` it was built for.
struct Built {
    registries: Vec<policy::Registry>,
    client: Arc<HttpRegistry>,
}

/// A [`Registry`] that only serves images the current policy routes to a rule, over an HTTP
/// client matching the current policy's `registries`.
pub struct PolicyRegistry {
    policy: Arc<dyn PolicySource>,
    /// Everything but `hosts`, which come from the policy.
    options: RegistryOptions,
    built: ArcSwap<Built>,
    /// Serialises rebuilds, so that concurrent reviews build one client, not one each.
    rebuilding: Mutex<()>,
}

impl std::fmt::Debug for PolicyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRegistry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PolicyRegistry {
    /// Builds the client for the policy in force now (none yet: no registry settings).
    /// `options.hosts` is replaced by the policy's `registries`.
    pub fn new(
        policy: Arc<dyn PolicySource>,
        options: RegistryOptions,
    ) -> Result<Self, RegistryConfigError> {
        let registries = policy
            .current()
            .map(|policy| policy.registries().to_vec())
            .unwrap_or_default();
        let client = Arc::new(build(&options, &registries)?);
        Ok(PolicyRegistry {
            policy,
            options,
            built: ArcSwap::from_pointee(Built { registries, client }),
            rebuilding: Mutex::new(()),
        })
    }

    /// The client for `image`, or a refusal when the current policy does not cover it.
    fn client_for(&self, image: &ImageReference) -> Result<Arc<HttpRegistry>, RegistryError> {
        let refused = || RegistryError::NotAllowed {
            registry: image.registry().to_owned(),
        };
        let policy = self.policy.current().ok_or_else(refused)?;
        if !matches!(policy.classify_image(&image.name()), ImageClass::Rule(_)) {
            return Err(refused());
        }
        let built = self.built.load();
        if built.registries == policy.registries() {
            return Ok(Arc::clone(&built.client));
        }
        let _rebuilding = self
            .rebuilding
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let built = self.built.load_full();
        if built.registries == policy.registries() {
            return Ok(Arc::clone(&built.client));
        }
        let registries = policy.registries().to_vec();
        let client = match build(&self.options, &registries) {
            Ok(client) => {
                tracing::info!("registry settings changed; registry client rebuilt");
                Arc::new(client)
            }
            Err(error) => {
                // Remembered with the old client, so the failure is logged once per policy
                // change rather than retried (and logged) for every image.
                tracing::error!(
                    %error,
                    "the policy's registry settings are unusable; keeping the previous ones"
                );
                Arc::clone(&built.client)
            }
        };
        self.built.store(Arc::new(Built {
            registries,
            client: Arc::clone(&client),
        }));
        Ok(client)
    }
}

fn build(
    options: &RegistryOptions,
    registries: &[policy::Registry],
) -> Result<HttpRegistry, RegistryConfigError> {
    let mut options = options.clone();
    options.hosts = registries
        .iter()
        .map(HostOptions::from_policy)
        .collect::<Result<_, _>>()?;
    HttpRegistry::new(options)
}

impl Registry for PolicyRegistry {
    fn resolve(
        &self,
        image: &ImageReference,
    ) -> impl Future<Output = Result<Digest, RegistryError>> + Send {
        let client = self.client_for(image);
        async move { client?.resolve(image).await }
    }

    fn fetch_manifest(
        &self,
        image: &ImageReference,
        digest: &Digest,
    ) -> impl Future<Output = Result<FetchedManifest, RegistryError>> + Send {
        let client = self.client_for(image);
        async move { client?.fetch_manifest(image, digest).await }
    }

    fn fetch_blob(
        &self,
        image: &ImageReference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<u8>, RegistryError>> + Send {
        let client = self.client_for(image);
        async move { client?.fetch_blob(image, descriptor, limit).await }
    }

    fn referrers(
        &self,
        image: &ImageReference,
        digest: &Digest,
        artifact_type_prefix: &str,
    ) -> impl Future<Output = Result<Vec<Descriptor>, RegistryError>> + Send {
        let client = self.client_for(image);
        async move { client?.referrers(image, digest, artifact_type_prefix).await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PolicyCell;
    use crate::policy::Policy;
    use crate::registry::AllowedRegistries;

    #[test]
    fn registry_labels_past_the_limit_are_other() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = crate::evidence::metrics::Metrics::register(&mut registry);
        let observer = RegistryMetrics::new(metrics.registry_requests.clone());
        for index in 0..MAX_REGISTRY_LABELS + 20 {
            let host = format!("registry-{index}.example");
            observer.request_finished(&host, RegistryOperation::Resolve, Some(200));
        }
        observer.request_finished("registry-0.example", RegistryOperation::Resolve, Some(200));
        let text = crate::evidence::metrics::encode(&registry);
        let series: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("provenance_gate_registry_requests_total{"))
            .collect();
        assert_eq!(series.len(), MAX_REGISTRY_LABELS + 1, "{text}");
        assert!(
            text.contains(r#"registry="other",operation="resolve",code="200"} 20"#),
            "{text}"
        );
        assert!(
            text.contains(r#"registry="registry-0.example",operation="resolve",code="200"} 2"#),
            "{text}"
        );
    }

    const POLICY: &str = r#"
version: 1
exemptImages: ["registry.k8s.io/**"]
unmatchedImages: allow
rules:
  - name: acme
    images: ["127.0.0.1:1/acme/**"]
    owners: [{name: acme}]
"#;

    #[tokio::test]
    async fn refuses_images_the_policy_does_not_route_to_a_rule() {
        let cell = Arc::new(PolicyCell::new(Some(
            Policy::from_yaml(POLICY).expect("valid policy"),
        )));
        let registry =
            PolicyRegistry::new(cell.clone(), RegistryOptions::new(AllowedRegistries::Any))
                .expect("client");
        for image in [
            "registry.k8s.io/pause:3.9",
            "docker.io/library/nginx:1",
            "127.0.0.1:1/other/api:v1",
        ] {
            let reference = ImageReference::parse(image).expect("valid reference");
            match registry.resolve(&reference).await {
                Err(RegistryError::NotAllowed { .. }) => {}
                other => panic!("{image}: expected a refusal, got {other:?}"),
            }
        }
        // Covered: the request is attempted (and fails: nothing listens on port 1).
        let covered = ImageReference::parse("127.0.0.1:1/acme/api:v1").expect("reference");
        match registry.resolve(&covered).await {
            Err(RegistryError::NotAllowed { .. }) => panic!("a covered image was refused"),
            Err(_) => {}
            Ok(digest) => panic!("unexpected digest {digest:?}"),
        }
        // No policy at all: nothing is covered.
        let empty = PolicyRegistry::new(
            Arc::new(PolicyCell::new(None)),
            RegistryOptions::new(AllowedRegistries::Any),
        )
        .expect("client");
        assert!(matches!(
            empty.resolve(&covered).await,
            Err(RegistryError::NotAllowed { .. })
        ));
    }

    #[tokio::test]
    async fn rebuilds_the_client_when_the_registry_settings_change() {
        let cell = Arc::new(PolicyCell::new(Some(
            Policy::from_yaml(POLICY).expect("valid policy"),
        )));
        let registry =
            PolicyRegistry::new(cell.clone(), RegistryOptions::new(AllowedRegistries::Any))
                .expect("client");
        let covered = ImageReference::parse("127.0.0.1:1/acme/api:v1").expect("reference");
        let first = registry.client_for(&covered).expect("client");
        assert!(Arc::ptr_eq(
            &first,
            &registry.client_for(&covered).expect("client")
        ));
        cell.replace(
            Policy::from_yaml(&format!(
                "{POLICY}registries:\n  - {{host: \"127.0.0.1:1\", insecure: true}}\n"
            ))
            .expect("valid policy"),
        );
        let second = registry.client_for(&covered).expect("client");
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(
            &second,
            &registry.client_for(&covered).expect("client")
        ));
    }
}
