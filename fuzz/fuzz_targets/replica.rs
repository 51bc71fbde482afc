//! libFuzzer's `replica` target; the body, what it feeds and what must hold
//! are in `dike_fuzz_targets::replica`.
#![no_main]

use dike_fuzz_targets::replica::{run, Op};

libfuzzer_sys::fuzz_target!(|ops: Vec<Op>| run(ops));
