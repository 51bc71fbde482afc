//! Finding the `dike` program the cluster's nodes run.
//!
//! Integration tests of this package cannot use `CARGO_BIN_EXE_dike` (that
//! variable exists only for the tests of the package that owns the binary),
//! so the program is looked up next to the running test executable: a test
//! runs from `target/<profile>/deps/`, and cargo puts binaries in
//! `target/<profile>/`. Before the first use in a process the binary is
//! brought up to date with one `cargo build` of the same profile (a no-op
//! when `cargo test --workspace` already built it), so a test never runs a
//! stale node after the runtime changed.
//!
//! `DIKE_BIN=/path/to/dike` overrides all of this (no build is run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `dike` executable, built if needed (once per process).
///
/// Panics with the build's output if the program cannot be found or built:
/// no cluster can start without it.
pub fn dike_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| match locate() {
        Ok(path) => path,
        Err(why) => panic!("cannot provide the `dike` program: {why}"),
    })
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("DIKE_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("DIKE_BIN={} is not a file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
    let profile_dir = profile_dir_of(&exe).ok_or_else(|| {
        format!(
            "{} is not in target/<profile> or its deps; set DIKE_BIN",
            exe.display()
        )
    })?;
    let binary = profile_dir.join(format!("dike{}", std::env::consts::EXE_SUFFIX));
    build(&profile_dir)?;
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("{} is missing after the build", binary.display()))
    }
}

/// `target/<profile>` for an executable in `target/<profile>/deps` (a
/// test) or in `target/<profile>` itself (a binary of this package, such as
/// the benchmark; recognised by the `deps` directory beside it).
pub fn profile_dir_of(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    if dir.file_name()? == "deps" {
        return Some(dir.parent()?.to_path_buf());
    }
    dir.join("deps").is_dir().then(|| dir.to_path_buf())
}

/// The cargo arguments that build into the profile directory named `dir`:
/// `debug` is where `cargo test` puts its (test-profile) artifacts, so the
/// build shares every dependency it compiled.
pub fn profile_args(dir: &str) -> Vec<String> {
    match dir {
        "debug" => vec!["--profile".into(), "test".into()],
        "release" => vec!["--release".into()],
        other => vec!["--profile".into(), other.into()],
    }
}

fn build(profile_dir: &Path) -> Result<(), String> {
    let dir = profile_dir
        .file_name()
        .and_then(|d| d.to_str())
        .ok_or("profile directory without a name")?;
    let target = profile_dir
        .parent()
        .ok_or("profile directory without a parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "-p", "dike-examples", "--bin", "dike"])
        .args(profile_args(dir))
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build -p dike-examples --bin dike failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_directory_is_the_parent_of_deps() {
        let exe = Path::new("/w/target/debug/deps/original_suite-0123abcd");
        assert_eq!(profile_dir_of(exe), Some(PathBuf::from("/w/target/debug")));
        assert_eq!(profile_dir_of(Path::new("/usr/bin/true")), None);
    }

    #[test]
    fn builds_go_to_the_profile_directory_the_tests_run_from() {
        assert_eq!(profile_args("debug"), ["--profile", "test"]);
        assert_eq!(profile_args("release"), ["--release"]);
        assert_eq!(profile_args("bench"), ["--profile", "bench"]);
    }
}
