//! Registry credentials in the `.dockerconfigjson` format, which is what Kubernetes
//! imagePullSecrets (`kubernetes.io/dockerconfigjson`) and `docker login` write:
//! `{"auths": {"<host>[/<path>]": {"auth": base64("user:pass")} | {"username", "password"}
//! | {"identitytoken"}}}`, and in the older `.dockercfg` format (the same map of entries
//! without the `auths` wrapper, `kubernetes.io/dockercfg`).
//!
//! An `identitytoken` is an OAuth2 refresh token (what `docker login` keeps for Azure
//! Container Registry and other registries with an OAuth2 token service): it is exchanged
//! at the registry's token realm with `grant_type=refresh_token`, never sent to the registry.
//!
//! Keys are matched the way the kubelet does it, minus wildcards: the host (with port) must be
//! equal, and a key with a path only covers repositories under that path; the longest path
//! wins. Hosts are compared in the canonical spelling of image names
//! ([`canonical_registry`]): case, a `:443` port and Docker Hub's many names
//! (`https://index.docker.io/v1/`, `docker.io`, `registry-1.docker.io`) make no difference.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use crate::check::reference::canonical_registry;

/// A user name and password (or token used as a password) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

/// Never prints the password, so credentials can sit in structs that are logged.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to log in to one registry: a user name and password, or an OAuth2 refresh token.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryLogin {
    /// Sent as Basic credentials to the token realm (or to the registry on a Basic challenge).
    Password(Credentials),
    /// An `identitytoken`: exchanged at the token realm for an access token
    /// (`grant_type=refresh_token`); a Basic challenge cannot be answered with it.
    IdentityToken(String),
}

impl RegistryLogin {
    /// What distinguishes this login from any other, for keeping answers obtained with it
    /// apart from those obtained with other credentials (tokens, tag resolutions). A
    /// SHA-256 over the login, so the secret itself is never kept as a key or logged.
    pub fn fingerprint(&self) -> LoginFingerprint {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        // Length-prefixed fields: no two logins encode alike.
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        match self {
            RegistryLogin::Password(credentials) => {
                field(b"password");
                field(credentials.username.as_bytes());
                field(credentials.password.as_bytes());
            }
            RegistryLogin::IdentityToken(token) => {
                field(b"identitytoken");
                field(token.as_bytes());
            }
        }
        LoginFingerprint(hash.finalize().into())
    }
}

/// Never prints the password or token.
impl fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryLogin::Password(credentials) => credentials.fmt(f),
            RegistryLogin::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// The SHA-256 of a [`RegistryLogin`] ([`RegistryLogin::fingerprint`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoginFingerprint([u8; 32]);

impl fmt::Debug for LoginFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoginFingerprint({})", hex::encode(&self.0[..6]))
    }
}

/// Why a `.dockerconfigjson` document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("registry credentials are not a valid .dockerconfigjson document: {reason}")]
    NotDockerConfig { reason: String },
    #[error("registry credentials for {key}: {reason}")]
    InvalidEntry { key: String, reason: String },
}

#[derive(Debug, Clone)]
struct CredentialEntry {
    host: String,
    path: String,
    login: RegistryLogin,
}

/// Credentials for any number of registries; empty means anonymous everywhere.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    entries: Vec<CredentialEntry>,
    ignored_keys: Vec<String>,
}

#[derive(serde::Deserialize)]
struct DockerConfigDocument {
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl DockerConfig {
    /// No credentials: every registry is contacted anonymously.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses a `.dockerconfigjson` document.
    ///
    /// Entries that carry neither a user name and password nor an `identitytoken` (only a
    /// `registrytoken`, or nothing) are skipped rather than failing the whole document;
    /// [`DockerConfig::ignored_keys`] names them so they can be logged. A malformed `auth`
    /// value is an error: it is a typo the operator must see.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CredentialsError> {
        let document: DockerConfigDocument =
            serde_json::from_slice(bytes).map_err(|error| CredentialsError::NotDockerConfig {
                reason: error.to_string(),
            })?;
        Self::from_entries(document.auths)
    }

    /// Parses a legacy `.dockercfg` document: the map of entries alone, without `auths`.
    pub fn from_dockercfg(bytes: &[u8]) -> Result<Self, CredentialsError> {
        let entries: BTreeMap<String, AuthEntry> =
            serde_json::from_slice(bytes).map_err(|error| CredentialsError::NotDockerConfig {
                reason: error.to_string(),
            })?;
        Self::from_entries(entries)
    }

    fn from_entries(entries: BTreeMap<String, AuthEntry>) -> Result<Self, CredentialsError> {
        let mut config = DockerConfig::default();
        for (key, entry) in entries {
            match entry_login(&key, &entry)? {
                Some(login) => config.insert(&key, login),
                None => config.ignored_keys.push(key),
            }
        }
        Ok(config)
    }

    /// Adds credentials for `key` (a host, `host/path`, or URL as in `.dockerconfigjson`).
    pub fn with_credentials(self, key: &str, credentials: Credentials) -> Self {
        self.with_login(key, RegistryLogin::Password(credentials))
    }

    /// Adds a login for `key` (a host, `host/path`, or URL as in `.dockerconfigjson`).
    pub fn with_login(mut self, key: &str, login: RegistryLogin) -> Self {
        self.insert(key, login);
        self
    }

    /// Adds the entries of `other` whose keys this config does not have yet: the first
    /// of several imagePullSecrets to name a registry (and path) is the one used.
    pub fn merge_missing(&mut self, other: DockerConfig) {
        for entry in other.entries {
            let present = self
                .entries
                .iter()
                .any(|existing| (&existing.host, &existing.path) == (&entry.host, &entry.path));
            if !present {
                self.entries.push(entry);
            }
        }
        self.ignored_keys.extend(other.ignored_keys);
    }

    /// Entries (distinct host and path keys) held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds all entries of `other`; on equal keys, `other` wins.
    pub fn merge(&mut self, other: DockerConfig) {
        for entry in other.entries {
            self.entries
                .retain(|existing| (&existing.host, &existing.path) != (&entry.host, &entry.path));
            self.entries.push(entry);
        }
        self.ignored_keys.extend(other.ignored_keys);
    }

    /// Keys that were skipped because they had no user name and password nor identity token.
    pub fn ignored_keys(&self) -> &[String] {
        &self.ignored_keys
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The login for `repository` in `registry` (names as in image references), if any:
    /// the entry with the longest path covering the repository.
    pub fn login_for(&self, registry: &str, repository: &str) -> Option<&RegistryLogin> {
        let host = normalise_host(registry);
        self.entries
            .iter()
            .filter(|entry| entry.host == host && path_covers(&entry.path, repository))
            .max_by_key(|entry| entry.path.len())
            .map(|entry| &entry.login)
    }

    /// The user name and password for `repository` in `registry`, if its login is one.
    pub fn credentials_for(&self, registry: &str, repository: &str) -> Option<&Credentials> {
        match self.login_for(registry, repository)? {
            RegistryLogin::Password(credentials) => Some(credentials),
            RegistryLogin::IdentityToken(_) => None,
        }
    }

    fn insert(&mut self, key: &str, login: RegistryLogin) {
        let (host, path) = split_key(key);
        self.entries
            .retain(|existing| (&existing.host, &existing.path) != (&host, &path));
        self.entries.push(CredentialEntry { host, path, login });
    }
}

/// The login an entry holds: an `identitytoken` wins over a user name and password, as
/// with `docker` itself (ACR's entries carry both, the user name a placeholder).
fn entry_login(key: &str, entry: &AuthEntry) -> Result<Option<RegistryLogin>, CredentialsError> {
    if let Some(token) = entry
        .identitytoken
        .as_deref()
        .filter(|token| !token.is_empty())
    {
        return Ok(Some(RegistryLogin::IdentityToken(token.to_owned())));
    }
    Ok(entry_credentials(key, entry)?.map(RegistryLogin::Password))
}

fn entry_credentials(
    key: &str,
    entry: &AuthEntry,
) -> Result<Option<Credentials>, CredentialsError> {
    let invalid = |reason: &str| CredentialsError::InvalidEntry {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(auth) = entry.auth.as_deref().filter(|auth| !auth.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| invalid("\"auth\" is not valid base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| invalid("\"auth\" is not valid UTF-8"))?;
        // Passwords may contain ':', user names may not: split at the first one.
        let Some((username, password)) = decoded.split_once(':') else {
            return Err(invalid("\"auth\" is not base64 of \"user:password\""));
        };
        return Ok(Some(Credentials::new(username, password)));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Ok(Some(Credentials::new(username.clone(), password.clone())))
        }
        _ => Ok(None),
    }
}

/// Splits a `.dockerconfigjson` key into a normalised host and a repository path prefix.
fn split_key(key: &str) -> (String, String) {
    let without_scheme = key
        .trim()
        .strip_prefix("https://")
        .or_else(|| key.trim().strip_prefix("http://"))
        .unwrap_or(key.trim());
    let (host, path) = without_scheme
        .split_once('/')
        .unwrap_or((without_scheme, ""));
    let path = path.trim_matches('/');
    // `https://index.docker.io/v1/` and `https://host/v2/` name API versions, not repositories.
    let path = if is_api_version_path(path) { "" } else { path };
    (normalise_host(host), path.to_owned())
}

fn is_api_version_path(path: &str) -> bool {
    matches!(path, "v1" | "v2")
}

/// A key that names no valid registry host keeps its lower-cased text: it can never equal the
/// canonical registry of an image, so it simply matches nothing.
fn normalise_host(host: &str) -> String {
    canonical_registry(host).unwrap_or_else(|_| host.to_ascii_lowercase())
}

/// Whether a key's path prefix covers `repository`, on whole path segments.
fn path_covers(prefix: &str, repository: &str) -> bool {
    prefix.is_empty()
        || repository == prefix
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base64_of(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn parses_auth_field_and_splits_at_the_first_colon() {
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            base64_of("bot:pa:ss")
        );
        let config = DockerConfig::from_json(json.as_bytes()).expect("valid config");
        let credentials = config
            .credentials_for("ghcr.io", "acme/api")
            .expect("match");
        assert_eq!(credentials.username(), "bot");
        assert_eq!(credentials.password(), "pa:ss");
    }

    #[test]
    fn parses_username_and_password_fields() {
        let json = r#"{"auths": {"registry.example:5000": {"username": "u", "password": "p", "email": "x@y"}}}"#;
        let config = DockerConfig::from_json(json.as_bytes()).expect("valid config");
        assert_eq!(
            config.credentials_for("registry.example:5000", "team/app"),
            Some(&Credentials::new("u", "p"))
        );
        // The port is part of the host: no match without it.
        assert_eq!(config.credentials_for("registry.example", "team/app"), None);
    }

    #[test]
    fn docker_hub_legacy_key_matches_docker_io() {
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
            base64_of("hubuser:hubpass")
        );
        let config = DockerConfig::from_json(json.as_bytes()).expect("valid config");
        let credentials = config
            .credentials_for("docker.io", "library/nginx")
            .expect("docker.io matches the legacy key");
        assert_eq!(credentials.username(), "hubuser");
        assert!(config.credentials_for("ghcr.io", "library/nginx").is_none());
    }

    #[test]
    fn host_matching_ignores_case_and_url_scheme() {
        let config =
            DockerConfig::empty().with_credentials("https://GHCR.io/", Credentials::new("a", "b"));
        assert!(config.credentials_for("ghcr.io", "x/y").is_some());
    }

    #[test]
    fn keys_match_in_the_canonical_spelling_of_their_host() {
        // key, registry as in an image reference, whether the key covers it
        let cases = [
            ("ghcr.io:443", "ghcr.io", true),
            ("https://GHCR.IO:443/v2/", "ghcr.io", true),
            ("LOCALHOST:5000", "localhost:5000", true),
            ("registry-1.docker.io", "docker.io", true),
            ("https://registry-1.docker.io/v1/", "docker.io", true),
            ("[0:0::1]:5000", "[::1]:5000", true),
            // Another port is another registry; a leading-zero port names none.
            ("ghcr.io:8443", "ghcr.io", false),
            ("localhost:05000", "localhost:5000", false),
        ];
        for (key, registry, covered) in cases {
            let config = DockerConfig::empty().with_credentials(key, Credentials::new("u", "p"));
            assert_eq!(
                config.credentials_for(registry, "acme/api").is_some(),
                covered,
                "{key} for {registry}"
            );
        }
    }

    #[test]
    fn longest_path_prefix_wins_on_whole_segments() {
        let config = DockerConfig::empty()
            .with_credentials("ghcr.io", Credentials::new("org", "1"))
            .with_credentials("ghcr.io/acme", Credentials::new("acme", "2"));
        assert_eq!(
            config
                .credentials_for("ghcr.io", "acme/api")
                .map(Credentials::username),
            Some("acme")
        );
        // `acme-other` is not under `acme`.
        assert_eq!(
            config
                .credentials_for("ghcr.io", "acme-other/api")
                .map(Credentials::username),
            Some("org")
        );
    }

    #[test]
    fn entries_without_any_login_are_ignored_and_named() {
        let json = r#"{"auths": {"tokens.example": {"registrytoken": "t"}, "empty.example": {}, "ghcr.io": {"username": "u", "password": "p"}}}"#;
        let config = DockerConfig::from_json(json.as_bytes()).expect("valid config");
        assert_eq!(config.ignored_keys(), ["empty.example", "tokens.example"]);
        assert!(config.login_for("tokens.example", "x").is_none());
        assert_eq!(config.len(), 1);
    }

    #[test]
    fn identity_tokens_win_over_user_and_password() {
        // What `docker login` writes for Azure Container Registry: a placeholder user in
        // `auth` and the refresh token beside it.
        let json = format!(
            r#"{{"auths": {{"acme.azurecr.io": {{"auth": "{}", "identitytoken": "refresh-1"}}, "plain.example": {{"identitytoken": ""}}}}}}"#,
            base64_of("00000000-0000-0000-0000-000000000000:")
        );
        let config = DockerConfig::from_json(json.as_bytes()).expect("valid config");
        assert_eq!(
            config.login_for("acme.azurecr.io", "team/app"),
            Some(&RegistryLogin::IdentityToken("refresh-1".to_owned()))
        );
        assert!(config
            .credentials_for("acme.azurecr.io", "team/app")
            .is_none());
        // An empty token is no token.
        assert_eq!(config.ignored_keys(), ["plain.example"]);
    }

    #[test]
    fn legacy_dockercfg_documents_are_the_entries_alone() {
        let json = format!(
            r#"{{"https://registry.example:5000": {{"auth": "{}", "email": "x@y"}}}}"#,
            base64_of("u:p")
        );
        let config = DockerConfig::from_dockercfg(json.as_bytes()).expect("valid dockercfg");
        assert_eq!(
            config.credentials_for("registry.example:5000", "a/b"),
            Some(&Credentials::new("u", "p"))
        );
        // A .dockerconfigjson document read as .dockercfg names one key, `auths`, with no
        // login in it; a .dockercfg document has no `auths`.
        let misread = DockerConfig::from_dockercfg(br#"{"auths": {"h": {"auth": "%%"}}}"#)
            .expect("an entry named auths");
        assert!(misread.is_empty());
        assert_eq!(misread.ignored_keys(), ["auths"]);
        assert!(DockerConfig::from_json(json.as_bytes()).is_err());
    }

    #[test]
    fn merging_keeps_the_first_login_of_each_key() {
        let mut config =
            DockerConfig::empty().with_credentials("ghcr.io", Credentials::new("first", "1"));
        config.merge_missing(
            DockerConfig::empty()
                .with_credentials("ghcr.io", Credentials::new("second", "2"))
                .with_credentials("ghcr.io/acme", Credentials::new("acme", "3")),
        );
        let user = |repository| {
            config
                .credentials_for("ghcr.io", repository)
                .map(Credentials::username)
        };
        assert_eq!(user("other/app"), Some("first"));
        assert_eq!(user("acme/app"), Some("acme"));
    }

    #[test]
    fn fingerprints_tell_every_login_apart_and_print_no_secret() {
        let logins = [
            RegistryLogin::Password(Credentials::new("a", "b")),
            RegistryLogin::Password(Credentials::new("a", "c")),
            RegistryLogin::Password(Credentials::new("ab", "")),
            RegistryLogin::Password(Credentials::new("", "ab")),
            RegistryLogin::IdentityToken("ab".to_owned()),
            RegistryLogin::IdentityToken("password".to_owned()),
        ];
        let fingerprints: std::collections::BTreeSet<_> =
            logins.iter().map(RegistryLogin::fingerprint).collect();
        assert_eq!(fingerprints.len(), logins.len());
        assert_eq!(
            logins[0].fingerprint(),
            RegistryLogin::Password(Credentials::new("a", "b")).fingerprint()
        );
        let token = RegistryLogin::IdentityToken("hunter2".to_owned());
        assert!(!format!("{token:?} {:?}", token.fingerprint()).contains("hunter2"));
    }

    #[test]
    fn malformed_documents_are_errors() {
        assert!(matches!(
            DockerConfig::from_json(b"{}"),
            Err(CredentialsError::NotDockerConfig { .. })
        ));
        assert!(matches!(
            DockerConfig::from_json(br#"{"auths": {"ghcr.io": {"auth": "%%%"}}}"#),
            Err(CredentialsError::InvalidEntry { .. })
        ));
        let no_colon = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            base64_of("nocolon")
        );
        assert!(matches!(
            DockerConfig::from_json(no_colon.as_bytes()),
            Err(CredentialsError::InvalidEntry { .. })
        ));
    }

    #[test]
    fn merge_prefers_the_later_config() {
        let mut config =
            DockerConfig::empty().with_credentials("ghcr.io", Credentials::new("old", "1"));
        config
            .merge(DockerConfig::empty().with_credentials("ghcr.io", Credentials::new("new", "2")));
        assert_eq!(
            config
                .credentials_for("ghcr.io", "a")
                .map(Credentials::username),
            Some("new")
        );
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let text = format!("{:?}", Credentials::new("user", "hunter2"));
        assert!(text.contains("user"));
        assert!(!text.contains("hunter2"));
    }
}
