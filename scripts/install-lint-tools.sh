#!/usr/bin/env bash
# Installs the tools that scripts/check-workflows.sh runs, into target/tools/bin; safe to run
# again (each tool is skipped when the pinned version is already there).
#
#   target/tools/bin/actionlint   github.com/rhysd/actionlint/cmd/actionlint, built from its Go
#                                 module through the Go module proxy (no release binary is
#                                 downloaded); about a minute on 2 cores with a cold Go cache
#   ShellCheck                    Debian's shellcheck package, which actionlint runs on every
#                                 `run:` script of a workflow when it is on PATH
#
# Needs Go >= 1.24 (the version actionlint's go.mod names) for actionlint.
# Prints the path of each tool and its version.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_VERSION="v1.7.12"

tools="$PWD/target/tools"
mkdir -p "$tools/bin"

# --- actionlint (Go module proxy) -----------------------------------------------------------
if "$tools/bin/actionlint" -version 2>/dev/null | sed -n 1p | grep -qx "$ACTIONLINT_VERSION"; then
  :
else
  if ! command -v go >/dev/null 2>&1; then
    echo "install-lint-tools: Go is required to build actionlint (apt-get install golang-go, or a Go toolchain on PATH)" >&2
    exit 1
  fi
  echo "== building actionlint $ACTIONLINT_VERSION from its Go module ($(go version))"
  t0=$SECONDS
  # GOFLAGS=-mod=mod: build the module's own go.sum-checked dependency set, whatever the
  # caller's GOFLAGS say; GOTOOLCHAIN=local: never download another Go toolchain.
  GOBIN="$tools/bin" CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-local}" \
    go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  echo "== actionlint built in $((SECONDS - t0))s"
fi

# --- shellcheck (Debian) --------------------------------------------------------------------
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "== installing shellcheck (Debian package)"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -qq --no-install-recommends shellcheck >/dev/null 2>&1; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
  fi
fi

echo "actionlint:          $tools/bin/actionlint ($("$tools/bin/actionlint" -version | sed -n 1p))"
echo "shellcheck:          $(command -v shellcheck) ($(shellcheck --version | sed -n 's/^version: //p'))"
