//! Every fuzz target's body, run by `cargo test` on stable: first every file
//! of its committed seed corpus (`fuzz/corpus/<target>/`), then a fixed
//! number of inputs mutated from that corpus by a seeded RNG
//! (`dike_fuzz_targets::mutate`). A body fails by panicking: a panic in the
//! code under test, or one of its own invariant checks.
//!
//! A failure prints the target, the input in hex, and how to replay it:
//! `DIKE_FUZZ_SEED=<seed> cargo test -p dike-fuzz-targets --test targets
//! <target>` runs the same inputs again; `DIKE_FUZZ_CASES=<n>` runs more (or
//! fewer) of them. The hex, written to a file (`xxd -r -p`), replays under
//! libFuzzer too: `cd fuzz && cargo +nightly fuzz run <target> FILE`.

use arbitrary::{Arbitrary, Unstructured};
use dike_core::rng::Rng;
use dike_fuzz_targets::mutate::{random_bytes, Mutator};
use dike_fuzz_targets::replica::Op;
use dike_fuzz_targets::{Body, TARGETS};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The seed of the mutated inputs unless `DIKE_FUZZ_SEED` says otherwise.
const SEED: u64 = 0x0d1c_e5ee_d019;

/// `fuzz/`, beside this crate.
fn fuzz_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("fuzz")
}

/// The committed seed corpus of `target`, in file-name order. An empty or
/// missing corpus fails the test rather than passing it vacuously.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{target}: cannot read its corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{target}: no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

fn body(target: &str) -> Body {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no body for target {target}"))
        .1
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={value}: {e}")))
}

/// Runs `target` on `input`; if it panics, fails with what it said, the
/// input and `replay`.
fn check(target: &str, input: &[u8], what: &str, replay: &str) {
    let run = body(target);
    check_run(target, input, what, replay, || run(input));
}

/// Runs `run` (`target` on `input`, or on what is drawn from it); if it
/// panics, fails with what it said, the input and `replay`.
fn check_run(target: &str, input: &[u8], what: &str, replay: &str, run: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(a panic without a message)");
        panic!(
            "fuzz target {target} failed on {what}: {message}\n\
             input ({} bytes, hex): {}\n\
             replay: {replay}",
            input.len(),
            hex(input),
        );
    }
}

fn replays_its_corpus(target: &str) {
    for (path, bytes) in corpus(target) {
        let replay = format!(
            "cargo test -p dike-fuzz-targets --test targets {target}::every_seed; \
             or cd fuzz && cargo +nightly fuzz run {target} {}",
            path.display()
        );
        check(target, &bytes, &format!("seed {}", path.display()), &replay);
    }
}

fn survives_mutated_inputs(target: &str, cases: u64) {
    let seed = env_u64("DIKE_FUZZ_SEED").unwrap_or(SEED);
    let cases = env_u64("DIKE_FUZZ_CASES").unwrap_or(cases);
    let seeds: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, b)| b).collect();
    let mut inputs = Mutator::new(seed, &seeds);
    let replay = format!(
        "DIKE_FUZZ_SEED={seed:#x} DIKE_FUZZ_CASES={cases} \
         cargo test -p dike-fuzz-targets --test targets {target}::mutated"
    );
    for case in 0..cases {
        let input = inputs.next_input();
        check(
            target,
            &input,
            &format!("mutated input {case} of seed {seed:#x}"),
            &replay,
        );
    }
}

/// One module per target: `<target>::every_seed_in_the_corpus_passes` and
/// `<target>::mutated_inputs_pass`, the latter with `$cases` inputs (sized so
/// the four targets together stay within a few seconds in a debug build;
/// docs/TESTING.md has the timings).
macro_rules! target_tests {
    ($($target:ident: $cases:expr;)*) => {
        $(mod $target {
            #[test]
            fn every_seed_in_the_corpus_passes() {
                super::replays_its_corpus(stringify!($target));
            }

            #[test]
            fn mutated_inputs_pass() {
                super::survives_mutated_inputs(stringify!($target), $cases);
            }
        })*

        /// The targets tested above, to compare with those of `fuzz/`.
        const TESTED: &[&str] = &[$(stringify!($target)),*];
    };
}

target_tests! {
    wire: 40_000;
    node_log: 1_000;
    replica: 10_000;
    cli_json: 40_000;
}

/// Sequences of `replica` operations drawn per case.
const REPLICA_SEQUENCES: u64 = 2_000;

/// The `replica` target's raw input (`Vec<Op>` as libfuzzer-sys decodes it)
/// ends at the first "continue?" byte that is even, so a blind mutation of
/// the seeds runs one or two operations. Here each case draws 64 to 512
/// operations with `Op::arbitrary`, one after another, from random bytes,
/// and runs them; a failure prints those bytes (not a libFuzzer input: the
/// seed replays it).
#[test]
fn replica_long_random_operation_sequences_pass() {
    let seed = env_u64("DIKE_FUZZ_SEED").unwrap_or(SEED);
    let cases = env_u64("DIKE_FUZZ_CASES").unwrap_or(REPLICA_SEQUENCES);
    let replay = format!(
        "DIKE_FUZZ_SEED={seed:#x} DIKE_FUZZ_CASES={cases} \
         cargo test -p dike-fuzz-targets --test targets replica_long"
    );
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let count = rng.range(64, 513) as usize;
        let bytes = random_bytes(&mut rng, count * 16);
        let mut u = Unstructured::new(&bytes);
        let ops: Vec<Op> = (0..count)
            .map_while(|_| Op::arbitrary(&mut u).ok())
            .collect();
        let what = format!(
            "operation sequence {case} of seed {seed:#x} ({} operations drawn from the bytes)",
            ops.len()
        );
        check_run("replica", &bytes, &what, &replay, || {
            dike_fuzz_targets::replica::run(ops)
        });
    }
}

/// The `[[bin]]` names of fuzz/Cargo.toml: the cargo-fuzz targets.
fn cargo_fuzz_targets() -> Vec<String> {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(name) = line.strip_prefix("name = ").filter(|_| in_bin) {
            names.push(name.trim_matches('"').to_owned());
        }
    }
    names.sort();
    names
}

#[test]
fn every_cargo_fuzz_target_has_a_body_here_and_runs_in_these_tests() {
    let mut bodies: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    bodies.sort();
    let mut tested: Vec<String> = TESTED.iter().map(|n| (*n).to_owned()).collect();
    tested.sort();
    let fuzz = cargo_fuzz_targets();
    assert!(!fuzz.is_empty(), "no [[bin]] in fuzz/Cargo.toml");
    assert_eq!(fuzz, bodies, "fuzz/Cargo.toml's targets and TARGETS differ");
    assert_eq!(
        fuzz, tested,
        "fuzz/Cargo.toml's targets and the tests differ"
    );
}
