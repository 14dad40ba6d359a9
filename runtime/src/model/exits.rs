//! DyCE exit heads: global average pool, then an MLP with ReLU between layers.

use std::fmt;
use std::str::FromStr;

use super::linear::Linear;
use super::ModelError;

/// Exit head type: `mlp1` (one linear layer) or `mlp{L}x{H}` (L linear layers, hidden width H).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExitType {
    /// Number of linear layers (≥ 1).
    pub layers: usize,
    /// Hidden width (unused when `layers == 1`).
    pub hidden: usize,
}

impl ExitType {
    /// The exit types trained by default: one linear head and two small MLPs (wider heads cost
    /// more time per call than they gain in accuracy on pooled features; docs/benchmarks.md).
    pub fn defaults() -> Vec<ExitType> {
        ["mlp1", "mlp2x128", "mlp3x256"].iter().map(|s| s.parse().expect("valid literal")).collect()
    }

    /// `(inputs, outputs)` of every linear layer for `channels` pooled features.
    pub fn layer_dims(&self, channels: usize, classes: usize) -> Vec<(usize, usize)> {
        let mut dims = Vec::with_capacity(self.layers);
        let mut input = channels;
        for l in 0..self.layers {
            let out = if l + 1 == self.layers { classes } else { self.hidden };
            dims.push((input, out));
            input = out;
        }
        dims
    }
}

impl fmt::Display for ExitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.layers == 1 {
            write!(f, "mlp1")
        } else {
            write!(f, "mlp{}x{}", self.layers, self.hidden)
        }
    }
}

impl FromStr for ExitType {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ModelError::UnknownExitType(s.to_string());
        let rest = s.strip_prefix("mlp").ok_or_else(bad)?;
        if rest == "1" {
            return Ok(ExitType { layers: 1, hidden: 0 });
        }
        let (l, h) = rest.split_once('x').ok_or_else(bad)?;
        let layers: usize = l.parse().map_err(|_| bad())?;
        let hidden: usize = h.parse().map_err(|_| bad())?;
        // Bounded so that a typo cannot ask for a gigantic allocation.
        if !(2..=8).contains(&layers) || !(1..=8192).contains(&hidden) {
            return Err(bad());
        }
        Ok(ExitType { layers, hidden })
    }
}

/// A trained exit head at one position.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitHead {
    /// Position (block index) the head reads from.
    pub position: usize,
    /// Head type.
    pub ty: ExitType,
    /// Linear layers, ReLU between them.
    pub layers: Vec<Linear>,
}

impl ExitHead {
    /// Checkpoint prefix of this head: `exits.{position}.{type}`.
    pub fn prefix(position: usize, ty: &ExitType) -> String {
        format!("exits.{position}.{ty}")
    }

    /// Logits for `n` rows of pooled features.
    pub fn forward(&self, pooled: &[f32], n: usize) -> Vec<f32> {
        let mut x = std::borrow::Cow::Borrowed(pooled);
        for (i, l) in self.layers.iter().enumerate() {
            let last = i + 1 == self.layers.len();
            x = std::borrow::Cow::Owned(l.forward(&x, n, !last));
        }
        x.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_types() {
        for s in ["mlp1", "mlp2x256", "mlp3x512"] {
            assert_eq!(s.parse::<ExitType>().unwrap().to_string(), s);
        }
        for s in ["mlp", "mlp0", "mlp2", "mlp2x", "mlpx3", "conv1", "mlp1x5", "mlp99x2", "mlp2x0"] {
            assert!(matches!(s.parse::<ExitType>(), Err(ModelError::UnknownExitType(_))), "{s}");
        }
    }

    #[test]
    fn layer_dims_chain() {
        let t: ExitType = "mlp3x512".parse().unwrap();
        assert_eq!(t.layer_dims(64, 10), vec![(64, 512), (512, 512), (512, 10)]);
    }
}
