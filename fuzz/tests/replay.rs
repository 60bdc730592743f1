//! Every target over its seeds and over the inputs AFL++ found crashing before
//! (`fuzz/regressions/<target>/`, each fixed and also tested where its module is tested), so
//! that the targets themselves cannot rot between fuzzing runs.

use std::path::Path;

use provenance_gate_fuzz::{seeds, TARGETS};

#[test]
fn every_target_has_seeds_and_passes_them() {
    for (name, target) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for (seed, bytes) in seeds {
            eprintln!("{name}: {seed}");
            target(&bytes);
        }
    }
}

#[test]
fn every_earlier_crash_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for (name, target) in TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            eprintln!("{name}: {}", path.display());
            target(&std::fs::read(&path).expect("a regression input"));
        }
    }
}

#[test]
fn an_unknown_target_is_refused() {
    assert!(provenance_gate_fuzz::target("nonsense").is_none());
    assert!(seeds("nonsense").is_empty());
}
