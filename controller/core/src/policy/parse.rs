//! Reading a policy: a bounded file read, cheap checks that keep hostile YAML away from the
//! parser, and parse errors that name the precise field once.

use std::io::Read;
use std::path::Path;

use super::document::PolicyDocument;
use super::error::PolicyError;

/// Largest policy accepted, in bytes. A policy is a few hundred bytes; the bound keeps a wrong
/// path (a log, a model file) or a hostile file from being read whole into memory.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// Most `[` and `{` a policy may contain, anywhere (strings and comments included).
///
/// libyaml's scanner (under serde_norway) takes time proportional to the flow nesting depth for
/// every token, so a 100k-deep `[[[...` took 30-45 s to reject. Counting the openers bounds
/// that depth from above without tokenizing: a second YAML tokenizer that disagreed with
/// libyaml about where a quoted string or block scalar ends would be a way around a depth
/// check. A policy written in flow style or as JSON has about ten.
pub const MAX_FLOW_OPENERS: usize = 128;

fn check_size(len: usize, what: &str) -> Result<(), PolicyError> {
    if len > MAX_POLICY_BYTES {
        return Err(PolicyError::new(
            "",
            format!(
                "{what} is larger than 1 MiB ({MAX_POLICY_BYTES} bytes); a policy is a few hundred bytes"
            ),
        ));
    }
    Ok(())
}

fn check_flow_openers(text: &str) -> Result<(), PolicyError> {
    let n = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if n > MAX_FLOW_OPENERS {
        return Err(PolicyError::new(
            "",
            format!(
                "the policy has {n} '[' and '{{' (strings and comments included), more than \
                 {MAX_FLOW_OPENERS}: a policy needs a handful, and nesting that deep is refused before parsing"
            ),
        ));
    }
    Ok(())
}

/// `message` without serde_norway's own path prefix. serde_norway prefixes the path of the
/// node it was in (`spec: unknown field ...`), an ancestor of (or equal to) the precise path
/// serde_path_to_error gives; printed after that one it would name the field twice.
fn strip_yaml_path<'a>(message: &'a str, path: &str) -> &'a str {
    let mut cuts: Vec<usize> = path.match_indices(['.', '[']).map(|(i, _)| i).collect();
    cuts.push(path.len());
    cuts.iter()
        .rev()
        .filter(|&&end| end > 0)
        .find_map(|&end| message.strip_prefix(&path[..end])?.strip_prefix(": "))
        .unwrap_or(message)
}

impl PolicyDocument {
    /// Parses YAML (or JSON, a subset) and validates; errors name the field.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        check_size(text.len(), "the policy")?;
        check_flow_openers(text)?;
        let de = serde_norway::Deserializer::from_str(text);
        let doc: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            let message = e.into_inner().to_string();
            PolicyError::new(&field, strip_yaml_path(&message, &field))
        })?;
        doc.validate()?;
        Ok(doc)
    }

    /// Reads and parses a policy file, reading at most [`MAX_POLICY_BYTES`] + 1 bytes. The
    /// errors do not repeat the path: every caller names the file already (`policy FILE: ...`).
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let reading = |e: std::io::Error| PolicyError::new("", format!("cannot read the file: {e}"));
        let file = std::fs::File::open(path).map_err(reading)?;
        let mut bytes = Vec::new();
        file.take(MAX_POLICY_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(reading)?;
        check_size(bytes.len(), "the file")?;
        let text = String::from_utf8(bytes)
            .map_err(|e| PolicyError::new("", format!("the file is not UTF-8 text ({e})")))?;
        Self::parse(&text)
    }

    /// The JSON schema of a policy file.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(PolicyDocument)).expect("a schema is JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::strip_yaml_path;

    #[test]
    fn strips_only_an_ancestor_path() {
        let cases = [
            ("spec: unknown field `x`", "spec.x", "unknown field `x`"),
            ("spec.control: bad", "spec.control.interval", "bad"),
            ("spec.runtimes[0]: bad", "spec.runtimes[0]", "bad"),
            ("metadata.labels.a.b/c: bad", "metadata.labels.a.b/c", "bad"),
            ("invalid type: map", "", "invalid type: map"),
            ("other: kept", "spec.control", "other: kept"),
            ("spe: kept", "spec", "spe: kept"),
        ];
        for (message, path, want) in cases {
            assert_eq!(strip_yaml_path(message, path), want, "{message:?} at {path:?}");
        }
    }
}
