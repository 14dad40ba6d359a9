//! Configurations and their exact evaluation on recorded exits.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::records::Records;

/// One choice per position: `None` (no exit) or `Some((exit type, threshold))`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Slot `p` holds the exit enabled at position `p`, if any; a sample leaves at the first
    /// enabled exit whose top-1 confidence is `>=` the threshold.
    pub exits: Vec<Option<(usize, f32)>>,
}

/// A [`Config`] that does not fit the [`Records`] it is evaluated against.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// The config has a different number of slots than the records have positions.
    #[error("config has {found} slots but the records have {expected} positions")]
    Positions {
        /// Positions in the records.
        expected: usize,
        /// Slots in the config.
        found: usize,
    },
    /// An exit type index is out of range for its position.
    #[error("exit type {exit_type} at position {position} is out of range ({types} types)")]
    ExitType {
        /// Position.
        position: usize,
        /// Requested type.
        exit_type: usize,
        /// Types available there.
        types: usize,
    },
    /// A threshold is NaN or outside [0, 1] (the range the serving runtime accepts).
    #[error("threshold {threshold} at position {position} is not in [0, 1]")]
    Threshold {
        /// Position.
        position: usize,
        /// Offending value.
        threshold: f32,
    },
}

impl Config {
    /// The full model: no exit enabled at any of `positions` positions.
    pub fn none(positions: usize) -> Self {
        Config { exits: vec![None; positions] }
    }

    /// True when no exit is enabled (the unchanged base model).
    pub fn is_full_model(&self) -> bool {
        self.exits.iter().all(Option::is_none)
    }

    /// Checks that the config can be evaluated against `records`.
    pub fn validate(&self, records: &Records) -> Result<(), ConfigError> {
        if self.exits.len() != records.n_positions() {
            return Err(ConfigError::Positions { expected: records.n_positions(), found: self.exits.len() });
        }
        for (position, slot) in self.exits.iter().enumerate() {
            if let Some((exit_type, threshold)) = *slot {
                let types = records.n_types(position);
                if exit_type >= types {
                    return Err(ConfigError::ExitType { position, exit_type, types });
                }
                if !(0.0..=1.0).contains(&threshold) {
                    return Err(ConfigError::Threshold { position, threshold });
                }
            }
        }
        Ok(())
    }
}

/// Accuracy and cost of a configuration on a split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Fraction of samples whose returned prediction is correct.
    pub accuracy: f64,
    /// Mean MACs per sample, including the MACs of every enabled exit a sample passed through.
    pub mean_macs: f64,
    /// Samples leaving at each position (index `P` = reached the final head); sums to N.
    pub exit_counts: Vec<usize>,
}

/// A configuration together with its evaluated outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The configuration.
    pub config: Config,
    /// Its outcome on the records it was searched on.
    pub outcome: Outcome,
}

impl Candidate {
    /// Evaluates `config` on `records` and pairs the two.
    pub fn evaluate(records: &Records, config: Config) -> Self {
        let outcome = evaluate(records, &config);
        Candidate { config, outcome }
    }
}

/// One enabled exit, flattened for the hot loop.
struct Slot<'a> {
    conf: &'a [f32],
    correct: &'a [u8],
    theta: f32,
}

/// Evaluates `config` on `records` in O(N · enabled exits), allocating only per call.
///
/// # Panics
/// If the config does not fit the records (see [`Config::validate`]); that is a caller bug.
pub fn evaluate(records: &Records, config: &Config) -> Outcome {
    if let Err(e) = config.validate(records) {
        panic!("evaluate: {e}");
    }
    let n = records.n_samples();
    let positions = records.n_positions();
    let mut slots = Vec::with_capacity(positions);
    let mut slot_position = Vec::with_capacity(positions);
    // costs[k] = MACs of a sample leaving at the k-th enabled exit; last = reaching the head.
    let mut costs = Vec::with_capacity(positions + 1);
    let mut exit_macs = 0.0;
    let mut call_macs = 0.0;
    for (p, slot) in config.exits.iter().enumerate() {
        if let Some((t, theta)) = *slot {
            let exit = records.exit(p, t);
            exit_macs += exit.macs;
            call_macs += exit.call_macs;
            costs.push(records.cum_macs()[p] + exit_macs);
            slot_position.push(p);
            slots.push(Slot { conf: &exit.conf[..n], correct: &records.correct(p, t)[..n], theta });
        }
    }
    costs.push(records.full_macs() + exit_macs);
    let final_correct = &records.final_correct()[..n];

    let mut counts = vec![0usize; slots.len() + 1];
    let mut correct = 0u64;
    for (i, &final_right) in final_correct.iter().enumerate() {
        let mut leave = slots.len();
        let mut right = final_right;
        for (k, s) in slots.iter().enumerate() {
            if s.conf[i] >= s.theta {
                leave = k;
                right = s.correct[i];
                break;
            }
        }
        counts[leave] += 1;
        correct += u64::from(right);
    }

    let total_macs: f64 =
        counts.iter().zip(&costs).map(|(&c, &m)| c as f64 * m).sum::<f64>() + call_macs * n as f64;
    let mut exit_counts = vec![0usize; positions + 1];
    for (k, &p) in slot_position.iter().enumerate() {
        exit_counts[p] = counts[k];
    }
    exit_counts[positions] = counts[slots.len()];
    Outcome { accuracy: correct as f64 / n as f64, mean_macs: total_macs / n as f64, exit_counts }
}

/// Share of samples whose answer under `config` differs from the full model's (what shadow
/// checks measure in production).
///
/// # Panics
/// If the config does not fit the records; a caller bug.
pub fn disagreement(records: &Records, config: &Config) -> f64 {
    if let Err(e) = config.validate(records) {
        panic!("disagreement: {e}");
    }
    let n = records.n_samples();
    let slots: Vec<_> = config
        .exits
        .iter()
        .enumerate()
        .filter_map(|(p, s)| s.map(|(t, theta)| (records.exit(p, t), theta)))
        .collect();
    let differ = (0..n)
        .filter(|&i| {
            let full = records.final_pred()[i];
            slots.iter().find(|(e, theta)| e.conf[i] >= *theta).is_some_and(|(e, _)| e.pred[i] != full)
        })
        .count();
    differ as f64 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::ExitRecords;
    use proptest::prelude::*;

    /// 2 positions x 2 types x 4 samples, small enough to account for by hand.
    fn hand_records() -> Records {
        Records::new(
            vec![0, 1, 2, 3],
            vec![0, 1, 2, 0],
            vec![10.0, 20.0],
            30.0,
            vec![
                vec![
                    ExitRecords {
                        macs: 1.0,
                        call_macs: 0.0,
                        pred: vec![0, 0, 2, 3],
                        conf: vec![0.9, 0.8, 0.3, 0.1],
                    },
                    ExitRecords {
                        macs: 4.0,
                        call_macs: 0.0,
                        pred: vec![0, 1, 1, 3],
                        conf: vec![0.95, 0.5, 0.6, 0.2],
                    },
                ],
                vec![
                    ExitRecords {
                        macs: 2.0,
                        call_macs: 0.0,
                        pred: vec![0, 1, 2, 1],
                        conf: vec![0.99, 0.7, 0.4, 0.6],
                    },
                    ExitRecords {
                        macs: 3.0,
                        call_macs: 0.0,
                        pred: vec![0, 1, 2, 3],
                        conf: vec![1.0, 1.0, 1.0, 1.0],
                    },
                ],
            ],
        )
        .unwrap()
    }

    #[test]
    fn disagreement_with_the_full_model_by_hand() {
        let r = hand_records();
        assert_eq!(disagreement(&r, &Config::none(2)), 0.0);
        // Samples 0, 1 leave at (0, 0) answering 0, 0 (full: 0, 1); 2, 3 at (1, 1) answering
        // 2, 3 (full: 2, 0).
        assert_eq!(disagreement(&r, &Config { exits: vec![Some((0, 0.75)), Some((1, 0.5))] }), 0.5);
        assert_eq!(disagreement(&r, &Config { exits: vec![None, Some((1, 0.0))] }), 0.25);
    }

    #[test]
    fn full_model_costs_full_macs() {
        let r = hand_records();
        let o = evaluate(&r, &Config::none(2));
        assert_eq!(o.exit_counts, vec![0, 0, 4]);
        assert_eq!(o.mean_macs, 30.0);
        assert_eq!(o.accuracy, 0.75);
    }

    #[test]
    fn hand_computed_costs() {
        let r = hand_records();
        // Position 0 type 0 at 0.75, position 1 type 0 at 0.5.
        // s0: conf 0.9 >= 0.75 -> exits at 0, pred 0 right, cost 10+1 = 11.
        // s1: 0.8 -> exits at 0, pred 0 wrong, cost 11.
        // s2: 0.3 -> continues; at 1 conf 0.4 < 0.5 -> final, pred 2 right, cost 30+1+2 = 33.
        // s3: 0.1 -> continues; at 1 conf 0.6 -> exits, pred 1 wrong, cost 20+1+2 = 23.
        let c = Config { exits: vec![Some((0, 0.75)), Some((0, 0.5))] };
        let o = evaluate(&r, &c);
        assert_eq!(o.exit_counts, vec![2, 1, 1]);
        assert_eq!(o.accuracy, 0.5);
        assert!((o.mean_macs - (11.0 + 11.0 + 33.0 + 23.0) / 4.0).abs() < 1e-12);

        // Only position 1, type 1 at threshold 1.0: everything exits there, all right.
        let c = Config { exits: vec![None, Some((1, 1.0))] };
        let o = evaluate(&r, &c);
        assert_eq!(o.exit_counts, vec![0, 4, 0]);
        assert_eq!(o.accuracy, 1.0);
        assert_eq!(o.mean_macs, 23.0);

        // An enabled exit that never fires still costs its MACs for everyone.
        let c = Config { exits: vec![Some((1, 1.0)), None] };
        let o = evaluate(&r, &c);
        assert_eq!(o.exit_counts, vec![0, 0, 4]);
        assert_eq!(o.mean_macs, 34.0);
    }

    #[test]
    fn validate_rejects_bad_configs() {
        let r = hand_records();
        assert!(matches!(
            Config::none(3).validate(&r),
            Err(ConfigError::Positions { expected: 2, found: 3 })
        ));
        let c = Config { exits: vec![Some((2, 0.5)), None] };
        assert!(matches!(c.validate(&r), Err(ConfigError::ExitType { .. })));
        let c = Config { exits: vec![None, Some((0, f32::NAN))] };
        assert!(matches!(c.validate(&r), Err(ConfigError::Threshold { .. })));
        let c = Config { exits: vec![None, Some((0, 1.5))] };
        assert!(matches!(c.validate(&r), Err(ConfigError::Threshold { .. })));
    }

    fn arb_records() -> impl Strategy<Value = Records> {
        (1usize..20, 1usize..4, 1usize..4).prop_flat_map(|(n, p, t)| {
            let exit = (
                0.0f64..5.0,
                proptest::collection::vec(0u32..3, n),
                proptest::collection::vec(0.0f32..=1.0, n),
            )
                .prop_map(|(macs, pred, conf)| ExitRecords { macs, call_macs: 0.0, pred, conf });
            (
                proptest::collection::vec(0u32..3, n),
                proptest::collection::vec(0u32..3, n),
                proptest::collection::vec(0.0f64..10.0, p),
                proptest::collection::vec(proptest::collection::vec(exit, t), p),
            )
                .prop_map(|(labels, final_pred, mut steps, exits)| {
                    let mut acc = 0.0;
                    for s in &mut steps {
                        acc += *s;
                        *s = acc;
                    }
                    let full = acc + 1.0;
                    Records::new(labels, final_pred, steps, full, exits).unwrap()
                })
        })
    }

    fn arb_case() -> impl Strategy<Value = (Records, Config)> {
        arb_records().prop_flat_map(|r| {
            let p = r.n_positions();
            let types = r.n_types(0);
            let slot = proptest::option::of((0..types, 0.0f32..=1.0));
            (Just(r), proptest::collection::vec(slot, p)).prop_map(|(r, exits)| (r, Config { exits }))
        })
    }

    proptest! {
        #[test]
        fn counts_sum_to_n_and_cost_is_bounded((r, c) in arb_case()) {
            let o = evaluate(&r, &c);
            prop_assert_eq!(o.exit_counts.iter().sum::<usize>(), r.n_samples());
            prop_assert_eq!(o.exit_counts.len(), r.n_positions() + 1);
            // Possible per-sample costs: leaving at any enabled exit, or reaching the head.
            let mut costs = Vec::new();
            let mut paid = 0.0;
            for (p, slot) in c.exits.iter().enumerate() {
                if let Some((t, _)) = slot {
                    paid += r.exit(p, *t).macs;
                    costs.push(r.cum_macs()[p] + paid);
                }
            }
            costs.push(r.full_macs() + paid);
            let lo = costs.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = costs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(o.mean_macs >= lo - 1e-9 && o.mean_macs <= hi + 1e-9);
            prop_assert!((0.0..=1.0).contains(&o.accuracy));
        }
    }
}
