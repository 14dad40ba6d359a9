//! ModelInfer: a `ModelInferRequest` checked and decoded through the shared OIP code
//! (`server/tensor.rs`), run by `Runtime::infer`, and the answer in the request's encoding:
//! `raw_output_contents` for a request that sent `raw_input_contents` (what tritonclient
//! does), typed `contents` for one that sent typed contents.

use std::collections::HashMap;

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::server::binary::Tensor;
use crate::server::error::ApiError;
use crate::server::tensor::{self, check_version, InputData, InputHeader};
use crate::service::Runtime;

/// Runs one ModelInfer request; the answer and the images it carried.
pub async fn infer(rt: &Runtime, req: ModelInferRequest) -> Result<(ModelInferResponse, usize), ApiError> {
    check_version(rt, &req.model_name, &req.model_version)?;
    if req.inputs.len() != 1 {
        return Err(ApiError::BadRequest(format!("expected exactly one input, got {}", req.inputs.len())));
    }
    for o in &req.outputs {
        tensor::check_output(&o.name)?;
    }
    let raw = !req.raw_input_contents.is_empty();
    if raw && req.raw_input_contents.len() != req.inputs.len() {
        return Err(ApiError::BadRequest(format!(
            "raw_input_contents has {} entries for {} inputs",
            req.raw_input_contents.len(),
            req.inputs.len()
        )));
    }
    let input = &req.inputs[0];
    let header = InputHeader { name: &input.name, shape: &input.shape, datatype: &input.datatype };
    let (x, n) = tensor::decode(rt, header, || match (req.raw_input_contents.first(), &input.contents) {
        (Some(bytes), None) => Ok(InputData::Raw(bytes)),
        (None, Some(c)) => typed(&input.datatype, c),
        (Some(_), Some(_)) => {
            Err(ApiError::BadRequest("input has both contents and raw_input_contents".into()))
        }
        (None, None) => Err(ApiError::BadRequest("input has no data".into())),
    })?;
    let client_id = (!req.id.is_empty()).then_some(req.id.as_str());
    let out = rt.infer(x, n, client_id).await?;
    let wanted: Vec<&str> = if req.outputs.is_empty() {
        tensor::OUTPUTS.to_vec()
    } else {
        req.outputs.iter().map(|o| o.name.as_str()).collect()
    };
    let mut resp = ModelInferResponse {
        model_name: rt.bundle.manifest.name.clone(),
        model_version: tensor::VERSION.into(),
        id: req.id.clone(),
        parameters: HashMap::from([
            ("config_id".to_string(), param(ParameterChoice::StringParam(out.config_id.clone()))),
            // Generations stop at 2^63 - 1 (the fencing ceiling), so the cast is exact.
            ("config_generation".to_string(), param(ParameterChoice::Int64Param(out.generation as i64))),
        ]),
        outputs: Vec::with_capacity(wanted.len()),
        raw_output_contents: Vec::new(),
    };
    if let Some(id) = &out.answer_id {
        resp.parameters.insert("answer_id".into(), param(ParameterChoice::StringParam(id.clone())));
    }
    for name in wanted {
        let t = tensor::output(rt, &out, name);
        let (datatype, shape) = (t.datatype().into(), t.shape().iter().map(|&d| d as i64).collect());
        let contents = if raw {
            resp.raw_output_contents.push(t.le_bytes());
            None
        } else {
            Some(contents(t))
        };
        resp.outputs.push(InferOutputTensor {
            name: name.into(),
            datatype,
            shape,
            parameters: HashMap::new(),
            contents,
        });
    }
    Ok((resp, n))
}

fn param(choice: ParameterChoice) -> InferParameter {
    InferParameter { parameter_choice: Some(choice) }
}

/// The typed contents of an accepted datatype: UINT8 in `uint_contents`, FP32 in
/// `fp32_contents`; values in any other field are refused rather than silently ignored.
fn typed<'a>(datatype: &str, c: &'a InferTensorContents) -> Result<InputData<'a>, ApiError> {
    let (data, field) = match datatype {
        "UINT8" => (InputData::Uint(&c.uint_contents), "uint_contents"),
        _ => (InputData::Fp32(&c.fp32_contents), "fp32_contents"),
    };
    let elsewhere = c.bool_contents.len()
        + c.int_contents.len()
        + c.int64_contents.len()
        + c.uint64_contents.len()
        + c.fp64_contents.len()
        + c.bytes_contents.len()
        + if field == "uint_contents" { c.fp32_contents.len() } else { c.uint_contents.len() };
    if elsewhere > 0 {
        return Err(ApiError::BadRequest(format!(
            "{datatype} contents go in {field}; {elsewhere} values were sent in other fields"
        )));
    }
    Ok(data)
}

/// An output's values in the typed field of its datatype.
fn contents(t: Tensor) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match t {
        Tensor::F32(_, v) => c.fp32_contents = v,
        Tensor::I64(_, v) => c.int64_contents = v,
        Tensor::I32(_, v) => c.int_contents = v,
    }
    c
}
