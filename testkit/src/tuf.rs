//! A TUF repository on loopback whose target `trusted_root.json` is a Sigstore trusted root,
//! as Sigstore's and GitHub's TUF repositories publish theirs: consistent snapshots, ECDSA
//! P-256 keys (`ecdsa-sha2-nistp256`, PEM public keys, as tuf-on-ci writes them), one key
//! for every role, threshold 1. Written here and signed with RustCrypto's `p256` over OLPC
//! canonical JSON (`olpc-cjson`), so the client under test (`sigstore-tuf`, aws-lc-rs, its
//! own canonical encoder) never reads metadata produced by its own code.
//!
//! Root rotation (`rotate_root`) signs the new root with the old and the new key, as TUF
//! requires; the attacks a client must refuse are one call each: a tampered target, an
//! expired timestamp, and replaying older metadata (rollback).

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use rand_core::OsRng;
use serde::Serialize as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::axum_server::AxumServer;

/// The target name both public repositories use.
pub const TRUSTED_ROOT_TARGET: &str = "trusted_root.json";
const SPEC_VERSION: &str = "1.0.31";

/// Metadata files as they were at one moment, to serve again later (a rollback).
#[derive(Debug, Clone)]
pub struct SavedMetadata(Vec<(PathBuf, Vec<u8>)>);

/// One TUF signing key.
struct TufKey {
    signing: SigningKey,
    id: String,
    /// The key as root.json lists it.
    public: Value,
}

impl TufKey {
    fn generate() -> TufKey {
        let signing = SigningKey::random(&mut OsRng);
        let der = signing
            .verifying_key()
            .to_public_key_der()
            .expect("a P-256 public key encodes");
        let public = json!({
            "keytype": "ecdsa",
            "scheme": "ecdsa-sha2-nistp256",
            "keyval": {"public": pem("PUBLIC KEY", der.as_bytes())},
        });
        // The key ID TUF specifies: SHA-256 of the key's canonical JSON.
        let id = hex(&Sha256::digest(canonical(&public)));
        TufKey {
            signing,
            id,
            public,
        }
    }

    fn sign(&self, signed: &Value) -> Value {
        let signature: Signature = self.signing.sign(&canonical(signed));
        json!({"keyid": self.id, "sig": hex(signature.to_der().as_bytes())})
    }
}

pub struct TufRepository {
    /// What is served: metadata at the top, targets under `targets/`.
    served: tempfile::TempDir,
    key: TufKey,
    root_version: u64,
    /// The version the next timestamp, snapshot and targets get.
    next_version: u64,
    server: AxumServer,
}

impl TufRepository {
    /// Root version 1 and the first targets, with `trusted_root_json` as the target.
    pub async fn new(trusted_root_json: &str) -> TufRepository {
        let served = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir_all(served.path().join("targets")).expect("targets directory");
        let served_path = Arc::new(served.path().to_path_buf());
        let server = AxumServer::start("test-tuf-repository", 1, move || {
            axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let dir = Arc::clone(&served_path);
                async move { serve_file(&dir, uri.path()) }
            })
        });
        let key = TufKey::generate();
        let mut repository = TufRepository {
            served,
            key,
            root_version: 1,
            next_version: 1,
            server,
        };
        let root = repository.root_signed();
        repository.write_signed("1.root.json", &root, &[&repository.key]);
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
        self.root_version
    }

    /// New targets, snapshot and timestamp naming `trusted_root_json`, valid for a week.
    pub async fn publish(&mut self, trusted_root_json: &str) {
        self.publish_with(trusted_root_json, hours_from_now(7 * 24));
    }

    /// Like [`publish`](Self::publish), but the timestamp expired an hour ago.
    pub async fn publish_expired(&mut self, trusted_root_json: &str) {
        self.publish_with(trusted_root_json, hours_from_now(-1));
    }

    /// Root version + 1 under a new key, signed by the old key and the new one; the new
    /// targets name `trusted_root_json` and are signed by the new key only.
    pub async fn rotate_root(&mut self, trusted_root_json: &str) {
        let old_key = std::mem::replace(&mut self.key, TufKey::generate());
        self.root_version += 1;
        let root = self.root_signed();
        let name = format!("{}.root.json", self.root_version);
        self.write_signed(&name, &root, &[&old_key, &self.key]);
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

    fn publish_with(&mut self, trusted_root_json: &str, timestamp_expires: String) {
        let version = self.next_version;
        self.next_version += 1;
        let bytes = trusted_root_json.as_bytes();
        let hash = hex(&Sha256::digest(bytes));
        let target = self
            .served
            .path()
            .join("targets")
            .join(format!("{hash}.{TRUSTED_ROOT_TARGET}"));
        std::fs::write(target, bytes).expect("target");
        let long = hours_from_now(30 * 24);
        let targets = json!({
            "_type": "targets", "spec_version": SPEC_VERSION, "version": version, "expires": long,
            "targets": {TRUSTED_ROOT_TARGET: {"length": bytes.len(), "hashes": {"sha256": hash}}},
        });
        let snapshot = json!({
            "_type": "snapshot", "spec_version": SPEC_VERSION, "version": version, "expires": long,
            "meta": {"targets.json": {"version": version}},
        });
        let timestamp = json!({
            "_type": "timestamp", "spec_version": SPEC_VERSION, "version": version,
            "expires": timestamp_expires,
            "meta": {"snapshot.json": {"version": version}},
        });
        let key = [&self.key];
        self.write_signed(&format!("{version}.targets.json"), &targets, &key);
        self.write_signed(&format!("{version}.snapshot.json"), &snapshot, &key);
        self.write_signed("timestamp.json", &timestamp, &key);
    }

    /// The current root, trusting the current key for every role, valid for a year.
    fn root_signed(&self) -> Value {
        let role = json!({"keyids": [self.key.id], "threshold": 1});
        json!({
            "_type": "root",
            "spec_version": SPEC_VERSION,
            "version": self.root_version,
            "expires": hours_from_now(365 * 24),
            "consistent_snapshot": true,
            "keys": {self.key.id.clone(): self.key.public},
            "roles": {"root": role, "timestamp": role, "snapshot": role, "targets": role},
        })
    }

    fn write_signed(&self, name: &str, signed: &Value, keys: &[&TufKey]) {
        let signatures: Vec<Value> = keys.iter().map(|key| key.sign(signed)).collect();
        let document = json!({"signatures": signatures, "signed": signed});
        let bytes = serde_json::to_vec_pretty(&document).expect("metadata serializes");
        std::fs::write(self.served.path().join(name), bytes).expect("metadata");
    }
}

/// The bytes TUF signatures cover: OLPC canonical JSON.
fn canonical(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut bytes, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut serializer)
        .expect("metadata has a canonical form");
    bytes
}

/// TUF's time format, whole seconds.
fn hours_from_now(hours: i64) -> String {
    let time = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours);
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn serve_file(dir: &std::path::Path, path: &str) -> (axum::http::StatusCode, Vec<u8>) {
    let relative = path.trim_start_matches('/');
    if relative.split('/').any(|segment| segment == "..") {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
    }
    match std::fs::read(dir.join(relative)) {
        Ok(bytes) => (axum::http::StatusCode::OK, bytes),
        Err(_) => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
    }
}
