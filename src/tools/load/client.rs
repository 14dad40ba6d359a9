//! The OIP v2 side of `dyce load`: checking the server before the run, building an infer
//! request from labelled images, and turning one exchange into a [`Record`].

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::time::Instant;

use super::images::LabelledImages;
use super::record::{Outcome, Record};

/// How long the pre-flight check waits for a model that is still warming up.
const READY_WAIT: Duration = Duration::from_secs(30);

/// The HTTP client of a run. No proxy: a proxy in the path would be measured as the server.
pub fn http(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

async fn get_json(http: &reqwest::Client, url: &str, timeout: Duration) -> Result<(u16, Value)> {
    let resp = http.get(url).timeout(timeout).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.with_context(|| format!("reading the answer of {url}"))?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// The model names of the repository index extension (empty when the server has none).
async fn repository_index(http: &reqwest::Client, base: &str, timeout: Duration) -> Vec<String> {
    let url = format!("{base}/v2/repository/index");
    let answer =
        http.post(&url).header("content-type", "application/json").body("{}").timeout(timeout).send();
    let Ok(resp) = answer.await else { return vec![] };
    if !resp.status().is_success() {
        return vec![];
    }
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    v.as_array().into_iter().flatten().filter_map(|m| m["name"].as_str().map(str::to_string)).collect()
}

/// Checks that `base` speaks OIP v2, picks the model (`model`, else the server's only model from
/// its metadata or its repository index), checks its input takes UINT8 images of `shape`
/// (`[c, h, w]`, the images to be sent) and waits until it is ready.
/// Returns the infer URL and the model name.
pub async fn preflight(
    http: &reqwest::Client,
    base: &str,
    model: Option<&str>,
    shape: [usize; 3],
    timeout: Duration,
) -> Result<(String, String)> {
    let (status, meta) = get_json(http, &format!("{base}/v2"), timeout).await?;
    if status != 200 {
        bail!("{base}/v2 answered HTTP {status}: is this an OIP v2 server?");
    }
    // OIP's server metadata has no model list; some servers add one, others (dyce, Triton)
    // answer the model repository extension's index.
    let name = |m: &Value| m.as_str().or_else(|| m["name"].as_str()).map(str::to_string);
    let mut listed: Vec<String> = meta["models"].as_array().into_iter().flatten().filter_map(name).collect();
    if model.is_none() && listed.is_empty() {
        listed = repository_index(http, base, timeout).await;
    }
    let model = match (model, listed.as_slice()) {
        (Some(m), _) => m.to_string(),
        (None, [one]) => one.clone(),
        (None, []) => bail!("{base} lists no models (GET /v2, POST /v2/repository/index): pass --model NAME"),
        (None, many) => {
            bail!("{base} serves {} models: pass --model (one of {})", many.len(), many.join(", "))
        }
    };
    let meta_url = format!("{base}/v2/models/{model}");
    let (status, m) = get_json(http, &meta_url, timeout).await?;
    match status {
        200 => {}
        404 => bail!("the server at {base} has no model {model:?}"),
        s => bail!("{meta_url} answered HTTP {s}"),
    }
    let input = &m["inputs"][0];
    let takes: Vec<i64> = input["shape"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
    let sending = [-1, shape[0] as i64, shape[1] as i64, shape[2] as i64];
    if takes != sending || input["datatype"] != "UINT8" {
        bail!(
            "model {model:?} takes {} {takes:?}, but the images to send are UINT8 {sending:?} \
             (Fashion-MNIST by default; --images DIR --bundle DIR sends a folder's images prepared for a bundle)",
            input["datatype"]
        );
    }
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let resp = http.get(format!("{meta_url}/ready")).timeout(timeout).send().await;
        if resp.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("model {model:?} at {base} is not ready after {READY_WAIT:?}");
        }
        tracing::info!(model, "waiting for the model to be ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((format!("{meta_url}/infer"), model))
}

/// How a request carries its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Encoding {
    /// UINT8 numbers in the JSON body (any OIP v2 server).
    #[default]
    Json,
    /// The binary tensor data extension: a JSON header, then the raw pixel bytes (what
    /// tritonclient sends by default; about 3.5× fewer bytes and no number parsing).
    Binary,
}

/// A prepared infer request: the body and, for binary data, the length of its JSON header.
pub struct RequestBody {
    bytes: Vec<u8>,
    header_len: Option<usize>,
}

#[cfg(test)]
impl From<&str> for RequestBody {
    fn from(json: &str) -> Self {
        RequestBody { bytes: json.as_bytes().to_vec(), header_len: None }
    }
}

/// The outputs the log needs, so the server spends its time on inference rather than on
/// serialising probabilities.
const OUTPUTS: &str = r#""outputs":[{"name":"label"},{"name":"exit_position"}]"#;

/// An infer request for `idx` as UINT8 data in `encoding`.
pub fn body(images: &LabelledImages, idx: &[usize], encoding: Encoding) -> RequestBody {
    let n = idx.len();
    let ([c, h, w], per) = (images.shape, images.per_image());
    let head = |params: &str| {
        format!(r#"{{"inputs":[{{"name":"input","datatype":"UINT8","shape":[{n},{c},{h},{w}]{params}"#)
    };
    match encoding {
        Encoding::Json => {
            let mut s = String::with_capacity(n * per * 4 + 200);
            s.push_str(&head(r#","data":["#));
            for (k, &i) in idx.iter().enumerate() {
                for (j, p) in images.image(i).iter().enumerate() {
                    if k + j > 0 {
                        s.push(',');
                    }
                    let _ = write!(s, "{p}");
                }
            }
            let _ = write!(s, "]}}],{OUTPUTS}}}");
            RequestBody { bytes: s.into_bytes(), header_len: None }
        }
        Encoding::Binary => {
            let header = head(&format!(r#","parameters":{{"binary_data_size":{}}}}}],{OUTPUTS}}}"#, n * per));
            let mut bytes = Vec::with_capacity(header.len() + n * per);
            bytes.extend_from_slice(header.as_bytes());
            for &i in idx {
                bytes.extend_from_slice(images.image(i));
            }
            RequestBody { header_len: Some(header.len()), bytes }
        }
    }
}

/// What a 200 answer says about the request, or why it is not the protocol's answer.
fn parse_answer(v: &Value, n: usize) -> Result<(Vec<i64>, Vec<i32>, String, u64), String> {
    let output = |name: &str| -> Result<Vec<i64>, String> {
        let out = v["outputs"].as_array().and_then(|o| o.iter().find(|o| o["name"] == name));
        let data = out.and_then(|o| o["data"].as_array()).ok_or(format!("no {name} output"))?;
        let vals: Vec<i64> = data.iter().filter_map(Value::as_i64).collect();
        if vals.len() != n {
            return Err(format!("{name} has {} integers for {n} images", vals.len()));
        }
        Ok(vals)
    };
    let labels = output("label")?;
    let exits = output("exit_position")?.into_iter().map(|e| e as i32).collect();
    let p = &v["parameters"];
    let id = p["config_id"].as_str().ok_or("no parameters.config_id")?;
    let generation = p["config_generation"].as_u64().ok_or("no parameters.config_generation")?;
    Ok((labels, exits, id.to_string(), generation))
}

/// Sends one prepared request and classifies the result; `record` comes in with the schedule
/// fields and labels filled and goes out complete.
pub async fn exchange(
    http: &reqwest::Client,
    url: &str,
    body: RequestBody,
    timeout: Duration,
    mut record: Record,
) -> Record {
    let sent = Instant::now();
    let n = record.labels.len();
    let call = async {
        let req = match body.header_len {
            None => http.post(url).header("content-type", "application/json"),
            Some(len) => http
                .post(url)
                .header("content-type", "application/octet-stream")
                .header("inference-header-content-length", len),
        };
        let resp = req.body(body.bytes).send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok::<_, reqwest::Error>((status, bytes))
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => {
            record.outcome = Outcome::Timeout;
            record.error = Some(format!("no answer within {timeout:?}"));
        }
        Ok(Err(e)) => {
            record.outcome = Outcome::Error;
            record.error = Some(format!("{:#}", anyhow::Error::new(e.without_url())));
        }
        Ok(Ok((status, bytes))) => {
            record.latency_s = Some(sent.elapsed().as_secs_f64());
            record.status = Some(status);
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            match status {
                200 => match parse_answer(&v, n) {
                    Ok((predicted, exits, id, generation)) => {
                        record.outcome = Outcome::Ok;
                        record.answer_id = v["parameters"]["answer_id"].as_str().map(str::to_string);
                        (record.predicted, record.exits) = (predicted, exits);
                        (record.config_id, record.generation) = (Some(id), Some(generation));
                    }
                    Err(e) => {
                        record.outcome = Outcome::Error;
                        record.error = Some(format!("unexpected answer: {e}"));
                    }
                },
                429 | 503 => record.outcome = Outcome::Shed,
                _ => {
                    record.outcome = Outcome::Error;
                    let why = v["error"]
                        .as_str()
                        .map_or_else(|| String::from_utf8_lossy(&bytes).into(), String::from);
                    record.error = Some(why.chars().take(200).collect());
                }
            }
        }
    }
    record
}

/// Posts the true labels of an answered request to `feedback_url` (`POST /v1/feedback`), as
/// an application that learns them later would; the status, or `None` when it got no answer.
pub async fn feedback(
    http: &reqwest::Client,
    feedback_url: &str,
    record: &Record,
    timeout: Duration,
) -> Option<u16> {
    let id = record.answer_id.as_deref()?;
    let items: Vec<Value> = record
        .labels
        .iter()
        .enumerate()
        .map(|(index, label)| serde_json::json!({"id": id, "index": index, "label": label}))
        .collect();
    let call = http.post(feedback_url).json(&items).send();
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(resp)) => Some(resp.status().as_u16()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dyce_data::fashion_mnist::{Images, PIXELS};
    use serde_json::json;

    #[test]
    fn body_is_an_oip_request_of_the_chosen_images() {
        let images: LabelledImages =
            Images { pixels: (0..3 * PIXELS).map(|i| (i % 256) as u8).collect(), labels: vec![1, 2, 3] }
                .into();
        let v: Value = serde_json::from_slice(&body(&images, &[2, 0], Encoding::Json).bytes).unwrap();
        let input = &v["inputs"][0];
        assert_eq!(input["shape"], json!([2, 1, 28, 28]));
        let data: Vec<u64> = input["data"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(data.len(), 2 * PIXELS);
        assert_eq!(data[0], (2 * PIXELS % 256) as u64);
        assert_eq!(data[PIXELS], 0);
    }

    #[test]
    fn binary_body_is_a_json_header_and_the_raw_pixels() {
        let images: LabelledImages =
            Images { pixels: (0..3 * PIXELS).map(|i| (i % 251) as u8).collect(), labels: vec![1, 2, 3] }
                .into();
        let b = body(&images, &[2, 0], Encoding::Binary);
        let len = b.header_len.unwrap();
        let v: Value = serde_json::from_slice(&b.bytes[..len]).unwrap();
        let input = &v["inputs"][0];
        assert_eq!(input["shape"], json!([2, 1, 28, 28]));
        assert_eq!(input["parameters"]["binary_data_size"], json!(2 * PIXELS));
        assert!(input.get("data").is_none());
        assert_eq!(&b.bytes[len..len + PIXELS], images.image(2));
        assert_eq!(&b.bytes[len + PIXELS..], images.image(0));
    }

    #[test]
    fn bodies_take_the_shape_of_the_images() {
        let images = LabelledImages {
            shape: [3, 4, 5],
            pixels: (0..120).map(|i| i as u8).collect(),
            labels: vec![7, 9],
        };
        let v: Value = serde_json::from_slice(&body(&images, &[1], Encoding::Json).bytes).unwrap();
        assert_eq!(v["inputs"][0]["shape"], json!([1, 3, 4, 5]));
        assert_eq!(v["inputs"][0]["data"].as_array().unwrap().len(), 60);
        assert_eq!(v["inputs"][0]["data"][0], json!(60));
    }

    #[test]
    fn parses_answers_and_names_what_is_missing() {
        let v = json!({"outputs": [{"name": "label", "data": [3, 4]}, {"name": "exit_position", "data": [-1, 0]}],
                       "parameters": {"config_id": "c2", "config_generation": 5}});
        assert_eq!(parse_answer(&v, 2).unwrap(), (vec![3, 4], vec![-1, 0], "c2".to_string(), 5));
        assert!(parse_answer(&v, 3).unwrap_err().contains("label has 2"));
        assert!(parse_answer(&json!({}), 1).unwrap_err().contains("no label"));
    }

    /// A one-connection HTTP stub answering every request with `answer` (never, if `None`).
    async fn stub(answer: Option<&'static str>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/infer", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            // The request is small: its headers and body come in one read or a few.
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            // (Readiness and try_read/try_write: tokio's io-util is not among our features.)
            while !String::from_utf8_lossy(&got).contains("\r\n\r\n{}") {
                conn.readable().await.unwrap();
                match conn.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
            let Some(mut rest) = answer.map(str::as_bytes) else {
                return std::future::pending::<()>().await;
            };
            while !rest.is_empty() {
                conn.writable().await.unwrap();
                if let Ok(n) = conn.try_write(rest) {
                    rest = &rest[n..];
                }
            }
        });
        url
    }

    fn fresh() -> Record {
        Record {
            seq: 0,
            scheduled_s: 0.0,
            sent_s: Some(0.0),
            latency_s: None,
            status: None,
            outcome: Outcome::Dropped,
            config_id: None,
            generation: None,
            labels: vec![1],
            predicted: vec![],
            exits: vec![],
            error: None,
            answer_id: None,
            feedback_status: None,
        }
    }

    #[tokio::test]
    async fn classifies_refusals_failures_and_silence() {
        let http = http(Duration::from_secs(2)).unwrap();
        let ok = r#"{"outputs":[{"name":"label","data":[1]},{"name":"exit_position","data":[0]}],"parameters":{"config_id":"c0","config_generation":3}}"#;
        let answer = |status: &str, body: &str| -> &'static str {
            format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                .leak()
        };
        let cases = [
            (answer("200 OK", ok), Outcome::Ok, None),
            (answer("429 Too Many Requests", r#"{"error":"overloaded"}"#), Outcome::Shed, None),
            (answer("503 Service Unavailable", ""), Outcome::Shed, None),
            (answer("500 Internal Server Error", r#"{"error":"boom"}"#), Outcome::Error, Some("boom")),
            (answer("200 OK", "{}"), Outcome::Error, Some("unexpected answer: no label output")),
        ];
        for (reply, outcome, error) in cases {
            let url = stub(Some(reply)).await;
            let r = exchange(&http, &url, "{}".into(), Duration::from_secs(2), fresh()).await;
            assert_eq!((r.outcome, r.error.as_deref()), (outcome, error), "{reply}");
            assert!(r.latency_s.is_some() && r.status.is_some());
        }
        let url = stub(Some(answer("200 OK", ok))).await;
        let r = exchange(&http, &url, "{}".into(), Duration::from_secs(2), fresh()).await;
        assert_eq!(
            (r.correct(), r.predicted, r.exits, r.config_id, r.generation),
            (1, vec![1], vec![0], Some("c0".into()), Some(3))
        );

        let url = stub(None).await;
        let r = exchange(&http, &url, "{}".into(), Duration::from_millis(200), fresh()).await;
        assert_eq!((r.outcome, r.status, r.latency_s), (Outcome::Timeout, None, None));
        let r =
            exchange(&http, "http://127.0.0.1:1/infer", "{}".into(), Duration::from_secs(2), fresh()).await;
        assert_eq!((r.outcome, r.status), (Outcome::Error, None));
        assert!(r.error.is_some());
    }
}
