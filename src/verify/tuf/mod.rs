//! Trusted-root rotation over TUF, as `gh` and policy-controller do it: each instance's
//! `trusted_root.json` is a target of its TUF repository (Sigstore's for public-good,
//! GitHub's for its own instance). The TUF root compiled into the binary is the trust
//! anchor; every refresh is verified by `sigstore-tuf` (root chain, thresholds, rollback,
//! expiry, target hashes). Until a refresh succeeds, and whenever one fails, the roots in
//! force stay: the embedded ones or the last verified refresh. The wall clock is used only
//! for TUF metadata expiry, which is what TUF specifies; a bundle's certificate validity
//! still comes from its own proof of time.

pub mod metrics;
mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use reqwest::Url;
use sigstore_tuf::{Updater, UpdaterConfig};

use super::claims::Instance;
use super::trusted_roots::{TrustedRootError, TrustedRoots};
pub use metrics::TufMetrics;
use transport::MirrorTransport;

/// Sigstore's TUF repository (public-good).
pub const PUBLIC_GOOD_MIRROR: &str = "https://tuf-repo-cdn.sigstore.dev";
/// GitHub's TUF repository (its own Sigstore instance).
pub const GITHUB_MIRROR: &str = "https://tuf-repo.github.com";
/// The target both repositories publish the Sigstore trusted root as.
pub const TRUSTED_ROOT_TARGET: &str = "trusted_root.json";

const PUBLIC_GOOD_TUF_ROOT: &[u8] =
    include_bytes!("../../../trusted-roots/tuf/public-good.root.json");
const GITHUB_TUF_ROOT: &[u8] = include_bytes!("../../../trusted-roots/tuf/github.root.json");

/// Real metadata and trusted roots are a few kilobytes to tens of kilobytes; these bounds
/// leave room for growth without letting a mirror make the process buffer megabytes.
const MAX_ROOT_BYTES: u64 = 512 * 1024;
const MAX_TIMESTAMP_BYTES: u64 = 16 * 1024;
const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024;
const MAX_TARGETS_BYTES: u64 = 2 * 1024 * 1024;
const MAX_TARGET_BYTES: u64 = 4 * 1024 * 1024;
/// Root versions fetched in one refresh at most (Sigstore's root is at version 16 after
/// five years of yearly ceremonies).
const MAX_ROOT_ROTATIONS: u32 = 32;
/// Delegated targets roles walked at most; neither repository delegates `trusted_root.json`.
const MAX_DELEGATIONS: u32 = 8;
/// Requests of one refresh at most: the root chain, timestamp, snapshot, targets, the
/// delegations walked and the target.
pub(crate) const MAX_REQUESTS_PER_REFRESH: u32 = MAX_ROOT_ROTATIONS + MAX_DELEGATIONS + 8;

/// The instances that publish their trusted root over TUF; the only values of the
/// `instance` label of the `provenance_gate_trusted_root_*` metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TufInstance {
    PublicGood,
    Github,
}

impl TufInstance {
    pub const ALL: [TufInstance; 2] = [TufInstance::PublicGood, TufInstance::Github];

    pub fn as_str(self) -> &'static str {
        match self {
            TufInstance::PublicGood => "public-good",
            TufInstance::Github => "github",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|instance| instance.as_str() == text)
    }

    pub fn instance(self) -> Instance {
        match self {
            TufInstance::PublicGood => Instance::PublicGood,
            TufInstance::Github => Instance::Github,
        }
    }

    /// The instance's published TUF repository.
    pub fn default_mirror(self) -> &'static str {
        match self {
            TufInstance::PublicGood => PUBLIC_GOOD_MIRROR,
            TufInstance::Github => GITHUB_MIRROR,
        }
    }

    /// The TUF root.json compiled into the binary: the start of the root chain.
    pub fn embedded_tuf_root(self) -> &'static [u8] {
        match self {
            TufInstance::PublicGood => PUBLIC_GOOD_TUF_ROOT,
            TufInstance::Github => GITHUB_TUF_ROOT,
        }
    }
}

impl std::fmt::Display for TufInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance's TUF repository: where it is and which TUF root anchors it.
#[derive(Debug, Clone)]
pub struct TufMirror {
    pub instance: TufInstance,
    /// Metadata at `<url>/N.root.json`, `<url>/timestamp.json`, ...; targets under
    /// `<url>/targets/`. Nothing else is contacted.
    pub url: Url,
    /// The trusted TUF root.json to start the chain from (the embedded one unless an
    /// operator mirrors a re-signed repository).
    pub tuf_root: Vec<u8>,
}

impl TufMirror {
    /// `instance`'s own repository, anchored by the embedded TUF root.
    pub fn published(instance: TufInstance) -> Self {
        TufMirror {
            instance,
            url: Url::parse(instance.default_mirror()).expect("compiled-in mirror URL is valid"),
            tuf_root: instance.embedded_tuf_root().to_vec(),
        }
    }
}

/// Time bounds of a refresh; sizes and counts are fixed above.
#[derive(Debug, Clone, Copy)]
pub struct TufTimeouts {
    /// Connecting to the mirror.
    pub connect: Duration,
    /// One request, body included.
    pub request: Duration,
    /// One whole refresh: every request of it.
    pub refresh: Duration,
}

impl Default for TufTimeouts {
    fn default() -> Self {
        TufTimeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(15),
            refresh: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TufError {
    #[error("failed to set up the TUF client of {instance}: {reason}")]
    Config {
        instance: TufInstance,
        reason: String,
    },
    #[error("failed to update the TUF metadata of {instance} from {url}: {source}")]
    Metadata {
        instance: TufInstance,
        url: String,
        #[source]
        source: sigstore_tuf::Error,
    },
    #[error("failed to refresh the TUF metadata of {instance} from {url} within {seconds} s")]
    Timeout {
        instance: TufInstance,
        url: String,
        seconds: u64,
    },
    #[error("failed to use {TRUSTED_ROOT_TARGET} of {instance} from TUF: {reason}")]
    Unusable {
        instance: TufInstance,
        reason: String,
    },
}

/// What one successful refresh verified.
#[derive(Debug, Clone)]
pub struct FetchedRoot {
    pub instance: TufInstance,
    /// The Sigstore trusted root, its bytes checked against the TUF targets metadata.
    pub trusted_root_json: String,
    /// The TUF root.json version the refresh ended on, and when it expires.
    pub tuf_root_version: u64,
    pub tuf_root_expires: jiff::Timestamp,
}

/// The TUF client of one instance. It keeps the metadata it verified, so a later refresh
/// refuses to go back to older versions (rollback) for as long as the process runs.
pub struct RootUpdater {
    mirror_url: String,
    instance: TufInstance,
    updater: Updater,
    requests: Arc<std::sync::atomic::AtomicU32>,
    refresh_timeout: Duration,
}

impl RootUpdater {
    pub fn new(mirror: &TufMirror, timeouts: TufTimeouts) -> Result<Self, TufError> {
        let config_error = |reason: String| TufError::Config {
            instance: mirror.instance,
            reason,
        };
        let (transport, requests) =
            MirrorTransport::new(&mirror.url, timeouts).map_err(config_error)?;
        let mut config = UpdaterConfig::default();
        config.root_max_length = MAX_ROOT_BYTES;
        config.timestamp_max_length = MAX_TIMESTAMP_BYTES;
        config.snapshot_max_length = MAX_SNAPSHOT_BYTES;
        config.targets_max_length = MAX_TARGETS_BYTES;
        config.target_max_length = MAX_TARGET_BYTES;
        config.max_root_rotations = MAX_ROOT_ROTATIONS;
        config.max_delegations = MAX_DELEGATIONS;
        let updater = Updater::new(transport, &mirror.tuf_root)
            .map_err(|error| config_error(format!("the TUF root is unusable: {error}")))?
            .with_config(config);
        Ok(RootUpdater {
            mirror_url: mirror.url.to_string(),
            instance: mirror.instance,
            updater,
            requests,
            refresh_timeout: timeouts.refresh,
        })
    }

    pub fn instance(&self) -> TufInstance {
        self.instance
    }

    /// Brings the TUF metadata up to date as of `now` and downloads the trusted root it
    /// names, all within the refresh timeout and request budget.
    pub async fn fetch(&mut self, now: jiff::Timestamp) -> Result<FetchedRoot, TufError> {
        self.requests.store(0, std::sync::atomic::Ordering::Relaxed);
        let instance = self.instance;
        let url = self.mirror_url.clone();
        let metadata_error = |source| TufError::Metadata {
            instance,
            url: url.clone(),
            source,
        };
        let updater = &mut self.updater;
        let work = async {
            updater.refresh(now).await.map_err(metadata_error)?;
            let bytes = updater
                .get_target(TRUSTED_ROOT_TARGET, now)
                .await
                .map_err(metadata_error)?;
            Ok::<_, TufError>(bytes)
        };
        let bytes = tokio::time::timeout(self.refresh_timeout, work)
            .await
            .map_err(|_| TufError::Timeout {
                instance,
                url: url.clone(),
                seconds: self.refresh_timeout.as_secs(),
            })??;
        let trusted_root_json = String::from_utf8(bytes).map_err(|_| TufError::Unusable {
            instance,
            reason: "not UTF-8".into(),
        })?;
        let root = self.updater.trusted().root();
        Ok(FetchedRoot {
            instance,
            trusted_root_json,
            tuf_root_version: root.version,
            tuf_root_expires: root.expires,
        })
    }
}

/// The trusted roots in force, swapped whole when a refresh brings a new one; a check
/// takes the set current when it starts and keeps it to the end.
pub struct LiveTrustedRoots {
    in_force: ArcSwap<TrustedRoots>,
    /// Bumped at every replacement, so that caches of verification results can tell.
    generation: std::sync::atomic::AtomicU64,
    /// Each instance's trusted-root JSON, when the roots are the replaceable built-in pair;
    /// empty for roots from `--trusted-root` files, which are never replaced.
    sources: Mutex<Vec<(Instance, Arc<str>)>>,
}

impl std::fmt::Debug for LiveTrustedRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTrustedRoots")
            .field("in_force", &self.in_force.load())
            .finish_non_exhaustive()
    }
}

impl LiveTrustedRoots {
    /// Roots that never change (files, tests).
    pub fn fixed(roots: Arc<TrustedRoots>) -> Self {
        LiveTrustedRoots {
            in_force: ArcSwap::new(roots),
            generation: Default::default(),
            sources: Mutex::new(Vec::new()),
        }
    }

    /// The embedded public-good and GitHub roots, each replaceable by a TUF refresh.
    pub fn embedded() -> Result<Self, TrustedRootError> {
        let sources: Vec<(Instance, Arc<str>)> = TrustedRoots::embedded_json()
            .iter()
            .map(|(instance, json)| (instance.clone(), Arc::from(*json)))
            .collect();
        let roots = roots_from(&sources)?;
        Ok(LiveTrustedRoots {
            in_force: ArcSwap::from_pointee(roots),
            generation: Default::default(),
            sources: Mutex::new(sources),
        })
    }

    pub fn current(&self) -> Arc<TrustedRoots> {
        self.in_force.load_full()
    }

    /// How many times the roots in force have been replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Puts `json` in force as `instance`'s root. Refused, with the roots in force kept,
    /// when it is not a usable trusted root, when it would change the proof of time the
    /// instance demands (a refreshed public-good root cannot drop its log), or when the
    /// roots are fixed.
    pub fn replace(&self, instance: TufInstance, json: &str) -> Result<bool, TufError> {
        let unusable = |reason: String| TufError::Unusable { instance, reason };
        let wanted = instance.instance();
        let mut sources = self
            .sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(position) = sources.iter().position(|(name, _)| *name == wanted) else {
            return Err(unusable(
                "the trusted roots in force are fixed (--trusted-root)".into(),
            ));
        };
        if &*sources[position].1 == json {
            return Ok(false);
        }
        let mut candidate = sources.clone();
        candidate[position].1 = Arc::from(json);
        let roots = roots_from(&candidate).map_err(|error| unusable(error.to_string()))?;
        let before = self.in_force.load().anchors()[position].time_proof();
        let after = roots.anchors()[position].time_proof();
        if before != after {
            return Err(unusable(format!(
                "it would change the proof of time required from {before:?} to {after:?}"
            )));
        }
        *sources = candidate;
        self.in_force.store(Arc::new(roots));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(true)
    }
}

fn roots_from(sources: &[(Instance, Arc<str>)]) -> Result<TrustedRoots, TrustedRootError> {
    let borrowed: Vec<(Instance, &str)> = sources
        .iter()
        .map(|(instance, json)| (instance.clone(), &**json))
        .collect();
    TrustedRoots::from_json(&borrowed)
}

/// One refresh of `updater`'s instance: on success the fetched root is in force and the
/// metrics say so; on failure the roots in force stay and the metrics count the failure.
pub async fn refresh_once(
    updater: &mut RootUpdater,
    live: &LiveTrustedRoots,
    metrics: &TufMetrics,
) -> Result<FetchedRoot, TufError> {
    let instance = updater.instance();
    let outcome = match updater.fetch(jiff::Timestamp::now()).await {
        Ok(fetched) => live
            .replace(instance, &fetched.trusted_root_json)
            .map(|changed| (fetched, changed)),
        Err(error) => Err(error),
    };
    match outcome {
        Ok((fetched, changed)) => {
            metrics.succeeded(&fetched, jiff::Timestamp::now());
            if changed {
                tracing::info!(
                    %instance,
                    tuf_root_version = fetched.tuf_root_version,
                    "trusted root refreshed from TUF and in force"
                );
            }
            Ok(fetched)
        }
        Err(error) => {
            metrics.failed(instance);
            tracing::warn!(
                %instance,
                error = %error,
                in_force = metrics.source_of(instance),
                "trusted-root refresh failed; the trusted root in force stays"
            );
            Err(error)
        }
    }
}

/// Refreshes `updater`'s instance now and then every `interval`, for as long as the task runs.
pub async fn keep_refreshed(
    mut updater: RootUpdater,
    live: Arc<LiveTrustedRoots>,
    metrics: TufMetrics,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let _ = refresh_once(&mut updater, &live, &metrics).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_tuf_roots_anchor_a_client() {
        for instance in TufInstance::ALL {
            let mirror = TufMirror::published(instance);
            RootUpdater::new(&mirror, TufTimeouts::default())
                .unwrap_or_else(|error| panic!("{instance}: {error}"));
        }
    }

    #[test]
    fn a_replaced_root_is_in_force_and_the_other_instance_is_untouched() {
        let live = LiveTrustedRoots::embedded().expect("embedded roots");
        let before = live.current();
        let json = TrustedRoots::embedded_json()[1].1;
        // The same JSON is no change.
        assert!(!live.replace(TufInstance::Github, json).expect("same root"));
        assert!(Arc::ptr_eq(&before, &live.current()));
        let reordered = reformat(json);
        assert!(live
            .replace(TufInstance::Github, &reordered)
            .expect("new root"));
        assert!(!Arc::ptr_eq(&before, &live.current()));
        assert_eq!(live.current().anchors().len(), 2);
    }

    #[test]
    fn a_root_that_changes_the_proof_of_time_is_refused_and_the_old_one_stays() {
        let live = LiveTrustedRoots::embedded().expect("embedded roots");
        let before = live.current();
        // GitHub's root has no log: as public-good's it would drop the log requirement.
        let github = TrustedRoots::embedded_json()[1].1;
        let error = live
            .replace(TufInstance::PublicGood, github)
            .unwrap_err()
            .to_string();
        assert!(error.contains("proof of time"), "{error}");
        assert!(Arc::ptr_eq(&before, &live.current()));
    }

    #[test]
    fn an_invalid_root_is_refused_and_fixed_roots_are_never_replaced() {
        let live = LiveTrustedRoots::embedded().expect("embedded roots");
        let error = live
            .replace(TufInstance::Github, "{}")
            .unwrap_err()
            .to_string();
        assert!(error.contains("github"), "{error}");
        let fixed = LiveTrustedRoots::fixed(Arc::new(TrustedRoots::embedded().unwrap()));
        let json = TrustedRoots::embedded_json()[1].1;
        let error = fixed
            .replace(TufInstance::Github, &reformat(json))
            .unwrap_err()
            .to_string();
        assert!(error.contains("fixed"), "{error}");
    }

    /// The same root in other bytes.
    fn reformat(json: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(json).expect("json");
        serde_json::to_string(&value).expect("json")
    }
}
