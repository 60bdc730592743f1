//! Certificates and keys: the Fulcio-like CA, the TSA and the per-bundle leaf.
//!
//! Certificates are assembled field by field with `x509-cert` and signed with
//! ECDSA P-256 / SHA-256, because that gives full control over what matters
//! to a Sigstore verifier (validity windows in the past, critical flags,
//! extended key usages, key identifiers, Fulcio's claim extensions) and
//! nothing else.

use std::time::Duration;

use const_oid::db::rfc5280::{ID_KP_CODE_SIGNING, ID_KP_SERVER_AUTH, ID_KP_TIME_STAMPING};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::{BitString, Ia5String, OctetString, UtcTime, Utf8StringRef};
use der::{Decode, Encode};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

/// `ecdsa-with-SHA256` (RFC 5758), the only signature algorithm the kit uses.
pub(crate) const ECDSA_WITH_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// A key pair together with the certificate that binds it to a name.
pub(crate) struct Authority {
    pub(crate) key: SigningKey,
    pub(crate) certificate: Certificate,
    pub(crate) der: Vec<u8>,
}

impl Authority {
    pub(crate) fn subject(&self) -> &Name {
        &self.certificate.tbs_certificate.subject
    }

    pub(crate) fn serial_number(&self) -> &SerialNumber {
        &self.certificate.tbs_certificate.serial_number
    }

    fn key_identifier(&self) -> Vec<u8> {
        key_identifier(&self.key)
    }
}

/// What a certificate is for; decides its extensions.
pub(crate) enum Profile {
    /// A self-signed root that may sign intermediates.
    Root,
    /// An intermediate CA that may only sign leaves, restricted to `usage`
    /// the way GitHub's Fulcio and TSA intermediates are.
    Intermediate { usage: ObjectIdentifier },
    /// The TSA's signing certificate: not a CA, critical timeStamping EKU
    /// (RFC 3161 section 2.3 requires exactly that).
    TimestampSigner,
    /// A Fulcio-style code-signing leaf: empty subject, critical URI SAN,
    /// Fulcio claim extensions.
    CodeSigningLeaf {
        san_uri: Option<String>,
        claim_extensions: Vec<(ObjectIdentifier, String)>,
        usage: LeafUsage,
    },
}

/// The extended key usage a code-signing leaf carries.
#[derive(Clone, Copy)]
pub(crate) enum LeafUsage {
    CodeSigning,
    /// A TLS server certificate, which a Sigstore verifier must not accept.
    ServerAuthOnly,
}

/// A fresh ECDSA P-256 key.
pub(crate) fn generate_key() -> SigningKey {
    SigningKey::random(&mut OsRng)
}

/// Issues a certificate for `subject_key`, signed by `issuer` (or by
/// `subject_key` itself when `issuer` is `None`, for a root).
pub(crate) fn issue(
    subject: Name,
    subject_key: SigningKey,
    issuer: Option<&Authority>,
    validity: (jiff::Timestamp, jiff::Timestamp),
    profile: Profile,
) -> Authority {
    let subject_key_id = key_identifier(&subject_key);
    let (issuer_name, authority_key_id) = match issuer {
        Some(issuer) => (issuer.subject().clone(), issuer.key_identifier()),
        None => (subject.clone(), subject_key_id.clone()),
    };

    let mut extensions = Vec::new();
    match &profile {
        Profile::Root => {
            extensions.push(extension(
                true,
                &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            ));
            extensions.push(extension(
                true,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(2),
                },
            ));
            extensions.push(extension(
                false,
                &SubjectKeyIdentifier(octets(subject_key_id.clone())),
            ));
        }
        Profile::Intermediate { usage } => {
            extensions.push(extension(
                true,
                &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            ));
            extensions.push(extension(false, &ExtendedKeyUsage(vec![*usage])));
            extensions.push(extension(
                true,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
            ));
            extensions.push(extension(
                false,
                &SubjectKeyIdentifier(octets(subject_key_id.clone())),
            ));
            extensions.push(authority_key_identifier(&authority_key_id));
        }
        Profile::TimestampSigner => {
            extensions.push(extension(
                true,
                &KeyUsage(KeyUsages::DigitalSignature.into()),
            ));
            extensions.push(extension(
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            ));
            extensions.push(extension(
                false,
                &SubjectKeyIdentifier(octets(subject_key_id.clone())),
            ));
            extensions.push(authority_key_identifier(&authority_key_id));
            extensions.push(extension(
                true,
                &ExtendedKeyUsage(vec![ID_KP_TIME_STAMPING]),
            ));
        }
        Profile::CodeSigningLeaf {
            san_uri,
            claim_extensions,
            usage,
        } => {
            // Same extensions, in the same order, as a certificate from
            // GitHub's Fulcio (see the real bundles in the shared test data).
            extensions.push(extension(
                true,
                &KeyUsage(KeyUsages::DigitalSignature.into()),
            ));
            let purpose = match usage {
                LeafUsage::CodeSigning => ID_KP_CODE_SIGNING,
                LeafUsage::ServerAuthOnly => ID_KP_SERVER_AUTH,
            };
            extensions.push(extension(false, &ExtendedKeyUsage(vec![purpose])));
            extensions.push(extension(
                false,
                &SubjectKeyIdentifier(octets(subject_key_id.clone())),
            ));
            extensions.push(authority_key_identifier(&authority_key_id));
            if let Some(uri) = san_uri {
                let uri = Ia5String::new(uri)
                    .expect("the build signer URI (the SAN) must be ASCII, as a URI is");
                // Critical because the subject is empty (RFC 5280 4.2.1.6).
                extensions.push(extension(
                    true,
                    &SubjectAltName(vec![GeneralName::UniformResourceIdentifier(uri)]),
                ));
            }
            for (oid, value) in claim_extensions {
                extensions.push(fulcio_claim_extension(*oid, value));
            }
        }
    }

    let subject_public_key_info = subject_public_key_info(&subject_key);
    let tbs_certificate = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial_number(),
        signature: ecdsa_with_sha256(),
        issuer: issuer_name,
        validity: Validity {
            not_before: utc_time(validity.0),
            not_after: utc_time(validity.1),
        },
        subject,
        subject_public_key_info,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs_certificate
        .to_der()
        .expect("a certificate assembled by the kit encodes to DER");
    let signing_key = issuer.map_or(&subject_key, |issuer| &issuer.key);
    let certificate = Certificate {
        tbs_certificate,
        signature_algorithm: ecdsa_with_sha256(),
        signature: BitString::from_bytes(&sign_der(signing_key, &tbs_der))
            .expect("an ECDSA signature fits in a BIT STRING"),
    };
    let der = certificate
        .to_der()
        .expect("a certificate assembled by the kit encodes to DER");
    Authority {
        key: subject_key,
        certificate,
        der,
    }
}

/// A DER-encoded ECDSA P-256 / SHA-256 signature over `message`.
pub(crate) fn sign_der(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let signature: Signature = key.sign(message);
    signature.to_der().as_bytes().to_vec()
}

/// The `AlgorithmIdentifier` of `ecdsa-with-SHA256`, whose parameters are
/// absent (RFC 5758 section 3.2).
pub(crate) fn ecdsa_with_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    }
}

/// A name from its RFC 4514 string, e.g. `CN=Fulcio Intermediate,O=acme`
/// (RFC 4514 lists the RDNs last-first, so that encodes O before CN).
pub(crate) fn name(rfc4514: &str) -> Name {
    rfc4514
        .parse()
        .expect("the kit's distinguished names are valid RFC 4514 strings")
}

/// A positive, random, 16-byte serial number, as CAs issue them.
pub(crate) fn random_serial_number() -> SerialNumber {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    // Clear the sign bit and keep the first byte non-zero so the INTEGER is
    // positive and exactly 16 bytes long.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::new(&bytes).expect("a 16-byte positive serial number is valid")
}

/// Seconds since the epoch of `time`, which the kit only uses for dates
/// between 1970 and 2049 (the range of a DER `UTCTime`).
pub(crate) fn unix_duration(time: jiff::Timestamp) -> Duration {
    let seconds = u64::try_from(time.as_second())
        .expect("the kit only issues certificates and timestamps after 1970");
    Duration::from_secs(seconds)
}

fn utc_time(time: jiff::Timestamp) -> Time {
    Time::UtcTime(
        UtcTime::from_unix_duration(unix_duration(time))
            .expect("certificate validity dates must lie between 1970 and 2049"),
    )
}

fn subject_public_key_info(key: &SigningKey) -> SubjectPublicKeyInfoOwned {
    let der = key
        .verifying_key()
        .to_public_key_der()
        .expect("a P-256 public key encodes as SubjectPublicKeyInfo");
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes())
        .expect("p256's SubjectPublicKeyInfo decodes with spki")
}

/// The key identifier of `key`: a truncated SHA-256 of its public key bits
/// (RFC 7093 section 2, method 1).
fn key_identifier(key: &SigningKey) -> Vec<u8> {
    let point = key.verifying_key().to_encoded_point(false);
    Sha256::digest(point.as_bytes())[..20].to_vec()
}

fn octets(bytes: Vec<u8>) -> OctetString {
    OctetString::new(bytes).expect("a key identifier fits in an OCTET STRING")
}

fn authority_key_identifier(key_id: &[u8]) -> Extension {
    extension(
        false,
        &AuthorityKeyIdentifier {
            key_identifier: Some(octets(key_id.to_vec())),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
    )
}

fn extension<T: AssociatedOid + Encode>(critical: bool, value: &T) -> Extension {
    Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(
            value
                .to_der()
                .expect("a standard extension value encodes to DER"),
        )
        .expect("an extension value fits in an OCTET STRING"),
    }
}

/// A Fulcio claim extension from `1.3.6.1.4.1.57264.1.8` on: the value is a
/// DER UTF8String inside the extension's OCTET STRING, never critical.
fn fulcio_claim_extension(oid: ObjectIdentifier, value: &str) -> Extension {
    let utf8 = Utf8StringRef::new(value)
        .expect("a claim value is a string")
        .to_der()
        .expect("a UTF8String encodes to DER");
    Extension {
        extn_id: oid,
        critical: false,
        extn_value: OctetString::new(utf8).expect("a claim fits in an OCTET STRING"),
    }
}
