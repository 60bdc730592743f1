//! Pods through a real API server (benches/apiserver_load.sh runs it; BENCHMARKS.md has the
//! figures): the end-to-end suite's control plane (etcd and kube-apiserver from
//! target/tools/bin), a registry holding minted attested images, and an admission webhook in a
//! network namespace behind a Service and its `Endpoints`, as in tests/e2e_apiserver.rs.
//!
//! Phases, each reported on stdout as `key value` lines under a `== phase` heading:
//! - floor: Pod CREATEs in a namespace no webhook is called for (the chart's
//!   `webhook.excludeNamespaces`): what the API server and etcd cost alone;
//! - provenance-gate: `provenance-gate serve` as the chart's Deployment runs it, with the
//!   chart's webhook configurations (`helm template`), Pods naming attested images by tag;
//! - policy-controller (with `--policy-controller PATH`): sigstore/policy-controller's webhook,
//!   its CRDs and webhook configurations from its module's `config/`, a `TrustRoot` holding the
//!   kit's instance and a `ClusterImagePolicy` shaped like GitHub's `trust-policies` chart, the
//!   same registry and images, the same Pods.
//!
//! Each phase POSTs the Pods concurrently to the API server (keep-alive, one connection per
//! sender), checks every answer (201 with the image pinned to its digest, or for the floor,
//! stored as sent) and reads the API server's own
//! `apiserver_admission_webhook_admission_duration_seconds` (delta over the phase, per webhook).
//! Exits 1 when a Pod got an unexpected answer; it never judges timings.
//!
//! Test support, never shipped. Numbers from it are only comparable within one run.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use provenance_gate_testkit::kube::{ApiServerOptions, KubeApiServer};
use provenance_gate_testkit::netns::NetworkNamespace;
use provenance_gate_testkit::prometheus::Scrape;
use provenance_gate_testkit::registry::{
    push_attested_image, push_unattested_image, DistributionRegistry, PushedImage, RegistryClient,
    TestRegistry,
};
use provenance_gate_testkit::TestInstance;
use serde_json::{json, Value};

const RELEASE: &str = "provenance-gate";
const TRUSTED_ROOT_CONFIGMAP: &str = "testkit-trusted-root";
const TRUSTED_ROOT_KEY: &str = "trusted_root.json";
const FLOOR_NS: &str = "bench-floor";
const GATE_NS: &str = "bench-gate";
const PC_NS: &str = "bench-policy-controller";
const PC_SYSTEM_NS: &str = "cosign-system";
const HISTOGRAM: &str = "apiserver_admission_webhook_admission_duration_seconds";
const STARTUP: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Options {
    gate: PathBuf,
    tools: PathBuf,
    pods: usize,
    concurrency: usize,
    images: usize,
    policy_controller: Option<PathBuf>,
    policy_controller_config: Option<PathBuf>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            gate: std::env::current_exe()
                .map(|me| me.with_file_name("provenance-gate"))
                .map_err(|error| format!("cannot locate this program: {error}"))?,
            tools: PathBuf::from("target/tools/bin"),
            pods: 1000,
            concurrency: 16,
            images: 20,
            policy_controller: std::env::var_os("POLICY_CONTROLLER_WEBHOOK").map(PathBuf::from),
            policy_controller_config: std::env::var_os("POLICY_CONTROLLER_CONFIG")
                .map(PathBuf::from),
        };
        let mut arguments = std::env::args().skip(1);
        while let Some(flag) = arguments.next() {
            if flag == "--smoke" {
                options.pods = 20;
                options.concurrency = 4;
                options.images = 2;
                continue;
            }
            let value = arguments
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?;
            let count = || {
                value
                    .parse::<usize>()
                    .map_err(|_| format!("{flag}: not a count: {value}"))
            };
            match flag.as_str() {
                "--gate" => options.gate = PathBuf::from(&value),
                "--tools" => options.tools = PathBuf::from(&value),
                "--pods" => options.pods = count()?,
                "--concurrency" => options.concurrency = count()?,
                "--images" => options.images = count()?,
                "--policy-controller" => options.policy_controller = Some(PathBuf::from(&value)),
                "--policy-controller-config" => {
                    options.policy_controller_config = Some(PathBuf::from(&value))
                }
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if options.pods == 0 || options.concurrency == 0 || options.images == 0 {
            return Err("--pods, --concurrency and --images must be positive".into());
        }
        Ok(options)
    }
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("apiserver-load: {error}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("apiserver-load: some Pods got unexpected answers (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("apiserver-load: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The control plane, the registry and the kubectl the phases share.
struct Cluster {
    server: KubeApiServer,
    registry: DistributionRegistry,
    netns: NetworkNamespace,
    instance: TestInstance,
    images: Vec<PushedImage>,
    /// Under the policies' path, with no attestation: every webhook must refuse it.
    unattested: PushedImage,
    tools: PathBuf,
    dir: tempfile::TempDir,
}

fn run(options: &Options) -> Result<bool, String> {
    let started = Instant::now();
    let netns = NetworkNamespace::create();
    let registry = DistributionRegistry::plain_on(netns.host_ip());
    let instance = TestInstance::timestamp_only();
    let client = registry.client();
    let images: Vec<PushedImage> = (0..options.images)
        .map(|index| {
            push_attested_image(
                &client,
                "acme/api",
                &format!("v{index}"),
                &instance,
                |spec| spec,
            )
        })
        .collect();
    let unattested = push_unattested_image(&client, "acme/api", "unsigned");
    let server = KubeApiServer::start_with(&ApiServerOptions {
        bind: netns.host_ip(),
        extra_args: vec!["--enable-aggregator-routing=true".to_owned()],
    });
    let cluster = Cluster {
        server,
        registry,
        netns,
        instance,
        images,
        unattested,
        tools: options.tools.clone(),
        dir: tempfile::tempdir().map_err(|error| format!("failed to make a directory: {error}"))?,
    };
    println!("== setup");
    println!(
        "cluster_ready_seconds {:.1}",
        started.elapsed().as_secs_f64()
    );
    println!("pods_per_phase {}", options.pods);
    println!("concurrency {}", options.concurrency);
    println!("attested_images {}", options.images);
    println!("load_average {}", load_average());

    let mut all_expected = true;
    let mut gate = cluster.install_gate(options)?;
    cluster.create_namespace(FLOOR_NS, &[])?;
    let floor = cluster.phase("floor", FLOOR_NS, options, Expect::Unchanged)?;
    all_expected &= floor.unexpected == 0;
    let ours = cluster.phase("provenance-gate", GATE_NS, options, Expect::Pinned)?;
    all_expected &= ours.unexpected == 0;
    println!("gate_vmrss_kib {}", vmrss_kib(gate.child.id()));
    gate.stop();
    cluster.kubectl_ok(&[
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration",
        "-l",
        &format!("app.kubernetes.io/instance={RELEASE}"),
    ])?;

    if let Some(binary) = &options.policy_controller {
        let mut theirs = cluster.install_policy_controller(options, binary)?;
        let result = cluster.phase("policy-controller", PC_NS, options, Expect::Pinned);
        println!(
            "policy_controller_vmrss_kib {}",
            vmrss_kib(theirs.child.id())
        );
        let logs = theirs.stop();
        let result = result?;
        if result.unexpected > 0 {
            eprintln!("policy-controller's log (tail):\n{}", tail(&logs, 6000));
        }
        all_expected &= result.unexpected == 0;
        println!("== ratios");
        ratio("added_p50_client_ms", &result, &ours, &floor, 0.5);
        ratio("added_p99_client_ms", &result, &ours, &floor, 0.99);
        println!(
            "throughput_ratio_ours_over_theirs {:.2}",
            ours.pods_per_second / result.pods_per_second
        );
    }
    println!("load_average_end {}", load_average());
    Ok(all_expected)
}

/// `theirs / ours` of the latency each webhook adds above the floor, at quantile `q`.
fn ratio(key: &str, theirs: &PhaseResult, ours: &PhaseResult, floor: &PhaseResult, q: f64) {
    let floor = floor.client_quantile(q);
    let theirs_added = theirs.client_quantile(q) - floor;
    let ours_added = ours.client_quantile(q) - floor;
    println!(
        "{key} ours {:.2} theirs {:.2} theirs_over_ours {:.1}",
        ours_added * 1e3,
        theirs_added * 1e3,
        theirs_added / ours_added.max(1e-6)
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Stored as sent: no webhook touched the Pod.
    Unchanged,
    /// Stored with the image pinned to its digest.
    Pinned,
}

struct PhaseResult {
    unexpected: usize,
    pods_per_second: f64,
    latencies: Vec<f64>,
}

impl PhaseResult {
    fn client_quantile(&self, q: f64) -> f64 {
        quantile(&self.latencies, q)
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

impl Cluster {
    fn kubectl(
        &self,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<(bool, String, String), String> {
        let mut child = Command::new(self.tools.join("kubectl"))
            .args(args)
            .env("KUBECONFIG", self.server.kubeconfig_path())
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("failed to run kubectl: {error}"))?;
        if let Some(input) = input {
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(input.as_bytes())
                .map_err(|error| format!("failed to write to kubectl: {error}"))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|error| format!("kubectl: {error}"))?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    fn kubectl_ok(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_input_ok(args, None)
    }

    fn kubectl_input_ok(&self, args: &[&str], input: Option<&str>) -> Result<String, String> {
        match self.kubectl(args, input)? {
            (true, stdout, _) => Ok(stdout),
            (false, stdout, stderr) => Err(format!(
                "kubectl {} failed:\n{stdout}{stderr}",
                args.join(" ")
            )),
        }
    }

    fn apply(&self, manifest: &str) -> Result<(), String> {
        self.kubectl_input_ok(&["apply", "-f", "-"], Some(manifest))
            .map(drop)
    }

    /// A namespace with `labels` and its default ServiceAccount (no controller manager runs:
    /// the Pods' ServiceAccount admission needs it).
    fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<(), String> {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), Value::from(*value)))
            .collect();
        let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "default", "namespace": name}},
        ]});
        self.apply(&objects.to_string())
    }

    /// The API server's `/metrics`, as the admin.
    fn apiserver_metrics(&self) -> Result<Scrape, String> {
        let response = self.api_client().request_without_auth(
            "GET",
            "/metrics",
            &[(
                "Authorization",
                &format!("Bearer {}", self.server.admin_token()),
            )],
            &[],
        );
        if response.status != 200 {
            return Err(format!("GET /metrics: {}", response.status));
        }
        Ok(Scrape::parse(&response.text()))
    }

    fn api_client(&self) -> RegistryClient {
        RegistryClient::new(self.server.url()).with_ca_pem(self.server.ca_pem())
    }

    /// An `Endpoints` object for Service `name`: the network namespace's address, `ports`
    /// (name, number) as the Service names them.
    fn apply_endpoints(
        &self,
        namespace: &str,
        name: &str,
        ports: &[(Option<&str>, u16)],
    ) -> Result<(), String> {
        let ports: Vec<Value> = ports
            .iter()
            .map(|(name, port)| match name {
                Some(name) => json!({"name": name, "port": port, "protocol": "TCP"}),
                None => json!({"port": port, "protocol": "TCP"}),
            })
            .collect();
        self.apply(
            &json!({
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace},
                "subsets": [{"addresses": [{"ip": self.netns.inner_ip().to_string()}], "ports": ports}],
            })
            .to_string(),
        )
    }

    /// Waits until a server-side dry run of a Pod naming the first image in `namespace` is
    /// pinned by the webhook (the API server reaches it and it verifies).
    fn wait_for_pinning(&self, namespace: &str, webhook: &mut Webhook) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        let client = self.api_client();
        let image = &self.images[0];
        loop {
            let (status, body) =
                self.create_pod(&client, namespace, "probe", &image.reference, true);
            if status == 201 && pod_image(&body) == pinned(image) {
                return self.refuses_unattested(&client, namespace);
            }
            if let Ok(Some(exit)) = webhook.child.try_wait() {
                return Err(format!(
                    "the webhook exited ({exit}); its log:\n{}",
                    tail(&webhook.stop(), 8000)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "a dry-run Pod in {namespace} was not pinned within {}s: {status} {}\nthe webhook's log:\n{}",
                    STARTUP.as_secs(),
                    String::from_utf8_lossy(&body),
                    tail(&webhook.stop(), 8000)
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// A webhook that admitted everything would make the figures meaningless.
    fn refuses_unattested(&self, client: &RegistryClient, namespace: &str) -> Result<(), String> {
        let (status, body) = self.create_pod(
            client,
            namespace,
            "unattested",
            &self.unattested.reference,
            true,
        );
        if status == 201 {
            return Err(format!(
                "the webhook admitted an unattested image in {namespace}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        println!("unattested_refused_in {namespace} {status}");
        Ok(())
    }

    fn create_pod(
        &self,
        client: &RegistryClient,
        namespace: &str,
        name: &str,
        image: &str,
        dry_run: bool,
    ) -> (u16, Vec<u8>) {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": image}]},
        });
        let path = format!(
            "/api/v1/namespaces/{namespace}/pods{}",
            if dry_run { "?dryRun=All" } else { "" }
        );
        let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            client.request_without_auth(
                "POST",
                &path,
                &[
                    (
                        "Authorization",
                        &format!("Bearer {}", self.server.admin_token()),
                    ),
                    ("Content-Type", "application/json"),
                ],
                pod.to_string().as_bytes(),
            )
        }));
        match sent {
            Ok(response) => (response.status, response.body),
            Err(_) => (0, Vec::new()),
        }
    }

    /// Creates `options.pods` Pods in `namespace` from `options.concurrency` senders, each Pod
    /// naming one of the attested images by tag, and reports the phase.
    fn phase(
        &self,
        name: &str,
        namespace: &str,
        options: &Options,
        expect: Expect,
    ) -> Result<PhaseResult, String> {
        let before = self.apiserver_metrics()?;
        let cpu_before = cpu_seconds_by_command();
        let load_before = load_average();
        let next = AtomicUsize::new(0);
        let unexpected = AtomicUsize::new(0);
        let started = Instant::now();
        let mut latencies: Vec<f64> = std::thread::scope(|scope| {
            let senders: Vec<_> = (0..options.concurrency)
                .map(|_| {
                    scope.spawn(|| {
                        let client = self.api_client();
                        let mut latencies = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            if index >= options.pods {
                                return latencies;
                            }
                            let image = &self.images[index % self.images.len()];
                            let sent = Instant::now();
                            let (status, body) = self.create_pod(
                                &client,
                                namespace,
                                &format!("{name}-{index}"),
                                &image.reference,
                                false,
                            );
                            latencies.push(sent.elapsed().as_secs_f64());
                            let expected_image = match expect {
                                Expect::Unchanged => image.reference.clone(),
                                Expect::Pinned => pinned(image),
                            };
                            let wrong = status != 201 || pod_image(&body) != expected_image;
                            // Counted always, printed for the first only.
                            if wrong && unexpected.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!(
                                    "apiserver-load: {name}: pod {index}: {status} {}",
                                    tail(&String::from_utf8_lossy(&body), 2000)
                                );
                            }
                        }
                    })
                })
                .collect();
            senders
                .into_iter()
                .flat_map(|sender| sender.join().unwrap_or_default())
                .collect()
        });
        let elapsed = started.elapsed().as_secs_f64();
        let after = self.apiserver_metrics()?;
        let cpu_after = cpu_seconds_by_command();
        latencies.sort_by(f64::total_cmp);
        let result = PhaseResult {
            unexpected: unexpected.load(Ordering::Relaxed),
            pods_per_second: options.pods as f64 / elapsed,
            latencies,
        };
        println!("== {name}");
        println!("load_average_before {load_before}");
        println!("pods {}", options.pods);
        println!("unexpected {}", result.unexpected);
        println!("seconds {elapsed:.2}");
        println!("pods_per_second {:.1}", result.pods_per_second);
        for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
            println!("client_{label}_ms {:.2}", result.client_quantile(q) * 1e3);
        }
        for histogram in after.histograms_since(&before, HISTOGRAM) {
            let labels = &histogram.labels;
            println!(
                "apiserver_webhook name={} type={} operation={} rejected={} count {} mean_ms {:.2} p50_ms {:.2} p99_ms {:.2} within_5ms {:.3}",
                labels.get("name").map_or("?", String::as_str),
                labels.get("type").map_or("?", String::as_str),
                labels.get("operation").map_or("?", String::as_str),
                labels.get("rejected").map_or("?", String::as_str),
                histogram.count,
                histogram.sum / histogram.count * 1e3,
                histogram.quantile(0.5).unwrap_or(f64::NAN) * 1e3,
                histogram.quantile(0.99).unwrap_or(f64::NAN) * 1e3,
                histogram.share_within(0.005).unwrap_or(f64::NAN),
            );
        }
        // What the webhooks asked of the API server besides the Pods (a webhook that reads
        // objects per review shows here): requests by verb and resource, 100 or more.
        let mut requests: std::collections::BTreeMap<String, f64> =
            std::collections::BTreeMap::new();
        for (labels, delta) in after.counters_since(&before, "apiserver_request_total") {
            let key = format!(
                "{} {}",
                labels.get("verb").map_or("?", String::as_str),
                labels.get("resource").map_or("?", String::as_str)
            );
            *requests.entry(key).or_insert(0.0) += delta;
        }
        for (request, count) in requests.iter().filter(|(_, count)| **count >= 100.0) {
            println!("apiserver_requests {request} {count}");
        }
        // Where the phase's CPU went: the webhook, the control plane, the registry, the
        // generator; `machine` is all CPUs' busy time, the foreign load included.
        for (command, seconds) in &cpu_after {
            let spent = seconds - cpu_before.get(command).copied().unwrap_or(0.0);
            println!("cpu_seconds {command} {spent:.2}");
        }
        println!("load_average_after {}", load_average());
        Ok(result)
    }

    // --- provenance-gate ------------------------------------------------------------------

    /// The chart, rendered with an operator's values and applied but for its Deployment, whose
    /// `serve` runs in the network namespace with the Deployment's arguments.
    fn install_gate(&self, options: &Options) -> Result<Webhook, String> {
        let host = self.registry.host();
        let root_path = self.dir.path().join(TRUSTED_ROOT_KEY);
        std::fs::write(&root_path, self.instance.trusted_root_json())
            .map_err(|error| format!("failed to write the trusted root: {error}"))?;
        self.kubectl_ok(&["create", "namespace", RELEASE])?;
        self.kubectl_ok(&[
            "create",
            "configmap",
            TRUSTED_ROOT_CONFIGMAP,
            "-n",
            RELEASE,
            &format!("--from-file={TRUSTED_ROOT_KEY}={}", root_path.display()),
        ])?;
        let values = format!(
            "policy:\n  tier: 2\n  environments:\n    - name: production\n      \
             namespaceSelector: {{matchLabels: {{env: production}}}}\n      mode: enforce\n  \
             rules:\n    - name: acme\n      images: [\"{host}/acme/**\"]\n      \
             repositories: [{{name: acme/api, id: \"804070735\"}}]\n  registries:\n    \
             - {{host: \"{host}\", insecure: true}}\ntrustedRoots:\n  existingConfigMap: \
             {TRUSTED_ROOT_CONFIGMAP}\n  keys: [{TRUSTED_ROOT_KEY}]\nwebhook:\n  \
             excludeNamespaces: [{FLOOR_NS}]\n"
        );
        let values_path = self.dir.path().join("values.yaml");
        std::fs::write(&values_path, values)
            .map_err(|error| format!("failed to write values: {error}"))?;
        let output = Command::new(self.tools.join("helm"))
            .args([
                "template",
                RELEASE,
                "charts/provenance-gate",
                "--namespace",
                RELEASE,
                "--values",
            ])
            .arg(&values_path)
            .output()
            .map_err(|error| format!("failed to run helm: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "helm template: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let rendered = String::from_utf8_lossy(&output.stdout).into_owned();
        let (deployment, rest): (Vec<&str>, Vec<&str>) = rendered
            .split("\n---\n")
            .partition(|document| document.contains("\nkind: Deployment\n"));
        self.apply(&rest.join("\n---\n"))?;
        let deployment: Value = serde_json::from_str(
            &self.kubectl_input_ok(
                &["create", "--dry-run=client", "-o", "json", "-f", "-"],
                Some(
                    deployment
                        .first()
                        .ok_or("the chart renders no Deployment")?,
                ),
            )?,
        )
        .map_err(|error| format!("the Deployment as JSON: {error}"))?;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let port = |name: &str| -> Result<u16, String> {
            container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|port| port["name"] == name)
                .and_then(|port| port["containerPort"].as_u64())
                .and_then(|port| u16::try_from(port).ok())
                .ok_or_else(|| format!("the Deployment has no port {name}"))
        };
        let service: Value = serde_json::from_str(
            &self.kubectl_ok(&["get", "service", RELEASE, "-n", RELEASE, "-o", "json"])?,
        )
        .map_err(|error| format!("the Service as JSON: {error}"))?;
        let mut ports = Vec::new();
        for service_port in service["spec"]["ports"].as_array().into_iter().flatten() {
            let target = service_port["targetPort"]
                .as_str()
                .ok_or("named target ports")?;
            ports.push((service_port["name"].as_str(), port(target)?));
        }
        self.apply_endpoints(RELEASE, RELEASE, &ports)?;

        // The volumes the args name, as the kubelet would fill them: the TLS Secret and the
        // trusted root, under a directory of this run.
        let root = self.dir.path().join("volumes");
        let secret: Value = serde_json::from_str(&self.kubectl_ok(&[
            "get",
            "secret",
            &format!("{RELEASE}-tls"),
            "-n",
            RELEASE,
            "-o",
            "json",
        ])?)
        .map_err(|error| format!("the TLS Secret as JSON: {error}"))?;
        let mut args = Vec::new();
        for arg in container["args"].as_array().into_iter().flatten() {
            let arg = arg.as_str().ok_or("string args")?;
            let Some((flag, path)) = arg.split_once("=/") else {
                args.push(arg.to_owned());
                continue;
            };
            let local = root.join(path);
            std::fs::create_dir_all(local.parent().expect("a file in a directory"))
                .map_err(|error| format!("failed to create a volume: {error}"))?;
            let file_name = local
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default();
            let contents = match secret["data"][file_name].as_str() {
                Some(encoded) => base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|error| format!("Secret data: {error}"))?,
                None if file_name == TRUSTED_ROOT_KEY => {
                    self.instance.trusted_root_json().into_bytes()
                }
                None => return Err(format!("the benchmark does not provide {arg}")),
            };
            std::fs::write(&local, contents)
                .map_err(|error| format!("failed to write {}: {error}", local.display()))?;
            args.push(format!("{flag}={}", local.display()));
        }
        let token =
            self.kubectl_ok(&["create", "token", RELEASE, "-n", RELEASE, "--duration=2h"])?;
        let kubeconfig = self
            .server
            .write_kubeconfig("gate.kubeconfig", token.trim());
        let mut command = self.netns.command(&options.gate);
        command
            .args(&args)
            .env("POD_NAMESPACE", RELEASE)
            .env("POD_NAME", format!("{RELEASE}-bench-0"))
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST");
        let mut gate = Webhook::start(command, self.dir.path().join("gate.log"))?;
        // Pods in the gate's namespace are judged; the namespace must exist for the probe.
        self.create_namespace(GATE_NS, &[("env", "production")])?;
        self.wait_for_pinning(GATE_NS, &mut gate)?;
        let metrics = SocketAddr::from((self.netns.inner_ip(), port("metrics")?));
        println!("gate_metrics {metrics}");
        Ok(gate)
    }

    // --- sigstore/policy-controller -------------------------------------------------------

    /// Its CRDs, configuration and webhook configurations from its module's `config/`, its
    /// webhook in the network namespace behind the `webhook` Service, a `TrustRoot` for the
    /// kit's instance and a `ClusterImagePolicy` like GitHub's `trust-policies` chart.
    fn install_policy_controller(
        &self,
        options: &Options,
        binary: &Path,
    ) -> Result<Webhook, String> {
        let config = match &options.policy_controller_config {
            Some(config) => config.clone(),
            None => policy_controller_config()?,
        };
        for file in [
            "100-namespace.yaml",
            "300-clusterimagepolicy.yaml",
            "300-trustroot.yaml",
            "400-webhook-service.yaml",
            "500-webhook-configuration.yaml",
            "501-policy-webhook-configurations.yaml",
            "config-image-policies.yaml",
            "config-leader-election.yaml",
            "config-logging.yaml",
            "config-observability.yaml",
            "config-policy-controller.yaml",
            "config-sigstore-keys.yaml",
        ] {
            let text = std::fs::read_to_string(config.join(file)).map_err(|error| {
                format!("failed to read {file} from {}: {error}", config.display())
            })?;
            self.apply(&text)
                .map_err(|error| format!("{file}: {error}"))?;
        }
        self.apply_endpoints(PC_SYSTEM_NS, "webhook", &[(None, 8443)])?;
        // Its webhook runs as the admin here; in a cluster, its ServiceAccount's RBAC.
        let mut command = self.netns.command(binary);
        command
            .arg("--disable-tuf")
            .env("KUBECONFIG", self.server.kubeconfig_path())
            .env("SYSTEM_NAMESPACE", PC_SYSTEM_NS)
            .env("CONFIG_LOGGING_NAME", "config-logging")
            .env("CONFIG_OBSERVABILITY_NAME", "config-observability")
            .env("METRICS_DOMAIN", "sigstore.dev/policy")
            .env("WEBHOOK_NAME", "webhook")
            .env("KUBERNETES_MIN_VERSION", "1.21.0")
            .env("HOME", self.dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST");
        let mut webhook = Webhook::start(command, self.dir.path().join("policy-controller.log"))?;
        self.apply(&self.policy_controller_policy())
            .map_err(|error| {
                format!(
                    "{error}\npolicy-controller's log:\n{}",
                    tail(&webhook.logs(), 6000)
                )
            })?;
        self.create_namespace(PC_NS, &[("policy.sigstore.dev/include", "true")])?;
        self.wait_for_pinning(PC_NS, &mut webhook)?;
        Ok(webhook)
    }

    /// The kit's instance as a `TrustRoot` (`sigstoreKeys`: its CA and its timestamp
    /// authority, no log, like GitHub's instance) and the trust-policies chart's
    /// `ClusterImagePolicy` for it, scoped to this registry's images.
    fn policy_controller_policy(&self) -> String {
        let trusted_root: Value = serde_json::from_str(&self.instance.trusted_root_json())
            .expect("the kit's trusted root is JSON");
        let authority = |entry: &Value| {
            let pem: String = entry["certChain"]["certificates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|certificate| certificate["rawBytes"].as_str())
                .map(|der| {
                    let lines: Vec<String> = der
                        .as_bytes()
                        .chunks(64)
                        .map(|line| String::from_utf8_lossy(line).into_owned())
                        .collect();
                    format!(
                        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                        lines.join("\n")
                    )
                })
                .collect();
            json!({
                "subject": entry["subject"],
                "uri": entry["uri"],
                "certChain": base64::engine::general_purpose::STANDARD.encode(pem),
            })
        };
        let list = |key: &str| -> Vec<Value> {
            trusted_root[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(authority)
                .collect()
        };
        let host = self.registry.host();
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {
                "apiVersion": "policy.sigstore.dev/v1alpha1",
                "kind": "TrustRoot",
                "metadata": {"name": "github"},
                "spec": {"sigstoreKeys": {
                    "certificateAuthorities": list("certificateAuthorities"),
                    "timestampAuthorities": list("timestampAuthorities"),
                }},
            },
            {
                "apiVersion": "policy.sigstore.dev/v1alpha1",
                "kind": "ClusterImagePolicy",
                "metadata": {"name": "github-policy"},
                "spec": {
                    "images": [{"glob": format!("{host}/acme/**")}],
                    "authorities": [{
                        "keyless": {
                            "trustRootRef": "github",
                            "url": trusted_root["certificateAuthorities"][0]["uri"],
                            // The kit's certificates carry no SCT (its instance has no CT
                            // log); the only change from the chart's policy.
                            "insecureIgnoreSCT": true,
                            "identities": [{
                                "issuer": "https://token.actions.githubusercontent.com",
                                "subjectRegExp": "https://github.com/acme/api/\\.github/workflows/.*",
                            }],
                        },
                        "rfc3161timestamp": {"trustRootRef": "github"},
                        "signatureFormat": "bundle",
                        "attestations": [{
                            "name": "require-attestation",
                            "predicateType": "https://slsa.dev/provenance/v1",
                        }],
                    }],
                },
            },
        ]})
        .to_string()
    }
}

/// `$(go env GOMODCACHE)/github.com/sigstore/policy-controller@v0.13.1/config`.
fn policy_controller_config() -> Result<PathBuf, String> {
    let output = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .map_err(|error| {
            format!("failed to run go env (or pass --policy-controller-config): {error}")
        })?;
    let cache = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let config = Path::new(&cache).join("github.com/sigstore/policy-controller@v0.13.1/config");
    if !config.is_dir() {
        return Err(format!(
            "{} is missing: `go mod download github.com/sigstore/policy-controller@v0.13.1` (BENCHMARKS.md)",
            config.display()
        ));
    }
    Ok(config)
}

/// A webhook process in the network namespace, its output in a log file.
struct Webhook {
    child: Child,
    log: PathBuf,
}

impl Webhook {
    fn start(mut command: Command, log: PathBuf) -> Result<Webhook, String> {
        let file = std::fs::File::create(&log)
            .map_err(|error| format!("failed to create a log: {error}"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|error| format!("log: {error}"))?)
            .stderr(file)
            .spawn()
            .map_err(|error| format!("failed to start the webhook: {error}"))?;
        Ok(Webhook { child, log })
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the webhook (idempotent) and returns its log.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.logs()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pinned(image: &PushedImage) -> String {
    format!("{}@{}", image.reference, image.manifest_digest)
}

/// The first container's image of a stored Pod (empty when the body is not one).
fn pod_image(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|pod| {
            pod["spec"]["containers"][0]["image"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn tail(text: &str, max_bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(max_bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// USER_HZ, the unit of `/proc` CPU times: 100 on every Linux architecture this runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) of this program and every process it started (the control
/// plane, the registry, the webhooks), summed by `comm`; and under `machine`, the busy time of
/// every CPU from `/proc/stat`, so that the foreign load shows as the difference.
fn cpu_seconds_by_command() -> std::collections::BTreeMap<String, f64> {
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split at the last `)`.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ppid = fields
            .get(1)
            .and_then(|ppid| ppid.parse::<u32>().ok())
            .unwrap_or(0);
        // utime and stime are fields 14 and 15 of proc_pid_stat(5); `fields` starts at field 3.
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|index| fields.get(*index)?.parse::<f64>().ok())
            .sum();
        processes.push((pid, ppid, stat[open + 1..close].to_owned(), ticks));
    }
    let parents: std::collections::HashMap<u32, u32> = processes
        .iter()
        .map(|(pid, ppid, _, _)| (*pid, *ppid))
        .collect();
    let me = std::process::id();
    let mine = |mut pid: u32| {
        for _ in 0..64 {
            if pid == me {
                return true;
            }
            match parents.get(&pid) {
                Some(&parent) if parent != 0 => pid = parent,
                _ => return false,
            }
        }
        false
    };
    let mut by_command = std::collections::BTreeMap::new();
    for (pid, _, command, ticks) in processes {
        if mine(pid) {
            *by_command.entry(command).or_insert(0.0) += ticks / TICKS_PER_SECOND;
        }
    }
    let busy: f64 = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().next()?.strip_prefix("cpu ")?.to_owned();
            // user nice system idle iowait irq softirq steal: all but idle and iowait.
            Some(
                line.split_whitespace()
                    .take(8)
                    .enumerate()
                    .filter(|(index, _)| *index != 3 && *index != 4)
                    .filter_map(|(_, value)| value.parse::<f64>().ok())
                    .sum(),
            )
        })
        .unwrap_or(0.0);
    by_command.insert("machine".to_owned(), busy / TICKS_PER_SECOND);
    by_command
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn vmrss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
