//! RFC 3161 time-stamp tokens, shaped like the ones GitHub's TSA returns.
//!
//! The bundle carries a whole `TimeStampResp` (status + token), not a bare
//! token: that is what GitHub's bundles contain and what `@sigstore/verify`
//! parses, while `sigstore-tsa` accepts either.

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::db::rfc5911::{ID_CONTENT_TYPE, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME};
use const_oid::db::rfc5912::ID_SHA_256;
use const_oid::ObjectIdentifier;
use der::asn1::{Any, GeneralizedTime, Null, OctetString, SetOfVec, UtcTime};
use der::{Encode, Sequence};
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::serial_number::SerialNumber;

use crate::pki::{self, Authority};

/// `id-ct-TSTInfo` (RFC 3161 section 2.4.2).
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// `id-aa-signingCertificateV2` (RFC 5035), which RFC 5816 asks a TSA to sign.
const ID_AA_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// The TSA policy GitHub's and Sigstore's timestamp authorities put in TSTInfo.
const SIGSTORE_TSA_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.2");

/// `MessageImprint` (RFC 3161 section 2.4.1).
#[derive(Sequence)]
struct MessageImprint {
    hash_algorithm: AlgorithmIdentifierOwned,
    hashed_message: OctetString,
}

/// `TSTInfo` (RFC 3161 section 2.4.2), without the optional fields a
/// verifier does not need: accuracy, ordering, nonce, tsa name, extensions.
#[derive(Sequence)]
struct TstInfo {
    version: u8,
    policy: ObjectIdentifier,
    message_imprint: MessageImprint,
    serial_number: SerialNumber,
    gen_time: GeneralizedTime,
}

/// `PKIStatusInfo` with only the status, `granted` (0).
#[derive(Sequence)]
struct PkiStatusInfo {
    status: u8,
}

/// `TimeStampResp` (RFC 3161 section 2.4.2).
#[derive(Sequence)]
struct TimeStampResp {
    status: PkiStatusInfo,
    time_stamp_token: ContentInfo,
}

/// `ESSCertIDv2` with the default hash algorithm (SHA-256) left out, as DER
/// requires for a DEFAULT value.
#[derive(Sequence)]
struct EssCertIdV2 {
    cert_hash: OctetString,
}

/// `SigningCertificateV2` (RFC 5035 section 3).
#[derive(Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
}

/// A DER `TimeStampResp` in which `signer` vouches that the SHA-256 digest of
/// `imprinted_data` existed at `gen_time`.
pub(crate) fn time_stamp_response(
    signer: &Authority,
    imprinted_data: &[u8],
    gen_time: jiff::Timestamp,
) -> Vec<u8> {
    let gen_time_seconds = pki::unix_duration(gen_time);
    let tst_info = TstInfo {
        version: 1,
        policy: SIGSTORE_TSA_POLICY,
        message_imprint: MessageImprint {
            // GitHub's TSA writes an explicit NULL here; both forms are valid.
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: ID_SHA_256,
                parameters: Some(Any::from(Null)),
            },
            hashed_message: octets(Sha256::digest(imprinted_data).to_vec()),
        },
        serial_number: pki::random_serial_number(),
        gen_time: GeneralizedTime::from_unix_duration(gen_time_seconds)
            .expect("a timestamp after 1970 is a valid GeneralizedTime"),
    };
    let tst_info_der = tst_info.to_der().expect("TSTInfo encodes to DER");

    let signed_attributes = SetOfVec::try_from(vec![
        attribute(ID_CONTENT_TYPE, &ID_CT_TST_INFO),
        attribute(
            ID_SIGNING_TIME,
            &UtcTime::from_unix_duration(gen_time_seconds)
                .expect("the kit's signing times lie between 1970 and 2049"),
        ),
        attribute(
            ID_MESSAGE_DIGEST,
            &octets(Sha256::digest(&tst_info_der).to_vec()),
        ),
        attribute(
            ID_AA_SIGNING_CERTIFICATE_V2,
            &SigningCertificateV2 {
                certs: vec![EssCertIdV2 {
                    cert_hash: octets(Sha256::digest(&signer.der).to_vec()),
                }],
            },
        ),
    ])
    .expect("the signed attributes have distinct types");
    // RFC 5652 section 5.4: the signature covers the DER of the attributes
    // as a SET OF, not the [0] IMPLICIT form they take inside SignerInfo.
    let signed_attributes_der = signed_attributes
        .to_der()
        .expect("signed attributes encode to DER");
    let signature = pki::sign_der(&signer.key, &signed_attributes_der);

    let sha256 = AlgorithmIdentifierOwned {
        oid: ID_SHA_256,
        parameters: None,
    };
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: signer.certificate.tbs_certificate.issuer.clone(),
            serial_number: signer.serial_number().clone(),
        }),
        digest_alg: sha256.clone(),
        signed_attrs: Some(signed_attributes),
        signature_algorithm: pki::ecdsa_with_sha256(),
        signature: octets(signature),
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: CmsVersion::V3,
        digest_algorithms: SetOfVec::try_from(vec![sha256]).expect("one digest algorithm"),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_CT_TST_INFO,
            econtent: Some(
                Any::encode_from(&octets(tst_info_der)).expect("an OCTET STRING encodes to DER"),
            ),
        },
        // Like GitHub's TSA, leave the certificates out: verifiers take the
        // TSA's certificate from the trusted root, never from the token.
        certificates: None,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info]).expect("one signer")),
    };
    let response = TimeStampResp {
        status: PkiStatusInfo { status: 0 },
        time_stamp_token: ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&signed_data).expect("SignedData encodes to DER"),
        },
    };
    response.to_der().expect("TimeStampResp encodes to DER")
}

fn attribute<T: der::Tagged + der::EncodeValue>(oid: ObjectIdentifier, value: &T) -> Attribute {
    Attribute {
        oid,
        values: SetOfVec::try_from(vec![
            Any::encode_from(value).expect("an attribute value encodes to DER")
        ])
        .expect("one attribute value"),
    }
}

fn octets(bytes: Vec<u8>) -> OctetString {
    OctetString::new(bytes).expect("the value fits in an OCTET STRING")
}
