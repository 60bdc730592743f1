#!/usr/bin/env bash
# Installs the system tools the tests run, when missing; safe to run again.
# - docker-registry: CNCF distribution 2.8 (Debian's package), the registry
#   without the referrers API that the registry tests start on loopback.
#   Installing it does not start it (the tests start their own).
# - ip (iproute2): the end-to-end tests (tests/e2e_apiserver.rs) run the webhook in a network
#   namespace of their own; creating one needs root.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi

if ! command -v docker-registry >/dev/null 2>&1; then
  echo "== installing docker-registry (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # policy-rc.d-style environments may refuse to start the packaged
  # service; that is fine, the tests never use it.
  $sudo apt-get install -y -qq --no-install-recommends docker-registry
  # Where the package's service did start, stop it: it would only hold port
  # 5000 and a storage directory the tests never use.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    $sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi
docker-registry --version

if ! command -v ip >/dev/null 2>&1; then
  echo "== installing iproute2 (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends iproute2
fi
ip -V
