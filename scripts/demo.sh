#!/usr/bin/env bash
# The README's demo: the whole pipeline against a local OCI registry (started in-process by
# the test kit's registry-demo), then an offline check of a real GitHub attestation.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --quiet -p provenance-gate -p provenance-gate-testkit --bins
echo "### 1. provenance-gate verify IMAGE against a local registry"
target/debug/registry-demo
echo
echo "### 2. provenance-gate verify-bundle on a real GitHub attestation (Sigstore public-good)"
target/debug/provenance-gate verify-bundle \
  --bundle tests/data/bundles/public-good/reusable-workflow-attestation.sigstore.json \
  --artifact tests/data/bundles/public-good/reusable-workflow-artifact \
  --policy examples/policy.yaml
