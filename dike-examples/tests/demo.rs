//! `dike demo` end to end: the built program starts its five node processes,
//! kills two, restarts them, and stops everything.

use std::path::Path;
use std::process::Command;

#[test]
fn the_demo_survives_two_killed_nodes_sees_them_catch_up_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_dike"))
        .arg("demo")
        .output()
        .expect("run dike demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dike demo failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("with SIGKILL"), "{stdout}");
    assert!(
        stdout.contains("All groups answered with two of five nodes down."),
        "{stdout}"
    );
    assert!(stdout.contains("caught up"), "{stdout}");
    assert!(stdout.contains("calc reads 24"), "{stdout}");
    // Every node's data directory is gone with the demo.
    let data = stdout
        .lines()
        .filter_map(|l| l.split("  data ").nth(1))
        .collect::<Vec<_>>();
    assert_eq!(data.len(), 5, "{stdout}");
    for dir in data {
        assert!(!Path::new(dir).exists(), "{dir} was left behind");
    }
}
