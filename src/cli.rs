//! The `provenance-gate` command line: argument parsing and the offline commands.
//!
//! Exit status: 0 proven and allowed (or: a valid policy); 1 not proven, in whatever mode the
//! webhook would run (or: an invalid policy, or warnings with `policy check --strict`); 2 bad
//! usage or unreadable input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::check::provenance::{check_bundles, ProvenanceVerdict};
use crate::check::ImageOutcome;
use crate::defaults::{self, parse_seconds, Seconds};
use crate::policy::{ImageClass, Policy};
use crate::server::LogFormat;
use crate::verify::{read_bundles, ArtifactInput, TrustedRoots};

/// Input files larger than this are refused (bundles and policies are kilobytes).
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;
/// Artifacts are hashed, not parsed, so they may be larger.
const MAX_ARTIFACT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "provenance-gate",
    version,
    about = "Admit only artifacts with verifiable build provenance from trusted GitHub Actions workflows",
    after_help = "\
Exit status: 0 proven and allowed (verify, verify-bundle), or a valid policy (policy check);
1 not proven or denied, whatever the namespace's mode (verify, verify-bundle), or an invalid
policy, or warnings with --strict (policy check); 2 bad usage or unreadable input (a missing
file, a bundle that is not JSON, an unknown option).

--output text (the default) prints for people: verdicts on stdout, denials with their reasons
and fix hints on stderr. --output json prints one JSON object per answer on stdout.

Run `provenance-gate COMMAND --help` for each command's options and output."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check images against live registries, as the webhook would decide: a CI deploy gate.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyImagesArgs),
    /// Verify one attestation bundle offline and check it against a policy.
    VerifyBundle(VerifyBundleArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the admission webhook (HTTPS), with metrics and probes on a plain-HTTP port.
    Serve(ServeArgs),
    /// Summarise decision records (JSON Lines): pass rates, reasons, break-glass use.
    Report(crate::report::ReportArgs),
    /// Check the images of every running Pod against the policy: what would be denied if
    /// every namespace enforced today.
    #[command(after_help = "\
Reads Namespaces and Pods (get/list) with the kubeconfig (KUBECONFIG, ~/.kube/config, or
in-cluster). Each distinct image is checked once, as the webhook checks it; then each image is
judged as enforce mode would judge it, next to what its namespace's mode does today. Also lists
Pods still running unproven images after their namespace's break-glass expired.

Exit status: 0 enforcing everywhere would refuse nothing that runs (and every Pod and image
was read and checked); 1 something would be refused, or a bound left Pods or images unchecked;
2 bad usage, unreadable input, or the API server could not be read.")]
    Audit(AuditArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy file; errors and warnings name the field and line.
    #[command(after_help = "\
Exit status: 0 the policy is valid (warnings are printed but pass, unless --strict);
1 the policy is invalid, or has warnings with --strict; 2 bad usage or unreadable file.

Warnings: repositories or owners without `id` (repojacking), signer workflows not pinned
to a commit, risky triggers (pull_request*, workflow_run, issue_comment, issues,
repository_dispatch, discussion*, pull_request_review*), and rules or image patterns that
an earlier rule or an exemption covers (only the first rule whose images match is tried).")]
    Check {
        /// The policy.yaml to check.
        file: PathBuf,
        /// Fail (exit 1) when there are warnings.
        #[arg(long)]
        strict: bool,
        /// text: errors and warnings on stderr, a summary on stdout; json: one object on
        /// stdout (`valid`, `warnings`, the effective `policy`; or `valid`, `error`, `issues`).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

const VERIFY_HELP: &str = "\
Exit status: 0 when every image passes: proven (an attestation verifies and satisfies the rule
the webhook picks), or admitted by the policy without proof (exemptImages, or no rule covers it
and unmatchedImages is allow); 1 when any image is not proven, whatever mode the namespace
labels or --mode pick (the mode only changes what the webhook would do with it, which the
output shows); 2 bad usage or unreadable input.

Output: text prints each passing image on stdout (with the repository, commit, workflow and run
it was built from), each failing one on stderr: the verdict and its root cause first, then fix
hints where one is known, then what the webhook would do in the namespace's mode. json prints
one decision record per image on stdout (the webhook's record for the namespace's mode, `result`
included) with `passed` (what the exit status says) and `hints`.

Without a policy, --repo OWNER/REPO or --owner OWNER trust that repository's (or owner's)
builds for any image, with the defaults of a rule: refs refs/heads/main; triggers push,
release, workflow_dispatch, schedule; runners github-hosted (docs/policy.md).";

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("trust").args(["repo", "owner"]).multiple(true)))]
struct VerifyImagesArgs {
    /// Image references as a pod spec names them (`ghcr.io/acme/api:1.2`, `nginx`).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
    /// Policy file (the policy.yaml of the ConfigMap) [env: PROVENANCE_GATE_POLICY, used
    /// when neither --policy nor --repo/--owner is given].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["repo", "owner"])]
    policy: Option<PathBuf>,
    /// Instead of a policy: trust builds of this repository for any image, with a rule's
    /// default refs, triggers and runners (repeatable).
    #[arg(long, value_name = "OWNER/REPO")]
    repo: Vec<String>,
    /// Instead of a policy: trust builds of every repository of this user or organisation
    /// for any image, with a rule's default refs, triggers and runners (repeatable).
    #[arg(long, value_name = "OWNER")]
    owner: Vec<String>,
    /// With --repo or --owner: reach this registry (HOST[:PORT]) over plain HTTP; a policy
    /// says so under `registries` (repeatable).
    #[arg(
        long,
        value_name = "HOST",
        conflicts_with = "policy",
        requires = "trust"
    )]
    insecure_registry: Vec<String>,
    /// Labels of the namespace the pod would run in; they pick the environment and mode.
    #[arg(long, value_name = "k=v,...", value_parser = parse_labels, default_value = "")]
    namespace_labels: std::collections::BTreeMap<String, String>,
    /// Judge as the webhook would in a namespace of this environment (a name under the
    /// policy's `environments`): the rules' constraints for it apply, and its mode.
    #[arg(long, value_name = "NAME", conflicts_with = "namespace_labels")]
    environment: Option<String>,
    /// Show what the webhook would do in this mode (observe, warn, enforce) instead of the
    /// namespace's; the exit status is the same in every mode.
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    mode: Option<crate::policy::Mode>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// text: for people (passing images on stdout, failing ones with reasons and hints on
    /// stderr); json: one decision record per image on stdout, with `passed` and `hints`.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// How to reach registries: shared by the commands that check images.
#[derive(Debug, Args)]
struct RegistryArgs {
    /// Registry credentials in the .dockerconfigjson format (what imagePullSecrets hold).
    #[arg(long, value_name = "FILE")]
    docker_config: Option<PathBuf>,
    /// Trusted root JSON replacing the embedded Sigstore public-good and GitHub roots (repeatable).
    #[arg(long = "trusted-root", value_name = "FILE")]
    trusted_roots: Vec<PathBuf>,
    /// Seconds allowed for each image (registry round trips and verification).
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(defaults::PER_IMAGE_TIMEOUT),
          value_parser = parse_seconds::<{ defaults::MAX_CLI_TIMEOUT_SECONDS }>)]
    timeout: Seconds,
    /// Send registry requests through this http(s) proxy; without it they go direct
    /// (HTTPS_PROXY and the other proxy variables are ignored).
    #[arg(long, value_name = "URL", value_parser = parse_proxy)]
    registry_proxy: Option<reqwest::Url>,
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Policy file; without it, the policy ConfigMap is read from the cluster.
    #[arg(long, value_name = "FILE", env = "PROVENANCE_GATE_POLICY")]
    policy: Option<PathBuf>,
    /// ConfigMap whose `policy.yaml` is the policy (without --policy).
    #[arg(long, value_name = "NAME", default_value = crate::server::DEFAULT_POLICY_CONFIGMAP,
          conflicts_with = "policy")]
    policy_configmap: String,
    /// Namespace of the policy ConfigMap (the namespace provenance-gate is installed in).
    #[arg(
        long,
        value_name = "NS",
        default_value = "provenance-gate",
        conflicts_with = "policy"
    )]
    policy_namespace: String,
    /// Kubeconfig file; by default KUBECONFIG, ~/.kube/config, or the in-cluster account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Distinct images checked at most; Pods with further images are listed as not checked.
    #[arg(long, value_name = "N", default_value_t = crate::audit::DEFAULT_MAX_IMAGES)]
    max_images: usize,
    /// Running Pods read at most.
    #[arg(long, value_name = "N", default_value_t = crate::audit::DEFAULT_MAX_PODS)]
    max_pods: usize,
    #[command(flatten)]
    registry: RegistryArgs,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

fn parse_mode(text: &str) -> Result<crate::policy::Mode, ArgumentError> {
    crate::policy::Mode::parse(text).ok_or_else(|| ArgumentError::UnknownMode(text.to_owned()))
}

/// Why a command-line value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ArgumentError {
    #[error("label {0:?} is not key=value")]
    NotKeyValue(String),
    #[error("label {0:?} has an empty key")]
    EmptyLabelKey(String),
    #[error("not a URL: {0}")]
    NotAUrl(String),
    #[error("expected http://HOST:PORT or https://HOST:PORT")]
    NotAnHttpProxy,
    #[error("unknown mode {0:?}, expected observe, warn or enforce")]
    UnknownMode(String),
}

fn parse_labels(text: &str) -> Result<std::collections::BTreeMap<String, String>, ArgumentError> {
    let mut labels = std::collections::BTreeMap::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| ArgumentError::NotKeyValue(pair.to_owned()))?;
        if key.is_empty() {
            return Err(ArgumentError::EmptyLabelKey(pair.to_owned()));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

#[derive(Debug, Args)]
struct VerifyBundleArgs {
    /// Sigstore bundle: one JSON bundle, or JSON Lines with several (any one may satisfy the policy).
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// The artifact the bundle attests to.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "digest",
        required_unless_present = "digest"
    )]
    artifact: Option<PathBuf>,
    /// The artifact's digest instead of the artifact, as sha256:HEX (an image manifest digest).
    #[arg(long, value_name = "sha256:HEX")]
    digest: Option<String>,
    /// Policy file (the policy.yaml of the ConfigMap).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Check against this rule only; by default any rule of the policy may allow.
    #[arg(long, value_name = "NAME", conflicts_with = "image")]
    rule: Option<String>,
    /// The image as a pod spec names it: check against the rule the webhook picks for it
    /// (exemptions first, then the first rule whose images match); an exempt or unmatched
    /// image is answered as the webhook answers it, without verifying the bundle.
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// Trusted root JSON replacing the embedded Sigstore public-good and GitHub roots (repeatable).
    #[arg(long = "trusted-root", value_name = "FILE")]
    trusted_roots: Vec<PathBuf>,
    /// text: the accepted bundle's build on stdout, or every bundle's reasons (and, with one
    /// rule, fix hints) on stderr; json: one object on stdout (`decision`, `rule`, `reasons`,
    /// `hints`, every bundle's report).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Serving certificate chain, PEM (reloaded when the file changes).
    #[arg(long, value_name = "FILE")]
    tls_cert: PathBuf,
    /// Serving private key, PEM (reloaded when the file changes).
    #[arg(long, value_name = "FILE")]
    tls_key: PathBuf,
    /// Address of the webhook (HTTPS).
    #[arg(long, value_name = "ADDR", default_value = crate::server::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
    /// Address of /metrics, /healthz and /readyz (plain HTTP).
    #[arg(long, value_name = "ADDR", default_value = crate::server::DEFAULT_METRICS_LISTEN)]
    metrics_listen: std::net::SocketAddr,
    /// Policy file, re-read when it changes; no cluster is contacted.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Labels of every namespace (with --policy); they pick the environment and mode.
    #[arg(
        long,
        value_name = "k=v,...",
        value_parser = parse_labels,
        default_value = "",
        requires = "policy"
    )]
    namespace_labels: std::collections::BTreeMap<String, String>,
    /// ConfigMap whose `policy.yaml` is the policy (without --policy).
    #[arg(
        long,
        value_name = "NAME",
        default_value = crate::server::DEFAULT_POLICY_CONFIGMAP,
        conflicts_with = "policy"
    )]
    policy_configmap: String,
    /// Namespace of the ConfigMap: the webhook's own (ignored with --policy, so that the
    /// downward-API variable does not get in the way of a file policy).
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// Registry credentials in the .dockerconfigjson format (what imagePullSecrets hold).
    #[arg(long, value_name = "FILE")]
    docker_config: Option<PathBuf>,
    /// Trusted root JSON replacing the embedded Sigstore public-good and GitHub roots (repeatable).
    #[arg(long = "trusted-root", value_name = "FILE")]
    trusted_roots: Vec<PathBuf>,
    /// Seconds one review may take; keep it below the webhook's timeoutSeconds.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(defaults::REVIEW_BUDGET),
          value_parser = parse_seconds::<{ defaults::MAX_REVIEW_SECONDS }>)]
    review_budget: Seconds,
    /// Log lines (stderr) as JSON or text; decision records (stdout) are always JSON.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// CA bundle (PEM) that client certificates must chain to: with it, only clients
    /// presenting such a certificate (the API server) complete the TLS handshake, and
    /// decision records name the certificate's subject. Reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// Seconds a client has to send a request body once its headers are in (408 after).
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(defaults::BODY_TIMEOUT),
          value_parser = parse_seconds::<{ defaults::MAX_REVIEW_SECONDS }>)]
    body_timeout: Seconds,
    /// Seconds the webhook serves on after SIGTERM, unready, closing each HTTP/1.1 connection
    /// after its answer so that the API server moves off before connections are closed; then
    /// in-flight reviews drain. A second SIGTERM or Ctrl-C cuts it short.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(defaults::SHUTDOWN_DELAY),
          value_parser = parse_seconds::<{ defaults::MAX_SHUTDOWN_DELAY_SECONDS }>)]
    shutdown_delay: Seconds,
    /// Entries per cache: verified digests, tags, GitHub listings (about 4 KiB resident per
    /// verified digest). Raise it where more distinct digests run than it holds, so that
    /// they are not verified again.
    #[arg(long, value_name = "N", default_value_t = defaults::CACHE_CAPACITY,
          value_parser = clap::value_parser!(u32)
              .range(i64::from(defaults::MIN_CACHE_CAPACITY)..=i64::from(defaults::MAX_CACHE_CAPACITY))
              .map(|n| n as usize))]
    cache_capacity: usize,
    /// Open webhook connections at most; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=65_536).map(|n| n as usize))]
    max_connections: usize,
    /// Concurrent HTTP/2 requests per webhook connection at most.
    #[arg(long, value_name = "N", default_value_t = crate::server::DEFAULT_MAX_STREAMS_PER_CONNECTION,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_streams_per_connection: u32,
    /// Reviews read or decided at once at most; more wait before their body is read.
    #[arg(long, value_name = "N", default_value_t = crate::server::DEFAULT_MAX_IN_FLIGHT,
          value_parser = clap::value_parser!(u32).range(1..=4096).map(|n| n as usize))]
    max_in_flight: usize,
    /// Send registry requests through this http(s) proxy; without it they go direct
    /// (HTTPS_PROXY and the other proxy variables are ignored).
    #[arg(long, value_name = "URL", value_parser = parse_proxy)]
    registry_proxy: Option<reqwest::Url>,
    /// Audit the running Pods every SECONDS (as `provenance-gate audit` does) and export the
    /// result as `provenance_gate_audit_*` metrics; needs get/list on Pods. Off by default.
    #[arg(long, value_name = "SECONDS",
          value_parser = parse_seconds::<{ defaults::MAX_AUDIT_INTERVAL_SECONDS }>)]
    audit_interval: Option<Seconds>,
    /// Use each workload's imagePullSecrets (or its ServiceAccount's) for its registry
    /// requests, as the kubelet does, falling back to --docker-config; needs get on Secrets
    /// and ServiceAccounts. Off by default.
    #[arg(long, conflicts_with = "policy")]
    workload_credentials: bool,
    /// Refresh an instance's trusted root from its TUF repository in the background:
    /// `public-good` or `github`, `=URL` (repeatable; e.g.
    /// `public-good=https://tuf-repo-cdn.sigstore.dev`). Without it nothing is fetched and
    /// the embedded roots stay; with it they stay until a refresh succeeds.
    #[arg(long = "tuf-mirror", value_name = "INSTANCE=URL", value_parser = parse_tuf_mirror,
          conflicts_with = "trusted_roots")]
    tuf_mirrors: Vec<(crate::verify::tuf::TufInstance, reqwest::Url)>,
    /// The TUF root.json an instance's chain starts from, instead of the embedded one (a
    /// mirror re-signed under your own keys): `INSTANCE=FILE` (repeatable).
    #[arg(long = "tuf-root", value_name = "INSTANCE=FILE", value_parser = parse_tuf_root,
          requires = "tuf_mirrors")]
    tuf_roots: Vec<(crate::verify::tuf::TufInstance, PathBuf)>,
    /// Seconds between TUF refreshes of each instance.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(defaults::TUF_REFRESH_INTERVAL),
          value_parser = parse_seconds::<{ defaults::MAX_TUF_REFRESH_INTERVAL_SECONDS }>)]
    tuf_refresh_interval: Seconds,
}

fn split_tuf_instance(text: &str) -> Result<(crate::verify::tuf::TufInstance, &str), String> {
    let (instance, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected INSTANCE=VALUE"))?;
    let instance = crate::verify::tuf::TufInstance::parse(instance)
        .ok_or_else(|| format!("{instance:?}: the TUF instances are public-good and github"))?;
    Ok((instance, value))
}

fn parse_tuf_mirror(text: &str) -> Result<(crate::verify::tuf::TufInstance, reqwest::Url), String> {
    let (instance, url) = split_tuf_instance(text)?;
    let url = reqwest::Url::parse(url).map_err(|error| format!("{url:?}: {error}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("{url}: a TUF mirror is an http(s) URL"));
    }
    Ok((instance, url))
}

fn parse_tuf_root(text: &str) -> Result<(crate::verify::tuf::TufInstance, PathBuf), String> {
    let (instance, path) = split_tuf_instance(text)?;
    Ok((instance, PathBuf::from(path)))
}

/// The `--tuf-mirror` and `--tuf-root` pairs as mirrors, each instance once.
fn tuf_mirrors(
    mirrors: Vec<(crate::verify::tuf::TufInstance, reqwest::Url)>,
    roots: Vec<(crate::verify::tuf::TufInstance, PathBuf)>,
) -> Result<Vec<crate::verify::tuf::TufMirror>, UsageError> {
    let mut configured: Vec<crate::verify::tuf::TufMirror> = Vec::new();
    for (instance, url) in mirrors {
        if configured.iter().any(|mirror| mirror.instance == instance) {
            return Err(UsageError(format!("--tuf-mirror names {instance} twice")));
        }
        configured.push(crate::verify::tuf::TufMirror {
            url,
            ..crate::verify::tuf::TufMirror::published(instance)
        });
    }
    for (instance, path) in roots {
        let mirror = configured
            .iter_mut()
            .find(|mirror| mirror.instance == instance)
            .ok_or_else(|| UsageError(format!("--tuf-root {instance}: no --tuf-mirror for it")))?;
        let text = crate::verify::trusted_roots::read_bounded(&path)
            .map_err(|error| UsageError(format!("--tuf-root {}: {error}", path.display())))?
            .ok_or_else(|| UsageError(format!("--tuf-root {}: too large", path.display())))?;
        mirror.tuf_root = text.into_bytes();
    }
    Ok(configured)
}

fn parse_proxy(text: &str) -> Result<reqwest::Url, ArgumentError> {
    let url =
        reqwest::Url::parse(text).map_err(|error| ArgumentError::NotAUrl(error.to_string()))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        _ => Err(ArgumentError::NotAnHttpProxy),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Bad usage or unreadable input: exit 2 with a one-line message.
struct UsageError(String);

impl<E: std::fmt::Display> From<E> for UsageError {
    fn from(error: E) -> Self {
        UsageError(error.to_string())
    }
}

/// Parses `args` and runs the command.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // clap prints help and version to stdout with success, usage errors with code 2.
            let _ = error.print();
            return ExitCode::from(error.exit_code().clamp(0, 255) as u8);
        }
    };
    let result = match cli.command {
        Command::Verify(args) => verify_images_command(&args),
        Command::VerifyBundle(args) => verify_bundle_command(&args),
        Command::Policy(PolicyCommand::Check {
            file,
            strict,
            output,
        }) => policy_check_command(&file, strict, output),
        Command::Serve(args) => serve_command(args),
        Command::Report(args) => crate::report::command(&args).map_err(UsageError::from),
        Command::Audit(args) => audit_command(&args),
    };
    match result {
        Ok(code) => code,
        Err(UsageError(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn read_input(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, UsageError> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot read {what} {shown}: {error}"))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {what} {shown}: {error}"))?;
    if bytes.len() as u64 > limit {
        return Err(UsageError(format!(
            "{what} {shown} is larger than {limit} bytes"
        )));
    }
    Ok(bytes)
}

fn load_policy(path: &Path) -> Result<Policy, UsageError> {
    Ok(crate::policy::file::load(path)?)
}

fn load_roots(files: &[PathBuf]) -> Result<TrustedRoots, UsageError> {
    Ok(if files.is_empty() {
        TrustedRoots::embedded()?
    } else {
        TrustedRoots::from_files(files)?
    })
}

fn verify_images_command(args: &VerifyImagesArgs) -> Result<ExitCode, UsageError> {
    use crate::decision::{decide, BreakGlass, Subject};

    let by_repository = !(args.repo.is_empty() && args.owner.is_empty());
    // Read here rather than by clap, so that --repo/--owner in a shell that exports the
    // variable is not taken for a conflict with --policy.
    let policy_file = args.policy.clone().or_else(|| {
        (!by_repository)
            .then(|| std::env::var_os(POLICY_VARIABLE).filter(|path| !path.is_empty()))
            .flatten()
            .map(PathBuf::from)
    });
    let policy = match (&policy_file, by_repository) {
        (Some(path), _) => load_policy(path)?,
        (None, true) => command_line_policy(args)?,
        (None, false) => {
            return Err(UsageError(format!(
                "give --policy FILE (or {POLICY_VARIABLE}), or --repo OWNER/REPO or --owner OWNER"
            )))
        }
    };
    let checker = args.registry.checker(&policy)?;
    let (environment, labelled_mode) = match &args.environment {
        Some(name) => named_environment(&policy, name)?,
        None => policy.mode_for_namespace(&args.namespace_labels),
    };
    let mode = args.mode.unwrap_or(labelled_mode);
    let destination = crate::policy::Destination::of(environment);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("failed to start the async runtime: {error}"))?;
    let checks =
        runtime.block_on(futures::future::join_all(args.images.iter().map(|image| {
            checker.check_at(&policy, image, &destination, jiff::Timestamp::now())
        })));
    let explain_rules = policy_file.is_some();
    let mut all_passed = true;
    for check in &checks {
        // Whether the image is proven is what a deploy gate needs, in every mode: enforce
        // mode's verdict says it. The namespace's mode only says what the webhook would do.
        let passed = decide(
            Subject::settled(&check.outcome),
            crate::policy::Mode::Enforce,
            BreakGlass::Inactive,
        )
        .admits();
        all_passed &= passed;
        let decision = decide(Subject::settled(&check.outcome), mode, BreakGlass::Inactive);
        let hints = runtime.block_on(fix_hints(
            &checker,
            (&policy, &destination),
            check,
            explain_rules,
        ));
        match args.output {
            Output::Json => {
                let record = crate::evidence::records::DecisionRecord::new(
                    &crate::evidence::records::RequestContext::default(),
                    check,
                    &decision,
                    mode,
                    environment,
                    jiff::Timestamp::now(),
                );
                let answer = VerifyAnswer {
                    record,
                    passed,
                    hints,
                };
                println!("{}", serde_json::to_string(&answer).unwrap_or_default());
            }
            Output::Text => print_check_text(check, &decision, passed, &hints, (mode, environment)),
        }
    }
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The environment `verify --environment` names, with its mode; an unknown name is bad usage.
fn named_environment<'p>(
    policy: &'p Policy,
    name: &str,
) -> Result<(Option<&'p str>, crate::policy::Mode), UsageError> {
    match policy
        .environments()
        .iter()
        .find(|environment| environment.name() == name)
    {
        Some(environment) => Ok((Some(environment.name()), environment.mode())),
        None if policy.environments().is_empty() => Err(UsageError(format!(
            "--environment {name:?}: the policy defines no environments"
        ))),
        None => Err(UsageError(format!(
            "--environment {name:?}: no such environment; the policy's environments are {}",
            policy
                .environments()
                .iter()
                .map(|environment| environment.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// One image's answer of `verify --output json`: the webhook's decision record, and what the
/// exit status makes of it.
#[derive(serde::Serialize)]
struct VerifyAnswer {
    #[serde(flatten)]
    record: crate::evidence::records::DecisionRecord,
    /// Proven, or admitted by the policy without proof: what the exit status says.
    passed: bool,
    /// Fixes to try, where one is known.
    hints: Vec<String>,
}

/// The policy of `verify --repo/--owner`: one rule for every image with a rule's defaults,
/// checked like any policy file.
fn command_line_policy(args: &VerifyImagesArgs) -> Result<Policy, UsageError> {
    let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let names = |values: &[String]| {
        values
            .iter()
            .map(|name| format!("{{name: {}}}", quoted(name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let registries = args
        .insecure_registry
        .iter()
        .map(|host| format!("{{host: {}, insecure: true}}", quoted(host)))
        .collect::<Vec<_>>()
        .join(", ");
    let source = format!(
        "version: 1\nrules:\n  - name: {}\n    images: [\"**\"]\n    repositories: [{}]\n    owners: [{}]\nregistries: [{registries}]\n",
        quoted(COMMAND_LINE_RULE),
        names(&args.repo),
        names(&args.owner),
    );
    Policy::from_yaml(&source).map_err(|error| {
        let problems: Vec<String> = error
            .issues()
            .iter()
            .map(|issue| issue.message.clone())
            .collect();
        let problems = if problems.is_empty() {
            error.to_string()
        } else {
            problems.join("; ")
        };
        UsageError(format!("--repo/--owner/--insecure-registry: {problems}"))
    })
}

/// The policy file of `verify` when the command line names none.
const POLICY_VARIABLE: &str = "PROVENANCE_GATE_POLICY";

/// The rule `verify --repo/--owner` builds; denials name it.
const COMMAND_LINE_RULE: &str = "--repo/--owner";

/// What was probably missed when an image has no attestation in its registry.
const NO_ATTESTATION_HINT: &str = "was the image attested with actions/attest-build-provenance and `push-to-registry: true`, with `subject-digest` the digest that was pushed? Without push-to-registry the attestation stays on GitHub, where the gate does not look; a multi-platform image needs its index digest attested (or every platform image)";

/// Fixes for a failed check where one is known: the attestation that was never pushed, or
/// (with `explain_rules`, when a policy file was given) the rule line that would trust the
/// build that was found.
async fn fix_hints<R: crate::registry::Registry>(
    checker: &crate::check::ImageChecker<R>,
    (policy, destination): (&Policy, &crate::policy::Destination),
    check: &crate::check::ImageCheck,
    explain_rules: bool,
) -> Vec<String> {
    use crate::check::reference::{Digest, ImageReference};
    use crate::check::FailureKind;
    let ImageOutcome::Failed {
        rule: Some(rule),
        digest: Some(digest),
        kind,
        ..
    } = &check.outcome
    else {
        return Vec::new();
    };
    match kind {
        FailureKind::NoAttestation => return vec![NO_ATTESTATION_HINT.to_owned()],
        FailureKind::PolicyViolation if explain_rules => {}
        _ => return Vec::new(),
    }
    let (Some(rule), Ok(reference), Ok(digest)) = (
        policy.rule(rule),
        ImageReference::parse(&check.image),
        Digest::parse(digest),
    ) else {
        return Vec::new();
    };
    let attestations = checker
        .verified_attestations(&reference, &digest)
        .await
        .unwrap_or_default();
    rule_hints(rule, destination, &attestations)
}

/// What the webhook would do with an image given `decision`, in words.
fn webhook_answer(decision: &crate::decision::Decision) -> &'static str {
    use crate::decision::Verdict;
    match decision.verdict {
        Verdict::Allowed | Verdict::Exempt => "admit it",
        Verdict::Warned => "admit it with a warning",
        Verdict::WouldDeny => "admit it and record that it would have been denied",
        Verdict::Denied => "deny it",
        Verdict::BreakGlass => "admit it under break-glass",
    }
}

fn print_check_text(
    check: &crate::check::ImageCheck,
    decision: &crate::decision::Decision,
    passed: bool,
    hints: &[String],
    (mode, environment): (crate::policy::Mode, Option<&str>),
) {
    use crate::check::ImageOutcome;
    if let ImageOutcome::Verified {
        attestation,
        source,
        source_url,
        attestations,
        ..
    } = &check.outcome
    {
        let certificate = &attestation.certificate;
        let unknown = || "?".to_owned();
        println!(
            "{}: {} -> {}",
            decision.verdict.as_str(),
            check.image,
            check.pinned.as_deref().unwrap_or("?")
        );
        println!(
            "  built from {}@{} (commit {})",
            certificate
                .source_repository_uri
                .clone()
                .unwrap_or_else(unknown),
            certificate
                .source_repository_ref
                .clone()
                .unwrap_or_else(unknown),
            certificate
                .source_repository_digest
                .clone()
                .unwrap_or_else(unknown)
        );
        println!(
            "  workflow   {}",
            certificate.build_config_uri.clone().unwrap_or_else(unknown)
        );
        println!(
            "  run        {}",
            certificate
                .run_invocation_uri
                .clone()
                .unwrap_or_else(unknown)
        );
        match (source, source_url) {
            (Some(source), Some(url)) => println!("  found in   {source} ({url})"),
            (Some(source), None) => println!("  found in   {source}"),
            (None, _) => {}
        }
        for required in attestations {
            println!(
                "  attested   {} ({})",
                required.predicate_type, required.bundle_digest
            );
        }
        return;
    }
    if passed {
        println!(
            "{}: {}: {}",
            decision.verdict.as_str(),
            check.image,
            decision.reason
        );
        return;
    }
    // Not proven: the verdict is "denied" whatever the mode; the mode's answer comes last.
    eprintln!(
        "{}: {}: {}",
        crate::decision::Verdict::Denied.as_str(),
        check.image,
        decision.reason
    );
    for hint in hints {
        eprintln!("  hint: {hint}");
    }
    let environment = environment
        .map(|name| format!(", environment {name:?}"))
        .unwrap_or_default();
    eprintln!(
        "  the webhook would {} (mode {mode}{environment})",
        webhook_answer(decision)
    );
}

fn verify_bundle_command(args: &VerifyBundleArgs) -> Result<ExitCode, UsageError> {
    let policy = load_policy(&args.policy)?;
    let rules: Vec<_> = match (&args.rule, &args.image) {
        (Some(name), _) => vec![policy.rule(name).ok_or_else(|| {
            let known: Vec<_> = policy.rules().iter().map(|rule| rule.name()).collect();
            format!(
                "policy has no rule {name:?}; its rules are: {}",
                known.join(", ")
            )
        })?],
        (None, Some(image)) => {
            let name = crate::check::reference::ImageReference::parse(image)
                .map_err(|error| format!("--image {image:?}: {error}"))?
                .name();
            match policy.classify_image(&name) {
                ImageClass::Rule(rule) => vec![rule],
                ImageClass::Exempt => {
                    return Ok(answer_unverified(image, ImageOutcome::Exempt, args.output))
                }
                ImageClass::Unmatched(action) => {
                    return Ok(answer_unverified(
                        image,
                        ImageOutcome::Unmatched { action },
                        args.output,
                    ))
                }
            }
        }
        (None, None) => policy.rules().iter().collect(),
    };
    let roots = load_roots(&args.trusted_roots)?;
    let bundle_bytes = read_input(&args.bundle, "bundle", MAX_INPUT_BYTES)?;
    let bundles = read_bundles(&bundle_bytes)
        .map_err(|error| format!("{}: {error}", args.bundle.display()))?;
    let artifact_bytes;
    let (artifact, artifact_digest) = match (&args.artifact, &args.digest) {
        (Some(path), _) => {
            artifact_bytes = read_input(path, "artifact", MAX_ARTIFACT_BYTES)?;
            let digest = format!("sha256:{}", crate::verify::sha256_hex(&artifact_bytes));
            (ArtifactInput::Bytes(&artifact_bytes), digest)
        }
        (None, Some(digest)) => (
            ArtifactInput::parse_sha256(digest)?,
            digest.to_ascii_lowercase(),
        ),
        (None, None) => {
            return Err(UsageError(
                "give --artifact FILE or --digest sha256:HEX".into(),
            ))
        }
    };
    let verdict = check_bundles(&roots, &bundles, artifact, &rules);
    let hints = match rules.as_slice() {
        [rule] if !verdict.allowed => rule_hints(
            rule,
            &crate::policy::Destination::Unselected,
            verdict
                .bundles
                .iter()
                .filter_map(|bundle| bundle.attestation.as_ref()),
        ),
        _ => Vec::new(),
    };
    match args.output {
        Output::Json => println!(
            "{}",
            verdict_json(&verdict, &artifact_digest, args.image.as_deref(), &hints)
        ),
        Output::Text => print_verdict_text(&verdict, &artifact_digest, &hints),
    }
    Ok(if enforced(&verdict.outcome(&artifact_digest)).admits() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The webhook's answer for an image it never verifies: exempt, or covered by no rule
/// (`unmatchedImages` decides), as enforce mode decides it.
fn answer_unverified(image: &str, outcome: ImageOutcome, output: Output) -> ExitCode {
    let decision = enforced(&outcome);
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "decision": decision.verdict.as_str(),
                "image": image,
                "reasonCode": decision.reason_code,
                "rule": null,
                "reasons": [decision.reason],
                "bundles": [],
            })
        ),
        Output::Text if decision.admits() => {
            println!(
                "{}: {image}: {}",
                decision.verdict.as_str(),
                decision.reason
            )
        }
        Output::Text => eprintln!(
            "{}: {image}: {}",
            decision.verdict.as_str(),
            decision.reason
        ),
    }
    if decision.admits() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// How the webhook, in enforce mode, decides on an image whose check ended in `outcome`.
fn enforced(outcome: &ImageOutcome) -> crate::decision::Decision {
    use crate::decision::{decide, BreakGlass, Subject};
    decide(
        Subject::settled(outcome),
        crate::policy::Mode::Enforce,
        BreakGlass::Inactive,
    )
}

/// The rule lines that would trust the builds of `attestations` that broke `rule`, each once.
fn rule_hints<'a>(
    rule: &crate::policy::Rule,
    destination: &crate::policy::Destination,
    attestations: impl IntoIterator<Item = &'a crate::verify::VerifiedAttestation>,
) -> Vec<String> {
    let now = jiff::Timestamp::now();
    let mut hints: Vec<String> = Vec::new();
    for attestation in attestations {
        if let Err(violation) = crate::policy::evaluate(rule, destination, attestation, now) {
            for hint in crate::policy::fix_hints(rule, attestation, &violation) {
                if !hints.contains(&hint) {
                    hints.push(hint);
                }
            }
        }
    }
    hints
}

fn verdict_json(
    verdict: &ProvenanceVerdict,
    artifact_digest: &str,
    image: Option<&str>,
    hints: &[String],
) -> String {
    let accepted = verdict.accepted();
    let decision = enforced(&verdict.outcome(artifact_digest));
    serde_json::json!({
        "decision": decision.verdict.as_str(),
        "image": image,
        "artifactDigest": artifact_digest,
        "rule": accepted.and_then(|bundle| bundle.rule.clone()),
        "bundle": accepted.map(|bundle| bundle.index),
        "reasons": if decision.admits() { Vec::new() } else { verdict.reasons() },
        "hints": hints,
        "bundles": verdict.bundles,
    })
    .to_string()
}

fn print_verdict_text(verdict: &ProvenanceVerdict, artifact_digest: &str, hints: &[String]) {
    use crate::decision::Verdict;
    let Some(accepted) = verdict.accepted() else {
        eprintln!(
            "{}: {artifact_digest} has no bundle that verifies and satisfies the policy",
            Verdict::Denied.as_str()
        );
        for reason in verdict.reasons() {
            eprintln!("  - {reason}");
        }
        for hint in hints {
            eprintln!("  hint: {hint}");
        }
        return;
    };
    let rule = accepted.rule.as_deref().unwrap_or("?");
    let Some(attestation) = &accepted.attestation else {
        return;
    };
    let certificate = &attestation.certificate;
    let unknown = || "?".to_owned();
    println!(
        "{}: {artifact_digest} (bundle {} verified under {}, rule {rule:?})",
        Verdict::Allowed.as_str(),
        accepted.index,
        attestation.instance
    );
    let rows = [
        ("repository", certificate.source_repository_uri.clone()),
        ("ref", certificate.source_repository_ref.clone()),
        ("commit", certificate.source_repository_digest.clone()),
        ("workflow", certificate.build_config_uri.clone()),
        ("signer", certificate.build_signer_uri.clone()),
        ("trigger", certificate.build_trigger.clone()),
        ("runner", certificate.runner_environment.clone()),
        ("run", certificate.run_invocation_uri.clone()),
        ("signed at", attestation.signed_at.clone()),
    ];
    for (label, value) in rows {
        println!("  {label:<11}{}", value.unwrap_or_else(unknown));
    }
    // The rows above come from the certificate; these the signing workflow wrote itself and
    // nothing compares them with anything.
    if let Some(predicate) = &attestation.predicate {
        println!("  claimed by the signer, not checked against the certificate:");
        let claimed = [
            ("build type", &predicate.build_type),
            ("builder", &predicate.builder_id),
            ("invocation", &predicate.invocation_id),
        ];
        for (label, value) in claimed {
            println!("    {label:<11}{}", value.as_deref().unwrap_or("?"));
        }
    }
}

fn serve_command(args: ServeArgs) -> Result<ExitCode, UsageError> {
    use crate::server::{PolicyConfig, ServeConfig};

    let policy = match args.policy {
        Some(path) => PolicyConfig::File {
            path,
            namespace_labels: args.namespace_labels,
        },
        None => PolicyConfig::Cluster {
            configmap: args.policy_configmap,
            namespace: args.namespace,
        },
    };
    let mut config = ServeConfig::new(args.tls_cert, args.tls_key, policy);
    config.listen = args.listen;
    config.metrics_listen = args.metrics_listen;
    config.docker_config = args.docker_config;
    config.trusted_roots = args.trusted_roots;
    config.review_budget = args.review_budget.0;
    config.body_timeout = args.body_timeout.0;
    config.shutdown_delay = args.shutdown_delay.0;
    config.client_ca = args.client_ca;
    config.max_connections = args.max_connections;
    config.max_streams_per_connection = args.max_streams_per_connection;
    config.max_in_flight = args.max_in_flight;
    config.cache_capacity = args.cache_capacity;
    config.registry_proxy = args.registry_proxy;
    config.log_format = args.log_format;
    config.workload_credentials = args.workload_credentials;
    if let Some(Seconds(interval)) = args.audit_interval {
        if interval < defaults::MIN_AUDIT_INTERVAL {
            return Err(UsageError(format!(
                "--audit-interval {}: at least {} seconds (each audit lists every Pod)",
                interval.as_secs_f64(),
                defaults::MIN_AUDIT_INTERVAL.as_secs()
            )));
        }
        config.audit_interval = Some(interval);
    }
    config.tuf_mirrors = tuf_mirrors(args.tuf_mirrors, args.tuf_roots)?;
    config.tuf_refresh_interval = args.tuf_refresh_interval.0;
    if config.tuf_refresh_interval < defaults::MIN_TUF_REFRESH_INTERVAL {
        return Err(UsageError(format!(
            "--tuf-refresh-interval: at least {} seconds",
            defaults::MIN_TUF_REFRESH_INTERVAL.as_secs()
        )));
    }
    // Start-up failures (unreadable certificate, invalid policy, port in use) are exit 2:
    // the input or the environment is wrong; a signal ends the server with 0.
    crate::server::run(config).map_err(|error| UsageError(format!("{error:#}")))?;
    Ok(ExitCode::SUCCESS)
}

fn policy_check_command(path: &Path, strict: bool, output: Output) -> Result<ExitCode, UsageError> {
    let text = crate::policy::file::read_text(path)?;
    match (Policy::check_yaml(&text), output) {
        (Ok(checked), output) => {
            let warnings = &checked.warnings;
            match output {
                Output::Text => {
                    for warning in warnings {
                        eprintln!("{}: warning: {warning}", path.display());
                    }
                    println!(
                        "{}: valid policy with {} rules, {} warnings",
                        path.display(),
                        checked.policy.rules().len(),
                        warnings.len()
                    );
                }
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"valid": true, "warnings": warnings, "policy": checked.policy})
                ),
            }
            Ok(if strict && !warnings.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        (Err(error), Output::Text) => {
            eprintln!("{}: {error}", path.display());
            Ok(ExitCode::from(1))
        }
        (Err(error), Output::Json) => {
            println!(
                "{}",
                serde_json::json!({"valid": false, "error": error.to_string(), "issues": error.issues()})
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn audit_command(args: &AuditArgs) -> Result<ExitCode, UsageError> {
    use crate::audit::scan::{scan, ScanLimits};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("failed to start the async runtime: {error}"))?;
    let report = runtime.block_on(async {
        let client = kube_client(args.kubeconfig.as_deref()).await?;
        let policy = match &args.policy {
            Some(path) => load_policy(path)?,
            None => {
                policy_from_configmap(&client, &args.policy_namespace, &args.policy_configmap)
                    .await?
            }
        };
        let checker = args.registry.checker(&policy)?;
        let limits = ScanLimits {
            max_pods: args.max_pods,
            max_images: args.max_images,
        };
        Ok::<_, UsageError>(scan(client, &checker, &policy, limits).await?)
    })?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
        Output::Text => print!("{}", crate::audit::render_text(&report)),
    }
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn kube_client(kubeconfig: Option<&Path>) -> Result<::kube::Client, UsageError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = ::kube::config::Kubeconfig::read_from(path)
                .map_err(|error| format!("cannot read kubeconfig {}: {error}", path.display()))?;
            ::kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|error| format!("kubeconfig {}: {error}", path.display()))?
        }
        None => ::kube::Config::infer()
            .await
            .map_err(|error| format!("cannot find a kubeconfig or in-cluster account: {error}"))?,
    };
    Ok(::kube::Client::try_from(config)
        .map_err(|error| format!("cannot build a Kubernetes client: {error}"))?)
}

async fn policy_from_configmap(
    client: &::kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Policy, UsageError> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let key = crate::cluster::policy_watch::POLICY_KEY;
    let api: ::kube::Api<ConfigMap> = ::kube::Api::namespaced(client.clone(), namespace);
    let configmap = api.get(name).await.map_err(|error| {
        format!("cannot read ConfigMap {namespace}/{name}: {error}; give --policy FILE or --policy-namespace")
    })?;
    let text = configmap
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .ok_or_else(|| format!("ConfigMap {namespace}/{name} has no {key}"))?;
    Ok(Policy::from_yaml(text)
        .map_err(|error| format!("ConfigMap {namespace}/{name} {key}: {error}"))?)
}

impl RegistryArgs {
    /// A checker for `policy`'s registries with these credentials, roots and bounds. The
    /// images are the caller's, but which of them reach a registry is still the policy's:
    /// exempt and unmatched images are never fetched.
    fn checker(
        &self,
        policy: &Policy,
    ) -> Result<crate::check::ImageChecker<crate::registry::HttpRegistry>, UsageError> {
        use crate::check::{CheckSettings, ImageChecker};
        use crate::registry::{
            AllowedRegistries, DockerConfig, HostOptions, HttpRegistry, RegistryOptions,
        };
        let roots = std::sync::Arc::new(load_roots(&self.trusted_roots)?);
        let mut options = RegistryOptions::new(AllowedRegistries::Any);
        options.proxy = self.registry_proxy.clone();
        for registry in policy.registries() {
            options.hosts.push(HostOptions::from_policy(registry)?);
        }
        if let Some(path) = &self.docker_config {
            options.credentials =
                DockerConfig::from_json(&read_input(path, "docker config", MAX_INPUT_BYTES)?)
                    .map_err(|error| format!("{}: {error}", path.display()))?;
        }
        let settings = CheckSettings {
            per_image_timeout: self.timeout.0,
            ..CheckSettings::default()
        };
        Ok(ImageChecker::new(
            HttpRegistry::new(options)?,
            roots,
            settings,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_proxy_is_an_http_or_https_url_with_a_host() {
        for accepted in ["http://proxy.internal:3128", "https://proxy.internal"] {
            assert!(parse_proxy(accepted).is_ok(), "{accepted}");
        }
        for refused in ["proxy.internal:3128", "socks5://proxy:1080", "http://", ""] {
            assert!(parse_proxy(refused).is_err(), "{refused}");
        }
    }

    fn serve_args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let base = [
            "provenance-gate",
            "serve",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(extra))?;
        match cli.command {
            Command::Serve(args) => Ok(args),
            _ => unreachable!("the serve command was given"),
        }
    }

    #[test]
    fn durations_default_from_one_place_and_are_refused_out_of_range() {
        let args = serve_args(&[]).expect("defaults parse");
        assert_eq!(args.review_budget.0, defaults::REVIEW_BUDGET);
        assert_eq!(args.body_timeout.0, defaults::BODY_TIMEOUT);
        assert_eq!(args.shutdown_delay.0, defaults::SHUTDOWN_DELAY);
        assert_eq!(args.cache_capacity, defaults::CACHE_CAPACITY);
        let args = serve_args(&["--cache-capacity", "20000"]).expect("in range");
        assert_eq!(args.cache_capacity, 20_000);
        for refused in ["63", "262145", "many"] {
            assert!(
                serve_args(&["--cache-capacity", refused]).is_err(),
                "{refused}"
            );
        }
        let args = serve_args(&["--review-budget", "2.5"]).expect("in range");
        assert_eq!(args.review_budget.0, std::time::Duration::from_millis(2500));
        for (flag, value) in [("--review-budget", "31"), ("--body-timeout", "0")] {
            let error = serve_args(&[flag, value]).expect_err(value).to_string();
            assert!(
                error.contains("must be between 0 and 30 seconds"),
                "{error}"
            );
        }
        let error = serve_args(&["--shutdown-delay", "61"])
            .expect_err("beyond a minute")
            .to_string();
        assert!(
            error.contains("must be between 0 and 60 seconds"),
            "{error}"
        );
    }

    #[test]
    fn workload_credentials_are_off_by_default_and_need_the_cluster() {
        assert!(
            !serve_args(&[])
                .expect("defaults parse")
                .workload_credentials
        );
        assert!(
            serve_args(&["--workload-credentials"])
                .expect("cluster mode")
                .workload_credentials
        );
        let error = serve_args(&["--policy", "p.yaml", "--workload-credentials"])
            .expect_err("no cluster to read secrets from")
            .to_string();
        assert!(error.contains("--workload-credentials"), "{error}");
    }

    #[test]
    fn tuf_flags_name_an_instance_once_and_exclude_fixed_roots() {
        use crate::verify::tuf::TufInstance;
        let args = serve_args(&[
            "--tuf-mirror=github=https://tuf.example/github",
            "--tuf-mirror",
            "public-good=https://tuf-repo-cdn.sigstore.dev",
        ])
        .expect("two mirrors");
        let Ok(mirrors) = tuf_mirrors(args.tuf_mirrors, args.tuf_roots) else {
            panic!("two mirrors of two instances are accepted");
        };
        let named: Vec<_> = mirrors
            .iter()
            .map(|mirror| (mirror.instance, mirror.url.as_str().to_owned()))
            .collect();
        assert_eq!(
            named,
            [
                (TufInstance::Github, "https://tuf.example/github".to_owned()),
                (
                    TufInstance::PublicGood,
                    "https://tuf-repo-cdn.sigstore.dev/".to_owned()
                ),
            ]
        );
        // Without --tuf-root, the chain starts at the embedded TUF root.
        assert_eq!(mirrors[0].tuf_root, TufInstance::Github.embedded_tuf_root());
        for refused in [
            "--tuf-mirror=staging=https://tuf.example",
            "--tuf-mirror=github=file:///etc/tuf",
            "--tuf-mirror=https://tuf.example",
        ] {
            assert!(serve_args(&[refused]).is_err(), "{refused}");
        }
        let twice = serve_args(&[
            "--tuf-mirror=github=https://a.example",
            "--tuf-mirror=github=https://b.example",
        ])
        .unwrap();
        let Err(error) = tuf_mirrors(twice.tuf_mirrors, twice.tuf_roots) else {
            panic!("an instance named twice is refused");
        };
        assert!(error.0.contains("github twice"), "{}", error.0);
        let error = serve_args(&[
            "--tuf-mirror=github=https://a.example",
            "--trusted-root=corp.json",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("cannot be used with"), "{error}");
        assert!(serve_args(&["--tuf-root=github=root.json"]).is_err());
    }
}
