//! Exit heads → records of the calibration and test splits, and the choice among exit-training
//! recipes by the front each one's heads give on the calibration split.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use candle_core::Tensor;
use dyce_api::ConfigTable;
use dyce_search::{coordinate_search, evaluate, Records};
use serde::{Deserialize, Serialize};

use crate::cache::CachedFeatures;
use crate::error::CalibrateError;
use crate::exit_cost::ExitCostModel;
use crate::exit_train::{train_exits, ExitTrainConfig, Recipe, TrainingFeatures};
use crate::record::{costed, head_outputs, HeadOutputs, RecordContext};
use dyce_runtime::model::macs::exit_macs;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Backbone, Bundle, ExitType, Manifest};

/// Records of both splits, in true MACs and, when exits are charged more, in charged cost.
pub struct Recorded {
    /// Calibration split, true MACs.
    pub cal: Records,
    /// Test split, true MACs.
    pub test: Records,
    /// Both splits in charged cost, when some exit type is charged other than 1.
    pub costed: Option<(Records, Records)>,
}

impl Recorded {
    /// What the search minimises: the charged records if any, else the true ones.
    pub fn search_cost(&self) -> &Records {
        self.costed.as_ref().map_or(&self.cal, |(c, _)| c)
    }
}

/// What turns a set of exit heads into records.
pub struct Recorder<'a> {
    /// The bundle's manifest (exits listed, MACs filled in by loading).
    pub manifest: &'a Manifest,
    /// Backbone tensors.
    pub backbone: &'a HashMap<String, Tensor>,
    /// The backbone, for channel counts.
    pub net: &'a Backbone,
    /// Calibration and test features.
    pub feats: [&'a CachedFeatures; 2],
    /// Calibration and test labels.
    pub labels: [&'a [u32]; 2],
    /// Exit types, in the order records index them.
    pub types: &'a [ExitType],
    /// Classes.
    pub classes: usize,
    /// Search cost per exit MAC by type (`--exit-cost`).
    pub exit_cost: &'a BTreeMap<String, f64>,
    /// Measured per-call and per-row costs, charged when no factor is given.
    pub model: Option<&'a ExitCostModel>,
}

impl Recorder<'_> {
    /// The records of both splits under `exits` (tensors `exits.*`).
    pub fn record(&self, exits: &HashMap<String, Tensor>) -> Result<Recorded, CalibrateError> {
        let mut tensors = self.backbone.clone();
        tensors.extend(exits.iter().map(|(k, v)| (k.clone(), v.clone())));
        let draft = Bundle::from_parts(
            self.manifest.clone(),
            &TensorStore::new(tensors),
            ConfigTable::full_only(&self.manifest.name),
        )?;
        let outs: Vec<HeadOutputs> = self
            .feats
            .iter()
            .map(|f| head_outputs(f, &draft.exits, self.types, self.classes))
            .collect::<Result<_, _>>()?;
        let (net, classes) = (self.net, self.classes);
        let em = |p: usize, t: &ExitType| exit_macs(t, net.channels_at(p), classes);
        let ctx = RecordContext { types: self.types, macs: &draft.macs, exit_macs: &em, call_macs: None };
        let cal = costed(&outs[0], self.labels[0], &ctx)?;
        let test = costed(&outs[1], self.labels[1], &ctx)?;
        // The search sees costs (head MACs weighted by `exit_cost`); everything reported is
        // re-evaluated on the true MACs.
        let weight = |t: &ExitType| self.exit_cost.get(&t.to_string()).copied().unwrap_or(1.0);
        let factors = self.exit_cost.values().any(|&f| f != 1.0);
        let model = self.model.filter(|_| !factors);
        let ec = |p: usize, t: &ExitType| {
            let macs = exit_macs(t, net.channels_at(p), classes) as f64;
            let charged = model.and_then(|m| m.row_macs(p, t)).unwrap_or(macs * weight(t));
            charged.round() as u64
        };
        let calls = |p: usize, t: &ExitType| model.map_or(0.0, |m| m.call_macs(p, t));
        // Without a factor other than 1 or a model the charged cost is the MACs: no second
        // recording.
        let costed_records = if factors || model.is_some() {
            let ctx = RecordContext { exit_macs: &ec, call_macs: Some(&calls), ..ctx };
            Some((costed(&outs[0], self.labels[0], &ctx)?, costed(&outs[1], self.labels[1], &ctx)?))
        } else {
            None
        };
        Ok(Recorded { cal, test, costed: costed_records })
    }
}

/// The accuracy drops (fractions) a recipe's front is scored at, in order of importance.
pub const SCORED_DROPS: [f64; 4] = [0.005, 0.01, 0.0, 0.02];

/// How one recipe's heads did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecipeResult {
    /// The recipe, as written on the command line.
    pub recipe: String,
    /// Whether its heads were shipped.
    pub chosen: bool,
    /// MACs saved by the cheapest configuration of the search's front within each drop of the
    /// full model, on the calibration split (what the choice reads), keyed by drop in points.
    pub calibration_saved: BTreeMap<String, f64>,
    /// The same configurations measured on the test split (for reading only).
    pub test_saved: BTreeMap<String, f64>,
    /// Training time.
    pub seconds: f64,
}

fn drop_key(d: f64) -> String {
    format!("{:.1}", d * 100.0)
}

/// Scores the search's front of `rec` at every scored drop: MACs saved on calibration and, for
/// the same configurations, on test.
fn score(rec: &Recorded) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    // Each front configuration measured once on the true-MACs records, then read per drop.
    let front: Vec<_> = coordinate_search(rec.search_cost(), &Default::default())
        .into_iter()
        .map(|c| {
            let o = evaluate(&rec.cal, &c.config);
            (c, o)
        })
        .collect();
    let full = rec.cal.full_accuracy();
    let (mut cal, mut test) = (BTreeMap::new(), BTreeMap::new());
    for d in SCORED_DROPS {
        let best = front
            .iter()
            .filter(|(_, o)| o.accuracy >= full - d - 1e-12)
            .min_by(|a, b| a.1.mean_macs.total_cmp(&b.1.mean_macs));
        if let Some((c, o)) = best {
            cal.insert(drop_key(d), 1.0 - o.mean_macs / rec.cal.full_macs());
            test.insert(drop_key(d), 1.0 - evaluate(&rec.test, &c.config).mean_macs / rec.test.full_macs());
        }
    }
    (cal, test)
}

/// Lexicographic on the scored drops, in order: more MACs saved wins.
fn better(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> bool {
    for d in SCORED_DROPS {
        let (x, y) =
            (a.get(&drop_key(d)).copied().unwrap_or(0.0), b.get(&drop_key(d)).copied().unwrap_or(0.0));
        if (x - y).abs() > 1e-9 {
            return x > y;
        }
    }
    false
}

/// What recipe training needs besides the recorder.
pub struct Training<'a> {
    /// Training-split features (with the teacher's logits when a recipe needs them).
    pub feats: TrainingFeatures<'a>,
    /// Training-split labels.
    pub labels: &'a [u32],
    /// Settings; `recipe` is replaced by each candidate in turn.
    pub cfg: &'a ExitTrainConfig,
}

/// The recipe whose heads ship.
pub struct Chosen {
    /// Its heads (`exits.*` tensors).
    pub heads: HashMap<String, Tensor>,
    /// Their records.
    pub records: Recorded,
    /// The recipe.
    pub recipe: Recipe,
    /// Every recipe's result, this one marked.
    pub results: Vec<RecipeResult>,
}

/// Trains heads with every recipe and keeps the best by the calibration front.
pub fn train_and_choose(
    t: &Training,
    recipes: &[Recipe],
    recorder: &Recorder,
    on_epoch: &mut dyn FnMut(&Recipe, usize, usize, f64),
) -> Result<Chosen, CalibrateError> {
    let mut best: Option<(Chosen, BTreeMap<String, f64>)> = None;
    let mut results = Vec::new();
    for r in recipes {
        let cfg = ExitTrainConfig { recipe: r.clone(), ..t.cfg.clone() };
        let start = Instant::now();
        let heads =
            train_exits(&t.feats, t.labels, recorder.classes, &cfg, &mut |p, e, l| on_epoch(r, p, e, l))?;
        let seconds = start.elapsed().as_secs_f64();
        let records = recorder.record(&heads)?;
        let (cal, test) = score(&records);
        tracing::info!(recipe = %r, ?cal, seconds, "exit recipe scored on the calibration split");
        results.push(RecipeResult {
            recipe: r.to_string(),
            chosen: false,
            calibration_saved: cal.clone(),
            test_saved: test,
            seconds,
        });
        if best.as_ref().is_none_or(|b| better(&cal, &b.1)) {
            best = Some((Chosen { heads, records, recipe: r.clone(), results: vec![] }, cal));
        }
    }
    let (mut chosen, _) = best.ok_or_else(|| CalibrateError::Invalid("no exit recipe to train".into()))?;
    for res in &mut results {
        res.chosen = res.recipe == chosen.recipe.to_string();
    }
    chosen.results = results;
    Ok(chosen)
}
