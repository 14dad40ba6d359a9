//! Runs a target: every corpus file first (the committed seeds and regressions must pass),
//! then mutated inputs until the time is up. Panics are caught and attributed to the input; an
//! input that runs past the per-input limit stops the process from a watchdog thread, after
//! writing the input out, since a hang cannot be interrupted in-process.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::alloc;
use crate::mutate::mutate;
use crate::targets::Target;

/// What one target's run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs run, seeds included.
    pub execs: u64,
    /// Inputs the decoder accepted (how deep the mutations get).
    pub accepted: u64,
    /// Seed files run.
    pub seeds: usize,
    /// Distinct findings (by first line of the reason) and the file each first input went to.
    pub findings: BTreeMap<String, PathBuf>,
    /// Slowest input.
    pub slowest: Duration,
    /// Most heap one input took.
    pub peak_alloc: usize,
}

/// How long and where.
pub struct Options {
    /// Mutation time after the seeds.
    pub duration: Duration,
    /// One input longer than this is a hang.
    pub input_timeout: Duration,
    /// RNG seed (printed, so a run can be repeated).
    pub seed: u64,
    /// `fuzz/corpus`.
    pub corpus: PathBuf,
    /// Where failing inputs are written.
    pub findings: PathBuf,
}

/// The files of `dir`, sorted by name.
pub fn seeds(dir: &Path) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    paths.sort();
    paths.into_iter().map(|p| std::fs::read(&p).map(|b| (p, b))).collect()
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces the panic hook with one that records where the panic happened, quietly: the
/// runner reports each distinct finding once instead of a backtrace per input.
pub fn quiet_panics() {
    panic::set_hook(Box::new(|info| {
        let loc = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("panic at {loc}: {msg}")));
    }));
}

/// Runs `target` under `opts`.
pub fn run(target: &mut Target, opts: &Options) -> std::io::Result<Report> {
    let corpus = seeds(&opts.corpus.join(target.name))?;
    assert!(!corpus.is_empty(), "{}: no seeds in {}", target.name, opts.corpus.display());
    let inputs: Vec<Vec<u8>> = corpus.iter().map(|(_, b)| b.clone()).collect();
    let out = opts.findings.join(target.name);
    let current = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    let dog =
        watchdog(target.name, current.clone(), started.clone(), origin, opts.input_timeout, out.clone());

    let mut report = Report { seeds: corpus.len(), ..Default::default() };
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut one = |input: &[u8], report: &mut Report| {
        current.lock().expect("input").clone_from(&input.to_vec());
        let base = alloc::start();
        let t0 = Instant::now();
        started.store(t0.duration_since(origin).as_millis() as u64 + 1, Relaxed);
        let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
        started.store(0, Relaxed);
        report.slowest = report.slowest.max(t0.elapsed());
        let used = alloc::peak_above(base);
        report.peak_alloc = report.peak_alloc.max(used);
        report.execs += 1;
        let why = match result {
            Ok(Ok(ok)) if used <= target.max_alloc => {
                report.accepted += ok as u64;
                return;
            }
            Ok(Ok(_)) => {
                format!("allocated {} MiB, over the bound of {} MiB", used >> 20, target.max_alloc >> 20)
            }
            Ok(Err(why)) => why,
            Err(_) => LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "panic".into()),
        };
        let key = why.lines().next().unwrap_or_default().chars().take(200).collect::<String>();
        if let std::collections::btree_map::Entry::Vacant(slot) = report.findings.entry(key) {
            let path = out.join(format!("{:016x}", fnv(input)));
            let saved = std::fs::create_dir_all(&out).and_then(|_| std::fs::write(&path, input));
            if let Err(e) = saved {
                eprintln!("{}: cannot write {}: {e}", target.name, path.display());
            }
            eprintln!("{}: FINDING {}\n  input: {}", target.name, slot.key(), path.display());
            slot.insert(path);
        }
    };
    for input in &inputs {
        one(input, &mut report);
    }
    let deadline = Instant::now() + opts.duration;
    while Instant::now() < deadline {
        let input = mutate(&mut rng, &inputs, target.shape, target.max_len);
        one(&input, &mut report);
    }
    drop(dog);
    Ok(report)
}

/// FNV-1a, to name a finding's file by its content.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| (h ^ x as u64).wrapping_mul(0x100_0000_01b3))
}

/// Stops the process when one input runs longer than `limit`, after writing it to `out`.
/// Dropping the returned guard ends the watch.
fn watchdog(
    name: &'static str,
    current: Arc<Mutex<Vec<u8>>>,
    started: Arc<AtomicU64>,
    origin: Instant,
    limit: Duration,
    out: PathBuf,
) -> Guard {
    let stop = Arc::new(AtomicU64::new(0));
    let s = stop.clone();
    std::thread::spawn(move || {
        while s.load(Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(100));
            let t = started.load(Relaxed);
            if t != 0 && origin.elapsed().as_millis() as u64 > t - 1 + limit.as_millis() as u64 {
                let input = current.lock().map(|b| b.clone()).unwrap_or_default();
                let path = out.join(format!("hang-{:016x}", fnv(&input)));
                let _ = std::fs::create_dir_all(&out).and_then(|_| std::fs::write(&path, &input));
                eprintln!("{name}: FINDING an input ran longer than {limit:?}\n  input: {}", path.display());
                std::process::exit(2);
            }
        }
    });
    Guard(stop)
}

struct Guard(Arc<AtomicU64>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.store(1, Relaxed);
    }
}
