//! Where a tick's observations come from, behind one trait: the runtimes' `/v1/load` polled over
//! HTTP and Prometheus (both in `dyce-controller`), or simulated runtimes ([`crate::sim`]). The
//! control step does not know which one fed it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::law::Observation;
use crate::signals::{aggregate, RuntimeTrack};
use crate::step::Steering;

/// A boxed future that can cross threads (the live loops run on tokio's workers).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Signals that could not be read this tick; the step then sees `Observation::Missing`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignalError(pub String);

/// A source of the runtimes' answers and of the law's signals.
pub trait SignalSource: Send {
    /// Brings `tracks` (one per runtime, in the driver's order) up to date at `now`. Every
    /// source polls the runtimes: actuation needs the configs they run.
    fn poll<'a>(&'a mut self, tracks: &'a mut [RuntimeTrack], now: f64) -> BoxFuture<'a, ()>;

    /// The law's observation at `now`; by default the runtimes' own answers, aggregated.
    fn observe<'a>(
        &'a self,
        tracks: &'a [RuntimeTrack],
        steering: &'a Steering,
        now: f64,
    ) -> BoxFuture<'a, Result<Observation, SignalError>> {
        Box::pin(std::future::ready(Ok(from_reports(tracks, steering, now))))
    }
}

/// The law's observation from the runtimes' `/v1/load` answers: the fresh ones, aggregated.
pub fn from_reports(tracks: &[RuntimeTrack], steering: &Steering, now: f64) -> Observation {
    let s = steering;
    aggregate(tracks, &s.ratios, &s.full_id, s.quantile, s.stale_after, now).0
}

/// The output of a future that never waits, without an async runtime: what the simulators get
/// from their sources, which answer at once.
///
/// # Panics
/// If the future is not ready at its first poll.
pub fn ready_now<T>(mut fut: BoxFuture<'_, T>) -> T {
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a simulated signal source must answer at once"),
    }
}
