//! A fork-join team for the many small parallel loops of one forward pass.
//!
//! A batch of one 28×28 image runs about twenty convolutions of 20–40 µs each. rayon's
//! workers go to sleep between them, and waking one costs a futex round trip of several
//! microseconds per loop, so splitting such a convolution across threads used to lose time.
//! Here the calling thread works as well, helpers claim tasks one at a time from a shared
//! counter, and while a [`Team::session`] is open (one forward pass) the helpers spin between
//! loops instead of sleeping: starting a loop is a store and a cache-line transfer. Outside a
//! session they spin briefly and then sleep, so an idle server burns no CPU.
//!
//! Written here rather than taken from a crate because the session scope is the point: the
//! published low-latency pools spin for a fixed time after every job (burning CPU the HTTP
//! threads need after the last loop of a pass) and abort the process on a panic in a task.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

/// Index half of `state` once every task of the current loop has been claimed and finished.
const CLOSED: u64 = u32::MAX as u64;
/// Spin iterations a helper waits for the next loop outside a session before sleeping.
const IDLE_SPINS: u32 = 1 << 12;
/// Every spinning thread yields its CPU once per this many spins (a few µs). A woken helper is
/// often placed on its waker's CPU; without the yield, caller and helper sharing one CPU would
/// each spin through a whole scheduler slice (milliseconds) waiting for the other. With it they
/// hand the CPU back and forth at µs granularity until the scheduler spreads them out, and a
/// thread of another pool that lands beside a spinning helper is not kept waiting either.
const YIELD_EVERY: u32 = 64;

/// One round of a spin-wait: mostly a pause, now and then a yield of the CPU.
fn pause(spins: u32) {
    if spins % YIELD_EVERY == YIELD_EVERY - 1 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// A caller plus `threads - 1` helper threads running index loops (see the module docs).
pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

/// Keeps a hot atomic on a cache line of its own (128 bytes: adjacent-line prefetch), so that
/// claiming tasks, counting finished ones and checking for sessions do not move each other's
/// lines between cores (the two vCPUs here are sometimes far apart; each transfer counts).
#[repr(align(128))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

struct Shared {
    /// Loop number in the high 32 bits, next unclaimed task index in the low 32 bits.
    state: Line<AtomicU64>,
    /// Tasks of the current loop.
    ntasks: AtomicUsize,
    /// Threads that claim tasks, the caller included.
    threads: usize,
    /// The current loop's `&&(dyn Fn(usize) + Sync)`, on the caller's stack.
    job: AtomicPtr<()>,
    /// Tasks of the current loop that have finished (each thread adds its count once).
    done: Line<AtomicUsize>,
    panicked: AtomicBool,
    /// Open sessions: helpers spin while this is non-zero.
    sessions: Line<AtomicUsize>,
    /// Helpers waiting on `wake`.
    sleepers: AtomicUsize,
    /// A loop is being run (guards against concurrent or nested callers).
    busy: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

fn epoch(state: u64) -> u32 {
    (state >> 32) as u32
}

impl Shared {
    /// Claims and runs tasks of loop `e` until none is left.
    ///
    /// A claim takes a run of indices, not one: a part of what is left shared out over the
    /// threads (guided scheduling). Each claim is a compare-exchange on a line the other
    /// threads also write, and at a few hundred ns per transfer between distant cores a loop
    /// of 640 one-µs tasks (GELU over every plane of a ConvNeXt batch of 32) spent a sixth of
    /// its time claiming. Runs shrink towards the end, so the threads still finish together.
    fn work(&self, e: u32) {
        let n = self.ntasks.load(Acquire) as u64;
        let job = self.job.load(Acquire).cast_const().cast::<&(dyn Fn(usize) + Sync)>();
        let share = 2 * self.threads as u64;
        let mut s = self.state.load(Acquire);
        let mut finished = 0;
        // A helper that read `n`/`job` of a newer loop cannot claim here: the caller closes
        // the old loop before publishing the new one, so the compare-exchange fails.
        while epoch(s) == e && (s & CLOSED) < n {
            let first = s & CLOSED;
            let take = ((n - first) / share).max(1);
            match self.state.compare_exchange_weak(s, s + take, AcqRel, Acquire) {
                Ok(_) => {
                    // SAFETY: the claim succeeded, so loop `e` is still running and its caller
                    // is waiting in `for_each` with `job` alive on its stack.
                    let f = unsafe { *job };
                    for i in first..first + take {
                        if catch_unwind(AssertUnwindSafe(|| f(i as usize))).is_err() {
                            self.panicked.store(true, Relaxed);
                        }
                    }
                    finished += take as usize;
                    s = self.state.load(Acquire);
                }
                Err(now) => s = now,
            }
        }
        if finished > 0 {
            self.done.fetch_add(finished, Release);
        }
    }

    fn notify_sleepers(&self) {
        if self.sleepers.load(SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake.notify_all();
        }
    }

    fn helper(&self) {
        let mut seen = 0u32;
        loop {
            let mut idle = 0u32;
            let s = loop {
                let s = self.state.load(Acquire);
                if epoch(s) != seen {
                    break s;
                }
                if self.stop.load(Relaxed) {
                    return;
                }
                if self.sessions.load(Relaxed) > 0 || idle < IDLE_SPINS {
                    idle = idle.saturating_add(1);
                    pause(idle);
                    continue;
                }
                let mut g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
                self.sleepers.fetch_add(1, SeqCst);
                while epoch(self.state.load(SeqCst)) == seen
                    && !self.stop.load(SeqCst)
                    && self.sessions.load(SeqCst) == 0
                {
                    g = self.wake.wait(g).unwrap_or_else(PoisonError::into_inner);
                }
                self.sleepers.fetch_sub(1, SeqCst);
                idle = 0;
            };
            seen = epoch(s);
            self.work(seen);
        }
    }
}

impl Team {
    /// A team of `threads` (the caller counts as one; 0 is taken as 1).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: Line(AtomicU64::new(CLOSED)),
            ntasks: AtomicUsize::new(0),
            threads,
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: Line(AtomicUsize::new(0)),
            panicked: AtomicBool::new(false),
            sessions: Line(AtomicUsize::new(0)),
            sleepers: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut team = Self { shared, helpers: Vec::new() };
        for i in 1..threads {
            let sh = team.shared.clone();
            let h = std::thread::Builder::new().name(format!("dyce-team-{i}")).spawn(move || sh.helper())?;
            team.helpers.push(h);
        }
        Ok(team)
    }

    /// Threads that run a loop, the caller included.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Runs `f` with the helpers spinning between loops instead of sleeping (one forward pass).
    pub fn session<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Close<'a>(&'a Shared);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                self.0.sessions.fetch_sub(1, SeqCst);
            }
        }
        self.shared.sessions.fetch_add(1, SeqCst);
        let _close = Close(&self.shared);
        self.shared.notify_sleepers();
        f()
    }

    /// Runs `f(0)`, …, `f(n - 1)` on the team and returns when all have finished. Runs them on
    /// the calling thread when the team is already running a loop (nested or concurrent use).
    /// A panic in a task is re-raised here after every task has finished.
    pub fn for_each(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        let sh = &*self.shared;
        if n <= 1 || self.helpers.is_empty() || sh.busy.swap(true, Acquire) {
            (0..n).for_each(f);
            return;
        }
        struct Idle<'a>(&'a Shared);
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                self.0.busy.store(false, Release);
            }
        }
        let _idle = Idle(sh);
        let e = epoch(sh.state.load(Relaxed)).wrapping_add(1);
        sh.done.store(0, Relaxed);
        sh.ntasks.store(n, Release);
        sh.job.store((&raw const f).cast_mut().cast(), Release);
        sh.state.store(u64::from(e) << 32, SeqCst);
        sh.notify_sleepers();
        sh.work(e);
        let mut spins = 0u32;
        while sh.done.load(Acquire) < n {
            spins = spins.wrapping_add(1);
            pause(spins);
        }
        // Closed before the next loop's fields are written (see `Shared::work`).
        sh.state.store((u64::from(e) << 32) | CLOSED, SeqCst);
        if sh.panicked.swap(false, Relaxed) {
            panic!("a task of a dyce-kernels team loop panicked");
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.shared.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team").field("threads", &self.threads()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_index_runs_exactly_once_across_many_loops() {
        let team = Team::new(3).unwrap();
        for round in 0..2000usize {
            // Now and then a loop long enough for runs of many indices per claim.
            let n = if round % 50 == 0 { 1000 + round } else { 1 + round % 37 };
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            let run = || team.for_each(n, &|i| _ = hits[i].fetch_add(1, Relaxed));
            if round % 2 == 0 {
                team.session(run);
            } else {
                run();
            }
            assert!(hits.iter().all(|h| h.load(Relaxed) == 1), "round {round}");
        }
    }

    #[test]
    fn nested_loops_run_on_the_caller() {
        let team = Team::new(2).unwrap();
        let total = AtomicUsize::new(0);
        team.for_each(4, &|_| team.for_each(5, &|_| _ = total.fetch_add(1, Relaxed)));
        assert_eq!(total.load(Relaxed), 20);
    }

    #[test]
    fn a_panicking_task_is_reported_after_the_loop_and_the_team_still_works() {
        let team = Team::new(2).unwrap();
        let finished = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.for_each(8, &|i| {
                if i == 3 {
                    panic!("task 3");
                }
                finished.fetch_add(1, Relaxed);
            })
        }));
        assert!(r.is_err());
        assert_eq!(finished.load(Relaxed), 7);
        let again = AtomicUsize::new(0);
        team.for_each(6, &|_| _ = again.fetch_add(1, Relaxed));
        assert_eq!(again.load(Relaxed), 6);
    }

    #[test]
    fn a_team_of_one_runs_serially_and_drops_cleanly() {
        let team = Team::new(1).unwrap();
        let sum = AtomicUsize::new(0);
        team.for_each(10, &|i| _ = sum.fetch_add(i, Relaxed));
        assert_eq!(sum.load(Relaxed), 45);
        drop(Team::new(4).unwrap());
    }
}
