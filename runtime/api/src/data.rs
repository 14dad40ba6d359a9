//! dyce's own answers on the data port (the OIP v2 routes follow KServe's protocol instead).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/classify`: the top-1 answer for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "label": "Sneaker", "class": 7, "confidence": 0.97, "exit": 2, "config": "c03", "generation": 17,
    "answer_id": "d-5f2a91c3-42"
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
    /// The id to quote in `POST /v1/feedback` with the image's true label; absent when
    /// feedback is off (`--feedback-capacity 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_id: Option<String>,
}

/// A true label for an answered image: one item of `POST /v1/feedback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "d-5f2a91c3-42", "label": "Sneaker"}))]
pub struct FeedbackItem {
    /// The answer's id: `answer_id` of `/v1/classify`, `parameters.answer_id` of OIP infer
    /// (the request's own `id` when it had one).
    pub id: String,
    /// Which image of the request (0 for single-image requests).
    #[serde(default)]
    pub index: usize,
    /// The true class: its index, or its name from the model's labels.
    pub label: FeedbackLabel,
}

/// A class given by index or by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum FeedbackLabel {
    /// Class index.
    Index(i64),
    /// Class name, as in the model's labels.
    Name(String),
}

/// `POST /v1/feedback` body: one item or a list, applied all or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum FeedbackRequest {
    /// One true label.
    One(FeedbackItem),
    /// Several, applied together: one bad item refuses them all.
    Many(Vec<FeedbackItem>),
}

impl FeedbackRequest {
    /// The items, in order.
    pub fn items(&self) -> &[FeedbackItem] {
        match self {
            FeedbackRequest::One(i) => std::slice::from_ref(i),
            FeedbackRequest::Many(v) => v,
        }
    }
}

/// `POST /v1/feedback` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackResponse {
    /// Items counted.
    pub accepted: usize,
    /// Of those, the ones whose answer was right.
    pub correct: usize,
}
