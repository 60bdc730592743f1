//! The cluster side (`cluster::kube`: the policy ConfigMap watch, the Namespace watch and
//! the Event recorder) against a real Kubernetes API server with a real etcd
//! (`provenance_gate_testkit::kube`, binaries from `scripts/install-kube.sh`).
//!
//! Each test starts its own server. One runs everything as a cluster admin; the other
//! grants a ServiceAccount exactly the rules of the Helm chart's `rbac.yaml` and runs the
//! same scenarios with that ServiceAccount's token, then shows what it is refused.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ObjectMeta;
use kube::{Client, Config, ResourceExt};
use prometheus_client::registry::Registry;
use provenance_gate::cluster::kube::{
    watch_namespaces, watch_policy, KubeEvents, KubeNamespaces, NAMESPACE_LOOKUP_TIMEOUT,
    POLICY_CONFIGMAP, POLICY_KEY,
};
use provenance_gate::cluster::{
    ClusterEvent, EventRecorder, EventType, NamespaceDirectory, NamespaceLookupError, NamespaceMap,
    ObjectRef, PolicyCell, PolicySource,
};
use provenance_gate::evidence::metrics::{Metrics, ReloadLabels};
use provenance_gate_testkit::kube::KubeApiServer;

/// The release namespace, as a Helm install would have it.
const RELEASE_NAMESPACE: &str = "provenance-gate";
/// The chart's ServiceAccount (and resource) name for a release named `provenance-gate`.
const SERVICE_ACCOUNT: &str = "provenance-gate";

/// How long a change may take to reach a watcher or the API.
const EVENTUALLY: Duration = Duration::from_secs(30);

const VALID: &str = "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/**\"]\n    owners: [{name: acme}]\n";
const VALID_TWO_RULES: &str = "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/**\"]\n    owners: [{name: acme}]\n  - name: beta\n    images: [\"ghcr.io/beta/**\"]\n    owners: [{name: beta}]\n";
const INVALID: &str = "version: 1\nrules:\n  - name: acme\n    images: [\"ghcr.io/acme/**\"]\n    owners: [{name: acme}]\n    refs: [\"\"]\n    triggers: [not-a-trigger]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_side_works_against_a_real_api_server_as_admin() {
    let server = start_server().await;
    let admin = client(server.kubeconfig_path()).await;
    create_namespace(&admin, RELEASE_NAMESPACE, BTreeMap::new(), BTreeMap::new()).await;

    policy_watch_scenario(&admin, &admin, RELEASE_NAMESPACE).await;
    namespace_watch_scenario(&admin, &admin, "admin").await;
    namespace_lookup_scenario(&admin, &admin, "admin").await;
    events_scenario(&admin, &admin, RELEASE_NAMESPACE).await;
    stop_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_side_works_with_exactly_the_charts_rbac() {
    let server = start_server().await;
    let admin = client(server.kubeconfig_path()).await;
    create_namespace(&admin, RELEASE_NAMESPACE, BTreeMap::new(), BTreeMap::new()).await;
    apply_chart_rbac(&admin).await;
    let token = service_account_token(&admin).await;
    let kubeconfig = server.write_kubeconfig("service-account.kubeconfig", &token);
    let webhook = client(&kubeconfig).await;

    // The token is the ServiceAccount's, not the admin's.
    let secrets: Api<Secret> = Api::namespaced(webhook.clone(), RELEASE_NAMESPACE);
    assert_forbidden(secrets.list(&ListParams::default()).await, "list secrets");

    policy_watch_scenario(&admin, &webhook, RELEASE_NAMESPACE).await;
    namespace_watch_scenario(&admin, &webhook, "rbac").await;
    namespace_lookup_scenario(&admin, &webhook, "rbac").await;
    events_scenario(&admin, &webhook, RELEASE_NAMESPACE).await;

    // Nothing beyond what the scenarios use.
    let configmaps: Api<ConfigMap> = Api::namespaced(webhook.clone(), RELEASE_NAMESPACE);
    assert_forbidden(
        configmaps.list(&ListParams::default()).await,
        "list every ConfigMap (resourceNames allows only the policy's, by field selector)",
    );
    let other = ConfigMap {
        metadata: meta("other-config"),
        data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .create(&PostParams::default(), &other)
        .await
        .expect("the admin creates another ConfigMap");
    assert_forbidden(
        configmaps.get("other-config").await,
        "get another ConfigMap",
    );
    assert_forbidden(
        configmaps
            .patch(
                POLICY_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {POLICY_KEY: VALID}})),
            )
            .await,
        "patch the policy ConfigMap",
    );
    let namespaces: Api<Namespace> = Api::all(webhook.clone());
    assert_forbidden(
        namespaces
            .create(&PostParams::default(), &namespace("rbac-not-allowed"))
            .await,
        "create a Namespace",
    );
    assert_forbidden(
        namespaces
            .patch(
                RELEASE_NAMESPACE,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await,
        "label a Namespace",
    );
    let events: Api<KubeEvent> = Api::namespaced(webhook.clone(), RELEASE_NAMESPACE);
    assert_forbidden(events.list(&ListParams::default()).await, "list events");
    assert_forbidden(
        events
            .delete("anything", &DeleteParams::default())
            .await
            .map(|_| ()),
        "delete an event",
    );
    stop_server(server).await;
}

/// The plain manifests' Namespace entries (tier 0, where every pod entry fails open) with the
/// webhook unreachable: label changes and break-glass annotations are refused, everything
/// else on namespaces goes through (issue 8, item 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_entries_fail_closed_on_label_and_break_glass_writes() {
    let server = start_server().await;
    let admin = client(server.kubeconfig_path()).await;
    Api::<ValidatingWebhookConfiguration>::all(admin.clone())
        .create(&PostParams::default(), &unreachable_namespace_entries())
        .await
        .expect("the admin creates the Namespace entries");
    create_namespace(
        &admin,
        "guarded",
        BTreeMap::from([("env".to_owned(), "production".to_owned())]),
        BTreeMap::new(),
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let patch = |name: &'static str, metadata: serde_json::Value| {
        let namespaces = namespaces.clone();
        async move {
            namespaces
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "metadata": metadata })),
                )
                .await
        }
    };
    let lowered = serde_json::json!({"labels": {"env": "dev"}});
    // The API server picks the configuration up within moments.
    eventually(
        "a relabelling is refused while the webhook is unreachable",
        || async { patch("guarded", lowered.clone()).await.is_err() },
    )
    .await;
    let error = patch("guarded", lowered).await.unwrap_err().to_string();
    assert!(
        error.contains("failed calling webhook \"namespaces-soft-1.validate.provenance-gate.dev\""),
        "{error}"
    );
    let break_glass = serde_json::json!({"annotations": {
        "provenance-gate.dev/break-glass-ticket": "INC-1",
        "provenance-gate.dev/break-glass-approved-by": "alice",
    }});
    assert!(patch("guarded", break_glass.clone()).await.is_err());

    // The status and finalize subresources write metadata too (their strategies keep
    // everything but spec, or status): they are the same writes by another door.
    for metadata in [serde_json::json!({"labels": {"env": "dev"}}), break_glass] {
        let through_status = namespaces
            .patch_status(
                "guarded",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "metadata": metadata })),
            )
            .await;
        let error = through_status
            .map(|namespace| namespace.metadata)
            .expect_err("namespaces/status wrote metadata past the entries");
        assert!(
            error.to_string().contains("failed calling webhook"),
            "{error}"
        );
        let mut finalized = namespaces.get("guarded").await.expect("the namespace");
        let merge = |target: &mut Option<BTreeMap<String, String>>, source: &serde_json::Value| {
            if let Some(source) = source.as_object() {
                let target = target.get_or_insert_with(BTreeMap::new);
                for (key, value) in source {
                    target.insert(key.clone(), value.as_str().unwrap_or_default().to_owned());
                }
            }
        };
        merge(&mut finalized.metadata.labels, &metadata["labels"]);
        merge(
            &mut finalized.metadata.annotations,
            &metadata["annotations"],
        );
        let through_finalize = namespaces
            .replace_subresource("finalize", "guarded", &PostParams::default(), &finalized)
            .await;
        let error = through_finalize
            .map(|namespace| namespace.metadata)
            .expect_err("namespaces/finalize wrote metadata past the entries");
        assert!(
            error.to_string().contains("failed calling webhook"),
            "{error}"
        );
    }

    // Other namespace writes never depend on the webhook.
    patch(
        "guarded",
        serde_json::json!({"annotations": {"team": "payments"}}),
    )
    .await
    .expect("an unrelated annotation");
    patch(
        "guarded",
        serde_json::json!({"labels": {"env": "production"}}),
    )
    .await
    .expect("a label set to the value it has");
    create_namespace(
        &admin,
        "created-soft",
        BTreeMap::from([("env".to_owned(), "dev".to_owned())]),
        BTreeMap::new(),
    )
    .await;
    patch("kube-system", serde_json::json!({"labels": {"env": "dev"}}))
        .await
        .expect("kube-system is never sent to the webhook");
    stop_server(server).await;
}

/// The pod and workload entries of the plain manifests with the webhook unreachable, made to
/// fail closed as the enforce entries are (the manifests are tier 0, whose entries fail open;
/// every tier's entries carry the same `matchConditions`). An UPDATE reaches them only when it
/// changes an image or the provenance annotation: label, finalizer (the garbage collector's
/// too), scale and template annotation edits go through during an outage, while image
/// changes, an added ephemeral container and an edited provenance record wait for the
/// webhook (issue 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_workload_entries_fail_closed_only_on_image_changes() {
    const NAMESPACE: &str = "guarded";
    let server = start_server().await;
    let admin = client(server.kubeconfig_path()).await;
    create_namespace(
        &admin,
        NAMESPACE,
        BTreeMap::from([("env".to_owned(), "production".to_owned())]),
        BTreeMap::new(),
    )
    .await;
    let api = |resource: ApiResource| {
        Api::<DynamicObject>::namespaced_with(admin.clone(), NAMESPACE, &resource)
    };
    let pods = api(ApiResource::erase::<Pod>(&()));
    let deployments = api(ApiResource::erase::<Deployment>(&()));
    let cronjobs = api(ApiResource::erase::<CronJob>(&()));
    let replicasets = api(ApiResource::erase::<ReplicaSet>(&()));
    let template = serde_json::json!({
        "metadata": {"labels": {"app": "app"}},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}]},
    });
    let mut job_template = template.clone();
    job_template["spec"]["restartPolicy"] = "OnFailure".into();
    // The objects come first: once the entries are in, even their CREATE would be refused.
    // A Pod needs its ServiceAccount, which no controller makes here.
    for (objects, object) in [
        (
            api(ApiResource::erase::<ServiceAccount>(&())),
            serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        ),
        (
            pods.clone(),
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"}, "spec": template["spec"]}),
        ),
        (
            deployments.clone(),
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
                "spec": {"selector": {"matchLabels": {"app": "app"}}, "template": template}}),
        ),
        (
            replicasets.clone(),
            serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "app"},
                "spec": {"selector": {"matchLabels": {"app": "app"}}, "template": template}}),
        ),
        (
            cronjobs.clone(),
            serde_json::json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
                "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": job_template}}}}),
        ),
    ] {
        objects
            .create(&PostParams::default(), &dynamic(object.clone()))
            .await
            .unwrap_or_else(|error| panic!("the admin creates {object}: {error}"));
    }
    let mut mutating = unreachable_entries("MutatingWebhookConfiguration", "pod-entries", "pods-");
    let mut validating = unreachable_entries(
        "ValidatingWebhookConfiguration",
        "workload-entries",
        "workloads-",
    );
    for configuration in [&mut mutating, &mut validating] {
        for entry in configuration["webhooks"]
            .as_sequence_mut()
            .expect("webhooks")
        {
            entry["failurePolicy"] = "Fail".into();
        }
    }
    Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .create(&PostParams::default(), &from_value(mutating))
        .await
        .expect("the admin creates the pod entries");
    Api::<ValidatingWebhookConfiguration>::all(admin.clone())
        .create(&PostParams::default(), &from_value(validating))
        .await
        .expect("the admin creates the workload entries");
    let new_pod = dynamic(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "new"}, "spec": template["spec"]}));
    // The API server picks the configurations up within moments.
    eventually(
        "a new Pod is refused while the webhook is unreachable",
        || async { pods.create(&PostParams::default(), &new_pod).await.is_err() },
    )
    .await;

    for (what, resource, name, subresource, patch, refused_by) in OUTAGE_UPDATES {
        let objects = match *resource {
            "pods" => &pods,
            "deployments" => &deployments,
            "replicasets" => &replicasets,
            _ => &cronjobs,
        };
        let patch = Patch::Strategic(serde_json::from_str::<serde_json::Value>(patch).unwrap());
        let params = PatchParams::default();
        let result = match *subresource {
            "" => objects.patch(name, &params, &patch).await,
            subresource => {
                objects
                    .patch_subresource(subresource, name, &params, &patch)
                    .await
            }
        };
        match (*refused_by, result) {
            ("", Ok(_)) => {}
            ("", Err(error)) => panic!("{what}: refused while the webhook is down: {error}"),
            (entry, Ok(_)) => panic!("{what}: admitted without {entry}"),
            (entry, Err(error)) => {
                let error = error.to_string();
                assert!(
                    error.contains(&format!("failed calling webhook \"{entry}\"")),
                    "{what}: refused, but not by {entry}: {error}"
                );
            }
        }
    }
    let stored = pods.get("app").await.expect("the admin reads the Pod");
    assert_eq!(
        stored.data["spec"]["containers"][0]["image"],
        "ghcr.io/acme/app:1"
    );
    assert!(stored.data["spec"]["ephemeralContainers"].is_null());
    stop_server(server).await;
}

/// UPDATEs while the webhook is unreachable: (what, resource, name, subresource, strategic
/// merge patch, the entry that refuses it; empty: admitted). Image volumes are compared too,
/// but the test API server runs without the ImageVolume feature gate (off by default in 1.33),
/// which drops `volumes[].image` before the validating entries see it.
#[rustfmt::skip]
const OUTAGE_UPDATES: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("a Pod label", "pods", "app", "", r#"{"metadata": {"labels": {"team": "payments"}}}"#, ""),
    ("a Pod finalizer", "pods", "app", "", r#"{"metadata": {"finalizers": ["example.com/hold"]}}"#, ""),
    ("the finalizer removed", "pods", "app", "", r#"{"metadata": {"finalizers": null}}"#, ""),
    ("an unrelated Pod annotation", "pods", "app", "", r#"{"metadata": {"annotations": {"team": "payments"}}}"#, ""),
    ("a Deployment scaled", "deployments", "app", "scale", r#"{"spec": {"replicas": 3}}"#, ""),
    ("a Deployment's replicas", "deployments", "app", "", r#"{"spec": {"replicas": 2}}"#, ""),
    ("a rollout restart", "deployments", "app", "",
        r#"{"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}}"#, ""),
    ("a CronJob suspended", "cronjobs", "nightly", "", r#"{"spec": {"suspend": true}}"#, ""),
    // What the garbage collector writes in a foreground deletion of the Deployment.
    ("a ReplicaSet's deletion finalizer", "replicasets", "app", "", r#"{"metadata": {"finalizers": ["foregroundDeletion"]}}"#, ""),
    ("a Pod's image", "pods", "app", "",
        r#"{"spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/app:2"}]}}"#, POD_MUTATION),
    ("the provenance annotation", "pods", "app", "",
        r#"{"metadata": {"annotations": {"provenance-gate.dev/provenance": "{}"}}}"#, POD_MUTATION),
    ("an ephemeral container", "pods", "app", "ephemeralcontainers",
        r#"{"spec": {"ephemeralContainers": [{"name": "debug", "image": "ghcr.io/acme/app:1"}]}}"#, POD_MUTATION),
    ("a Deployment's image", "deployments", "app", "",
        r#"{"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/app:2"}]}}}}"#, WORKLOAD_VALIDATION),
    ("a Deployment's init container", "deployments", "app", "",
        r#"{"spec": {"template": {"spec": {"initContainers": [{"name": "init", "image": "ghcr.io/acme/app:1"}]}}}}"#, WORKLOAD_VALIDATION),
    ("a CronJob's image", "cronjobs", "nightly", "",
        r#"{"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/app:2"}]}}}}}}"#, WORKLOAD_VALIDATION),
];
const POD_MUTATION: &str = "pods-soft-1.mutate.provenance-gate.dev";
const WORKLOAD_VALIDATION: &str = "workloads-soft-1.validate.provenance-gate.dev";

/// The Namespace entries of `manifests/provenance-gate.yaml`, pointed at a port where
/// nothing listens.
fn unreachable_namespace_entries() -> ValidatingWebhookConfiguration {
    from_value(unreachable_entries(
        "ValidatingWebhookConfiguration",
        "namespace-entries",
        "namespaces-",
    ))
}

/// The entries of the `kind` configuration in `manifests/provenance-gate.yaml` whose names
/// start with `prefix`, in a configuration named `name`, each pointed at its own path on a
/// loopback port where nothing listens.
fn unreachable_entries(kind: &str, name: &str, prefix: &str) -> serde_yaml::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/provenance-gate.yaml");
    let manifests = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let mut configuration: serde_yaml::Value = manifests
        .split("\n---\n")
        .filter_map(|document| serde_yaml::from_str::<serde_yaml::Value>(document).ok())
        .find(|document| document["kind"] == kind)
        .unwrap_or_else(|| panic!("the manifests hold a {kind}"));
    configuration["metadata"] = serde_yaml::from_str(&format!("name: {name}")).unwrap();
    let entries = configuration["webhooks"]
        .as_sequence_mut()
        .expect("webhooks");
    entries.retain(|entry| {
        entry["name"]
            .as_str()
            .is_some_and(|entry_name| entry_name.starts_with(prefix))
    });
    assert!(!entries.is_empty(), "the manifests have {prefix}* entries");
    for entry in entries.iter_mut() {
        let path = entry["clientConfig"]["service"]["path"]
            .as_str()
            .expect("a service path")
            .to_owned();
        entry["clientConfig"] =
            serde_yaml::from_str(&format!("url: https://127.0.0.1:9{path}")).unwrap();
    }
    configuration
}

/// The real binary, `provenance-gate serve` in cluster mode (kubeconfig from `KUBECONFIG`,
/// `--namespace provenance-gate`) with the chart's ServiceAccount: `/readyz` stays 503 until
/// the policy ConfigMap exists, then turns 200 (the namespace cache has synced too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_in_cluster_mode_is_ready_once_the_policy_configmap_exists() {
    let server = start_server().await;
    let admin = client(server.kubeconfig_path()).await;
    create_namespace(&admin, RELEASE_NAMESPACE, BTreeMap::new(), BTreeMap::new()).await;
    apply_chart_rbac(&admin).await;
    let token = service_account_token(&admin).await;
    let kubeconfig = server.write_kubeconfig("service-account.kubeconfig", &token);

    let serving = provenance_gate_testkit::registry::TestCa::new().issue_server_identity();
    let tls = tempfile::tempdir().expect("a temporary directory");
    let certificate = tls.path().join("tls.crt");
    let key = tls.path().join("tls.key");
    std::fs::write(&certificate, &serving.certificate_pem).expect("write tls.crt");
    std::fs::write(&key, &serving.private_key_pem).expect("write tls.key");

    let mut gate = ServeProcess::start(&kubeconfig, &certificate, &key);
    let metrics = gate.metrics_address().await;

    // No ConfigMap yet: the watch's first list found none, and serve is not ready for
    // want of a policy. The ConfigMap created next reaches it by the watch, not a list.
    eventually("serve's policy watch lists no ConfigMap", || async {
        gate.logs()
            .contains("policy ConfigMap is missing; no policy is in force")
    })
    .await;
    let (status, body) = http_get(metrics, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: no valid policy loaded yet\n")
    );
    Api::<ConfigMap>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .create(&PostParams::default(), &policy_configmap(VALID))
        .await
        .expect("the admin creates the policy ConfigMap");
    eventually("serve turns ready", || async {
        http_get(metrics, "/readyz").await.0 == 200
    })
    .await;
    let (_, text) = http_get(metrics, "/metrics").await;
    assert!(
        text.contains(r#"provenance_gate_policy_reloads_total{result="success"} 1"#),
        "{text}"
    );
    let loaded = eventually_some("serve's PolicyLoaded Event", || {
        find_event(&admin, RELEASE_NAMESPACE, "PolicyLoaded", POLICY_CONFIGMAP)
    })
    .await;
    assert_eq!(
        loaded.reporting_controller.as_deref(),
        Some("provenance-gate")
    );
    let logs = gate.stop();
    assert!(
        !logs.contains("\"level\":\"ERROR\""),
        "serve logged errors:\n{logs}"
    );
    stop_server(server).await;
}

// --- scenarios ------------------------------------------------------------------------------

/// (a) The policy ConfigMap: loaded, an invalid edit refused (old policy kept, failure
/// counted, Warning Event `PolicyInvalid` on the ConfigMap), a valid edit swapped in, a
/// deletion keeps the policy. The watch and the recorder use `actor`'s credentials.
async fn policy_watch_scenario(admin: &Client, actor: &Client, namespace: &str) {
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), namespace);
    let created = configmaps
        .create(&PostParams::default(), &policy_configmap(VALID))
        .await
        .expect("the admin creates the policy ConfigMap");
    let uid = created.uid().expect("a stored ConfigMap has a uid");

    let cell = Arc::new(PolicyCell::default());
    let metrics = Metrics::register(&mut Registry::default());
    let events: Arc<dyn EventRecorder> = Arc::new(KubeEvents::spawn(actor.clone()));
    let watch = tokio::spawn(watch_policy(
        actor.clone(),
        namespace.to_owned(),
        POLICY_CONFIGMAP.to_owned(),
        POLICY_KEY.to_owned(),
        Arc::clone(&cell),
        metrics.clone(),
        events,
    ));
    let reloads = |result: &str| {
        metrics
            .policy_reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .get()
    };
    let rules_in_force = || {
        cell.current().map(|policy| {
            policy
                .rules()
                .iter()
                .map(|rule| rule.name().to_owned())
                .collect::<Vec<_>>()
        })
    };

    eventually("the ConfigMap's policy is loaded and counted", || async {
        rules_in_force() == Some(vec!["acme".to_owned()]) && reloads("success") == 1
    })
    .await;
    assert_eq!(reloads("failure"), 0);
    let loaded = eventually_some("a PolicyLoaded Event on the ConfigMap", || {
        find_event(admin, namespace, "PolicyLoaded", POLICY_CONFIGMAP)
    })
    .await;
    assert_eq!(loaded.type_.as_deref(), Some("Normal"));
    assert_eq!(loaded.note.as_deref(), Some("policy.yaml loaded: 1 rules"));

    // An invalid edit: refused, the last good policy stays, a Warning Event says why.
    replace_policy(&configmaps, INVALID).await;
    eventually("the invalid policy is counted as a failure", || async {
        reloads("failure") == 1
    })
    .await;
    assert_eq!(rules_in_force(), Some(vec!["acme".to_owned()]));
    let invalid = eventually_some("a PolicyInvalid Event on the ConfigMap", || {
        find_event(admin, namespace, "PolicyInvalid", POLICY_CONFIGMAP)
    })
    .await;
    assert_eq!(invalid.type_.as_deref(), Some("Warning"));
    assert_eq!(invalid.action.as_deref(), Some("Reload"));
    assert_eq!(
        invalid.reporting_controller.as_deref(),
        Some("provenance-gate")
    );
    let regarding = invalid.regarding.clone().unwrap_or_default();
    assert_eq!(regarding.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(regarding.api_version.as_deref(), Some("v1"));
    assert_eq!(regarding.namespace.as_deref(), Some(namespace));
    assert_eq!(regarding.uid.as_deref(), Some(uid.as_str()));
    let note = invalid.note.clone().unwrap_or_default();
    assert!(
        note.starts_with("policy.yaml rejected: ")
            && note.ends_with("; the last good policy stays in force"),
        "{note}"
    );

    // A different valid policy: swapped in.
    replace_policy(&configmaps, VALID_TWO_RULES).await;
    eventually("the new policy is in force", || async {
        rules_in_force() == Some(vec!["acme".to_owned(), "beta".to_owned()])
    })
    .await;
    // The policy is swapped in before its load is counted, on the watch's task: a reader
    // that saw the new rules may be a moment ahead of the counter (a CI run failed so).
    eventually("the new policy's load is counted", || async {
        reloads("success") == 2
    })
    .await;
    assert_eq!(reloads("failure"), 1);

    // Deleted: the last good policy stays in force, nothing is counted. (The watch
    // delivers the deletion in milliseconds; a second is ample.)
    configmaps
        .delete(POLICY_CONFIGMAP, &DeleteParams::default())
        .await
        .expect("the admin deletes the policy ConfigMap");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        rules_in_force(),
        Some(vec!["acme".to_owned(), "beta".to_owned()])
    );
    assert_eq!((reloads("success"), reloads("failure")), (2, 1));
    // Recreated with the same content: loaded again (and counted), which shows the
    // deletion was seen: content already seen would not be reloaded.
    configmaps
        .create(&PostParams::default(), &policy_configmap(VALID_TWO_RULES))
        .await
        .expect("the admin recreates the policy ConfigMap");
    eventually(
        "the recreated ConfigMap's policy is loaded again",
        || async { reloads("success") == 3 },
    )
    .await;
    assert_eq!(
        rules_in_force(),
        Some(vec!["acme".to_owned(), "beta".to_owned()])
    );
    assert_eq!(reloads("failure"), 1);
    assert!(!watch.is_finished(), "the policy watch never ends");
    watch.abort();
}

/// (b) The Namespace cache: ready after the initial list (which holds a namespace made
/// before the watch), new namespaces appear, label and annotation edits propagate, only
/// `provenance-gate.dev/` annotations are kept, a deletion removes.
async fn namespace_watch_scenario(admin: &Client, actor: &Client, prefix: &str) {
    let before = format!("{prefix}-before");
    let after = format!("{prefix}-after");
    create_namespace(
        admin,
        &before,
        BTreeMap::from([("provenance-gate.dev/mode".to_owned(), "enforce".to_owned())]),
        BTreeMap::from([
            (
                "provenance-gate.dev/break-glass".to_owned(),
                "INC-1".to_owned(),
            ),
            ("example.com/unrelated".to_owned(), "x".to_owned()),
        ]),
    )
    .await;

    let map = Arc::new(NamespaceMap::default());
    assert!(!map.is_ready());
    let watch = tokio::spawn(watch_namespaces(actor.clone(), Arc::clone(&map)));
    eventually("the namespace cache is ready", || async { map.is_ready() }).await;
    let seen = map
        .namespace(&before)
        .expect("the initial list holds the namespace made before the watch");
    assert_eq!(
        seen.labels
            .get("provenance-gate.dev/mode")
            .map(String::as_str),
        Some("enforce")
    );
    assert_eq!(
        seen.labels
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some(before.as_str()),
        "the API server's own label is there too"
    );
    assert_eq!(
        seen.annotations,
        BTreeMap::from([(
            "provenance-gate.dev/break-glass".to_owned(),
            "INC-1".to_owned()
        )]),
        "only the webhook's own annotations are kept"
    );
    assert!(map.namespace(RELEASE_NAMESPACE).is_some());
    assert!(map.namespace("kube-system").is_some());

    create_namespace(
        admin,
        &after,
        BTreeMap::from([("provenance-gate.dev/mode".to_owned(), "audit".to_owned())]),
        BTreeMap::new(),
    )
    .await;
    eventually("a new namespace appears", || async {
        map.namespace(&after).is_some_and(|info| {
            info.labels
                .get("provenance-gate.dev/mode")
                .map(String::as_str)
                == Some("audit")
        })
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .patch(
            &after,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {
                "labels": {"provenance-gate.dev/mode": "enforce"},
                "annotations": {"provenance-gate.dev/break-glass": "INC-2"},
            }})),
        )
        .await
        .expect("the admin relabels the namespace");
    eventually("label and annotation changes propagate", || async {
        map.namespace(&after).is_some_and(|info| {
            info.labels
                .get("provenance-gate.dev/mode")
                .map(String::as_str)
                == Some("enforce")
                && info
                    .annotations
                    .get("provenance-gate.dev/break-glass")
                    .map(String::as_str)
                    == Some("INC-2")
        })
    })
    .await;
    namespaces
        .patch(
            &after,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {
                "annotations": {"provenance-gate.dev/break-glass": null},
            }})),
        )
        .await
        .expect("the admin removes the annotation");
    eventually("an annotation's removal propagates", || async {
        map.namespace(&after)
            .is_some_and(|info| info.annotations.is_empty())
    })
    .await;

    delete_namespace(admin, &before).await;
    eventually("a deleted namespace is removed", || async {
        map.namespace(&before).is_none()
    })
    .await;
    assert!(map.namespace(&after).is_some());
    assert!(!watch.is_finished(), "the namespace watch never ends");
    watch.abort();
}

/// (b') A namespace the watch has not delivered (a pod applied in one file with it): read
/// from the API server on the review's path, and kept; one that does not exist is not
/// found, which the webhook answers with enforce.
async fn namespace_lookup_scenario(admin: &Client, actor: &Client, prefix: &str) {
    let name = format!("{prefix}-unwatched");
    create_namespace(
        admin,
        &name,
        BTreeMap::from([("env".to_owned(), "production".to_owned())]),
        BTreeMap::from([
            (
                "provenance-gate.dev/break-glass-ticket".to_owned(),
                "INC-9".to_owned(),
            ),
            ("example.com/unrelated".to_owned(), "x".to_owned()),
        ]),
    )
    .await;
    // No watch runs: the map has never heard of it, as right after the namespace's creation.
    let map = Arc::new(NamespaceMap::default());
    let directory = KubeNamespaces::new(actor.clone(), Arc::clone(&map), NAMESPACE_LOOKUP_TIMEOUT);
    assert_eq!(directory.namespace(&name), None);
    let info = directory
        .lookup(&name)
        .await
        .expect("read from the API server");
    assert_eq!(
        info.labels.get("env").map(String::as_str),
        Some("production")
    );
    assert_eq!(
        info.annotations,
        BTreeMap::from([(
            "provenance-gate.dev/break-glass-ticket".to_owned(),
            "INC-9".to_owned()
        )])
    );
    assert_eq!(map.namespace(&name), Some(info), "kept for the next review");

    let missing = format!("{prefix}-missing");
    assert_eq!(
        directory.lookup(&missing).await,
        Err(NamespaceLookupError::NotFound { name: missing })
    );
    delete_namespace(admin, &name).await;
}

/// (c) Events: an Event about a Pod (its namespace), its repeat (a series, by patch), and
/// one about a Namespace (cluster-scoped: written to `default`).
async fn events_scenario(admin: &Client, actor: &Client, namespace: &str) {
    let events = KubeEvents::spawn(actor.clone());
    let pod = ObjectRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: Some(namespace.to_owned()),
        name: "api-7d9f-abcde".into(),
        uid: Some("0b6b7c2e-1111-2222-3333-444455556666".into()),
    };
    let denied = ClusterEvent {
        regarding: pod.clone(),
        type_: EventType::Warning,
        reason: "ImageDenied".into(),
        note: "image ghcr.io/acme/api:1 denied: no attestation".into(),
        action: "Deny".into(),
    };
    events.record(denied.clone());
    let event = eventually_some("the ImageDenied Event exists", || {
        find_event(admin, namespace, "ImageDenied", &pod.name)
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.action.as_deref(), Some("Deny"));
    assert_eq!(
        event.note.as_deref(),
        Some("image ghcr.io/acme/api:1 denied: no attestation")
    );
    assert_eq!(
        event.reporting_controller.as_deref(),
        Some("provenance-gate")
    );
    let regarding = event.regarding.clone().unwrap_or_default();
    assert_eq!(regarding.kind.as_deref(), Some("Pod"));
    assert_eq!(regarding.namespace.as_deref(), Some(namespace));
    assert_eq!(regarding.uid, pod.uid);

    // The same again: kube-runtime's recorder patches the Event into a series.
    events.record(denied);
    eventually("the repeat becomes a series of 2", || async {
        find_event(admin, namespace, "ImageDenied", &pod.name)
            .await
            .and_then(|event| event.series)
            .is_some_and(|series| series.count == 2)
    })
    .await;

    events.record(ClusterEvent {
        regarding: ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: Some(namespace.to_owned()),
            name: namespace.to_owned(),
            uid: None,
        },
        type_: EventType::Warning,
        reason: "BreakGlassAdmission".into(),
        note: "admitted under break-glass INC-4711".into(),
        action: "Admit".into(),
    });
    let breakglass = eventually_some("the Namespace Event exists in default", || {
        find_event(admin, "default", "BreakGlassAdmission", namespace)
    })
    .await;
    let regarding = breakglass.regarding.unwrap_or_default();
    assert_eq!(regarding.kind.as_deref(), Some("Namespace"));
    assert_eq!(regarding.namespace, None);
    assert_eq!(events.dropped(), 0);
}

// --- RBAC -----------------------------------------------------------------------------------

/// The chart's `templates/rbac.yaml`, rendered for release `provenance-gate` in namespace
/// `provenance-gate` by substituting the few template expressions it uses (an unknown one
/// fails the test, so that the rules tested are always the chart's), then applied.
async fn apply_chart_rbac(admin: &Client) {
    let template_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/provenance-gate/templates/rbac.yaml");
    let template = std::fs::read_to_string(&template_path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", template_path.display()));
    let rendered = render_rbac_template(&template);

    let post = PostParams::default();
    let mut kinds = Vec::new();
    for document in rendered.split("\n---\n") {
        let value: serde_yaml::Value =
            serde_yaml::from_str(document).expect("a rendered RBAC document is YAML");
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "ClusterRole" => {
                let role: ClusterRole = from_value(value);
                Api::<ClusterRole>::all(admin.clone())
                    .create(&post, &role)
                    .await
                    .expect("the admin creates the chart's ClusterRole");
            }
            "ClusterRoleBinding" => {
                let binding: ClusterRoleBinding = from_value(value);
                Api::<ClusterRoleBinding>::all(admin.clone())
                    .create(&post, &binding)
                    .await
                    .expect("the admin creates the chart's ClusterRoleBinding");
            }
            "Role" => {
                let role: Role = from_value(value);
                Api::<Role>::namespaced(admin.clone(), RELEASE_NAMESPACE)
                    .create(&post, &role)
                    .await
                    .expect("the admin creates the chart's Role");
            }
            "RoleBinding" => {
                let binding: RoleBinding = from_value(value);
                Api::<RoleBinding>::namespaced(admin.clone(), RELEASE_NAMESPACE)
                    .create(&post, &binding)
                    .await
                    .expect("the admin creates the chart's RoleBinding");
            }
            other => panic!("rbac.yaml holds an unexpected kind {other:?}:\n{document}"),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
        "the chart's RBAC"
    );

    Api::<ServiceAccount>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .create(
            &post,
            &ServiceAccount {
                metadata: meta(SERVICE_ACCOUNT),
                ..ServiceAccount::default()
            },
        )
        .await
        .expect("the admin creates the ServiceAccount");
}

fn render_rbac_template(template: &str) -> String {
    let mut rendered = String::new();
    // The default values: the periodic audit (and its Pod rule) is off.
    let mut in_audit_block = false;
    for line in template.lines() {
        let trimmed = line.trim();
        if trimmed == "{{- if gt (int .Values.audit.intervalSeconds) 0 }}" {
            in_audit_block = true;
            continue;
        }
        if in_audit_block {
            in_audit_block = trimmed != "{{- end }}";
            continue;
        }
        // `{{- $fullname := … -}}`, and the labels block (`labels:` + an include).
        if trimmed.starts_with("{{- $fullname :=")
            || trimmed == "labels:"
            || trimmed == "{{- include \"provenance-gate.labels\" . | nindent 4 }}"
        {
            continue;
        }
        let line = line
            .replace("{{ $fullname }}", "provenance-gate")
            .replace("{{ .Release.Namespace }}", RELEASE_NAMESPACE)
            .replace(
                "{{ include \"provenance-gate.serviceAccountName\" . }}",
                SERVICE_ACCOUNT,
            )
            .replace(
                "{{ include \"provenance-gate.policyConfigMapName\" . | quote }}",
                &format!("\"{POLICY_CONFIGMAP}\""),
            );
        assert!(
            !line.contains("{{"),
            "rbac.yaml uses a template expression this test does not render; teach \
             render_rbac_template about it: {line}"
        );
        rendered.push_str(&line);
        rendered.push('\n');
    }
    rendered
}

fn dynamic(object: serde_json::Value) -> DynamicObject {
    serde_json::from_value(object).expect("a Kubernetes object")
}

fn from_value<T: serde::de::DeserializeOwned>(value: serde_yaml::Value) -> T {
    serde_yaml::from_value(value).expect("the chart's RBAC object matches the API type")
}

/// A bound token for the ServiceAccount, from the TokenRequest API.
async fn service_account_token(admin: &Client) -> String {
    let request = TokenRequest {
        // No audiences: the API server's own (its issuer), as for a projected token.
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let response = Api::<ServiceAccount>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .expect("the TokenRequest API issues a token");
    response
        .status
        .expect("a TokenRequest response has a status")
        .token
        .expect("a TokenRequest status has a token")
}

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("the ServiceAccount may not {what}, but got {other:?}"),
    }
}

// --- helpers --------------------------------------------------------------------------------

async fn start_server() -> KubeApiServer {
    tokio::task::spawn_blocking(KubeApiServer::start)
        .await
        .expect("the server start does not panic")
}

async fn stop_server(server: KubeApiServer) {
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("the server stops");
}

async fn client(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("the test kubeconfig reads");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the test kubeconfig is a valid client configuration");
    Client::try_from(config).expect("a kube client")
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: meta(name),
        ..Namespace::default()
    }
}

async fn create_namespace(
    admin: &Client,
    name: &str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) {
    let mut object = namespace(name);
    object.metadata.labels = Some(labels);
    object.metadata.annotations = Some(annotations);
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|error| panic!("the admin creates namespace {name}: {error}"));
}

/// Deletes a namespace and finalizes it: without kube-controller-manager (no namespace
/// controller) it would stay `Terminating`, with the `kubernetes` finalizer, for ever.
async fn delete_namespace(admin: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|error| panic!("the admin deletes namespace {name}: {error}"));
    let mut terminating = namespaces
        .get(name)
        .await
        .unwrap_or_else(|error| panic!("namespace {name} is terminating: {error}"));
    if let Some(spec) = terminating.spec.as_mut() {
        spec.finalizers = Some(vec![]);
    }
    namespaces
        .replace_subresource("finalize", name, &PostParams::default(), &terminating)
        .await
        .unwrap_or_else(|error| panic!("the admin finalizes namespace {name}: {error}"));
}

fn policy_configmap(text: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(POLICY_CONFIGMAP),
        data: Some(BTreeMap::from([(POLICY_KEY.to_owned(), text.to_owned())])),
        ..ConfigMap::default()
    }
}

async fn replace_policy(configmaps: &Api<ConfigMap>, text: &str) {
    configmaps
        .patch(
            POLICY_CONFIGMAP,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {POLICY_KEY: text}})),
        )
        .await
        .expect("the admin edits the policy ConfigMap");
}

/// The newest `events.k8s.io/v1` Event in `namespace` with `reason` about an object named
/// `regarding_name`.
async fn find_event(
    admin: &Client,
    namespace: &str,
    reason: &str,
    regarding_name: &str,
) -> Option<KubeEvent> {
    let events: Api<KubeEvent> = Api::namespaced(admin.clone(), namespace);
    let list = events
        .list(&ListParams::default())
        .await
        .expect("the admin lists events");
    list.items
        .into_iter()
        .filter(|event| {
            event.reason.as_deref() == Some(reason)
                && event
                    .regarding
                    .as_ref()
                    .and_then(|regarding| regarding.name.as_deref())
                    == Some(regarding_name)
        })
        .max_by_key(|event| event.metadata.creation_timestamp.clone())
}

async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {}s: {what}",
            EVENTUALLY.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn eventually_some<T, F, Fut>(what: &str, mut find: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        if let Some(found) = find().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {}s: {what}",
            EVENTUALLY.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `provenance-gate serve` in cluster mode, its stderr collected; killed on drop.
struct ServeProcess {
    child: std::process::Child,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    fn start(kubeconfig: &Path, certificate: &Path, key: &Path) -> ServeProcess {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_provenance-gate"))
            .arg("serve")
            .arg("--tls-cert")
            .arg(certificate)
            .arg("--tls-key")
            .arg(key)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--namespace", RELEASE_NAMESPACE])
            .args(["--log-format", "json"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            // Never in-cluster configuration, whatever the machine's environment.
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env_remove("POD_NAMESPACE")
            .env("POD_NAME", "provenance-gate-test-0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start provenance-gate serve");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stream = child.stderr.take().expect("serve's stderr");
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let mut sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        ServeProcess { child, stderr }
    }

    fn logs(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The probe address from the `serving` log line.
    async fn metrics_address(&mut self) -> std::net::SocketAddr {
        let deadline = tokio::time::Instant::now() + EVENTUALLY;
        loop {
            let logs = self.logs();
            let found = logs.lines().find_map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).ok()?;
                let fields = entry.get("fields")?;
                (fields.get("message")?.as_str()? == "serving")
                    .then(|| fields.get("metrics")?.as_str()?.parse().ok())
                    .flatten()
            });
            if let Some(address) = found {
                return address;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited ({status}) before serving:\n{logs}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "serve did not log `serving` within {}s:\n{logs}",
                EVENTUALLY.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process and returns its log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.logs()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: the status code and the body.
async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

// --- workload credentials (serve --workload-credentials) -------------------------------------

/// `helm template` of the chart's `rbac-workload-credentials.yaml` for release
/// `provenance-gate` in its namespace, with workload credentials on and `namespaces` (empty:
/// cluster-wide), applied as the admin. Helm itself renders it, so the rules are the chart's.
async fn apply_workload_credentials_rbac(admin: &Client, namespaces: &[&str]) {
    let helm = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/helm");
    assert!(
        helm.is_file(),
        "this test renders the chart with {}: run scripts/install-chart-tools.sh",
        helm.display()
    );
    let mut command = std::process::Command::new(&helm);
    command
        .args(["template", SERVICE_ACCOUNT])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/provenance-gate"))
        .args(["--namespace", RELEASE_NAMESPACE])
        .args(["--show-only", "templates/rbac-workload-credentials.yaml"])
        .args(["--set", "workloadCredentials.enabled=true"]);
    if !namespaces.is_empty() {
        command.args([
            "--set",
            &format!(
                "workloadCredentials.namespaces={{{}}}",
                namespaces.join(",")
            ),
        ]);
    }
    let output = command.output().expect("run helm");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).expect("helm prints UTF-8");
    let post = PostParams::default();
    for document in serde_yaml::Deserializer::from_str(&rendered) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
            .expect("helm renders YAML");
        match value["kind"].as_str() {
            // Both renders share the ClusterRole; the second finds it there.
            Some("ClusterRole") => {
                let role: ClusterRole = from_value(value);
                match Api::<ClusterRole>::all(admin.clone())
                    .create(&post, &role)
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(error) => panic!("the admin creates the ClusterRole: {error}"),
                }
            }
            Some("ClusterRoleBinding") => {
                let binding: ClusterRoleBinding = from_value(value);
                Api::<ClusterRoleBinding>::all(admin.clone())
                    .create(&post, &binding)
                    .await
                    .expect("the admin creates the ClusterRoleBinding");
            }
            Some("RoleBinding") => {
                let binding: RoleBinding = from_value(value);
                let namespace = binding.metadata.namespace.clone().expect("a namespace");
                Api::<RoleBinding>::namespaced(admin.clone(), &namespace)
                    .create(&post, &binding)
                    .await
                    .expect("the admin creates the RoleBinding");
            }
            None => {}
            Some(other) => panic!("unexpected kind {other} in the workload credentials RBAC"),
        }
    }
}

fn pull_secret(name: &str, type_: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: meta(name),
        type_: Some(type_.to_owned()),
        string_data: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        ..Secret::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_credentials_are_read_with_exactly_the_charts_rbac() {
    use provenance_gate::cluster::pull_secrets::{
        KubeSecrets, PullSecretError, PullSecretNames, PullSecrets, DOCKER_CONFIG_JSON_KEY,
        DOCKER_CONFIG_JSON_TYPE,
    };
    use provenance_gate::registry::{Credentials, RegistryLogin};

    let server = start_server().await;
    let admin = client(server.kubeconfig_path()).await;
    for name in [RELEASE_NAMESPACE, "team-a", "team-b"] {
        create_namespace(&admin, name, BTreeMap::new(), BTreeMap::new()).await;
    }
    apply_chart_rbac(&admin).await;
    apply_workload_credentials_rbac(&admin, &["team-a"]).await;
    let token = service_account_token(&admin).await;
    let kubeconfig = server.write_kubeconfig("service-account.kubeconfig", &token);
    let webhook = client(&kubeconfig).await;

    let docker_config = |user: &str| {
        format!(r#"{{"auths": {{"ghcr.io": {{"username": "{user}", "password": "p"}}}}}}"#)
    };
    for (namespace, user) in [("team-a", "team-a-bot"), ("team-b", "team-b-bot")] {
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
        let config = docker_config(user);
        for secret in [
            pull_secret(
                "regcred",
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                &config,
            ),
            // A docker config under another type: never used.
            pull_secret("opaque", "Opaque", DOCKER_CONFIG_JSON_KEY, &config),
        ] {
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .expect("the admin creates a secret");
        }
        let account = ServiceAccount {
            metadata: meta("builder"),
            image_pull_secrets: Some(vec![k8s_openapi::api::core::v1::LocalObjectReference {
                name: "regcred".to_owned(),
            }]),
            ..ServiceAccount::default()
        };
        Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
            .create(&PostParams::default(), &account)
            .await
            .expect("the admin creates a ServiceAccount");
    }

    let pull_secrets = PullSecrets::new(Arc::new(KubeSecrets::new(webhook.clone())));
    let user = |read: &provenance_gate::cluster::pull_secrets::WorkloadLogins| match read
        .logins
        .login_for("ghcr.io", "acme/api")
    {
        Some(RegistryLogin::Password(credentials)) => {
            Some(Credentials::username(credentials).to_owned())
        }
        _ => None,
    };
    let by_secret = PullSecretNames {
        secrets: vec!["regcred".to_owned(), "opaque".to_owned()],
        service_account: None,
    };
    let by_account = PullSecretNames {
        secrets: Vec::new(),
        service_account: Some("builder".to_owned()),
    };

    // The pod's secrets, and its ServiceAccount's, in a namespace the chart binds.
    let read = pull_secrets.logins("team-a", &by_secret).await;
    assert_eq!(user(&read).as_deref(), Some("team-a-bot"));
    assert!(
        matches!(
            read.problems.as_slice(),
            [PullSecretError::WrongType { .. }]
        ),
        "{:?}",
        read.problems
    );
    let read = pull_secrets.logins("team-a", &by_account).await;
    assert_eq!(user(&read).as_deref(), Some("team-a-bot"));

    // Not bound in team-b: refused by the API server, so nothing is used.
    let read = pull_secrets.logins("team-b", &by_account).await;
    assert_eq!(user(&read), None);
    assert!(
        matches!(read.problems.as_slice(), [PullSecretError::ServiceAccount { why, .. }] if why.contains("forbidden")),
        "{:?}",
        read.problems
    );

    // get by name only: the webhook cannot list, watch or write Secrets or ServiceAccounts,
    // nor read anything else in the namespace.
    let secrets: Api<Secret> = Api::namespaced(webhook.clone(), "team-a");
    assert_forbidden(secrets.list(&ListParams::default()).await, "list secrets");
    assert_forbidden(
        secrets
            .create(
                &PostParams::default(),
                &pull_secret("mine", "Opaque", "k", "v"),
            )
            .await,
        "create a secret",
    );
    assert_forbidden(
        secrets
            .patch(
                "regcred",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await,
        "patch a secret",
    );
    assert_forbidden(
        Api::<ServiceAccount>::namespaced(webhook.clone(), "team-a")
            .list(&ListParams::default())
            .await,
        "list service accounts",
    );
    assert_forbidden(
        Api::<ConfigMap>::namespaced(webhook.clone(), "team-a")
            .list(&ListParams::default())
            .await,
        "list configmaps",
    );
    assert_forbidden(
        Api::<Pod>::namespaced(webhook.clone(), "team-a")
            .list(&ListParams::default())
            .await,
        "list pods",
    );

    // Cluster-wide (no namespaces listed): team-b too. A new reader, since failed reads are
    // remembered for a few seconds.
    apply_workload_credentials_rbac(&admin, &[]).await;
    let pull_secrets = PullSecrets::new(Arc::new(KubeSecrets::new(webhook.clone())));
    eventually("the ClusterRoleBinding applies", || async {
        user(&pull_secrets.logins("team-b", &by_account).await).as_deref() == Some("team-b-bot")
    })
    .await;
    let secrets: Api<Secret> = Api::all(webhook.clone());
    assert_forbidden(
        secrets.list(&ListParams::default()).await,
        "list secrets cluster-wide",
    );
    stop_server(server).await;
}
