//! Run-time instruction-set selection.
//!
//! Extension point: a future `Avx512` variant needs a detection arm in
//! [`isa_available`], a name in [`parse_isa_override`] and a micro-kernel
//! module wired into `conv::kernel::run_tile`; the NCHW8c layout would stay
//! (two 8-channel blocks per zmm) so packed weights need not change.

use crate::KernelError;
use std::sync::OnceLock;

/// Instruction set a kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// x86-64 AVX2 + FMA intrinsics (8 f32 lanes).
    Avx2Fma,
    /// Plain Rust written for auto-vectorisation; runs everywhere.
    Portable,
}

/// Name of the environment variable overriding ISA detection.
pub const ISA_ENV_VAR: &str = "DYCE_KERNELS";

/// Parses an override value: `Some(isa)` to force one, `None` for automatic detection.
pub fn parse_isa_override(value: &str) -> Result<Option<Isa>, KernelError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(None),
        "portable" | "generic" => Ok(Some(Isa::Portable)),
        "avx2" | "avx2fma" | "avx2+fma" => Ok(Some(Isa::Avx2Fma)),
        _ => Err(KernelError::UnknownIsa(value.to_string())),
    }
}

/// Whether `isa` can run on this CPU.
pub fn isa_available(isa: Isa) -> bool {
    match isa {
        Isa::Portable => true,
        Isa::Avx2Fma => avx2_detected(),
    }
}

/// Every ISA usable on this CPU, best last (tests iterate over this).
pub fn available_isas() -> Vec<Isa> {
    [Isa::Portable, Isa::Avx2Fma].into_iter().filter(|&i| isa_available(i)).collect()
}

#[cfg(target_arch = "x86_64")]
fn avx2_detected() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_detected() -> bool {
    false
}

/// Best ISA for this CPU given an optional override value; never panics, warns on bad input.
pub fn resolve_isa(override_value: Option<&str>) -> Isa {
    let best = if avx2_detected() { Isa::Avx2Fma } else { Isa::Portable };
    match override_value.map(parse_isa_override) {
        None | Some(Ok(None)) => best,
        Some(Ok(Some(isa))) if isa_available(isa) => isa,
        Some(Ok(Some(isa))) => {
            eprintln!("dyce-kernels: {ISA_ENV_VAR} requests {isa:?}, unsupported here; using {best:?}");
            best
        }
        Some(Err(e)) => {
            eprintln!("dyce-kernels: {e}; using {best:?}");
            best
        }
    }
}

/// Process-wide ISA: detected once, honouring `DYCE_KERNELS=portable|avx2|auto`.
pub fn detect_isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| resolve_isa(std::env::var(ISA_ENV_VAR).ok().as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_accepts_known_names() {
        assert_eq!(parse_isa_override("portable"), Ok(Some(Isa::Portable)));
        assert_eq!(parse_isa_override(" AVX2 "), Ok(Some(Isa::Avx2Fma)));
        assert_eq!(parse_isa_override("auto"), Ok(None));
        assert!(parse_isa_override("avx512").is_err());
    }

    #[test]
    fn portable_override_selects_portable() {
        assert_eq!(resolve_isa(Some("portable")), Isa::Portable);
        // Unknown values fall back instead of panicking.
        let isa = resolve_isa(Some("bogus"));
        assert!(isa_available(isa));
    }
}
