//! A workload's imagePullSecrets, read as the kubelet uses them, for the registry requests
//! of its review (`serve --workload-credentials`).
//!
//! The pod's creator names the secrets, and the webhook reads them with its own rights, so
//! everything here is bounded against a confused deputy:
//!
//! - only the review's own namespace is read (the request's, never the object's), and only
//!   secrets of type `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`: naming an
//!   Opaque secret or a ServiceAccount token reads nothing from it, and no content of any
//!   secret is ever quoted in a warning, a log line or a record;
//! - the pod's own `imagePullSecrets`, or when it names none those of its ServiceAccount
//!   (what the ServiceAccount admission plugin would have copied into a Pod); at most
//!   [`MAX_PULL_SECRETS`] names, each of [`MAX_SECRET_BYTES`] at most, [`MAX_LOGINS`]
//!   entries in all, read within [`PULL_SECRET_READ_TIMEOUT`] with a few reads at once, and
//!   kept for [`PULL_SECRET_TTL`] (failures for less);
//! - the logins never choose a host: the registry client asks only the registries the
//!   policy covers, and a login is only used for the registry (and repository path) its key
//!   names;
//! - a secret that cannot be used is skipped with a warning that says why: skipping only
//!   ever leaves a workload with fewer logins, so the webhook's own credentials (or none)
//!   are used instead, as the kubelet falls back to the node's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::Api;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use tokio::sync::Semaphore;

use crate::check::cache::SingleFlightCache;
use crate::registry::{CredentialsError, DockerConfig};

/// The type of a Secret holding a `.dockerconfigjson` document.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Its key.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// The type of a Secret holding a legacy `.dockercfg` document.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
/// Its key.
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// Pull secrets read per workload at most; further names are skipped (and said so).
pub const MAX_PULL_SECRETS: usize = 8;
/// Largest Docker config read from one secret; real ones are a few hundred bytes a registry.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// Registry entries kept per workload at most, over all its secrets.
pub const MAX_LOGINS: usize = 64;
/// Time for reading all the pull secrets of one workload (its ServiceAccount included).
pub const PULL_SECRET_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a secret (or a ServiceAccount's list of them) is used before it is read again:
/// a rotated password is picked up this soon.
pub const PULL_SECRET_TTL: Duration = Duration::from_secs(30);
/// How long a failed read is answered from memory, so that a burst of pods costs one read.
const FAILED_READ_TTL: Duration = Duration::from_secs(5);
/// Secrets and ServiceAccounts kept in memory at most (each cache).
const CACHE_CAPACITY: usize = 1024;
/// Reads in flight at once; more wait within the read timeout.
const MAX_CONCURRENT_READS: usize = 4;
/// The ServiceAccount a Pod without `serviceAccountName` runs as.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The pull secrets a workload names: its pod spec's `imagePullSecrets` and service account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullSecretNames {
    /// `imagePullSecrets[].name`, in order.
    pub secrets: Vec<String>,
    /// `serviceAccountName` (or the deprecated `serviceAccount`); `None`: `default`.
    pub service_account: Option<String>,
}

impl PullSecretNames {
    /// The names in a pod spec (a Pod's `spec`, or a template's `spec.template.spec`).
    pub fn of_pod_spec(spec: &serde_json::Value) -> PullSecretNames {
        let text = |value: &serde_json::Value| {
            value
                .as_str()
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        let secrets = spec
            .get("imagePullSecrets")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|reference| reference.get("name").and_then(text))
            .collect();
        let service_account = ["serviceAccountName", "serviceAccount"]
            .iter()
            .find_map(|key| spec.get(*key).and_then(text));
        PullSecretNames {
            secrets,
            service_account,
        }
    }
}

/// A Secret as stored: its type and data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSecret {
    pub type_: String,
    pub data: BTreeMap<String, Vec<u8>>,
}

/// Where Secrets and ServiceAccounts are read from: the API server ([`KubeSecrets`]) or
/// memory ([`MemorySecrets`], for tests). Reads are by name only; nothing is listed.
pub trait SecretStore: Send + Sync {
    /// The Secret `name` in `namespace`; `None` when there is none.
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredSecret>, String>>;

    /// The `imagePullSecrets` names of the ServiceAccount `name` in `namespace`; `None` when
    /// there is no such ServiceAccount.
    fn service_account_pull_secrets<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, String>>;
}

/// Why a named pull secret gave no logins. Never quotes a secret's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullSecretError {
    #[error("imagePullSecret {name:?} does not exist in namespace {namespace:?}")]
    NotFound { namespace: String, name: String },
    #[error("imagePullSecret {name:?} in namespace {namespace:?} is of type {type_:?}; only {DOCKER_CONFIG_JSON_TYPE} and {DOCKERCFG_TYPE} secrets are read")]
    WrongType {
        namespace: String,
        name: String,
        type_: String,
    },
    #[error("imagePullSecret {name:?} in namespace {namespace:?} is unusable: {why}")]
    Unusable {
        namespace: String,
        name: String,
        why: String,
    },
    #[error("failed to read imagePullSecret {name:?} in namespace {namespace:?}: {why}")]
    Read {
        namespace: String,
        name: String,
        why: String,
    },
    #[error("failed to read the imagePullSecrets of service account {name:?} in namespace {namespace:?}: {why}")]
    ServiceAccount {
        namespace: String,
        name: String,
        why: String,
    },
    #[error("more than {MAX_PULL_SECRETS} imagePullSecrets named; only the first {MAX_PULL_SECRETS} are read")]
    TooMany,
    #[error(
        "more than {MAX_LOGINS} registry entries in the imagePullSecrets; the rest are not used"
    )]
    TooManyLogins,
    #[error("the imagePullSecrets could not be read within {PULL_SECRET_READ_TIMEOUT:?}")]
    TimedOut,
}

/// What a workload's pull secrets gave: its logins, and why any named secret gave none.
#[derive(Debug, Clone, Default)]
pub struct WorkloadLogins {
    pub logins: Arc<DockerConfig>,
    pub problems: Vec<PullSecretError>,
}

/// Why a secret's content gives no logins (a fixed text: the content is never quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnusableSecret {
    WrongType(String),
    Unusable(String),
}

/// Reads one of the Docker config formats.
type DockerConfigParser = fn(&[u8]) -> Result<DockerConfig, CredentialsError>;

/// The logins of one Secret, checked as the module documentation says.
pub fn logins_of(secret: &StoredSecret) -> Result<DockerConfig, UnusableSecret> {
    let (key, parse): (&str, DockerConfigParser) = match secret.type_.as_str() {
        DOCKER_CONFIG_JSON_TYPE => (DOCKER_CONFIG_JSON_KEY, DockerConfig::from_json),
        DOCKERCFG_TYPE => (DOCKERCFG_KEY, DockerConfig::from_dockercfg),
        other => return Err(UnusableSecret::WrongType(bounded_name(other))),
    };
    let unusable = |why: String| Err(UnusableSecret::Unusable(why));
    let Some(bytes) = secret.data.get(key) else {
        return unusable(format!("it has no {key} key"));
    };
    if bytes.len() > MAX_SECRET_BYTES {
        return unusable(format!("its {key} is larger than {MAX_SECRET_BYTES} bytes"));
    }
    let config = match parse(bytes) {
        Ok(config) => config,
        // serde's messages quote the input: only the kind of problem is said.
        Err(CredentialsError::NotDockerConfig { .. }) => {
            return unusable(format!("its {key} is not a Docker config document"))
        }
        Err(CredentialsError::InvalidEntry { .. }) => {
            return unusable(format!(
                "an entry of its {key} has an \"auth\" that is not base64 of user:password"
            ))
        }
    };
    if config.len() > MAX_LOGINS {
        return unusable(format!("its {key} has more than {MAX_LOGINS} entries"));
    }
    Ok(config)
}

/// A name from the cluster, cut for messages.
fn bounded_name(name: &str) -> String {
    crate::check::bounded(name, 256)
}

/// Whether `name` can name an object (a DNS subdomain); anything else is not asked for.
fn is_object_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=253).contains(&bytes.len())
        && bytes.iter().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-' || *byte == b'.'
        })
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

type SecretCache = SingleFlightCache<(String, String), Result<Arc<DockerConfig>, PullSecretError>>;
type AccountCache = SingleFlightCache<(String, String), Result<Arc<Vec<String>>, PullSecretError>>;

/// Reads workloads' pull secrets from a [`SecretStore`], bounded and cached.
pub struct PullSecrets {
    store: Arc<dyn SecretStore>,
    secrets: SecretCache,
    accounts: AccountCache,
    permits: Semaphore,
    timeout: Duration,
}

impl PullSecrets {
    pub fn new(store: Arc<dyn SecretStore>) -> Self {
        PullSecrets {
            store,
            secrets: SingleFlightCache::new(CACHE_CAPACITY),
            accounts: SingleFlightCache::new(CACHE_CAPACITY),
            permits: Semaphore::new(MAX_CONCURRENT_READS),
            timeout: PULL_SECRET_READ_TIMEOUT,
        }
    }

    /// The logins of a workload in `namespace` naming `names`: its own secrets in order (the
    /// first to name a registry wins), or its ServiceAccount's when it names none.
    pub async fn logins(&self, namespace: &str, names: &PullSecretNames) -> WorkloadLogins {
        if namespace.is_empty() {
            return WorkloadLogins::default();
        }
        match tokio::time::timeout(self.timeout, self.read(namespace, names)).await {
            Ok(read) => read,
            Err(_) => WorkloadLogins {
                logins: Arc::default(),
                problems: vec![PullSecretError::TimedOut],
            },
        }
    }

    async fn read(&self, namespace: &str, names: &PullSecretNames) -> WorkloadLogins {
        let mut problems = Vec::new();
        let mut secret_names = names.secrets.clone();
        if secret_names.is_empty() {
            let account = names
                .service_account
                .as_deref()
                .unwrap_or(DEFAULT_SERVICE_ACCOUNT);
            match self.service_account_secrets(namespace, account).await {
                Ok(listed) => secret_names = listed.as_ref().clone(),
                Err(problem) => problems.push(problem),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        secret_names.retain(|name| seen.insert(name.clone()));
        if secret_names.len() > MAX_PULL_SECRETS {
            secret_names.truncate(MAX_PULL_SECRETS);
            problems.push(PullSecretError::TooMany);
        }
        let read = futures::future::join_all(
            secret_names
                .iter()
                .map(|name| self.secret_logins(namespace, name)),
        )
        .await;
        let mut logins = DockerConfig::empty();
        for result in read {
            match result {
                Ok(config) if logins.len() + config.len() > MAX_LOGINS => {
                    problems.push(PullSecretError::TooManyLogins);
                    break;
                }
                Ok(config) => logins.merge_missing(config.as_ref().clone()),
                Err(problem) => problems.push(problem),
            }
        }
        for problem in &problems {
            tracing::warn!(namespace, %problem, "imagePullSecret not used");
        }
        WorkloadLogins {
            logins: Arc::new(logins),
            problems,
        }
    }

    async fn secret_logins(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<DockerConfig>, PullSecretError> {
        let not_found = || PullSecretError::NotFound {
            namespace: namespace.to_owned(),
            name: bounded_name(name),
        };
        if !is_object_name(name) {
            return Err(not_found());
        }
        let key = (namespace.to_owned(), name.to_owned());
        self.secrets
            .get_or_fill(&key, ttl_of, || async {
                let read = {
                    let _permit = self.permits.acquire().await;
                    self.store.secret(namespace, name).await
                };
                let secret = read
                    .map_err(|why| PullSecretError::Read {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        why,
                    })?
                    .ok_or_else(not_found)?;
                logins_of(&secret)
                    .map(Arc::new)
                    .map_err(|unusable| match unusable {
                        UnusableSecret::WrongType(type_) => PullSecretError::WrongType {
                            namespace: namespace.to_owned(),
                            name: name.to_owned(),
                            type_,
                        },
                        UnusableSecret::Unusable(why) => PullSecretError::Unusable {
                            namespace: namespace.to_owned(),
                            name: name.to_owned(),
                            why,
                        },
                    })
            })
            .await
    }

    async fn service_account_secrets(
        &self,
        namespace: &str,
        account: &str,
    ) -> Result<Arc<Vec<String>>, PullSecretError> {
        if !is_object_name(account) {
            return Ok(Arc::default());
        }
        let key = (namespace.to_owned(), account.to_owned());
        self.accounts
            .get_or_fill(&key, ttl_of, || async {
                let read = {
                    let _permit = self.permits.acquire().await;
                    self.store
                        .service_account_pull_secrets(namespace, account)
                        .await
                };
                read.map(|names| Arc::new(names.unwrap_or_default()))
                    .map_err(|why| PullSecretError::ServiceAccount {
                        namespace: namespace.to_owned(),
                        name: account.to_owned(),
                        why,
                    })
            })
            .await
    }
}

fn ttl_of<T>(result: &Result<T, PullSecretError>) -> Duration {
    match result {
        Ok(_) => PULL_SECRET_TTL,
        // A secret that does not exist yet may be created a moment after its pod.
        Err(_) => FAILED_READ_TTL,
    }
}

/// Secrets and ServiceAccounts through the API server: `get` by name, nothing listed or
/// watched (see the chart's `workloadCredentials` RBAC).
pub struct KubeSecrets {
    client: ::kube::Client,
}

impl KubeSecrets {
    pub fn new(client: ::kube::Client) -> Self {
        KubeSecrets { client }
    }
}

impl SecretStore for KubeSecrets {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredSecret>, String>> {
        Box::pin(async move {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            let secret = api.get_opt(name).await.map_err(|error| error.to_string())?;
            Ok(secret.map(|secret| StoredSecret {
                type_: secret.type_.unwrap_or_default(),
                data: secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, value)| (key, value.0))
                    .collect(),
            }))
        })
    }

    fn service_account_pull_secrets<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, String>> {
        Box::pin(async move {
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
            let account = api.get_opt(name).await.map_err(|error| error.to_string())?;
            Ok(account.map(|account| {
                account
                    .image_pull_secrets
                    .unwrap_or_default()
                    .into_iter()
                    .map(|reference| reference.name)
                    .collect()
            }))
        })
    }
}

/// Secrets and ServiceAccounts in memory, keyed by (namespace, name): for tests.
#[derive(Debug, Default)]
pub struct MemorySecrets {
    secrets: std::sync::Mutex<BTreeMap<(String, String), StoredSecret>>,
    accounts: std::sync::Mutex<BTreeMap<(String, String), Vec<String>>>,
}

impl MemorySecrets {
    pub fn insert_secret(&self, namespace: &str, name: &str, secret: StoredSecret) {
        self.secrets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((namespace.to_owned(), name.to_owned()), secret);
    }

    /// A `kubernetes.io/dockerconfigjson` secret holding `document`.
    pub fn insert_docker_config(&self, namespace: &str, name: &str, document: &str) {
        self.insert_secret(
            namespace,
            name,
            StoredSecret {
                type_: DOCKER_CONFIG_JSON_TYPE.to_owned(),
                data: BTreeMap::from([(
                    DOCKER_CONFIG_JSON_KEY.to_owned(),
                    document.as_bytes().to_vec(),
                )]),
            },
        );
    }

    pub fn insert_service_account(&self, namespace: &str, name: &str, pull_secrets: &[&str]) {
        self.accounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                (namespace.to_owned(), name.to_owned()),
                pull_secrets.iter().map(|name| (*name).to_owned()).collect(),
            );
    }
}

impl SecretStore for MemorySecrets {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredSecret>, String>> {
        let found = self
            .secrets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn service_account_pull_secrets<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, String>> {
        let found = self
            .accounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Credentials, RegistryLogin};
    use base64::Engine as _;

    fn secret(type_: &str, key: &str, value: &[u8]) -> StoredSecret {
        StoredSecret {
            type_: type_.to_owned(),
            data: BTreeMap::from([(key.to_owned(), value.to_vec())]),
        }
    }

    fn auth(user_password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(user_password)
    }

    #[test]
    fn secrets_give_logins_only_when_their_type_and_content_are_docker_configs() {
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            auth("u:p")
        );
        let dockercfg = format!(r#"{{"ghcr.io": {{"auth": "{}"}}}}"#, auth("u:p"));
        let many: serde_json::Map<String, serde_json::Value> = (0..=MAX_LOGINS)
            .map(|index| {
                (
                    format!("r{index}.example"),
                    serde_json::json!({"auth": auth("u:p")}),
                )
            })
            .collect();
        let many = serde_json::json!({ "auths": many }).to_string();
        let secret_password = "hunter2-do-not-echo";
        let garbage = format!(r#"{{"auths": "{secret_password}"}}"#);
        let huge = format!(
            r#"{{"auths": {{}}, "pad": "{}"}}"#,
            "x".repeat(MAX_SECRET_BYTES)
        );
        let json_type = DOCKER_CONFIG_JSON_TYPE;
        let json_key = DOCKER_CONFIG_JSON_KEY;
        // secret, Ok(entries) or the start of the refusal
        let cases: Vec<(StoredSecret, Result<usize, &str>)> = vec![
            (secret(json_type, json_key, json.as_bytes()), Ok(1)),
            (
                secret(DOCKERCFG_TYPE, DOCKERCFG_KEY, dockercfg.as_bytes()),
                Ok(1),
            ),
            // The right key under another type is not read.
            (
                secret("Opaque", json_key, json.as_bytes()),
                Err("type Opaque"),
            ),
            (
                secret("kubernetes.io/service-account-token", "token", b"eyJ"),
                Err("type kubernetes.io/service-account-token"),
            ),
            (
                secret(json_type, DOCKERCFG_KEY, dockercfg.as_bytes()),
                Err("it has no .dockerconfigjson key"),
            ),
            // A .dockerconfigjson document under the legacy type has one entry, `auths`,
            // holding no login.
            (
                secret(DOCKERCFG_TYPE, DOCKERCFG_KEY, json.as_bytes()),
                Ok(0),
            ),
            (
                secret(json_type, json_key, br#"{"auths": {"h": {"auth": "%%"}}}"#),
                Err("an entry of its .dockerconfigjson"),
            ),
            (
                secret(json_type, json_key, garbage.as_bytes()),
                Err("its .dockerconfigjson is not a Docker config"),
            ),
            (
                secret(json_type, json_key, huge.as_bytes()),
                Err("its .dockerconfigjson is larger"),
            ),
            (
                secret(json_type, json_key, many.as_bytes()),
                Err("its .dockerconfigjson has more than"),
            ),
        ];
        for (secret, expected) in cases {
            let got = logins_of(&secret);
            match (&got, expected) {
                (Ok(config), Ok(entries)) => assert_eq!(config.len(), entries),
                (Err(UnusableSecret::WrongType(type_)), Err(start)) => {
                    assert_eq!(format!("type {type_}"), start)
                }
                (Err(UnusableSecret::Unusable(why)), Err(start)) => {
                    assert!(why.starts_with(start), "{why:?} for {start:?}");
                    assert!(!why.contains(secret_password), "{why}");
                }
                _ => panic!("{:?}: expected {expected:?}, got {got:?}", secret.type_),
            }
        }
    }

    #[test]
    fn names_come_from_the_pod_spec() {
        let spec = serde_json::json!({
            "serviceAccountName": "builder",
            "imagePullSecrets": [{"name": "one"}, {"name": ""}, {}, {"name": "two"}],
        });
        assert_eq!(
            PullSecretNames::of_pod_spec(&spec),
            PullSecretNames {
                secrets: vec!["one".to_owned(), "two".to_owned()],
                service_account: Some("builder".to_owned()),
            }
        );
        let legacy = serde_json::json!({"serviceAccount": "old", "imagePullSecrets": "nonsense"});
        assert_eq!(
            PullSecretNames::of_pod_spec(&legacy),
            PullSecretNames {
                secrets: Vec::new(),
                service_account: Some("old".to_owned()),
            }
        );
        assert_eq!(
            PullSecretNames::of_pod_spec(&serde_json::json!(null)),
            PullSecretNames::default()
        );
    }

    fn docker_config(host: &str, user: &str) -> String {
        format!(
            r#"{{"auths": {{"{host}": {{"auth": "{}"}}}}}}"#,
            auth(&format!("{user}:pw"))
        )
    }

    fn user(logins: &WorkloadLogins, host: &str) -> Option<String> {
        match logins.logins.login_for(host, "acme/api") {
            Some(RegistryLogin::Password(credentials)) => {
                Some(Credentials::username(credentials).to_owned())
            }
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_pods_secrets_or_else_its_service_accounts_in_its_own_namespace() {
        let store = Arc::new(MemorySecrets::default());
        store.insert_docker_config("team-a", "first", &docker_config("ghcr.io", "first"));
        store.insert_docker_config("team-a", "second", &docker_config("ghcr.io", "second"));
        store.insert_docker_config("team-a", "other", &docker_config("quay.io", "other"));
        store.insert_docker_config("team-b", "theirs", &docker_config("ghcr.io", "theirs"));
        store.insert_secret("team-a", "opaque", secret("Opaque", "password", b"hunter2"));
        store.insert_service_account("team-a", "default", &["other"]);
        store.insert_service_account("team-a", "builder", &["second"]);
        let pull_secrets = PullSecrets::new(store);
        let names = |secrets: &[&str], account: Option<&str>| PullSecretNames {
            secrets: secrets.iter().map(|name| (*name).to_owned()).collect(),
            service_account: account.map(str::to_owned),
        };

        // The first secret to name a registry wins; the ServiceAccount is not consulted.
        let read = pull_secrets
            .logins("team-a", &names(&["first", "second"], Some("builder")))
            .await;
        assert_eq!(user(&read, "ghcr.io").as_deref(), Some("first"));
        assert_eq!(user(&read, "quay.io"), None);
        assert!(read.problems.is_empty(), "{:?}", read.problems);

        // No secrets of its own: its ServiceAccount's (`default` when unnamed).
        let read = pull_secrets
            .logins("team-a", &names(&[], Some("builder")))
            .await;
        assert_eq!(user(&read, "ghcr.io").as_deref(), Some("second"));
        let read = pull_secrets.logins("team-a", &names(&[], None)).await;
        assert_eq!(user(&read, "quay.io").as_deref(), Some("other"));

        // Another namespace's secret is never read; an Opaque one gives nothing.
        let read = pull_secrets
            .logins(
                "team-a",
                &names(&["theirs", "opaque", "../team-b/theirs"], None),
            )
            .await;
        assert!(read.logins.is_empty());
        let problems: Vec<String> = read.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("\"theirs\" does not exist in namespace \"team-a\""));
        assert!(problems[1].contains("of type \"Opaque\""));
        assert!(problems.iter().all(|problem| !problem.contains("hunter2")));

        // Bounded: names past the limit are not read.
        let many: Vec<String> = (0..MAX_PULL_SECRETS + 3)
            .map(|index| format!("s{index}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let read = pull_secrets.logins("team-a", &names(&many, None)).await;
        assert!(read.problems.contains(&PullSecretError::TooMany));
        assert_eq!(read.problems.len(), MAX_PULL_SECRETS + 1);

        // No namespace (a cluster-scoped object): nothing is read.
        let read = pull_secrets.logins("", &names(&["first"], None)).await;
        assert!(read.logins.is_empty() && read.problems.is_empty());
    }

    /// An API server that never answers.
    struct Stalled;

    impl SecretStore for Stalled {
        fn secret<'a>(
            &'a self,
            _namespace: &'a str,
            _name: &'a str,
        ) -> BoxFuture<'a, Result<Option<StoredSecret>, String>> {
            Box::pin(std::future::pending())
        }

        fn service_account_pull_secrets<'a>(
            &'a self,
            _namespace: &'a str,
            _name: &'a str,
        ) -> BoxFuture<'a, Result<Option<Vec<String>>, String>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reads_that_do_not_answer_end_at_the_read_timeout_with_no_logins() {
        let pull_secrets = PullSecrets::new(Arc::new(Stalled));
        let started = tokio::time::Instant::now();
        let read = pull_secrets
            .logins("team-a", &PullSecretNames::default())
            .await;
        assert_eq!(started.elapsed(), PULL_SECRET_READ_TIMEOUT);
        assert!(read.logins.is_empty());
        assert_eq!(read.problems, [PullSecretError::TimedOut]);
    }

    proptest::proptest! {
        /// Whatever a secret holds, reading it never panics and no refusal quotes it.
        #[test]
        fn no_refusal_quotes_a_secrets_content(
            prefix in ".{0,24}",
            suffix in ".{0,24}",
            shape in 0usize..6,
            legacy in proptest::bool::ANY,
        ) {
            const MARKER: &str = "MARKER-7f3a";
            let text = format!("{prefix}{MARKER}{suffix}");
            let quoted = serde_json::Value::String(text.clone()).to_string();
            let document = match shape {
                0 => text.clone(),
                1 => format!(r#"{{"auths": {quoted}}}"#),
                2 => format!(r#"{{"auths": {{"h": {{"auth": {quoted}}}}}}}"#),
                3 => format!(r#"{{"auths": {{"h": {{"username": 1, "password": {quoted}}}}}}}"#),
                4 => format!(r#"{{{quoted}: {{"auth": {quoted}}}}}"#),
                _ => format!(r#"[{quoted}]"#),
            };
            let (type_, key) = if legacy {
                (DOCKERCFG_TYPE, DOCKERCFG_KEY)
            } else {
                (DOCKER_CONFIG_JSON_TYPE, DOCKER_CONFIG_JSON_KEY)
            };
            if let Err(UnusableSecret::Unusable(why)) = logins_of(&secret(type_, key, document.as_bytes())) {
                proptest::prop_assert!(!why.contains(MARKER), "{why}");
            }
        }
    }
}
