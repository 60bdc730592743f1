//! Fuzz targets of provenance-gate. Each takes arbitrary bytes, must never panic, hang or
//! grow without bound, and asserts what holds whatever the input (a failed assertion is a
//! crash to AFL++ like a panic). [`seeds`] builds each target's starting corpus from the real
//! artefacts in `tests/data` and `examples/`.
//!
//! - `admission_review`: a request body through the webhook's review handling (decoding,
//!   image listing, namespace and workload judging, the answer) at both endpoints; nothing
//!   that runs a non-exempt image is admitted in enforce mode while the registry fails.
//! - `image_reference`: parsing and normalisation; canonical forms parse back to themselves.
//! - `bundle`: bundle files parsed and verified; a bundle that verifies yields exactly the
//!   claims of one of the real bundles (a change that verifies changed nothing that counts).
//! - `policy`: policy YAML parsed, checked and applied to sample images and namespaces.
//! - `registry_answers`: what a registry sends (manifest or index, `Content-Type`, referrers
//!   index, blobs) through the image check; a verified image is bound to served content.
//! - `www_authenticate`: `WWW-Authenticate` challenges and token responses.

mod admission;
mod bundle;
mod policy;
mod reference;
mod registry;
pub mod seeds;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use provenance_gate::policy::Policy;
use provenance_gate::verify::TrustedRoots;

pub use seeds::seeds;

/// A fuzz target: panics on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name.
pub const TARGETS: &[(&str, Target)] = &[
    ("admission_review", admission::admission_review),
    ("image_reference", reference::image_reference),
    ("bundle", bundle::bundle),
    ("policy", policy::policy),
    ("registry_answers", registry::registry_answers),
    ("www_authenticate", registry::www_authenticate),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .map(|(_, target)| *target)
}

/// The example policy: rules for the real bundles' repositories, exemptions, environments.
pub(crate) const EXAMPLE_POLICY: &str = include_str!("../../examples/policy.yaml");

/// The review time of every check: inside the real bundles' certificates' lifetimes does not
/// matter (time comes from their proofs), but `maxAge` is measured to it.
pub(crate) const NOW: &str = "2026-11-28T10:00:00Z";

pub(crate) fn example_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::from_yaml(EXAMPLE_POLICY).expect("examples/policy.yaml is valid"))
}

pub(crate) fn embedded_roots() -> Arc<TrustedRoots> {
    static ROOTS: OnceLock<Arc<TrustedRoots>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| Arc::new(TrustedRoots::embedded().expect("embedded roots"))))
}

pub(crate) fn now() -> jiff::Timestamp {
    NOW.parse().expect("NOW is a timestamp")
}

thread_local! {
    /// One runtime per thread for all inputs: building one per input would cost more than
    /// most inputs do.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
}

pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    RUNTIME.with(|runtime| runtime.block_on(future))
}
