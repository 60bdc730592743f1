//! The trusted roots a bundle may verify under, each with the fixed proof of time it demands.

use std::path::Path;

use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::{VerificationPolicy, Verifier};

use super::claims::Instance;

const PUBLIC_GOOD_JSON: &str = include_str!("../../trusted-roots/public-good.json");
const GITHUB_JSON: &str = include_str!("../../trusted-roots/github.json");

/// A trusted-root file larger than this is refused: real ones are tens of kilobytes.
const MAX_TRUSTED_ROOT_BYTES: u64 = 4 * 1024 * 1024;

/// What a bundle must carry to prove *when* it was signed, fixed per root and never
/// relaxed by a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeProof {
    /// Public-good style: a transparency-log entry with inclusion proof, signed checkpoint
    /// and (for Rekor v1 entries) a signed entry timestamp, plus an SCT in the certificate.
    TransparencyLog,
    /// GitHub style: at least one RFC 3161 timestamp from a trusted TSA; the root has no log.
    Timestamp,
}

impl TimeProof {
    /// Roots that list transparency logs get the log policy; roots without get the
    /// timestamp-only policy. A root cannot opt out of its own log.
    fn for_root(root: &TrustedRoot) -> Self {
        if root.tlogs.is_empty() {
            TimeProof::Timestamp
        } else {
            TimeProof::TransparencyLog
        }
    }

    pub(super) fn library_policy(self) -> VerificationPolicy {
        match self {
            TimeProof::TransparencyLog => VerificationPolicy::any_identity(),
            // GitHub's instance publishes no log and no CT log: the RFC 3161 timestamp,
            // which the library verifies whenever present, is the proof of time.
            TimeProof::Timestamp => VerificationPolicy::any_identity()
                .skip_tlog_unsafe()
                .skip_sct(),
        }
    }
}

/// One trusted root ready to verify bundles.
pub struct TrustAnchor {
    pub(super) instance: Instance,
    pub(super) time_proof: TimeProof,
    pub(super) verifier: Verifier,
}

impl TrustAnchor {
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    pub fn time_proof(&self) -> TimeProof {
        self.time_proof
    }
}

impl std::fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustAnchor")
            .field("instance", &self.instance)
            .field("time_proof", &self.time_proof)
            .finish_non_exhaustive()
    }
}

/// The set of roots a bundle is tried against, in order.
#[derive(Debug)]
pub struct TrustedRoots {
    anchors: Vec<TrustAnchor>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustedRootError {
    #[error("failed to read trusted root {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("trusted root {path} is larger than {MAX_TRUSTED_ROOT_BYTES} bytes")]
    TooLarge { path: String },
    #[error("trusted root {name} is not a valid Sigstore trusted_root.json: {reason}")]
    Invalid { name: String, reason: String },
    #[error("no trusted root given")]
    Empty,
}

impl TrustedRoots {
    /// Sigstore public-good and GitHub's instance, as compiled into the binary.
    pub fn embedded() -> Result<Self, TrustedRootError> {
        Self::from_json(&Self::embedded_json())
    }

    /// The embedded roots' JSON, in the order bundles are tried against them.
    pub fn embedded_json() -> [(Instance, &'static str); 2] {
        [
            (Instance::PublicGood, PUBLIC_GOOD_JSON),
            (Instance::Github, GITHUB_JSON),
        ]
    }

    /// Roots read from files, replacing the embedded ones. Each is named after its file.
    pub fn from_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, TrustedRootError> {
        let mut anchors = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.as_ref();
            let shown = path.display().to_string();
            let json = read_bounded(path).map_err(|source| TrustedRootError::Read {
                path: shown.clone(),
                source,
            })?;
            let json = json.ok_or_else(|| TrustedRootError::TooLarge {
                path: shown.clone(),
            })?;
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_else(|| shown.clone());
            anchors.push(anchor_from_json(Instance::Custom(name), &json)?);
        }
        Self::from_anchors(anchors)
    }

    /// Roots from JSON text already in memory (a ConfigMap value, a test kit).
    pub fn from_json(roots: &[(Instance, &str)]) -> Result<Self, TrustedRootError> {
        let anchors = roots
            .iter()
            .map(|(instance, json)| anchor_from_json(instance.clone(), json))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_anchors(anchors)
    }

    fn from_anchors(anchors: Vec<TrustAnchor>) -> Result<Self, TrustedRootError> {
        if anchors.is_empty() {
            return Err(TrustedRootError::Empty);
        }
        Ok(TrustedRoots { anchors })
    }

    pub fn anchors(&self) -> &[TrustAnchor] {
        &self.anchors
    }
}

fn anchor_from_json(instance: Instance, json: &str) -> Result<TrustAnchor, TrustedRootError> {
    let invalid = |reason: String| TrustedRootError::Invalid {
        name: instance.to_string(),
        reason,
    };
    let root = TrustedRoot::from_json(json).map_err(|error| invalid(error.to_string()))?;
    let verifier = Verifier::new(&root).map_err(|error| invalid(error.to_string()))?;
    Ok(TrustAnchor {
        time_proof: TimeProof::for_root(&root),
        instance,
        verifier,
    })
}

/// Reads at most the bound; `None` when the file is larger.
pub(crate) fn read_bounded(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_TRUSTED_ROOT_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_TRUSTED_ROOT_BYTES {
        return Ok(None);
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_roots_get_their_fixed_time_proofs() {
        let roots = TrustedRoots::embedded().expect("embedded roots load");
        let kinds: Vec<_> = roots
            .anchors()
            .iter()
            .map(|anchor| (anchor.instance().clone(), anchor.time_proof()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Instance::PublicGood, TimeProof::TransparencyLog),
                (Instance::Github, TimeProof::Timestamp),
            ]
        );
    }

    #[test]
    fn a_root_that_is_not_json_is_refused_with_its_name() {
        let error = TrustedRoots::from_json(&[(Instance::Custom("mine".into()), "{not json")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("trusted root mine is not a valid"),
            "{error}"
        );
    }

    #[test]
    fn no_roots_is_an_error() {
        assert!(matches!(
            TrustedRoots::from_json(&[]),
            Err(TrustedRootError::Empty)
        ));
    }
}
