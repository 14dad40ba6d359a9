//! The configuration table: which exits are enabled, at which thresholds, and what that costs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Id of the configuration with no exits enabled (the unchanged base model).
pub const FULL_CONFIG_ID: &str = "full";

/// One enabled exit of a configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitChoice {
    /// Candidate position (residual block index in execution order, 0-based).
    pub position: usize,
    /// Exit head type, e.g. `mlp1`, `mlp2x256`.
    #[serde(rename = "type")]
    pub exit_type: String,
    /// Top-1 softmax confidence at or above which a sample leaves here.
    pub threshold: f32,
}

/// One configuration of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigEntry {
    /// Stable identifier, used by `PUT /v1/config`.
    pub id: String,
    /// Enabled exits, shallow to deep; empty for the full model.
    #[serde(default)]
    pub exits: Vec<ExitChoice>,
    /// Expected top-1 accuracy: `dyce calibrate` ships the lower of its one-sided 95% Wilson
    /// bounds on the calibration and the held-out test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_accuracy: Option<f64>,
    /// Expected MACs per sample relative to the full model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macs_ratio: Option<f64>,
    /// Measured compute time per request relative to the full model (written by `dyce bench`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ratio: Option<f64>,
    /// Share of images whose answer under this configuration differs from the full model's, on
    /// the split `expected_accuracy` is bounded on (written by `dyce calibrate`): the
    /// disagreement already paid for in
    /// `expected_accuracy`, which live accuracy compares shadow checks against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_disagreement: Option<f64>,
}

/// The configuration table of a bundle, sorted from cheapest to richest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigTable {
    /// Model the table belongs to.
    pub model: String,
    /// Entries, cheapest first; the full model is last.
    pub configs: Vec<ConfigEntry>,
}

/// A configuration table that breaks an invariant.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// Two entries share an id.
    #[error("config id {0:?} appears more than once")]
    DuplicateId(String),
    /// A threshold is outside [0, 1] or not a number.
    #[error("config {id:?}: threshold {threshold} at position {position} is outside [0, 1]")]
    Threshold {
        /// Config id.
        id: String,
        /// Exit position.
        position: usize,
        /// Offending value.
        threshold: f32,
    },
    /// Exits are not strictly shallow to deep.
    #[error("config {id:?}: exits must be listed by strictly increasing position")]
    Order {
        /// Config id.
        id: String,
    },
    /// The table has no entry without exits.
    #[error("the table has no full-model entry (one with no exits)")]
    NoFull,
    /// The table is empty.
    #[error("the configuration table is empty")]
    Empty,
}

impl ConfigTable {
    /// A table holding only the full model.
    pub fn full_only(model: &str) -> Self {
        Self {
            model: model.to_string(),
            configs: vec![ConfigEntry {
                id: FULL_CONFIG_ID.to_string(),
                exits: vec![],
                expected_accuracy: None,
                macs_ratio: Some(1.0),
                latency_ratio: None,
                expected_disagreement: None,
            }],
        }
    }

    /// Checks the invariants that do not need the model (ids, thresholds, order, full entry).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.configs.is_empty() {
            return Err(ConfigError::Empty);
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.configs {
            if !seen.insert(c.id.as_str()) {
                return Err(ConfigError::DuplicateId(c.id.clone()));
            }
            for e in &c.exits {
                if !(0.0..=1.0).contains(&e.threshold) {
                    return Err(ConfigError::Threshold {
                        id: c.id.clone(),
                        position: e.position,
                        threshold: e.threshold,
                    });
                }
            }
            if c.exits.windows(2).any(|w| w[0].position >= w[1].position) {
                return Err(ConfigError::Order { id: c.id.clone() });
            }
        }
        if !self.configs.iter().any(|c| c.exits.is_empty()) {
            return Err(ConfigError::NoFull);
        }
        Ok(())
    }

    /// Looks an entry up by id.
    pub fn get(&self, id: &str) -> Option<&ConfigEntry> {
        self.configs.iter().find(|c| c.id == id)
    }

    /// The richest entry: the full model.
    pub fn full(&self) -> Option<&ConfigEntry> {
        self.configs.iter().rev().find(|c| c.exits.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(position: usize, threshold: f32) -> ExitChoice {
        ExitChoice { position, exit_type: "mlp1".into(), threshold }
    }

    fn entry(id: &str, exits: Vec<ExitChoice>) -> ConfigEntry {
        ConfigEntry {
            id: id.into(),
            exits,
            expected_accuracy: None,
            macs_ratio: None,
            latency_ratio: None,
            expected_disagreement: None,
        }
    }

    #[test]
    fn validates_good_table() {
        let mut t = ConfigTable::full_only("m");
        t.configs.insert(0, entry("c0", vec![exit(1, 0.9), exit(3, 0.5)]));
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(t.full().unwrap().id, FULL_CONFIG_ID);
    }

    #[test]
    fn rejects_bad_tables() {
        let mut t = ConfigTable::full_only("m");
        t.configs.push(entry("full", vec![]));
        assert_eq!(t.validate(), Err(ConfigError::DuplicateId("full".into())));

        let mut t = ConfigTable::full_only("m");
        t.configs.push(entry("c", vec![exit(1, 1.5)]));
        assert!(matches!(t.validate(), Err(ConfigError::Threshold { .. })));

        let mut t = ConfigTable::full_only("m");
        t.configs.push(entry("c", vec![exit(1, f32::NAN)]));
        assert!(matches!(t.validate(), Err(ConfigError::Threshold { .. })));

        let mut t = ConfigTable::full_only("m");
        t.configs.push(entry("c", vec![exit(3, 0.5), exit(1, 0.5)]));
        assert_eq!(t.validate(), Err(ConfigError::Order { id: "c".into() }));

        let t = ConfigTable { model: "m".into(), configs: vec![entry("c", vec![exit(1, 0.5)])] };
        assert_eq!(t.validate(), Err(ConfigError::NoFull));
    }

    #[test]
    fn json_round_trip_and_unknown_fields() {
        let t = ConfigTable::full_only("m");
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<ConfigTable>(&s).unwrap(), t);
        assert!(serde_json::from_str::<ConfigTable>(r#"{"model":"m","configs":[],"x":1}"#).is_err());
    }
}
