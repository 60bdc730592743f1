//! Setup shared by the integration tests that verify the test kit's minted bundles.

use provenance_gate::verify::{Instance, TrustedRoots};
use provenance_gate_testkit::TestInstance;

/// The trusted roots of the test kit's private Sigstore `instance`, as the only root.
pub fn kit_roots(instance: &TestInstance) -> TrustedRoots {
    TrustedRoots::from_json(&[(
        Instance::Custom("test".into()),
        &instance.trusted_root_json(),
    )])
    .expect("the test kit's trusted root loads")
}
