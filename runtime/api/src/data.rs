//! dyce's own answers on the data port (the OIP v2 routes follow KServe's protocol instead).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/classify`: the top-1 answer for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "label": "Sneaker", "class": 7, "confidence": 0.97, "exit": 2, "config": "c03", "generation": 17
}))]
pub struct ClassifyResponse {
    /// Class name from the model's labels, or the class index as a string when the model has no
    /// name for it.
    pub label: String,
    /// Predicted class index.
    pub class: usize,
    /// Softmax probability of the predicted class, from the head that answered.
    pub confidence: f32,
    /// Exit position that answered; −1 for the original head (as OIP's `exit_position`).
    pub exit: i32,
    /// Id of the configuration the batch ran on.
    pub config: String,
    /// Generation of that configuration.
    pub generation: u64,
}
