//! `provenance-gate serve`: the admission webhook over HTTPS, and the metrics and probes over
//! plain HTTP on a separate port (so that scraping and kubelet probes need no client TLS and
//! never compete with reviews for the webhook's connection limits).
//!
//! [`run`] owns the whole lifetime: it loads everything the webhook needs (failing start-up
//! with a clear error when something is missing or invalid), serves until SIGTERM or SIGINT,
//! serves on, unready, for [`ServeConfig::shutdown_delay`] while clients move off (see
//! [`shutdown`]), then stops accepting, lets in-flight reviews finish within
//! [`ServeConfig::drain_timeout`] and returns.

mod connections;
mod shutdown;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::Instrument as _;

use self::tls::{CertificateFiles, ReloadingCertificate, ReloadingClientCa};
use crate::admission::{WebhookSettings, WebhookState};
use crate::check::registry_binding::{PolicyRegistry, RegistryMetrics};
use crate::check::{CheckSettings, ImageChecker};
use crate::cluster::kube::{
    watch_namespaces, watch_policy, KubeEvents, KubeNamespaces, NAMESPACE_LOOKUP_TIMEOUT,
    POLICY_KEY,
};
use crate::cluster::pull_secrets::{KubeSecrets, PullSecrets};
use crate::cluster::{
    EventRecorder, LogEvents, NamespaceDirectory, NamespaceMap, PolicyCell, PolicySource,
    StaticNamespaces,
};
use crate::evidence::metrics::{CacheLabels, Metrics};
use crate::evidence::records::JsonLinesSink;
use crate::policy::file::PolicyFile;
use crate::registry::{AllowedRegistries, DockerConfig, RegistryOptions};
use crate::verify::tuf::LiveTrustedRoots;
use crate::verify::TrustedRoots;

/// Webhook address by default (the Service targets it).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// Metrics and probes address by default.
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9090";
/// ConfigMap holding `policy.yaml` by default.
pub const DEFAULT_POLICY_CONFIGMAP: &str = "provenance-gate-policy";

/// Credentials and policy files are kilobytes.
const MAX_DOCKER_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// Request headers larger than this are refused (AdmissionReview requests carry a few small
/// headers; the body limit is the admission router's).
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Time a client has to send a request's headers. hyper starts this clock as soon as the
/// previous response is written, so it also closes keep-alive connections idle this long;
/// the API server reconnects transparently.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a new connection has to send its first request.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open webhook connections by default; more are refused at accept. The API servers hold
/// a few each.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Concurrent HTTP/2 streams per connection by default: the API server multiplexes reviews
/// over few connections, so this bounds the reviews one connection can have in flight.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 32;
/// Reviews past the body read at once by default; more wait, unread.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// How log lines are written (to stderr; stdout carries the decision records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// Where the policy and the namespaces come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyConfig {
    /// A local file, re-read when it changes; every namespace has `namespace_labels`.
    /// No cluster is contacted.
    File {
        path: PathBuf,
        namespace_labels: BTreeMap<String, String>,
    },
    /// The `policy.yaml` key of a ConfigMap and the Namespaces, watched in the cluster the
    /// process runs in.
    Cluster {
        configmap: String,
        /// The webhook's own namespace, where the ConfigMap lives; `None`: the namespace of
        /// the in-cluster configuration (the service account's).
        namespace: Option<String>,
    },
}

/// Everything `serve` needs; the command line fills it in.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub tls_certificate: PathBuf,
    pub tls_key: PathBuf,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub policy: PolicyConfig,
    /// Registry credentials (`.dockerconfigjson`), read at start-up.
    pub docker_config: Option<PathBuf>,
    /// Trusted roots replacing the embedded ones; empty: the embedded ones.
    pub trusted_roots: Vec<PathBuf>,
    /// Time one review may take, below the webhook's `timeoutSeconds`.
    pub review_budget: Duration,
    pub log_format: LogFormat,
    /// How often the certificate files are looked at.
    pub certificate_poll: Duration,
    /// How often the policy file is looked at (file mode).
    pub policy_poll: Duration,
    /// How long the webhook keeps serving after SIGTERM, unready and closing HTTP/1.1
    /// connections after each answer, before it stops accepting.
    pub shutdown_delay: Duration,
    /// How long in-flight reviews may take to finish after the shutdown delay.
    pub drain_timeout: Duration,
    /// CA bundle that API server client certificates must chain to; `None`: no client
    /// certificate is asked for and every caller is unauthenticated.
    pub client_ca: Option<PathBuf>,
    /// Time to receive a request body once its headers are in.
    pub body_timeout: Duration,
    /// Open webhook connections at most; more are refused.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per webhook connection.
    pub max_streams_per_connection: u32,
    /// Reviews being read or decided at once; more wait.
    pub max_in_flight: usize,
    /// Entries per cache of the image checker (verified digests, tags, listings).
    pub cache_capacity: usize,
    /// Proxy for every registry request; `None`: direct, whatever the environment says.
    pub registry_proxy: Option<reqwest::Url>,
    /// How often to audit the running Pods and export the result as metrics (cluster mode
    /// only); `None`: never.
    pub audit_interval: Option<Duration>,
    /// Use each workload's imagePullSecrets (and its ServiceAccount's) for its registry
    /// requests, falling back to `docker_config` (cluster mode only; needs `get` on Secrets
    /// and ServiceAccounts).
    pub workload_credentials: bool,
    /// TUF repositories the embedded public-good and GitHub roots are refreshed from, in the
    /// background; empty: none, the embedded roots stay (no request is made).
    pub tuf_mirrors: Vec<crate::verify::tuf::TufMirror>,
    /// How often each TUF repository is refreshed.
    pub tuf_refresh_interval: Duration,
    pub tuf_timeouts: crate::verify::tuf::TufTimeouts,
}

impl ServeConfig {
    /// A configuration with the defaults of the command line.
    pub fn new(tls_certificate: PathBuf, tls_key: PathBuf, policy: PolicyConfig) -> Self {
        ServeConfig {
            tls_certificate,
            tls_key,
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            policy,
            docker_config: None,
            trusted_roots: Vec::new(),
            review_budget: crate::defaults::REVIEW_BUDGET,
            log_format: LogFormat::default(),
            certificate_poll: Duration::from_secs(2),
            policy_poll: Duration::from_secs(1),
            shutdown_delay: crate::defaults::SHUTDOWN_DELAY,
            drain_timeout: crate::defaults::DRAIN_TIMEOUT,
            client_ca: None,
            body_timeout: WebhookSettings::default().body_timeout,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            cache_capacity: crate::defaults::CACHE_CAPACITY,
            registry_proxy: None,
            audit_interval: None,
            workload_credentials: false,
            tuf_mirrors: Vec::new(),
            tuf_refresh_interval: crate::defaults::TUF_REFRESH_INTERVAL,
            tuf_timeouts: crate::verify::tuf::TufTimeouts::default(),
        }
    }
}

/// Sets up logging, starts a runtime and serves until SIGTERM or SIGINT. An error means the
/// server could not start (or a listener failed); a signal ends it with `Ok`.
pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("provenance-gate")
        .build()
        .context("failed to start the async runtime")?;
    let result = runtime.block_on(serve(config));
    // Watchers loop forever and blocking reads are short: do not wait on them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Fails only when a subscriber is already set (a test harness): keep that one.
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Background tasks that live as long as the server, aborted at shutdown.
#[derive(Default)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    fn spawn(
        &mut self,
        span: tracing::Span,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.0.push(tokio::spawn(task.instrument(span)));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The policy, namespaces and events of one mode.
struct ClusterView {
    policy: Arc<dyn PolicySource>,
    namespaces: Arc<dyn NamespaceDirectory>,
    events: Arc<dyn EventRecorder>,
    /// The API server, in cluster mode.
    client: Option<::kube::Client>,
}

/// Serves until SIGTERM or SIGINT; see [`run`].
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let mut prometheus = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut prometheus);
    let mut tasks = Tasks::default();

    let (certificate, client_ca) = load_tls_files(&config)?;
    let view = open_cluster_view(&config, &metrics, &mut tasks).await?;
    let github = crate::github::GithubMetrics::register(&mut prometheus);
    let roots = start_root_rotation(&config, &mut prometheus, &mut tasks)?;
    let checker = build_checker(&config, &metrics, github, Arc::clone(&view.policy), roots)?;
    let pull_secrets = pull_secrets(&config, &view)?;
    let readiness = Arc::new(Readiness {
        policy: Arc::clone(&view.policy),
        namespaces: Arc::clone(&view.namespaces),
        stopping: shutdown::Stopping::default(),
    });
    start_audit(&config, &view, &checker, &mut prometheus, &mut tasks)?;
    tasks.spawn(
        tracing::info_span!("break_glass_expiry"),
        crate::evidence::break_glass::follow_expiry(
            metrics.clone(),
            Arc::clone(&view.policy),
            Arc::clone(&view.namespaces),
            WebhookState::<PolicyRegistry>::system_clock(),
            crate::evidence::break_glass::SWEEP_PERIOD,
        ),
    );
    let probes = probes(prometheus, &metrics, &checker, Arc::clone(&readiness));
    let connection_limit = connections::ConnectionLimit::new(
        config.max_connections,
        metrics.connections_refused.clone(),
    );
    let webhook = webhook_router(checker, view, metrics, &config, pull_secrets).layer(
        axum::middleware::from_fn_with_state(
            readiness.stopping.clone(),
            shutdown::close_connections_when_stopping,
        ),
    );

    let webhook_listener = bind(config.listen, "webhook")?;
    let metrics_listener = bind(config.metrics_listen, "metrics")?;
    tracing::info!(
        webhook = %webhook_listener.local_addr().map_or(config.listen, |address| address),
        metrics = %metrics_listener.local_addr().map_or(config.metrics_listen, |address| address),
        "serving"
    );
    start_tls_reloaders(&mut tasks, &certificate, client_ca.as_ref(), &config);
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
        crate::server::tls::server_config(certificate, client_ca)?,
    ));
    let servers = Servers::start(
        &config,
        (webhook_listener, webhook, tls, connection_limit),
        (metrics_listener, probes),
    )?;
    servers.run_until_signal(&readiness, &config).await?;
    drop(tasks);
    tracing::info!("stopped");
    Ok(())
}

/// The serving pair and the client CA; the server does not start without them.
fn load_tls_files(
    config: &ServeConfig,
) -> anyhow::Result<(Arc<ReloadingCertificate>, Option<Arc<ReloadingClientCa>>)> {
    let certificate = Arc::new(
        ReloadingCertificate::load(CertificateFiles {
            certificate: config.tls_certificate.clone(),
            key: config.tls_key.clone(),
        })
        .context("cannot serve TLS")?,
    );
    let client_ca = match &config.client_ca {
        Some(path) => Some(Arc::new(
            ReloadingClientCa::load(path.clone()).context("cannot authenticate clients")?,
        )),
        None => None,
    };
    Ok((certificate, client_ca))
}

/// The policy and the namespaces, from a file or the cluster, with their watchers started.
async fn open_cluster_view(
    config: &ServeConfig,
    metrics: &Metrics,
    tasks: &mut Tasks,
) -> anyhow::Result<ClusterView> {
    Ok(match &config.policy {
        PolicyConfig::File {
            path,
            namespace_labels,
        } => {
            let file = Arc::new(PolicyFile::open(path, metrics.policy_reloads.clone())?);
            tracing::info!(path = %path.display(), "policy loaded; no cluster is contacted");
            let policy = file.source();
            tasks.spawn(
                tracing::info_span!("policy_file_watch", path = %path.display()),
                file.watch(config.policy_poll),
            );
            ClusterView {
                policy,
                namespaces: Arc::new(StaticNamespaces::new(namespace_labels.clone())),
                events: Arc::new(LogEvents),
                client: None,
            }
        }
        PolicyConfig::Cluster {
            configmap,
            namespace,
        } => {
            // kube's error already carries its causes; anyhow's chain would repeat them.
            let client = ::kube::Client::try_default().await.map_err(|error| {
                anyhow::anyhow!(
                    "cannot reach the Kubernetes API: {error}; use --policy FILE to run \
                     without a cluster"
                )
            })?;
            let namespace = namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let events: Arc<dyn EventRecorder> = Arc::new(KubeEvents::spawn(client.clone()));
            let cell = Arc::new(PolicyCell::new(None));
            let namespaces = Arc::new(NamespaceMap::default());
            tracing::info!(
                %namespace,
                %configmap,
                "watching the policy ConfigMap and the Namespaces; ready once both are loaded"
            );
            tasks.spawn(
                tracing::info_span!("policy_watch", %namespace, %configmap),
                watch_policy(
                    client.clone(),
                    namespace,
                    configmap.clone(),
                    POLICY_KEY.to_owned(),
                    Arc::clone(&cell),
                    metrics.clone(),
                    Arc::clone(&events),
                ),
            );
            tasks.spawn(
                tracing::info_span!("namespace_watch"),
                watch_namespaces(client.clone(), Arc::clone(&namespaces)),
            );
            ClusterView {
                policy: cell,
                namespaces: Arc::new(KubeNamespaces::new(
                    client.clone(),
                    namespaces,
                    NAMESPACE_LOOKUP_TIMEOUT,
                )),
                events,
                client: Some(client),
            }
        }
    })
}

/// With `--workload-credentials`, the reader of workloads' imagePullSecrets.
fn pull_secrets(
    config: &ServeConfig,
    view: &ClusterView,
) -> anyhow::Result<Option<Arc<PullSecrets>>> {
    if !config.workload_credentials {
        return Ok(None);
    }
    let Some(client) = view.client.clone() else {
        anyhow::bail!("--workload-credentials needs the cluster (it reads imagePullSecrets); it cannot run with --policy FILE");
    };
    tracing::info!("workloads' imagePullSecrets are used for their registry requests");
    Ok(Some(Arc::new(PullSecrets::new(Arc::new(
        KubeSecrets::new(client),
    )))))
}

/// With `--audit-interval`, audits the running Pods on a timer with the webhook's checker
/// (so its caches serve both) and exports the result as metrics.
fn start_audit(
    config: &ServeConfig,
    view: &ClusterView,
    checker: &Arc<ImageChecker<PolicyRegistry>>,
    prometheus: &mut prometheus_client::registry::Registry,
    tasks: &mut Tasks,
) -> anyhow::Result<()> {
    let Some(interval) = config.audit_interval else {
        return Ok(());
    };
    let Some(client) = view.client.clone() else {
        anyhow::bail!("--audit-interval needs the cluster (it reads the running Pods); it cannot run with --policy FILE");
    };
    let metrics = crate::audit::metrics::AuditMetrics::register(prometheus);
    tasks.spawn(
        tracing::info_span!("audit", interval_seconds = interval.as_secs()),
        audit_periodically(
            client,
            Arc::clone(checker),
            Arc::clone(&view.policy),
            metrics,
            interval,
        ),
    );
    Ok(())
}

async fn audit_periodically(
    client: ::kube::Client,
    checker: Arc<ImageChecker<PolicyRegistry>>,
    policy: Arc<dyn PolicySource>,
    metrics: crate::audit::metrics::AuditMetrics,
    interval: Duration,
) {
    use crate::audit::scan::{scan, ScanLimits};
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Until the policy is loaded there is nothing to judge against.
        let Some(policy) = policy.current() else {
            continue;
        };
        match scan(client.clone(), &checker, &policy, ScanLimits::default()).await {
            Ok(report) => {
                metrics.observe(&report, &policy);
                tracing::info!(
                    pods = report.pods,
                    pods_denied_under_enforce = report.pods_denied_under_enforce,
                    pods_on_expired_break_glass = report.pods_on_expired_break_glass,
                    images_not_checked = report.images_not_checked,
                    "audit done"
                );
            }
            Err(error) => {
                metrics.failed();
                tracing::warn!(error = %error, "audit failed");
            }
        }
    }
}

/// The image checker: trusted roots, registry credentials and the policy's registry settings.
fn build_checker(
    config: &ServeConfig,
    metrics: &Metrics,
    github: crate::github::GithubMetrics,
    policy: Arc<dyn PolicySource>,
    roots: Arc<LiveTrustedRoots>,
) -> anyhow::Result<Arc<ImageChecker<PolicyRegistry>>> {
    let mut options = RegistryOptions::new(AllowedRegistries::Any);
    options.observer = Arc::new(RegistryMetrics::new(metrics.registry_requests.clone()));
    options.proxy = config.registry_proxy.clone();
    if let Some(path) = &config.docker_config {
        let bytes = read_limited(path, MAX_DOCKER_CONFIG_BYTES)
            .with_context(|| format!("cannot read docker config {}", path.display()))?;
        options.credentials = DockerConfig::from_json(&bytes)
            .with_context(|| format!("docker config {}", path.display()))?;
    }
    let registry =
        PolicyRegistry::new(policy, options).context("the policy's registry settings")?;
    let github = crate::github::GithubClient::new(crate::github::GithubOptions::default())
        .with_metrics(github);
    let checker = ImageChecker::new(
        registry,
        roots.current(),
        CheckSettings {
            per_image_timeout: config.review_budget,
            cache_capacity: config.cache_capacity,
            ..CheckSettings::default()
        },
    )
    .with_github(Arc::new(github))
    .with_live_roots(roots);
    Ok(Arc::new(if config.workload_credentials {
        checker.with_workload_logins()
    } else {
        checker
    }))
}

/// The trusted roots: from `--trusted-root` files (fixed), or the embedded ones, refreshed
/// from each configured TUF mirror in the background. A refresh that fails leaves the roots
/// in force (the embedded ones until one succeeds), and says so in the log and the metrics;
/// the server never waits for a mirror.
fn start_root_rotation(
    config: &ServeConfig,
    prometheus: &mut prometheus_client::registry::Registry,
    tasks: &mut Tasks,
) -> anyhow::Result<Arc<LiveTrustedRoots>> {
    use crate::verify::tuf::{keep_refreshed, RootUpdater, TufMetrics};
    if !config.trusted_roots.is_empty() {
        if !config.tuf_mirrors.is_empty() {
            anyhow::bail!(
                "--trusted-root replaces the roots TUF would refresh; give one or the other"
            );
        }
        let roots = TrustedRoots::from_files(&config.trusted_roots).context("--trusted-root")?;
        return Ok(Arc::new(LiveTrustedRoots::fixed(Arc::new(roots))));
    }
    let live = Arc::new(LiveTrustedRoots::embedded().context("embedded trusted roots")?);
    let instances: Vec<_> = config
        .tuf_mirrors
        .iter()
        .map(|mirror| mirror.instance)
        .collect();
    if instances.is_empty() {
        return Ok(live);
    }
    let metrics = TufMetrics::register(prometheus, &instances);
    for mirror in &config.tuf_mirrors {
        let updater = RootUpdater::new(mirror, config.tuf_timeouts).context("--tuf-mirror")?;
        tracing::info!(
            instance = %mirror.instance,
            mirror = %mirror.url,
            interval_seconds = config.tuf_refresh_interval.as_secs(),
            "refreshing the trusted root from TUF; the embedded root is in force until then"
        );
        tasks.spawn(
            tracing::info_span!("trusted_root_refresh", instance = %mirror.instance),
            keep_refreshed(
                updater,
                Arc::clone(&live),
                metrics.clone(),
                config.tuf_refresh_interval,
            ),
        );
    }
    Ok(live)
}

/// The metrics and probe endpoints, with the checker's cache counts sampled at each scrape.
fn probes(
    prometheus: prometheus_client::registry::Registry,
    metrics: &Metrics,
    checker: &Arc<ImageChecker<PolicyRegistry>>,
    readiness: Arc<Readiness>,
) -> Router {
    let cache_metrics = Arc::new(CacheMetrics::new(metrics.clone(), {
        let checker = Arc::clone(checker);
        move || {
            checker
                .cache_stats()
                .map(|(cache, stats)| {
                    (
                        cache,
                        stats.hits.load(Ordering::Relaxed),
                        stats.misses.load(Ordering::Relaxed),
                    )
                })
                .to_vec()
        }
    }));
    probe_router(ProbeState {
        registry: Arc::new(prometheus),
        readiness,
        cache_metrics,
    })
}

fn start_tls_reloaders(
    tasks: &mut Tasks,
    certificate: &Arc<ReloadingCertificate>,
    client_ca: Option<&Arc<ReloadingClientCa>>,
    config: &ServeConfig,
) {
    tasks.spawn(
        tracing::info_span!("certificate_watch"),
        Arc::clone(certificate).watch(config.certificate_poll),
    );
    if let Some(client_ca) = client_ca {
        tasks.spawn(
            tracing::info_span!("client_ca_watch"),
            Arc::clone(client_ca).watch(config.certificate_poll),
        );
    }
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// The webhook and metrics servers, running.
struct Servers {
    webhook_handle: axum_server::Handle<SocketAddr>,
    webhook_task: ServerTask,
    metrics_handle: axum_server::Handle<SocketAddr>,
    metrics_task: ServerTask,
}

impl Servers {
    fn start(
        config: &ServeConfig,
        (webhook_listener, webhook, tls, connection_limit): (
            std::net::TcpListener,
            Router,
            axum_server::tls_rustls::RustlsConfig,
            connections::ConnectionLimit,
        ),
        (metrics_listener, probes): (std::net::TcpListener, Router),
    ) -> anyhow::Result<Servers> {
        let webhook_handle = axum_server::Handle::new();
        // The limit is taken before the handshake, so that handshakes count too.
        let mut webhook_server = axum_server::from_tcp_rustls(webhook_listener, tls)
            .context("webhook listener")?
            .map(|acceptor| {
                acceptor
                    .handshake_timeout(HANDSHAKE_TIMEOUT)
                    .acceptor(connection_limit)
            })
            .handle(webhook_handle.clone())
            .first_request_timeout(FIRST_REQUEST_TIMEOUT);
        limit_http(
            webhook_server.http_builder(),
            config.max_streams_per_connection,
        );
        let webhook_task = tokio::spawn(
            async move { webhook_server.serve(webhook.into_make_service()).await }
                .instrument(tracing::info_span!("webhook_server")),
        );

        let metrics_handle = axum_server::Handle::new();
        let mut metrics_server = axum_server::from_tcp(metrics_listener)
            .context("metrics listener")?
            .handle(metrics_handle.clone())
            .first_request_timeout(FIRST_REQUEST_TIMEOUT);
        limit_http(
            metrics_server.http_builder(),
            DEFAULT_MAX_STREAMS_PER_CONNECTION,
        );
        let metrics_task = tokio::spawn(
            async move { metrics_server.serve(probes.into_make_service()).await }
                .instrument(tracing::info_span!("metrics_server")),
        );
        Ok(Servers {
            webhook_handle,
            webhook_task,
            metrics_handle,
            metrics_task,
        })
    }

    /// Serves until a signal, then drains in-flight reviews; a server that stops on its own
    /// is an error.
    async fn run_until_signal(
        mut self,
        readiness: &Readiness,
        config: &ServeConfig,
    ) -> anyhow::Result<()> {
        let stopped_early = tokio::select! {
            signal = shutdown::signal() => {
                tracing::info!(signal = signal?, "shutdown requested");
                None
            }
            result = &mut self.webhook_task => Some(("webhook", result)),
            result = &mut self.metrics_task => Some(("metrics", result)),
        };
        if let Some((which, result)) = stopped_early {
            let reason = match result {
                Ok(Ok(())) => "stopped".to_owned(),
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            };
            self.webhook_handle.shutdown();
            self.metrics_handle.shutdown();
            anyhow::bail!("the {which} server failed: {reason}");
        }

        // Not ready from now on, so that endpoints drop this pod; HTTP/1.1 clients are asked
        // to close their connections after each answer until the delay ends.
        readiness.stopping.begin();
        tracing::info!(
            connections = self.webhook_handle.connection_count(),
            delay_seconds = config.shutdown_delay.as_secs_f64(),
            "shutting down: serving on, unready, while clients move to other replicas"
        );
        shutdown::delay(config.shutdown_delay).await;
        tracing::info!(
            connections = self.webhook_handle.connection_count(),
            "shutting down: no new connections; draining in-flight reviews"
        );
        self.webhook_handle
            .graceful_shutdown(Some(config.drain_timeout));
        // axum-server closes what is left at the deadline; the margin covers that.
        match tokio::time::timeout(
            config.drain_timeout + Duration::from_secs(2),
            self.webhook_task,
        )
        .await
        {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "webhook server ended with an error"),
            Ok(Err(error)) => tracing::warn!(%error, "webhook server task failed"),
            Err(_) => tracing::warn!("in-flight reviews did not finish in time"),
        }
        self.metrics_handle
            .graceful_shutdown(Some(Duration::from_secs(1)));
        let _ = tokio::time::timeout(Duration::from_secs(2), self.metrics_task).await;
        Ok(())
    }
}

/// The admission router over the state the webhook reads, each request in its own span.
fn webhook_router(
    checker: Arc<ImageChecker<PolicyRegistry>>,
    view: ClusterView,
    metrics: Metrics,
    config: &ServeConfig,
    pull_secrets: Option<Arc<PullSecrets>>,
) -> Router {
    let state = Arc::new(WebhookState {
        checker,
        policy: view.policy,
        namespaces: view.namespaces,
        events: view.events,
        records: Arc::new(JsonLinesSink::stdout()),
        metrics,
        settings: WebhookSettings {
            review_budget: config.review_budget,
            body_timeout: config.body_timeout,
            ..WebhookSettings::default()
        },
        clock: WebhookState::<PolicyRegistry>::system_clock(),
        pull_secrets,
    });
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
    // Outermost last: the span covers the wait for a place, and the caller is known before.
    crate::admission::router(state)
        .layer(axum::middleware::from_fn_with_state(
            in_flight,
            connections::limit_in_flight,
        ))
        .layer(axum::middleware::from_fn(connections::identify_caller))
        .layer(axum::middleware::from_fn(request_span))
}

/// Runs each webhook request in a span, so that everything logged on its behalf names it.
async fn request_span(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path()
    );
    next.run(request).instrument(span).await
}

fn bind(address: SocketAddr, which: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address} ({which})"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("cannot listen on {address} ({which})"))?;
    Ok(listener)
}

/// Header size, timeouts and streams of both servers; bodies are limited by the routers.
fn limit_http(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    max_streams_per_connection: u32,
) {
    builder
        .http1()
        .header_read_timeout(Some(HEADER_READ_TIMEOUT))
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(max_streams_per_connection);
}

fn read_limited(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// What `/readyz` looks at.
struct Readiness {
    policy: Arc<dyn PolicySource>,
    namespaces: Arc<dyn NamespaceDirectory>,
    stopping: shutdown::Stopping,
}

impl Readiness {
    /// `Err` with the reason while the webhook cannot answer reviews correctly.
    fn check(&self) -> Result<(), &'static str> {
        if self.stopping.is_set() {
            return Err("shutting down");
        }
        if self.policy.current().is_none() {
            return Err("no valid policy loaded yet");
        }
        if !self.namespaces.is_ready() {
            return Err("namespace cache not synced yet");
        }
        Ok(())
    }
}

/// Copies the checker's cache counters into `provenance_gate_cache_requests_total` when
/// `/metrics` is scraped. The caches count in plain atomics (they know nothing of
/// Prometheus); the counters here advance by the difference since the last scrape.
struct CacheMetrics {
    metrics: Metrics,
    read: Box<dyn Fn() -> Vec<(&'static str, u64, u64)> + Send + Sync>,
    /// Values already added, per (cache, result).
    copied: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl CacheMetrics {
    fn new(
        metrics: Metrics,
        read: impl Fn() -> Vec<(&'static str, u64, u64)> + Send + Sync + 'static,
    ) -> Self {
        CacheMetrics {
            metrics,
            read: Box::new(read),
            copied: Mutex::new(BTreeMap::new()),
        }
    }

    fn update(&self) {
        let mut copied = self
            .copied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (cache, hits, misses) in (self.read)() {
            for (result, now) in [("hit", hits), ("miss", misses)] {
                let before = copied.entry((cache, result)).or_default();
                let counter = self.metrics.cache_requests.get_or_create(&CacheLabels {
                    cache: cache.to_owned(),
                    result: result.to_owned(),
                });
                counter.inc_by(now.saturating_sub(*before));
                *before = now.max(*before);
            }
        }
    }
}

#[derive(Clone)]
struct ProbeState {
    registry: Arc<prometheus_client::registry::Registry>,
    readiness: Arc<Readiness>,
    cache_metrics: Arc<CacheMetrics>,
}

/// `/metrics`, `/healthz`, `/readyz` on the plain-HTTP port.
fn probe_router(state: ProbeState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz_handler))
        .with_state(state)
}

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics_handler(State(state): State<ProbeState>) -> Response {
    state.cache_metrics.update();
    let text = crate::evidence::metrics::encode(&state.registry);
    ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response()
}

async fn readyz_handler(State(state): State<ProbeState>) -> Response {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{NamespaceMap, PolicyCell};
    use crate::policy::Policy;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn readiness_needs_a_policy_and_synced_namespaces_and_ends_at_shutdown() {
        let policy = Arc::new(PolicyCell::new(None));
        let namespaces = Arc::new(NamespaceMap::default());
        let readiness = Readiness {
            policy: policy.clone(),
            namespaces: namespaces.clone(),
            stopping: shutdown::Stopping::default(),
        };
        assert_eq!(readiness.check(), Err("no valid policy loaded yet"));
        policy.replace(Policy::from_yaml("version: 1\nrules: []\n").expect("policy"));
        assert_eq!(readiness.check(), Err("namespace cache not synced yet"));
        namespaces.set_ready();
        assert_eq!(readiness.check(), Ok(()));
        readiness.stopping.begin();
        assert_eq!(readiness.check(), Err("shutting down"));
    }

    #[test]
    fn cache_counters_advance_by_what_the_caches_counted_since_the_last_scrape() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let hits = Arc::new(AtomicU64::new(3));
        let misses = Arc::new(AtomicU64::new(1));
        let cache_metrics = CacheMetrics::new(metrics, {
            let (hits, misses) = (hits.clone(), misses.clone());
            move || {
                vec![(
                    "attestation",
                    hits.load(Ordering::Relaxed),
                    misses.load(Ordering::Relaxed),
                )]
            }
        });
        cache_metrics.update();
        cache_metrics.update();
        let text = crate::evidence::metrics::encode(&registry);
        assert!(
            text.contains(
                r#"provenance_gate_cache_requests_total{cache="attestation",result="hit"} 3"#
            ),
            "{text}"
        );
        hits.store(5, Ordering::Relaxed);
        misses.store(4, Ordering::Relaxed);
        cache_metrics.update();
        let text = crate::evidence::metrics::encode(&registry);
        assert!(
            text.contains(
                r#"provenance_gate_cache_requests_total{cache="attestation",result="hit"} 5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"provenance_gate_cache_requests_total{cache="attestation",result="miss"} 4"#
            ),
            "{text}"
        );
    }
}
