//! The bodies of dike's fuzz targets, one function per target, built on
//! stable and without libFuzzer.
//!
//! Each body takes the bytes libFuzzer would hand its target and returns
//! normally unless it finds a fault: a panic in the code under test (other
//! than one that code catches itself, see [`expect_caught_panics`]) or a
//! broken invariant, asserted inside the body. Two harnesses drive them:
//! - `fuzz/` (cargo-fuzz, nightly): each target is a one-line
//!   `fuzz_target!` around a body here, coverage-guided by libFuzzer
//!   (`scripts/fuzz.sh`);
//! - this crate's tests (`cargo test --workspace`, stable): every file of the
//!   committed seed corpus `fuzz/corpus/<target>/`, then a fixed number of
//!   inputs [`mutate`]d from it with a seeded RNG. Not coverage-guided; it
//!   keeps the bodies compiling and the seeds passing in CI.

pub mod cli_json;
pub mod mutate;
pub mod node_log;
pub mod replica;
pub mod wire;

use std::cell::Cell;

/// A fuzz target's body: the raw input, as libFuzzer gives it.
pub type Body = fn(&[u8]);

/// Every target by its name in `fuzz/` (its corpus directory is
/// `fuzz/corpus/<name>/`), with its body over raw bytes.
pub const TARGETS: [(&str, Body); 4] = [
    ("wire", wire::run),
    ("node_log", node_log::run),
    ("replica", replica::run_bytes),
    ("cli_json", cli_json::run),
];

thread_local! {
    /// Set while code runs whose panics are caught on purpose.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, inside which a panic that the code under test catches itself
/// (ractor_cluster's derived `deserialize` wraps each argument's
/// `BytesConvertable::from_bytes`, which may panic, in `catch_unwind`) is
/// not a finding. libfuzzer-sys's panic hook aborts at the panic, before
/// any `catch_unwind` can see it, so whatever hook is installed is bypassed
/// on this thread while `f` runs; a panic that escapes `f` is resumed, so it
/// still fails the run (libFuzzer's or a test's).
pub fn expect_caught_panics<R>(f: impl FnOnce() -> R) -> R {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = CATCHING.with(|c| c.replace(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    match out {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::expect_caught_panics;

    #[test]
    fn a_panic_caught_inside_is_not_a_finding() {
        let got = expect_caught_panics(|| std::panic::catch_unwind(|| panic!("caught")).is_err());
        assert!(got);
    }

    #[test]
    fn a_panic_that_escapes_still_fails_the_run() {
        let escaped = std::panic::catch_unwind(|| expect_caught_panics(|| panic!("escapes")));
        assert!(escaped.is_err());
    }
}
