//! Helpers shared by the fuzz targets.

use std::cell::Cell;

thread_local! {
    /// Set while code runs whose panics are caught on purpose.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, inside which a panic that the code under test catches itself
/// (ractor_cluster's derived `deserialize` wraps each argument's
/// `BytesConvertable::from_bytes`, which may panic, in `catch_unwind`) is
/// not a finding. libfuzzer-sys's panic hook aborts at the panic, before
/// any `catch_unwind` can see it, so the hook is bypassed while `f` runs; a
/// panic that escapes `f` still fails the run.
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
    CATCHING.with(|c| c.set(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    match out {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
