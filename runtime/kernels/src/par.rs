//! Where a kernel's parallel loop runs: the calling thread, a rayon pool or a [`Team`].

use std::cell::Cell;

use crate::team::Team;
use rayon::prelude::*;

thread_local! {
    /// Set while this thread runs a shard: loops that pick their threads themselves (the dense
    /// layers of the heads) stay on it.
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every self-scheduling loop of this crate kept on the calling thread. A shard
/// already has its own thread and the others are busy with theirs: a head that split its rows
/// across the pool would hand half of them to another shard's thread and wait for it.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _reset = Reset(SERIAL.with(|s| s.replace(true)));
    f()
}

/// Whether the calling thread is inside [`serial`].
pub fn is_serial() -> bool {
    SERIAL.with(Cell::get)
}

/// The threads a forward pass may use.
#[derive(Clone, Copy, Debug)]
pub enum Par<'a> {
    /// Everything on the calling thread (shards that parallelise over images themselves).
    Serial,
    /// A rayon pool: each loop is handed to sleeping workers, worth it for large layers.
    Rayon(&'a rayon::ThreadPool),
    /// A spinning team: cheap enough to split the small layers of a single image.
    Team(&'a Team),
}

impl Par<'_> {
    /// Threads a loop may use.
    pub fn threads(self) -> usize {
        match self {
            Par::Serial => 1,
            Par::Rayon(p) => p.current_num_threads().max(1),
            Par::Team(t) => t.threads(),
        }
    }

    /// Multiply-accumulates below which a convolution is not worth splitting: about the
    /// work a rayon hand-off (a futex wake-up) or a team hand-off (a cache-line transfer)
    /// costs.
    pub(crate) fn serial_macs(self) -> usize {
        match self {
            Par::Serial => usize::MAX,
            Par::Rayon(_) => 200_000,
            Par::Team(_) => 40_000,
        }
    }

    /// Tasks per thread a loop is cut into: rayon's work stealing wants slack; the team pays
    /// a cache-line transfer per claimed task, so it gets fewer, larger ones; on one thread
    /// there is nothing to balance, and smaller tasks only re-read the weights (a 7×7 layer of
    /// one image cut into one task per row re-streamed its 147 KiB of weights from L2 for every
    /// row: about twice the time of one task per image).
    pub(crate) fn tasks_per_thread(self) -> usize {
        match self {
            Par::Team(_) => 1,
            _ if self.threads() == 1 => 1,
            _ => 4,
        }
    }

    /// Runs `f(0..n)`, in parallel where this allows.
    pub(crate) fn for_each(self, n: usize, f: impl Fn(usize) + Sync + Send) {
        match self {
            Par::Rayon(p) if n > 1 && p.current_num_threads() > 1 => {
                p.install(|| (0..n).into_par_iter().for_each(f))
            }
            Par::Team(t) => t.for_each(n, &f),
            _ => (0..n).for_each(f),
        }
    }
}

/// An output buffer's base pointer, shared by the tasks of one loop. Each task derives a
/// pointer to its own region from it; the callers make the regions disjoint and nobody reads
/// the output while the loop runs.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: tasks only write disjoint regions derived from the pointer (see the type's docs).
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}
impl SharedMut {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod serial_tests {
    use super::*;

    #[test]
    fn serial_scopes_nest_and_reset() {
        assert!(!is_serial());
        serial(|| {
            assert!(is_serial());
            serial(|| assert!(is_serial()));
            assert!(is_serial(), "an inner scope leaves the outer one serial");
        });
        assert!(!is_serial());
        let caught = std::panic::catch_unwind(|| serial(|| panic!("inside")));
        assert!(caught.is_err());
        assert!(!is_serial(), "reset even when the scope panics");
    }
}
