//! HTTP calls to a runtime's admin port, each with its own total timeout (connect, head and
//! body) and a cap on the answer's size.

use std::time::Duration;

use dyce_api::{ActiveConfig, ConfigsView, ErrorBody, LoadReport, SwitchRequest};
use serde::de::DeserializeOwned;

use crate::body::{chain, read_capped, BodyError, LARGE_ANSWER_CAP, SMALL_ANSWER_CAP};

/// A failed call to a runtime.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// No answer in time.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// Called URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// Connection refused, reset, DNS, ... (`message` holds the whole chain of causes).
    #[error("{url}: {message}")]
    Transport {
        /// Called URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// An error status.
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        /// Called URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The runtime's `error` text.
        message: String,
    },
    /// An answer larger than the cap (a body that never ends, or a huge one).
    #[error("{url}: answer larger than the cap of {cap} bytes")]
    TooLarge {
        /// Called URL.
        url: String,
        /// The cap, bytes.
        cap: usize,
    },
    /// A body that is not the contract's JSON.
    #[error("{url}: unexpected answer: {message}")]
    Decode {
        /// Called URL.
        url: String,
        /// Parse error.
        message: String,
    },
}

impl CallError {
    /// HTTP status, for errors that have one.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Client of runtimes' admin ports.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    token: Option<String>,
    timeout: Duration,
}

impl AdminClient {
    /// A client with a per-call `timeout` and an optional bearer token.
    pub fn new(timeout: Duration, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a plain HTTP client builds");
        Self { http, token, timeout }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        cap: usize,
    ) -> Result<T, CallError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let sent = tokio::time::timeout(self.timeout, async {
            let resp = req.send().await.map_err(BodyError::Transport)?;
            let status = resp.status();
            Ok::<_, BodyError>((status, read_capped(resp, cap).await?))
        })
        .await;
        let url = url.to_string();
        let (status, body) = match sent {
            Err(_) => return Err(CallError::Timeout { url, timeout: self.timeout }),
            Ok(Err(BodyError::TooLarge { cap })) => return Err(CallError::TooLarge { url, cap }),
            Ok(Err(BodyError::Transport(e))) => return Err(CallError::Transport { url, message: chain(&e) }),
            Ok(Ok(x)) => x,
        };
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(CallError::Status { url, status: status.as_u16(), message });
        }
        serde_json::from_slice(&body).map_err(|e| CallError::Decode { url, message: e.to_string() })
    }

    fn url(base: &str, path: &str) -> String {
        format!("{}{path}", base.trim_end_matches('/'))
    }

    /// `GET /v1/load`.
    pub async fn load(&self, base: &str) -> Result<LoadReport, CallError> {
        let url = Self::url(base, "/v1/load");
        self.call(self.http.get(&url), &url, SMALL_ANSWER_CAP).await
    }

    /// `GET /v1/configs`.
    pub async fn configs(&self, base: &str) -> Result<ConfigsView, CallError> {
        let url = Self::url(base, "/v1/configs");
        self.call(self.http.get(&url), &url, LARGE_ANSWER_CAP).await
    }

    /// `PUT /v1/config`.
    pub async fn switch(&self, base: &str, req: &SwitchRequest) -> Result<ActiveConfig, CallError> {
        let url = Self::url(base, "/v1/config");
        self.call(self.http.put(&url).json(req), &url, SMALL_ANSWER_CAP).await
    }
}
