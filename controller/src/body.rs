//! Reading answers under a size cap: a peer that sends a body that never ends (or a huge one)
//! must cost the controller at most the cap, not its memory. Every body the controller reads
//! goes through [`read_capped`].

/// Cap of a runtime's `/v1/load` and `PUT /v1/config` answers (a few hundred bytes normally).
pub const SMALL_ANSWER_CAP: usize = 1 << 20;
/// Cap of a runtime's `/v1/configs` and of a Prometheus query answer (a table of many configs, a
/// vector over many series).
pub const LARGE_ANSWER_CAP: usize = 16 << 20;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than the cap (declared or sent).
    #[error("answer larger than the cap of {cap} bytes")]
    TooLarge {
        /// The cap, bytes.
        cap: usize,
    },
    /// The connection failed mid-body.
    #[error("reading the answer: {}", chain(.0))]
    Transport(#[source] reqwest::Error),
}

/// The body of `resp`, refused as soon as it passes `cap` bytes.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge { cap });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge { cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes, `outer: inner: root`: reqwest's own message ("error sending
/// request") says nothing of the cause (refused, reset, DNS) that the sources hold.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        // hyper and reqwest sometimes repeat the inner message in the outer one.
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}
