//! Durations written the way people write them in YAML: `500ms`, `5s`, `1m30s`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that (de)serialises as a human-readable string (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// Seconds as a float.
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Self)
            .map_err(|e| format!("{s:?} is not a duration like 500ms, 5s or 1m ({e})"))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as 500ms, 5s or 1m30s.",
            "pattern": "^\\s*([0-9]+\\s*(ns|us|ms|s|m|h)\\s*)+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d: HumanDuration = "1m30s".parse().unwrap();
        assert_eq!(d.0, Duration::from_secs(90));
        assert_eq!(HumanDuration::from_millis(500).to_string(), "500ms");
        assert!("5 parsecs".parse::<HumanDuration>().is_err());
        let y: HumanDuration = serde_json::from_str("\"250ms\"").unwrap();
        assert_eq!(y, HumanDuration::from_millis(250));
        assert_eq!(serde_json::to_string(&y).unwrap(), "\"250ms\"");
    }
}
