#!/usr/bin/env bash
# Checks the GitHub Actions workflows: the project's own (.github/workflows/*.yml) and the
# example producers copy (examples/github-workflow-*.yml). Called by .ci/run.
#
#   1. actionlint (syntax, expressions, action inputs and outputs, `needs`, permissions, and
#      ShellCheck on every `run:` script), installed by scripts/install-lint-tools.sh.
#   2. Every step that attests an image (actions/attest-build-provenance, actions/attest or
#      actions/attest-sbom with `subject-digest`) is one provenance-gate can use: the digest
#      comes from a step's or a job's output, never written out or taken from a tag;
#      `push-to-registry: true`, so that the attestation is in the registry where the gate
#      looks; and its job may write `id-token`, `attestations` and `packages`.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

scripts/install-lint-tools.sh | sed 's/^/  /'
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "check-workflows: installing actionlint failed" >&2; exit 1; }

tools="$PWD/target/tools"
python="$tools/venv/bin/python"
[ -x "$python" ] || python=python3

shopt -s nullglob
workflows=(.github/workflows/*.yml examples/github-workflow-*.yml)
failures=0

echo "== actionlint ${workflows[*]}"
if "$tools/bin/actionlint" -no-color "${workflows[@]}"; then
  echo "  ok: actionlint"
else
  echo "  FAIL: actionlint"; failures=$((failures + 1))
fi

echo "== attestation steps provenance-gate can verify"
if "$python" - "${workflows[@]}" <<'PY'
import re, sys, yaml

ATTEST = ("actions/attest-build-provenance@", "actions/attest@", "actions/attest-sbom@")
NEEDED = {"id-token": "write", "attestations": "write", "packages": "write"}
# A digest from a step's or another job's output, nothing else.
FROM_OUTPUT = re.compile(r"^\$\{\{\s*(steps\.[\w-]+|needs\.[\w-]+)\.outputs\.[\w-]+\s*\}\}$")

problems, checked = [], 0
for path in sys.argv[1:]:
    workflow = yaml.safe_load(open(path)) or {}
    default_permissions = workflow.get("permissions") or {}
    for job_name, job in (workflow.get("jobs") or {}).items():
        permissions = job.get("permissions", default_permissions) or {}
        for step in job.get("steps") or []:
            uses, inputs = step.get("uses", ""), step.get("with") or {}
            if not uses.startswith(ATTEST) or "subject-digest" not in inputs:
                continue
            checked += 1
            where = f"{path}: job {job_name}, step {step.get('name') or uses}"
            if not FROM_OUTPUT.match(str(inputs["subject-digest"]).strip()):
                problems.append(f"{where}: subject-digest must be a step's or job's output, not {inputs['subject-digest']!r}")
            if inputs.get("push-to-registry") is not True:
                problems.append(f"{where}: push-to-registry must be true (the gate reads attestations from the registry)")
            if ":" in str(inputs.get("subject-name", "")).rsplit("/", 1)[-1]:
                problems.append(f"{where}: subject-name must not carry a tag")
            for scope, level in NEEDED.items():
                if permissions.get(scope) != level:
                    problems.append(f"{where}: the job needs permissions {scope}: {level}")
for problem in problems:
    print(f"  {problem}")
print(f"  {checked} attestation steps checked")
sys.exit(1 if problems or not checked else 0)
PY
then
  echo "  ok: attestation steps"
else
  echo "  FAIL: attestation steps"; failures=$((failures + 1))
fi

if [ "$failures" -gt 0 ]; then
  echo "check-workflows: $failures check(s) failed"
  exit 1
fi
echo "check-workflows: all checks passed"
