//! Defaults shared by the command line and the configuration structs, each written once,
//! and the one parser of durations given in seconds on the command line.

use std::fmt;
use std::time::Duration;

/// Time one review may take; the webhook's `timeoutSeconds` (10 in the chart) must exceed it.
pub const REVIEW_BUDGET: Duration = Duration::from_secs(8);
/// Time one image's check may take: the whole review budget, since images are checked
/// concurrently.
pub const PER_IMAGE_TIMEOUT: Duration = REVIEW_BUDGET;
/// Time to receive a request body once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(3);
/// `serve --shutdown-delay`: after SIGTERM the webhook keeps serving this long, unready, and
/// asks HTTP/1.1 clients to close each connection after its answer. Endpoint removal reaches
/// the API server asynchronously, and the API server keeps sending reviews over connections
/// it already holds to a terminating replica; closing such a connection under it loses the
/// review it was sending (a POST is not retried), so the connections are handed back first.
pub const SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
/// …and at most a minute: the pod's termination grace period must cover it and the drain.
pub const MAX_SHUTDOWN_DELAY_SECONDS: u64 = 60;
/// After the shutdown delay: how long in-flight reviews may take to finish. The chart's
/// guard on `terminationGracePeriodSeconds` (templates/deployment.yaml) counts on it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// `serve --cache-capacity`: entries per cache (tags, verified facts per digest, GitHub
/// listings, index children). A verified digest costs about 4 KiB resident (BENCHMARKS.md,
/// the memory phase), so the default holds 4,096 digests in about 16 MiB; a cluster running
/// more distinct digests than this re-verifies the least recently used ones.
pub const CACHE_CAPACITY: usize = 4096;
/// …at least this many (fewer would thrash on one large Deployment's rollout)…
pub const MIN_CACHE_CAPACITY: u32 = 64;
/// …and at most this many (about 1 GiB at the size above).
pub const MAX_CACHE_CAPACITY: u32 = 262_144;
/// The webhook's `timeoutSeconds` is at most 30 s; a review budget or body timeout beyond
/// it could never be used.
pub const MAX_REVIEW_SECONDS: u64 = 30;
/// The CLI's per-image timeout at most.
pub const MAX_CLI_TIMEOUT_SECONDS: u64 = 600;
/// `serve --tuf-refresh-interval`: Sigstore's and GitHub's TUF timestamps are valid for days,
/// so a few refreshes a day see a new trusted root within hours of its publication.
pub const TUF_REFRESH_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// …and not more often than this, nor less often than daily (the timestamp role's expiry).
pub const MIN_TUF_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
pub const MAX_TUF_REFRESH_INTERVAL_SECONDS: u64 = 86_400;
/// `serve --audit-interval`: each run lists every Pod, so not more often than this…
pub const MIN_AUDIT_INTERVAL: Duration = Duration::from_secs(10);
/// …and at least once a day.
pub const MAX_AUDIT_INTERVAL_SECONDS: u64 = 86_400;

/// A duration given on the command line as seconds (fractions allowed), shown the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// Why a number of seconds was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecondsError {
    #[error("{0:?} is not a number of seconds")]
    NotANumber(String),
    #[error("must be between 0 and {max} seconds")]
    OutOfRange { max: u64 },
}

/// Parses seconds in (0, `MAX`]; the `value_parser` of every duration option.
pub fn parse_seconds<const MAX: u64>(text: &str) -> Result<Seconds, SecondsError> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| SecondsError::NotANumber(text.to_owned()))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX as f64) {
        return Err(SecondsError::OutOfRange { max: MAX });
    }
    Ok(Seconds(Duration::from_secs_f64(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_parsed_within_their_range_only() {
        assert_eq!(
            parse_seconds::<30>("2.5"),
            Ok(Seconds(Duration::from_millis(2500)))
        );
        assert_eq!(
            parse_seconds::<30>("30"),
            Ok(Seconds(Duration::from_secs(30)))
        );
        for refused in ["0", "-1", "30.5", "NaN", "inf"] {
            assert_eq!(
                parse_seconds::<30>(refused),
                Err(SecondsError::OutOfRange { max: 30 }),
                "{refused}"
            );
        }
        assert!(matches!(
            parse_seconds::<30>("soon"),
            Err(SecondsError::NotANumber(_))
        ));
    }

    #[test]
    fn a_default_shown_in_help_parses_back_to_itself() {
        for default in [REVIEW_BUDGET, BODY_TIMEOUT] {
            let shown = Seconds(default).to_string();
            assert_eq!(parse_seconds::<30>(&shown), Ok(Seconds(default)));
        }
    }
}
