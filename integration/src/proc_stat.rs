//! CPU time and resident memory of processes, from `/proc/PID/stat` and
//! `/proc/PID/status` (Linux): how much CPU the servers and the load
//! generator spent during a measured run, and how much memory a node holds.

use std::path::Path;

/// Clock ticks per second of `/proc` times (`sysconf(_SC_CLK_TCK)`, 100 on
/// every Linux this runs on).
const CLOCK_TICKS: f64 = 100.0;

/// User + system CPU seconds process `pid` has used so far, or `None` if it
/// cannot be read (the process is gone, or this is not Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// User + system CPU seconds of this process so far.
pub fn own_cpu_seconds() -> Option<f64> {
    stat_cpu(Path::new("/proc/self/stat"))
}

/// Resident memory of process `pid` (`VmRSS`), in bytes, or `None` if it
/// cannot be read.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"));
    parse_vm_rss(&status.ok()?)
}

/// The `VmRSS:` line of a `status` file (in kB: KiB), in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

fn stat_cpu(path: &Path) -> Option<f64> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// utime + stime (fields 14 and 15) of a `stat` line, in seconds. The
/// command name (field 2) may hold spaces, so fields count from its `)`.
fn parse_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 is at index 0, so field N is at index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_read_past_a_name_with_spaces() {
        let line = "42 (my prog) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(3.0));
    }

    #[test]
    fn resident_memory_is_the_vm_rss_line_in_bytes() {
        let status = "Name:\tdike\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn this_process_has_resident_memory() {
        assert!(resident_bytes(std::process::id()).is_some_and(|b| b > 0));
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        assert!(own_cpu_seconds().is_some_and(|s| s >= 0.0));
    }
}
