//! Simulated runtimes as a signal source: their load reports feed the same tracks, aggregation
//! and control step as live runtimes' `/v1/load` answers do.

use super::runtime::SimRuntime;
use crate::ladder::Ladder;
use crate::law::Observation;
use crate::signals::RuntimeTrack;
use crate::source::{ready_now, BoxFuture, SignalSource};
use crate::step::{ControlStep, StepOutcome};

/// The simulated runtimes a controller sees at a tick.
pub(super) struct Fleet<'a> {
    /// Every runtime, in track order.
    pub runtimes: Vec<&'a SimRuntime>,
    /// Which of them serve (a replica that started and was not removed).
    pub serving: Vec<bool>,
    /// The ladder their config ids come from.
    pub ladder: &'a Ladder,
}

impl SignalSource for Fleet<'_> {
    fn poll<'a>(&'a mut self, tracks: &'a mut [RuntimeTrack], now: f64) -> BoxFuture<'a, ()> {
        for (i, (r, track)) in self.runtimes.iter().zip(tracks.iter_mut()).enumerate() {
            if self.serving[i] {
                track.observe(now, r.report(now, self.ladder));
            }
        }
        Box::pin(std::future::ready(()))
    }
}

/// One control tick over the simulated runtimes: poll, observe, step.
pub(super) fn tick(
    step: &mut ControlStep,
    mut fleet: Fleet<'_>,
    tracks: &mut [RuntimeTrack],
    now: f64,
) -> StepOutcome {
    ready_now(fleet.poll(tracks, now));
    let obs = ready_now(fleet.observe(tracks, step.steering(), now)).unwrap_or(Observation::Missing);
    step.step(tracks, &obs, now)
}
