//! Load harness of the admission path (benches/admission_load.sh runs it; BENCHMARKS.md has
//! the figures): `provenance-gate serve` from the build next to this program, over HTTPS with
//! keep-alive connections, against a real OCI registry on loopback (ferro-oci-server behind
//! the kit's counting proxy) holding minted attested images.
//!
//! Phases, each reported on stdout as `key value` lines under a `== phase` heading:
//! - warm: every image verified once, then Pod CREATE reviews naming tags (→ allowed, patch
//!   with digest and provenance annotation) from an open-loop generator at fixed rates
//!   (latency measured from each request's scheduled start, so a stalled server is not
//!   hidden by a generator that waits for it), and the webhook's own histogram over the run;
//! - max: closed-loop throughput of the warm path and of an exempt image on the same server;
//! - cold: one new image per review (open loop), registry requests per new digest counted
//!   at the registry's side;
//! - single-flight: 200 reviews of one new image released at once on 200 connections;
//! - memory: VmRSS after reviewing many distinct verified digests;
//! - soak (optional): VmRSS sampled over a long warm run;
//! - faults (optional, `--fault-seconds`): reviews of attested, unattested, wrongly attested
//!   and lied-about images while the registry flaps between healthy, slow, stalled, 429,
//!   5xx and lying (`admission-load/faults.rs`).
//!
//! Test support, never shipped. Numbers from it are only comparable within one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use provenance_gate_testkit::registry::{
    push_attested_image, FaultProxy, FerroRegistry, PushedImage, RegistryClient, TestCa,
    TestRegistry,
};
use provenance_gate_testkit::TestInstance;
use serde_json::Value;

// A directory without main.rs is not a binary of its own.
#[path = "admission-load/faults.rs"]
mod faults;

const REPOSITORY: &str = "acme/api";
const EXEMPT_IMAGE: &str = "docker.io/library/busybox:1.36";

#[derive(Debug, Clone)]
struct Options {
    gate: PathBuf,
    review: PathBuf,
    seconds: f64,
    images: usize,
    rates: Vec<f64>,
    connections: usize,
    cold_images: usize,
    cold_rate: f64,
    concurrent: usize,
    fill: usize,
    soak_seconds: f64,
    soak_rate: f64,
    perf_dir: Option<PathBuf>,
    fault_seconds: f64,
    fault_rate: f64,
    fault_phase_seconds: f64,
    fault_connections: usize,
    /// Whether a review answered past the budget fails the run; not in `--smoke`, which
    /// proves the harness works on whatever else the CI machine runs (no check judges
    /// timings there).
    judge_budget: bool,
    /// Extra arguments for `serve` (`--gate-arg ARG`, repeatable).
    gate_args: Vec<String>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            gate: sibling("provenance-gate")?,
            review: PathBuf::from("tests/data/admission/pod-create.gke.json"),
            seconds: 10.0,
            images: 100,
            rates: vec![500.0, 2000.0],
            connections: 16,
            cold_images: 300,
            cold_rate: 50.0,
            concurrent: 200,
            fill: 10_000,
            soak_seconds: 0.0,
            soak_rate: 500.0,
            perf_dir: None,
            fault_seconds: 0.0,
            fault_rate: 500.0,
            fault_phase_seconds: 20.0,
            fault_connections: 256,
            judge_budget: true,
            gate_args: Vec::new(),
        };
        let mut arguments = std::env::args().skip(1);
        while let Some(flag) = arguments.next() {
            if flag == "--smoke" {
                options.seconds = 1.0;
                options.images = 10;
                options.rates = vec![200.0];
                options.cold_images = 10;
                options.cold_rate = 20.0;
                options.concurrent = 20;
                options.fill = 20;
                // One short cycle of every weather, and the recovery phase.
                options.fault_seconds = 12.0;
                options.fault_rate = 100.0;
                options.fault_phase_seconds = 2.0;
                options.fault_connections = 64;
                options.judge_budget = false;
                continue;
            }
            let value = arguments
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?;
            let number = || {
                value
                    .parse::<f64>()
                    .map_err(|_| format!("{flag}: not a number: {value}"))
            };
            match flag.as_str() {
                "--gate" => options.gate = PathBuf::from(&value),
                "--review" => options.review = PathBuf::from(&value),
                "--seconds" => options.seconds = number()?,
                "--images" => options.images = number()? as usize,
                "--rates" => {
                    options.rates = value
                        .split(',')
                        .map(|rate| rate.parse::<f64>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| format!("--rates: not numbers: {value}"))?
                }
                "--connections" => options.connections = number()? as usize,
                "--cold-images" => options.cold_images = number()? as usize,
                "--cold-rate" => options.cold_rate = number()?,
                "--concurrent" => options.concurrent = number()? as usize,
                "--fill" => options.fill = number()? as usize,
                "--soak-seconds" => options.soak_seconds = number()?,
                "--soak-rate" => options.soak_rate = number()?,
                "--perf-dir" => options.perf_dir = Some(PathBuf::from(&value)),
                "--fault-seconds" => options.fault_seconds = number()?,
                "--fault-rate" => options.fault_rate = number()?,
                "--fault-phase-seconds" => options.fault_phase_seconds = number()?,
                "--fault-connections" => options.fault_connections = number()? as usize,
                "--gate-arg" => options.gate_args.push(value.clone()),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if options.images == 0 || options.connections == 0 || options.seconds <= 0.0 {
            return Err("--images, --connections and --seconds must be positive".into());
        }
        if options.fault_seconds > 0.0
            && (options.fault_rate <= 0.0
                || options.fault_phase_seconds <= 0.0
                || options.fault_connections == 0)
        {
            return Err(
                "--fault-rate, --fault-phase-seconds and --fault-connections must be positive"
                    .into(),
            );
        }
        Ok(options)
    }
}

fn sibling(name: &str) -> Result<PathBuf, String> {
    std::env::current_exe()
        .map(|me| me.with_file_name(name))
        .map_err(|error| format!("cannot locate this program: {error}"))
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if !options.gate.exists() {
        eprintln!(
            "error: {} not found; build it first: cargo build --release -p provenance-gate -p provenance-gate-testkit --bins",
            options.gate.display()
        );
        return ExitCode::from(2);
    }
    report_first_failure_only();
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("admission-load: some answers were not the expected ones (see above)");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// The registry, the minting instance and the images pushed so far.
struct Fixture {
    _registry: FerroRegistry,
    proxy: FaultProxy,
    client: RegistryClient,
    instance: TestInstance,
    pushed: usize,
    /// Proxy rules that stay whatever the weather (the faults phase's lying images).
    permanent_faults: Vec<(String, provenance_gate_testkit::registry::Fault)>,
}

impl Fixture {
    fn start() -> Fixture {
        let registry = FerroRegistry::start();
        let proxy = FaultProxy::start(&registry);
        let client = registry.client();
        Fixture {
            _registry: registry,
            proxy,
            client,
            instance: TestInstance::timestamp_only(),
            pushed: 0,
            permanent_faults: Vec::new(),
        }
    }

    /// Pushes `count` new attested images (fresh digests) and returns them.
    fn push(&mut self, count: usize) -> Vec<PushedImage> {
        (0..count)
            .map(|_| {
                self.pushed += 1;
                let tag = format!("v{}", self.pushed);
                push_attested_image(&self.client, REPOSITORY, &tag, &self.instance, |spec| spec)
            })
            .collect()
    }

    /// What a pod names for `image`: the tag, through the counting proxy.
    fn tag_reference(&self, image: &PushedImage) -> String {
        let tag = image.tag.as_deref().unwrap_or_default();
        format!("{}/{}:{tag}", self.proxy.host(), image.repository)
    }
}

/// `provenance-gate serve`, killed when dropped.
struct Gate {
    child: Child,
    url: String,
    metrics_url: String,
    ca_pem: String,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gate {
    fn start(options: &Options, work: &Path, registry_host: &str) -> Result<Gate, String> {
        let ca = TestCa::new();
        let identity = ca.issue_server_identity();
        let policy = format!(
            r#"version: 1
defaultMode: enforce
unmatchedImages: deny
exemptImages: ["docker.io/**"]
rules:
  - name: acme
    images: ["{registry_host}/acme/**"]
    repositories: [{{name: acme/api, id: "804070735"}}]
    workflows: [".github/workflows/release.yml"]
registries:
  - {{host: "{registry_host}", insecure: true}}
"#
        );
        let instance_root = work.join("trusted-root.json");
        let files = [
            ("tls.crt", identity.certificate_pem.as_str()),
            ("tls.key", identity.private_key_pem.as_str()),
            ("policy.yaml", policy.as_str()),
        ];
        for (name, text) in files {
            std::fs::write(work.join(name), text)
                .map_err(|error| format!("failed to write {name}: {error}"))?;
        }
        let listen = free_port()?;
        let metrics_listen = free_port()?;
        let log = std::fs::File::create(work.join("gate.log"))
            .map_err(|error| format!("failed to create the gate's log: {error}"))?;
        let child = Command::new(&options.gate)
            .arg("serve")
            .args(["--tls-cert", &path_text(&work.join("tls.crt"))])
            .args(["--tls-key", &path_text(&work.join("tls.key"))])
            .args(["--listen", &format!("127.0.0.1:{listen}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_listen}")])
            .args(["--policy", &path_text(&work.join("policy.yaml"))])
            .args(["--trusted-root", &path_text(&instance_root)])
            .args(["--namespace-labels", "env=production"])
            .args(["--log-format", "json"])
            // The API server multiplexes reviews over a few HTTP/2 connections; this HTTP/1.1
            // generator needs one per review in flight (200 in the single-flight phase).
            .args(["--max-connections", "1024"])
            .args(&options.gate_args)
            // Decision records are written as in production (one JSON line per image); a
            // pipe nobody reads would fill, so they go to the null device.
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| format!("failed to start {}: {error}", options.gate.display()))?;
        let gate = Gate {
            child,
            url: format!("https://127.0.0.1:{listen}"),
            metrics_url: format!("http://127.0.0.1:{metrics_listen}"),
            ca_pem: ca.certificate_pem(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", metrics_listen)).is_ok()
                && RegistryClient::new(&gate.metrics_url)
                    .request_without_auth("GET", "/readyz", &[], &[])
                    .status
                    == 200
            {
                return Ok(gate);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(work.join("gate.log")).unwrap_or_default();
        Err(format!("the gate did not become ready; its log:\n{log}"))
    }

    fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.url).with_ca_pem(&self.ca_pem)
    }

    fn metrics(&self) -> Metrics {
        let text = RegistryClient::new(&self.metrics_url)
            .request_without_auth("GET", "/metrics", &[], &[])
            .text();
        Metrics::parse(&text)
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("failed to find a free port: {error}"))
}

/// The samples of one /metrics scrape, by series (`name{labels}`).
struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.rsplit_once(' '))
                .filter_map(|(series, value)| Some((series.to_owned(), value.parse().ok()?)))
                .collect(),
        )
    }

    /// The sum of every series of `name` (any labels).
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                series
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// `histogram_quantile(q, after - before)` of the histogram `name`, linear within a bucket.
    fn quantile_since(&self, before: &Metrics, name: &str, q: f64) -> Option<f64> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(series, count)| {
                let bound = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((bound, count - before.0.get(series).copied().unwrap_or(0.0)))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for (bound, count) in buckets {
            if count >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let within = (rank - lower.1) / (count - lower.1).max(f64::MIN_POSITIVE);
                return Some(lower.0 + (bound - lower.0) * within);
            }
            lower = (bound, count);
        }
        None
    }
}

/// An AdmissionReview body (the recorded Pod CREATE) naming `image`.
fn review_body(template: &Value, image: &str, uid: usize) -> Vec<u8> {
    let mut review = template.clone();
    review["request"]["object"]["spec"]["containers"][0]["image"] = Value::from(image);
    review["request"]["uid"] = Value::from(format!("00000000-0000-4000-8000-{uid:012}"));
    serde_json::to_vec(&review).expect("a JSON value serializes")
}

/// What a review's answer must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Allowed with a patch (digest and provenance annotation).
    AllowedWithPatch,
    /// Allowed without a patch (an exempt image).
    Allowed,
}

fn answered_as(body: &[u8], expect: Expect) -> bool {
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|window| window == needle);
    let allowed = contains(br#""allowed":true"#);
    let patched = contains(br#""patch":"#);
    match expect {
        Expect::AllowedWithPatch => allowed && patched,
        Expect::Allowed => allowed && !patched,
    }
}

/// Latencies (ns) and failures of one run.
#[derive(Default)]
struct Run {
    latencies: Vec<u64>,
    unexpected: usize,
    elapsed: Duration,
}

impl Run {
    fn merge(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.unexpected += other.unexpected;
    }

    fn percentile_ms(&mut self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1] as f64 / 1e6
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn report(&mut self, label: &str) {
        println!(
            "{label}.requests {}\n{label}.achieved_per_s {:.0}\n{label}.p50_ms {:.3}\n{label}.p99_ms {:.3}\n{label}.max_ms {:.3}\n{label}.unexpected_answers {}",
            self.latencies.len(),
            self.rate(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
            self.unexpected
        );
    }
}

/// Sends `bodies[i % len]` at `rate` per second for `seconds`, open loop: request i is due
/// at start + i/rate and its latency counts from then, whichever connection sends it.
fn open_loop(gate: &Gate, bodies: &[Vec<u8>], expect: Expect, rate: f64, seconds: f64) -> Run {
    let total = (rate * seconds).round() as usize;
    // Enough connections that a 50 ms stall does not run out of senders.
    let workers = ((rate * 0.05).ceil() as usize).clamp(4, 128);
    let start = Instant::now() + Duration::from_millis(100);
    send_all(gate, bodies, expect, workers, start, |next| {
        next_due(next, total, start, rate)
    })
}

/// The next request of an open loop of `total` requests at `rate` per second from `start`,
/// once it is due: its index and when it was due.
fn next_due(
    next: &AtomicUsize,
    total: usize,
    start: Instant,
    rate: f64,
) -> Option<(usize, Instant)> {
    let index = next.fetch_add(1, Ordering::Relaxed);
    if index >= total {
        return None;
    }
    let due = start + Duration::from_secs_f64(index as f64 / rate);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    Some((index, due))
}

/// `connections` senders back to back for `seconds`: the throughput the server sustains.
fn closed_loop(
    gate: &Gate,
    bodies: &[Vec<u8>],
    expect: Expect,
    connections: usize,
    seconds: f64,
) -> Run {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    send_all(gate, bodies, expect, connections, start, |next| {
        let sent = Instant::now();
        (sent < end).then(|| (next.fetch_add(1, Ordering::Relaxed), sent))
    })
}

/// `workers` connections sending reviews while `pace` hands out the next one: its index
/// into `bodies` and the instant its latency counts from (when it was due in an open loop,
/// when it was sent in a closed one), or `None` when the run is over.
fn send_all(
    gate: &Gate,
    bodies: &[Vec<u8>],
    expect: Expect,
    workers: usize,
    start: Instant,
    pace: impl Fn(&AtomicUsize) -> Option<(usize, Instant)> + Sync,
) -> Run {
    let next = AtomicUsize::new(0);
    let mut run = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (next, pace) = (&next, &pace);
                let client = gate.client();
                scope.spawn(move || {
                    let mut run = Run::default();
                    while let Some((index, counted_from)) = pace(next) {
                        let response = send_review(&client, &bodies[index % bodies.len()]);
                        run.latencies.push(counted_from.elapsed().as_nanos() as u64);
                        run.unexpected += usize::from(!answered_as(&response, expect));
                    }
                    run
                })
            })
            .collect();
        merged(handles)
    });
    run.elapsed = start.elapsed();
    run
}

fn merged(handles: Vec<std::thread::ScopedJoinHandle<'_, Run>>) -> Run {
    let mut run = Run::default();
    for handle in handles {
        run.merge(handle.join().expect("a load worker does not panic"));
    }
    run
}

/// Every review goes to `/mutate`, the first webhook the API server calls for a Pod: there a
/// tag is resolved, checked and pinned (the patch), and an exempt image is only classified.
/// A transport failure (the kit's client panics on one) is an unexpected answer, not the end
/// of the run: a worker that died would leave the others waiting at a barrier.
fn send_review(client: &RegistryClient, body: &[u8]) -> Vec<u8> {
    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        client.request_without_auth(
            "POST",
            "/mutate",
            &[("Content-Type", "application/json")],
            body,
        )
    }));
    match sent {
        Ok(response) if response.status == 200 => response.body,
        _ => Vec::new(),
    }
}

/// Prints the first transport failure only; the rest are counted as unexpected answers.
fn report_first_failure_only() {
    static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    std::panic::set_hook(Box::new(|info| {
        if !REPORTED.swap(true, Ordering::Relaxed) {
            eprintln!("admission-load: {info} (later failures are only counted)");
        }
    }));
}

/// Runs `perf record -g` on the gate while `phase` runs, when a directory was given.
fn profiled<T>(options: &Options, gate: &Gate, name: &str, phase: impl FnOnce() -> T) -> T {
    let Some(dir) = &options.perf_dir else {
        return phase();
    };
    let output = dir.join(format!("{name}.perf.data"));
    let recorder = Command::new("perf")
        .args(["record", "-g", "-F", "999", "-o", &path_text(&output)])
        .args(["-p", &gate.child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let result = phase();
    if let Ok(mut recorder) = recorder {
        // SIGINT makes perf write its file and exit.
        let _ = Command::new("kill")
            .args(["-INT", &recorder.id().to_string()])
            .status();
        let _ = recorder.wait();
        println!("perf.{name} {}", output.display());
    }
    result
}

fn run(options: &Options) -> Result<bool, String> {
    let template: Value = serde_json::from_slice(
        &std::fs::read(&options.review)
            .map_err(|error| format!("failed to read {}: {error}", options.review.display()))?,
    )
    .map_err(|error| format!("failed to parse {}: {error}", options.review.display()))?;
    let work = tempfile::Builder::new()
        .prefix("admission-load-")
        .tempdir()
        .map_err(|error| format!("failed to create a temporary directory: {error}"))?;
    let mut fixture = Fixture::start();
    std::fs::write(
        work.path().join("trusted-root.json"),
        fixture.instance.trusted_root_json(),
    )
    .map_err(|error| format!("failed to write the trusted root: {error}"))?;

    let pushing = Instant::now();
    let warm_images = fixture.push(options.images);
    println!(
        "== setup\nsetup.warm_images {}\nsetup.push_seconds {:.1}",
        warm_images.len(),
        pushing.elapsed().as_secs_f64()
    );
    let gate = Gate::start(options, work.path(), &fixture.proxy.host())?;
    let mut as_expected = true;
    let warm_bodies: Vec<Vec<u8>> = warm_images
        .iter()
        .enumerate()
        .map(|(uid, image)| review_body(&template, &fixture.tag_reference(image), uid))
        .collect();
    let exempt_bodies = vec![review_body(&template, EXEMPT_IMAGE, 0)];

    // Every image verified once, so the runs below measure the cached path.
    let mut prime = closed_loop_once(&gate, &warm_bodies, Expect::AllowedWithPatch);
    as_expected &= prime.unexpected == 0;
    prime.report("prime");
    let (rss, _) = gate.memory_kib();
    println!("prime.vmrss_kib {rss}");

    println!("== warm (open loop, tags -> allowed + patch)");
    for &rate in &options.rates {
        let before = gate.metrics();
        let mut run = open_loop(
            &gate,
            &warm_bodies,
            Expect::AllowedWithPatch,
            rate,
            options.seconds,
        );
        let after = gate.metrics();
        let label = format!("warm.rate{rate:.0}");
        run.report(&label);
        report_histogram(&label, &before, &after);
        as_expected &= run.unexpected == 0;
        let mut exempt = open_loop(
            &gate,
            &exempt_bodies,
            Expect::Allowed,
            rate,
            options.seconds,
        );
        exempt.report(&format!("exempt.rate{rate:.0}"));
        as_expected &= exempt.unexpected == 0;
    }

    println!("== max (closed loop, {} connections)", options.connections);
    let mut warm_max = profiled(options, &gate, "warm", || {
        closed_loop(
            &gate,
            &warm_bodies,
            Expect::AllowedWithPatch,
            options.connections,
            options.seconds,
        )
    });
    warm_max.report("max.warm");
    let mut exempt_max = profiled(options, &gate, "exempt", || {
        closed_loop(
            &gate,
            &exempt_bodies,
            Expect::Allowed,
            options.connections,
            options.seconds,
        )
    });
    exempt_max.report("max.exempt");
    println!(
        "max.warm_over_exempt {:.2}",
        warm_max.rate() / exempt_max.rate()
    );
    as_expected &= warm_max.unexpected == 0 && exempt_max.unexpected == 0;

    println!(
        "== cold (open loop at {} reviews/s, a new image per review)",
        options.cold_rate
    );
    let cold_images = fixture.push(options.cold_images);
    let cold_bodies: Vec<Vec<u8>> = cold_images
        .iter()
        .enumerate()
        .map(|(uid, image)| review_body(&template, &fixture.tag_reference(image), uid))
        .collect();
    let registry_before = fixture.proxy.request_count();
    let before = gate.metrics();
    let mut cold = open_loop(
        &gate,
        &cold_bodies,
        Expect::AllowedWithPatch,
        options.cold_rate,
        cold_bodies.len() as f64 / options.cold_rate,
    );
    let after = gate.metrics();
    cold.report("cold");
    report_histogram("cold", &before, &after);
    let registry_requests = fixture.proxy.request_count() - registry_before;
    println!(
        "cold.registry_requests_per_new_digest {:.2}\ncold.webhook_counted_registry_requests_per_new_digest {:.2}",
        registry_requests as f64 / cold_bodies.len() as f64,
        (after.sum("provenance_gate_registry_requests_total")
            - before.sum("provenance_gate_registry_requests_total"))
            / cold_bodies.len() as f64
    );
    as_expected &= cold.unexpected == 0;

    as_expected &= single_flight(options, &gate, &mut fixture, &template);
    as_expected &= memory(options, &gate, &mut fixture, &template);
    if options.soak_seconds > 0.0 {
        as_expected &= soak(options, &gate, &warm_bodies);
    }
    if options.fault_seconds > 0.0 {
        as_expected &= faults::run(options, &gate, &mut fixture, &warm_images, &template);
    }
    Ok(as_expected)
}

/// Each body once, 8 at a time.
fn closed_loop_once(gate: &Gate, bodies: &[Vec<u8>], expect: Expect) -> Run {
    send_all(gate, bodies, expect, 8, Instant::now(), |next| {
        let index = next.fetch_add(1, Ordering::Relaxed);
        (index < bodies.len()).then(|| (index, Instant::now()))
    })
}

fn report_histogram(label: &str, before: &Metrics, after: &Metrics) {
    const HISTOGRAM: &str = "provenance_gate_admission_duration_seconds";
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let value = after
            .quantile_since(before, HISTOGRAM, q)
            .map_or("n/a".to_owned(), |seconds| format!("{:.3}", seconds * 1e3));
        println!("{label}.webhook_{name}_ms {value}");
    }
}

/// `concurrent` reviews of one new image on as many connections, released at once.
fn single_flight(options: &Options, gate: &Gate, fixture: &mut Fixture, template: &Value) -> bool {
    println!(
        "== single flight ({} concurrent reviews of one new image)",
        options.concurrent
    );
    let image = fixture.push(1).remove(0);
    let body = review_body(template, &fixture.tag_reference(&image), 0);
    let exempt = review_body(template, EXEMPT_IMAGE, 0);
    let registry_before = fixture.proxy.recorded_requests().len();
    let barrier = Barrier::new(options.concurrent);
    let unexpected = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..options.concurrent)
            .map(|_| {
                let client = gate.client();
                let (barrier, body, exempt) = (&barrier, &body, &exempt);
                scope.spawn(move || {
                    // The connection is opened (TLS handshake done) before the release.
                    let _ = send_review(&client, exempt);
                    barrier.wait();
                    !answered_as(&send_review(&client, body), Expect::AllowedWithPatch)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a load worker does not panic"))
            .filter(|unexpected| *unexpected)
            .count()
    });
    let requests = &fixture.proxy.recorded_requests()[registry_before..];
    let bundle_path = format!("/v2/{}/blobs/{}", image.repository, image.bundle_digest());
    let count = |predicate: &dyn Fn(&str) -> bool| {
        requests
            .iter()
            .filter(|request| predicate(&request.path))
            .count()
    };
    println!(
        "single_flight.reviews {}\nsingle_flight.unexpected_answers {unexpected}\nsingle_flight.registry_requests {}\nsingle_flight.manifest_requests {}\nsingle_flight.referrers_requests {}\nsingle_flight.bundle_fetches {}",
        options.concurrent,
        requests.len(),
        count(&|path| path.contains("/manifests/")),
        count(&|path| path.contains("/referrers/")),
        count(&|path| path == bundle_path),
    );
    unexpected == 0
}

/// Reviews `fill` new images once each (8 at a time), then reads the gate's resident memory.
fn memory(options: &Options, gate: &Gate, fixture: &mut Fixture, template: &Value) -> bool {
    println!("== memory ({} more verified digests)", options.fill);
    let pushing = Instant::now();
    let images = fixture.push(options.fill);
    println!("memory.push_seconds {:.1}", pushing.elapsed().as_secs_f64());
    let bodies: Vec<Vec<u8>> = images
        .iter()
        .enumerate()
        .map(|(uid, image)| review_body(template, &fixture.tag_reference(image), uid))
        .collect();
    let (before, _) = gate.memory_kib();
    let mut run = closed_loop_once(gate, &bodies, Expect::AllowedWithPatch);
    run.report("memory.fill");
    let (rss, peak) = gate.memory_kib();
    println!("memory.vmrss_before_kib {before}\nmemory.vmrss_after_kib {rss}\nmemory.vmhwm_kib {peak}\nmemory.distinct_digests_verified {}", fixture.pushed);
    run.unexpected == 0
}

/// A long warm run at a fixed rate, VmRSS sampled every 30 s.
fn soak(options: &Options, gate: &Gate, bodies: &[Vec<u8>]) -> bool {
    println!(
        "== soak ({} s at {} reviews/s)",
        options.soak_seconds, options.soak_rate
    );
    let mut remaining = options.soak_seconds;
    let mut unexpected = 0;
    let mut slices = Run::default();
    let mut elapsed = Duration::ZERO;
    while remaining > 0.0 {
        let slice = remaining.min(30.0);
        let run = open_loop(
            gate,
            bodies,
            Expect::AllowedWithPatch,
            options.soak_rate,
            slice,
        );
        elapsed += run.elapsed;
        unexpected += run.unexpected;
        slices.merge(run);
        remaining -= slice;
        let (rss, _) = gate.memory_kib();
        println!(
            "soak.vmrss_kib_at_{:.0}s {rss}",
            options.soak_seconds - remaining
        );
    }
    slices.elapsed = elapsed;
    slices.report("soak");
    unexpected == 0
}
