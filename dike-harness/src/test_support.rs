//! Helpers of the unit tests.

use crate::process::Launch;
use std::path::{Path, PathBuf};

/// A directory for test `test`'s logs, unique to this process.
pub(crate) fn dir(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dike-harness-{test}-{}", std::process::id()))
}

/// A child that runs until it is killed.
pub(crate) fn sleeper() -> Launch {
    Launch::new("sleep").arg("600")
}

/// Whether process `pid` is gone (reaped).
pub(crate) fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}
