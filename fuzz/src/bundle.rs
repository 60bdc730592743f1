//! Bundle files: reading never panics, and a bundle that verifies (for the digest its own
//! statement names, so that every other check is reached) yields exactly the facts of one of
//! the real bundles in tests/data. A change that still verifies must have changed nothing that
//! is evidence: the media type's spelling, not the certificate, statement or signing time.

use std::sync::OnceLock;

use provenance_gate::verify::statement::read_statement;
use provenance_gate::verify::{
    read_bundles, verify_bundle, ArtifactInput, ParsedBundle, VerifiedAttestation,
};
use sigstore_types::SignatureContent;

use crate::embedded_roots;
use crate::seeds::REAL_BUNDLES;

/// Bundles of one file verified at most: each costs signature checks.
const MAX_VERIFIED: usize = 4;

pub(crate) fn bundle(data: &[u8]) {
    let Ok(bundles) = read_bundles(data) else {
        return;
    };
    let roots = embedded_roots();
    for parsed in bundles.iter().take(MAX_VERIFIED) {
        let digest = signed_sha256(parsed).unwrap_or([0; 32]);
        if let Ok(attestation) = verify_bundle(&roots, parsed, ArtifactInput::Sha256(digest)) {
            let facts = evidence(&attestation);
            assert!(
                real_evidence().contains(&facts),
                "a changed bundle verified with other facts: {facts:#?}"
            );
        }
    }
}

/// The first sha256 subject of the statement the bundle's envelope carries.
fn signed_sha256(parsed: &ParsedBundle) -> Option<[u8; 32]> {
    let SignatureContent::DsseEnvelope(envelope) = &parsed.bundle.content else {
        return None;
    };
    let facts = read_statement(envelope.payload.as_bytes()).ok()?;
    facts.subjects.iter().find_map(|subject| {
        let hex_digest = subject.digest.get("sha256")?;
        let mut digest = [0; 32];
        decode_hex(hex_digest, &mut digest).then_some(digest)
    })
}

fn decode_hex(text: &str, out: &mut [u8; 32]) -> bool {
    if text.len() != 64 || !text.is_ascii() {
        return false;
    }
    for (index, slot) in out.iter_mut().enumerate() {
        match u8::from_str_radix(&text[index * 2..index * 2 + 2], 16) {
            Ok(byte) => *slot = byte,
            Err(_) => return false,
        }
    }
    true
}

/// An attestation without the digest of the JSON it was read from, which any edit changes.
fn evidence(attestation: &VerifiedAttestation) -> VerifiedAttestation {
    VerifiedAttestation {
        bundle_digest: String::new(),
        ..attestation.clone()
    }
}

/// The facts of every real bundle that verifies for its statement's sha256 subject.
fn real_evidence() -> &'static [VerifiedAttestation] {
    static FACTS: OnceLock<Vec<VerifiedAttestation>> = OnceLock::new();
    FACTS.get_or_init(|| {
        let roots = embedded_roots();
        let facts: Vec<VerifiedAttestation> = REAL_BUNDLES
            .iter()
            .flat_map(|(_, text)| read_bundles(text).expect("a real bundle reads"))
            .filter_map(|parsed| {
                let digest = signed_sha256(&parsed)?;
                verify_bundle(&roots, &parsed, ArtifactInput::Sha256(digest)).ok()
            })
            .map(|attestation| evidence(&attestation))
            .collect();
        assert!(
            facts.len() >= 2,
            "the real bundles with sha256 subjects verify"
        );
        facts
    })
}
