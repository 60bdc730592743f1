//! The AFL++ entry point of every target: `FUZZ_TARGET=<name>` picks one (see
//! `provenance_gate_fuzz::TARGETS`), so that one instrumented binary serves them all.

fn main() {
    let name = std::env::var("FUZZ_TARGET").unwrap_or_default();
    let Some(target) = provenance_gate_fuzz::target(&name) else {
        eprintln!(
            "FUZZ_TARGET must be one of: {}",
            provenance_gate_fuzz::TARGETS
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}
