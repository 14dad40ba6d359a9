//! The burst's height when `--peak` is not given: the most the policy can absorb on the machine
//! the demo runs on. A fixed 2× asks more of a two-core machine than its cheapest configuration
//! serves through HTTP at the policy's target utilisation, so the default demo would show a
//! burst no controller can hold; scaling it to what was measured shows what dyce does when it can.

use super::runs::Capacity;

/// The highest default burst, as a multiple of the full model's capacity (the 2× scenario of
/// the acceptance runs, which `--peak 2` still asks for).
pub const MAX_AUTO: f64 = 2.0;

/// How the burst's height was chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PeakChoice {
    /// `--peak`.
    Given,
    /// The policy's target utilisation times `speedup`, the cheapest allowed config's capacity
    /// over the full model's: measured by the HTTP probes, or else (capacity given with
    /// `--capacity`) predicted by the cheapest config's `latency_ratio` in `configs.json`.
    Absorbable {
        /// Cheapest allowed config's capacity over the full model's.
        speedup: f64,
        /// From the probes (true) or `configs.json` (false).
        measured: bool,
    },
    /// Nothing to scale it by (no probe, no `latency_ratio`): [`MAX_AUTO`].
    Fallback,
}

/// `target × speedup`, rounded down to two decimals (rounding up could put the cheapest config
/// over its target), at most [`MAX_AUTO`].
pub fn absorbable(target: f64, speedup: f64) -> f64 {
    ((target * speedup * 100.0).floor() / 100.0).min(MAX_AUTO)
}

/// The burst height for `given` (`--peak`), the policy's `target` utilisation, the probed
/// `capacity` and the cheapest allowed config's `latency_ratio`.
pub fn choose(
    given: Option<f64>,
    target: f64,
    capacity: &Capacity,
    latency_ratio: Option<f64>,
) -> (f64, PeakChoice) {
    if let Some(p) = given {
        return (p, PeakChoice::Given);
    }
    let speedup = match (capacity.cheapest, latency_ratio) {
        (Some(c), _) if capacity.full > 0.0 => Some((c / capacity.full, true)),
        (None, Some(r)) if r > 0.0 => Some((1.0 / r, false)),
        _ => None,
    };
    match speedup {
        Some((s, measured)) => (absorbable(target, s), PeakChoice::Absorbable { speedup: s, measured }),
        None => (MAX_AUTO, PeakChoice::Fallback),
    }
}

impl PeakChoice {
    /// For report.json.
    pub fn json(&self) -> serde_json::Value {
        match *self {
            PeakChoice::Given => serde_json::json!({"rule": "given"}),
            PeakChoice::Absorbable { speedup, measured } => {
                serde_json::json!({"rule": "absorbable", "speedup": speedup, "measured": measured})
            }
            PeakChoice::Fallback => serde_json::json!({"rule": "fallback"}),
        }
    }

    /// One sentence for the report: how the burst's height `peak` was chosen.
    pub fn describe(&self, peak: f64, target: f64) -> String {
        match *self {
            PeakChoice::Given => format!("The burst's height, {peak}×, was set with `--peak`."),
            PeakChoice::Absorbable { speedup, measured } => format!(
                "The burst's height, {peak}× (`--peak` not given), is the most this policy can absorb on this \
                 machine: its target utilisation {:.0}% × the cheapest allowed config's {speedup:.2}× the full \
                 model's capacity ({}), at most {MAX_AUTO}×. A higher burst keeps even the cheapest config over its \
                 target; `--peak 2` asks for one.",
                100.0 * target,
                if measured { "measured through HTTP above" } else { "predicted by its `latency_ratio`" },
            ),
            PeakChoice::Fallback => format!(
                "The burst's height, {peak}× (`--peak` not given), is the default maximum: there was no measured \
                 capacity of the cheapest config and no `latency_ratio` to scale it by."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(full: f64, cheapest: Option<f64>) -> Capacity {
        Capacity { full, cheapest, measured: cheapest.is_some(), probes: None }
    }

    #[test]
    fn the_burst_is_what_the_cheapest_config_carries_at_the_target() {
        // The 2-core run of docs/benchmarks.md: c00 2.37× the full model through HTTP.
        let (p, c) = choose(None, 0.8, &cap(2139.0, Some(5062.0)), Some(0.30));
        assert_eq!(p, 1.89);
        assert_eq!(c, PeakChoice::Absorbable { speedup: 5062.0 / 2139.0, measured: true });
        // Never above the 2× scenario, however fast the cheapest config is.
        assert_eq!(choose(None, 0.8, &cap(1000.0, Some(4000.0)), None).0, MAX_AUTO);
    }

    #[test]
    fn without_a_probe_the_table_predicts_and_given_wins() {
        let (p, c) = choose(None, 0.8, &cap(2000.0, None), Some(0.4));
        assert_eq!((p, c), (2.0, PeakChoice::Absorbable { speedup: 2.5, measured: false }));
        assert_eq!(choose(None, 0.8, &cap(2000.0, None), None), (MAX_AUTO, PeakChoice::Fallback));
        assert_eq!(choose(Some(2.0), 0.8, &cap(2139.0, Some(5062.0)), None), (2.0, PeakChoice::Given));
    }
}
