//! GitHub's artifact attestations API as a source of Sigstore bundles, behind a narrow
//! trait: `actions/attest-build-provenance` stores every attestation there (pushing it to
//! the registry is opt-in), so an image with nothing in its registry may still be attested.
//!
//! What the API returns is only a candidate: every bundle is verified and judged exactly
//! like one found in a registry (the signature, the subject digest, the rule), so the API
//! is trusted for availability, never for a verdict.
//!
//! The hosts contacted are those of the policy's `github` block and nothing else: the API
//! host, and for a listing's `bundle_url` the API host or one of `bundleHosts`.

mod app;
mod bulk;
mod client;
pub mod metrics;

use std::future::Future;
use std::pin::Pin;

use crate::check::reference::Digest;
use crate::policy::{GithubApi, Rule};
use crate::verify::ParsedBundle;

pub use client::{GithubClient, GithubOptions, GITHUB_API_VERSION};
pub use metrics::GithubMetrics;

/// Repositories and organisations asked per rule at most: each is one listing (and its
/// pages) per digest.
pub const MAX_LOCATIONS_PER_RULE: usize = 8;

/// Where GitHub keeps a subject's attestations: under a repository, or under an organisation
/// (every repository of it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GithubLocation {
    /// `id`, when the rule gives it, picks the repository's attestations out of an owner's
    /// bulk answer.
    Repository {
        owner: String,
        repo: String,
        id: Option<String>,
    },
    Organization(String),
}

impl GithubLocation {
    /// The API path below the host and prefix, without the subject: `repos/acme/api`.
    pub fn api_path(&self) -> String {
        match self {
            GithubLocation::Repository { owner, repo, .. } => format!("repos/{owner}/{repo}"),
            GithubLocation::Organization(org) => format!("orgs/{org}"),
        }
    }

    /// The account that owns the location: what the bulk endpoint is asked under.
    pub fn owner(&self) -> &str {
        match self {
            GithubLocation::Repository { owner, .. } => owner,
            GithubLocation::Organization(org) => org,
        }
    }
}

impl std::fmt::Display for GithubLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.api_path())
    }
}

/// Where a rule's GitHub attestations are asked for: its repositories by name, then its
/// owners as organisations; at most [`MAX_LOCATIONS_PER_RULE`].
pub fn locations_of(rule: &Rule) -> Vec<GithubLocation> {
    let repositories = rule
        .repositories()
        .iter()
        .map(|repository| GithubLocation::Repository {
            owner: repository.owner().to_owned(),
            repo: repository.repo().to_owned(),
            id: repository.id().map(str::to_owned),
        });
    let owners = rule
        .owners()
        .iter()
        .map(|owner| GithubLocation::Organization(owner.name().to_owned()));
    repositories
        .chain(owners)
        .take(MAX_LOCATIONS_PER_RULE)
        .collect()
}

/// What one listing gave for a digest.
#[derive(Debug, Clone, Default)]
pub struct GithubListing {
    /// Bundles read, in the order listed, at most the caller's budget.
    pub bundles: Vec<ParsedBundle>,
    /// Why other listed attestations gave no bundle, or were not examined.
    pub problems: Vec<String>,
    /// False when some bundle could not be fetched: worth asking for again soon.
    pub complete: bool,
    /// The full URL of the first page, for the record.
    pub url: String,
}

/// Why the API could not be asked or answered unusably.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubError {
    #[error(
        "GitHub API {host} is rate limiting requests until {until}; not asked again before then"
    )]
    RateLimited {
        host: String,
        until: jiff::Timestamp,
    },
    #[error("GitHub API {host} refused the request (HTTP {status}) for {what}: the token is missing, wrong or lacks attestations:read")]
    Unauthorized {
        host: String,
        status: u16,
        what: String,
    },
    #[error("GitHub API {host} answered HTTP {status} for {what}")]
    Status {
        host: String,
        status: u16,
        what: String,
    },
    #[error("GitHub API {host} did not answer within {seconds}s for {what}")]
    Timeout {
        host: String,
        seconds: u64,
        what: String,
    },
    #[error("failed to reach GitHub API {host}: {reason}")]
    Connection { host: String, reason: String },
    #[error("{what} from {host} is larger than the {limit} bytes allowed")]
    TooLarge {
        host: String,
        what: String,
        limit: u64,
    },
    #[error("{what} from {host} is malformed: {reason}")]
    Malformed {
        host: String,
        what: String,
        reason: String,
    },
    #[error("failed to read the GitHub token file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("failed to set up the GitHub API client for {host}: {reason}")]
    Config { host: String, reason: String },
    #[error("failed to obtain a GitHub App installation token from {host}: {reason}")]
    App { host: String, reason: String },
}

impl GithubError {
    /// Whether GitHub is out of reach for now (rate limit, outage), as opposed to refusing
    /// this request: the check then falls back to the registry rather than failing every
    /// admission until GitHub answers again.
    pub fn is_unavailable(&self) -> bool {
        match self {
            GithubError::RateLimited { .. }
            | GithubError::Timeout { .. }
            | GithubError::Connection { .. } => true,
            GithubError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// A boxed future: the image checker holds the source as a trait object, so that it stays
/// generic over the registry alone.
pub type ListingFuture<'a> =
    Pin<Box<dyn Future<Output = Result<GithubListing, GithubError>> + Send + 'a>>;

/// A prefetch: nothing to return, its answers are kept by the source.
pub type PrefetchFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The one operation the image check needs from GitHub, and two hints.
pub trait GithubAttestations: Send + Sync {
    /// The bundles GitHub lists for `digest` under `location`, on the host `api` names, at
    /// most `max_bundles` (later pages are not fetched once that many are read). Each
    /// bundle is inline in the listing, or fetched from its `bundle_url` when that names the
    /// API host or one of `api.bundle_hosts` (otherwise not followed, and said so in
    /// `problems`). "None stored" is an empty listing, not an error. Every answer is
    /// bounded in size and time; a rate-limited host is not asked again until its reset.
    fn attestations<'a>(
        &'a self,
        api: &'a GithubApi,
        location: &'a GithubLocation,
        digest: &'a Digest,
        max_bundles: usize,
    ) -> ListingFuture<'a>;

    /// Told, before the checks of one review, the digests of `owner` whose listings are not
    /// cached: a source may ask for them together (GitHub's bulk endpoint) so that the
    /// listings that follow are answered from that. Never fails: whatever it leaves out is
    /// listed digest by digest. By default, nothing.
    fn prefetch<'a>(
        &'a self,
        _api: &'a GithubApi,
        _owner: &'a str,
        _digests: &'a [Digest],
    ) -> PrefetchFuture<'a> {
        Box::pin(std::future::ready(()))
    }

    /// Told each time a check asked the registry instead because this source was out of
    /// reach (for the metrics).
    fn degraded_to_registry(&self) {}
}
