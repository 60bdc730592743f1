#!/usr/bin/env bash
# The README's demo: the whole pipeline against a local OCI registry (started in-process by
# the test kit's registry-demo), then an offline check of a real GitHub attestation.
# With --cluster, then: a real kube-apiserver (with kube-controller-manager) calls the webhook
# through the Helm chart's Service, and kubectl is refused an unattested image and admits an
# attested one pinned to its digest. Needs root (a network namespace), and on first run builds
# the control plane from source (scripts/install-kube.sh, several minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=false
case "${1:-}" in
  "") ;;
  --cluster) cluster=true ;;
  *) echo "usage: scripts/demo.sh [--cluster]" >&2; exit 2 ;;
esac

cargo build --locked --quiet -p provenance-gate -p provenance-gate-testkit --bins
echo "### 1. provenance-gate verify IMAGE against a local registry"
target/debug/registry-demo
echo
echo "### 2. provenance-gate verify-bundle on a real GitHub attestation (Sigstore public-good)"
target/debug/provenance-gate verify-bundle \
  --bundle tests/data/bundles/public-good/reusable-workflow-attestation.sigstore.json \
  --artifact tests/data/bundles/public-good/reusable-workflow-artifact \
  --policy examples/policy.yaml

if $cluster; then
  echo
  echo "### 3. kubectl against a real API server that calls provenance-gate (tests/e2e_apiserver.rs)"
  bash scripts/install-test-tools.sh >/dev/null
  bash scripts/install-kube.sh
  bash scripts/install-chart-tools.sh >/dev/null
  cargo test --locked --quiet --test e2e_apiserver \
    demo_kubectl_refuses_an_unattested_image_and_pins_an_attested_one -- --exact --nocapture
fi
