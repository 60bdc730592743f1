//! The webhook's serving certificate, and the CA that client certificates must chain to
//! when the API server is authenticated: read from PEM files and reloaded when they change
//! on disk, so that cert-manager renewals and Secret rotations need no restart.
//!
//! Kubernetes updates a mounted Secret by swapping a `..data` symlink, which file-event APIs
//! report unreliably (the watched path itself never changes), so the files are re-read on a
//! timer and compared by content. A new pair takes effect for new handshakes only: the
//! certificate is chosen per handshake by [`ReloadingCertificate`], so open connections are
//! never dropped. A bad new pair (unparsable, or a key that does not match) is logged and the
//! pair in force stays.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::reload::{self, fingerprint, LastSeen, Reload, Reloadable};

/// Certificate chains and keys are a few KiB; anything near this is not one.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why a certificate/key pair was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} {path} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge { what: &'static str, path: PathBuf },
    #[error("{path} holds no PEM certificate (expected `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a valid PEM certificate chain: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path} holds no usable private key (PKCS #8, PKCS #1 or SEC1 PEM): {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path} is not a usable client CA bundle: {reason}")]
    BadClientCa { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The provider every TLS object of the server uses: aws-lc-rs, named explicitly so that no
/// process-wide default provider is needed (and ring is never linked in).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls server configuration: TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 by ALPN (the API
/// server speaks either), certificates from `resolver`. With `client_ca`, every handshake
/// must present a client certificate chaining to it; without, none is asked for.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    client_ca: Option<Arc<ReloadingClientCa>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Where the pair lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM certificate chain, leaf first (`tls.crt`).
    pub certificate: PathBuf,
    /// PEM private key (`tls.key`).
    pub key: PathBuf,
}

/// What one look at the files found; `Applied` carries the description of what is now used.
pub type ReloadOutcome = Reload<TlsError>;

/// The serving certificate, swapped atomically when valid new files appear.
pub struct ReloadingCertificate {
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// A refused pair is reported once, not at every poll; an unchanged pair is not parsed
    /// again.
    last_seen: LastSeen,
}

impl fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertificate {
    /// Loads the pair; fails when it cannot be served (start-up must not go on without one).
    pub fn load(files: CertificateFiles) -> Result<Self, TlsError> {
        let provider = crypto_provider();
        let (certificate_bytes, key_bytes) = read_pair(&files)?;
        let key = certified_key(&files, &provider, &certificate_bytes, &key_bytes)?;
        tracing::info!(
            certificate = %files.certificate.display(),
            "serving certificate loaded: {}",
            describe(&key)
        );
        Ok(ReloadingCertificate {
            last_seen: LastSeen::new(fingerprint(&[&certificate_bytes, &key_bytes])),
            files,
            provider,
            current: ArcSwap::from_pointee(key),
        })
    }

    /// The pair served to new handshakes now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Looks at the files every `interval`, forever; logs each change and each refusal.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        reload::watch(self, interval).await
    }
}

impl Reloadable for ReloadingCertificate {
    type Error = TlsError;
    const WHAT: &'static str = "serving certificate";
    fn path(&self) -> &Path {
        &self.files.certificate
    }
    fn last_seen(&self) -> &LastSeen {
        &self.last_seen
    }
    fn read(&self) -> Result<Vec<Vec<u8>>, TlsError> {
        let (certificate, key) = read_pair(&self.files)?;
        Ok(vec![certificate, key])
    }
    fn apply(&self, content: &[Vec<u8>]) -> Result<String, TlsError> {
        let [certificate, key] = content else {
            unreachable!("read gives the certificate and the key")
        };
        let key = certified_key(&self.files, &self.provider, certificate, key)?;
        let description = describe(&key);
        self.current.store(Arc::new(key));
        Ok(description)
    }
    fn is_read_failure(error: &TlsError) -> bool {
        matches!(error, TlsError::Read { .. })
    }
}

/// The CA bundle that client certificates must chain to (`serve --client-ca`), swapped
/// atomically when the file changes to a valid new bundle. The verifier in force decides
/// each handshake; open connections are not re-checked.
#[derive(Debug)]
pub struct ReloadingClientCa {
    path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    last_seen: LastSeen,
}

impl ReloadingClientCa {
    /// Loads the bundle; fails when it holds no usable CA certificate.
    pub fn load(path: PathBuf) -> Result<Self, TlsError> {
        let provider = crypto_provider();
        let bytes = read_limited(&path, "client CA")?;
        let (verifier, description) = client_verifier(&path, &provider, &bytes)?;
        tracing::info!(path = %path.display(), "client CA loaded: {description}");
        Ok(ReloadingClientCa {
            last_seen: LastSeen::new(fingerprint(&[&bytes])),
            path,
            provider,
            current: ArcSwap::from_pointee(verifier),
        })
    }

    /// Looks at the file every `interval`, forever; logs each change and each refusal.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        reload::watch(self, interval).await
    }
}

impl Reloadable for ReloadingClientCa {
    type Error = TlsError;
    const WHAT: &'static str = "client CA";
    fn path(&self) -> &Path {
        &self.path
    }
    fn last_seen(&self) -> &LastSeen {
        &self.last_seen
    }
    fn read(&self) -> Result<Vec<Vec<u8>>, TlsError> {
        Ok(vec![read_limited(&self.path, "client CA")?])
    }
    fn apply(&self, content: &[Vec<u8>]) -> Result<String, TlsError> {
        let (verifier, description) =
            client_verifier(&self.path, &self.provider, &content.concat())?;
        self.current.store(Arc::new(verifier));
        Ok(description)
    }
    fn is_read_failure(error: &TlsError) -> bool {
        matches!(error, TlsError::Read { .. })
    }
}

/// A verifier requiring a client certificate chaining to the bundle in `pem`, and how many
/// CA certificates it holds.
fn client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
    pem: &[u8],
) -> Result<(Arc<dyn ClientCertVerifier>, String), TlsError> {
    let bad = |reason: String| TlsError::BadClientCa {
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(error.to_string()))?;
    if certificates.is_empty() {
        return Err(bad("no CERTIFICATE block found".to_owned()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in &certificates {
        roots
            .add(certificate.clone())
            .map_err(|error| bad(error.to_string()))?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .build()
            .map_err(|error| bad(error.to_string()))?;
    Ok((
        verifier,
        format!("{} CA certificate(s)", certificates.len()),
    ))
}

impl ClientCertVerifier for ReloadingClientCa {
    /// No CA names are sent: they would have to outlive a reload. Clients (the API server's
    /// kubeconfig) present their one certificate regardless.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// The subject of a DER certificate (`CN=kube-apiserver,O=…`), for the decision records;
/// `None` when it does not parse (the handshake already verified it).
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    <x509_cert::Certificate as der::Decode>::from_der(der)
        .ok()
        .map(|certificate| certificate.tbs_certificate.subject.to_string())
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read_limited(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let read_error = |error| TlsError::Read {
        what,
        path: path.to_owned(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            what,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

fn read_pair(files: &CertificateFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    Ok((
        read_limited(&files.certificate, "certificate")?,
        read_limited(&files.key, "private key")?,
    ))
}

fn certified_key(
    files: &CertificateFiles,
    provider: &CryptoProvider,
    certificate_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(certificate_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::BadCertificate {
            path: files.certificate.clone(),
            reason: error.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: files.certificate.clone(),
        });
    };
    // Parse the leaf now, so that garbage between PEM markers is refused here rather than
    // at the first handshake.
    <x509_cert::Certificate as der::Decode>::from_der(leaf).map_err(|error| {
        TlsError::BadCertificate {
            path: files.certificate.clone(),
            reason: error.to_string(),
        }
    })?;
    let bad_key = |reason: String| TlsError::BadKey {
        path: files.key.clone(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| bad_key(error.to_string()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| bad_key(error.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: files.certificate.clone(),
                key: files.key.clone(),
            })
        }
        // The provider cannot tell for this key type; the handshake will.
        Err(rustls::Error::InconsistentKeys(_)) => Ok(certified),
        Err(error) => Err(TlsError::BadCertificate {
            path: files.certificate.clone(),
            reason: error.to_string(),
        }),
    }
}

/// Subject, serial and expiry of the leaf, for the log.
fn describe(key: &CertifiedKey) -> String {
    let Some(leaf) = key.cert.first() else {
        return "no certificate".to_owned();
    };
    match <x509_cert::Certificate as der::Decode>::from_der(leaf) {
        Ok(certificate) => {
            let tbs = &certificate.tbs_certificate;
            format!(
                "subject {}, serial {}, valid until {}",
                tbs.subject,
                hex::encode(tbs.serial_number.as_bytes()),
                tbs.validity.not_after
            )
        }
        Err(error) => format!("unparsable leaf certificate: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(common_name: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("valid subject alternative name");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().expect("key generation");
        let certificate = params.self_signed(&key).expect("self-signed certificate");
        (certificate.pem(), key.serialize_pem())
    }

    fn write_pair(dir: &Path, certificate: &str, key: &str) -> CertificateFiles {
        let files = CertificateFiles {
            certificate: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&files.certificate, certificate).expect("write certificate");
        std::fs::write(&files.key, key).expect("write key");
        files
    }

    fn leaf(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].to_vec()
    }

    #[test]
    fn reloads_a_valid_new_pair_and_keeps_the_old_one_on_a_bad_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first_certificate, first_key) = pair("first");
        let files = write_pair(dir.path(), &first_certificate, &first_key);
        let served = ReloadingCertificate::load(files.clone()).expect("valid pair");
        let first = leaf(&served.current());
        assert!(matches!(
            served.reload_if_changed(),
            ReloadOutcome::Unchanged
        ));

        // A key from another pair: refused, the first pair stays, and it is reported once.
        let (second_certificate, second_key) = pair("second");
        write_pair(dir.path(), &second_certificate, &first_key);
        match served.reload_if_changed() {
            ReloadOutcome::Rejected(TlsError::KeyMismatch { .. }) => {}
            other => panic!("expected a key mismatch, got {other:?}"),
        }
        assert_eq!(leaf(&served.current()), first);
        assert!(matches!(
            served.reload_if_changed(),
            ReloadOutcome::Unchanged
        ));

        // Garbage: refused too.
        write_pair(dir.path(), "not a certificate", &second_key);
        assert!(matches!(
            served.reload_if_changed(),
            ReloadOutcome::Rejected(TlsError::NoCertificate { .. })
        ));
        assert_eq!(leaf(&served.current()), first);

        // The matching second pair: served.
        write_pair(dir.path(), &second_certificate, &second_key);
        match served.reload_if_changed() {
            ReloadOutcome::Applied(description) => {
                assert!(description.contains("CN=second"), "{description}")
            }
            other => panic!("expected a reload, got {other:?}"),
        }
        assert_ne!(leaf(&served.current()), first);
    }

    #[test]
    fn start_up_refuses_a_missing_or_mismatched_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = CertificateFiles {
            certificate: dir.path().join("absent.crt"),
            key: dir.path().join("absent.key"),
        };
        let error = ReloadingCertificate::load(missing).expect_err("missing files");
        assert!(error.to_string().contains("absent.crt"), "{error}");

        let (certificate, _) = pair("one");
        let (_, other_key) = pair("two");
        let files = write_pair(dir.path(), &certificate, &other_key);
        assert!(matches!(
            ReloadingCertificate::load(files),
            Err(TlsError::KeyMismatch { .. })
        ));
    }

    /// A CA and a client certificate it signed (DER).
    fn client_ca_and_leaf(name: &str) -> (String, CertificateDer<'static>) {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .expect("CA");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = params
            .signed_by(&rcgen::KeyPair::generate().unwrap(), &ca)
            .expect("client certificate");
        (ca.pem(), leaf.der().clone())
    }

    #[test]
    fn the_client_ca_is_reloaded_and_a_bad_bundle_keeps_the_one_in_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("client-ca.crt");
        let (first_ca, first_leaf) = client_ca_and_leaf("first");
        let (second_ca, second_leaf) = client_ca_and_leaf("second");
        let accepts = |verifier: &ReloadingClientCa, leaf: &CertificateDer<'static>| {
            verifier
                .verify_client_cert(leaf, &[], UnixTime::now())
                .is_ok()
        };
        std::fs::write(&path, &first_ca).unwrap();
        let verifier = ReloadingClientCa::load(path.clone()).expect("valid bundle");
        assert!(accepts(&verifier, &first_leaf));
        assert!(!accepts(&verifier, &second_leaf));
        assert!(matches!(
            verifier.reload_if_changed(),
            ReloadOutcome::Unchanged
        ));

        std::fs::write(&path, "not a certificate").unwrap();
        assert!(matches!(
            verifier.reload_if_changed(),
            ReloadOutcome::Rejected(TlsError::BadClientCa { .. })
        ));
        assert!(accepts(&verifier, &first_leaf));

        std::fs::write(&path, &second_ca).unwrap();
        assert!(matches!(
            verifier.reload_if_changed(),
            ReloadOutcome::Applied(_)
        ));
        assert!(accepts(&verifier, &second_leaf));
        assert!(!accepts(&verifier, &first_leaf));
        assert_eq!(
            certificate_subject(&second_leaf).as_deref(),
            Some("CN=kube-apiserver")
        );

        std::fs::write(&path, "").unwrap();
        assert!(ReloadingClientCa::load(path).is_err(), "an empty bundle");
    }

    #[test]
    fn server_config_offers_h2_and_http11() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (certificate, key) = pair("config");
        let files = write_pair(dir.path(), &certificate, &key);
        let served = Arc::new(ReloadingCertificate::load(files).expect("valid pair"));
        let config = server_config(served, None).expect("config");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
