//! The text of `REPORT.md`.

use std::fmt::Write as _;

use super::analysis::Row;

use super::report_input::Input;

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

/// Why targets may be out of reach, computed from the setup rather than asserted: what the
/// burst asks of the cheapest config, and what serving the burst cheaply costs in accuracy.
fn context(input: &Input, rows: &[Row]) -> String {
    let sc = input.scenario;
    let table = &input.bundle.configs;
    let mut s = String::new();
    let run = input.runs.iter().find(|r| r.key == "cheapest");
    let cheapest = run.and_then(|r| table.configs.iter().find(|c| c.id == r.initial));
    let full = table.full();
    let peak = sc.peak * input.capacity.full;
    let target = input.policy.spec.control.target_utilization;
    if let Some(c) = input.capacity.cheapest {
        let _ = writeln!(
            s,
            "- The burst offers {peak:.0} req/s; the cheapest allowed config serves {c:.0} req/s through HTTP here \
             ({:.2}× the full model's {:.0}; `configs.json` predicts {:.2}× from compute alone), so the burst keeps \
             even the cheapest config {:.0}% busy, against a target utilisation of {:.0}%. Where that is near or \
             over 100%, the backlog built before the switch drains slowly or not at all, and no controller can \
             hold the latency target.",
            c / input.capacity.full,
            input.capacity.full,
            cheapest.and_then(|c| c.latency_ratio).map_or(f64::NAN, |r| 1.0 / r),
            100.0 * peak / c,
            100.0 * target,
        );
    }
    let served: Vec<String> =
        rows.iter().map(|r| format!("{:.0} req/s ({})", r.burst_ok_per_second, r.name)).collect();
    let _ = writeln!(
        s,
        "- During the burst the runs answered {}. The closed-loop probe overstates what the machine serves under \
         an open-loop overload: refused requests are still received and parsed, more connections are open, and \
         the load generator's own work grows with the offered rate, all on the same cores.",
        served.join(", ")
    );
    if let Some(d) = rows.last() {
        let n = d.windows;
        let step = sc.burst.0.floor() as u64;
        let rest = d.missed.iter().filter(|&&k| k != step).count();
        let _ = writeln!(
            s,
            "- Over {n} one-second windows, 99% attainment allows {} missed window(s). The full model falls behind \
             from the first millisecond of the step, and once about {:.0} ms of backlog has built (the target) every \
             request is late until the switch and the drain, so the window the step lands in misses unless the \
             switch comes within tens of milliseconds; the controller ticks every {:.0} ms. Without that window \
             dyce missed {rest} of {}.",
            (n as f64 * 0.01).floor(),
            input.policy.spec.objective.latency.threshold.secs() * 1e3,
            input.policy.spec.control.interval.secs() * 1e3,
            n.saturating_sub(1),
        );
    }
    let reaction = rows.last().and_then(|r| r.reaction.as_ref()).and_then(|r| r.decided_s);
    if let (Some(r), Some(c)) = (reaction, input.capacity.cheapest) {
        let backlog = (peak - input.capacity.full).max(0.0) * r;
        let drain = if c > peak {
            format!(
                "drains in about {:.1} s at the cheapest config's spare {:.0} req/s",
                backlog / (c - peak),
                c - peak
            )
        } else {
            "does not drain while the burst lasts".into()
        };
        let _ = writeln!(
            s,
            "- Until the switch, {r:.2} s into the burst, the full model falls behind by about {backlog:.0} requests \
             (the queue holds {}); that backlog {drain}. Every window it spans misses a p99 target of {:.0} ms.",
            input.serve.max_queued,
            input.policy.spec.objective.latency.threshold.secs() * 1e3,
        );
    }
    let _ = writeln!(
        s,
        "- At {:.1}× the full model's capacity the controller needs a config costing at most {target} / {:.1} = {:.2} of \
         the full model to stay under its target utilisation; the cheapest allowed config costs {}.",
        sc.peak,
        sc.peak,
        target / sc.peak,
        cheapest.and_then(|c| c.latency_ratio.or(c.macs_ratio)).map_or("-".into(), |r| format!("{r:.2}")),
    );
    let (len, rest) = (sc.burst.1 - sc.burst.0, sc.duration - (sc.burst.1 - sc.burst.0));
    let share = sc.peak * len / (sc.peak * len + sc.base * rest);
    if let (Some(c), Some(f)) =
        (cheapest.and_then(|c| c.expected_accuracy), full.and_then(|f| f.expected_accuracy))
    {
        let _ = writeln!(
            s,
            "- {} of the run's requests fall in the burst. Serving them on the cheapest config (expected accuracy \
             {}, the full model {}) costs {:.1} points of accuracy over the run; the 1-point target allows \
             configs averaging at most {:.1} points below the full model during the burst.",
            pct(share),
            pct(c),
            pct(f),
            100.0 * share * (f - c),
            1.0 / share,
        );
    }
    s
}

/// `2, 3, 5-9`: consecutive seconds as ranges.
/// Where the cores went during the burst, run by run: the budget a burst needs, measured.
fn cpu_table(input: &Input) -> String {
    if input.runs.iter().all(|r| r.cpu_burst.is_none()) {
        return String::new();
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = format!(
        "\nCores busy during the burst (CPU seconds per second, of {cpus}; from `/proc/self/task` by thread):\n\n\
         | run | load generator | HTTP server and controller | model | other | total |\n|---|---|---|---|---|---|\n"
    );
    for r in input.runs {
        if let Some(c) = r.cpu_burst {
            let _ = writeln!(
                s,
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                r.name,
                c.load,
                c.server,
                c.model,
                c.other,
                c.total()
            );
        }
    }
    s
}

fn ranges(seconds: &[u64]) -> String {
    let mut parts: Vec<(u64, u64)> = Vec::new();
    for &k in seconds {
        match parts.last_mut() {
            Some(last) if last.1 + 1 == k => last.1 = k,
            _ => parts.push((k, k)),
        }
    }
    if parts.is_empty() {
        return "none".into();
    }
    let text: Vec<String> =
        parts.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    text.join(", ")
}

/// The whole `REPORT.md`.
pub fn markdown(input: &Input, headline: &str, checks: &str, rows: &[Row]) -> String {
    let sc = input.scenario;
    let spec = &input.policy.spec;
    let cap = &input.capacity;
    let mut s = String::from("# dyce demo: proof under load\n\n");
    let _ = writeln!(
        s,
        "Model `{}` ({} configs), policy `{}`: p{:.0} latency ≤ {:.0} ms, expected accuracy {}. One process on {} CPUs \
         runs the runtime, the controller and the load generator; they share the cores.\n",
        input.bundle.manifest.name,
        input.bundle.configs.configs.len(),
        input.policy.metadata.name,
        spec.objective.latency.quantile * 100.0,
        spec.objective.latency.threshold.secs() * 1e3,
        spec.accuracy_limits(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    s.push_str("## Setup\n\n");
    match cap.probes {
        Some((a, b)) => {
            let _ = writeln!(
                s,
                "- Capacity through HTTP (closed loop, 64 requests outstanding, {:.1} s each after a warm-up): full \
                 model **{:.0} req/s**, cheapest allowed config {:.0} req/s ({} / {} non-200 answers).",
                a.seconds, a.ok_per_second, b.ok_per_second, a.not_ok, b.not_ok
            );
        }
        None => {
            let _ =
                writeln!(s, "- Capacity given with `--capacity`: {:.0} req/s on the full model.", cap.full);
        }
    }
    let _ = writeln!(
        s,
        "- Trace, the same seeded Poisson arrivals and image order in every run: {:.0} req/s ({}× capacity), \
         {:.0} req/s ({}×) from {:.1} s to {:.1} s, {:.0} s per run, one image per request, timeout {} s.",
        sc.base * cap.full,
        sc.base,
        sc.peak * cap.full,
        sc.peak,
        sc.burst.0,
        sc.burst.1,
        sc.duration,
        sc.timeout
    );
    let _ =
        writeln!(s, "- {}", sc.peak_choice.describe(sc.peak, input.policy.spec.control.target_utilization));
    s.push_str("- Runs, each on a fresh runtime: ");
    let names: Vec<&str> = input.runs.iter().map(|r| r.name.as_str()).collect();
    let _ =
        writeln!(s, "{} (the last with the controller on, starting on the full model).\n", names.join(", "));
    s.push_str("## Headline\n\n");
    s.push_str(headline);
    let _ = writeln!(
        s,
        "\nSLO attainment: share of 1-s windows (by scheduled send time) whose p99 is within {:.0} ms, every shed, \
         failed or timed-out request counting as infinitely late. Goodput: answers within the target per second \
         of schedule. Real accuracy: answered images predicted correctly. MACs saved: from each answer's config and \
         exit position with the manifest's cumulative MACs. Reaction: burst start to the controller's first degrade \
         decision / to the runtime's `GET /v1/config` showing a cheaper config (polled every 20 ms).\n",
        spec.objective.latency.threshold.secs() * 1e3
    );
    s.push_str("Windows that missed the target (start second):\n\n");
    for r in rows {
        let _ = writeln!(s, "- {}: {}", r.name, ranges(&r.missed));
    }
    s.push_str("\n## Acceptance targets\n\n");
    s.push_str(checks);
    s.push('\n');
    s.push_str(&context(input, rows));
    s.push_str(&cpu_table(input));
    s.push_str("\n## Timeline\n\n![per-second timeline of the three runs](timeline.svg)\n\n");
    s.push_str(
        "## Controller decisions (dyce run)\n\n| t (s) | direction | config | reason |\n|---|---|---|---|\n",
    );
    let dyce = &input.runs[input.runs.len() - 1];
    for c in &dyce.changes {
        let sat = if c.saturated { " (saturated)" } else { "" };
        let _ = writeln!(s, "| {:.2} | {} | {} | {}{sat} |", c.t, c.direction, c.config, c.reason);
    }
    let sim = input.sim;
    let _ = writeln!(
        s,
        "\n## Simulation: replica autoscaling with and without dyce\n\n{:.0} s of a bursty trace (±10 % noise) on \
         simulated replicas of {:.0} img/s each (the capacity measured above), scaled by an HPA-like autoscaler: \
         15 s sync, 30 s pod start, `desiredReplicas = ceil(current × utilisation / target)`, tolerance 0.1, \
         scale-up at most max(2×, +4) per sync, 300 s scale-down stabilisation. Utilisation is a replica's work \
         at full-batch cost over the period. With dyce, the same policy's law steers every replica's config.\n",
        sim.seconds, sim.replica_capacity
    );
    s.push_str(
        "| setup | SLO attainment | replica-seconds | mean replicas | peak | expected accuracy | shed |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|\n");
    for r in &sim.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.2} | {} | {} | {} |",
            r.name,
            pct(r.attainment),
            r.replica_seconds,
            r.mean_replicas,
            r.peak_replicas,
            r.expected_accuracy.map_or("-".into(), pct),
            pct(r.shed_share)
        );
    }
    let _ = writeln!(
        s,
        "\ndyce keeps every replica at or under its own target utilisation ({:.0}%) by degrading, so an autoscaler \
         whose target is near that sees little reason to add replicas during a burst: the burst is then paid in \
         accuracy instead of replica-seconds. A lower autoscaler target buys the accuracy back with replicas.",
        100.0 * spec.control.target_utilization
    );
    s.push_str("\n![simulated replicas](autoscaling.svg)\n\n## Files\n\n");
    s.push_str("- `report.json`: everything above, with per-second windows, polled configs and decisions of every run\n");
    s.push_str("- `timeline.svg`, `autoscaling.svg`: the plots\n");
    for r in input.runs {
        let _ = writeln!(
            s,
            "- `requests-{}.csv`: every request of the {} run (`dyce load --log` format)",
            r.key, r.name
        );
    }
    s
}
