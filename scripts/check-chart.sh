#!/usr/bin/env bash
# Checks the Helm chart, the plain manifests and the Dockerfile (called by .ci/run).
#
#   scripts/check-chart.sh            run every check; exit 1 if any fails, naming each failure
#   scripts/check-chart.sh --update   re-render manifests/provenance-gate.yaml first
#
# Checks:
#   1. helm lint --strict, for the default values and every charts/provenance-gate/ci/*-values.yaml
#   2. helm template for the defaults, each ci value set (tier 0/1/2, cert-manager,
#      ServiceMonitor + PrometheusRule + dashboard, NetworkPolicy, everything at once) and the
#      committed manifest, validated by `kubernetes-validate --strict` against every Kubernetes
#      version in Chart.yaml's provenance-gate.dev/tested-kubernetes-versions. Custom resources
#      (ServiceMonitor, PrometheusRule, Certificate, Issuer) have no schema there: they are
#      reported as skipped, and any OTHER kind without a schema is a failure.
#   3. scripts/check-webhook-partition.py on each render: every namespace is sent to exactly one
#      webhook entry per resource, with the failurePolicy of its mode; excluded namespaces to
#      none; caBundle / cert-manager injection present; generated caBundle = Secret ca.crt.
#   4. The generated serving certificate chains to the generated CA and names the Service.
#   5. Each rendered policy.yaml passes `provenance-gate policy check`, when a built binary is
#      there ($PROVENANCE_GATE_BIN, else target/debug/provenance-gate; skipped otherwise).
#   6. Invalid values make `helm template` fail with the schema's (or the chart's) message.
#   7. hadolint Dockerfile.
#   8. manifests/provenance-gate.yaml is byte-for-byte a fresh render.
#   9. When scripts/install-kube.sh has built kube-apiserver and etcd into target/tools/bin:
#      every render applied with `kubectl apply --dry-run=server` to a throwaway API server on
#      loopback, and the tier 2 NOTES' `kubectl get namespaces -l` commands run there (skipped
#      otherwise).
#  10. NOTES.txt (rendered through a copy of the chart) names the namespaces each tier
#      enforces; a second release into another namespace neither collides with the first nor
#      has its image judged by the first's policy (exemptImages, and `provenance-gate verify`
#      when a built binary is there).
#   Also: `promtool check rules` on the PrometheusRule and on every Grafana dashboard query, and
#   `promtool test rules` with charts/provenance-gate/ci/prometheusrule.test.yaml.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

update=false
case "${1:-}" in
  --update) update=true ;;
  "") ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

scripts/install-chart-tools.sh | sed 's/^/  /'
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "check-chart: installing the chart tools failed" >&2; exit 1; }

tools="$PWD/target/tools"
helm="$tools/bin/helm"
kv="$tools/venv/bin/kubernetes-validate"
hadolint="$tools/venv/bin/hadolint"
python="$tools/venv/bin/python"
chart=charts/provenance-gate
release=provenance-gate
namespace=provenance-gate
manifest=manifests/provenance-gate.yaml
out=target/chart-check
rm -rf "$out" && mkdir -p "$out"

failures=()
fail() { failures+=("$1"); echo "  FAIL: $1"; }
ok() { echo "  ok: $1"; }
section_started=$SECONDS
section_name=""
section() {
  [ -z "$section_name" ] || echo "  ($(( SECONDS - section_started ))s)"
  section_name="$1"; section_started=$SECONDS
  echo "== $1"
}

render_manifest() {
  cat <<'EOF'
# provenance-gate: plain manifests for `kubectl apply`, rendered from charts/provenance-gate with
# the default values except TLS, which comes from cert-manager (tls.mode=certManager) so that
# this file is the same at every render. Do not edit: run `scripts/check-chart.sh --update`.
#
#   helm template provenance-gate charts/provenance-gate --namespace provenance-gate \
#     --set tls.mode=certManager
#
# Needs cert-manager and the namespace: see docs/operating.md, "Plain manifests".
EOF
  "$helm" template "$release" "$chart" --namespace "$namespace" --set tls.mode=certManager
}

if $update; then
  section "updating $manifest"
  mkdir -p "$(dirname "$manifest")"
  render_manifest > "$manifest.tmp" && mv "$manifest.tmp" "$manifest" || fail "rendering $manifest"
fi

kube_versions="$(sed -n 's/^ *provenance-gate.dev\/tested-kubernetes-versions: *"\(.*\)"/\1/p' "$chart/Chart.yaml")"
[ -n "$kube_versions" ] || fail "Chart.yaml has no provenance-gate.dev/tested-kubernetes-versions annotation"

# --- 1 + 2 (render) + 3 + 4 + 5 ------------------------------------------------------------
section "helm lint and helm template (value sets: default $(cd "$chart/ci" && ls ./*-values.yaml | sed 's|^\./||; s/-values.yaml$//' | tr '\n' ' '))"
value_sets=(default)
for f in "$chart"/ci/*-values.yaml; do value_sets+=("$(basename "$f" -values.yaml)"); done

bin="${PROVENANCE_GATE_BIN:-target/debug/provenance-gate}"
if [ -x "$bin" ] && "$bin" policy check --help >/dev/null 2>&1; then
  have_bin=true
else
  have_bin=false
fi

for set in "${value_sets[@]}"; do
  args=()
  [ "$set" = default ] || args=(-f "$chart/ci/$set-values.yaml")
  if lint_out="$("$helm" lint --strict "$chart" --namespace "$namespace" "${args[@]}" 2>&1)"; then
    ok "helm lint --strict ($set)"
  else
    fail "helm lint --strict ($set)"; echo "$lint_out" | sed 's/^/    /'
  fi
  if ! "$helm" template "$release" "$chart" --namespace "$namespace" "${args[@]}" > "$out/$set.yaml" 2> "$out/$set.err"; then
    fail "helm template ($set)"; sed 's/^/    /' "$out/$set.err"; rm -f "$out/$set.yaml"; continue
  fi
  # The partition check needs the values the render used (values.yaml + the set's file).
  partition_args=(--namespace "$namespace")
  mode_args="$("$python" - "$chart" "${args[@]}" <<'PY'
import sys, yaml
chart, files = sys.argv[1], sys.argv[3::2]
values = yaml.safe_load(open(f"{chart}/values.yaml"))
def merge(a, b):
    for k, v in b.items():
        a[k] = merge(a.get(k) or {}, v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return a
for f in files:
    merge(values, yaml.safe_load(open(f)) or {})
w = values["webhook"]
out = [f"--enforce-policy={w['failurePolicy']['enforce']}", f"--other-policy={w['failurePolicy']['other']}"]
out += [f"--exclude={ns}" for ns in w.get("excludeNamespaces") or []]
if values["tls"]["mode"] == "generate":
    out.append("--tls-generated")
print(" ".join(out))
PY
)"
  # shellcheck disable=SC2206
  partition_args+=($mode_args)
  if "$python" scripts/check-webhook-partition.py "$out/$set.yaml" "${partition_args[@]}" > "$out/$set.partition" 2>&1; then
    ok "webhook entries ($set): $(tail -n 1 "$out/$set.partition" | sed 's/^ *webhook partition: //')"
  else
    fail "webhook entries ($set)"; sed 's/^/    /' "$out/$set.partition"
  fi

  # The rendered policy.yaml, for the binary's own check.
  "$python" - "$out/$set.yaml" "$out/$set.policy.yaml" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and "policy.yaml" in (d.get("data") or {}):
        open(sys.argv[2], "w").write(d["data"]["policy.yaml"])
PY
  if [ -f "$out/$set.policy.yaml" ]; then
    if $have_bin; then
      if "$bin" policy check "$out/$set.policy.yaml" > "$out/$set.policy-check" 2>&1; then
        ok "provenance-gate policy check ($set)"
      else
        fail "provenance-gate policy check ($set)"; sed 's/^/    /' "$out/$set.policy-check"
      fi
    fi
  fi

  # A generated certificate must chain to the generated CA and name the Service.
  if [[ "$mode_args" == *--tls-generated* ]]; then
    "$python" - "$out/$set.yaml" "$out/$set" <<'PY'
import sys, yaml, base64
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Secret" and d.get("type") == "kubernetes.io/tls":
        for key in ("tls.crt", "ca.crt"):
            open(f"{sys.argv[2]}.{key}", "wb").write(base64.b64decode(d["data"][key]))
PY
    fullname="$("$python" -c 'import sys,yaml; print(next(d["metadata"]["name"] for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"]=="Service"))' "$out/$set.yaml")"
    if openssl verify -purpose sslserver -CAfile "$out/$set.ca.crt" "$out/$set.tls.crt" >/dev/null 2>&1 \
      && openssl x509 -in "$out/$set.tls.crt" -noout -checkhost "$fullname.$namespace.svc" | grep 'does match' >/dev/null; then
      ok "generated serving certificate ($set) chains to the CA and names $fullname.$namespace.svc"
    else
      fail "generated serving certificate ($set) does not verify against the CA for $fullname.$namespace.svc"
    fi
  fi
done
$have_bin || echo "  skipped: provenance-gate policy check (no built binary at $bin; set PROVENANCE_GATE_BIN)"

# --- NOTES and a second release -----------------------------------------------------------------
section "NOTES and a second release of the chart"
# helm template does not render NOTES.txt: a copy of the chart renders it as a YAML document
# (notes: "..."), from the same template text.
notes_chart="$out/notes-chart"
cp -r "$chart" "$notes_chart"
{ printf '{{- define "notes-check.body" -}}\n'; cat "$chart/templates/NOTES.txt"
  printf '\n{{- end -}}\nnotes: {{ include "notes-check.body" . | toJson }}\n'; } > "$notes_chart/templates/notes-check.yaml"
render_notes() {
  "$helm" template "$release" "$notes_chart" --namespace "$namespace" "$@" --show-only templates/notes-check.yaml \
    | "$python" -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["notes"])'
}
notes_expect() {
  local set="$1" want="$2"
  if grep -qF -- "$want" "$out/$set.notes"; then
    ok "NOTES ($set): $want"
  else
    fail "NOTES ($set) do not say: $want"; sed 's/^/    /' "$out/$set.notes"
  fi
}
for set in default tier1 tier2; do
  args=()
  [ "$set" = default ] || args=(-f "$chart/ci/$set-values.yaml")
  render_notes "${args[@]}" > "$out/$set.notes" || fail "rendering NOTES.txt ($set)"
done
notes_expect default "No namespace enforces"
notes_expect tier1 "kubectl get namespaces -l 'env in (production),kubernetes.io/metadata.name notin (kube-system,$namespace)'"
notes_expect tier2 "every other namespace, including every namespace with no env label (default, kube-public, kube-node-lease, add-on namespaces): enforce"
notes_expect tier2 "kubectl get namespaces -l 'env notin (dev),kubernetes.io/metadata.name notin (kube-system,$namespace)'"
notes_expect tier2 "The webhook's own image (ghcr.io/provenance-gate/provenance-gate, any tag or digest) is exempt"
notes_expect tier2 "WARNING: every namespace without an env label ENFORCES, those of cluster add-ons included."
notes_expect tier2 "(webhook.excludeNamespaces), label them env=dev, or exempt their images (policy.exemptImages)."
notes_expect default "In every mode, observe included, verified images are pinned to their digest and Pods are"
if grep -qF "WARNING: every namespace without an env label ENFORCES" "$out/default.notes" "$out/tier1.notes"; then
  fail "NOTES warn about unlabelled namespaces enforcing at tier 0 or 1"
else
  ok "NOTES (default, tier1): no warning about unlabelled namespaces enforcing"
fi

# A second release into another namespace: its cluster-scoped objects must not collide with
# the first's, its partition must hold, and each release's policy must exempt the other's
# image, since each one's pods run in a namespace the other enforces (at tier 2 every
# namespace without an env label).
second_release=gate-b
second_namespace=gate-b
if "$helm" template "$second_release" "$chart" --namespace "$second_namespace" -f "$chart/ci/tier2-values.yaml" \
  > "$out/second-release.yaml" 2> "$out/second-release.err"; then
  if "$python" scripts/check-webhook-partition.py "$out/second-release.yaml" --namespace "$second_namespace" \
    --tls-generated > "$out/second-release.partition" 2>&1; then
    ok "webhook entries (second release in $second_namespace): $(tail -n 1 "$out/second-release.partition" | sed 's/^ *webhook partition: //')"
  else
    fail "webhook entries (second release in $second_namespace)"; sed 's/^/    /' "$out/second-release.partition"
  fi
  if "$python" - "$out/tier2.yaml" "$out/second-release.yaml" "$out/second-release.policy.yaml" \
    > "$out/second-release.images" 2> "$out/second-release.exempt" <<'PY'
import sys, yaml
first, second = ([d for d in yaml.safe_load_all(open(f)) if d] for f in sys.argv[1:3])
def cluster_names(docs):
    return {(d["kind"], d["metadata"]["name"]) for d in docs if "namespace" not in d["metadata"]}
clash = cluster_names(first) & cluster_names(second)
if clash:
    sys.exit(f"cluster-scoped objects of both releases clash: {sorted(clash)}")
def policy_text(docs):
    return next(d["data"]["policy.yaml"] for d in docs if d["kind"] == "ConfigMap" and "policy.yaml" in (d.get("data") or {}))
def images(docs):
    return [c["image"] for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]]
open(sys.argv[3], "w").write(policy_text(second))
# Every image first (the binary's check below uses them), then the verdict.
print("\n".join(sorted(set(images(first) + images(second)))), flush=True)
for name, policy_docs, other, image_docs in [("first", first, "second", second), ("second", second, "first", first)]:
    exempt = yaml.safe_load(policy_text(policy_docs))["exemptImages"]
    for image in images(image_docs):
        name_and_tag = image.split("@")[0]
        head, _, tail = name_and_tag.rpartition(":")
        repository = head if head and "/" not in tail else name_and_tag
        if repository not in exempt:
            sys.exit(f"the {name} release's policy does not exempt the {other} release's image {image} (exemptImages {exempt})")
PY
  then
    ok "each release's policy exempts the other's image ($(sort -u "$out/second-release.images" | paste -sd ' '))"
  else
    fail "a release's pods are judged by the other release's policy"; sed 's/^/    /' "$out/second-release.exempt"
  fi
  # The binary's own answer, in the namespace each release's pods run in (enforce at tier 2).
  if $have_bin; then
    for pair in "$out/tier2.policy.yaml:$second_namespace" "$out/second-release.policy.yaml:$namespace"; do
      policy_file="${pair%%:*}" pod_namespace="${pair##*:}"
      for image in $(sort -u "$out/second-release.images"); do
        if "$bin" verify --policy "$policy_file" --namespace-labels "kubernetes.io/metadata.name=$pod_namespace" \
          --output json "$image" 2>&1 | grep -q '"mode":"enforce".*"result":"exempt"'; then
          ok "provenance-gate verify: $image exempt by $(basename "$policy_file") in namespace $pod_namespace (enforce)"
        else
          fail "provenance-gate verify: $image not exempt by $(basename "$policy_file") in namespace $pod_namespace"
        fi
      done
    done
  fi
else
  fail "helm template (second release in $second_namespace)"; sed 's/^/    /' "$out/second-release.err"
fi

# The committed manifest is validated too (it is also compared with a fresh render below).
cp "$manifest" "$out/manifest.yaml" 2>/dev/null || fail "$manifest is missing (run scripts/check-chart.sh --update)"

# --- 2: kubernetes-validate --strict, every render x every version ---------------------------
section "kubernetes-validate --strict (Kubernetes $kube_versions)"
renders=()
for f in "$out"/*.yaml; do
  case "$f" in *.policy.yaml|*/bad-*.yaml) ;; *) renders+=("$f") ;; esac
done
read -r -a versions <<< "$kube_versions"
# Two halves of the versions in parallel (two cores); each loads every schema once per resource.
half=$(( (${#versions[@]} + 1) / 2 ))
kv_status=0
pids=()
for part in 0 1; do
  chunk=("${versions[@]:$((part * half)):$half}")
  [ "${#chunk[@]}" -gt 0 ] || continue
  kargs=()
  for v in "${chunk[@]}"; do kargs+=(-k "$v"); done
  "$kv" --strict --quiet "${kargs[@]}" "${renders[@]}" > "$out/validate.$part.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || kv_status=1; done
cat "$out"/validate.*.log > "$out/validate.log"
if grep -q '^ERROR\|^FATAL' "$out/validate.log" || [ "$kv_status" -ne 0 ]; then
  fail "kubernetes-validate --strict"; grep -v '^WARN' "$out/validate.log" | sed 's/^/    /' | sed -n '1,40p'
fi
unknown="$(sed -n "s/^WARN .* Couldn't find schema for kind \([A-Za-z]*\) with api version \([^ ]*\) .*/\1 (\2)/p" "$out/validate.log" | sort -u)"
unexpected="$(echo "$unknown" | grep -v '^$' | grep -Ev '^(ServiceMonitor|PrometheusRule) \(monitoring\.coreos\.com/v1\)$|^(Certificate|Issuer) \(cert-manager\.io/v1\)$' || true)"
if [ -n "$unexpected" ]; then
  fail "kinds without a Kubernetes schema (typo in kind or apiVersion?): $(echo "$unexpected" | tr '\n' ' ')"
fi
resources="$(cat "${renders[@]}" | grep -c '^kind:')"
if [ "$kv_status" -eq 0 ] && ! grep -q '^ERROR\|^FATAL' "$out/validate.log"; then
  ok "$resources resources in ${#renders[@]} renders valid for Kubernetes $kube_versions"
fi
[ -z "$unknown" ] || echo "  skipped (custom resources, no schema in kubernetes-validate): $(echo "$unknown" | tr '\n' ' ')"

# --- PromQL: the PrometheusRule (promtool check + unit tests) and the dashboard's queries -----
section "PromQL (promtool $("$tools/bin/promtool" --version 2>&1 | sed -n 's/^promtool, version \([^ ]*\).*/\1/p'))"
mkdir -p "$out/promql"
if "$python" - "$out/monitoring.yaml" "$out/promql" <<'PY'
import json, sys, yaml
render, dest = sys.argv[1], sys.argv[2]
rules = dashboard = None
for d in yaml.safe_load_all(open(render)):
    if d and d["kind"] == "PrometheusRule":
        rules = d["spec"]
    if d and d["kind"] == "ConfigMap" and "provenance-gate.json" in (d.get("data") or {}):
        dashboard = json.loads(d["data"]["provenance-gate.json"])
if rules is None or dashboard is None:
    sys.exit("the monitoring render has no PrometheusRule or no dashboard")
yaml.safe_dump(rules, open(f"{dest}/rules.yaml", "w"))
# Every dashboard query as a recording rule, Grafana's variables replaced, for promtool.
records = []
def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", "5m").replace("$job", ".*").replace("$environment", ".*")
            records.append({"record": f"dashboard:panel{p['id']}_{t['refId']}", "expr": expr})
        walk(p.get("panels", []))
walk(dashboard["panels"])
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, open(f"{dest}/dashboard-rules.yaml", "w"))
PY
then
  cp "$chart/ci/prometheusrule.test.yaml" "$out/promql/"
  if promql_out="$("$tools/bin/promtool" check rules "$out/promql/rules.yaml" "$out/promql/dashboard-rules.yaml" 2>&1)"; then
    ok "promtool check rules: PrometheusRule and dashboard queries ($(echo "$promql_out" | grep -o '[0-9]* rules found' | paste -sd, -))"
  else
    fail "promtool check rules"; echo "$promql_out" | sed 's/^/    /'
  fi
  if promql_out="$("$tools/bin/promtool" test rules "$out/promql/prometheusrule.test.yaml" 2>&1)"; then
    ok "promtool test rules: $(grep -c '^  - name:' "$chart/ci/prometheusrule.test.yaml") alert scenarios in $chart/ci/prometheusrule.test.yaml"
  else
    fail "promtool test rules"; echo "$promql_out" | sed 's/^/    /'
  fi
else
  fail "extracting the PrometheusRule and dashboard from the monitoring render"
fi

# --- 6: invalid values must fail, with a message that says why ---------------------------------
section "invalid values are refused"
expect_refusal() {
  local want="$1"; shift
  local output
  if output="$("$helm" template "$release" "$chart" --namespace "$namespace" "$@" 2>&1 >/dev/null)"; then
    fail "helm template $* succeeded; expected a refusal matching: $want"
  elif ! grep -qE -- "$want" <<< "$output"; then
    fail "helm template $* failed without the expected message ($want):"; echo "$output" | sed 's/^/    /'
  else
    ok "$* -> $(grep -E -m1 -- "$want" <<< "$output" | sed 's/^[- ]*//')"
  fi
}
cat > "$out/bad-env-mode.yaml" <<'EOF'
policy:
  environments:
    - {name: production, namespaceSelector: {matchLabels: {env: production}}, mode: block}
EOF
cat > "$out/bad-replicas.yaml" <<'EOF'
replicaCount: 1.5
EOF
expect_refusal 'policy\.defaultMode must be one of the following: "observe", "warn", "enforce"' --set policy.defaultMode=bogus
expect_refusal 'policy\.environments\.0\.mode must be one of the following' -f "$out/bad-env-mode.yaml"
expect_refusal 'policy\.tier must be one of the following: 0, 1, 2' --set policy.tier=3
expect_refusal 'Additional property bogus is not allowed' --set bogus=1
expect_refusal 'Additional property enabeld is not allowed' --set serviceMonitor.enabeld=true
expect_refusal 'replicaCount: Invalid type\. Expected: integer, given: number' -f "$out/bad-replicas.yaml"
expect_refusal 'replicaCount: Invalid type\. Expected: integer, given: string' --set replicaCount=two
expect_refusal 'tls\.mode must be one of the following' --set tls.mode=selfsigned
expect_refusal 'tls\.secret\.caBundle: String length must be greater than or equal to 1' --set tls.mode=secret --set tls.secret.name=x
expect_refusal 'id: Invalid type\. Expected: string, given: integer' \
  --set-json 'policy.rules=[{"name":"a","images":["ghcr.io/a/**"],"repositories":[{"name":"a/b","id":804070735}]}]'
expect_refusal 'refs: Array must have at least 1 items' \
  --set-json 'policy.rules=[{"name":"a","images":["ghcr.io/a/**"],"owners":[{"name":"a"}],"refs":[]}]'
expect_refusal 'buildConfigDigests\.0: Does not match pattern' \
  --set-json 'policy.rules=[{"name":"a","images":["ghcr.io/a/**"],"owners":[{"name":"a"}],"buildConfigDigests":["v1"]}]'
expect_refusal 'policy\.revoked\.runs\.0: Invalid type\. Expected: string, given: integer' \
  --set-json 'policy.revoked={"runs":[9876543210]}'
expect_refusal 'policy\.rules is empty and policy\.unmatchedImages is deny' --set policy.tier=1
expect_refusal 'webhook\.reviewBudgetSeconds \(8\) must be below webhook\.timeoutSeconds \(5\)' --set webhook.timeoutSeconds=5
expect_refusal 'terminationGracePeriodSeconds \(20\) must exceed webhook\.shutdownDelaySeconds \(5\)' \
  --set terminationGracePeriodSeconds=20
expect_refusal 'webhook\.clientAuth\.enabled needs exactly one of' --set webhook.clientAuth.enabled=true
expect_refusal 'webhook\.clientAuth\.enabled needs exactly one of' --set webhook.clientAuth.enabled=true \
  --set webhook.clientAuth.caSecret=a --set webhook.clientAuth.caConfigMap=b
expect_refusal 'registryProxy: Does not match pattern' --set registryProxy=proxy.internal:3128
expect_refusal 'audit\.intervalSeconds: Must validate' --set audit.intervalSeconds=5
expect_refusal 'trustedRootUpdates\.mirrors: Additional property tuf\.example is not allowed' \
  --set trustedRootUpdates.enabled=true --set trustedRootUpdates.mirrors.tuf\\.example=https://tuf.example
expect_refusal 'trustedRootUpdates\.enabled refreshes the embedded roots; trustedRoots\.existingConfigMap replaces them' \
  --set trustedRootUpdates.enabled=true --set trustedRoots.existingConfigMap=roots --set 'trustedRoots.keys={a.json}'
expect_refusal 'webhook\.limits\.maxConnections: Must be greater than or equal to 1' --set webhook.limits.maxConnections=0
expect_refusal 'image\.repository: Does not match pattern' --set image.repository=ghcr.io/acme/provenance-gate:0.1.0
expect_refusal 'webhook\.url: Does not match pattern' --set webhook.url=http://provenance-gate.example:8443
expect_refusal 'webhook\.url: Does not match pattern' --set webhook.url='https://provenance-gate.example/?token=x'
expect_refusal 'webhook\.url needs tls\.mode=secret' --set webhook.url=https://provenance-gate.example:8443

# --- 9: server-side dry run against a real kube-apiserver, when one is built -------------------
# scripts/install-kube.sh builds kube-apiserver and etcd into target/tools/bin for the cluster
# tests. When they are there, every render (less the custom resources, whose CRDs are not
# installed) is applied with --dry-run=server: the API server's own validation, including the
# CEL of the webhooks' matchConditions. No webhook is installed, so nothing calls out.
section "server-side dry run (kube-apiserver)"
if [ -x "$tools/bin/kube-apiserver" ] && [ -x "$tools/bin/etcd" ]; then
  api="$out/apiserver"
  mkdir -p "$api"
  read -r etcd_port peer_port api_port <<< "$("$python" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')"
  openssl genrsa -out "$api/sa.key" 2048 2>/dev/null
  echo "check-chart-token,check-chart,check-chart,system:masters" > "$api/tokens.csv"
  "$tools/bin/etcd" --data-dir "$api/etcd" --name check-chart \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "check-chart=http://127.0.0.1:$peer_port" > "$api/etcd.log" 2>&1 &
  etcd_pid=$!
  "$tools/bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --secure-port "$api_port" --cert-dir "$api/certs" \
    --token-auth-file "$api/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$api/sa.key" --service-account-signing-key-file "$api/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 > "$api/apiserver.log" 2>&1 &
  apiserver_pid=$!
  stop_apiserver() {
    # Throwaway state: a short grace period, then SIGKILL.
    kill "$apiserver_pid" "$etcd_pid" 2>/dev/null
    for _ in 1 2 3 4 5; do
      kill -0 "$apiserver_pid" 2>/dev/null || kill -0 "$etcd_pid" 2>/dev/null || break
      sleep 1
    done
    kill -9 "$apiserver_pid" "$etcd_pid" 2>/dev/null
    wait "$apiserver_pid" "$etcd_pid" 2>/dev/null
  }
  trap stop_apiserver EXIT
  cat > "$api/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: check-chart, cluster: {server: "https://127.0.0.1:$api_port", insecure-skip-tls-verify: true}}]
users: [{name: check-chart, user: {token: check-chart-token}}]
contexts: [{name: check-chart, context: {cluster: check-chart, user: check-chart}}]
current-context: check-chart
EOF
  kc() { "$tools/bin/kubectl" --kubeconfig "$api/kubeconfig" "$@"; }
  ready=false
  for _ in $(seq 1 90); do
    if kc get --raw /readyz >/dev/null 2>&1; then ready=true; break; fi
    sleep 1
  done
  if ! $ready; then
    fail "kube-apiserver did not become ready (see $api/apiserver.log)"
  else
    server_version="$(kc version -o json 2>/dev/null | "$python" -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
    kc create namespace "$namespace" >/dev/null && kc create namespace monitoring >/dev/null \
      && kc create namespace "$second_namespace" >/dev/null
    for render in "${renders[@]}"; do
      "$python" - "$render" > "$api/$(basename "$render")" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d
        and d["apiVersion"].split("/")[0] not in ("cert-manager.io", "monitoring.coreos.com")]
yaml.safe_dump_all(docs, sys.stdout)
PY
      if dry_out="$(kc apply --dry-run=server -f "$api/$(basename "$render")" 2>&1)"; then
        ok "kube-apiserver $server_version accepts $(basename "$render" .yaml) ($(grep -c 'server dry run' <<< "$dry_out") objects)"
      else
        fail "kube-apiserver $server_version refuses $(basename "$render" .yaml)"; grep -v 'server dry run' <<< "$dry_out" | sed 's/^/    /'
      fi
    done
    # The NOTES' commands that list the enforcing namespaces, run against this API server.
    grep -o "kubectl get namespaces -l '.*'" "$out/tier2.notes" \
      | sed "s/^kubectl get namespaces -l '\(.*\)'$/\1/" > "$api/selectors"
    listed="$(while read -r selector; do kc get namespaces -l "$selector" -o name; done < "$api/selectors" | sort -u | paste -sd ' ')"
    if [ -s "$api/selectors" ] && [[ " $listed " == *" namespace/default "* && " $listed " == *" namespace/kube-public "* ]] \
      && [[ " $listed " != *" namespace/kube-system "* && " $listed " != *" namespace/$namespace "* ]]; then
      ok "the tier 2 NOTES' kubectl commands list the enforcing namespaces: $listed"
    else
      fail "the tier 2 NOTES' kubectl commands list: ${listed:-nothing} (want default and kube-public, not kube-system or $namespace)"
    fi
  fi
  stop_apiserver
  trap - EXIT
else
  echo "  skipped: no kube-apiserver/etcd in target/tools/bin (scripts/install-kube.sh builds them)"
fi

# --- 7: hadolint -------------------------------------------------------------------------------
section "hadolint Dockerfile"
if hadolint_out="$("$hadolint" Dockerfile 2>&1)"; then
  ok "hadolint Dockerfile"
else
  fail "hadolint Dockerfile"; echo "$hadolint_out" | sed 's/^/    /'
fi

# --- 8: manifests in sync ----------------------------------------------------------------------
section "$manifest is a fresh render"
if render_manifest > "$out/manifest.fresh" 2>"$out/manifest.err"; then
  if cmp -s "$out/manifest.fresh" "$manifest"; then
    ok "$manifest matches a fresh render"
  else
    fail "$manifest differs from a fresh render (run scripts/check-chart.sh --update and commit it)"
    diff -u "$manifest" "$out/manifest.fresh" 2>&1 | sed -n '1,40p' | sed 's/^/    /'
  fi
else
  fail "rendering $manifest"; sed 's/^/    /' "$out/manifest.err"
fi

echo "  ($(( SECONDS - section_started ))s)"
elapsed=$(( SECONDS - started ))
if [ "${#failures[@]}" -gt 0 ]; then
  echo "check-chart: ${#failures[@]} check(s) failed in ${elapsed}s:"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
echo "check-chart: all checks passed in ${elapsed}s"
