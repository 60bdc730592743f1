//! Image references: parsing never panics, a parsed reference prints to a canonical form that
//! parses back to itself, its registry is already canonical, and the policy classifies the
//! canonical form as it classifies the input.

use provenance_gate::check::reference::{canonical_registry, ImageReference, MAX_INPUT_BYTES};

use crate::example_policy;

pub(crate) fn image_reference(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let Ok(reference) = ImageReference::parse(&input) else {
        return;
    };
    assert!(input.len() <= MAX_INPUT_BYTES);
    let canonical = reference.to_string();
    let reparsed = ImageReference::parse(&canonical)
        .unwrap_or_else(|error| panic!("{input:?} → {canonical:?} does not parse: {error}"));
    assert_eq!(
        reparsed, reference,
        "{input:?} → {canonical:?} is not stable"
    );
    assert_eq!(reparsed.to_string(), canonical);
    assert_eq!(
        canonical_registry(reference.registry()).as_deref(),
        Ok(reference.registry()),
        "{input:?}: the registry is not canonical"
    );
    let policy = example_policy();
    assert_eq!(
        format!("{:?}", policy.classify_image(&reference.name())),
        format!("{:?}", policy.classify_image(&reparsed.name())),
    );
}
