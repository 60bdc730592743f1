//! A TUF repository on loopback whose target `trusted_root.json` is a Sigstore trusted root,
//! as Sigstore's and GitHub's TUF repositories publish theirs. Built and signed by `tough`'s
//! editor with throwaway ECDSA P-256 keys (one key for every role, threshold 1): a second TUF
//! implementation, so the client under test never reads metadata it wrote itself.
//!
//! Root rotation (`rotate_root`) signs the new root with the old and the new key, as TUF
//! requires; the attacks a client must refuse are one call each: a tampered target, an
//! expired timestamp, and replaying older metadata (rollback).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tough::editor::signed::{PathExists, SignedRole};
use tough::editor::RepositoryEditor;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root};
use tough::sign::Sign;

use crate::axum_server::AxumServer;

/// The target name both public repositories use.
pub const TRUSTED_ROOT_TARGET: &str = "trusted_root.json";

/// Metadata files as they were at one moment, to serve again later (a rollback).
#[derive(Debug, Clone)]
pub struct SavedMetadata(Vec<(PathBuf, Vec<u8>)>);

pub struct TufRepository {
    /// What is served: metadata at the top, targets under `targets/`.
    served: tempfile::TempDir,
    /// Keys and target inputs, never served.
    work: tempfile::TempDir,
    key: PathBuf,
    key_id: Decoded<Hex>,
    root: Root,
    /// The version the next timestamp, snapshot and targets get.
    next_version: u64,
    server: AxumServer,
}

fn runtime_error(what: &str, error: impl std::fmt::Display) -> ! {
    panic!("test TUF repository: failed to {what}: {error}")
}

impl TufRepository {
    /// Root version 1 and the first targets, with `trusted_root_json` as the target.
    pub async fn new(trusted_root_json: &str) -> TufRepository {
        let served = tempfile::tempdir().expect("a temporary directory");
        let work = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir_all(served.path().join("targets")).expect("targets directory");
        let key = new_key(work.path(), 1);
        let key_id = key_id(&key).await;
        let root = root_with(&key_id, tuf_key(&key).await, 1);
        let served_path = Arc::new(served.path().to_path_buf());
        let server = AxumServer::start("test-tuf-repository", 1, move || {
            axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let dir = Arc::clone(&served_path);
                async move { serve_file(&dir, uri.path()) }
            })
        });
        let mut repository = TufRepository {
            served,
            work,
            key,
            key_id,
            root,
            next_version: 1,
            server,
        };
        repository.write_root(None).await;
        repository.publish(trusted_root_json).await;
        repository
    }

    /// The mirror URL (metadata at its top, targets under `targets/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.server.address())
    }

    /// `1.root.json`: the trust anchor a client starts from.
    pub fn initial_root(&self) -> Vec<u8> {
        std::fs::read(self.served.path().join("1.root.json")).expect("1.root.json")
    }

    /// The current TUF root version.
    pub fn root_version(&self) -> u64 {
        self.root.version.get()
    }

    /// New targets, snapshot and timestamp naming `trusted_root_json`, valid for a week.
    pub async fn publish(&mut self, trusted_root_json: &str) {
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(7 * 24);
        self.publish_with(trusted_root_json, expires).await;
    }

    /// Like [`publish`](Self::publish), but the timestamp expired an hour ago.
    pub async fn publish_expired(&mut self, trusted_root_json: &str) {
        let expired = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
        self.publish_with(trusted_root_json, expired).await;
    }

    /// Root version + 1 under a new key, signed by the old key and the new one; the new
    /// targets name `trusted_root_json` and are signed by the new key only.
    pub async fn rotate_root(&mut self, trusted_root_json: &str) {
        let version = self.root.version.get() + 1;
        let new_key = new_key(self.work.path(), version);
        let new_key_id = key_id(&new_key).await;
        let old_root = self.root.clone();
        let old_key = std::mem::replace(&mut self.key, new_key);
        self.key_id = new_key_id;
        self.root = root_with(&self.key_id, tuf_key(&self.key).await, version);
        self.write_root(Some((old_root, old_key))).await;
        self.publish(trusted_root_json).await;
    }

    /// Flips one byte of the served `trusted_root.json`, leaving the metadata as it was.
    pub fn tamper_target(&self) {
        let targets = self.served.path().join("targets");
        for entry in std::fs::read_dir(&targets).expect("targets directory") {
            let path = entry.expect("directory entry").path();
            if path.to_string_lossy().ends_with(TRUSTED_ROOT_TARGET) {
                let mut bytes = std::fs::read(&path).expect("target");
                let last = bytes.len() - 2;
                bytes[last] ^= 0x01;
                std::fs::write(&path, bytes).expect("tampered target");
            }
        }
    }

    /// The metadata served now (timestamp, snapshot and targets of every version).
    pub fn save_metadata(&self) -> SavedMetadata {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(self.served.path()).expect("repository directory") {
            let path = entry.expect("directory entry").path();
            if path.is_file() && !path.to_string_lossy().ends_with("root.json") {
                let bytes = std::fs::read(&path).expect("metadata");
                files.push((path, bytes));
            }
        }
        SavedMetadata(files)
    }

    /// Serves `saved` again in place of the current metadata: a rollback attack.
    pub fn replay(&self, saved: &SavedMetadata) {
        for (path, bytes) in &saved.0 {
            std::fs::write(path, bytes).expect("replayed metadata");
        }
    }

    async fn publish_with(&mut self, trusted_root_json: &str, timestamp_expires: jiff::Timestamp) {
        let version = NonZeroU64::new(self.next_version).expect("versions start at 1");
        self.next_version += 1;
        let inputs = self.work.path().join(format!("targets-{version}"));
        std::fs::create_dir_all(&inputs).expect("targets input directory");
        let target_path = inputs.join(TRUSTED_ROOT_TARGET);
        std::fs::write(&target_path, trusted_root_json).expect("target input");
        let root_path = self
            .served
            .path()
            .join(format!("{}.root.json", self.root.version));
        let mut editor = RepositoryEditor::new(&root_path)
            .await
            .unwrap_or_else(|error| runtime_error("open the editor", error));
        let (name, target) = RepositoryEditor::build_target(&target_path)
            .await
            .unwrap_or_else(|error| runtime_error("describe the target", error));
        let long = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(30 * 24);
        editor
            .add_target(name, target)
            .unwrap_or_else(|error| runtime_error("add the target", error))
            .targets_version(version)
            .unwrap_or_else(|error| runtime_error("set the targets version", error))
            .targets_expires(long)
            .unwrap_or_else(|error| runtime_error("set the targets expiry", error))
            .snapshot_version(version)
            .snapshot_expires(long)
            .timestamp_version(version)
            .timestamp_expires(timestamp_expires);
        let signed = editor
            .sign(&[self.key_source()])
            .await
            .unwrap_or_else(|error| runtime_error("sign the repository", error));
        signed
            .write(self.served.path())
            .await
            .unwrap_or_else(|error| runtime_error("write the metadata", error));
        signed
            .copy_targets(
                &inputs,
                self.served.path().join("targets"),
                PathExists::Replace,
            )
            .await
            .unwrap_or_else(|error| runtime_error("write the targets", error));
    }

    /// Writes `N.root.json` for the current root, signed by its key and, on a rotation, by
    /// the previous root's key too.
    async fn write_root(&self, previous: Option<(Root, PathBuf)>) {
        let rng = aws_lc_rs_rng();
        let mut signed = SignedRole::new(
            self.root.clone(),
            &KeyHolder::Root(self.root.clone()),
            &[self.key_source()],
            &rng,
        )
        .await
        .unwrap_or_else(|error| runtime_error("sign the root", error));
        if let Some((old_root, old_key)) = previous {
            let by_old = SignedRole::new(
                self.root.clone(),
                &KeyHolder::Root(old_root),
                &[Box::new(LocalKeySource { path: old_key }) as Box<dyn KeySource>],
                &rng,
            )
            .await
            .unwrap_or_else(|error| runtime_error("cross-sign the root", error));
            signed = signed
                .add_old_signatures(by_old.signed().signatures.clone())
                .unwrap_or_else(|error| runtime_error("add the old signature", error));
        }
        let path = self
            .served
            .path()
            .join(format!("{}.root.json", self.root.version));
        std::fs::write(path, signed.buffer()).expect("root metadata");
    }

    fn key_source(&self) -> Box<dyn KeySource> {
        Box::new(LocalKeySource {
            path: self.key.clone(),
        })
    }
}

fn aws_lc_rs_rng() -> aws_lc_rs::rand::SystemRandom {
    aws_lc_rs::rand::SystemRandom::new()
}

/// A fresh ECDSA P-256 key, PKCS#8 DER, in a file (what `LocalKeySource` reads).
fn new_key(dir: &Path, version: u64) -> PathBuf {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("an ECDSA P-256 key");
    let path = dir.join(format!("root-{version}.pk8"));
    std::fs::write(&path, key.serialize_der()).expect("key file");
    path
}

async fn signer(path: &Path) -> Box<dyn Sign> {
    LocalKeySource {
        path: path.to_path_buf(),
    }
    .as_sign()
    .await
    .unwrap_or_else(|error| runtime_error("read a key", error))
}

async fn tuf_key(path: &Path) -> tough::schema::key::Key {
    signer(path).await.tuf_key()
}

async fn key_id(path: &Path) -> Decoded<Hex> {
    tuf_key(path)
        .await
        .key_id()
        .unwrap_or_else(|error| runtime_error("compute a key ID", error))
}

/// A root trusting `key` for every role, valid for a year.
fn root_with(key_id: &Decoded<Hex>, key: tough::schema::key::Key, version: u64) -> Root {
    let role = || RoleKeys {
        keyids: vec![key_id.clone()],
        threshold: NonZeroU64::new(1).expect("1 is not zero"),
        _extra: HashMap::new(),
    };
    Root {
        spec_version: "1.0.0".to_owned(),
        consistent_snapshot: true,
        version: NonZeroU64::new(version).expect("versions start at 1"),
        expires: jiff::Timestamp::now() + jiff::SignedDuration::from_hours(365 * 24),
        keys: HashMap::from([(key_id.clone(), key)]),
        roles: [
            RoleType::Root,
            RoleType::Timestamp,
            RoleType::Snapshot,
            RoleType::Targets,
        ]
        .into_iter()
        .map(|role_type| (role_type, role()))
        .collect(),
        _extra: HashMap::new(),
    }
}

fn serve_file(dir: &Path, path: &str) -> (axum::http::StatusCode, Vec<u8>) {
    let relative = path.trim_start_matches('/');
    if relative.split('/').any(|segment| segment == "..") {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
    }
    match std::fs::read(dir.join(relative)) {
        Ok(bytes) => (axum::http::StatusCode::OK, bytes),
        Err(_) => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
    }
}
