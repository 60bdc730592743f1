//! Workload credentials (`serve --workload-credentials`) through the admission router, against
//! a REAL token-auth registry from the test kit (Debian's `docker-registry` behind the kit's
//! token server) holding a private, attested image: the pod's own imagePullSecrets (or its
//! ServiceAccount's) are what reads it, never another namespace's, never a secret another
//! pod's review left in a cache; the webhook's own credentials are the fallback; and
//! `identitytoken` logins are exchanged at the token realm (OAuth2 refresh-token grant).
//!
//! The secrets come from the in-memory `SecretStore`; reading them from a real API server
//! with the chart's RBAC is `tests/kube_cluster.rs::workload_credentials_are_read_with_exactly_the_charts_rbac`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use tower::ServiceExt;

use provenance_gate::admission::{router, WebhookSettings, WebhookState};
use provenance_gate::check::registry_binding::PolicyRegistry;
use provenance_gate::check::{CheckSettings, ImageChecker, ImageOutcome};
use provenance_gate::cluster::pull_secrets::{MemorySecrets, PullSecrets};
use provenance_gate::cluster::{NamespaceInfo, NamespaceMap, PolicyCell, RecordedEvents};
use provenance_gate::evidence::metrics::Metrics;
use provenance_gate::evidence::records::MemorySink;
use provenance_gate::policy::Policy;
use provenance_gate::registry::{AllowedRegistries, DockerConfig, RegistryOptions};
use provenance_gate_testkit::registry::{
    push_attested_image, ConnectionRecorder, DistributionRegistry, PushedImage, TestRegistry,
    TokenAccess,
};
use provenance_gate_testkit::TestInstance;

/// A private repository (the token realm gives nothing without a login) holding an image
/// attested by the kit's default build, and a webhook whose policy covers it.
struct Private {
    registry: DistributionRegistry,
    image: PushedImage,
    instance: TestInstance,
    ca_dir: tempfile::TempDir,
    /// A port that only counts connections, named by a pull secret but by no rule.
    uncovered: ConnectionRecorder,
}

impl Private {
    fn start() -> Private {
        let registry = DistributionRegistry::tls_with_token_auth(TokenAccess::CredentialsRequired);
        let instance = TestInstance::timestamp_only();
        let image =
            push_attested_image(&registry.client(), "acme/api", "v1", &instance, |spec| spec);
        let ca_dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            ca_dir.path().join("ca.pem"),
            registry.ca_pem().expect("a TLS registry"),
        )
        .expect("the CA file is written");
        Private {
            registry,
            image,
            instance,
            ca_dir,
            uncovered: ConnectionRecorder::start(),
        }
    }

    fn host(&self) -> String {
        self.registry.host()
    }

    fn policy(&self) -> Policy {
        let host = self.host();
        let ca = self.ca_dir.path().join("ca.pem");
        Policy::from_yaml(&format!(
            r#"
version: 1
defaultMode: enforce
unmatchedImages: deny
rules:
  - name: acme
    images: ["{host}/acme/**"]
    repositories: [{{name: acme/api, id: "804070735"}}]
registries:
  - {{host: "{host}", caFile: "{}"}}
"#,
            ca.display()
        ))
        .expect("the test policy is valid")
    }

    /// The `.dockerconfigjson` of the registry's user, with `password` as its password.
    fn docker_config(&self, password: Option<&str>) -> String {
        let mut credentials = self.registry.credentials().expect("a user").clone();
        if let Some(password) = password {
            credentials.password = password.to_owned();
        }
        credentials.docker_config_json(&self.host())
    }

    /// The webhook over the policy, with `global` as its own `--docker-config`, and the
    /// secrets of `store` as the workloads' imagePullSecrets.
    fn webhook(&self, global: DockerConfig, store: Arc<MemorySecrets>) -> Webhook {
        let roots = common::kit_roots(&self.instance);
        let policy = Arc::new(PolicyCell::new(Some(self.policy())));
        let mut options = RegistryOptions::new(AllowedRegistries::Any);
        options.credentials = global;
        options.request_timeout = Duration::from_secs(3);
        let registry = PolicyRegistry::new(policy.clone(), options).expect("the client builds");
        let checker = ImageChecker::new(registry, Arc::new(roots), CheckSettings::default())
            .with_workload_logins();
        let namespaces = Arc::new(NamespaceMap::default());
        namespaces.replace_all(["team-a", "team-b"].map(|name| NamespaceInfo {
            name: name.to_owned(),
            ..NamespaceInfo::default()
        }));
        let mut metrics_registry = prometheus_client::registry::Registry::default();
        let state = WebhookState {
            checker: Arc::new(checker),
            policy,
            namespaces,
            events: Arc::new(RecordedEvents::default()),
            records: Arc::new(MemorySink::default()),
            metrics: Metrics::register(&mut metrics_registry),
            settings: WebhookSettings::default(),
            clock: WebhookState::<PolicyRegistry>::system_clock(),
            pull_secrets: Some(Arc::new(PullSecrets::new(store))),
        };
        Webhook {
            state: Arc::new(state),
        }
    }

    /// The image by tag, and pinned to its digest.
    fn by_tag(&self) -> String {
        self.image.reference.clone()
    }

    fn by_digest(&self) -> String {
        format!("{}/acme/api@{}", self.host(), self.image.manifest_digest)
    }
}

struct Webhook {
    state: Arc<WebhookState<PolicyRegistry>>,
}

/// One admission answer: allowed, its message and warnings.
#[derive(Debug)]
struct Answer {
    allowed: bool,
    message: String,
    warnings: Vec<String>,
}

impl Answer {
    fn assert_denied_for(&self, reason: &str) {
        assert!(!self.allowed, "expected a denial: {self:#?}");
        assert!(
            self.message.contains(reason),
            "the denial should say {reason:?}: {self:#?}"
        );
    }
}

/// A pod spec running `image`, with `extra` merged into it.
fn pod_spec(image: &str, extra: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "app", "image": image}]});
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    spec
}

impl Webhook {
    /// `/mutate` for a Pod in `namespace` running `image`, whose spec `extra` is merged into.
    async fn pod(&self, namespace: &str, image: &str, extra: Value) -> Answer {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": pod_spec(image, extra),
        });
        self.review(namespace, ("", "Pod", "pods"), object).await
    }

    /// `/mutate` for a Deployment in `namespace` whose pod template runs `image`.
    async fn deployment(&self, namespace: &str, image: &str, extra: Value) -> Answer {
        let object = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": pod_spec(image, extra),
                },
            },
        });
        self.review(namespace, ("apps", "Deployment", "deployments"), object)
            .await
    }

    async fn review(
        &self,
        namespace: &str,
        (group, kind, resource): (&str, &str, &str),
        object: Value,
    ) -> Answer {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "6f1c5a52-0000-4000-8000-000000000001",
                "kind": {"group": group, "version": "v1", "kind": kind},
                "resource": {"group": group, "version": "v1", "resource": resource},
                "namespace": namespace,
                "operation": "CREATE",
                "userInfo": {"username": "alice"},
                "object": object,
                "dryRun": false,
            },
        });
        let request = Request::builder()
            .method("POST")
            .uri("/mutate")
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&review).expect("JSON")))
            .expect("a request");
        let response = router(self.state.clone())
            .oneshot(request)
            .await
            .expect("the router answers");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        let answer: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
        let response = &answer["response"];
        Answer {
            allowed: response["allowed"].as_bool().expect("allowed is a boolean"),
            message: response["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            warnings: response["warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        }
    }
}

fn pull_secrets(names: &[&str]) -> Value {
    json!({"imagePullSecrets": names.iter().map(|name| json!({"name": name})).collect::<Vec<_>>()})
}

const UNAUTHORIZED: &str = "refused the credentials or requires them";

#[tokio::test(flavor = "multi_thread")]
async fn a_private_image_is_admitted_only_with_the_pods_own_pull_secret() {
    let private = Private::start();
    let store = Arc::new(MemorySecrets::default());
    store.insert_docker_config("team-a", "regcred", &private.docker_config(None));
    store.insert_docker_config("team-b", "team-b-regcred", &private.docker_config(None));
    store.insert_docker_config("team-a", "stale", &private.docker_config(Some("rotated")));
    store.insert_service_account("team-a", "builder", &["regcred"]);
    let webhook = private.webhook(DockerConfig::empty(), store);
    let (tag, digest) = (private.by_tag(), private.by_digest());

    let admitted = webhook
        .pod("team-a", &tag, pull_secrets(&["regcred"]))
        .await;
    assert!(admitted.allowed, "{admitted:#?}");
    // Its ServiceAccount's pull secrets, when the pod names none; a controller's template
    // the same.
    let builder = json!({"serviceAccountName": "builder"});
    let admitted = webhook.pod("team-a", &tag, builder.clone()).await;
    assert!(admitted.allowed, "{admitted:#?}");
    let admitted = webhook.deployment("team-a", &tag, builder).await;
    assert!(admitted.allowed, "{admitted:#?}");
    webhook
        .deployment("team-a", &tag, json!({"serviceAccountName": "nobody"}))
        .await
        .assert_denied_for(UNAUTHORIZED);

    // With the tag resolved, the token cached and the digest's attestations verified for
    // team-a's login, nothing of it serves a pod without a login, by tag or by digest.
    for image in [&tag, &digest] {
        webhook
            .pod("team-a", image, json!({}))
            .await
            .assert_denied_for(UNAUTHORIZED);
    }
    // Another namespace's secret is not read: the name is looked up in the pod's own.
    let other_namespace = webhook
        .pod("team-a", &tag, pull_secrets(&["team-b-regcred"]))
        .await;
    other_namespace.assert_denied_for(UNAUTHORIZED);
    assert!(
        other_namespace.warnings.iter().any(|warning| warning
            .contains("imagePullSecret \"team-b-regcred\" does not exist in namespace \"team-a\"")),
        "{other_namespace:#?}"
    );
    // A wrong password is refused at the realm, and not replaced by a cached token.
    webhook
        .pod("team-a", &tag, pull_secrets(&["stale"]))
        .await
        .assert_denied_for(UNAUTHORIZED);
    // team-b's own secret reads it for team-b.
    let admitted = webhook
        .pod("team-b", &digest, pull_secrets(&["team-b-regcred"]))
        .await;
    assert!(admitted.allowed, "{admitted:#?}");

    let user = &private.registry.credentials().expect("a user").username;
    let token_requests = private
        .registry
        .token_server()
        .expect("token auth")
        .requests();
    // The pods without a login asked anonymously and got nothing; the stale secret's
    // password was presented, and refused.
    assert!(
        token_requests
            .iter()
            .filter(|request| request.username.is_none())
            .all(|request| !request.granted),
        "{token_requests:#?}"
    );
    assert!(
        token_requests
            .iter()
            .any(|request| request.username.as_deref() == Some(user.as_str()) && !request.granted),
        "{token_requests:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhooks_own_credentials_are_the_fallback_and_no_secret_names_a_host() {
    let private = Private::start();
    let store = Arc::new(MemorySecrets::default());
    let uncovered = private.uncovered.host();
    // Entries for a host no rule names (with a login that would work there), and a wrong
    // password for the private registry.
    let elsewhere = json!({"auths": {uncovered.clone(): {"identitytoken": "refresh-x"}}});
    store.insert_docker_config("team-a", "elsewhere", &elsewhere.to_string());
    store.insert_docker_config("team-a", "stale", &private.docker_config(Some("rotated")));
    let global =
        DockerConfig::from_json(private.docker_config(None).as_bytes()).expect("a docker config");
    let webhook = private.webhook(global, store);
    let tag = private.by_tag();

    // No entry for the registry: the webhook's own login reads it, as the node's would.
    for extra in [json!({}), pull_secrets(&["elsewhere"])] {
        let admitted = webhook.pod("team-a", &tag, extra).await;
        assert!(admitted.allowed, "{admitted:#?}");
    }
    // The pod's entry for the registry is the one used, not the webhook's.
    webhook
        .pod("team-a", &tag, pull_secrets(&["stale"]))
        .await
        .assert_denied_for(UNAUTHORIZED);
    // A pod naming the uncovered host in an image is refused without a connection; its
    // pull secret never made the webhook contact that host either.
    let refused = webhook
        .pod(
            "team-a",
            &format!("{uncovered}/acme/api:v1"),
            pull_secrets(&["elsewhere"]),
        )
        .await;
    assert!(!refused.allowed, "{refused:#?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(private.uncovered.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_tokens_are_exchanged_at_the_token_realm() {
    let private = Private::start();
    let identity_config = private
        .registry
        .identity_token_docker_config_json()
        .expect("token auth");
    let wrong_identity =
        json!({"auths": {private.host(): {"identitytoken": "refresh-not-issued"}}}).to_string();

    // As the webhook's own login.
    let global = DockerConfig::from_json(identity_config.as_bytes()).expect("a docker config");
    let webhook = private.webhook(global, Arc::new(MemorySecrets::default()));
    let check = webhook
        .state
        .checker
        .check(&private.policy(), &private.by_tag())
        .await;
    assert!(
        matches!(check.outcome, ImageOutcome::Verified { .. }),
        "{check:#?}"
    );

    // As a pod's.
    let store = Arc::new(MemorySecrets::default());
    store.insert_docker_config("team-a", "oauth", &identity_config);
    store.insert_docker_config("team-a", "revoked", &wrong_identity);
    let webhook = private.webhook(DockerConfig::empty(), store);
    let admitted = webhook
        .pod("team-a", &private.by_digest(), pull_secrets(&["oauth"]))
        .await;
    assert!(admitted.allowed, "{admitted:#?}");
    webhook
        .pod("team-a", &private.by_tag(), pull_secrets(&["revoked"]))
        .await
        .assert_denied_for(UNAUTHORIZED);

    let requests = private
        .registry
        .token_server()
        .expect("token auth")
        .requests();
    let refreshes: Vec<bool> = requests
        .iter()
        .filter(|request| request.refresh_token)
        .map(|request| request.granted)
        .collect();
    // Granted for the issued token (once per scope and login: cached), refused for the other.
    assert!(refreshes.contains(&true), "{requests:#?}");
    assert!(refreshes.contains(&false), "{requests:#?}");
    assert!(
        requests
            .iter()
            .filter(|request| request.refresh_token)
            .all(|request| request.scopes == ["repository:acme/api:pull"]),
        "{requests:#?}"
    );
}
