//! The admission router, driven with `tower::ServiceExt::oneshot`: the real AdmissionReview
//! captured from a GKE API server (`tests/data/admission/pod-create.gke.json`) and variations
//! built from it (Deployment, CronJob, init and ephemeral containers, UPDATE, dry-run,
//! Namespace break-glass writes, malformed bodies).
//!
//! The registry here is an in-memory stand-in (`MemoryRegistry`) serving image manifests,
//! referrers and Sigstore bundles minted by the test kit under a throwaway trusted root, so
//! every admitted image went through real signature, certificate-chain and RFC 3161
//! timestamp verification and the real policy. The real registry path (HTTP, referrers API,
//! authentication) is covered by the server integration test (`tests/serve_https.rs`).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};
use tower::ServiceExt;

use provenance_gate::admission::response::{MAX_MESSAGE_CHARS, MAX_WARNING_CHARS};
use provenance_gate::admission::{router, Clock, ReceivedAt, WebhookSettings, WebhookState};
use provenance_gate::check::reference::{Digest, ImageReference};
use provenance_gate::check::{CheckSettings, ImageChecker, MAX_REASON_BYTES};
use provenance_gate::cluster::{
    EventType, NamespaceDirectory, NamespaceInfo, NamespaceLookupError, NamespaceMap, ObjectRef,
    PolicyCell, RecordedEvents,
};
use provenance_gate::decision::breakglass::{
    APPROVED_BY_ANNOTATION, APPROVER_GROUPS_ANNOTATION, EXPIRES_ANNOTATION, REASON_ANNOTATION,
    TICKET_ANNOTATION,
};
use provenance_gate::evidence::metrics::{encode, Metrics};
use provenance_gate::evidence::records::{DecisionRecord, MemorySink};
use provenance_gate::policy::{Mode, Policy};
use provenance_gate::registry::{
    Descriptor, FetchedManifest, Registry, RegistryError, OCI_MANIFEST,
};
use provenance_gate_testkit::{MintSpec, TestInstance};

const GKE_POD_CREATE: &str = include_str!("data/admission/pod-create.gke.json");
const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const NOW: &str = "2026-11-28T10:00:00Z";

const POLICY: &str = r#"
version: 1
defaultMode: enforce
environments:
  - name: production
    namespaceSelector: {matchLabels: {env: production}}
    mode: enforce
  - name: staging
    namespaceSelector: {matchLabels: {env: staging}}
    mode: warn
  - name: development
    namespaceSelector: {matchLabels: {env: dev}}
    mode: observe
exemptImages: ["registry.k8s.io/**"]
unmatchedImages: deny
rules:
  - name: acme
    images: ["ghcr.io/acme/**"]
    repositories: [{name: acme/api, id: "804070735"}]
    workflows: [".github/workflows/release.yml"]
breakGlass:
  maxDuration: 8h
  approvers: {groups: ["sre-oncall"], users: []}
"#;

/// Attested by `acme/api`'s release workflow: verified.
const API: &str = "ghcr.io/acme/api:1.2";
/// Attested too; used where an image must be new to an UPDATE.
const TOOLS: &str = "ghcr.io/acme/tools:1";
/// In the registry without any attestation.
const WORKER: &str = "ghcr.io/acme/worker:2.0";
/// Attested by a fork's pull-request build: verified signature, refused by the rule.
const FORKED: &str = "ghcr.io/acme/forked:1";
/// Its registry never answers in time.
const SLOW: &str = "ghcr.io/acme/slow:1";
/// Exempt by policy.
const PAUSE: &str = "registry.k8s.io/pause:3.9";

// ---------------------------------------------------------------------------------------
// An in-memory registry.

#[derive(Default)]
struct MemoryRegistry {
    /// `registry/repository:tag` → digest.
    tags: HashMap<String, Digest>,
    manifests: HashMap<Digest, FetchedManifest>,
    blobs: HashMap<String, Vec<u8>>,
    referrers: HashMap<Digest, Vec<Descriptor>>,
    /// Repositories (`registry/repository`) whose every answer takes a minute.
    slow: Vec<String>,
}

impl MemoryRegistry {
    fn not_found(image: &ImageReference, what: String) -> RegistryError {
        RegistryError::NotFound {
            registry: image.registry().to_owned(),
            repository: image.repository().to_owned(),
            what,
        }
    }

    async fn stall(&self, image: &ImageReference) {
        if self.slow.contains(&image.name()) {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }

    /// Pushes an image manifest under `reference` and returns its digest.
    fn push_image(&mut self, reference: &str) -> Digest {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
            "layers": [],
            "annotations": {"org.opencontainers.image.ref.name": reference},
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = Digest::of_bytes(&bytes);
        let image = ImageReference::parse(reference).unwrap();
        self.tags.insert(image.to_string(), digest.clone());
        self.manifests.insert(
            digest.clone(),
            FetchedManifest {
                digest: digest.clone(),
                media_type: OCI_MANIFEST.into(),
                bytes,
            },
        );
        digest
    }

    /// Attaches `bundle` to `subject` as an OCI referrer, the way
    /// `actions/attest-build-provenance` does with `push-to-registry: true`.
    fn attach(&mut self, subject: &Digest, bundle: &str) {
        let bundle_digest = Digest::of_bytes(bundle.as_bytes());
        self.blobs
            .insert(bundle_digest.to_string(), bundle.as_bytes().to_vec());
        let referrer = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
            "layers": [{"mediaType": BUNDLE_MEDIA_TYPE, "digest": bundle_digest.to_string(), "size": bundle.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": self.manifests[subject].bytes.len()},
        });
        let bytes = serde_json::to_vec(&referrer).unwrap();
        let digest = Digest::of_bytes(&bytes);
        self.referrers
            .entry(subject.clone())
            .or_default()
            .push(Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: digest.to_string(),
                size: bytes.len() as u64,
                artifact_type: Some(BUNDLE_MEDIA_TYPE.into()),
                annotations: BTreeMap::new(),
                platform: None,
            });
        self.manifests.insert(
            digest.clone(),
            FetchedManifest {
                digest,
                media_type: OCI_MANIFEST.into(),
                bytes,
            },
        );
    }
}

impl Registry for MemoryRegistry {
    async fn resolve(&self, image: &ImageReference) -> Result<Digest, RegistryError> {
        tracing::debug!(%image, "registry resolve");
        self.stall(image).await;
        if let Some(digest) = image.digest() {
            return Ok(digest.clone());
        }
        self.tags
            .get(&image.to_string())
            .cloned()
            .ok_or_else(|| Self::not_found(image, format!("tag {}", image.tag().unwrap_or(""))))
    }

    async fn fetch_manifest(
        &self,
        image: &ImageReference,
        digest: &Digest,
    ) -> Result<FetchedManifest, RegistryError> {
        self.stall(image).await;
        self.manifests
            .get(digest)
            .cloned()
            .ok_or_else(|| Self::not_found(image, format!("manifest {digest}")))
    }

    async fn fetch_blob(
        &self,
        image: &ImageReference,
        descriptor: &Descriptor,
        _limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        self.blobs
            .get(&descriptor.digest)
            .cloned()
            .ok_or_else(|| Self::not_found(image, format!("blob {}", descriptor.digest)))
    }

    async fn referrers(
        &self,
        image: &ImageReference,
        digest: &Digest,
        artifact_type_prefix: &str,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        self.stall(image).await;
        Ok(self
            .referrers
            .get(digest)
            .into_iter()
            .flatten()
            .filter(|referrer| {
                referrer
                    .artifact_type
                    .as_deref()
                    .is_some_and(|artifact_type| artifact_type.starts_with(artifact_type_prefix))
            })
            .cloned()
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// The harness: the router over in-memory cluster state.

struct Harness {
    state: Arc<WebhookState<MemoryRegistry>>,
    records: Arc<MemorySink>,
    events: Arc<RecordedEvents>,
    namespaces: Arc<NamespaceMap>,
    metrics_registry: prometheus_client::registry::Registry,
    /// Digests by image reference as written in the pod spec.
    digests: HashMap<&'static str, Digest>,
}

fn namespace(name: &str, env: &str, annotations: &[(&str, &str)]) -> NamespaceInfo {
    NamespaceInfo {
        name: name.into(),
        labels: BTreeMap::from([("env".to_owned(), env.to_owned())]),
        annotations: annotations
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
    }
}

/// Borrowed pairs, as [`namespace`] takes them.
fn pairs<'a>(list: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    list.iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect()
}

fn break_glass(expires: &str) -> Vec<(&'static str, String)> {
    vec![
        (TICKET_ANNOTATION, "INC-4711".into()),
        (REASON_ANNOTATION, "hotfix while CI is down".into()),
        (EXPIRES_ANNOTATION, expires.into()),
        (APPROVED_BY_ANNOTATION, "alice@example.com".into()),
        (APPROVER_GROUPS_ANNOTATION, SRE_ONCALL.into()),
    ]
}

/// The approver groups annotation of an approval through group `sre-oncall`.
const SRE_ONCALL: &str = r#"["sre-oncall"]"#;

impl Harness {
    fn new() -> Harness {
        Harness::with(WebhookSettings::default(), Some(POLICY))
    }

    fn with(settings: WebhookSettings, policy: Option<&str>) -> Harness {
        let instance = TestInstance::timestamp_only();
        let mut registry = MemoryRegistry::default();
        let mut digests = HashMap::new();
        for image in [API, TOOLS, WORKER, FORKED] {
            digests.insert(image, registry.push_image(image));
        }
        for image in [API, TOOLS] {
            let digest = &digests[image];
            let name = ImageReference::parse(image).unwrap().name();
            let bundle = instance
                .mint(&MintSpec::github_build(digest.hex()).with_subject(&name, digest.hex()));
            registry.attach(digest, &bundle);
        }
        let forked = &digests[FORKED];
        let bundle = instance.mint(
            &MintSpec::github_build(forked.hex())
                .with_subject("ghcr.io/acme/forked", forked.hex())
                .with_repository("mallory/api")
                .with_trigger("pull_request_target"),
        );
        registry.attach(forked, &bundle);
        registry.slow.push("ghcr.io/acme/slow".into());

        let roots = common::kit_roots(&instance);
        let checker = ImageChecker::new(registry, Arc::new(roots), CheckSettings::default());

        let namespaces = Arc::new(NamespaceMap::default());
        let active = break_glass("2026-11-28T18:00:00Z");
        let expired = break_glass("2026-11-28T09:00:00Z");
        namespaces.replace_all([
            namespace("prod", "production", &[]),
            namespace("staging", "staging", &[]),
            namespace("dev", "dev", &[]),
            namespace("payments", "production", &pairs(&active)),
            namespace("payments-expired", "production", &pairs(&expired)),
        ]);

        let records = Arc::new(MemorySink::default());
        let events = Arc::new(RecordedEvents::default());
        let mut metrics_registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut metrics_registry);
        let now: jiff::Timestamp = NOW.parse().unwrap();
        let state = Arc::new(WebhookState {
            checker: Arc::new(checker),
            policy: Arc::new(PolicyCell::new(policy.map(|policy| {
                Policy::from_yaml(policy).expect("the test policy is valid")
            }))),
            namespaces: namespaces.clone(),
            events: events.clone(),
            records: records.clone(),
            metrics,
            settings,
            clock: Arc::new(move || now),
            pull_secrets: None,
        });
        Harness {
            state,
            records,
            events,
            namespaces,
            metrics_registry,
            digests,
        }
    }

    /// The same harness, its namespaces answered by `directory` instead of the map.
    fn with_directory(self, directory: Arc<dyn NamespaceDirectory>) -> Harness {
        let clock = Arc::clone(&self.state.clock);
        self.rebuilt(directory, clock)
    }

    /// The same harness, its reviews timed by `clock`.
    fn with_clock(self, clock: Clock) -> Harness {
        let directory = Arc::clone(&self.state.namespaces);
        self.rebuilt(directory, clock)
    }

    fn rebuilt(mut self, namespaces: Arc<dyn NamespaceDirectory>, clock: Clock) -> Harness {
        let state = &self.state;
        self.state = Arc::new(WebhookState {
            checker: Arc::clone(&state.checker),
            policy: Arc::clone(&state.policy),
            namespaces,
            events: Arc::clone(&state.events),
            records: Arc::clone(&state.records),
            metrics: state.metrics.clone(),
            settings: state.settings.clone(),
            clock,
            pull_secrets: state.pull_secrets.clone(),
        });
        self
    }

    async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> (StatusCode, Value) {
        self.post_body(path, Body::from(body), content_type).await
    }

    async fn post_body(
        &self,
        path: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method("POST").uri(path);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request.body(body).unwrap()).await
    }

    /// A review whose headers arrived `ago`, as the server's cap on reviews in flight marks
    /// one that waited for a place.
    async fn post_received(&self, path: &str, review: &Value, ago: Duration) -> Value {
        let mut request = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(review).unwrap()))
            .unwrap();
        let received = tokio::time::Instant::now() - ago;
        request.extensions_mut().insert(ReceivedAt(received));
        let (status, answer) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["response"].clone()
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            panic!(
                "answer is not JSON ({error}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, json)
    }

    /// POSTs a review and returns its `response`, checking the envelope.
    async fn post(&self, path: &str, review: &Value) -> Value {
        let body = serde_json::to_vec(review).unwrap();
        let (status, answer) = self.post_raw(path, body, Some("application/json")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["apiVersion"], review["apiVersion"]);
        assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
        answer["response"].clone()
    }

    fn records(&self) -> Vec<DecisionRecord> {
        self.records.records()
    }

    fn metrics(&self) -> String {
        encode(&self.metrics_registry)
    }

    fn digest(&self, image: &str) -> String {
        self.digests[image].to_string()
    }
}

// ---------------------------------------------------------------------------------------
// Reviews built from the captured one.

fn gke_review() -> Value {
    serde_json::from_str(GKE_POD_CREATE).unwrap()
}

fn containers(images: &[(&str, &str)]) -> Value {
    Value::Array(
        images
            .iter()
            .map(|(name, image)| json!({"name": name, "image": image, "imagePullPolicy": "IfNotPresent"}))
            .collect(),
    )
}

/// The GKE Pod CREATE, moved to `namespace`, running `images` as its containers.
fn pod_review(namespace: &str, images: &[(&str, &str)]) -> Value {
    let mut review = gke_review();
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    review["request"]["object"]["spec"]["containers"] = containers(images);
    review
}

/// The same Pod spec wrapped in a workload controller of `group`/`kind`.
fn controller_review(
    namespace: &str,
    group: &str,
    kind: &str,
    resource: &str,
    images: &[(&str, &str)],
) -> Value {
    let pod = pod_review(namespace, images);
    let pod_spec = pod["request"]["object"]["spec"].clone();
    let template = json!({"metadata": {"labels": {"app": "echo-server"}}, "spec": pod_spec});
    let spec = if kind == "CronJob" {
        json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}})
    } else {
        json!({"selector": {"matchLabels": {"app": "echo-server"}}, "template": template})
    };
    let mut review = pod;
    let gvk = json!({"group": group, "version": "v1", "kind": kind});
    let gvr = json!({"group": group, "version": "v1", "resource": resource});
    review["request"]["kind"] = gvk.clone();
    review["request"]["requestKind"] = gvk;
    review["request"]["resource"] = gvr.clone();
    review["request"]["requestResource"] = gvr;
    review["request"]["name"] = json!("echo");
    review["request"]["object"] = json!({
        "apiVersion": format!("{group}/v1"),
        "kind": kind,
        "metadata": {"name": "echo", "namespace": namespace},
        "spec": spec,
    });
    review
}

/// An UPDATE of `review`'s object from `old`.
fn as_update(mut review: Value, old: Value) -> Value {
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = old;
    review["request"]["options"] = json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"});
    review
}

fn patch_of(response: &Value) -> Option<Value> {
    let patch = response.get("patch")?.as_str()?;
    assert_eq!(response["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&BASE64.decode(patch).unwrap()).unwrap())
}

fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|warnings| {
            warnings
                .iter()
                .map(|warning| warning.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn audit_images(response: &Value) -> Value {
    serde_json::from_str(response["auditAnnotations"]["images"].as_str().unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------
// Pods.

#[tokio::test]
async fn the_captured_review_is_denied_for_its_unmatched_image() {
    let harness = Harness::new();
    let review = gke_review();
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(
        message(&response),
        "image jmalloc/echo-server denied: no policy rule covers this image and unmatchedImages is deny; add a rule for it or exempt it"
    );
    assert_eq!(response["auditAnnotations"]["verdict"], "denied");
    assert_eq!(
        audit_images(&response),
        json!([{"image": "jmalloc/echo-server", "result": "denied", "reason": "unmatched"}])
    );
    // The namespace is unknown to the directory: no labels, so the default mode (enforce).
    let records = harness.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].uid.as_deref(),
        Some("0c9a8d74-9cb7-44dd-b98e-09fd62def2f4")
    );
    assert_eq!(records[0].namespace.as_deref(), Some("colin-coder"));
    assert_eq!(records[0].kind.as_deref(), Some("Pod"));
    assert_eq!(records[0].name.as_deref(), Some("echo-pod"));
    assert_eq!(records[0].result, "denied");
    assert_eq!(records[0].environment, None);
    let events = harness.events.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].regarding,
        ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some("colin-coder".into()),
            name: "echo-pod".into(),
            uid: None,
        }
    );
    assert_eq!(events[0].type_, EventType::Warning);
    assert_eq!(events[0].reason, "ImageDenied");
    assert_eq!(events[0].note, message(&response));
}

#[tokio::test]
async fn a_verified_pod_is_admitted_and_mutate_pins_it_with_its_provenance() {
    let harness = Harness::new();
    let review = pod_review("prod", &[("api", API), ("pause", PAUSE)]);
    // /validate sees the Pod as /mutate left it: pinned.
    let pinned_api = harness.pinned(API);
    let validated = pod_review("prod", &[("api", &pinned_api), ("pause", PAUSE)]);

    let response = harness.post("/validate", &validated).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("status").is_none());
    assert!(response.get("patch").is_none(), "validate never patches");
    assert!(response.get("warnings").is_none());
    assert_eq!(response["auditAnnotations"]["verdict"], "allowed");
    let api_digest = harness.digest(API);
    assert_eq!(
        audit_images(&response),
        json!([
            {"image": pinned_api, "result": "allowed", "reason": "verified", "digest": api_digest},
            {"image": PAUSE, "result": "exempt", "reason": "exempt"},
        ])
    );
    let records = harness.records();
    assert_eq!(records.len(), 2);
    let api = &records[0];
    assert_eq!(
        (api.image.as_str(), api.result),
        (pinned_api.as_str(), "allowed")
    );
    assert_eq!(api.environment.as_deref(), Some("production"));
    assert_eq!(api.digest.as_deref(), Some(api_digest.as_str()));
    assert_eq!(
        api.source_repository.as_deref(),
        Some("https://github.com/acme/api")
    );
    assert_eq!(
        api.commit.as_deref(),
        Some("7d2f0a4c9e1b5a3f8c6d4e2b0a9f7e5d3c1b8a6f")
    );
    assert_eq!(
        api.run_url.as_deref(),
        Some("https://github.com/acme/api/actions/runs/9876543210/attempts/1")
    );
    assert_eq!(api.instance.as_deref(), Some("test"));
    assert!(!api.dry_run);
    assert_eq!(
        (records[1].image.as_str(), records[1].result),
        (PAUSE, "exempt")
    );

    let response = harness.post("/mutate", &review).await;
    assert_eq!(response["allowed"], true);
    let provenance = json!({
        "api": {
            "sourceRepository": "https://github.com/acme/api",
            "commit": "7d2f0a4c9e1b5a3f8c6d4e2b0a9f7e5d3c1b8a6f",
            "workflow": "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main",
            "runUrl": "https://github.com/acme/api/actions/runs/9876543210/attempts/1",
            "digest": api_digest,
        }
    });
    let patch = patch_of(&response).expect("mutate pins a verified Pod");
    assert_eq!(
        patch,
        json!([
            {"op": "replace", "path": "/spec/containers/0/image", "value": format!("{API}@{api_digest}")},
            // The captured Pod has annotations already: the key is added, pointer-escaped.
            {"op": "add", "path": "/metadata/annotations/provenance-gate.dev~1provenance", "value": format!(
                concat!(
                    r#"{{"api":{{"sourceRepository":"https://github.com/acme/api","#,
                    r#""commit":"7d2f0a4c9e1b5a3f8c6d4e2b0a9f7e5d3c1b8a6f","#,
                    r#""workflow":"https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main","#,
                    r#""runUrl":"https://github.com/acme/api/actions/runs/9876543210/attempts/1","#,
                    r#""digest":"{}"}}}}"#,
                ),
                api_digest
            )},
        ])
    );
    // The annotation's value is exactly the compact JSON of the provenance.
    let annotation: Value = serde_json::from_str(patch[1]["value"].as_str().unwrap()).unwrap();
    assert_eq!(annotation, provenance);
    assert_eq!(
        harness.records().len(),
        2,
        "an admitting /mutate writes no evidence"
    );
    assert!(harness.events.events().is_empty());

    let metrics = harness.metrics();
    for line in [
        r#"provenance_gate_admissions_total{kind="Pod",operation="CREATE"} 2"#,
        r#"provenance_gate_decisions_total{mode="enforce",result="allowed",reason="verified",environment="production",rule="acme"} 1"#,
        r#"provenance_gate_decisions_total{mode="enforce",result="exempt",reason="exempt",environment="production",rule="none"} 1"#,
        "provenance_gate_admission_duration_seconds_count 2",
        // Only the covered image is timed (exempt images are never fetched).
        "provenance_gate_verification_duration_seconds_count 2",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn mutate_creates_the_annotations_when_the_pod_has_none() {
    let harness = Harness::new();
    let mut review = pod_review("prod", &[("api", API)]);
    review["request"]["object"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    let response = harness.post("/mutate", &review).await;
    let patch = patch_of(&response).unwrap();
    assert_eq!(patch[1]["op"], "add");
    assert_eq!(patch[1]["path"], "/metadata/annotations");
    assert!(
        patch[1]["value"]["provenance-gate.dev/provenance"].is_string(),
        "{patch}"
    );
}

#[tokio::test]
async fn a_forged_provenance_annotation_is_removed() {
    let harness = Harness::new();
    let mut review = pod_review("dev", &[("worker", WORKER)]);
    review["request"]["object"]["metadata"]["annotations"]["provenance-gate.dev/provenance"] =
        json!("{\"worker\":{\"sourceRepository\":\"https://github.com/acme/api\"}}");
    let response = harness.post("/mutate", &review).await;
    assert_eq!(response["allowed"], true, "observe mode admits");
    assert_eq!(
        patch_of(&response).unwrap(),
        json!([{"op": "remove", "path": "/metadata/annotations/provenance-gate.dev~1provenance"}])
    );
}

#[tokio::test]
async fn each_mode_answers_an_unattested_image_its_own_way() {
    let harness = Harness::new();
    let worker_digest = harness.digest(WORKER);
    let expected_reason = format!("rule \"acme\": no attestation found for {worker_digest}");

    let enforce = harness
        .post("/validate", &pod_review("prod", &[("worker", WORKER)]))
        .await;
    assert_eq!(enforce["allowed"], false);
    assert_eq!(enforce["status"]["code"], 403);
    assert_eq!(enforce["status"]["reason"], "Forbidden");
    assert_eq!(
        message(&enforce),
        format!("image {WORKER} denied: {expected_reason}")
    );
    assert!(patch_of(
        &harness
            .post("/mutate", &pod_review("prod", &[("worker", WORKER)]))
            .await
    )
    .is_none());

    let warn = harness
        .post("/validate", &pod_review("staging", &[("worker", WORKER)]))
        .await;
    assert_eq!(warn["allowed"], true);
    let warn_warnings = warnings(&warn);
    assert_eq!(warn_warnings.len(), 1);
    assert!(
        warn_warnings[0].chars().count() <= 200,
        "{}",
        warn_warnings[0]
    );
    assert!(
        warn_warnings[0].starts_with(&format!(
            "image {WORKER} not verified: rule \"acme\": no attestation found for sha256:"
        )),
        "{}",
        warn_warnings[0]
    );
    assert_eq!(warn["auditAnnotations"]["verdict"], "warned");

    let observe = harness
        .post("/validate", &pod_review("dev", &[("worker", WORKER)]))
        .await;
    assert_eq!(observe["allowed"], true);
    assert!(
        observe.get("warnings").is_none(),
        "observe mode is silent: {observe}"
    );
    assert_eq!(observe["auditAnnotations"]["verdict"], "would_deny");

    let results: Vec<(String, &str, String)> = harness
        .records()
        .iter()
        .map(|record| {
            (
                record.mode.to_string(),
                record.result,
                record.reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("enforce".to_owned(), "denied", expected_reason.clone()),
            ("enforce".to_owned(), "denied", expected_reason.clone()),
            ("warn".to_owned(), "warned", expected_reason.clone()),
            ("observe".to_owned(), "would_deny", expected_reason.clone()),
        ],
        "the refusing /mutate wrote evidence too, since no validation follows it"
    );
    let metrics = harness.metrics();
    for line in [
        r#"provenance_gate_decisions_total{mode="enforce",result="denied",reason="no_attestation",environment="production",rule="acme"} 2"#,
        r#"provenance_gate_decisions_total{mode="warn",result="warned",reason="no_attestation",environment="staging",rule="acme"} 1"#,
        r#"provenance_gate_decisions_total{mode="observe",result="would_deny",reason="no_attestation",environment="development",rule="acme"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert_eq!(
        harness.events.events().len(),
        2,
        "one Event per denial, none when admitted"
    );
}

#[tokio::test]
async fn a_denial_names_every_failing_image_its_rule_and_why() {
    let harness = Harness::new();
    let review = pod_review(
        "prod",
        &[
            ("api", &harness.pinned(API)),
            ("forked", FORKED),
            ("worker", WORKER),
            ("again", WORKER),
        ],
    );
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], false);
    let text = message(&response);
    let parts: Vec<&str> = text.split("; image ").collect();
    assert_eq!(
        parts.len(),
        2,
        "one entry per distinct failing image: {text}"
    );
    assert!(
        parts[0].starts_with(&format!("image {FORKED} denied: rule \"acme\": ")),
        "{text}"
    );
    assert!(parts[0].contains("mallory/api"), "{text}");
    assert!(
        parts[1].starts_with(&format!(
            "{WORKER} denied: rule \"acme\": no attestation found for sha256:"
        )),
        "{text}"
    );
    assert!(!text.contains(API), "verified images are not named: {text}");
    assert_eq!(harness.records().len(), 3, "one record per distinct image");
}

/// Issue 9, item 5: `maxAge` runs from the bundle's proven signing time to the webhook's own
/// clock (here NOW, 2026-11-28T10:00Z; the minted bundles were timestamped 2025-06-01T12:01Z,
/// 544d22h earlier). 545d admits under that clock, though the wall clock is days later.
#[tokio::test]
async fn max_age_is_measured_to_the_review_clock() {
    let rule_line = "    workflows: [\".github/workflows/release.yml\"]\n";
    for (max_age, admitted) in [("545d", true), ("544d", false)] {
        let policy = POLICY.replace(rule_line, &format!("{rule_line}    maxAge: {max_age}\n"));
        assert_ne!(policy, POLICY);
        let harness = Harness::with(WebhookSettings::default(), Some(&policy));
        let response = harness
            .post(
                "/validate",
                &pod_review("prod", &[("api", &harness.pinned(API))]),
            )
            .await;
        assert_eq!(response["allowed"], admitted, "{max_age}: {response}");
        if !admitted {
            let text = message(&response);
            assert!(
                text.contains(&format!(
                    "longer ago than maxAge {max_age} at review time {NOW}"
                )),
                "{text}"
            );
        }
    }
}

/// Issue 13, item 3: one rule, narrowed per environment. The same attested image (built from
/// refs/heads/main) is promoted from staging to production: staging admits it, production
/// admits only release tags and refuses it, naming the environment whose constraint failed in
/// the denial and the record. A namespace whose labels cannot be read meets every
/// environment's constraints.
#[tokio::test]
async fn a_promoted_image_meets_each_environments_bar() {
    let rule_line = "    workflows: [\".github/workflows/release.yml\"]\n";
    let policy = POLICY.replace(
        rule_line,
        &format!(
            "{rule_line}    refs: [refs/heads/main, \"refs/tags/v*\"]
    environments:
      - {{name: production, refs: [\"refs/tags/v*\"]}}
      - {{name: staging, refs: [refs/heads/main], maxAge: 3650d}}
"
        ),
    );
    assert_ne!(policy, POLICY);
    // Staging in enforce mode too, so that "admitted" is the check's verdict, not the mode's.
    let policy = policy.replace(
        "matchLabels: {env: staging}}\n    mode: warn",
        "matchLabels: {env: staging}}\n    mode: enforce",
    );
    let harness = Harness::with(WebhookSettings::default(), Some(&policy));
    let image = harness.pinned(API);
    let production_bar = "environment \"production\" of rule \"acme\" allows refs: refs/tags/v*";

    let staged = harness
        .post("/validate", &pod_review("staging", &[("api", &image)]))
        .await;
    assert_eq!(staged["allowed"], true, "{staged}");
    assert!(warnings(&staged).is_empty(), "{staged}");
    let promoted = harness
        .post("/validate", &pod_review("prod", &[("api", &image)]))
        .await;
    assert_eq!(promoted["allowed"], false, "{promoted}");
    let text = message(&promoted);
    assert!(
        text.contains(&format!(
            "built from refs/heads/main (trigger push); {production_bar}"
        )),
        "{text}"
    );
    // An environment the rule does not narrow gets the rule alone.
    let developed = harness
        .post("/validate", &pod_review("dev", &[("api", &image)]))
        .await;
    assert_eq!(developed["allowed"], true, "{developed}");
    assert!(warnings(&developed).is_empty(), "{developed}");

    let records = harness.records();
    let summary: Vec<(Option<&str>, &str)> = records
        .iter()
        .map(|record| (record.environment.as_deref(), record.result))
        .collect();
    assert_eq!(
        summary,
        [
            (Some("staging"), "allowed"),
            (Some("production"), "denied"),
            (Some("development"), "allowed"),
        ]
    );
    assert!(
        records[1].reason.contains(production_bar),
        "{:?}",
        records[1]
    );
    assert_eq!(records[1].rule.as_deref(), Some("acme"));
    assert!(
        !records[0].reason.contains("environment"),
        "{:?}",
        records[0]
    );

    // Unknown labels: judged in enforce mode, against production's bar as well.
    let unseen = harness
        .post("/validate", &pod_review("payments-new", &[("api", &image)]))
        .await;
    assert_eq!(unseen["allowed"], false, "{unseen}");
    assert!(message(&unseen).contains(production_bar), "{unseen}");
}

/// Issue 8, item 3: a covered registry spelled another way (case, `:443`) is the same registry;
/// its images are verified under the rule, never admitted as unmatched.
#[tokio::test]
async fn another_spelling_of_a_covered_host_is_verified_not_unmatched() {
    let allow_unmatched = POLICY.replace("unmatchedImages: deny", "unmatchedImages: allow");
    let harness = Harness::with(WebhookSettings::default(), Some(&allow_unmatched));
    let worker_digest = harness.digest(WORKER);
    for worker in [
        "GHCR.IO/acme/worker:2.0",
        "ghcr.io:443/acme/worker:2.0",
        "Ghcr.Io:443/acme/worker:2.0",
    ] {
        let response = harness
            .post("/validate", &pod_review("prod", &[("worker", worker)]))
            .await;
        assert_eq!(response["allowed"], false, "{worker}: {response}");
        assert_eq!(
            message(&response),
            format!(
                "image {worker} denied: rule \"acme\": no attestation found for {worker_digest}"
            )
        );
    }

    // A verified image in another spelling is admitted and pinned in the canonical one.
    // (`/validate` sees what `/mutate` left: the pinned form.)
    let review = pod_review("prod", &[("api", "GHCR.IO:443/acme/api:1.2")]);
    let mutated = harness.post("/mutate", &review).await;
    assert_eq!(mutated["allowed"], true, "{mutated}");
    let patch = patch_of(&mutated).expect("pinned");
    let pinned = format!("{API}@{}", harness.digest(API));
    assert_eq!(patch[0]["value"], pinned);
    let response = harness
        .post("/validate", &pod_review("prod", &[("api", &pinned)]))
        .await;
    assert_eq!(response["allowed"], true, "{response}");

    // The control: an image on a registry no rule names is still unmatched, and allowed.
    let response = harness
        .post(
            "/validate",
            &pod_review("prod", &[("other", "quay.io/acme/worker:2.0")]),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(
        audit_images(&response)[0]["reason"],
        "unmatched",
        "{response}"
    );
}

#[tokio::test]
async fn init_and_ephemeral_containers_are_checked() {
    let harness = Harness::new();
    let mut review = pod_review("prod", &[("api", API)]);
    review["request"]["object"]["spec"]["initContainers"] = containers(&[("migrate", WORKER)]);
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).starts_with(&format!("image {WORKER} denied")));

    // `kubectl debug`: an UPDATE of pods/ephemeralcontainers adding a debug container.
    let old = pod_review("prod", &[("api", API)])["request"]["object"].clone();
    let debug = |image: &str| {
        let mut review = pod_review("prod", &[("api", API)]);
        review["request"]["object"]["spec"]["ephemeralContainers"] =
            json!([{"name": "debugger", "image": image, "targetContainerName": "api"}]);
        review["request"]["subResource"] = json!("ephemeralcontainers");
        as_update(review, old.clone())
    };
    let response = harness.post("/validate", &debug(WORKER)).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).starts_with(&format!("image {WORKER} denied")));

    let response = harness.post("/mutate", &debug(TOOLS)).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(
        patch_of(&response).unwrap(),
        json!([{"op": "replace", "path": "/spec/ephemeralContainers/0/image", "value": format!("{TOOLS}@{}", harness.digest(TOOLS))}]),
        "only the new image is pinned; the subresource takes no annotations"
    );
}

#[tokio::test]
async fn an_update_checks_only_the_images_it_brings() {
    let harness = Harness::new();
    // The worker image was admitted earlier (say, in observe mode); the update adds tools.
    let old = controller_review(
        "prod",
        "apps",
        "Deployment",
        "deployments",
        &[("worker", WORKER)],
    )["request"]["object"]
        .clone();
    let review = as_update(
        controller_review(
            "prod",
            "apps",
            "Deployment",
            "deployments",
            &[("worker", WORKER), ("tools", TOOLS)],
        ),
        old.clone(),
    );
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], true, "{response}");
    let records = harness.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].image.as_str(), records[0].result),
        (TOOLS, "allowed")
    );

    // Nothing new at all (a replica count change): nothing to check, nothing recorded.
    let mut review = as_update(
        controller_review(
            "prod",
            "apps",
            "Deployment",
            "deployments",
            &[("worker", WORKER)],
        ),
        old,
    );
    review["request"]["object"]["spec"]["replicas"] = json!(3);
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("auditAnnotations").is_none());
    assert_eq!(harness.records().len(), 1);
    assert!(harness
        .metrics()
        .contains(r#"provenance_gate_admissions_total{kind="Deployment",operation="UPDATE"} 2"#));
}

// ---------------------------------------------------------------------------------------
// Controllers.

#[tokio::test]
async fn controllers_are_validated_through_their_pod_templates_and_never_mutated() {
    let harness = Harness::new();
    let cases = [
        ("apps", "Deployment", "deployments"),
        ("apps", "ReplicaSet", "replicasets"),
        ("apps", "StatefulSet", "statefulsets"),
        ("apps", "DaemonSet", "daemonsets"),
        ("batch", "Job", "jobs"),
        ("batch", "CronJob", "cronjobs"),
    ];
    for (group, kind, resource) in cases {
        let denied = controller_review("prod", group, kind, resource, &[("worker", WORKER)]);
        let response = harness.post("/validate", &denied).await;
        assert_eq!(response["allowed"], false, "{kind}");
        assert!(
            message(&response).starts_with(&format!("image {WORKER} denied")),
            "{kind}"
        );

        let admitted = controller_review("prod", group, kind, resource, &[("api", API)]);
        for path in ["/validate", "/mutate"] {
            let response = harness.post(path, &admitted).await;
            assert_eq!(response["allowed"], true, "{kind} {path}");
            assert!(
                response.get("patch").is_none(),
                "{kind} {path}: controllers are not mutated"
            );
        }
    }
    let events = harness.events.events();
    assert_eq!(events.len(), cases.len());
    let cronjob = &events[5];
    assert_eq!(
        cronjob.regarding,
        ObjectRef {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            namespace: Some("prod".into()),
            name: "echo".into(),
            uid: None,
        }
    );
    let kinds: Vec<Option<String>> = harness
        .records()
        .iter()
        .map(|record| record.kind.clone())
        .collect();
    assert!(kinds.contains(&Some("CronJob".into())));
}

// ---------------------------------------------------------------------------------------
// Dry run, budget, limits.

#[tokio::test]
async fn a_dry_run_decides_and_records_but_sends_no_events() {
    let harness = Harness::new();
    let mut review = pod_review("prod", &[("worker", WORKER)]);
    review["request"]["dryRun"] = json!(true);
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], false);
    assert!(harness.events.events().is_empty());
    let records = harness.records();
    assert_eq!(records.len(), 1);
    assert!(records[0].dry_run);
    assert_eq!(serde_json::to_value(&records[0]).unwrap()["dryRun"], true);
}

#[tokio::test]
async fn the_review_budget_bounds_every_answer() {
    let settings = WebhookSettings {
        review_budget: Duration::from_millis(300),
        ..WebhookSettings::default()
    };
    let harness = Harness::with(settings, Some(POLICY));
    let api = harness.pinned(API);
    let started = std::time::Instant::now();
    let response = harness
        .post(
            "/validate",
            &pod_review("prod", &[("api", &api), ("slow", SLOW)]),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response["allowed"], false);
    assert_eq!(
        message(&response),
        format!("image {SLOW} denied: rule \"acme\": verification timed out (the review's budget of 0.3s ran out)")
    );
    let response = harness
        .post("/validate", &pod_review("staging", &[("slow", SLOW)]))
        .await;
    assert_eq!(response["allowed"], true);
    assert!(
        warnings(&response)[0].contains("verification timed out"),
        "{response}"
    );
    assert!(harness.metrics().contains(
        r#"provenance_gate_decisions_total{mode="enforce",result="denied",reason="timeout",environment="production",rule="acme"} 1"#
    ));
}

/// A review that queued for a place in flight (or trickled its body) before the router saw
/// it has only what is left of its budget: the API server's timeout counts from the send,
/// so one that waited out its whole budget is answered at once, in enforce mode as a denial.
#[tokio::test]
async fn the_review_budget_counts_from_the_reviews_arrival() {
    let settings = WebhookSettings {
        review_budget: Duration::from_secs(3),
        ..WebhookSettings::default()
    };
    let harness = Harness::with(settings, Some(POLICY));
    let api = harness.pinned(API);
    let review = pod_review("prod", &[("api", &api)]);
    let queued = harness
        .post_received("/validate", &review, Duration::from_secs(4))
        .await;
    assert_eq!(queued["allowed"], false, "{queued}");
    assert!(
        message(&queued).contains("verification timed out (the review's budget of 3.0s ran out)"),
        "{queued}"
    );
    let not_queued = harness
        .post_received("/validate", &review, Duration::ZERO)
        .await;
    assert_eq!(not_queued["allowed"], true, "{not_queued}");
}

#[tokio::test]
async fn too_many_images_are_refused_in_enforce_mode() {
    let settings = WebhookSettings {
        max_images: 2,
        ..WebhookSettings::default()
    };
    let harness = Harness::with(settings, Some(POLICY));
    let images = [("a", API), ("b", API), ("c", API)];
    let response = harness
        .post("/validate", &pod_review("prod", &images))
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(
        message(&response),
        "Pod echo-pod runs 3 container images, more than the 2 checked in one review"
    );
    let response = harness
        .post("/validate", &pod_review("staging", &images))
        .await;
    assert_eq!(response["allowed"], true);
    assert_eq!(
        warnings(&response),
        ["Pod echo-pod runs 3 container images, more than the 2 checked in one review"]
    );
    // Each review leaves its record, although no image was checked.
    let records = harness.records();
    let results: Vec<_> = records
        .iter()
        .map(|record| {
            (
                record.namespace.as_deref(),
                record.result,
                record.image.as_str(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            (Some("prod"), "denied", ""),
            (Some("staging"), "warned", "")
        ]
    );
    assert!(
        records
            .iter()
            .all(|record| record.reason
                == "3 container images, more than the 2 checked in one review")
    );
}

#[tokio::test]
async fn without_a_policy_every_workload_is_refused() {
    let harness = Harness::with(WebhookSettings::default(), None);
    let response = harness
        .post("/validate", &pod_review("dev", &[("api", API)]))
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 503);
    assert!(message(&response).starts_with("no policy loaded yet"));
}

// ---------------------------------------------------------------------------------------
// Malformed and unusual requests.

#[tokio::test]
async fn malformed_reviews_get_a_400_answer_not_an_error() {
    let harness = Harness::new();
    let mut missing_uid = gke_review();
    missing_uid["request"]
        .as_object_mut()
        .unwrap()
        .remove("uid");
    let mut wrong_version = gke_review();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v2");
    let mut wrong_kind = gke_review();
    wrong_kind["kind"] = json!("ConversionReview");
    let mut no_request = gke_review();
    no_request.as_object_mut().unwrap().remove("request");
    let mut undecodable = gke_review();
    undecodable["request"]["object"]["spec"]["containers"] = json!({"name": "x"});
    let mut bad_image = gke_review();
    bad_image["request"]["object"]["spec"]["containers"][0]["image"] = json!(42);
    let uid = "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4";
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("not JSON", b"{\"kind\": \"AdmissionReview\",".to_vec(), "", "malformed AdmissionReview: request body is not JSON"),
        ("empty body", Vec::new(), "", "malformed AdmissionReview: request body is not JSON"),
        ("missing uid", serde_json::to_vec(&missing_uid).unwrap(), "", "malformed AdmissionReview: request.uid is missing; the response carries an empty uid"),
        ("wrong apiVersion", serde_json::to_vec(&wrong_version).unwrap(), uid, "malformed AdmissionReview: apiVersion is \"admission.k8s.io/v2\", expected \"admission.k8s.io/v1\" (or \"admission.k8s.io/v1beta1\")"),
        ("wrong kind", serde_json::to_vec(&wrong_kind).unwrap(), uid, "malformed AdmissionReview: kind is \"ConversionReview\", expected \"AdmissionReview\""),
        ("no request", serde_json::to_vec(&no_request).unwrap(), "", "malformed AdmissionReview: the AdmissionReview has no request"),
        ("undecodable object", serde_json::to_vec(&undecodable).unwrap(), uid, "malformed AdmissionReview: request.object is not a decodable Pod: /spec/containers is not a list"),
        ("image not a string", serde_json::to_vec(&bad_image).unwrap(), uid, "malformed AdmissionReview: request.object is not a decodable Pod: /spec/containers/0/image is not a string"),
    ];
    for (name, body, expected_uid, expected_message) in cases {
        for path in ["/validate", "/mutate"] {
            let (status, answer) = harness.post_raw(path, body.clone(), None).await;
            assert_eq!(status, StatusCode::OK, "{name} {path}");
            assert_eq!(answer["kind"], "AdmissionReview", "{name}");
            assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{name}");
            let response = &answer["response"];
            assert_eq!(response["uid"], expected_uid, "{name}");
            assert_eq!(response["allowed"], false, "{name}");
            assert_eq!(response["status"]["code"], 400, "{name}");
            assert_eq!(response["status"]["reason"], "BadRequest", "{name}");
            assert!(
                message(response).starts_with(expected_message),
                "{name}: {}",
                message(response)
            );
        }
    }
    assert!(harness.records().is_empty());
    assert!(harness.metrics().contains(
        r#"provenance_gate_admissions_total{kind="(malformed)",operation="(malformed)"} 12"#
    ));
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let harness = Harness::new();
    let mut review = gke_review();
    review["request"]["object"]["metadata"]["annotations"]["padding"] =
        json!("x".repeat(3 * 1024 * 1024));
    let (status, answer) = harness
        .post_raw(
            "/validate",
            serde_json::to_vec(&review).unwrap(),
            Some("application/json"),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 413);
    assert_eq!(
        message(&answer["response"]),
        "malformed AdmissionReview: the request body is larger than the 3145728 bytes accepted"
    );
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_refused_with_408() {
    let settings = WebhookSettings {
        body_timeout: Duration::from_millis(200),
        ..WebhookSettings::default()
    };
    let harness = Harness::with(settings, Some(POLICY));
    // The first bytes of a review, then nothing, ever.
    let first = futures::stream::once(async { Ok::<_, std::io::Error>(b"{\"kind\":".to_vec()) });
    let body = Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()));
    let started = std::time::Instant::now();
    let (status, answer) = harness
        .post_body("/validate", body, Some("application/json"))
        .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 408);
    assert!(harness.records().is_empty());
}

#[tokio::test]
async fn v1beta1_reviews_are_answered_in_v1beta1_whatever_the_content_type() {
    let harness = Harness::new();
    let mut review = pod_review("prod", &[("api", &harness.pinned(API))]);
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    for content_type in [
        None,
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
    ] {
        let (status, answer) = harness
            .post_raw(
                "/validate",
                serde_json::to_vec(&review).unwrap(),
                content_type,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
}

#[tokio::test]
async fn deletes_subresources_and_other_kinds_are_admitted_untouched() {
    let harness = Harness::new();
    let mut delete = pod_review("prod", &[("worker", WORKER)]);
    delete["request"]["operation"] = json!("DELETE");
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    let mut status = as_update(pod_review("prod", &[("worker", WORKER)]), json!({}));
    status["request"]["subResource"] = json!("status");
    let mut config_map = gke_review();
    config_map["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    config_map["request"]["object"] = json!({"data": {"image": WORKER}});
    for review in [delete, status, config_map] {
        let response = harness.post("/validate", &review).await;
        assert_eq!(
            response,
            json!({"uid": review["request"]["uid"], "allowed": true})
        );
    }
    assert!(harness.records().is_empty());
}

#[tokio::test]
async fn kinds_named_by_requests_cannot_grow_the_metrics() {
    let harness = Harness::new();
    let baseline = harness.metrics().len();
    for index in 0..2_000 {
        let mut review = gke_review();
        review["request"]["uid"] = json!(format!("kind-{index}"));
        review["request"]["kind"] =
            json!({"group": "", "version": "v1", "kind": format!("Kind{index:04}")});
        review["request"]["object"] = json!({"data": {}});
        harness.post("/validate", &review).await;
    }
    // A custom resource named like a judged kind is not that kind either.
    let mut impostor = gke_review();
    impostor["request"]["kind"] = json!({"group": "example.com", "version": "v1", "kind": "Pod"});
    impostor["request"]["object"] = json!({"data": {}});
    harness.post("/validate", &impostor).await;

    let metrics = harness.metrics();
    assert!(
        metrics
            .contains(r#"provenance_gate_admissions_total{kind="other",operation="CREATE"} 2001"#),
        "{metrics}"
    );
    assert!(!metrics.contains("Kind0001"), "{metrics}");
    assert!(!metrics.contains(r#"kind="Pod""#), "{metrics}");
    assert!(
        metrics.len() < baseline + 1024,
        "/metrics grew from {baseline} to {} bytes",
        metrics.len()
    );
}

#[tokio::test]
async fn only_post_is_served() {
    let harness = Harness::new();
    let response = router(harness.state.clone())
        .oneshot(
            Request::builder()
                .uri("/validate")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

// ---------------------------------------------------------------------------------------
// Break-glass.

#[tokio::test]
async fn an_active_break_glass_admits_failures_with_evidence() {
    let harness = Harness::new();
    let review = pod_review("payments", &[("worker", WORKER), ("api", API)]);
    let response = harness
        .post("/validate", &harness.mutated(&review).await)
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    let warnings = warnings(&response);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with(&format!("image {WORKER} admitted under break-glass INC-4711: rule \"acme\": no attestation found")),
        "{}",
        warnings[0]
    );
    assert_eq!(response["auditAnnotations"]["verdict"], "break_glass");

    let records = harness.records();
    let worker = records
        .iter()
        .find(|record| record.image == WORKER)
        .unwrap();
    assert_eq!(worker.result, "break_glass");
    assert_eq!(worker.break_glass_ticket.as_deref(), Some("INC-4711"));
    assert_eq!(
        worker.break_glass_reason.as_deref(),
        Some("hotfix while CI is down")
    );
    assert_eq!(
        worker.break_glass_approved_by.as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        worker.break_glass_expires.as_deref(),
        Some("2026-11-28T18:00:00Z")
    );
    let pinned_api = harness.pinned(API);
    let api = records
        .iter()
        .find(|record| record.image == pinned_api)
        .unwrap();
    assert_eq!(api.result, "allowed");
    assert_eq!(
        api.break_glass_ticket, None,
        "verified images owe nothing to break-glass"
    );

    let events = harness.events.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "BreakGlassAdmission");
    assert_eq!(events[0].regarding.kind, "Namespace");
    assert_eq!(events[0].regarding.name, "payments");
    assert!(events[0].note.contains("INC-4711"), "{}", events[0].note);
    assert!(
        events[0].note.contains("alice@example.com"),
        "{}",
        events[0].note
    );

    // Still verified and pinned where it can be.
    let response = harness.post("/mutate", &review).await;
    let patch = patch_of(&response).unwrap();
    assert_eq!(patch[0]["path"], "/spec/containers/1/image");

    let metrics = harness.metrics();
    for line in [
        r#"provenance_gate_break_glass_active{namespace="payments"} 1"#,
        r#"provenance_gate_decisions_total{mode="enforce",result="break_glass",reason="no_attestation",environment="production",rule="acme"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // The break-glass is lifted: enforcing again, and the gauge says so.
    harness
        .namespaces
        .upsert(namespace("payments", "production", &[]));
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], false);
    assert!(harness
        .metrics()
        .contains(r#"provenance_gate_break_glass_active{namespace="payments"} 0"#));
}

/// A break-glass that expires with nothing deployed in its namespace: the gauge follows the
/// expiry on the webhook's timer, without another review. Tokio's clock is paused after the
/// review and drives both the timer and the review clock.
#[tokio::test]
async fn the_break_glass_gauge_drops_when_it_expires_without_another_review() {
    let started = tokio::time::Instant::now();
    let base: jiff::Timestamp = NOW.parse().unwrap();
    let clock: Clock = Arc::new(move || {
        let elapsed = jiff::SignedDuration::try_from(started.elapsed()).unwrap();
        base.checked_add(elapsed).unwrap()
    });
    let harness = Harness::new().with_clock(Arc::clone(&clock));
    // Expires a minute after NOW.
    let brief = break_glass("2026-11-28T10:01:00Z");
    harness
        .namespaces
        .upsert(namespace("payments-brief", "production", &pairs(&brief)));
    let response = harness
        .post(
            "/validate",
            &pod_review("payments-brief", &[("worker", WORKER)]),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    let gauge = |value: u8| {
        format!(r#"provenance_gate_break_glass_active{{namespace="payments-brief"}} {value}"#)
    };
    assert!(
        harness.metrics().contains(&gauge(1)),
        "{}",
        harness.metrics()
    );

    tokio::time::pause();
    let period = provenance_gate::evidence::break_glass::SWEEP_PERIOD;
    let state = &harness.state;
    let timer = tokio::spawn(provenance_gate::evidence::break_glass::follow_expiry(
        state.metrics.clone(),
        Arc::clone(&state.policy),
        Arc::clone(&state.namespaces),
        clock,
        period,
    ));
    // Still in force half-way.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        harness.metrics().contains(&gauge(1)),
        "{}",
        harness.metrics()
    );
    // At most one period after the expiry, with no review in between.
    tokio::time::sleep(Duration::from_secs(30) + period).await;
    assert!(
        harness.metrics().contains(&gauge(0)),
        "{}",
        harness.metrics()
    );
    timer.abort();
}

/// The KPI counts what the runbook calls a pass: an image verified against a rule. Exempt
/// images are left out, images no rule covers (admitted by `unmatchedImages: allow`) are
/// judged and not passed; each decision carries the environment and rule from the policy,
/// and each release (digest) counts once however many Pods run it.
#[tokio::test]
async fn the_pass_rate_counts_verified_images_per_environment_rule_and_release() {
    let policy = POLICY.replace("unmatchedImages: deny", "unmatchedImages: allow");
    let harness = Harness::with(WebhookSettings::default(), Some(&policy));
    harness
        .namespaces
        .upsert(namespace("qa", "qa-not-in-the-policy", &[]));
    let unmatched = "docker.io/library/nginx:1.27";
    for namespace in ["prod", "prod", "qa"] {
        let review = pod_review(
            namespace,
            &[("api", API), ("pause", PAUSE), ("web", unmatched)],
        );
        let response = harness
            .post("/validate", &harness.mutated(&review).await)
            .await;
        assert_eq!(response["allowed"], true, "{response}");
    }
    let metrics = harness.metrics();
    for line in [
        // Per admission: two Pods in production, one in a namespace no environment selects.
        r#"provenance_gate_decisions_total{mode="enforce",result="allowed",reason="verified",environment="production",rule="acme"} 2"#,
        r#"provenance_gate_decisions_total{mode="enforce",result="allowed",reason="unmatched",environment="production",rule="none"} 2"#,
        r#"provenance_gate_decisions_total{mode="enforce",result="exempt",reason="exempt",environment="production",rule="none"} 2"#,
        r#"provenance_gate_decisions_total{mode="enforce",result="allowed",reason="verified",environment="none",rule="acme"} 1"#,
        // Per release: each image once per environment.
        r#"provenance_gate_digest_verdicts_total{environment="production",rule="acme",result="allowed",reason="verified"} 1"#,
        r#"provenance_gate_digest_verdicts_total{environment="production",rule="none",result="allowed",reason="unmatched"} 1"#,
        r#"provenance_gate_digest_verdicts_total{environment="production",rule="none",result="exempt",reason="exempt"} 1"#,
        r#"provenance_gate_digest_verdicts_total{environment="none",rule="acme",result="allowed",reason="verified"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(!metrics.contains("qa-not-in-the-policy"), "{metrics}");
    // The runbook's pass rate over these series: verified / all but exempt.
    let sum = |metric: &str, keep: &dyn Fn(&str) -> bool| -> f64 {
        metrics
            .lines()
            .filter(|line| line.starts_with(&format!("{metric}{{")) && keep(line))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let verified = |line: &str| line.contains(r#"result="allowed",reason="verified""#);
    let judged = |line: &str| !line.contains(r#"result="exempt""#);
    let per_admission = sum("provenance_gate_decisions_total", &verified)
        / sum("provenance_gate_decisions_total", &judged);
    let per_release = sum("provenance_gate_digest_verdicts_total", &verified)
        / sum("provenance_gate_digest_verdicts_total", &judged);
    assert_eq!(per_admission, 0.5, "{metrics}");
    assert_eq!(per_release, 0.5, "{metrics}");
}

#[tokio::test]
async fn an_expired_break_glass_is_ignored_with_a_warning() {
    let harness = Harness::new();
    let response = harness
        .post(
            "/validate",
            &pod_review("payments-expired", &[("worker", WORKER)]),
        )
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(
        warnings(&response),
        ["break-glass on namespace payments-expired expired at 2026-11-28T09:00:00Z; enforcing"]
    );
    assert_eq!(harness.records()[0].result, "denied");
    assert_eq!(harness.records()[0].break_glass_ticket, None);
}

fn namespace_review(
    operation: &str,
    user: &str,
    groups: &[&str],
    old: Option<Value>,
    annotations: Value,
) -> Value {
    let mut review = gke_review();
    let request = &mut review["request"];
    let gvk = json!({"group": "", "version": "v1", "kind": "Namespace"});
    let gvr = json!({"group": "", "version": "v1", "resource": "namespaces"});
    request["kind"] = gvk.clone();
    request["requestKind"] = gvk;
    request["resource"] = gvr.clone();
    request["requestResource"] = gvr;
    request["name"] = json!("payments");
    request.as_object_mut().unwrap().remove("namespace");
    request["operation"] = json!(operation);
    request["userInfo"] = json!({"username": user, "groups": groups});
    request["object"] = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "payments", "labels": {"env": "production"}, "annotations": annotations},
    });
    request["oldObject"] = match old {
        Some(annotations) => json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "payments", "labels": {"env": "production"}, "annotations": annotations},
        }),
        None => Value::Null,
    };
    review
}

fn declared(extra: &[(&str, &str)]) -> Value {
    let mut annotations = json!({
        TICKET_ANNOTATION: "INC-4711",
        REASON_ANNOTATION: "hotfix while CI is down",
        EXPIRES_ANNOTATION: "2026-11-28T18:00:00Z",
    });
    for (key, value) in extra {
        annotations[*key] = json!(value);
    }
    annotations
}

#[tokio::test]
async fn break_glass_is_declared_only_by_approvers_and_recorded_by_the_webhook() {
    let harness = Harness::new();
    let before = json!({"team": "payments"});

    // A non-approver is refused, at either endpoint, with an Event on the Namespace.
    let by_mallory = namespace_review(
        "UPDATE",
        "mallory@example.com",
        &["system:authenticated"],
        Some(before.clone()),
        declared(&[]),
    );
    let response = harness.post("/mutate", &by_mallory).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(
        message(&response),
        "break-glass on namespace payments refused: user \"mallory@example.com\" may not declare break-glass: not among the policy's break-glass approvers (users or groups)"
    );
    let events = harness.events.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].reason.as_str(), events[0].regarding.name.as_str()),
        ("BreakGlassRefused", "payments")
    );

    // An approver through a group: /mutate records who, from userInfo.
    let by_alice = namespace_review(
        "UPDATE",
        "alice@example.com",
        &["system:authenticated", "sre-oncall"],
        Some(before.clone()),
        declared(&[]),
    );
    let response = harness.post("/mutate", &by_alice).await;
    assert_eq!(response["allowed"], true, "{response}");
    let gauge = r#"provenance_gate_break_glass_active{namespace="payments"}"#;
    assert!(
        !harness.metrics().contains(gauge),
        "not in force before /validate admits it"
    );
    assert_eq!(
        patch_of(&response).unwrap(),
        json!([
            {"op": "add", "path": "/metadata/annotations/provenance-gate.dev~1break-glass-approved-by", "value": "alice@example.com"},
            {"op": "add", "path": "/metadata/annotations/provenance-gate.dev~1break-glass-approver-groups", "value": SRE_ONCALL},
        ])
    );
    // ... and /validate then sees the recorded approver and admits, with a warning.
    let recorded = namespace_review(
        "UPDATE",
        "alice@example.com",
        &["sre-oncall"],
        Some(before.clone()),
        declared(&[
            (APPROVED_BY_ANNOTATION, "alice@example.com"),
            (APPROVER_GROUPS_ANNOTATION, SRE_ONCALL),
        ]),
    );
    let response = harness.post("/validate", &recorded).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(
        warnings(&response),
        ["break-glass INC-4711 declared on namespace payments by alice@example.com until 2026-11-28T18:00:00Z: unverified images will be admitted with a warning"]
    );
    assert_eq!(
        response["auditAnnotations"]["break-glass"],
        "ticket INC-4711 approved by alice@example.com until 2026-11-28T18:00:00Z"
    );
    assert_eq!(
        harness.events.events().last().unwrap().reason,
        "BreakGlassDeclared"
    );
    // In force from the declaration, before any workload is reviewed under it.
    assert!(
        harness.metrics().contains(&format!("{gauge} 1")),
        "{}",
        harness.metrics()
    );

    // Without the mutating webhook the approver is never recorded: refused at /validate.
    let response = harness.post("/validate", &by_alice).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("the approver was not recorded"),
        "{}",
        message(&response)
    );

    // Naming someone else as approver is refused, whoever asks.
    let self_declared = namespace_review(
        "CREATE",
        "mallory@example.com",
        &["system:authenticated"],
        None,
        declared(&[(APPROVED_BY_ANNOTATION, "alice@example.com")]),
    );
    let response = harness.post("/mutate", &self_declared).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains(
        "may only name the requesting user (\"mallory@example.com\"), not \"alice@example.com\""
    ));

    // An expiry beyond maxDuration is refused, even for an approver.
    let too_long = namespace_review(
        "UPDATE",
        "alice@example.com",
        &["sre-oncall"],
        Some(before.clone()),
        declared(&[(EXPIRES_ANNOTATION, "2026-11-29T10:00:00Z")]),
    );
    let response = harness.post("/mutate", &too_long).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("more than the policy's maxDuration of 8h ahead"));

    // Anybody may lift it; /mutate drops the orphaned approver annotation.
    let lifted = namespace_review(
        "UPDATE",
        "mallory@example.com",
        &[],
        Some(declared(&[(APPROVED_BY_ANNOTATION, "alice@example.com")])),
        json!({"team": "payments", APPROVED_BY_ANNOTATION: "alice@example.com"}),
    );
    let response = harness.post("/mutate", &lifted).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(
        patch_of(&response).unwrap(),
        json!([{"op": "remove", "path": "/metadata/annotations/provenance-gate.dev~1break-glass-approved-by"}])
    );
    assert_eq!(harness.post("/validate", &lifted).await["allowed"], true);

    // Unrelated namespace edits are none of the webhook's business.
    let unrelated = namespace_review(
        "UPDATE",
        "mallory@example.com",
        &[],
        Some(before.clone()),
        json!({"team": "billing"}),
    );
    assert_eq!(
        harness.post("/validate", &unrelated).await,
        json!({"uid": unrelated["request"]["uid"], "allowed": true})
    );
}

#[tokio::test]
async fn break_glass_needs_the_policy_to_enable_it() {
    let without = POLICY.split("breakGlass:").next().unwrap();
    let harness = Harness::with(WebhookSettings::default(), Some(without));
    let review = namespace_review(
        "CREATE",
        "alice@example.com",
        &["sre-oncall"],
        None,
        declared(&[]),
    );
    let response = harness.post("/mutate", &review).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("break-glass is not enabled in the policy"),
        "{}",
        message(&response)
    );

    // Annotations left on a namespace do nothing then, and say so.
    let response = harness
        .post("/validate", &pod_review("payments", &[("worker", WORKER)]))
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(
        warnings(&response),
        ["break-glass on namespace payments ignored (break-glass is not enabled in the policy); enforcing"]
    );
}

#[tokio::test]
async fn lifting_break_glass_never_waits_for_a_policy() {
    let harness = Harness::with(WebhookSettings::default(), None);
    let lifted = namespace_review(
        "UPDATE",
        "mallory@example.com",
        &[],
        Some(declared(&[(APPROVED_BY_ANNOTATION, "alice@example.com")])),
        json!({}),
    );
    assert_eq!(harness.post("/validate", &lifted).await["allowed"], true);
    let mut declaring = namespace_review(
        "CREATE",
        "alice@example.com",
        &["sre-oncall"],
        None,
        declared(&[]),
    );
    declaring["request"]["dryRun"] = json!(true);
    let response = harness.post("/mutate", &declaring).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(
        message(&response),
        "break-glass on namespace payments refused: no policy loaded yet"
    );
    assert!(
        harness.events.events().is_empty(),
        "a dry run sends no Events"
    );
}

// ---------------------------------------------------------------------------------------
// Issue 8, items 2, 4 and 12a: every image a Pod brings runs by the digest that was checked
// (pinned on CREATE, UPDATE and ephemeral containers; a tag left after mutation is refused),
// image volumes are images like any container's, and the provenance annotation is the
// gate's own record.

/// Applies a JSONPatch the way the API server does, for the operations `/mutate` sends
/// (every parent is an object).
fn apply_patch(object: &mut Value, operations: &Value) {
    for operation in operations.as_array().expect("a JSONPatch is a list") {
        let path = operation["path"].as_str().unwrap();
        let (parent, key) = path.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/").replace("~0", "~");
        let parent = object
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{path}: no object to patch"));
        match operation["op"].as_str().unwrap() {
            "add" | "replace" => {
                parent.insert(key, operation["value"].clone());
            }
            "remove" => {
                parent.remove(&key).expect("removes what is there");
            }
            other => panic!("unexpected operation {other}"),
        }
    }
}

impl Harness {
    /// `review` as `/validate` sees it once `/mutate` has admitted and patched it.
    async fn mutated(&self, review: &Value) -> Value {
        let response = self.post("/mutate", review).await;
        assert_eq!(response["allowed"], true, "{response}");
        let mut review = review.clone();
        if let Some(patch) = patch_of(&response) {
            apply_patch(&mut review["request"]["object"], &patch);
        }
        review
    }

    fn pinned(&self, image: &str) -> String {
        format!("{image}@{}", self.digest(image))
    }
}

/// Adds the image volume `name` (`volumes[].image.reference`) to the pod spec `spec`, after
/// the captured Pod's own (secret) volume.
fn add_image_volume(spec: &mut Value, name: &str, reference: &str) {
    let volume =
        json!({"name": name, "image": {"reference": reference, "pullPolicy": "IfNotPresent"}});
    match spec["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
}

/// The provenance annotation `/mutate` wrote, parsed.
fn provenance_of(object: &Value) -> Value {
    let text = object["metadata"]["annotations"]["provenance-gate.dev/provenance"]
        .as_str()
        .unwrap_or_else(|| panic!("no provenance annotation in {object}"));
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn a_pod_update_that_changes_an_image_is_pinned_and_its_provenance_rewritten() {
    let harness = Harness::new();
    let created = harness
        .mutated(&pod_review("prod", &[("api", API), ("pause", PAUSE)]))
        .await;
    let old = created["request"]["object"].clone();
    assert_eq!(provenance_of(&old)["api"]["digest"], harness.digest(API));
    // `kubectl set image pod/echo-pod api=ghcr.io/acme/tools:1`
    let mut update = as_update(created, old);
    update["request"]["object"]["spec"]["containers"][0]["image"] = json!(TOOLS);

    let response = harness.post("/mutate", &update).await;
    assert_eq!(response["allowed"], true, "{response}");
    let patch = patch_of(&response).expect("an UPDATE that brings a tag is pinned");
    assert_eq!(
        patch[0],
        json!({"op": "replace", "path": "/spec/containers/0/image", "value": harness.pinned(TOOLS)})
    );
    assert_eq!(
        patch[1]["path"],
        "/metadata/annotations/provenance-gate.dev~1provenance"
    );
    assert_eq!(patch.as_array().unwrap().len(), 2, "{patch}");
    let mut validated = update.clone();
    apply_patch(&mut validated["request"]["object"], &patch);
    let provenance = provenance_of(&validated["request"]["object"]);
    assert_eq!(provenance["api"]["digest"], harness.digest(TOOLS));
    assert_eq!(
        provenance.as_object().unwrap().len(),
        1,
        "the exempt pause image has no entry: {provenance}"
    );

    // /validate sees the pinned image and the rewritten annotation: admitted, and recorded.
    let response = harness.post("/validate", &validated).await;
    assert_eq!(response["allowed"], true, "{response}");
    let records = harness.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].image.clone(), records[0].result),
        (harness.pinned(TOOLS), "allowed")
    );
}

#[tokio::test]
async fn validate_refuses_a_pod_image_still_a_tag_and_says_why() {
    let harness = Harness::new();
    let api_digest = harness.digest(API);
    let review = pod_review("prod", &[("api", API)]);

    // No mutation at all (the mutating configuration removed): /validate sees the tag.
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 403);
    let text = message(&response);
    assert!(
        text.starts_with(&format!(
            "image {API} denied: rule \"acme\": verified as {api_digest}, but the Pod would pull it by tag"
        )),
        "{text}"
    );
    assert!(
        text.contains("did not pin it: mutation is disabled"),
        "{text}"
    );
    assert_eq!(
        audit_images(&response),
        json!([{"image": API, "result": "denied", "reason": "unpinned_tag", "digest": api_digest}])
    );
    assert_eq!(harness.events.events().len(), 1, "a denial Event");

    // Pinned by /mutate, then set back to a tag by a later mutating webhook, and ours not
    // reinvoked.
    let mut changed = harness.mutated(&review).await;
    changed["request"]["object"]["spec"]["containers"][0]["image"] = json!(API);
    let response = harness.post("/validate", &changed).await;
    assert_eq!(response["allowed"], false, "{response}");
    let text = message(&response);
    assert!(
        text.contains("another mutating webhook changed the image")
            && text.contains("reinvocationPolicy: IfNeeded"),
        "{text}"
    );

    // As /mutate left it: admitted.
    let pinned = harness.mutated(&review).await;
    assert_eq!(harness.post("/validate", &pinned).await["allowed"], true);

    // `kubectl debug` where the mutating configuration leaves out pods/ephemeralcontainers.
    let mut debug = pinned.clone();
    debug["request"]["object"]["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": TOOLS, "targetContainerName": "api"}]);
    debug["request"]["subResource"] = json!("ephemeralcontainers");
    let debug = as_update(debug, pinned["request"]["object"].clone());
    let response = harness.post("/validate", &debug).await;
    assert_eq!(response["allowed"], false, "{response}");
    let text = message(&response);
    assert!(
        text.starts_with(&format!("image {TOOLS} denied: ")) && text.contains("did not pin it"),
        "{text}"
    );
    assert_eq!(
        harness
            .post("/validate", &harness.mutated(&debug).await)
            .await["allowed"],
        true
    );

    // A Pod UPDATE: the tag it brings is refused, the one the old Pod ran is not judged.
    let old = pod_review("prod", &[("api", API), ("tools", WORKER)])["request"]["object"].clone();
    let update = as_update(pod_review("prod", &[("api", API), ("tools", TOOLS)]), old);
    let response = harness.post("/validate", &update).await;
    assert_eq!(response["allowed"], false, "{response}");
    let text = message(&response);
    assert!(
        text.starts_with(&format!("image {TOOLS} denied: ")) && !text.contains(API),
        "{text}"
    );
    assert_eq!(
        harness
            .post("/validate", &harness.mutated(&update).await)
            .await["allowed"],
        true
    );

    // Controllers are never mutated and not refused for tags: their Pods are pinned.
    let deployment =
        controller_review("prod", "apps", "Deployment", "deployments", &[("api", API)]);
    assert_eq!(
        harness.post("/validate", &deployment).await["allowed"],
        true
    );
}

#[tokio::test]
async fn a_tag_left_after_mutation_warns_in_warn_mode_and_is_recorded_in_observe_mode() {
    let harness = Harness::new();
    let warn = harness
        .post("/validate", &pod_review("staging", &[("api", API)]))
        .await;
    assert_eq!(warn["allowed"], true, "{warn}");
    let warned = warnings(&warn);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].starts_with(&format!(
            "image {API} not verified: rule \"acme\": verified as sha256:"
        )),
        "{}",
        warned[0]
    );
    assert_eq!(warn["auditAnnotations"]["verdict"], "warned");

    let observe = harness
        .post("/validate", &pod_review("dev", &[("api", API)]))
        .await;
    assert_eq!(observe["allowed"], true, "{observe}");
    assert!(observe.get("warnings").is_none(), "{observe}");
    assert_eq!(observe["auditAnnotations"]["verdict"], "would_deny");
    let results: Vec<_> = harness
        .records()
        .iter()
        .map(|record| record.result)
        .collect();
    assert_eq!(results, ["warned", "would_deny"]);
    let metrics = harness.metrics();
    for line in [
        r#"provenance_gate_decisions_total{mode="warn",result="warned",reason="unpinned_tag",environment="staging",rule="acme"} 1"#,
        r#"provenance_gate_decisions_total{mode="observe",result="would_deny",reason="unpinned_tag",environment="development",rule="acme"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(harness.events.events().is_empty());
}

#[tokio::test]
async fn image_volumes_are_checked_like_containers_and_pinned() {
    let harness = Harness::new();
    // An exempt container and an unattested image volume.
    let mut review = pod_review("prod", &[("pause", PAUSE)]);
    add_image_volume(&mut review["request"]["object"]["spec"], "models", WORKER);
    for path in ["/validate", "/mutate"] {
        let response = harness.post(path, &review).await;
        assert_eq!(response["allowed"], false, "{path}: {response}");
        assert!(
            message(&response).starts_with(&format!(
                "image {WORKER} denied: rule \"acme\": no attestation found for sha256:"
            )),
            "{path}: {}",
            message(&response)
        );
    }

    // The same through the pod template of every controller kind.
    let kinds = [
        ("apps", "Deployment", "deployments", "/spec/template/spec"),
        ("apps", "ReplicaSet", "replicasets", "/spec/template/spec"),
        ("apps", "StatefulSet", "statefulsets", "/spec/template/spec"),
        ("apps", "DaemonSet", "daemonsets", "/spec/template/spec"),
        ("batch", "Job", "jobs", "/spec/template/spec"),
        (
            "batch",
            "CronJob",
            "cronjobs",
            "/spec/jobTemplate/spec/template/spec",
        ),
    ];
    for (group, kind, resource, spec) in kinds {
        let mut review = controller_review("prod", group, kind, resource, &[("pause", PAUSE)]);
        let spec = review["request"]["object"].pointer_mut(spec).unwrap();
        add_image_volume(spec, "models", WORKER);
        let response = harness.post("/validate", &review).await;
        assert_eq!(response["allowed"], false, "{kind}: {response}");
        assert!(
            message(&response).starts_with(&format!("image {WORKER} denied")),
            "{kind}"
        );
    }

    // Attested: pinned where the volume names it, and recorded apart from the containers.
    let mut review = pod_review("prod", &[("api", API)]);
    add_image_volume(&mut review["request"]["object"]["spec"], "api", API);
    let response = harness.post("/mutate", &review).await;
    assert_eq!(response["allowed"], true, "{response}");
    let patch = patch_of(&response).unwrap();
    assert!(
        patch.as_array().unwrap().contains(&json!({
            "op": "replace",
            "path": "/spec/volumes/1/image/reference",
            "value": harness.pinned(API),
        })),
        "{patch}"
    );
    let mutated = harness.mutated(&review).await;
    let provenance = provenance_of(&mutated["request"]["object"]);
    assert_eq!(provenance["volume:api"]["digest"], harness.digest(API));
    assert_eq!(provenance["api"]["digest"], harness.digest(API));
    assert_eq!(harness.post("/validate", &mutated).await["allowed"], true);
    // Left as a tag, the volume is refused like a container.
    let mut unpinned = mutated.clone();
    unpinned["request"]["object"]["spec"]["volumes"][1]["image"]["reference"] = json!(API);
    let response = harness.post("/validate", &unpinned).await;
    assert_eq!(response["allowed"], false, "{response}");
}

#[tokio::test]
async fn a_pod_update_may_not_change_the_provenance_annotation_on_its_own() {
    let harness = Harness::new();
    let key = "provenance-gate.dev/provenance";
    let forged = json!(
        r#"{"api":{"sourceRepository":"https://github.com/acme/api","digest":"sha256:0000"}}"#
    );

    // On CREATE the requester's value is replaced by what was verified.
    let mut review = pod_review("prod", &[("api", API)]);
    review["request"]["object"]["metadata"]["annotations"][key] = forged.clone();
    let created = harness.mutated(&review).await;
    assert_eq!(
        provenance_of(&created["request"]["object"])["api"]["digest"],
        harness.digest(API)
    );

    // Refused in every mode, at both endpoints: removed, changed, or added to a Pod
    // admitted without one.
    for namespace in ["prod", "staging", "dev"] {
        let created = harness
            .mutated(&pod_review(namespace, &[("api", API)]))
            .await;
        let old = created["request"]["object"].clone();
        let without = |object: &Value| {
            let mut object = object.clone();
            object["metadata"]["annotations"]
                .as_object_mut()
                .unwrap()
                .remove(key);
            object
        };
        let mut removed = as_update(created.clone(), old.clone());
        removed["request"]["object"] = without(&old);
        let mut changed = as_update(created.clone(), old.clone());
        changed["request"]["object"]["metadata"]["annotations"][key] = forged.clone();
        let added = as_update(created.clone(), without(&old));
        for (edit, update) in [("removes", removed), ("changes", changed), ("adds", added)] {
            for path in ["/mutate", "/validate"] {
                let response = harness.post(path, &update).await;
                assert_eq!(response["allowed"], false, "{namespace} {edit} {path}");
                assert_eq!(response["status"]["code"], 403);
                assert_eq!(
                    message(&response),
                    format!("the annotation {key} is provenance-gate's record of what it verified and only provenance-gate writes it: this UPDATE {edit} it without changing an image"),
                );
            }
        }

        // Other edits pass untouched.
        let mut relabelled = as_update(created.clone(), old.clone());
        relabelled["request"]["object"]["metadata"]["labels"]["tier"] = json!("web");
        for path in ["/mutate", "/validate"] {
            assert_eq!(
                harness.post(path, &relabelled).await,
                json!({"uid": relabelled["request"]["uid"], "allowed": true}),
                "{namespace} {path}"
            );
        }

        // With an image change /mutate rewrites it, whatever the requester sent.
        let mut with_image = as_update(created, old);
        with_image["request"]["object"]["spec"]["containers"][0]["image"] = json!(TOOLS);
        with_image["request"]["object"]["metadata"]["annotations"][key] = forged.clone();
        let rewritten = harness.mutated(&with_image).await;
        let provenance = provenance_of(&rewritten["request"]["object"]);
        assert_eq!(
            provenance["api"]["digest"],
            harness.digest(TOOLS),
            "{namespace}"
        );
        assert_eq!(
            harness.post("/validate", &rewritten).await["allowed"],
            true,
            "{namespace}"
        );
    }
    let refused = harness
        .events
        .events()
        .iter()
        .filter(|event| event.note.contains("this UPDATE"))
        .count();
    assert_eq!(refused, 3 * 3 * 2, "one Event per refusal");
}

// ---------------------------------------------------------------------------------------
// Issue 8, items 5, 6, 7 and 12b: unknown namespaces, mode downgrades by relabelling,
// break-glass written while unreviewed, and approvers removed from the policy.

/// A namespace the watch has not delivered, which the API server knows: what
/// `KubeNamespaces` answers after its read.
struct DeliveredLate(NamespaceInfo);

impl NamespaceDirectory for DeliveredLate {
    fn namespace(&self, _name: &str) -> Option<NamespaceInfo> {
        None
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<NamespaceInfo, NamespaceLookupError>> {
        let found = Some(self.0.clone())
            .filter(|info| info.name == name)
            .ok_or_else(|| NamespaceLookupError::NotFound {
                name: name.to_owned(),
            });
        Box::pin(std::future::ready(found))
    }
}

#[tokio::test]
async fn a_pod_in_a_namespace_not_yet_seen_is_judged_in_enforce_mode() {
    let soft_default = POLICY.replace("defaultMode: enforce", "defaultMode: observe");
    let harness = Harness::with(WebhookSettings::default(), Some(&soft_default));
    // Applied in one file with its new env=production namespace, ahead of the watch.
    let review = pod_review("payments-new", &[("worker", WORKER)]);
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], false, "{response}");
    let record = &harness.records()[0];
    assert_eq!(
        (record.mode, record.environment.as_deref()),
        (Mode::Enforce, None)
    );
    assert_eq!(
        record.mode_fallback.as_deref(),
        Some("namespace \"payments-new\" has not been seen by the namespace watch; judged in enforce mode")
    );
    assert_eq!(
        serde_json::to_value(record).unwrap()["modeFallback"],
        json!(record.mode_fallback)
    );

    // Once the namespace is known its own mode applies, and nothing is said of a fallback.
    harness
        .namespaces
        .upsert(namespace("payments-new", "dev", &[]));
    let response = harness.post("/validate", &review).await;
    assert_eq!(response["allowed"], true, "{response}");
    let record = harness.records().pop().unwrap();
    assert_eq!((record.mode, record.mode_fallback), (Mode::Observe, None));
    assert!(!serde_json::to_string(&harness.records()[1])
        .unwrap()
        .contains("modeFallback"));
}

#[tokio::test]
async fn a_namespace_read_on_a_cache_miss_decides_the_mode() {
    let late = DeliveredLate(namespace("payments-new", "staging", &[]));
    let harness = Harness::new().with_directory(Arc::new(late));
    let response = harness
        .post(
            "/validate",
            &pod_review("payments-new", &[("worker", WORKER)]),
        )
        .await;
    assert_eq!(
        response["allowed"], true,
        "warn mode, from the labels read: {response}"
    );
    let record = &harness.records()[0];
    assert_eq!(
        (record.mode, record.environment.as_deref(), record.result),
        (Mode::Warn, Some("staging"), "warned")
    );
    assert_eq!(record.mode_fallback, None);
    // Another unknown namespace: the read fails, so enforce.
    let response = harness
        .post("/validate", &pod_review("elsewhere", &[("worker", WORKER)]))
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(
        harness.records()[1].mode_fallback.as_deref(),
        Some("namespace \"elsewhere\" does not exist; judged in enforce mode")
    );
}

/// A Namespace UPDATE from `env=<from>` to `env=<to>`, annotations as given (the same
/// before and after).
fn relabel_review(user: &str, groups: &[&str], from: &str, to: &str, annotations: Value) -> Value {
    let mut review = namespace_review(
        "UPDATE",
        user,
        groups,
        Some(annotations.clone()),
        annotations,
    );
    review["request"]["oldObject"]["metadata"]["labels"]["env"] = json!(from);
    review["request"]["object"]["metadata"]["labels"]["env"] = json!(to);
    review
}

/// Both endpoints refuse `review` with 403 and `expected` as the message.
async fn refused_at_both_endpoints(harness: &Harness, review: &Value, expected: &str) {
    for endpoint in ["/mutate", "/validate"] {
        let response = harness.post(endpoint, review).await;
        assert_eq!(response["allowed"], false, "{endpoint}: {response}");
        assert_eq!(response["status"]["code"], 403);
        assert_eq!(message(&response), expected, "{endpoint}");
    }
}

#[tokio::test]
async fn lowering_a_namespace_mode_is_for_break_glass_approvers_only() {
    let harness = Harness::new();
    let by_mallory = relabel_review(
        "mallory@example.com",
        &["system:authenticated"],
        "production",
        "dev",
        json!({"team": "payments"}),
    );
    refused_at_both_endpoints(
        &harness,
        &by_mallory,
        "mode change of namespace payments refused: user \"mallory@example.com\" may not: lowering the mode from enforce (environment production) to observe (environment development) is for the policy's break-glass approvers only (groups: sre-oncall; users: none)",
    )
    .await;
    let events = harness.events.events();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[0].reason.as_str(),
            events[0].type_,
            events[0].regarding.name.as_str()
        ),
        ("NamespaceModeChangeRefused", EventType::Warning, "payments")
    );
    let record = &harness.records()[0];
    assert_eq!(
        (
            record.result,
            record.kind.as_deref(),
            record.requested_by.as_deref()
        ),
        ("denied", Some("Namespace"), Some("mallory@example.com"))
    );
    assert_eq!(
        (record.previous_mode, record.mode),
        (Some(Mode::Enforce), Mode::Observe)
    );
    assert_eq!(record.environment.as_deref(), Some("development"));
    assert!(!serde_json::to_value(record)
        .unwrap()
        .as_object()
        .unwrap()
        .contains_key("image"));

    // An approver may; /validate leaves the evidence of who did it.
    let by_alice = relabel_review(
        "alice@example.com",
        &["sre-oncall"],
        "production",
        "dev",
        json!({"team": "payments"}),
    );
    let response = harness.post("/mutate", &by_alice).await;
    assert_eq!(
        response,
        json!({"uid": by_alice["request"]["uid"], "allowed": true})
    );
    let response = harness.post("/validate", &by_alice).await;
    assert_eq!(response["allowed"], true, "{response}");
    let lowered = "namespace payments lowered from enforce (environment production) to observe (environment development) by break-glass approver alice@example.com";
    assert_eq!(warnings(&response), [lowered]);
    assert_eq!(response["auditAnnotations"]["mode-change"], lowered);
    let event = harness.events.events().pop().unwrap();
    assert_eq!(
        (event.reason.as_str(), event.type_, event.note.as_str()),
        ("NamespaceModeLowered", EventType::Normal, lowered)
    );
    let record = harness.records().pop().unwrap();
    assert_eq!(
        (
            record.result,
            record.requested_by.as_deref(),
            record.previous_mode
        ),
        ("allowed", Some("alice@example.com"), Some(Mode::Enforce))
    );

    // Raising, relabelling within a mode and creating with a soft label are open to all.
    let before = harness.records().len();
    for (from, to) in [("dev", "production"), ("staging", "production")] {
        let raised = relabel_review("mallory@example.com", &[], from, to, json!({}));
        assert_eq!(
            harness.post("/validate", &raised).await["allowed"],
            true,
            "{from} -> {to}"
        );
    }
    let mut created = namespace_review("CREATE", "mallory@example.com", &[], None, json!({}));
    created["request"]["object"]["metadata"]["labels"]["env"] = json!("dev");
    assert_eq!(harness.post("/validate", &created).await["allowed"], true);
    assert_eq!(
        harness.records().len(),
        before,
        "only lowering leaves a record"
    );
}

#[tokio::test]
async fn lowering_needs_approvers_and_a_policy_to_name_them() {
    let without = POLICY.split("breakGlass:").next().unwrap();
    let harness = Harness::with(WebhookSettings::default(), Some(without));
    let by_alice = relabel_review(
        "alice@example.com",
        &["sre-oncall"],
        "production",
        "staging",
        json!({}),
    );
    let response = harness.post("/validate", &by_alice).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("the policy names none (no breakGlass section)"),
        "{}",
        message(&response)
    );

    let harness = Harness::with(WebhookSettings::default(), None);
    let response = harness.post("/validate", &by_alice).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("no policy loaded yet"),
        "{}",
        message(&response)
    );
}

#[tokio::test]
async fn raising_the_mode_re_judges_a_break_glass_written_unreviewed() {
    let harness = Harness::new();
    // Written in full by a non-approver while the dev namespace's entry failed open.
    let forged = declared(&[
        (APPROVED_BY_ANNOTATION, "alice@example.com"),
        (APPROVER_GROUPS_ANNOTATION, SRE_ONCALL),
    ]);
    let by_mallory = relabel_review(
        "mallory@example.com",
        &["system:authenticated"],
        "dev",
        "production",
        forged.clone(),
    );
    refused_at_both_endpoints(
        &harness,
        &by_mallory,
        "break-glass on namespace payments refused: raising the mode from observe (environment development) to enforce (environment production) re-judges the break-glass in force: user \"mallory@example.com\" may not declare break-glass: not among the policy's break-glass approvers (users or groups); remove them first, or have a break-glass approver make the change",
    )
    .await;
    assert_eq!(harness.events.events()[0].reason, "BreakGlassRefused");

    // An approver may raise it, and is recorded as the break-glass's approver.
    let by_carol = relabel_review(
        "carol@example.com",
        &["sre-oncall"],
        "dev",
        "production",
        forged.clone(),
    );
    let response = harness.post("/mutate", &by_carol).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(
        patch_of(&response).unwrap()[0],
        json!({"op": "add", "path": "/metadata/annotations/provenance-gate.dev~1break-glass-approved-by", "value": "carol@example.com"})
    );
    let mut recorded = by_carol.clone();
    recorded["request"]["object"]["metadata"]["annotations"][APPROVED_BY_ANNOTATION] =
        json!("carol@example.com");
    let response = harness.post("/validate", &recorded).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(
        harness.events.events().last().unwrap().reason,
        "BreakGlassDeclared"
    );
}

#[tokio::test]
async fn a_break_glass_whose_approver_left_the_policy_no_longer_admits() {
    let moved = POLICY.replace(r#"groups: ["sre-oncall"]"#, r#"groups: ["platform-leads"]"#);
    let harness = Harness::with(WebhookSettings::default(), Some(&moved));
    let response = harness
        .post("/validate", &pod_review("payments", &[("worker", WORKER)]))
        .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(
        warnings(&response),
        ["break-glass on namespace payments ignored (its recorded approver \"alice@example.com\" is no longer among the policy's break-glass approvers (groups: platform-leads; users: none)); enforcing"]
    );
    let record = &harness.records()[0];
    assert_eq!(
        (record.result, record.break_glass_ticket.as_deref()),
        ("denied", None)
    );
    assert!(harness
        .events
        .events()
        .iter()
        .all(|event| event.reason != "BreakGlassAdmission"));

    // Listed by name, the same approver keeps it open.
    let by_name = moved.replace("users: []", r#"users: ["alice@example.com"]"#);
    let harness = Harness::with(WebhookSettings::default(), Some(&by_name));
    let response = harness
        .post("/validate", &pod_review("payments", &[("worker", WORKER)]))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(harness.records()[0].result, "break_glass");
}

#[tokio::test]
async fn namespace_status_and_finalize_writes_are_judged_like_updates() {
    // Both subresources keep the labels and annotations they are sent, so the chart routes
    // them here too; the review must not wave them through as "a subresource".
    let harness = Harness::new();
    let mallory = ("mallory@example.com", &["system:authenticated"][..]);
    for sub_resource in ["status", "finalize"] {
        let mut lowered = relabel_review(mallory.0, mallory.1, "production", "dev", json!({}));
        let forged = declared(&[(APPROVED_BY_ANNOTATION, "alice@example.com")]);
        let mut declared_by_mallory =
            namespace_review("UPDATE", mallory.0, mallory.1, Some(json!({})), forged);
        for review in [&mut lowered, &mut declared_by_mallory] {
            review["request"]["subResource"] = json!(sub_resource);
            for endpoint in ["/mutate", "/validate"] {
                let response = harness.post(endpoint, review).await;
                assert_eq!(
                    response["allowed"], false,
                    "{sub_resource} at {endpoint}: {response}"
                );
                assert_eq!(response["status"]["code"], 403);
            }
        }
    }
}

#[tokio::test]
async fn a_trusted_tag_with_another_digest_is_judged_by_the_digest() {
    // The tag of a verified image with the digest of an unattested one: the runtime pulls
    // the digest, so the tag must lend it nothing.
    let harness = Harness::new();
    let disguised = format!("{API}@{}", harness.digest(WORKER));
    for endpoint in ["/mutate", "/validate"] {
        let response = harness
            .post(endpoint, &pod_review("prod", &[("api", &disguised)]))
            .await;
        assert_eq!(response["allowed"], false, "{endpoint}: {response}");
        assert_eq!(
            audit_images(&response)[0]["digest"],
            json!(harness.digest(WORKER)),
            "{endpoint}"
        );
    }
    // The other way round: the verified digest behind an unattested tag is admitted as is.
    let honest = format!("{WORKER}@{}", harness.digest(API));
    let review = pod_review("prod", &[("worker", &honest)]);
    let response = harness.post("/mutate", &review).await;
    assert_eq!(response["allowed"], true, "{response}");
    let operations = patch_of(&response).unwrap();
    assert!(
        operations
            .as_array()
            .unwrap()
            .iter()
            .all(|operation| operation["path"] != "/spec/containers/0/image"),
        "already pinned, so left alone: {operations}"
    );
    assert_eq!(harness.post("/validate", &review).await["allowed"], true);
}

#[tokio::test]
async fn a_tag_admitted_under_break_glass_is_checked_again_where_it_is_pulled_anew() {
    // Admitted while break-glass was in force, the unattested tag stayed a tag. Once the
    // break-glass is over, a debug container or another container taking that tag pulls
    // whatever it names now: that is a new image for them, not the one admitted before.
    let harness = Harness::new();
    let tools = format!("{TOOLS}@{}", harness.digest(TOOLS));
    let pod = |images: &[(&str, &str)]| pod_review("payments-expired", images);
    let old = pod(&[("api", WORKER), ("tools", &tools)])["request"]["object"].clone();
    let mut debug = pod(&[("api", WORKER), ("tools", &tools)]);
    debug["request"]["object"]["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": WORKER, "targetContainerName": "api"}]);
    debug["request"]["subResource"] = json!("ephemeralcontainers");
    let debug = as_update(debug, old.clone());
    let moved = as_update(pod(&[("api", WORKER), ("tools", WORKER)]), old.clone());
    for (what, review) in [("debug container", &debug), ("moved", &moved)] {
        for endpoint in ["/mutate", "/validate"] {
            let response = harness.post(endpoint, review).await;
            assert_eq!(
                response["allowed"], false,
                "{what} at {endpoint}: {response}"
            );
            assert!(
                message(&response).starts_with(&format!("image {WORKER} denied")),
                "{what} at {endpoint}: {response}"
            );
        }
    }
    // A container keeping its image is not judged again, nor repinned (that would restart it).
    let mut relabelled = pod(&[("api", WORKER), ("tools", &tools)]);
    relabelled["request"]["object"]["metadata"]["labels"]["tier"] = json!("web");
    let relabelled = as_update(relabelled, old);
    for endpoint in ["/mutate", "/validate"] {
        let response = harness.post(endpoint, &relabelled).await;
        assert_eq!(response["allowed"], true, "{endpoint}: {response}");
        assert!(patch_of(&response).is_none(), "{endpoint}: {response}");
    }
}

#[tokio::test]
async fn an_ephemeral_containers_update_cannot_smuggle_a_container_image_unchecked() {
    // The subresource keeps only ephemeralContainers, but whatever else the object says is
    // judged as sent: nothing in it goes unchecked on the way.
    let harness = Harness::new();
    let api = format!("{API}@{}", harness.digest(API));
    let old = pod_review("prod", &[("api", &api)])["request"]["object"].clone();
    let mut review = pod_review("prod", &[("api", WORKER)]);
    review["request"]["object"]["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": api, "targetContainerName": "api"}]);
    review["request"]["subResource"] = json!("ephemeralcontainers");
    let review = as_update(review, old);
    for endpoint in ["/mutate", "/validate"] {
        let response = harness.post(endpoint, &review).await;
        assert_eq!(response["allowed"], false, "{endpoint}: {response}");
        assert!(
            message(&response).starts_with(&format!("image {WORKER} denied")),
            "{endpoint}: {response}"
        );
    }
}

/// A `tracing` writer into a shared buffer, for tests that read the log.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8(bytes)
            .expect("UTF-8 log")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The log of every test in this binary, as lines. Global rather than per test: a
/// subscriber scoped to one thread misses spans whose interest other threads cached first.
fn global_log() -> &'static LogBuffer {
    static LOG: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = LogBuffer::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        log
    })
}

fn lines_naming<'a>(lines: &'a [String], words: &[&str]) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|line| words.iter().all(|word| line.contains(word)))
        .collect()
}

#[tokio::test]
async fn registry_and_verification_logs_of_spawned_checks_carry_the_review_uid() {
    let log = global_log();
    let harness = Harness::new();
    let mut review = pod_review("prod", &[("api", API), ("worker", WORKER)]);
    review["request"]["uid"] = json!("uid-traced-review");
    harness.post("/validate", &review).await;
    let mut other = pod_review("prod", &[("api", API)]);
    other["request"]["uid"] = json!("uid-second-review");
    harness.post("/validate", &other).await;

    let lines = log.lines();
    let uid = "uid=uid-traced-review";
    // The registry line comes from inside the checker, the other from the spawned task.
    for (what, image) in [("registry resolve", API), ("image checked", WORKER)] {
        assert!(
            !lines_naming(&lines, &[what, image, uid]).is_empty(),
            "no {what:?} line for {image} with {uid}: {:#?}",
            lines_naming(&lines, &[what])
        );
    }
    assert!(!lines_naming(&lines, &["image checked", "uid=uid-second-review"]).is_empty());
    // Each review's lines carry its own uid only.
    assert!(lines_naming(&lines, &["uid-second-review", "uid-traced-review"]).is_empty());
}

// ---------------------------------------------------------------------------------------
// `provenance-gate report` over the records this router wrote. They are serialised with
// serde_json, one per line, as `JsonLinesSink` writes them to stdout: the command is tested on
// what the webhook emits, not on hand-written JSON that could drift from the record type.

/// Exit code, stdout and stderr of `provenance-gate report ARGS` with `stdin` as its input.
fn report_command(stdin: &str, args: &[&str]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_provenance-gate"))
        .arg("report")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code().expect("exit code"),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[tokio::test]
async fn the_report_command_summarises_the_records_the_webhook_wrote() {
    let harness = Harness::new();
    // By digest: `/validate` denies a Pod image still named by tag (nothing pinned it).
    let api_pinned = format!("ghcr.io/acme/api@{}", harness.digest(API));
    let reviews = [
        pod_review("prod", &[("api", &api_pinned), ("worker", WORKER)]), // allowed, denied
        pod_review("staging", &[("forked", FORKED), ("pause", PAUSE)]),  // warned, exempt
        pod_review("dev", &[("web", "nginx:1.27")]),                     // would_deny (unmatched)
        pod_review("payments", &[("worker", WORKER)]),                   // break_glass
        relabel_review("mallory@example.com", &[], "production", "dev", json!({})), // refused
    ];
    for review in &reviews {
        harness.post("/validate", review).await;
    }
    let mut dry_run = pod_review("prod", &[("worker", WORKER)]);
    dry_run["request"]["dryRun"] = json!(true);
    harness.post("/validate", &dry_run).await;

    let mut records = String::new();
    for record in harness.records() {
        records.push_str(&serde_json::to_string(&record).unwrap());
        records.push('\n');
    }
    assert_eq!(records.lines().count(), 8);
    records.push_str("a line that is not a record\n");

    let (code, stdout, stderr) = report_command(&records, &["--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(
        summary["lines"],
        json!({"read": 9, "records": 8, "outsideWindow": 0, "dryRuns": 1, "notRecords": 0,
               "malformed": 1, "tooLong": 0})
    );
    let overall = &summary["overall"];
    assert_eq!(
        (&overall["judged"], &overall["proven"], &overall["exempt"]),
        (&json!(5), &json!(1), &json!(1))
    );
    assert_eq!(overall["passRate"], 0.2);
    for (result, count) in [
        ("denied", 1),
        ("warned", 1),
        ("wouldDeny", 1),
        ("breakGlass", 1),
    ] {
        assert_eq!(overall[result], count, "{result}: {overall}");
    }
    // prod and payments are both production: one proven of three judged.
    let production = summary["byEnvironment"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|group| group["key"] == "production")
        .expect("production");
    assert_eq!(
        (&production["judged"], &production["proven"]),
        (&json!(3), &json!(1))
    );

    let break_glass = summary["breakGlass"].as_array().unwrap();
    assert_eq!(break_glass.len(), 1, "{break_glass:?}");
    assert_eq!(break_glass[0]["namespace"], "payments");
    assert_eq!(break_glass[0]["ticket"], "INC-4711");
    assert_eq!(break_glass[0]["approvedBy"], "alice@example.com");
    assert_eq!(break_glass[0]["reason"], "hotfix while CI is down");
    assert_eq!(break_glass[0]["images"], json!([WORKER]));
    assert_eq!(break_glass[0]["firstUse"], NOW);

    let changes = summary["modeChanges"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            &changes[0]["fromMode"],
            &changes[0]["toMode"],
            &changes[0]["result"]
        ),
        (&json!("enforce"), &json!("observe"), &json!("denied"))
    );
    assert_eq!(changes[0]["requestedBy"], "mallory@example.com");

    // Every unproven image has its reason counted; the exempt and the verified one none.
    let reasons = summary["reasons"]["top"].as_array().unwrap();
    let counted: u64 = reasons
        .iter()
        .map(|reason| reason["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 4, "{reasons:?}");
    assert!(reasons.iter().any(|reason| reason["reason"]
        .as_str()
        .unwrap()
        .contains("no attestation found")));

    // A window that ends before the records: all outside it; the text says so.
    let (code, stdout, stderr) = report_command(&records, &["--until", "2026-11-28T09:00:00Z"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "9 lines: 0 records in the window (0 dry runs, not counted below), 8 outside it"
        ),
        "{stdout}"
    );
    // From a file, in a window that holds them all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    std::fs::write(&path, &records).unwrap();
    let (code, stdout, _) = report_command(
        "",
        &[
            path.to_str().unwrap(),
            "--since",
            NOW,
            "--until",
            "2026-11-28T10:00:01Z",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        stdout.contains("all images                20.0%      1/5"),
        "{stdout}"
    );
    // An unreadable file is bad input.
    let (code, _, stderr) = report_command("", &[dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.starts_with("error: failed to read "), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Bad input: the rows of SECURITY.md's bad-input catalogue that are judged at the router.

/// The answer's texts stay within their bounds whatever the input held.
fn assert_texts_bounded(response: &Value) {
    let message = message(response);
    assert!(
        message.chars().count() <= MAX_MESSAGE_CHARS,
        "{}",
        message.len()
    );
    for warning in warnings(response) {
        assert!(warning.chars().count() <= MAX_WARNING_CHARS, "{warning}");
    }
}

#[tokio::test]
async fn a_review_truncated_anywhere_is_a_400_answer() {
    let harness = Harness::new();
    let body = serde_json::to_vec(&pod_review("prod", &[("api", API)])).unwrap();
    // Every 37th cut, and the last byte off: a JSON object cut short is never JSON.
    let cuts = (0..body.len()).step_by(37).chain([body.len() - 1]);
    for cut in cuts {
        for path in ["/validate", "/mutate"] {
            let (status, answer) = harness
                .post_raw(path, body[..cut].to_vec(), Some("application/json"))
                .await;
            assert_eq!(status, StatusCode::OK, "cut at {cut}");
            let response = &answer["response"];
            assert_eq!(response["allowed"], false, "cut at {cut}");
            assert_eq!(response["status"]["code"], 400, "cut at {cut}");
            assert!(
                message(response).starts_with("malformed AdmissionReview: "),
                "{}",
                message(response)
            );
        }
    }
    assert!(harness.records().is_empty());
}

#[tokio::test]
async fn a_pod_with_thousands_of_containers_is_refused_unchecked() {
    let harness = Harness::new();
    let named: Vec<(String, String)> = (0..5000)
        .map(|index| {
            (
                format!("c{index}"),
                format!("ghcr.io/acme/worker-{index}:1"),
            )
        })
        .collect();
    let images: Vec<(&str, &str)> = named
        .iter()
        .map(|(name, image)| (name.as_str(), image.as_str()))
        .collect();
    let expected =
        "Pod echo-pod runs 5000 container images, more than the 256 checked in one review";
    let response = harness
        .post("/validate", &pod_review("prod", &images))
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(message(&response), expected);
    // Warn mode admits it unchecked, saying why, like any other unproven image.
    let response = harness
        .post("/validate", &pod_review("staging", &images))
        .await;
    assert_eq!(response["allowed"], true);
    assert_eq!(warnings(&response), [expected]);
    // None of the 5000 images was checked: each review leaves one record that names no
    // image (not 5000), and the denial one Event.
    let records = harness.records();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|record| record.image.is_empty()));
    assert_eq!(harness.events.events().len(), 1);
}

#[tokio::test]
async fn a_ten_thousand_character_reference_is_denied_with_a_bounded_answer() {
    let harness = Harness::new();
    let long = format!("ghcr.io/acme/{}:1", "a".repeat(10_000));
    let response = harness
        .post("/validate", &pod_review("prod", &[("long", &long)]))
        .await;
    assert_eq!(response["allowed"], false);
    // The reference is quoted shortened, so that the reason is still there to read.
    assert!(
        message(&response).ends_with(
            "… denied: invalid image reference: 10015 bytes is longer than the limit of 4096"
        ),
        "{}",
        message(&response)
    );
    assert_texts_bounded(&response);
    let response = harness
        .post("/validate", &pod_review("staging", &[("long", &long)]))
        .await;
    assert_eq!(response["allowed"], true);
    assert_texts_bounded(&response);
    for record in harness.records() {
        assert!(
            record.reason.len() <= MAX_REASON_BYTES,
            "{}",
            record.reason.len()
        );
    }
}

#[tokio::test]
async fn unicode_look_alike_hosts_are_refused_never_taken_for_the_real_host() {
    let harness = Harness::new();
    // Each looks like ghcr.io (covered by rule acme) or registry.k8s.io (exempt) to a reader.
    let invalid = [
        "ghcr.\u{456}o/acme/api:1.2",      // Cyrillic і
        "\u{ff47}hcr.io/acme/api:1.2",     // fullwidth ｇ
        "ghcr.io\u{200b}/acme/api:1.2",    // zero-width space
        "ghcr\u{3002}io/acme/api:1.2",     // ideographic full stop
        "registry.k8s.\u{456}o/pause:3.9", // the exempt host, Cyrillic і
    ];
    for image in invalid {
        let response = harness
            .post("/validate", &pod_review("prod", &[("api", image)]))
            .await;
        assert_eq!(response["allowed"], false, "{image}");
        assert!(
            message(&response).contains("invalid image reference"),
            "{image}: {}",
            message(&response)
        );
    }
    // The punycode spelling is an ASCII host of its own: no rule names it.
    let punycode = "xn--ghcr-8ve.io/acme/api:1.2";
    let response = harness
        .post("/validate", &pod_review("prod", &[("api", punycode)]))
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("no policy rule covers this image"),
        "{}",
        message(&response)
    );
    let records = harness.records();
    assert_eq!(records.len(), invalid.len() + 1);
    assert!(records
        .iter()
        .all(|record| record.result == "denied" && record.digest.is_none()));
}

#[tokio::test]
async fn garbage_break_glass_annotations_never_admit() {
    let harness = Harness::new();
    let huge = "x".repeat(100_000);
    let garbage: Vec<Vec<(&str, &str)>> = vec![
        vec![
            (TICKET_ANNOTATION, "INC-1"),
            (REASON_ANNOTATION, "r"),
            (EXPIRES_ANNOTATION, "tomorrow"),
        ],
        vec![
            (TICKET_ANNOTATION, "INC-1"),
            (REASON_ANNOTATION, "r"),
            (EXPIRES_ANNOTATION, "9999-12-31T23:59:59Z"),
            (APPROVED_BY_ANNOTATION, "alice@example.com"),
            (APPROVER_GROUPS_ANNOTATION, SRE_ONCALL),
        ],
        vec![
            (TICKET_ANNOTATION, "\u{0}\n\u{202e}"),
            (REASON_ANNOTATION, "\u{0}"),
            (EXPIRES_ANNOTATION, ""),
        ],
        vec![
            (TICKET_ANNOTATION, &huge),
            (REASON_ANNOTATION, &huge),
            (EXPIRES_ANNOTATION, &huge),
            (APPROVED_BY_ANNOTATION, &huge),
        ],
        vec![
            (TICKET_ANNOTATION, "INC-1"),
            (REASON_ANNOTATION, "r"),
            (EXPIRES_ANNOTATION, "2026-11-28T18:00:00Z"),
            (APPROVED_BY_ANNOTATION, "alice@example.com"),
            (APPROVER_GROUPS_ANNOTATION, "not json"),
        ],
        vec![
            (TICKET_ANNOTATION, "INC-1"),
            (REASON_ANNOTATION, "r"),
            (EXPIRES_ANNOTATION, "2026-11-28T18:00:00Z"),
            (APPROVED_BY_ANNOTATION, "mallory@example.com"),
            (APPROVER_GROUPS_ANNOTATION, r#"["system:masters"]"#),
        ],
    ];
    for (index, annotations) in garbage.iter().enumerate() {
        let name = format!("junk-{index}");
        harness
            .namespaces
            .insert_if_absent(namespace(&name, "production", annotations));
        let response = harness
            .post("/validate", &pod_review(&name, &[("worker", WORKER)]))
            .await;
        assert_eq!(response["allowed"], false, "{name}: {response}");
        assert_texts_bounded(&response);
        // Declaring the same annotations, even as an approver, is refused.
        let declared: serde_json::Map<String, Value> = annotations
            .iter()
            .filter(|(key, _)| *key != APPROVED_BY_ANNOTATION && *key != APPROVER_GROUPS_ANNOTATION)
            .map(|(key, value)| (key.to_string(), json!(value)))
            .collect();
        let review = namespace_review(
            "UPDATE",
            "alice@example.com",
            &["sre-oncall"],
            Some(json!({})),
            Value::Object(declared),
        );
        let response = harness.post("/mutate", &review).await;
        if index == 4 || index == 5 {
            // Well-formed declarations: only the recorded approval was garbage.
            continue;
        }
        assert_eq!(response["allowed"], false, "{name}: {response}");
        assert_texts_bounded(&response);
    }
    assert!(harness
        .records()
        .iter()
        .all(|record| record.result == "denied"));
}
