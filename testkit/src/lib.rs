//! Test support only, never shipped in the webhook: mints Sigstore bundles
//! (GitHub artifact attestations) under throwaway trust roots, and (module
//! [`registry`]) runs real registries on loopback, a fault-injecting proxy,
//! and pushes images with attestations into them as GitHub does.
//! Module [`kube`] runs a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager) for the cluster tests, and [`netns`] a network namespace
//! for a webhook the API server reaches as it reaches a pod.
//!
//! A [`TestInstance`] is a private Sigstore instance shaped like GitHub's: a
//! Fulcio-like CA (root + intermediate) and an RFC 3161 timestamp authority,
//! no transparency log and no CT log. [`TestInstance::trusted_root_json`]
//! describes it as a `trusted_root.json`; [`TestInstance::mint`] turns a
//! [`MintSpec`] into a bundle (JSON) that verifies under that root only.
//!
//! ```
//! use provenance_gate_testkit::{MintSpec, Tamper, TestInstance};
//!
//! let instance = TestInstance::timestamp_only();
//! let digest = "9c24ac7eca13411bee8f335f96442c0b5ef8de65ff1f85da6f16fcb0c046bd78";
//! let good = instance.mint(&MintSpec::github_build(digest));
//! let forked = instance.mint(
//!     &MintSpec::github_build(digest)
//!         .with_repository("mallory/api")
//!         .with_trigger("pull_request_target"),
//! );
//! let broken = instance.mint(&MintSpec::github_build(digest).with_tamper(Tamper::FlipSignatureBit));
//! # let _ = (good, forked, broken, instance.trusted_root_json());
//! ```
//!
//! Every bundle gets a fresh ECDSA P-256 leaf valid for 10 minutes from
//! [`MintSpec::signing_time`] (by default 2025-06-01T12:00:00Z), exactly like
//! Fulcio's: long expired by the wall clock, so a verifier only accepts it by
//! taking time from the RFC 3161 timestamp, as it must.

mod axum_server;
pub mod github_api;
pub mod kube;
pub mod large_policy;
pub mod netns;
mod pki;
pub mod prometheus;
pub mod registry;
mod spec;
mod timestamp;
pub mod tuf;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use const_oid::db::rfc5280::{ID_KP_CODE_SIGNING, ID_KP_TIME_STAMPING};
use serde_json::{json, Value};

pub use spec::{
    GithubBuild, GithubClaims, MintSpec, ReusableWorkflow, Tamper, BUNDLE_V0_3_MEDIA_TYPE,
    GITHUB_ACTIONS_BUILD_TYPE, GITHUB_ACTIONS_ISSUER, IN_TOTO_PAYLOAD_TYPE, IN_TOTO_STATEMENT_V1,
    SLSA_PROVENANCE_V1,
};

use pki::{Authority, LeafUsage, Profile};

/// Media type of a `trusted_root.json`.
pub const TRUSTED_ROOT_MEDIA_TYPE: &str =
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1";

/// How long a leaf certificate is valid, as at Fulcio.
const LEAF_VALIDITY: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);
/// How long after the leaf's issuance the TSA stamps the signature.
const TIMESTAMP_DELAY: jiff::SignedDuration = jiff::SignedDuration::from_mins(1);

/// A Sigstore instance of the kind GitHub runs for private repositories:
/// Fulcio-like CA + RFC 3161 TSA, no transparency log, no CT log.
///
/// Each instance has its own freshly generated keys, so a bundle minted by
/// one is rejected under another's trusted root, although both use the same
/// certificate names.
pub struct TestInstance {
    root: Authority,
    fulcio_intermediate: Authority,
    tsa_intermediate: Authority,
    tsa_signer: Authority,
    valid_from: jiff::Timestamp,
}

impl std::fmt::Debug for TestInstance {
    /// Names and the start of validity; keys would only be noise.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestInstance")
            .field("root", &self.root.subject().to_string())
            .field(
                "fulcio_intermediate",
                &self.fulcio_intermediate.subject().to_string(),
            )
            .field("tsa_signer", &self.tsa_signer.subject().to_string())
            .field("valid_from", &self.valid_from)
            .finish_non_exhaustive()
    }
}

/// Names (RFC 4514, so the DER order is O then CN, as in GitHub's) and
/// validity shared by every instance (and by the impostor CAs of
/// the `*Untrusted*` tamper cases, which must look the same by name).
const ROOT_NAME: &str = "CN=Testkit Internal Services Root,O=provenance-gate testkit";
const FULCIO_INTERMEDIATE_NAME: &str = "CN=Testkit Fulcio Intermediate,O=provenance-gate testkit";
const TSA_INTERMEDIATE_NAME: &str = "CN=Testkit TSA Intermediate,O=provenance-gate testkit";
const TSA_SIGNER_NAME: &str = "CN=Testkit TSA Timestamping,O=provenance-gate testkit";
const AUTHORITIES_VALID_FROM: &str = "2024-01-01T00:00:00Z";
/// The last second a DER `UTCTime` can express.
const AUTHORITIES_VALID_UNTIL: &str = "2049-12-31T23:59:59Z";

/// One certificate hierarchy: a root, its Fulcio and TSA intermediates and
/// the TSA's signing certificate.
struct Hierarchy {
    root: Authority,
    fulcio_intermediate: Authority,
    tsa_intermediate: Authority,
    tsa_signer: Authority,
}

fn new_hierarchy() -> Hierarchy {
    let validity = (
        timestamp(AUTHORITIES_VALID_FROM),
        timestamp(AUTHORITIES_VALID_UNTIL),
    );
    let root = pki::issue(
        pki::name(ROOT_NAME),
        pki::generate_key(),
        None,
        validity,
        Profile::Root,
    );
    let fulcio_intermediate = pki::issue(
        pki::name(FULCIO_INTERMEDIATE_NAME),
        pki::generate_key(),
        Some(&root),
        validity,
        Profile::Intermediate {
            usage: ID_KP_CODE_SIGNING,
        },
    );
    let tsa_intermediate = pki::issue(
        pki::name(TSA_INTERMEDIATE_NAME),
        pki::generate_key(),
        Some(&root),
        validity,
        Profile::Intermediate {
            usage: ID_KP_TIME_STAMPING,
        },
    );
    let tsa_signer = pki::issue(
        pki::name(TSA_SIGNER_NAME),
        pki::generate_key(),
        Some(&tsa_intermediate),
        validity,
        Profile::TimestampSigner,
    );
    Hierarchy {
        root,
        fulcio_intermediate,
        tsa_intermediate,
        tsa_signer,
    }
}

impl TestInstance {
    /// A GitHub-instance-like root: Fulcio-like CA + RFC 3161 TSA, no
    /// transparency log, no CT log. Its certificates are valid from
    /// 2024-01-01 to 2049-12-31, and so are its trusted-root entries (with
    /// no end date).
    pub fn timestamp_only() -> TestInstance {
        let Hierarchy {
            root,
            fulcio_intermediate,
            tsa_intermediate,
            tsa_signer,
        } = new_hierarchy();
        TestInstance {
            root,
            fulcio_intermediate,
            tsa_intermediate,
            tsa_signer,
            valid_from: timestamp(AUTHORITIES_VALID_FROM),
        }
    }

    /// `trusted_root.json` (media type
    /// `application/vnd.dev.sigstore.trustedroot+json;version=0.1`) for this
    /// instance: one certificate authority (intermediate, root) and one
    /// timestamp authority (signer, intermediate, root), certificates
    /// leaf-first as in GitHub's trusted root.
    pub fn trusted_root_json(&self) -> String {
        let valid_for = json!({ "start": self.valid_from.to_string() });
        let subject = json!({
            "organization": "provenance-gate testkit",
            "commonName": "Testkit Internal Services Root",
        });
        let root = json!({
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [],
            "certificateAuthorities": [{
                "subject": subject,
                "uri": "https://fulcio.testkit.invalid",
                "certChain": chain(&[&self.fulcio_intermediate, &self.root]),
                "validFor": valid_for,
            }],
            "ctlogs": [],
            "timestampAuthorities": [{
                "subject": subject,
                "uri": "https://timestamp.testkit.invalid",
                "certChain": chain(&[&self.tsa_signer, &self.tsa_intermediate, &self.root]),
                "validFor": valid_for,
            }],
        });
        serde_json::to_string_pretty(&root).expect("a JSON value serializes")
    }

    /// A bundle (JSON string) for `spec`.
    pub fn mint(&self, spec: &MintSpec) -> String {
        let tamper = spec.tamper;
        let claims = spec.claims();
        let mut payload = serde_json::to_vec(&spec.statement()).expect("a JSON value serializes");

        // The leaf, issued like Fulcio issues one: fresh key, 10 minutes.
        let not_before = spec.signing_time;
        let not_after = not_before
            .checked_add(LEAF_VALIDITY)
            .expect("the signing time leaves room for a 10-minute certificate");
        let impostor;
        let leaf_issuer = if tamper == Tamper::CertFromUntrustedCa {
            impostor = new_hierarchy();
            &impostor.fulcio_intermediate
        } else {
            &self.fulcio_intermediate
        };
        let leaf_profile = || Profile::CodeSigningLeaf {
            san_uri: claims.build_signer_uri.clone(),
            claim_extensions: claims.extensions(),
            usage: if tamper == Tamper::CertWithoutCodeSigningEku {
                LeafUsage::ServerAuthOnly
            } else {
                LeafUsage::CodeSigning
            },
        };
        let leaf = pki::issue(
            x509_cert::name::Name::default(),
            pki::generate_key(),
            Some(leaf_issuer),
            (not_before, not_after),
            leaf_profile(),
        );

        // The DSSE signature over the pre-authentication encoding.
        let mut signature = pki::sign_der(
            &leaf.key,
            &pre_authentication_encoding(IN_TOTO_PAYLOAD_TYPE, &payload),
        );
        if tamper == Tamper::FlipSignatureBit {
            // The last byte belongs to the INTEGER s, so the DER stays valid.
            flip_lowest_bit_of_last_byte(&mut signature);
        }

        let certificate = if tamper == Tamper::CertForDifferentKey {
            pki::issue(
                x509_cert::name::Name::default(),
                pki::generate_key(),
                Some(leaf_issuer),
                (not_before, not_after),
                leaf_profile(),
            )
            .der
        } else {
            leaf.der
        };

        // The RFC 3161 timestamp over the signature bytes.
        let gen_time = match tamper {
            Tamper::CertExpiredBeforeTimestamp => not_after
                .checked_add(jiff::SignedDuration::from_mins(10))
                .expect("the signing time leaves room for a late timestamp"),
            Tamper::TimestampBeforeCertValidity => not_before
                .checked_sub(jiff::SignedDuration::from_mins(5))
                .expect("the signing time leaves room for an early timestamp"),
            _ => not_before
                .checked_add(TIMESTAMP_DELAY)
                .expect("the signing time leaves room for the timestamp"),
        };
        let untrusted_tsa;
        let tsa_signer = if tamper == Tamper::TimestampFromUntrustedTsa {
            untrusted_tsa = new_hierarchy();
            &untrusted_tsa.tsa_signer
        } else {
            &self.tsa_signer
        };
        let imprinted_data = if tamper == Tamper::TimestampOverOtherData {
            &payload
        } else {
            &signature
        };
        let mut time_stamp_response =
            timestamp::time_stamp_response(tsa_signer, imprinted_data, gen_time);
        if tamper == Tamper::FlipTimestampSignatureBit {
            // The response ends with the SignerInfo's signature OCTET STRING,
            // whose last byte belongs to the ECDSA INTEGER s.
            flip_lowest_bit_of_last_byte(&mut time_stamp_response);
        }
        let rfc3161_timestamps = if tamper == Tamper::DropTimestamp {
            json!([])
        } else {
            json!([{ "signedTimestamp": BASE64.encode(&time_stamp_response) }])
        };

        if tamper == Tamper::FlipPayloadBit {
            flip_bit_after(&mut payload, b"\"predicateType\":\"");
        }

        let certificate_rawbytes = json!({ "rawBytes": BASE64.encode(&certificate) });
        let mut verification_material = json!({
            "tlogEntries": [],
            "timestampVerificationData": { "rfc3161Timestamps": rfc3161_timestamps },
        });
        if spec.bundle_media_type == BUNDLE_V0_3_MEDIA_TYPE {
            verification_material["certificate"] = certificate_rawbytes;
        } else {
            verification_material["x509CertificateChain"] =
                json!({ "certificates": [certificate_rawbytes] });
        }
        let bundle = json!({
            "mediaType": spec.bundle_media_type,
            "verificationMaterial": verification_material,
            "dsseEnvelope": {
                "payload": BASE64.encode(&payload),
                "payloadType": IN_TOTO_PAYLOAD_TYPE,
                "signatures": [{ "sig": BASE64.encode(&signature) }],
            },
        });
        serde_json::to_string_pretty(&bundle).expect("a JSON value serializes")
    }
}

/// DSSE's PAE: `DSSEv1 <len(type)> <type> <len(body)> <body>`.
fn pre_authentication_encoding(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut encoding = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    encoding.extend_from_slice(payload);
    encoding
}

fn chain(authorities: &[&Authority]) -> Value {
    let certificates: Vec<Value> = authorities
        .iter()
        .map(|authority| json!({ "rawBytes": BASE64.encode(&authority.der) }))
        .collect();
    json!({ "certificates": certificates })
}

fn flip_lowest_bit_of_last_byte(bytes: &mut [u8]) {
    let last = bytes.last_mut().expect("a signature is never empty");
    *last ^= 0x01;
}

/// Flips the lowest bit of the byte right after the first `marker` in
/// `bytes` (an ASCII letter there stays printable and JSON-safe).
fn flip_bit_after(bytes: &mut [u8], marker: &[u8]) {
    let position = bytes
        .windows(marker.len())
        .position(|window| window == marker)
        .expect("the statement contains the marker to tamper after")
        + marker.len();
    bytes[position] ^= 0x01;
}

fn timestamp(rfc3339: &str) -> jiff::Timestamp {
    rfc3339
        .parse()
        .expect("the kit's fixed dates are valid RFC 3339 timestamps")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pre_authentication_encoding("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn flipped_payload_stays_json_but_changes_the_predicate_type() {
        let mut payload = br#"{"predicateType":"https://slsa.dev/provenance/v1"}"#.to_vec();
        flip_bit_after(&mut payload, b"\"predicateType\":\"");
        let value: Value = serde_json::from_slice(&payload).expect("still JSON");
        assert_eq!(value["predicateType"], "ittps://slsa.dev/provenance/v1");
    }
}
