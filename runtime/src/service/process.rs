//! The process metrics every Prometheus client library exports (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, ...), read from `/proc/self` at each
//! scrape. prometheus-client has no process collector, and the `prometheus` crate's would bring
//! a second metrics library (and `procfs`) for six numbers; this reads the same files with the
//! same names and meanings. Off Linux (no `/proc`) nothing is exported.

use std::fs;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// The collector registered with the runtime's registry.
#[derive(Debug, Clone, Copy)]
pub struct ProcessCollector;

/// What one scrape reads about the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: f64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: f64,
    /// Threads of the process.
    pub threads: f64,
    /// Start time, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// The soft limit on file descriptors (`None`: unlimited).
    pub max_fds: Option<f64>,
}

// USER_HZ, the unit of the times in /proc/self/stat: 100 on every Linux ABI. Memory comes from
// /proc/self/status in kB rather than from stat's pages, whose size varies (4 or 64 KiB on
// aarch64).
const TICKS_PER_SECOND: f64 = 100.0;

impl ProcessStats {
    /// Reads `/proc/self`; `None` when it cannot (not Linux).
    pub fn read() -> Option<Self> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let boot = fs::read_to_string("/proc/stat").ok()?;
        let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
        Self::parse(&stat, &status, &boot, &limits, open_fds)
    }

    /// The numbers in `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and
    /// `/proc/self/limits` (proc(5)).
    pub fn parse(stat: &str, status: &str, proc_stat: &str, limits: &str, open_fds: f64) -> Option<Self> {
        // The command name (field 2) is in parentheses and may hold spaces: count from after it.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): field k is f[k - 3].
        let field = |k: usize| f.get(k - 3).and_then(|v| v.parse::<f64>().ok());
        let btime = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())?;
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .map(|v| v * 1024.0)
        };
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<f64>().ok());
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) / TICKS_PER_SECOND,
            threads: field(20)?,
            start_time_seconds: btime + field(22)? / TICKS_PER_SECOND,
            virtual_bytes: kb("VmSize:")?,
            resident_bytes: kb("VmRSS:")?,
            open_fds,
            max_fds,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = ProcessStats::read() else { return Ok(()) };
        let cpu = ConstCounter::new(s.cpu_seconds);
        // The encoder appends the unit (and `_total`): process_cpu_seconds_total.
        let m = encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?;
        cpu.encode(m)?;
        let mut gauge = |name: &str, help: &str, unit: Option<&Unit>, v: f64| {
            let g = ConstGauge::new(v);
            let m = encoder.encode_descriptor(name, help, unit, g.metric_type())?;
            g.encode(m)
        };
        gauge(
            "process_resident_memory",
            "Resident memory size in bytes",
            Some(&Unit::Bytes),
            s.resident_bytes,
        )?;
        gauge("process_virtual_memory", "Virtual memory size in bytes", Some(&Unit::Bytes), s.virtual_bytes)?;
        gauge("process_open_fds", "Number of open file descriptors", None, s.open_fds)?;
        if let Some(max) = s.max_fds {
            gauge("process_max_fds", "Maximum number of open file descriptors", None, max)?;
        }
        gauge("process_threads", "Number of OS threads in the process", None, s.threads)?;
        gauge(
            "process_start_time",
            "Start time of the process since unix epoch in seconds",
            Some(&Unit::Seconds),
            s.start_time_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files_with_spaces_in_the_command_name() {
        // Fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime(14) stime(15) cutime cstime priority nice num_threads(20) itrealvalue
        // starttime(22) vsize rss.
        let stat =
            "4242 (dyce (model) x) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 7 0 1000 123456789 2048 rest";
        let status = "Name:\tdyce\nVmSize:\t  120560 kB\nVmRSS:\t    8192 kB\nThreads:\t7\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let s = ProcessStats::parse(stat, status, "cpu 1 2 3\nbtime 1700000000\n", limits, 12.0).unwrap();
        assert_eq!(s.cpu_seconds, 4.0);
        assert_eq!(s.threads, 7.0);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_bytes, 120_560.0 * 1024.0);
        assert_eq!(s.resident_bytes, 8192.0 * 1024.0);
        assert_eq!((s.open_fds, s.max_fds), (12.0, Some(1024.0)));
        assert!(ProcessStats::parse("garbage", "", "", "", 0.0).is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read().expect("/proc is there on Linux");
        assert!(s.resident_bytes > 1e6 && s.threads >= 1.0 && s.open_fds >= 3.0, "{s:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0 * 365.0, "{s:?}");
    }
}
