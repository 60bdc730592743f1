#!/usr/bin/env bash
# Fuzzes provenance-gate on the stable toolchain: scripts/fuzz.sh TARGET|all SECONDS [afl|proptest]
#
# Targets (fuzz/src/lib.rs): admission_review, image_reference, bundle, policy,
# registry_answers, www_authenticate. Each starts from seeds built from tests/data and
# examples/, and runs SECONDS.
#
# afl (the default): AFL++ through cargo-afl, coverage-guided; the corpus grows in
# target/fuzz/<target>/out and the next run resumes it. Installs cargo-afl when missing (it
# builds AFL++ from the source it ships: about 2.5 min on 2 cores) and builds the
# instrumented targets (the whole dependency tree again, instrumented: many minutes the first
# time). Exits 1 on a crash or hang: the inputs are in target/fuzz/<target>/out/default/;
# fix the bug, add the input to fuzz/regressions/<target>/ and a test where its module is
# tested.
# proptest: no instrumentation, no extra build: proptest mutates the seeds
# (fuzz/tests/random.rs). What CI runs, where the instrumented build does not fit.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 TARGET|all SECONDS [afl|proptest]" >&2; exit 2; }
[ $# -eq 2 ] || [ $# -eq 3 ] || usage
wanted=$1
seconds=$2
engine=${3:-afl}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || usage
[ "$engine" = afl ] || [ "$engine" = proptest ] || usage
targets=(admission_review image_reference bundle policy registry_answers www_authenticate)
if [ "$wanted" != all ]; then
    [[ " ${targets[*]} " == *" $wanted "* ]] || { echo "unknown target $wanted; one of: ${targets[*]}" >&2; exit 2; }
    targets=("$wanted")
fi

if [ "$engine" = proptest ]; then
    mkdir -p target/fuzz
    log=target/fuzz/proptest.log
    only=()
    [ "$wanted" = all ] || only=(FUZZ_TARGET="$wanted")
    echo "== ${targets[*]}: ${seconds}s each (proptest)"
    if ! env "${only[@]}" FUZZ_SECONDS="$seconds" CARGO_TARGET_DIR="$PWD/target" \
        cargo test --locked --manifest-path fuzz/Cargo.toml --test random -- --nocapture >"$log" 2>&1; then
        tail -40 "$log" >&2
        exit 1
    fi
    grep -E "mutated inputs" "$log"
    echo "no failures"
    exit 0
fi

# The afl crate (fuzz/Cargo.lock) and cargo-afl must be the same version.
afl_version=0.18.2
if [ "$(cargo afl --version 2>/dev/null | awk '{print $2}')" != "$afl_version" ]; then
    echo "== installing cargo-afl $afl_version (builds AFL++ from source: about 2.5 min on 2 cores)"
    cargo install cargo-afl --locked --version "$afl_version"
fi
# Builds AFL++ only when it was not built for this toolchain yet (about 1 min).
if ! config=$(cargo afl config --build 2>&1) && [[ $config != *"already built"* ]]; then
    echo "$config" >&2
    exit 1
fi

export CARGO_TARGET_DIR="$PWD/target/afl"
echo "== building the instrumented targets"
(cd fuzz && cargo afl build --locked --features afl --bins)
binary="$CARGO_TARGET_DIR/debug/fuzz-target"

# Containers rarely allow AFL++'s preferred core_pattern and CPU governor; neither changes
# what is found, only how fast.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_AUTORESUME=1

crashed=()
for target in "${targets[@]}"; do
    work="target/fuzz/$target"
    rm -rf "$work/in"
    "$CARGO_TARGET_DIR/debug/fuzz-seeds" "$target" "$work/in"
    echo "== $target for ${seconds}s"
    # -t: one input may take 5 s (a debug build verifying four bundles); slower is a hang.
    FUZZ_TARGET=$target cargo afl fuzz -V "$seconds" -t 5000 -i "$work/in" -o "$work/out" -- "$binary" \
        >"$work/afl.log" 2>&1 || { tail -20 "$work/afl.log" >&2; exit 1; }
    stats="$work/out/default/fuzzer_stats"
    execs=$(awk -F' *: *' '$1=="execs_done"{print $2}' "$stats")
    corpus=$(awk -F' *: *' '$1=="corpus_count"{print $2}' "$stats")
    crashes=$(find "$work/out/default/crashes" -name 'id:*' | wc -l)
    hangs=$(find "$work/out/default/hangs" -name 'id:*' | wc -l)
    echo "   $execs executions, corpus $corpus, $crashes crashes, $hangs hangs"
    if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
        crashed+=("$target")
    fi
done

if [ ${#crashed[@]} -gt 0 ]; then
    echo "crashes or hangs in: ${crashed[*]} (inputs under target/fuzz/<target>/out/default/)" >&2
    exit 1
fi
echo "no crashes"
