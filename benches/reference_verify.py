"""Median time of the reference verifier (PyPI `sigstore`, its Python API, in a loop, so process
start-up is not counted) on the real public-good bundle `cargo bench --bench pipeline` verifies
("verify real public-good bundle"). Run both in one go for a ratio:

    target/oracle-venv/bin/python benches/reference_verify.py && cargo bench --bench pipeline

Offline: the bundle carries its inclusion proof and SCT; nothing is fetched.
"""
import statistics
import sys
import time

from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier, policy

BUNDLE = "tests/data/bundles/public-good/reusable-workflow-attestation.sigstore.json"
ROOT = "trusted-roots/public-good.json"
SIGNER = ("https://github.com/github/artifact-attestations-workflows/.github/workflows/"
          "attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d")
ISSUER = "https://token.actions.githubusercontent.com"


def main(iterations: int) -> None:
    verifier = Verifier(trusted_root=TrustedRoot.from_file(ROOT))
    identity = policy.Identity(identity=SIGNER, issuer=ISSUER)
    text = open(BUNDLE, "rb").read()

    def once() -> None:
        # Parsing is part of a verification for both verifiers.
        verifier.verify_dsse(Bundle.from_json(text), identity)

    for _ in range(min(iterations, 20)):
        once()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        once()
        samples.append(time.perf_counter() - started)
    median = statistics.median(samples)
    print(f"{'reference (PyPI sigstore) verify_dsse, public-good bundle':<58} "
          f"median {median * 1e6:>10.1f} µs  ({iterations} samples)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
