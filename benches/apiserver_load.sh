#!/usr/bin/env bash
# Pods through a real API server (BENCHMARKS.md, "Through the API server"): the end-to-end
# suite's control plane (etcd, kube-apiserver from target/tools/bin: scripts/install-kube.sh),
# the chart's webhook configurations, `provenance-gate serve` from the release build in a
# network namespace behind its Service, a registry holding minted attested images, and
# testkit/src/bin/apiserver-load.rs POSTing Pods concurrently. Needs root (network namespaces).
#
#   benches/apiserver_load.sh            1,000 Pods per phase, the webhook's release build
#   benches/apiserver_load.sh --smoke    20 Pods per phase, its debug build (CI: .ci/run)
#   benches/apiserver_load.sh --policy-controller PATH   also sigstore/policy-controller's
#       webhook binary (built as BENCHMARKS.md says; or POLICY_CONTROLLER_WEBHOOK=PATH), its
#       config/ from the Go module cache (or --policy-controller-config DIR)
#   benches/apiserver_load.sh [--pods N] [--concurrency N] [--images N] [--gate PATH]
#
# Exits non-zero when any Pod got an unexpected answer; it never judges timings.
set -euo pipefail
cd "$(dirname "$0")/.."
# The generator is always the debug build: per Pod it spends microseconds (JSON, TLS records)
# next to the API server's milliseconds, and a release build of the test kit takes long.
cargo build --locked --quiet -p provenance-gate-testkit --bin apiserver-load
if [ "${1:-}" = "--smoke" ]; then
  cargo build --locked --quiet -p provenance-gate --bin provenance-gate
  gate=target/debug/provenance-gate
else
  nice -n 5 cargo build --release --locked --quiet -p provenance-gate --bin provenance-gate
  gate=target/release/provenance-gate
fi
exec target/debug/apiserver-load --gate "$gate" "$@"
