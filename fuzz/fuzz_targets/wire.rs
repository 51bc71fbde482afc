//! libFuzzer's `wire` target; the body, what it feeds and what must hold are
//! in `dike_fuzz_targets::wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dike_fuzz_targets::wire::run(data));
