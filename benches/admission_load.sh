#!/usr/bin/env bash
# Load harness of the whole admission path (BENCHMARKS.md): `provenance-gate serve` from the
# release build over HTTPS with keep-alive, a real OCI registry on loopback (ferro-oci-server,
# in-process, behind the test kit's counting proxy) holding minted attested images, and an
# open-loop generator (testkit/src/bin/admission-load.rs) on the same machine.
#
#   benches/admission_load.sh            full run (several minutes: 10,000 images are minted)
#   benches/admission_load.sh --smoke    seconds-long run of every phase, debug build (CI: .ci/run)
#   benches/admission_load.sh [admission-load options]   e.g. --seconds 20 --rates 500,2000
#       --images N --connections N --cold-images N --cold-rate R --concurrent N --fill N
#       --soak-seconds S --soak-rate R --perf-dir DIR (perf record -g of the max phases)
#       --fault-seconds S --fault-rate R --fault-phase-seconds P --fault-connections N
#       --gate-arg ARG (repeatable: an extra argument for serve, e.g. --gate-arg --max-in-flight=256)
#       (faults under load: the registry flaps between healthy, slow, stalled, 429, 5xx and
#       lying; --smoke runs one short cycle of it)
#
# Exits non-zero when any review got an unexpected answer. Only the faults phase judges
# timings: every review answered inside the webhook's review budget.
set -euo pipefail
cd "$(dirname "$0")/.."
# The smoke run only proves the harness works, so it uses the debug build the tests already
# made (a release build takes half an hour on 2 busy cores); figures come from release builds.
profile=release
[ "${1:-}" = "--smoke" ] && profile=debug
if [ "$profile" = release ]; then
  nice -n 5 cargo build --release --locked --quiet -p provenance-gate -p provenance-gate-testkit --bins
else
  cargo build --locked --quiet -p provenance-gate -p provenance-gate-testkit --bins
fi
exec "target/$profile/admission-load" "$@"
