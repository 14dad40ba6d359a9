//! One request's fate, and the per-request log file (JSON lines or CSV).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde_json::json;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// 200 with predictions.
    Ok,
    /// Refused by the server's admission control (429) or while shutting down (503).
    Shed,
    /// Any other status, a transport failure or an answer that is not the protocol's.
    Error,
    /// No complete answer within `--timeout`.
    Timeout,
    /// Never sent: `--max-in-flight` requests were already outstanding.
    Dropped,
}

impl Outcome {
    /// The name used in the log and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Shed => "shed",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Dropped => "dropped",
        }
    }
}

/// Everything known about one scheduled request. Times are seconds from the start of the run.
#[derive(Debug, Clone)]
pub struct Record {
    /// Position in the schedule, from 0.
    pub seq: u64,
    /// When the schedule said to send it.
    pub scheduled_s: f64,
    /// When it was actually handed to the HTTP client (`None`: dropped).
    pub sent_s: Option<f64>,
    /// Send to complete answer, for every answer with a status (ok, shed, errors with one).
    pub latency_s: Option<f64>,
    /// HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// How it ended.
    pub outcome: Outcome,
    /// Configuration that answered (ok only).
    pub config_id: Option<String>,
    /// Its generation.
    pub generation: Option<u64>,
    /// True labels of the images sent, in request order.
    pub labels: Vec<u32>,
    /// Predicted labels (ok only).
    pub predicted: Vec<i64>,
    /// Exit position of each image, −1 for the original head (ok only).
    pub exits: Vec<i32>,
    /// What went wrong (error and timeout only).
    pub error: Option<String>,
    /// The answer's id for `POST /v1/feedback` (ok only, when the runtime takes feedback).
    pub answer_id: Option<String>,
    /// Status of the feedback posted for this answer (`--feedback`), when one was posted.
    pub feedback_status: Option<u16>,
}

impl Record {
    /// A request not sent yet: it counts as dropped until an answer says otherwise.
    pub fn pending(seq: u64, scheduled_s: f64, labels: Vec<u32>) -> Self {
        Self {
            seq,
            scheduled_s,
            sent_s: None,
            latency_s: None,
            status: None,
            outcome: Outcome::Dropped,
            config_id: None,
            generation: None,
            labels,
            predicted: vec![],
            exits: vec![],
            error: None,
            answer_id: None,
            feedback_status: None,
        }
    }

    /// Images predicted correctly (0 unless ok).
    pub fn correct(&self) -> usize {
        self.labels.iter().zip(&self.predicted).filter(|(l, p)| i64::from(**l) == **p).count()
    }

    /// Actual minus scheduled send time; the generator's own delay.
    pub fn lag_s(&self) -> Option<f64> {
        self.sent_s.map(|s| s - self.scheduled_s)
    }
}

/// Format of `--log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated with a header; multi-image fields joined by `;`.
    Csv,
}

impl LogFormat {
    /// `.csv` files get CSV, everything else JSON lines.
    pub fn for_path(path: &Path) -> LogFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => LogFormat::Csv,
            _ => LogFormat::Jsonl,
        }
    }
}

const CSV_HEADER: &str = "seq,scheduled_s,sent_s,latency_s,status,outcome,config_id,generation,images,\
label,predicted,exit_position,correct,error";

/// Writes one line per scheduled request as its outcome becomes known (completion order).
pub struct LogWriter {
    out: BufWriter<File>,
    format: LogFormat,
    path: PathBuf,
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn joined<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(";")
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl LogWriter {
    /// Creates (truncates) `path`; the format is `format` or guessed from the extension.
    pub fn create(path: &Path, format: Option<LogFormat>) -> Result<LogWriter> {
        let file = File::create(path).with_context(|| format!("creating log {}", path.display()))?;
        let mut w = LogWriter {
            out: BufWriter::new(file),
            format: format.unwrap_or_else(|| LogFormat::for_path(path)),
            path: path.into(),
        };
        if w.format == LogFormat::Csv {
            writeln!(w.out, "{CSV_HEADER}").with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(w)
    }

    /// Appends `r`.
    pub fn write(&mut self, r: &Record) -> Result<()> {
        let ok = r.outcome == Outcome::Ok;
        let line = match self.format {
            LogFormat::Jsonl => json!({
                "seq": r.seq,
                "scheduled_s": r.scheduled_s,
                "sent_s": r.sent_s,
                "latency_s": r.latency_s,
                "status": r.status,
                "outcome": r.outcome.as_str(),
                "config_id": r.config_id,
                "generation": r.generation,
                "images": r.labels.len(),
                "label": r.labels,
                "predicted": r.predicted,
                "exit_position": r.exits,
                "correct": ok.then(|| r.correct()),
                "error": r.error,
            })
            .to_string(),
            LogFormat::Csv => {
                let mut s = String::new();
                let _ = write!(
                    s,
                    "{},{:.6},{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.seq,
                    r.scheduled_s,
                    opt(r.sent_s.map(|t| format!("{t:.6}"))),
                    opt(r.latency_s.map(|t| format!("{t:.6}"))),
                    opt(r.status),
                    r.outcome.as_str(),
                    csv_field(r.config_id.as_deref().unwrap_or("")),
                    opt(r.generation),
                    r.labels.len(),
                    joined(&r.labels),
                    joined(&r.predicted),
                    joined(&r.exits),
                    opt(ok.then(|| r.correct())),
                    csv_field(r.error.as_deref().unwrap_or("")),
                );
                s
            }
        };
        writeln!(self.out, "{line}").with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flushes the file.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome) -> Record {
        Record {
            seq: 3,
            scheduled_s: 0.25,
            sent_s: Some(0.2501),
            latency_s: Some(0.004),
            status: Some(200),
            outcome,
            config_id: Some("c1".into()),
            generation: Some(2),
            labels: vec![7, 1],
            predicted: vec![7, 2],
            exits: vec![0, -1],
            error: None,
            answer_id: None,
            feedback_status: None,
        }
    }

    #[test]
    fn writes_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let (j, c) = (dir.path().join("log.jsonl"), dir.path().join("log.csv"));
        for path in [&j, &c] {
            let mut w = LogWriter::create(path, None).unwrap();
            w.write(&record(Outcome::Ok)).unwrap();
            w.write(&Record { error: Some("a, \"b\"".into()), ..record(Outcome::Error) }).unwrap();
            w.finish().unwrap();
        }
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&j).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["correct"], 1);
        assert_eq!(lines[0]["exit_position"], json!([0, -1]));
        assert_eq!(lines[1]["outcome"], "error");
        assert!(lines[1]["correct"].is_null());
        let csv = std::fs::read_to_string(&c).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], CSV_HEADER);
        assert_eq!(rows[1], "3,0.250000,0.250100,0.004000,200,ok,c1,2,2,7;1,7;2,0;-1,1,");
        assert!(rows[2].ends_with(",\"a, \"\"b\"\"\""), "{}", rows[2]);
    }
}
