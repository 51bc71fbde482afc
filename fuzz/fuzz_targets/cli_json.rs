//! libFuzzer's `cli_json` target; the body, what it feeds and what must hold are
//! in `dike_fuzz_targets::cli_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dike_fuzz_targets::cli_json::run(data));
