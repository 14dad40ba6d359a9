//! The mutator: AFL-style byte mutations (bit flips, interesting integers, inserts, deletes,
//! duplications, splices with another seed, dictionary tokens) and, for JSON and YAML targets,
//! structure-aware ones that replace a node of the parsed document by a generated value, so
//! inputs get past the parser to the validation behind it.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Map, Value};

/// How a target's inputs are structured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Opaque bytes (images, safetensors).
    Bytes,
    /// A JSON document.
    Json,
    /// A YAML document (JSON is a subset).
    Yaml,
}

/// Tokens worth inserting into text formats: delimiters, extreme numbers, YAML's aliases and tags.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "-0.0",
    "NaN",
    "18446744073709551616",
    "4294967296",
    "9007199254740993",
    "1e-400",
    "\\u0000",
    "\\ud800",
    "&a ",
    "*a",
    "!!binary ",
    "<<: ",
    "---\n",
    "\n  ",
    "~",
    ".inf",
    "'",
    "|\n",
    "? ",
];

/// Integers at the edges of their types, little-endian at a random width.
const INTERESTING: &[i64] =
    &[0, 1, -1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x7fff_ffff, -0x8000_0000, i64::MAX];

/// One mutated input from `seeds` (at least one), capped at `max_len` bytes.
pub fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>], shape: Shape, max_len: usize) -> Vec<u8> {
    let base = &seeds[rng.random_range(0..seeds.len())];
    let mut out = if shape != Shape::Bytes && rng.random_bool(0.5) {
        structured(rng, base, shape).unwrap_or_else(|| base.clone())
    } else {
        base.clone()
    };
    let rounds = 1 << rng.random_range(0..4u32);
    for _ in 0..rounds {
        bytes_once(rng, &mut out, seeds, shape);
    }
    out.truncate(max_len);
    out
}

fn bytes_once(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[Vec<u8>], shape: Shape) {
    let len = data.len();
    let at = |rng: &mut StdRng| if len == 0 { 0 } else { rng.random_range(0..len) };
    match rng.random_range(0..9u32) {
        0 if len > 0 => {
            let i = at(rng);
            data[i] ^= 1 << rng.random_range(0..8u32);
        }
        1 if len > 0 => {
            let i = at(rng);
            data[i] = rng.random();
        }
        2 => {
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
            let width = [1usize, 2, 4, 8][rng.random_range(0..4usize)];
            let bytes = &v.to_le_bytes()[..width];
            let i = at(rng).min(len.saturating_sub(width));
            for (k, b) in bytes.iter().enumerate() {
                if i + k < data.len() {
                    data[i + k] = *b;
                }
            }
        }
        3 => {
            let i = at(rng);
            let n = rng.random_range(1..=16usize);
            let fresh: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(i..i, fresh);
        }
        4 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(64));
            data.drain(i..i + n);
        }
        5 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(256));
            let copy = data[i..i + n].to_vec();
            let j = at(rng);
            data.splice(j..j, copy);
        }
        6 => {
            // Splice: our head with another seed's tail.
            let other = &seeds[rng.random_range(0..seeds.len())];
            if !other.is_empty() {
                let cut = at(rng);
                let from = rng.random_range(0..other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
        7 if shape != Shape::Bytes => {
            let t = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
            let i = at(rng);
            data.splice(i..i, t.iter().copied());
        }
        _ if len > 0 => {
            // A run of one byte: long digit strings, deep nesting, huge run lengths.
            let i = at(rng);
            let b = if rng.random_bool(0.5) { data[i] } else { rng.random() };
            let n = 1 << rng.random_range(0..10u32);
            data.splice(i..i, std::iter::repeat_n(b, n));
        }
        _ => data.push(rng.random()),
    }
}

/// The seed parsed, one node replaced by a generated value, and written back.
fn structured(rng: &mut StdRng, seed: &[u8], shape: Shape) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(seed).ok()?;
    let mut doc: Value = match shape {
        Shape::Json => serde_json::from_str(text).ok()?,
        _ => serde_norway::from_str(text).ok()?,
    };
    let nodes = count(&doc);
    let target = rng.random_range(0..nodes);
    let mut seen = 0;
    replace(rng, &mut doc, target, &mut seen);
    match shape {
        Shape::Json => serde_json::to_vec(&doc).ok(),
        _ => serde_norway::to_string(&doc).ok().map(String::into_bytes),
    }
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

fn replace(rng: &mut StdRng, v: &mut Value, target: usize, seen: &mut usize) -> bool {
    if *seen == target {
        *v = match rng.random_range(0..4u32) {
            // Keep the node's kind but change its content: what validation, not parsing, sees.
            0 => near(rng, v),
            1 => {
                let mut copy = v.clone();
                if let Value::Array(a) = &mut copy {
                    let n = rng.random_range(0..4usize);
                    for _ in 0..n {
                        a.push(a.first().cloned().unwrap_or_else(|| generate(rng, 1)));
                    }
                } else if let Value::Object(o) = &mut copy {
                    o.insert(
                        ["id", "type", "x", "", "data"][rng.random_range(0..5usize)].into(),
                        generate(rng, 1),
                    );
                }
                copy
            }
            _ => generate(rng, 2),
        };
        return true;
    }
    *seen += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| replace(rng, x, target, seen)),
        Value::Object(o) => o.values_mut().any(|x| replace(rng, x, target, seen)),
        _ => false,
    }
}

/// A value of the same kind as `v`, near an edge.
fn near(rng: &mut StdRng, v: &Value) -> Value {
    match v {
        Value::Number(_) => number(rng),
        Value::String(s) => {
            let picks = [String::new(), s.repeat(64), format!("{s}\u{0}"), s.to_uppercase(), "é".repeat(3)];
            json!(picks[rng.random_range(0..picks.len())])
        }
        Value::Array(a) if !a.is_empty() => {
            let mut a = a.clone();
            a.truncate(rng.random_range(0..a.len()));
            Value::Array(a)
        }
        _ => generate(rng, 1),
    }
}

fn number(rng: &mut StdRng) -> Value {
    match rng.random_range(0..10u32) {
        0 => json!(u64::MAX),
        1 => json!(i64::MIN),
        2 => json!(f64::MAX),
        3 => json!(-0.0),
        4 => json!(f64::MIN_POSITIVE),
        5 => json!(1u64 << rng.random_range(0..64u32)),
        6 => json!(rng.random_range(-3..300i64)),
        7 => json!(rng.random::<f64>()),
        8 => json!(usize::MAX / 2),
        _ => json!(rng.random::<u32>()),
    }
}

/// A random JSON value of at most `depth` levels.
pub fn generate(rng: &mut StdRng, depth: u32) -> Value {
    let top = if depth == 0 { 4 } else { 6 };
    match rng.random_range(0..top) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => number(rng),
        3 => json!(
            ["", "x", "full", "input", "FP32", "UINT8", "mlp1", "-1", "1s"][rng.random_range(0..9usize)]
        ),
        4 => Value::Array((0..rng.random_range(0..5)).map(|_| generate(rng, depth - 1)).collect()),
        _ => {
            let mut o = Map::new();
            for _ in 0..rng.random_range(0..4) {
                o.insert(
                    ["id", "name", "shape", "datatype", "data", "type"][rng.random_range(0..6usize)].into(),
                    generate(rng, depth - 1),
                );
            }
            Value::Object(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mutations_stay_within_the_cap_and_vary() {
        let mut rng = StdRng::seed_from_u64(1);
        let seeds = vec![br#"{"id": "full", "generation": 3}"#.to_vec()];
        let outs: std::collections::HashSet<Vec<u8>> =
            (0..200).map(|_| mutate(&mut rng, &seeds, Shape::Json, 64)).collect();
        assert!(outs.iter().all(|o| o.len() <= 64));
        assert!(outs.len() > 100, "only {} distinct inputs", outs.len());
    }
}
