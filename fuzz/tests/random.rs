//! The stable-toolchain fallback of AFL++, without instrumentation: every target over inputs
//! that proptest mutates from its seeds (bit flips, byte changes, tokens the parsers care
//! about, cuts, splices of two seeds), for `FUZZ_SECONDS` per target (default 1), or only
//! `FUZZ_TARGET`. `scripts/fuzz.sh TARGET SECONDS proptest` runs it; a failure prints the
//! smallest input proptest found.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use provenance_gate_fuzz::{seeds, TARGETS};

/// Bytes that change what the parsers see: JSON and YAML structure, numbers at the edges,
/// escapes and invalid UTF-8, reference, glob and challenge syntax, the registry target's
/// part separator.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"18446744073709551616",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3\xa9",
    b"\xe2\x80\xae",
    b"sha256:",
    b"@",
    b"/",
    b"..",
    b":443",
    b"[::1]",
    b"**",
    b"*",
    b"{a,b}",
    b"&a ",
    b"*a",
    b"\n",
    b"\n- ",
    b"Bearer ",
    b"realm=",
    b"\"mediaType\"",
    b"\"manifests\"",
    b"application/vnd.oci.image.index.v1+json",
    b"\"kind\"",
    b"\"Pod\"",
    b"\"UPDATE\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: Index,
        bit: u8,
    },
    SetByte {
        at: Index,
        byte: u8,
    },
    Insert {
        at: Index,
        token: &'static [u8],
    },
    Delete {
        at: Index,
        length: usize,
    },
    Cut {
        at: Index,
    },
    /// The tail of the other seed, from `from`, in place of this one's tail from `at`.
    Splice {
        at: Index,
        from: Index,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        (any::<Index>(), select(TOKENS)).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<Index>(), 1usize..64).prop_map(|(at, length)| Mutation::Delete { at, length }),
        any::<Index>().prop_map(|at| Mutation::Cut { at }),
        (any::<Index>(), any::<Index>()).prop_map(|(at, from)| Mutation::Splice { at, from }),
    ]
}

fn apply(mut input: Vec<u8>, other: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let position = |at: &Index| {
            if input.is_empty() {
                0
            } else {
                at.index(input.len() + 1)
            }
        };
        match mutation {
            Mutation::FlipBit { at, bit } if !input.is_empty() => {
                let index = at.index(input.len());
                input[index] ^= 1 << bit;
            }
            Mutation::SetByte { at, byte } if !input.is_empty() => {
                let index = at.index(input.len());
                input[index] = *byte;
            }
            Mutation::Insert { at, token } => {
                let index = position(at);
                input.splice(index..index, token.iter().copied());
            }
            Mutation::Delete { at, length } => {
                let index = position(at);
                let end = (index + length).min(input.len());
                input.drain(index..end);
            }
            Mutation::Cut { at } => input.truncate(position(at)),
            Mutation::Splice { at, from } if !other.is_empty() => {
                input.truncate(position(at));
                input.extend_from_slice(&other[from.index(other.len())..]);
            }
            _ => {}
        }
    }
    input
}

/// A seed, changed by one to eight mutations (with another seed for splices).
fn mutated(seeds: Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<Index>(),
        any::<Index>(),
        prop::collection::vec(mutation(), 1..8),
    )
        .prop_map(move |(seed, other, mutations)| {
            let seeds: &[Vec<u8>] = &seeds;
            apply(
                seed.get::<Vec<u8>>(seeds).clone(),
                other.get::<Vec<u8>>(seeds),
                &mutations,
            )
        })
}

#[test]
fn every_target_survives_mutated_seeds() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1);
    let only = std::env::var("FUZZ_TARGET").ok();
    for (name, target) in TARGETS {
        if only.as_deref().is_some_and(|only| only != *name) {
            continue;
        }
        let seeds: Vec<Vec<u8>> = seeds(name).into_iter().map(|(_, bytes)| bytes).collect();
        let strategy = mutated(Arc::new(seeds));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let inputs = std::cell::Cell::new(0u64);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        // A runner counts its cases for good: a new one, from a new seed, for each batch.
        for batch in 0u128.. {
            if Instant::now() >= deadline {
                break;
            }
            let seed = (started ^ batch.rotate_left(64)).to_le_bytes();
            let mut seed_bytes = [0u8; 32];
            seed_bytes[..16].copy_from_slice(&seed);
            let mut runner = TestRunner::new_with_rng(
                Config {
                    cases: 32,
                    failure_persistence: None,
                    ..Config::default()
                },
                TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
            );
            if let Err(failure) = runner.run(&strategy, |input| {
                target(&input);
                inputs.set(inputs.get() + 1);
                Ok(())
            }) {
                panic!("{name} (rng seed {seed_bytes:?}): {failure}");
            }
        }
        let inputs = inputs.get();
        eprintln!("{name}: {inputs} mutated inputs in {seconds}s, no failure");
    }
}

#[test]
fn mutations_change_inputs_within_bounds() {
    let seed = b"{\"kind\":\"Pod\"}".to_vec();
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(prop::collection::vec(mutation(), 1..8)), |mutations| {
            let changed = apply(seed.clone(), b"other", &mutations);
            let inserted: usize = mutations
                .iter()
                .map(|mutation| match mutation {
                    Mutation::Insert { token, .. } => token.len(),
                    Mutation::Splice { .. } => 5,
                    _ => 0,
                })
                .sum();
            prop_assert!(changed.len() <= seed.len() + inserted);
            Ok(())
        })
        .unwrap();
}
