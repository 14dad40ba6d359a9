//! Named tensors from a checkpoint, checked for presence and shape as they are taken.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::ModelError;

/// Tensors of a checkpoint by name, converted to f32 on the CPU.
#[derive(Debug, Default)]
pub struct TensorStore {
    tensors: HashMap<String, Tensor>,
}

impl TensorStore {
    /// Wraps a map of tensors (e.g. one built in a test).
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        Self { tensors }
    }

    /// Reads a safetensors file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| ModelError::Io { path: path.to_path_buf(), reason: e.to_string() })?;
        Ok(Self { tensors })
    }

    /// Reads safetensors bytes (an embedded checkpoint); `origin` names them in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Self, ModelError> {
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| ModelError::Io { path: origin.to_path_buf(), reason: e.to_string() })?;
        Ok(Self { tensors })
    }

    /// Names present in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Whether a tensor is present.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name` as flat f32 values, after checking that its shape is `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.to_string(), expected: shape.to_vec() })?;
        if t.dims() != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        let conv = |e: candle_core::Error| ModelError::Tensor(format!("{name}: {e}"));
        t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(conv)
    }
}
