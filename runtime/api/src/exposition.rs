//! Prometheus text format 0.0.4 from prometheus-client's OpenMetrics output, for scrapers and
//! tools that ask for it (`curl`, `promtool check metrics`).
//!
//! The two formats differ in three ways that matter here: OpenMetrics names a counter family
//! without its `_total` suffix and an info family without `_info`, has an `info` type the text
//! format lacks (a gauge there), and ends with `# EOF` and `# UNIT` lines the text format does
//! not have. Samples are identical.

use std::collections::HashMap;

/// Content type of the text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics.
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus does; `curl` does not).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The content type and body to answer a scrape with: OpenMetrics when `accept` asks for it,
/// else the same metrics in text format 0.0.4.
pub fn negotiate(accept: Option<&str>, openmetrics: String) -> ([(&'static str, &'static str); 1], String) {
    if wants_openmetrics(accept) {
        ([("content-type", OPENMETRICS_FORMAT)], openmetrics)
    } else {
        ([("content-type", TEXT_FORMAT)], openmetrics_to_text(&openmetrics))
    }
}

/// Rewrites an OpenMetrics exposition as text format 0.0.4.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let types: HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = line
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or(line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        match header {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let (name, tail) = match types.get(name).copied() {
                    Some("counter") => (format!("{name}_total"), tail.to_string()),
                    Some("info") => {
                        (format!("{name}_info"), if kind == "TYPE" { "gauge".into() } else { tail.into() })
                    }
                    _ => (name.to_string(), tail.to_string()),
                };
                out.push_str(&format!("# {kind} {name} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_counters_infos_and_trailers() {
        let om = "# HELP dyce_ticks Ticks.\n# TYPE dyce_ticks counter\ndyce_ticks_total 3\n\
                  # HELP dyce_build Build.\n# TYPE dyce_build info\ndyce_build_info{version=\"1\"} 1\n\
                  # HELP dyce_lat Latency.\n# TYPE dyce_lat histogram\n# UNIT dyce_lat seconds\ndyce_lat_sum 1.0\n# EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP dyce_ticks_total Ticks.\n# TYPE dyce_ticks_total counter\ndyce_ticks_total 3\n\
             # HELP dyce_build_info Build.\n# TYPE dyce_build_info gauge\ndyce_build_info{version=\"1\"} 1\n\
             # HELP dyce_lat Latency.\n# TYPE dyce_lat histogram\ndyce_lat_sum 1.0\n"
        );
        assert!(wants_openmetrics(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")));
        assert!(!wants_openmetrics(Some("*/*")) && !wants_openmetrics(None));
    }
}
