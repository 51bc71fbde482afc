//! libFuzzer's `node_log` target; the body, what it feeds and what must hold are
//! in `dike_fuzz_targets::node_log`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dike_fuzz_targets::node_log::run(data));
