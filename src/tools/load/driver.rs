//! Driving a run: a scheduler thread releases requests at their scheduled times, each request
//! runs as a tokio task, and a collector task logs and summarises outcomes as they arrive.
//!
//! The scheduler sleeps on its own OS thread rather than on tokio's timer, whose 1 ms wheel
//! would add about half a millisecond of lag to every request and round arrivals to the
//! millisecond; a plain thread sleep wakes within tens of microseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Semaphore};

use super::client;
use super::images::LabelledImages;
use super::profile::RateCurve;
use super::record::{LogWriter, Outcome, Record};
use super::schedule::Schedule;
use super::stats::Second;
use super::LoadConfig;

/// The test images in a seeded shuffled order, cycled: every image is sent once before any is
/// sent twice, and neighbours in the file do not travel together.
struct Feed {
    order: Vec<usize>,
    next: usize,
}

impl Feed {
    fn new(len: usize, seed: u64) -> Feed {
        let mut order: Vec<usize> = (0..len).collect();
        // A stream of its own, so changing the image order never changes arrival times.
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x6461_7461));
        Feed { order, next: 0 }
    }

    fn take(&mut self, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let i = self.order[self.next];
                self.next = (self.next + 1) % self.order.len();
                i
            })
            .collect()
    }
}

/// What the collector hears from the scheduler and the request tasks.
enum Event {
    /// A request left (`Some(lag)`) or was dropped (`None`).
    Offered(Option<f64>),
    /// A request's outcome is known.
    Resolved(Box<Record>),
}

/// What every request task needs; the collector stops when the last copy is gone.
struct Shared {
    http: reqwest::Client,
    url: String,
    images: Arc<LabelledImages>,
    timeout: Duration,
    encoding: client::Encoding,
    start: Instant,
    tx: mpsc::UnboundedSender<Event>,
    /// `--feedback`: where true labels go and for which share of answered requests.
    feedback: Option<(String, f64)>,
}

/// Sends `record`'s images and reports the outcome.
async fn request(shared: Arc<Shared>, idx: Vec<usize>, record: Record) {
    let body = client::body(&shared.images, &idx, shared.encoding);
    // Lag is taken after the body is built: it is the delay of the request itself.
    let sent = shared.start.elapsed().as_secs_f64();
    let _ = shared.tx.send(Event::Offered(Some(sent - record.scheduled_s)));
    let record = Record { sent_s: Some(sent), ..record };
    let mut record = client::exchange(&shared.http, &shared.url, body, shared.timeout, record).await;
    if let Some((url, share)) = &shared.feedback {
        // A draw per request from its place in the schedule: the same requests get feedback in
        // every run with the same seed.
        if record.outcome == Outcome::Ok && unit(record.seq) < *share {
            record.feedback_status = client::feedback(&shared.http, url, &record, shared.timeout).await;
        }
    }
    let _ = shared.tx.send(Event::Resolved(Box::new(record)));
}

/// A uniform number in [0, 1) from `x` (splitmix64's finaliser).
fn unit(x: u64) -> f64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// What the scheduler thread owns.
struct Scheduler {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    schedule: Schedule,
    feed: Feed,
    images_per_request: usize,
    max_in_flight: usize,
    /// With a drift scenario: when it starts, the share shifted, and the number of original
    /// images (image `i + originals` is image `i` shifted).
    drift: Option<(f64, f64, usize)>,
}

impl Scheduler {
    /// Walks the schedule, never waiting for answers.
    fn run(self) {
        let Scheduler { shared, runtime, schedule, mut feed, images_per_request, max_in_flight, drift } =
            self;
        let in_flight = Arc::new(Semaphore::new(max_in_flight));
        // A stream of its own, so a drift scenario changes neither arrival times nor image order.
        let mut pick = rand::rngs::StdRng::seed_from_u64(0x0064_7269_6674);
        for (seq, t) in schedule.enumerate() {
            let due = shared.start + Duration::from_secs_f64(t);
            let now = Instant::now();
            if now < due {
                std::thread::sleep(due - now);
            }
            let mut idx = feed.take(images_per_request);
            if let Some((_, share, originals)) = drift.filter(|d| t >= d.0) {
                for i in &mut idx {
                    if pick.random::<f64>() < share {
                        *i += originals;
                    }
                }
            }
            let labels = idx.iter().map(|&i| shared.images.labels[i]).collect();
            let record = Record::pending(seq as u64, t, labels);
            // Beyond the cap the request is counted, not queued: queueing would turn the open
            // loop into a closed one exactly when the server is slow.
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let _ = shared.tx.send(Event::Offered(None));
                let _ = shared.tx.send(Event::Resolved(Box::new(record)));
                continue;
            };
            let task = request(shared.clone(), idx, record);
            runtime.spawn(async move {
                task.await;
                drop(permit);
            });
        }
    }
}

/// Writes the log and prints a live line each second until every sender is gone.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<Event>,
    start: Instant,
    curve: RateCurve,
    mut log: Option<LogWriter>,
) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut second = Second::default();
    let target = |k: u64| curve.integral(k as f64, k as f64 + 1.0);
    let first = tokio::time::Instant::from_std(start + Duration::from_secs(1));
    let mut ticker = tokio::time::interval_at(first, Duration::from_secs(1));
    // A stalled collector should print the second it is in, not a burst of catch-up lines.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::Offered(lag)) => second.offered(lag),
                Some(Event::Resolved(r)) => {
                    second.resolved(&r);
                    if let Some(log) = log.as_mut() {
                        log.write(&r)?;
                    }
                    records.push(*r);
                }
                None => break,
            },
            at = ticker.tick() => {
                let k = (at.into_std() - start).as_secs_f64().round() as u64 - 1;
                eprintln!("{}", std::mem::take(&mut second).line(k, target(k)));
            }
        }
    }
    // The last, partial second: answers that came in after the final tick.
    if !second.is_empty() {
        let k = start.elapsed().as_secs();
        eprintln!("{}", second.line(k, target(k)));
    }
    if let Some(log) = log {
        log.finish()?;
    }
    records.sort_by_key(|r| r.seq);
    Ok(records)
}

/// Runs the schedule against the infer `url` and returns every request's record, in
/// schedule order, once every answer is in (or timed out), with the instant schedule time 0
/// refers to.
pub(super) async fn drive(
    cfg: &LoadConfig,
    http: reqwest::Client,
    url: String,
    images: Arc<LabelledImages>,
    log: Option<LogWriter>,
) -> Result<(Vec<Record>, Instant)> {
    let curve = cfg.profile.curve(cfg.duration);
    let schedule = Schedule::new(&curve, cfg.arrivals, cfg.seed);
    // With a drift scenario the second half of the images are the shifted copies.
    let originals = if cfg.drift.is_some() { images.len() / 2 } else { images.len() };
    let feed = Feed::new(originals, cfg.seed);
    let drift = cfg.drift.map(|d| (d.at, d.share, originals));
    let (tx, rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let collector = tokio::spawn(collect(rx, start, curve, log));
    let feedback = (cfg.feedback > 0.0).then(|| (format!("{}/v1/feedback", cfg.url), cfg.feedback));
    let shared = Arc::new(Shared {
        http,
        url,
        images,
        timeout: cfg.timeout,
        encoding: cfg.encoding,
        start,
        tx,
        feedback,
    });
    let scheduler = Scheduler {
        shared,
        runtime: tokio::runtime::Handle::current(),
        schedule,
        feed,
        images_per_request: cfg.images_per_request,
        max_in_flight: cfg.max_in_flight,
        drift,
    };
    tokio::task::spawn_blocking(move || scheduler.run()).await.context("the scheduler thread failed")?;
    tracing::debug!("schedule done, waiting for outstanding answers");
    let records = collector.await.context("the collector task failed")??;
    Ok((records, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_sends_every_image_once_per_cycle_in_a_seeded_order() {
        let mut f = Feed::new(10, 3);
        let mut first = f.take(4);
        first.extend(f.take(6));
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(first, sorted, "shuffled");
        assert_eq!(f.take(10), first, "cycles in the same order");
        assert_eq!(Feed::new(10, 3).take(10), first);
    }
}
