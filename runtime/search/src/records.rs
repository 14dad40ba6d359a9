//! Recorded per-exit predictions of a calibration split, validated once up front.
//!
//! Validation happens here so that evaluation and search (called millions of times) can index
//! without re-checking lengths or confidence ranges.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Predictions, confidences and cost of one exit type at one position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExitRecords {
    /// MACs of this exit head, paid by every sample that reaches it while it is enabled.
    pub macs: f64,
    /// Cost paid once per sample of the split while the exit is enabled, whether the sample
    /// reaches it or not: the head's fixed time per call, spread over the images of a shard
    /// (it is called once per shard while any of them is in flight). 0 when only rows cost.
    #[serde(default)]
    pub call_macs: f64,
    /// Top-1 class per sample.
    pub pred: Vec<u32>,
    /// Top-1 softmax confidence per sample, in [0, 1].
    pub conf: Vec<f32>,
}

/// An inconsistency found while validating [`Records`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RecordsError {
    /// Something that must be non-empty is empty.
    #[error("records have no {0}")]
    Empty(&'static str),
    /// A vector's length disagrees with the number of samples or positions.
    #[error("{what}: expected length {expected}, found {found}")]
    Length {
        /// Which vector.
        what: String,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// A confidence is NaN or outside [0, 1].
    #[error(
        "confidence {value} of sample {sample} at position {position}, type {exit_type} is not in [0, 1]"
    )]
    Confidence {
        /// Exit position.
        position: usize,
        /// Exit type.
        exit_type: usize,
        /// Sample index.
        sample: usize,
        /// Offending value.
        value: f32,
    },
    /// A MACs figure is negative or not finite.
    #[error("{what} = {value} is not a finite non-negative MACs count")]
    Macs {
        /// Which figure.
        what: String,
        /// Offending value.
        value: f64,
    },
    /// Cumulative backbone MACs decrease from one position to the next, or exceed the full model.
    #[error("cumulative MACs must be non-decreasing and at most full_macs (violated at position {0})")]
    MacsOrder(usize),
}

/// Raw serialised form; derived caches are rebuilt (and inputs re-validated) on load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordsData {
    labels: Vec<u32>,
    final_pred: Vec<u32>,
    cum_macs: Vec<f64>,
    full_macs: f64,
    exits: Vec<Vec<ExitRecords>>,
}

/// Validated records of one split: labels, final-head predictions and every exit's outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RecordsData", into = "RecordsData")]
pub struct Records {
    data: RecordsData,
    /// `correct[p][t][i]` = 1 if exit (p, t) is right on sample i; u8 so it can be summed directly.
    correct: Vec<Vec<Vec<u8>>>,
    /// 1 if the final head is right on sample i.
    final_correct: Vec<u8>,
    /// Sample indices of exit (p, t) sorted by decreasing confidence (ties by index), so an exact
    /// threshold scan never has to sort again.
    order: Vec<Vec<Vec<u32>>>,
}

impl Records {
    /// Validates the inputs and builds the derived caches.
    ///
    /// `exits[p][t]` holds exit type `t` at position `p`; positions may offer different numbers
    /// of types, but at least one each.
    pub fn new(
        labels: Vec<u32>,
        final_pred: Vec<u32>,
        cum_macs: Vec<f64>,
        full_macs: f64,
        exits: Vec<Vec<ExitRecords>>,
    ) -> Result<Self, RecordsError> {
        Self::try_from(RecordsData { labels, final_pred, cum_macs, full_macs, exits })
    }

    /// Number of samples N.
    pub fn n_samples(&self) -> usize {
        self.data.labels.len()
    }

    /// Number of candidate exit positions P.
    pub fn n_positions(&self) -> usize {
        self.data.exits.len()
    }

    /// Number of exit types available at position `p`.
    pub fn n_types(&self, p: usize) -> usize {
        self.data.exits[p].len()
    }

    /// Ground-truth labels.
    pub fn labels(&self) -> &[u32] {
        &self.data.labels
    }

    /// Final-head predictions.
    pub fn final_pred(&self) -> &[u32] {
        &self.data.final_pred
    }

    /// Backbone MACs up to and including block `p`, per position.
    pub fn cum_macs(&self) -> &[f64] {
        &self.data.cum_macs
    }

    /// MACs of the whole model (all blocks and the final head).
    pub fn full_macs(&self) -> f64 {
        self.data.full_macs
    }

    /// Records of exit type `t` at position `p`.
    pub fn exit(&self, p: usize, t: usize) -> &ExitRecords {
        &self.data.exits[p][t]
    }

    /// Accuracy of the full model (no exits enabled).
    pub fn full_accuracy(&self) -> f64 {
        let correct: u64 = self.final_correct.iter().map(|&c| u64::from(c)).sum();
        correct as f64 / self.n_samples() as f64
    }

    pub(crate) fn correct(&self, p: usize, t: usize) -> &[u8] {
        &self.correct[p][t]
    }

    pub(crate) fn final_correct(&self) -> &[u8] {
        &self.final_correct
    }

    pub(crate) fn order(&self, p: usize, t: usize) -> &[u32] {
        &self.order[p][t]
    }
}

fn check_macs(what: impl FnOnce() -> String, value: f64) -> Result<(), RecordsError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(RecordsError::Macs { what: what(), value })
    }
}

fn check_len(what: impl FnOnce() -> String, expected: usize, found: usize) -> Result<(), RecordsError> {
    if expected == found {
        Ok(())
    } else {
        Err(RecordsError::Length { what: what(), expected, found })
    }
}

impl TryFrom<RecordsData> for Records {
    type Error = RecordsError;

    fn try_from(data: RecordsData) -> Result<Self, RecordsError> {
        let n = data.labels.len();
        if n == 0 {
            return Err(RecordsError::Empty("samples"));
        }
        if n > u32::MAX as usize {
            return Err(RecordsError::Length {
                what: "labels (sample indices must fit in u32)".into(),
                expected: u32::MAX as usize,
                found: n,
            });
        }
        check_len(|| "final_pred".into(), n, data.final_pred.len())?;
        let positions = data.exits.len();
        if positions == 0 {
            return Err(RecordsError::Empty("exit positions"));
        }
        check_len(|| "cum_macs".into(), positions, data.cum_macs.len())?;
        check_macs(|| "full_macs".into(), data.full_macs)?;
        let mut previous = 0.0;
        for (p, &c) in data.cum_macs.iter().enumerate() {
            check_macs(|| format!("cum_macs[{p}]"), c)?;
            if c < previous || c > data.full_macs {
                return Err(RecordsError::MacsOrder(p));
            }
            previous = c;
        }
        let mut correct = Vec::with_capacity(positions);
        let mut order = Vec::with_capacity(positions);
        for (p, types) in data.exits.iter().enumerate() {
            if types.is_empty() {
                return Err(RecordsError::Empty("exit types at some position"));
            }
            let mut correct_p = Vec::with_capacity(types.len());
            let mut order_p = Vec::with_capacity(types.len());
            for (t, exit) in types.iter().enumerate() {
                check_macs(|| format!("exit_macs[{p}][{t}]"), exit.macs)?;
                check_macs(|| format!("call_macs[{p}][{t}]"), exit.call_macs)?;
                check_len(|| format!("pred[{p}][{t}]"), n, exit.pred.len())?;
                check_len(|| format!("conf[{p}][{t}]"), n, exit.conf.len())?;
                if let Some((sample, &value)) =
                    exit.conf.iter().enumerate().find(|(_, c)| !(0.0..=1.0).contains(*c))
                {
                    return Err(RecordsError::Confidence { position: p, exit_type: t, sample, value });
                }
                correct_p.push(
                    exit.pred.iter().zip(&data.labels).map(|(a, b)| u8::from(a == b)).collect::<Vec<u8>>(),
                );
                let mut idx: Vec<u32> = (0..n as u32).collect();
                // Confidences are validated finite, so total_cmp is the plain numeric order.
                idx.sort_by(|&a, &b| exit.conf[b as usize].total_cmp(&exit.conf[a as usize]).then(a.cmp(&b)));
                order_p.push(idx);
            }
            correct.push(correct_p);
            order.push(order_p);
        }
        let final_correct = data.final_pred.iter().zip(&data.labels).map(|(a, b)| u8::from(a == b)).collect();
        Ok(Records { data, correct, final_correct, order })
    }
}

impl From<Records> for RecordsData {
    fn from(r: Records) -> Self {
        r.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(macs: f64, pred: Vec<u32>, conf: Vec<f32>) -> ExitRecords {
        ExitRecords { macs, call_macs: 0.0, pred, conf }
    }

    /// Arguments of `Records::new`, as a tuple so tests can break one at a time.
    type Parts = (Vec<u32>, Vec<u32>, Vec<f64>, f64, Vec<Vec<ExitRecords>>);

    fn ok_parts() -> Parts {
        (
            vec![0, 1, 2],
            vec![0, 1, 1],
            vec![1.0, 2.0],
            3.0,
            vec![
                vec![exit(0.1, vec![0, 0, 2], vec![0.9, 0.2, 0.5])],
                vec![exit(0.1, vec![0, 1, 2], vec![1.0, 0.0, 0.5])],
            ],
        )
    }

    fn build(parts: Parts) -> Result<Records, RecordsError> {
        Records::new(parts.0, parts.1, parts.2, parts.3, parts.4)
    }

    #[test]
    fn valid_records_build_caches() {
        let r = build(ok_parts()).unwrap();
        assert_eq!(r.n_samples(), 3);
        assert_eq!(r.n_positions(), 2);
        assert_eq!(r.correct(0, 0), &[1, 0, 1]);
        assert_eq!(r.order(0, 0), &[0, 2, 1]);
        assert!((r.full_accuracy() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_inconsistent_inputs() {
        let mut p = ok_parts();
        p.0.clear();
        p.1.clear();
        assert_eq!(build(p), Err(RecordsError::Empty("samples")));

        let mut p = ok_parts();
        p.1.pop();
        assert!(matches!(build(p), Err(RecordsError::Length { expected: 3, found: 2, .. })));

        let mut p = ok_parts();
        p.2.pop();
        assert!(matches!(build(p), Err(RecordsError::Length { .. })));

        let mut p = ok_parts();
        p.4[1][0].conf.pop();
        assert!(matches!(build(p), Err(RecordsError::Length { .. })));

        let mut p = ok_parts();
        p.4[1][0].pred.push(1);
        assert!(matches!(build(p), Err(RecordsError::Length { .. })));

        let mut p = ok_parts();
        p.4[1][0].conf[2] = f32::NAN;
        assert!(matches!(
            build(p),
            Err(RecordsError::Confidence { position: 1, exit_type: 0, sample: 2, .. })
        ));

        let mut p = ok_parts();
        p.4[0][0].conf[0] = 1.5;
        assert!(matches!(build(p), Err(RecordsError::Confidence { .. })));

        let mut p = ok_parts();
        p.4[0][0].conf[0] = -0.1;
        assert!(matches!(build(p), Err(RecordsError::Confidence { .. })));

        let mut p = ok_parts();
        p.4[0][0].macs = f64::NAN;
        assert!(matches!(build(p), Err(RecordsError::Macs { .. })));

        let mut p = ok_parts();
        p.2 = vec![2.0, 1.0];
        assert_eq!(build(p), Err(RecordsError::MacsOrder(1)));

        let mut p = ok_parts();
        p.3 = 1.5;
        assert_eq!(build(p), Err(RecordsError::MacsOrder(1)));

        let mut p = ok_parts();
        p.4.clear();
        p.2.clear();
        assert_eq!(build(p), Err(RecordsError::Empty("exit positions")));

        let mut p = ok_parts();
        p.4[1].clear();
        assert!(matches!(build(p), Err(RecordsError::Empty(_))));
    }
}
