#!/usr/bin/env bash
# Load test of the webhook server on loopback: `provenance-gate serve` (release build, file
# policy, generated TLS certificate) answering the real GKE Pod-CREATE AdmissionReview from
# tests/data, driven by wrk (Debian package) for a bounded time per case.
#
#   benches/load.sh [SECONDS_PER_CASE (default 10)] [CONNECTIONS (default 16)]
#
# Cases (no registry involved, so this measures the server, the review decoding, policy
# classification, decisions, records and metrics — not network time):
#   exempt    the pod's image matches exemptImages: admitted without any fetch
#   unmatched no rule covers the image and unmatchedImages is deny (enforce): a 403 answer
# Traffic goes to 127.0.0.1 only, and each case stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-16}"

command -v wrk >/dev/null || { echo "load: needs wrk (apt-get install -y wrk)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "load: needs openssl" >&2; exit 2; }
cargo build --release --locked --quiet -p provenance-gate
bin=target/release/provenance-gate

work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
python3 - "$work/review.lua" <<'PY'
import json, sys
body = json.dumps(json.load(open("tests/data/admission/pod-create.gke.json")))
with open(sys.argv[1], "w") as out:
    out.write('wrk.method = "POST"\n')
    out.write('wrk.headers["Content-Type"] = "application/json"\n')
    out.write("wrk.body = %s\n" % json.dumps(body))
PY
image=$(python3 -c 'import json;print(json.load(open("tests/data/admission/pod-create.gke.json"))["request"]["object"]["spec"]["containers"][0]["image"])')

run_case() {
  local name=$1 policy=$2 port=$3 metrics_port=$4
  printf '%s\n' "$policy" > "$work/$name.yaml"
  "$bin" serve --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
    --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" \
    --policy "$work/$name.yaml" --namespace-labels env=production --log-format json \
    > /dev/null 2> "$work/$name.log" &
  server_pid=$!
  for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1; then
    echo "load: the server did not become ready; its log:" >&2; cat "$work/$name.log" >&2; exit 1
  fi
  echo "== $name: $seconds s, $connections connections, image $image"
  wrk -t 2 -c "$connections" -d "${seconds}s" --latency -s "$work/review.lua" \
    "https://127.0.0.1:$port/validate" | grep -E "Requests/sec|Latency |50%|90%|99%|requests in|Non-2xx"
  curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -E '^provenance_gate_decisions_total' || true
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
}

run_case exempt "version: 1
exemptImages: [\"docker.io/**\"]
rules:
  - name: acme
    images: [\"ghcr.io/acme/**\"]
    owners: [{name: acme}]" 18443 19090

run_case unmatched "version: 1
defaultMode: enforce
unmatchedImages: deny
rules:
  - name: acme
    images: [\"ghcr.io/acme/**\"]
    owners: [{name: acme}]" 18444 19091
