//! GitHub App credentials: the App's ID, its installation's ID and its private key, files of
//! a mounted Secret. The client signs a short JWT with the key (RS256 through rustls's
//! aws-lc-rs provider: no JWT crate), exchanges it at the API host for an installation
//! token, and uses that token until shortly before it expires; a 401 forgets it.
//!
//! The files are read whenever a token is needed, so a rotated Secret takes effect at the
//! next exchange; a token minted from other credentials is never reused for new ones.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::PrivateKeyDer;
use rustls::SignatureScheme;
use serde::Deserialize;

use crate::policy::{GithubApi, GithubAppFiles};
use crate::reload::fingerprint;

/// An ID file or key file larger than this is not one.
pub const MAX_APP_FILE_BYTES: u64 = 16 * 1024;
/// How far `iat` is set in the past, for clocks behind GitHub's (GitHub's own advice).
pub const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// How long the JWT is valid from now; GitHub refuses more than 10 minutes.
pub const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// A token is renewed this long before GitHub says it expires (or halfway, when it was
/// given for less), so that no listing starts with a token about to lapse.
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// The longest a token is kept, whatever its `expires_at` says (GitHub gives one hour).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Why App credentials gave no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppCredentialError {
    #[error("failed to read the GitHub App's {what} file {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("the GitHub App's private key in {path} is unusable: {reason}")]
    Key { path: String, reason: String },
}

/// The credentials as read from the files, and their identity.
pub struct AppCredentials {
    pub app_id: String,
    pub installation_id: String,
    /// The private key as read; parsed only to sign, since a held token needs no key.
    key_pem: Vec<u8>,
    key_path: String,
    /// Fingerprint of the API, the IDs and the key: a cached token belongs to exactly these.
    pub identity: [u8; 32],
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

/// Reads a small file whole, refusing one larger than `limit` before reading it.
pub fn read_bounded(path: &str, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| error.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than the {limit} bytes allowed"));
    }
    Ok(bytes)
}

/// An App ID (digits) or client ID (`Iv1.…`, `Iv23…`): letters, digits and dots.
fn is_app_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'.')
}

/// Installation IDs are decimal numbers.
fn is_installation_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|byte| byte.is_ascii_digit())
}

fn read_id(
    what: &'static str,
    path: &str,
    valid: fn(&str) -> bool,
) -> Result<String, AppCredentialError> {
    let failed = |reason: String| AppCredentialError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let bytes = read_bounded(path, MAX_APP_FILE_BYTES).map_err(failed)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| failed("not UTF-8 text".to_owned()))?;
    let id = text.trim();
    if !valid(id) {
        return Err(failed(format!("`{}` is not an ID", bounded(id))));
    }
    Ok(id.to_owned())
}

fn bounded(text: &str) -> String {
    text.chars().take(40).collect()
}

impl AppCredentials {
    /// Reads the three files of `files`, for the API `api` names.
    pub fn read(api: &GithubApi, files: &GithubAppFiles) -> Result<Self, AppCredentialError> {
        let app_id = read_id("app ID", &files.app_id_file, is_app_id)?;
        let installation_id = read_id(
            "installation ID",
            &files.installation_id_file,
            is_installation_id,
        )?;
        let path = &files.private_key_file;
        let pem =
            read_bounded(path, MAX_APP_FILE_BYTES).map_err(|reason| AppCredentialError::File {
                what: "private key",
                path: path.clone(),
                reason,
            })?;
        let identity = fingerprint(&[
            api.api_host.as_bytes(),
            api.path_prefix.as_bytes(),
            app_id.as_bytes(),
            installation_id.as_bytes(),
            &pem,
        ]);
        Ok(AppCredentials {
            app_id,
            installation_id,
            key_pem: pem,
            key_path: path.clone(),
            identity,
        })
    }

    /// The App's JWT as of `now` (seconds since the epoch): `iat` backdated by
    /// [`JWT_BACKDATE`], `exp` [`JWT_LIFETIME`] ahead, `iss` the App ID.
    pub fn jwt(&self, now: i64) -> Result<String, AppCredentialError> {
        let key_error = |reason: String| AppCredentialError::Key {
            path: self.key_path.clone(),
            reason,
        };
        let key = signing_key(&self.key_pem).map_err(key_error)?;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        // A numeric App ID is written as a number, as GitHub's examples do; a client ID
        // as a string.
        let issuer = match self.app_id.parse::<u64>() {
            Ok(number) => serde_json::Value::from(number),
            Err(_) => serde_json::Value::from(self.app_id.clone()),
        };
        let claims = serde_json::json!({
            "iat": now - JWT_BACKDATE.as_secs() as i64,
            "exp": now + JWT_LIFETIME.as_secs() as i64,
            "iss": issuer,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let signer = key
            .choose_scheme(&[SignatureScheme::RSA_PKCS1_SHA256])
            .ok_or_else(|| key_error("it cannot sign RS256".to_owned()))?;
        let signature = signer
            .sign(signing_input.as_bytes())
            .map_err(|error| key_error(format!("failed to sign the App's JWT: {error}")))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// An RSA private key from PEM: PKCS#1 (`RSA PRIVATE KEY`, as GitHub issues App keys) or
/// PKCS#8 (`PRIVATE KEY`).
fn signing_key(pem: &[u8]) -> Result<Arc<dyn rustls::sign::SigningKey>, String> {
    let der = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|error| format!("no PEM private key: {error}"))?;
    if !matches!(der, PrivateKeyDer::Pkcs1(_) | PrivateKeyDer::Pkcs8(_)) {
        return Err("not an RSA key (GitHub App keys are RSA)".to_owned());
    }
    let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|error| format!("not a usable RSA key: {error}"))?;
    if key.algorithm() != rustls::SignatureAlgorithm::RSA {
        return Err("not an RSA key (GitHub App keys are RSA)".to_owned());
    }
    Ok(key)
}

/// `POST /app/installations/{id}/access_tokens` answers with this (and more, unused).
#[derive(Debug, Deserialize)]
pub struct AccessTokenBody {
    pub token: String,
    pub expires_at: String,
}

/// An installation token, and until when it is used.
#[derive(Debug, Clone)]
pub struct InstallationToken {
    pub identity: [u8; 32],
    pub token: String,
    pub renew_at: jiff::Timestamp,
}

impl InstallationToken {
    /// The token of an exchange's answer received at `now`: checked to be one word, and
    /// its renewal time set from its `expires_at`, within [`MAX_TOKEN_LIFETIME`].
    pub fn from_answer(
        identity: [u8; 32],
        body: AccessTokenBody,
        now: jiff::Timestamp,
    ) -> Result<Self, String> {
        let token = body.token.trim();
        if token.is_empty()
            || token.len() > 4096
            || token.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("the answer's token is not a token".to_owned());
        }
        let expires_at: jiff::Timestamp = body
            .expires_at
            .parse()
            .map_err(|error| format!("unreadable expires_at: {error}"))?;
        let left = expires_at.duration_since(now);
        if left <= jiff::SignedDuration::ZERO {
            return Err(format!("the token expired already ({expires_at})"));
        }
        let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
        let left = left.min(MAX_TOKEN_LIFETIME);
        let used_for = left.saturating_sub(RENEW_BEFORE_EXPIRY.min(left / 2));
        let renew_at = now
            .checked_add(jiff::SignedDuration::try_from(used_for).unwrap_or_default())
            .unwrap_or(now);
        Ok(InstallationToken {
            identity,
            token: token.to_owned(),
            renew_at,
        })
    }
}

/// The installation token in use and the last failed exchange, so that broken credentials
/// cost one exchange per [`FAILURE_BACKOFF`], not one per listing.
#[derive(Default)]
pub struct TokenCache {
    current: Mutex<Option<InstallationToken>>,
    failure: Mutex<Option<(FailedExchange, tokio::time::Instant)>>,
    /// Held while exchanging, so that concurrent listings share one exchange.
    pub exchanging: tokio::sync::Mutex<()>,
}

/// How long a failed exchange is answered from memory.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct FailedExchange {
    pub identity: [u8; 32],
    pub error: super::GithubError,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TokenCache {
    /// The token for `identity` when it is not due for renewal at `now`.
    pub fn usable(&self, identity: &[u8; 32], now: jiff::Timestamp) -> Option<String> {
        lock(&self.current)
            .as_ref()
            .filter(|token| &token.identity == identity && now < token.renew_at)
            .map(|token| token.token.clone())
    }

    pub fn store(&self, token: InstallationToken) {
        *lock(&self.failure) = None;
        *lock(&self.current) = Some(token);
    }

    /// Forgets `token` (GitHub refused it); a newer one stays.
    pub fn forget(&self, token: &str) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|held| held.token == token) {
            *current = None;
        }
    }

    pub fn recent_failure(&self, identity: &[u8; 32]) -> Option<super::GithubError> {
        lock(&self.failure)
            .as_ref()
            .filter(|(failed, at)| &failed.identity == identity && at.elapsed() < FAILURE_BACKOFF)
            .map(|(failed, _)| failed.error.clone())
    }

    pub fn failed(&self, identity: [u8; 32], error: super::GithubError) {
        *lock(&self.failure) = Some((
            FailedExchange { identity, error },
            tokio::time::Instant::now(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(token: &str, expires_in: i64, now: jiff::Timestamp) -> AccessTokenBody {
        AccessTokenBody {
            token: token.to_owned(),
            expires_at: jiff::Timestamp::from_second(now.as_second() + expires_in)
                .unwrap()
                .to_string(),
        }
    }

    #[test]
    fn tokens_are_renewed_before_they_expire_within_the_bound() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        // (seconds GitHub gives, seconds the token is used)
        let cases = [
            (3600, 3600 - 300),
            (600, 300),
            (120, 60),
            (86_400, 3600 - 300),
        ];
        for (expires_in, used) in cases {
            let token =
                InstallationToken::from_answer([0; 32], answer("ghs_x", expires_in, now), now)
                    .unwrap();
            assert_eq!(
                token.renew_at.as_second() - now.as_second(),
                used,
                "{expires_in}"
            );
        }
        for (body, fragment) in [
            (answer("ghs_x", -1, now), "expired already"),
            (answer("two words", 3600, now), "not a token"),
            (answer("", 3600, now), "not a token"),
            (
                AccessTokenBody {
                    token: "ghs_x".into(),
                    expires_at: "tomorrow".into(),
                },
                "unreadable expires_at",
            ),
        ] {
            let error = InstallationToken::from_answer([0; 32], body, now).unwrap_err();
            assert!(error.contains(fragment), "{error}");
        }
    }

    #[test]
    fn the_cache_serves_a_token_only_to_its_credentials_and_before_renewal() {
        let cache = TokenCache::default();
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let token =
            InstallationToken::from_answer([1; 32], answer("ghs_a", 3600, now), now).unwrap();
        cache.store(token);
        assert_eq!(cache.usable(&[1; 32], now).as_deref(), Some("ghs_a"));
        assert_eq!(cache.usable(&[2; 32], now), None, "other credentials");
        let later = jiff::Timestamp::from_second(now.as_second() + 3300).unwrap();
        assert_eq!(cache.usable(&[1; 32], later), None, "due for renewal");
        cache.forget("ghs_other");
        assert!(cache.usable(&[1; 32], now).is_some());
        cache.forget("ghs_a");
        assert_eq!(cache.usable(&[1; 32], now), None);
    }

    /// App files in a temporary directory, the key an RSA key from rcgen (PKCS#8).
    fn credentials(app_id: &str) -> (tempfile::TempDir, AppCredentials) {
        let directory = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let file = |name: &str, content: &str| {
            let path = directory.path().join(name);
            std::fs::write(&path, content).unwrap();
            path.display().to_string()
        };
        let files = GithubAppFiles {
            app_id_file: file("app-id", app_id),
            installation_id_file: file("installation-id", "99\n"),
            private_key_file: file("key.pem", &key.serialize_pem()),
        };
        let credentials = AppCredentials::read(&GithubApi::default(), &files).unwrap();
        (directory, credentials)
    }

    #[test]
    fn the_jwt_names_the_app_as_github_expects_it() {
        for (app_id, issuer) in [
            ("123456\n", serde_json::json!(123456)),
            ("Iv23liClientId", serde_json::json!("Iv23liClientId")),
        ] {
            let (_directory, credentials) = credentials(app_id);
            assert_eq!(credentials.installation_id, "99");
            let jwt = credentials.jwt(1_800_000_000).unwrap();
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3, "{jwt}");
            let part = |index: usize| -> serde_json::Value {
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[index]).unwrap()).unwrap()
            };
            assert_eq!(part(0), serde_json::json!({"alg": "RS256", "typ": "JWT"}));
            assert_eq!(
                part(1),
                serde_json::json!({"iat": 1_800_000_000 - 60, "exp": 1_800_000_000 + 540, "iss": issuer})
            );
            // RSA-2048 signature.
            assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256);
        }
    }

    #[test]
    fn ids_and_keys_are_checked() {
        for (id, valid) in [
            ("123456", true),
            ("Iv23liAbC.x", true),
            ("", false),
            ("12 34", false),
            ("../x", false),
        ] {
            assert_eq!(is_app_id(id), valid, "{id}");
        }
        assert!(is_installation_id("42"));
        assert!(!is_installation_id("42a"));
        assert!(signing_key(b"not pem").unwrap_err().contains("no PEM"));
        let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
        assert!(signing_key(ec.as_bytes())
            .unwrap_err()
            .contains("not an RSA key"));
    }
}
