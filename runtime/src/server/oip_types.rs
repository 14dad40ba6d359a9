//! Wire types of the KServe Open Inference Protocol v2 (REST) as this runtime speaks it.
//!
//! Handlers build their answers from these types (never from ad-hoc JSON), so the OpenAPI
//! document, which takes its schemas from the same definitions, cannot drift from the wire.

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Parameters of inputs, outputs and requests: the binary tensor data extension's (other
/// parameters are accepted and ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TensorParams {
    /// Bytes of this input's data that follow the JSON header.
    #[serde(default)]
    pub binary_data_size: Option<usize>,
    /// Return this output as binary data.
    #[serde(default)]
    pub binary_data: Option<bool>,
    /// Return every output as binary data (request level).
    #[serde(default)]
    pub binary_data_output: Option<bool>,
}

/// One input tensor of an infer request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InferInput {
    /// Must be `input`.
    pub name: String,
    /// `[N, C, H, W]`, with C, H, W as the model metadata says.
    pub shape: Vec<i64>,
    /// `UINT8` (pixels 0–255) or `FP32` (pixels scaled to [0, 1]).
    pub datatype: String,
    /// `binary_data_size` when the data follows the JSON header.
    #[serde(default)]
    pub parameters: TensorParams,
    /// The pixels, row-major, as a flat or nested array of numbers; absent when binary.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub data: Option<FlatData>,
}

/// An input's `data`, flattened into numbers while it is parsed: no `serde_json::Value` tree
/// in between (a 784-pixel image would be 784 boxed values, parsed and then walked again).
#[derive(Debug, Default)]
pub struct FlatData(pub Vec<f64>);

impl<'de> Deserialize<'de> for FlatData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        Flatten(&mut out).deserialize(d)?;
        Ok(FlatData(out))
    }
}

/// Appends every number of a (nested) array to the vector.
struct Flatten<'a>(&'a mut Vec<f64>);

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("numbers (a flat or nested array)")
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push(v as f64);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.push(v as f64);
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.0.push(v);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.reserve(seq.size_hint().unwrap_or(0));
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// A requested output.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestedOutput {
    /// One of `probabilities`, `label`, `confidence`, `exit_position`.
    pub name: String,
    /// `binary_data: true` to get this output as binary data.
    #[serde(default)]
    pub parameters: TensorParams,
}

/// `POST /v2/models/{name}/infer` body (the JSON part, with the binary extension).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    /// Echoed in the answer.
    #[serde(default)]
    pub id: Option<String>,
    /// `binary_data_output: true` to get every output as binary data.
    #[serde(default)]
    pub parameters: TensorParams,
    /// Exactly one input, named `input`.
    pub inputs: Vec<InferInput>,
    /// Outputs to return (default: all).
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// Parameters of a binary output.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputParams {
    /// Bytes of this output's data in the binary tail.
    pub binary_data_size: usize,
}

/// One output tensor of an infer answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferOutput {
    /// Output name.
    pub name: String,
    /// `FP32`, `INT64` or `INT32`.
    pub datatype: &'static str,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Values, flat, row-major; absent when the output is binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f64>>)]
    pub data: Option<Value>,
    /// Present when the output is binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<OutputParams>,
}

/// Which configuration answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferParams {
    /// Id of the configuration the batch ran on.
    pub config_id: String,
    /// Its generation.
    pub config_generation: u64,
    /// The id `POST /v1/feedback` quotes (the request's `id` when it had one); absent when
    /// feedback is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_id: Option<String>,
}

/// `POST /v2/models/{name}/infer` answer (the JSON part, with the binary extension).
#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse {
    /// The request's id, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The served model.
    pub model_name: String,
    /// Always `1`.
    pub model_version: &'static str,
    /// The requested outputs in the order asked for (default: `probabilities`, `label`,
    /// `confidence`, `exit_position`).
    pub outputs: Vec<InferOutput>,
    /// The configuration that answered.
    pub parameters: InferParams,
}

/// `GET /v2`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    /// `dyce`.
    pub name: &'static str,
    /// The runtime's version.
    pub version: &'static str,
    /// `binary_tensor_data`, `model_repository` (the index only).
    pub extensions: Vec<&'static str>,
}

/// `POST /v2/repository/index` body (Triton's model repository extension); may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryIndexRequest {
    /// Only models ready for inference.
    #[serde(default)]
    pub ready: bool,
}

/// One model of the repository index.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryModel {
    /// The model's name, as infer URLs take it.
    pub name: String,
    /// Always `1`.
    pub version: &'static str,
    /// `READY`, or `LOADING` while the model warms up.
    pub state: &'static str,
    /// Why it is not ready (empty when ready).
    pub reason: String,
}

/// A tensor of the model metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: &'static str,
    /// Datatype.
    pub datatype: &'static str,
    /// Shape; −1 is the batch dimension.
    pub shape: Vec<i64>,
}

/// Normalisation the server applies to pixels scaled to [0, 1].
#[derive(Debug, Serialize, ToSchema)]
pub struct Normalization {
    /// Per-channel mean, subtracted.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, divided out.
    pub std: Vec<f32>,
    /// Always `server`: clients send raw pixels.
    pub applied_by: &'static str,
}

/// Parameters of the model metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelParameters {
    /// Input datatypes and their pixel ranges.
    pub accepted_datatypes: Vec<&'static str>,
    /// Class names, index = class id.
    pub labels: Vec<String>,
    /// What the server does to pixels.
    pub normalization: Normalization,
    /// Meaning of −1 in `exit_position`.
    pub exit_position: &'static str,
}

/// `GET /v2/models/{name}`: what a generic v2 client needs to build a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    /// The served model.
    pub name: String,
    /// Always `["1"]`.
    pub versions: Vec<&'static str>,
    /// `dyce`.
    pub platform: &'static str,
    /// The one input, `input`, `UINT8 [-1, C, H, W]`.
    pub inputs: Vec<TensorMetadata>,
    /// `probabilities`, `label`, `confidence`, `exit_position`.
    pub outputs: Vec<TensorMetadata>,
    /// Labels, normalisation, accepted datatypes.
    pub parameters: ModelParameters,
}
