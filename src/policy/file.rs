//! The policy from a file (`serve --policy FILE`): loaded at start-up, where an invalid file
//! stops the server, then re-read on a timer. A valid edit is put in force for the next
//! review; an invalid one is logged and counted, and the last good policy stays. The polling
//! itself is [`crate::reload`]'s.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::cluster::PolicyCell;
use crate::evidence::metrics::ReloadLabels;
use crate::policy::{Policy, PolicyError, MAX_POLICY_BYTES};
use crate::reload::{self, fingerprint, LastSeen, Reload, Reloadable};

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read policy {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("policy {path} is not UTF-8 text")]
    NotUtf8 { path: PathBuf },
    #[error("policy {path}: {error}")]
    Invalid { path: PathBuf, error: PolicyError },
}

/// What one look at the file found.
pub type PolicyReload = Reload<PolicyFileError>;

/// Reads and validates a policy file: the one reader of `serve --policy`, `verify` and
/// `policy check`.
pub fn load(path: &Path) -> Result<Policy, PolicyFileError> {
    parse(path, &read(path)?)
}

/// The text of a policy file, bounded and UTF-8, not yet parsed.
pub fn read_text(path: &Path) -> Result<String, PolicyFileError> {
    Ok(text_of(path, &read(path)?)?.to_owned())
}

fn read(path: &Path) -> Result<Vec<u8>, PolicyFileError> {
    let read_error = |error| PolicyFileError::Read {
        path: path.to_owned(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    // One byte over the limit is enough for the parser to report the size.
    file.take(MAX_POLICY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Ok(bytes)
}

fn text_of<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, PolicyFileError> {
    std::str::from_utf8(bytes).map_err(|_| PolicyFileError::NotUtf8 {
        path: path.to_owned(),
    })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Policy, PolicyFileError> {
    Policy::from_yaml(text_of(path, bytes)?).map_err(|error| PolicyFileError::Invalid {
        path: path.to_owned(),
        error,
    })
}

/// A policy file and the cell holding the policy in force.
pub struct PolicyFile {
    path: PathBuf,
    cell: Arc<PolicyCell>,
    reloads: Family<ReloadLabels, Counter>,
    /// Each distinct edit, or read failure, counts once.
    last_seen: LastSeen,
}

impl std::fmt::Debug for PolicyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PolicyFile {
    /// Loads the file; an invalid one is an error (the server must not start without a
    /// policy). The load counts as a successful reload in `reloads`.
    pub fn open(
        path: impl Into<PathBuf>,
        reloads: Family<ReloadLabels, Counter>,
    ) -> Result<Self, PolicyFileError> {
        let path = path.into();
        let bytes = read(&path)?;
        let policy = parse(&path, &bytes)?;
        count(&reloads, "success");
        Ok(PolicyFile {
            cell: Arc::new(PolicyCell::new(Some(policy))),
            last_seen: LastSeen::new(fingerprint(&[&bytes])),
            path,
            reloads,
        })
    }

    /// The policy in force, for the webhook.
    pub fn source(&self) -> Arc<PolicyCell> {
        Arc::clone(&self.cell)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks at the file every `interval`, forever; logs each change and each refusal.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        reload::watch(self, interval).await
    }
}

impl Reloadable for PolicyFile {
    type Error = PolicyFileError;
    const WHAT: &'static str = "policy";
    // A deleted file is one failure, not one per poll.
    const REMEMBER_READ_FAILURES: bool = true;
    fn path(&self) -> &Path {
        &self.path
    }
    fn last_seen(&self) -> &LastSeen {
        &self.last_seen
    }
    fn read(&self) -> Result<Vec<Vec<u8>>, PolicyFileError> {
        Ok(vec![read(&self.path)?])
    }
    fn apply(&self, content: &[Vec<u8>]) -> Result<String, PolicyFileError> {
        let policy = parse(&self.path, &content.concat())?;
        let description = format!("{} rules", policy.rules().len());
        self.cell.replace(policy);
        Ok(description)
    }
    fn observe(&self, outcome: &PolicyReload) {
        match outcome {
            Reload::Unchanged => {}
            Reload::Applied(_) => count(&self.reloads, "success"),
            Reload::Rejected(_) => count(&self.reloads, "failure"),
        }
    }
}

fn count(reloads: &Family<ReloadLabels, Counter>, result: &str) {
    reloads
        .get_or_create(&ReloadLabels {
            result: result.to_owned(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PolicySource as _;
    use crate::policy::Mode;

    const ENFORCE: &str = "version: 1\ndefaultMode: enforce\nrules: []\n";
    const WARN: &str = "version: 1\ndefaultMode: warn\nrules: []\n";

    fn failures(reloads: &Family<ReloadLabels, Counter>, result: &str) -> u64 {
        reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .get()
    }

    fn mode(file: &PolicyFile) -> Mode {
        file.source()
            .current()
            .expect("a policy is loaded")
            .default_mode()
    }

    #[test]
    fn valid_edits_apply_and_invalid_ones_keep_the_last_good_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, ENFORCE).expect("write");
        let reloads = Family::default();
        let file = PolicyFile::open(&path, reloads.clone()).expect("valid policy");
        assert_eq!(mode(&file), Mode::Enforce);
        assert_eq!(failures(&reloads, "success"), 1);
        assert!(matches!(file.reload_if_changed(), PolicyReload::Unchanged));

        std::fs::write(&path, WARN).expect("write");
        assert!(matches!(file.reload_if_changed(), PolicyReload::Applied(_)));
        assert_eq!(mode(&file), Mode::Warn);
        assert_eq!(failures(&reloads, "success"), 2);

        std::fs::write(&path, "version: 1\ndefaultMode: sometimes\n").expect("write");
        match file.reload_if_changed() {
            PolicyReload::Rejected(error) => {
                assert!(error.to_string().contains("line"), "{error}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(mode(&file), Mode::Warn);
        assert_eq!(failures(&reloads, "failure"), 1);
        // The same bad content is not counted again.
        assert!(matches!(file.reload_if_changed(), PolicyReload::Unchanged));
        assert_eq!(failures(&reloads, "failure"), 1);

        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(
            file.reload_if_changed(),
            PolicyReload::Rejected(PolicyFileError::Read { .. })
        ));
        assert!(matches!(file.reload_if_changed(), PolicyReload::Unchanged));
        assert_eq!(failures(&reloads, "failure"), 2);
        assert_eq!(mode(&file), Mode::Warn);
    }

    #[test]
    fn an_invalid_file_at_start_up_is_a_located_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "version: 1\nrules:\n  - name: x\n    images: 3\n").expect("write");
        let error = PolicyFile::open(&path, Family::default()).expect_err("invalid policy");
        let message = error.to_string();
        assert!(message.contains("policy.yaml"), "{message}");
        assert!(message.contains("line"), "{message}");
    }
}
