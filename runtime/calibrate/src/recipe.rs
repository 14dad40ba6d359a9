//! Exit-training recipes: which loss and augmentation the heads learn with.
//!
//! A recipe is written as `+`-joined parts: `ce` (plain cross-entropy on the labels, the
//! baseline), `distill` (also learn the frozen backbone's final head's tempered answer),
//! `mixup` (mix pairs of pooled feature rows and their targets) and `conf` (weight each image
//! by the final head's confidence in its label). `dyce calibrate --exit-recipes` trains several
//! and keeps the one whose calibration-split front is best.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Weight of the soft (teacher) term in `distill`: most of the signal from the teacher, as in
/// the distillation literature's usual 0.5–0.9.
pub const DISTILL_WEIGHT: f64 = 0.7;
/// Temperature of `distill`.
pub const DISTILL_TEMPERATURE: f64 = 3.0;
/// Beta(α, α) of `mixup`: mild mixing, as for small inputs in timm's recipes.
pub const MIXUP_ALPHA: f64 = 0.2;

/// How exit heads are trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Weight of the distillation term in `[0, 1]`; 0 = labels only.
    #[serde(default)]
    pub distill: f64,
    /// Softmax temperature of the distillation term.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Beta(α, α) parameter of feature mixup; 0 = off.
    #[serde(default)]
    pub mixup: f64,
    /// Weight each image's loss by the final head's probability of its label.
    #[serde(default)]
    pub confidence_weighted: bool,
}

fn default_temperature() -> f64 {
    DISTILL_TEMPERATURE
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe { distill: 0.0, temperature: DISTILL_TEMPERATURE, mixup: 0.0, confidence_weighted: false }
    }
}

impl Recipe {
    /// Whether training needs the final head's logits.
    pub fn needs_teacher(&self) -> bool {
        self.distill > 0.0 || self.confidence_weighted
    }
}

/// A recipe that is not `+`-joined `ce`, `distill`, `mixup`, `conf`.
#[derive(Debug, thiserror::Error)]
#[error("unknown exit recipe `{0}`: use `+`-joined parts of ce, distill, mixup, conf (e.g. distill+mixup)")]
pub struct UnknownRecipe(pub String);

impl FromStr for Recipe {
    type Err = UnknownRecipe;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut r = Recipe::default();
        let mut seen = Vec::new();
        for part in s.split('+') {
            if seen.contains(&part) {
                return Err(UnknownRecipe(s.into()));
            }
            seen.push(part);
            match part {
                "ce" => {}
                "distill" => r.distill = DISTILL_WEIGHT,
                "mixup" => r.mixup = MIXUP_ALPHA,
                "conf" => r.confidence_weighted = true,
                _ => return Err(UnknownRecipe(s.into())),
            }
        }
        Ok(r)
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.distill > 0.0 {
            parts.push("distill");
        }
        if self.mixup > 0.0 {
            parts.push("mixup");
        }
        if self.confidence_weighted {
            parts.push("conf");
        }
        if parts.is_empty() {
            parts.push("ce");
        }
        f.write_str(&parts.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in ["ce", "distill", "mixup", "conf", "distill+mixup", "distill+mixup+conf"] {
            assert_eq!(s.parse::<Recipe>().unwrap().to_string(), s);
        }
        assert_eq!("ce+distill".parse::<Recipe>().unwrap().to_string(), "distill");
        assert_eq!("ce".parse::<Recipe>().unwrap(), Recipe::default());
        for s in ["", "kd", "distill+", "distill+distill", "CE"] {
            assert!(s.parse::<Recipe>().is_err(), "{s}");
        }
        assert!("distill".parse::<Recipe>().unwrap().needs_teacher());
        assert!(!"mixup".parse::<Recipe>().unwrap().needs_teacher());
    }
}
