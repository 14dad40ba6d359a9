//! Run-time instruction-set selection.
//!
//! The ladder is AVX-512F → AVX2+FMA → portable, best available first, with `DYCE_KERNELS`
//! able to force any rung this CPU has. Activations stay NCHW8c on every rung; what differs is
//! the width of one output-channel vector in the packed weights and the register tile
//! ([`Isa::lanes`]): 8 for AVX2 and portable, 16 for AVX-512 (two 8-channel blocks per zmm).
//! `Portable16` runs the 16-lane layout and tiling in plain Rust, so the AVX-512 path's
//! packing and work decomposition are tested on every machine; only the intrinsics need one.

use crate::KernelError;
use std::sync::OnceLock;

/// Instruction set a kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// x86-64 AVX-512F intrinsics (16 f32 lanes, 32 registers).
    Avx512,
    /// x86-64 AVX2 + FMA intrinsics (8 f32 lanes).
    Avx2Fma,
    /// Plain Rust written for auto-vectorisation; runs everywhere.
    Portable,
    /// Plain Rust in the AVX-512 path's 16-lane layout and tiling; runs everywhere. Slow: it
    /// exists so that the AVX-512 layout is tested on machines without AVX-512.
    Portable16,
}

impl Isa {
    /// Output channels per vector in the packed weights and register tiles.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Avx512 | Isa::Portable16 => 16,
            Isa::Avx2Fma | Isa::Portable => 8,
        }
    }

    /// Short name as accepted by `DYCE_KERNELS` and reported in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Portable => "portable",
            Isa::Portable16 => "portable16",
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Name of the environment variable overriding ISA detection.
pub const ISA_ENV_VAR: &str = "DYCE_KERNELS";

/// Parses an override value: `Some(isa)` to force one, `None` for automatic detection.
pub fn parse_isa_override(value: &str) -> Result<Option<Isa>, KernelError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(None),
        "portable" | "generic" => Ok(Some(Isa::Portable)),
        "portable16" => Ok(Some(Isa::Portable16)),
        "avx2" | "avx2fma" | "avx2+fma" => Ok(Some(Isa::Avx2Fma)),
        "avx512" | "avx512f" | "avx-512" => Ok(Some(Isa::Avx512)),
        _ => Err(KernelError::UnknownIsa(value.to_string())),
    }
}

/// Whether `isa` can run on this CPU.
pub fn isa_available(isa: Isa) -> bool {
    match isa {
        Isa::Portable | Isa::Portable16 => true,
        Isa::Avx2Fma => avx2_detected(),
        Isa::Avx512 => avx512_detected(),
    }
}

/// Every ISA usable on this CPU, best last (tests iterate over this).
pub fn available_isas() -> Vec<Isa> {
    [Isa::Portable, Isa::Portable16, Isa::Avx2Fma, Isa::Avx512]
        .into_iter()
        .filter(|&i| isa_available(i))
        .collect()
}

#[cfg(target_arch = "x86_64")]
fn avx2_detected() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_detected() -> bool {
    false
}

/// AVX-512F with the OS saving zmm state (std's detection checks XCR0). The kernels also use
/// AVX2+FMA for the 8-lane parts (pooling), which every AVX-512F CPU has.
#[cfg(target_arch = "x86_64")]
fn avx512_detected() -> bool {
    is_x86_feature_detected!("avx512f") && avx2_detected()
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_detected() -> bool {
    false
}

/// The best ISA this CPU runs.
pub fn best_isa() -> Isa {
    if avx512_detected() {
        Isa::Avx512
    } else if avx2_detected() {
        Isa::Avx2Fma
    } else {
        Isa::Portable
    }
}

/// Best ISA for this CPU given an optional override value; never panics, warns on bad input.
pub fn resolve_isa(override_value: Option<&str>) -> Isa {
    let best = best_isa();
    match override_value.map(parse_isa_override) {
        None | Some(Ok(None)) => best,
        Some(Ok(Some(isa))) if isa_available(isa) => isa,
        Some(Ok(Some(isa))) => {
            eprintln!("dyce-kernels: {ISA_ENV_VAR} requests {isa}, unsupported here; using {best}");
            best
        }
        Some(Err(e)) => {
            eprintln!("dyce-kernels: {e}; using {best}");
            best
        }
    }
}

/// Process-wide ISA: detected once, honouring `DYCE_KERNELS=portable|portable16|avx2|avx512|auto`.
pub fn detect_isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| resolve_isa(std::env::var(ISA_ENV_VAR).ok().as_deref()))
}

/// The CPU's model name as the OS reports it (`/proc/cpuinfo` on Linux), for benchmark tables
/// and the runtime's info metric; `"unknown"` where it cannot be read.
pub fn cpu_model() -> String {
    static MODEL: OnceLock<String> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_string())
                })
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "unknown".to_string())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_accepts_known_names() {
        assert_eq!(parse_isa_override("portable"), Ok(Some(Isa::Portable)));
        assert_eq!(parse_isa_override(" AVX2 "), Ok(Some(Isa::Avx2Fma)));
        assert_eq!(parse_isa_override("avx512"), Ok(Some(Isa::Avx512)));
        assert_eq!(parse_isa_override("AVX512F"), Ok(Some(Isa::Avx512)));
        assert_eq!(parse_isa_override("portable16"), Ok(Some(Isa::Portable16)));
        assert_eq!(parse_isa_override("auto"), Ok(None));
        assert!(parse_isa_override("sse9").is_err());
    }

    #[test]
    fn every_name_round_trips() {
        for isa in [Isa::Avx512, Isa::Avx2Fma, Isa::Portable, Isa::Portable16] {
            assert_eq!(parse_isa_override(isa.name()), Ok(Some(isa)));
        }
    }

    #[test]
    fn portable_override_selects_portable() {
        assert_eq!(resolve_isa(Some("portable")), Isa::Portable);
        assert_eq!(resolve_isa(Some("portable16")), Isa::Portable16);
        // Unknown values fall back instead of panicking.
        let isa = resolve_isa(Some("bogus"));
        assert!(isa_available(isa));
    }

    #[test]
    fn the_ladder_prefers_the_widest_available() {
        let best = resolve_isa(None);
        assert_eq!(best, *available_isas().iter().rfind(|i| **i != Isa::Portable16).unwrap());
    }
}
