//! A request body as the router hands it to the review handling, at both endpoints. The
//! answer is always an AdmissionReview that echoes the request's uid when it had one, and
//! while the registry fails, nothing that runs a non-exempt image is admitted on CREATE: every
//! namespace is in enforce mode (the example policy's default; no namespace is known, and an
//! unknown namespace is judged in enforce mode).

use std::sync::{Arc, OnceLock};

use provenance_gate::admission::images::{list_images, pod_spec_pointer};
use provenance_gate::admission::review::{decode, Operation};
use provenance_gate::admission::{
    handle_review, Endpoint, ReceivedAt, WebhookSettings, WebhookState,
};
use provenance_gate::check::reference::{Digest, ImageReference};
use provenance_gate::check::{CheckSettings, ImageChecker};
use provenance_gate::cluster::{ClusterEvent, EventRecorder, NamespaceMap, PolicyCell};
use provenance_gate::evidence::metrics::Metrics;
use provenance_gate::evidence::records::{Caller, DecisionRecord, DecisionSink};
use provenance_gate::policy::ImageClass;
use provenance_gate::registry::{Descriptor, FetchedManifest, Registry, RegistryError};
use serde_json::Value;

use crate::{block_on, embedded_roots, example_policy, now};

/// A registry that is down: every image check fails, so only exempt images may pass.
struct Down;

impl Down {
    fn error(image: &ImageReference) -> RegistryError {
        RegistryError::Connection {
            registry: image.registry().to_owned(),
            reason: "down for the fuzz target".to_owned(),
        }
    }
}

impl Registry for Down {
    async fn resolve(&self, image: &ImageReference) -> Result<Digest, RegistryError> {
        Err(Self::error(image))
    }

    async fn fetch_manifest(
        &self,
        image: &ImageReference,
        _digest: &Digest,
    ) -> Result<FetchedManifest, RegistryError> {
        Err(Self::error(image))
    }

    async fn fetch_blob(
        &self,
        image: &ImageReference,
        _descriptor: &Descriptor,
        _limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        Err(Self::error(image))
    }

    async fn referrers(
        &self,
        image: &ImageReference,
        _digest: &Digest,
        _artifact_type_prefix: &str,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        Err(Self::error(image))
    }
}

/// Records and Events are dropped: kept, they would grow over millions of inputs.
struct Discard;

impl DecisionSink for Discard {
    fn write(&self, _record: &DecisionRecord) {}
}

impl EventRecorder for Discard {
    fn record(&self, _event: ClusterEvent) {}
}

fn state() -> &'static WebhookState<Down> {
    static STATE: OnceLock<WebhookState<Down>> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut registry = prometheus_client::registry::Registry::default();
        let now = now();
        WebhookState {
            checker: Arc::new(ImageChecker::new(
                Down,
                embedded_roots(),
                CheckSettings::default(),
            )),
            policy: Arc::new(PolicyCell::new(Some(example_policy().clone()))),
            namespaces: Arc::new(NamespaceMap::default()),
            events: Arc::new(Discard),
            records: Arc::new(Discard),
            metrics: Metrics::register(&mut registry),
            settings: WebhookSettings::default(),
            clock: Arc::new(move || now),
            pull_secrets: None,
        }
    })
}

pub(crate) fn admission_review(data: &[u8]) {
    let must_deny = runs_a_checked_image_on_create(data);
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let answer = serde_json::to_value(block_on(handle_review(
            state(),
            data,
            endpoint,
            (Caller::default(), ReceivedAt(tokio::time::Instant::now())),
        )))
        .expect("an answer serialises");
        assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
        let response = &answer["response"];
        assert!(response["uid"].is_string(), "{answer}");
        let allowed = response["allowed"]
            .as_bool()
            .unwrap_or_else(|| panic!("no allowed: {answer}"));
        if let Some(image) = &must_deny {
            assert!(
                !allowed,
                "{endpoint:?} admitted {image:?} while the registry is down: {answer}"
            );
        }
    }
}

/// The first image a CREATE of a pod or pod controller runs that is not exempt, when the
/// request decodes.
fn runs_a_checked_image_on_create(data: &[u8]) -> Option<String> {
    let request = decode(data).ok()?;
    if request.operation != Operation::Create || request.sub_resource.is_some() {
        return None;
    }
    let pointer = pod_spec_pointer(&request.kind)?;
    let object: &Value = request.object.as_ref()?;
    let images = list_images(object, pointer).ok()?;
    let policy = example_policy();
    images
        .into_iter()
        .map(|listed| listed.image)
        .find(|image| match ImageReference::parse(image) {
            Ok(reference) => {
                !matches!(policy.classify_image(&reference.name()), ImageClass::Exempt)
            }
            Err(_) => true,
        })
}
