//! Routing samples through a configuration with one position left free: what both the
//! published onepass search and our coordinate search evaluate a position's choices with.

use crate::eval::Config;
use crate::objective::Normalization;
use crate::records::Records;

/// Reusable per-sample buffers of [`route`], so searches do not allocate per step.
pub(crate) struct Workspace {
    /// Whether each sample reaches the free position.
    pub reach: Vec<bool>,
    /// The samples that do, in order.
    pub reach_idx: Vec<u32>,
    /// For those: correct if they do not leave at the free position.
    pub cont_correct: Vec<u8>,
    /// For those: MACs if they do not leave there (its own exit's MACs not counted).
    pub cont_cost: Vec<f64>,
}

impl Workspace {
    pub(crate) fn new(n: usize) -> Self {
        Workspace {
            reach: vec![false; n],
            reach_idx: Vec::with_capacity(n),
            cont_correct: vec![0; n],
            cont_cost: vec![0.0; n],
        }
    }
}

/// One enabled exit of the fixed part of the config, flattened.
struct Fixed<'a> {
    conf: &'a [f32],
    correct: &'a [u8],
    theta: f32,
    cost: f64,
}

/// Totals of routing every sample through all positions but `p` (whose slot is ignored).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Routed {
    /// Correct predictions with `p` set to "none".
    pub none_correct: i64,
    /// Total MACs with `p` set to "none".
    pub none_macs: f64,
    /// Samples that reach `p` (listed in `Workspace::reach_idx`).
    pub reaching: usize,
    /// MACs of leaving at `p`, without `p`'s own exit MACs.
    pub leave_cost: f64,
}

/// Routes every sample through the config with position `p` left free, in O(N · enabled).
///
/// Fills `ws` with which samples reach `p` and, for those, what happens to them if they do not
/// leave at `p` (correctness and MACs, not counting `p`'s own exit MACs).
pub(crate) fn route(records: &Records, config: &Config, p: usize, ws: &mut Workspace) -> Routed {
    let n = records.n_samples();
    let cum = records.cum_macs();
    // Enabled exits before p (cost includes their own and earlier exits' MACs) and after p
    // (cost excludes p's exit MACs, which are added per type by the callers).
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut paid = 0.0;
    let mut prefix = 0.0;
    // Per-call shares of the other enabled exits: paid for every sample whatever p does.
    let mut calls = 0.0;
    for (q, slot) in config.exits.iter().enumerate() {
        if q == p {
            prefix = paid;
            continue;
        }
        if let Some((t, theta)) = *slot {
            let exit = records.exit(q, t);
            paid += exit.macs;
            calls += exit.call_macs;
            let fixed = Fixed {
                conf: &exit.conf[..n],
                correct: &records.correct(q, t)[..n],
                theta,
                cost: cum[q] + paid,
            };
            if q < p {
                before.push(fixed);
            } else {
                after.push(fixed);
            }
        }
    }
    let final_cost = records.full_macs() + paid;
    let final_correct = &records.final_correct()[..n];

    let mut base_correct = 0u64;
    let mut base_macs = 0.0;
    let mut cont_correct_total = 0u64;
    let mut cont_cost_total = 0.0;
    ws.reach_idx.clear();
    let reach = &mut ws.reach[..n];
    let cont_correct = &mut ws.cont_correct[..n];
    let cont_cost = &mut ws.cont_cost[..n];
    for i in 0..n {
        if let Some(s) = before.iter().find(|s| s.conf[i] >= s.theta) {
            base_correct += u64::from(s.correct[i]);
            base_macs += s.cost;
            reach[i] = false;
            continue;
        }
        reach[i] = true;
        ws.reach_idx.push(i as u32);
        let (c, m) = match after.iter().find(|s| s.conf[i] >= s.theta) {
            Some(s) => (s.correct[i], s.cost),
            None => (final_correct[i], final_cost),
        };
        cont_correct[i] = c;
        cont_cost[i] = m;
        cont_correct_total += u64::from(c);
        cont_cost_total += m;
    }
    Routed {
        none_correct: (base_correct + cont_correct_total) as i64,
        none_macs: base_macs + cont_cost_total + calls * n as f64,
        reaching: ws.reach_idx.len(),
        // Leaving at p costs the backbone to p plus earlier exits (p's own MACs added later).
        leave_cost: cum[p] + prefix,
    }
}

/// Objective of the routed config with position `p` set to `choice`, in O(reaching samples).
///
/// Equal to evaluating the full config (up to summation order), and deterministic for a given
/// set of samples leaving at `p`, so plateaus of J(θ) stay exactly flat for Brent.
#[allow(clippy::too_many_arguments)]
pub(crate) fn routed_objective(
    records: &Records,
    norm: &Normalization,
    lambda: f64,
    routed: &Routed,
    ws: &Workspace,
    p: usize,
    choice: Option<(usize, f32)>,
) -> f64 {
    let n = records.n_samples() as f64;
    let (mut correct, mut macs) = (routed.none_correct, routed.none_macs);
    if let Some((t, theta)) = choice {
        let exit = records.exit(p, t);
        let right = records.correct(p, t);
        macs += routed.reaching as f64 * exit.macs + n * exit.call_macs;
        let (mut d_correct, mut d_macs) = (0i64, 0.0);
        for &idx in &ws.reach_idx {
            let i = idx as usize;
            if exit.conf[i] >= theta {
                d_correct += i64::from(right[i]) - i64::from(ws.cont_correct[i]);
                d_macs += routed.leave_cost - ws.cont_cost[i];
            }
        }
        correct += d_correct;
        macs += d_macs;
    }
    norm.objective(lambda, correct as f64 / n, macs / n)
}
