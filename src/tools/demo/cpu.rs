//! Where the cores went during the burst: CPU time of this process's threads, read from
//! `/proc/self/task`, grouped by thread name. The demo's runtime, controller and load generator
//! share one process and two cores, so when a burst is not held this shows which part of the
//! budget took the time: the load generator (`demo-load`), the HTTP server and controller
//! (`demo-stack`), or the model (`dyce-model`, `dyce-kernel-*`).

use std::collections::HashMap;

/// Clock ticks per second of `/proc`'s `utime` and `stime`: USER_HZ, which Linux fixes at 100
/// for these interfaces on every architecture (the kernel's own HZ may differ).
const TICKS_PER_SECOND: f64 = 100.0;

/// Per thread id: its name and CPU ticks (user + system) so far.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(HashMap<u32, (String, u64)>);

/// Cores busy on average over an interval (CPU seconds per second), by thread group.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CoresBusy {
    /// The load generator's runtime.
    pub load: f64,
    /// The stack's runtime: HTTP server, gRPC, controller.
    pub server: f64,
    /// The model thread and its kernel team.
    pub model: f64,
    /// Everything else (main thread, blocking pools).
    pub other: f64,
}

impl CoresBusy {
    /// All groups together.
    pub fn total(&self) -> f64 {
        self.load + self.server + self.model + self.other
    }

    /// For report.json.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"load": self.load, "server": self.server, "model": self.model, "other": self.other})
    }
}

/// This process's threads now; empty where `/proc` is not readable (then the report has no
/// CPU table rather than a wrong one).
pub fn snapshot() -> Snapshot {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Snapshot(out) };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
        if let Some(entry) =
            std::fs::read_to_string(task.path().join("stat")).ok().and_then(|s| parse_stat(&s))
        {
            out.insert(tid, entry);
        }
    }
    Snapshot(out)
}

/// Name and utime + stime from a `stat` line. The name sits in parentheses and may itself hold
/// spaces or parentheses, so the fields are counted from the last `)`.
fn parse_stat(line: &str) -> Option<(String, u64)> {
    let (open, close) = (line.find('(')?, line.rfind(')')?);
    let name = line.get(open + 1..close)?.to_string();
    // After the name: state (field 3) ... utime is field 14, stime field 15.
    let fields: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn group(name: &str) -> usize {
    if name.starts_with("demo-load") {
        0
    } else if name.starts_with("demo-stack") {
        1
    } else if name.starts_with("dyce-model") || name.starts_with("dyce-kernel") {
        2
    } else {
        3
    }
}

/// Cores busy between `a` and `b`, `seconds` apart; a thread started in between counts from
/// zero, one that ended in between is lost (the groups above live for the whole run).
pub fn between(a: &Snapshot, b: &Snapshot, seconds: f64) -> Option<CoresBusy> {
    if b.0.is_empty() || seconds <= 0.0 {
        return None;
    }
    let mut sums = [0u64; 4];
    for (tid, (name, ticks)) in &b.0 {
        let before = a.0.get(tid).map_or(0, |e| e.1);
        sums[group(name)] += ticks.saturating_sub(before);
    }
    let cores = |t: u64| t as f64 / TICKS_PER_SECOND / seconds;
    Some(CoresBusy {
        load: cores(sums[0]),
        server: cores(sums[1]),
        model: cores(sums[2]),
        other: cores(sums[3]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "4242 (dyce-kernel-0) S 1 2 3 4 5 6 7 8 9 10 250 17 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("dyce-kernel-0".into(), 267)));
        let odd = "7 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 3 4 0 0";
        assert_eq!(parse_stat(odd), Some(("a (b) c".into(), 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_measured_by_group() {
        let a = snapshot();
        assert!(!a.0.is_empty(), "/proc/self/task is readable on Linux");
        // The thread spins until it has itself used 20 ticks of CPU (by its own stat), then takes
        // the second snapshot while still alive: no dependence on how busy the machine is.
        let b = std::thread::Builder::new()
            .name("demo-load-test".into())
            .spawn(|| {
                let own = || {
                    std::fs::read_to_string("/proc/thread-self/stat")
                        .ok()
                        .and_then(|s| parse_stat(&s))
                        .unwrap()
                        .1
                };
                let start = own();
                while own() < start + 20 {
                    std::hint::black_box(0u64);
                }
                snapshot()
            })
            .unwrap()
            .join()
            .unwrap();
        let busy = between(&a, &b, 1.0).unwrap();
        assert!(busy.load >= 0.2 && busy.total() >= busy.load, "20 ticks of demo-load in 1 s: {busy:?}");
    }
}
