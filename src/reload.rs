//! One way to follow a file: poll it, fingerprint what was read, and hand a changed
//! content to its owner, who validates it and swaps it in or refuses it. A refused content
//! leaves the last good value in force and is reported once, not at every poll.
//!
//! Polling by content rather than file events: editors save by rename, ConfigMap and
//! Secret mounts by symlink swap, and both confuse watchers of a single path.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// What one look at a followed file found.
#[derive(Debug)]
pub enum Reload<E> {
    /// Same content as the last look.
    Unchanged,
    /// The new content is in force; a description for the log.
    Applied(String),
    /// The content changed but was refused; the last good value stays in force.
    Rejected(E),
}

/// A file (or set of files) followed by [`watch`]: its owner says how to read it and how to
/// put a new content in force; when to do so is decided here.
pub trait Reloadable: Send + Sync + 'static {
    type Error: fmt::Display + Send + 'static;
    /// What is reloaded, for the log ("serving certificate").
    const WHAT: &'static str;
    /// Whether a read failure is remembered like a content, so that the same failure is
    /// reported (and counted) once; otherwise it is reported at each look, and [`watch`] logs
    /// it once per stretch of failures.
    const REMEMBER_READ_FAILURES: bool = false;
    /// The file named in the log.
    fn path(&self) -> &Path;
    /// The fingerprint of the content last looked at.
    fn last_seen(&self) -> &LastSeen;
    /// Reads the content, bounded. Blocking file I/O.
    fn read(&self) -> Result<Vec<Vec<u8>>, Self::Error>;
    /// Validates `content` and puts it in force; a description for the log.
    fn apply(&self, content: &[Vec<u8>]) -> Result<String, Self::Error>;
    /// Told each change found, applied or refused (for metrics).
    fn observe(&self, _outcome: &Reload<Self::Error>) {}
    /// Whether a refusal is about reading rather than content.
    fn is_read_failure(_error: &Self::Error) -> bool {
        false
    }

    /// Re-reads and, when the content changed and is valid, puts it in force; a refused
    /// content leaves the last good value. Blocking file I/O: call from a blocking context.
    fn reload_if_changed(&self) -> Reload<Self::Error> {
        let outcome = match self.read() {
            Err(error)
                if Self::REMEMBER_READ_FAILURES
                    && !self
                        .last_seen()
                        .changed(fingerprint(&[error.to_string().as_bytes()])) =>
            {
                return Reload::Unchanged;
            }
            Err(error) => Reload::Rejected(error),
            Ok(content) => {
                let parts: Vec<&[u8]> = content.iter().map(Vec::as_slice).collect();
                if !self.last_seen().changed(fingerprint(&parts)) {
                    return Reload::Unchanged;
                }
                match self.apply(&content) {
                    Ok(description) => Reload::Applied(description),
                    Err(error) => Reload::Rejected(error),
                }
            }
        };
        self.observe(&outcome);
        outcome
    }
}

/// Hash of the parts, each length-prefixed so that bytes cannot move from one part to the
/// next unnoticed.
pub fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// The fingerprint last looked at, valid or not: each distinct content is handled once.
#[derive(Debug)]
pub struct LastSeen(Mutex<[u8; 32]>);

impl LastSeen {
    pub fn new(fingerprint: [u8; 32]) -> Self {
        LastSeen(Mutex::new(fingerprint))
    }

    /// Whether `seen` differs from the fingerprint last looked at, which it then becomes.
    pub fn changed(&self, seen: [u8; 32]) -> bool {
        let mut last_seen = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = *last_seen != seen;
        *last_seen = seen;
        changed
    }
}

/// Looks at `reloadable` every `interval`, forever; logs each change and each refusal.
pub async fn watch<T: Reloadable>(reloadable: Arc<T>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut failing = false;
    loop {
        ticker.tick().await;
        let this = Arc::clone(&reloadable);
        let outcome = match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(%error, what = T::WHAT, "reload task failed");
                continue;
            }
        };
        match outcome {
            Reload::Unchanged => failing = false,
            Reload::Applied(description) => {
                failing = false;
                tracing::info!(
                    path = %reloadable.path().display(),
                    "{} reloaded: {description}",
                    T::WHAT
                );
            }
            Reload::Rejected(error) => {
                if !failing {
                    tracing::error!(
                        %error,
                        "new {} refused; the last good one stays in force",
                        T::WHAT
                    );
                }
                failing = T::is_read_failure(&error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_moved_between_parts_change_the_fingerprint() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"ab", b"c"]));
    }

    #[test]
    fn last_seen_reports_each_distinct_content_once() {
        let last = LastSeen::new(fingerprint(&[b"one"]));
        assert!(!last.changed(fingerprint(&[b"one"])));
        assert!(last.changed(fingerprint(&[b"two"])));
        assert!(!last.changed(fingerprint(&[b"two"])));
        assert!(last.changed(fingerprint(&[b"one"])));
    }
}
