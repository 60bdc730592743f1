//! A throwaway certificate authority for the loopback servers' TLS, and the
//! rustls configurations that trust it.
//!
//! TLS here protects nothing: it exists so that tests exercise the same code
//! paths as against a real registry (certificate verification against a
//! custom CA bundle, SNI by IP address, HTTPS token realms).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The crypto provider of every TLS configuration in the kit: aws-lc-rs, which
/// the verifier already builds, chosen explicitly so that no process-wide
/// default has to be installed (tests share one process).
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A self-signed CA that issues server certificates for `127.0.0.1` and
/// `localhost`, and the one server identity most guards need.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A server certificate (leaf) with its private key.
#[derive(Clone)]
pub struct ServerIdentity {
    /// The leaf certificate, PEM.
    pub certificate_pem: String,
    /// The leaf's private key, PKCS #8 PEM.
    pub private_key_pem: String,
    certificate_der: CertificateDer<'static>,
    private_key_der: Vec<u8>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A fresh CA named "provenance-gate testkit loopback CA".
    pub fn new() -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name("provenance-gate testkit loopback CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("aws-lc-rs generates a P-256 key");
        let issuer = CertifiedIssuer::self_signed(params, key)
            .expect("rcgen signs a self-signed CA certificate");
        TestCa { issuer }
    }

    /// The CA certificate, PEM: what a client adds to its trust store.
    pub fn certificate_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `127.0.0.1` (IP SAN) and `localhost` (DNS
    /// SAN), serverAuth, signed by this CA.
    pub fn issue_server_identity(&self) -> ServerIdentity {
        self.issue_server_identity_for(&["127.0.0.1", "localhost"])
    }

    /// A server certificate for `names` (IP addresses become IP SANs, others DNS SANs; the
    /// first is also the common name), serverAuth, signed by this CA.
    pub fn issue_server_identity_for(&self, names: &[&str]) -> ServerIdentity {
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .expect("valid subject alternative names");
        params.distinguished_name = distinguished_name(names.first().copied().unwrap_or_default());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("aws-lc-rs generates a P-256 key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("rcgen signs a server certificate");
        ServerIdentity {
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
            certificate_der: certificate.der().clone(),
            private_key_der: key.serialize_der(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl ServerIdentity {
    /// A rustls server configuration presenting this identity (HTTP/1.1).
    pub(crate) fn rustls_server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.private_key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.certificate_der.clone()], key)
            .expect("the kit's server certificate and key match");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A rustls client configuration that trusts exactly the CAs in `ca_pem`.
pub(crate) fn rustls_client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates_from_pem(ca_pem) {
        roots
            .add(certificate)
            .expect("the CA certificate is a valid trust anchor");
    }
    let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Every `CERTIFICATE` block of a PEM bundle.
pub(crate) fn certificates_from_pem(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("the CA bundle is well-formed PEM");
    assert!(
        !certificates.is_empty(),
        "the CA bundle holds no CERTIFICATE block"
    );
    certificates
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "provenance-gate testkit");
    name.push(DnType::CommonName, common_name);
    name
}

/// A certificate for signing (digitalSignature only) and its key, as DER.
pub(crate) struct SigningIdentity {
    pub(crate) certificate_der: Vec<u8>,
    pub(crate) private_key_pkcs8_der: Vec<u8>,
}

impl TestCa {
    /// A P-256 signing certificate issued by this CA, e.g. for the token
    /// server's JWTs, which distribution verifies against a root bundle.
    pub(crate) fn issue_signing_identity(&self, common_name: &str) -> SigningIdentity {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("aws-lc-rs generates a P-256 key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("rcgen signs a signing certificate");
        SigningIdentity {
            certificate_der: certificate.der().to_vec(),
            private_key_pkcs8_der: key.serialize_der(),
        }
    }
}
