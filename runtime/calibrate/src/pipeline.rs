//! `dyce calibrate`: frozen backbone → pooled features → exit heads → records → search →
//! configuration table → bundle and report.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use dyce_api::{ConfigEntry, ConfigTable, ExitChoice, FULL_CONFIG_ID};
use dyce_search::{
    coordinate_search, evaluate, onepass, select_table, uniform_threshold, Candidate, Config, Records,
};
use serde::{Deserialize, Serialize};

use super::exit_train::{train_exits, ExitTrainConfig};
use super::features::{extract, Features};
use super::record::record;
use crate::error::CalibrateError;
use dyce_data::augment;
use dyce_data::fashion_mnist::{Images, Splits, LABELS};
use dyce_runtime::engine::{default_pool, FastBackend};
use dyce_runtime::model::bundle::{ExitInfo, FORMAT};
use dyce_runtime::model::macs::exit_macs;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{BackboneSpec, Bundle, ExitType, InputSpec, Manifest, ResNet};

/// Settings of a calibration run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrateConfig {
    /// Model name written into the bundle.
    pub name: String,
    /// Exit training.
    pub exits: ExitTrainConfig,
    /// Use at most this many images of each split (smoke tests); `None` = all.
    pub limit: Option<usize>,
    /// Shipped configs are at most this much less accurate than the full model (calibration split).
    pub max_accuracy_drop: f64,
    /// Fewest configurations to ship.
    pub k_min: usize,
    /// Most configurations to ship.
    pub k_max: usize,
    /// What the search charges per MAC of each exit type, relative to a backbone MAC (types not
    /// named cost 1). Exit heads are small matrix products whose weights leave the cache between
    /// calls, so on real hardware a head MAC can cost twice a convolution MAC; charging that
    /// lets the search prefer configurations that are cheap in time, not only in MACs. Reported
    /// MACs ratios stay true MACs.
    #[serde(default)]
    pub exit_cost: BTreeMap<String, f64>,
    /// Reuse the exit heads of this bundle (`weights.safetensors`) instead of training new ones.
    #[serde(default)]
    pub exits_from: Option<std::path::PathBuf>,
}

/// One configuration of a front, measured on both splits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrontPoint {
    /// Accuracy on the calibration split (what the search saw).
    pub calibration_accuracy: f64,
    /// MACs relative to the full model on the calibration split.
    pub calibration_macs_ratio: f64,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// MACs relative to the full model on the test split.
    pub test_macs_ratio: f64,
    /// What the search charged (exit MACs times `exit_cost`), relative to the full model, on
    /// each split; absent when every exit cost 1 (then it equals the MACs ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_ratios: Option<CostRatios>,
    /// The configuration (per position: type index and threshold).
    pub config: Config,
}

/// Charged cost relative to the full model's, per split.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CostRatios {
    /// On the calibration split (what the search minimised).
    pub calibration: f64,
    /// On the test split.
    pub test: f64,
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationReport {
    /// Settings.
    pub config: CalibrateConfig,
    /// Exit types, in the order configs index them.
    pub types: Vec<String>,
    /// Samples per split actually used.
    pub sizes: BTreeMap<String, usize>,
    /// Full model accuracy on calibration and test.
    pub full_accuracy: BTreeMap<String, f64>,
    /// Fronts by method (`ours`, `onepass`, `uniform`, and `single` for single-exit configs).
    pub fronts: BTreeMap<String, Vec<FrontPoint>>,
    /// The shipped table, in order.
    pub shipped: Vec<FrontPoint>,
    /// Seconds taken by each step.
    pub seconds: BTreeMap<String, f64>,
}

impl CalibrationReport {
    /// Largest test MACs reduction among a front's configs that lose at most `drop` test accuracy.
    pub fn macs_saved_at(&self, method: &str, drop: f64) -> Option<f64> {
        let full = self.full_accuracy.get("test")?;
        self.fronts
            .get(method)?
            .iter()
            .filter(|p| p.test_accuracy >= full - drop - 1e-12)
            .map(|p| 1.0 - p.test_macs_ratio)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    }
}

fn limited(set: &Images, limit: Option<usize>) -> Images {
    limit.map_or_else(|| set.clone(), |n| set.take(n))
}

/// Records of both splits, in true MACs and, when exits are charged more, in charged cost.
struct Split<'a> {
    cal: &'a Records,
    test: &'a Records,
    cost: Option<(&'a Records, &'a Records)>,
}

fn point(r: &Split, c: &Candidate) -> FrontPoint {
    let t = evaluate(r.test, &c.config);
    let o = evaluate(r.cal, &c.config);
    let ratio = |rec: &Records| evaluate(rec, &c.config).mean_macs / rec.full_macs();
    FrontPoint {
        calibration_accuracy: o.accuracy,
        calibration_macs_ratio: o.mean_macs / r.cal.full_macs(),
        test_accuracy: t.accuracy,
        test_macs_ratio: t.mean_macs / r.test.full_macs(),
        cost_ratios: r.cost.map(|(cc, ct)| CostRatios { calibration: ratio(cc), test: ratio(ct) }),
        config: c.config.clone(),
    }
}

/// Single-exit configurations (one position, one type, a few thresholds), for the plot.
fn single_exits(cal: &Records, types: usize) -> Vec<Candidate> {
    let mut out = Vec::new();
    for p in 0..cal.n_positions() {
        for t in 0..types {
            for th in [0.5f32, 0.7, 0.8, 0.9, 0.95, 0.99] {
                let mut exits = vec![None; cal.n_positions()];
                exits[p] = Some((t, th));
                out.push(Candidate::evaluate(cal, Config { exits }));
            }
        }
    }
    out
}

/// The `exits.*` tensors of a bundle's weights.
fn pretrained_exits(dir: &Path) -> Result<HashMap<String, Tensor>, CalibrateError> {
    let path = dir.join("weights.safetensors");
    let all = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
        .map_err(|e| CalibrateError::Io { path: path.clone(), reason: e.to_string() })?;
    let exits: HashMap<String, Tensor> = all.into_iter().filter(|(k, _)| k.starts_with("exits.")).collect();
    if exits.is_empty() {
        return Err(CalibrateError::Io { path, reason: "holds no exit heads (exits.*)".into() });
    }
    Ok(exits)
}

/// Runs a calibration and writes the bundle to `out`; returns the loaded bundle and the report.
pub fn calibrate(
    spec: &BackboneSpec,
    backbone: HashMap<String, Tensor>,
    splits: &Splits,
    cfg: &CalibrateConfig,
    provenance: BTreeMap<String, serde_json::Value>,
    out: &Path,
    progress: &mut dyn FnMut(&str, usize),
) -> Result<(Bundle, CalibrationReport), CalibrateError> {
    let mut seconds = BTreeMap::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, seconds: &mut BTreeMap<String, f64>| {
        seconds.insert(name.to_string(), clock.elapsed().as_secs_f64());
        clock = Instant::now();
    };
    let net = ResNet::load(spec, &TensorStore::new(backbone.clone()))?;
    let shape = [spec.in_channels, 28, 28];
    let mut be = FastBackend::new(&net, shape, default_pool(None)?)?;
    let sets = [
        ("train", limited(&splits.train, cfg.limit)),
        ("calibration", limited(&splits.calibration, cfg.limit)),
        ("test", limited(&splits.test, cfg.limit)),
    ];
    let mut feats: Vec<Features> = Vec::new();
    for (i, (name, set)) in sets.iter().enumerate() {
        // The training split only feeds exit training.
        let empty;
        let set = if i == 0 && cfg.exits_from.is_some() {
            empty = set.take(0);
            &empty
        } else {
            set
        };
        feats.push(extract(&net, &mut be, set, 256, &mut |n| progress(&format!("features {name}"), n))?);
    }
    lap("features", &mut seconds);
    let classes = spec.num_classes;
    let exit_tensors = match &cfg.exits_from {
        Some(dir) => pretrained_exits(dir)?,
        None => train_exits(&feats[0], &sets[0].1.labels, classes, &cfg.exits, &mut |e, l| {
            tracing::info!(epoch = e, loss = l, "exit training");
            progress("exit epochs", 1);
        })?,
    };
    lap("exit_training", &mut seconds);

    let types: Vec<ExitType> = cfg.exits.types.iter().map(|t| t.parse()).collect::<Result<_, _>>()?;
    let positions = net.blocks.len();
    let manifest = Manifest {
        format: FORMAT,
        name: cfg.name.clone(),
        input: InputSpec {
            shape,
            mean: vec![augment::FMNIST_MEAN],
            std: vec![augment::FMNIST_STD],
            labels: LABELS.iter().map(|s| s.to_string()).collect(),
            transform: Default::default(),
        },
        backbone: spec.clone(),
        positions: vec![],
        full_macs: 0,
        exits: (0..positions)
            .flat_map(|p| {
                types.iter().map(move |t| ExitInfo { position: p, exit_type: t.to_string(), macs: 0 })
            })
            .collect(),
        provenance,
    };
    let mut tensors = backbone;
    tensors.extend(exit_tensors);
    let draft = Bundle::from_parts(
        manifest.clone(),
        &TensorStore::new(tensors.clone()),
        ConfigTable::full_only(&cfg.name),
    )?;
    let em = |p: usize, t: &ExitType| exit_macs(t, net.channels_at(p), classes);
    let cal = record(&feats[1], &sets[1].1.labels, &draft.exits, &types, &draft.macs, classes, &em)?;
    let test = record(&feats[2], &sets[2].1.labels, &draft.exits, &types, &draft.macs, classes, &em)?;
    // The search sees costs (head MACs weighted by `exit_cost`); everything reported is
    // re-evaluated on the true MACs below.
    let weight = |t: &ExitType| cfg.exit_cost.get(&t.to_string()).copied().unwrap_or(1.0);
    let ec = |p: usize, t: &ExitType| {
        (exit_macs(t, net.channels_at(p), classes) as f64 * weight(t)).round() as u64
    };
    // Without a factor other than 1 the charged cost is the MACs: no second recording.
    let charged = cfg.exit_cost.values().any(|&f| f != 1.0);
    let costed = if charged {
        Some((
            record(&feats[1], &sets[1].1.labels, &draft.exits, &types, &draft.macs, classes, &ec)?,
            record(&feats[2], &sets[2].1.labels, &draft.exits, &types, &draft.macs, classes, &ec)?,
        ))
    } else {
        None
    };
    let cost = costed.as_ref().map_or(&cal, |(c, _)| c);
    lap("recording", &mut seconds);

    let full = Candidate::evaluate(&cal, Config::none(positions));
    let full_test = evaluate(&test, &full.config);
    let ours = coordinate_search(cost, &Default::default());
    lap("search_ours", &mut seconds);
    let one = onepass(cost, &Default::default());
    lap("search_onepass", &mut seconds);
    let uni = uniform_threshold(cost, 256);
    let single = dyce_search::pareto_front(single_exits(cost, types.len()));
    let floor = full.outcome.accuracy - cfg.max_accuracy_drop;
    let shipped = select_table(cost, &ours, floor, cfg.k_min, cfg.k_max);
    lap("search_rest", &mut seconds);

    let table = ConfigTable {
        model: cfg.name.clone(),
        configs: shipped
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let t = evaluate(&test, &c.config);
                let exits: Vec<ExitChoice> = c
                    .config
                    .exits
                    .iter()
                    .enumerate()
                    .filter_map(|(p, e)| {
                        e.map(|(ti, th)| ExitChoice {
                            position: p,
                            exit_type: types[ti].to_string(),
                            threshold: th,
                        })
                    })
                    .collect();
                let id = if exits.is_empty() { FULL_CONFIG_ID.to_string() } else { format!("c{i:02}") };
                ConfigEntry {
                    id,
                    exits,
                    expected_accuracy: Some(t.accuracy),
                    macs_ratio: Some(t.mean_macs / test.full_macs()),
                    latency_ratio: None,
                }
            })
            .collect(),
    };
    let bundle = Bundle::write(out, manifest, &tensors, &table)?;
    lap("write", &mut seconds);
    let split = Split { cal: &cal, test: &test, cost: costed.as_ref().map(|(c, t)| (c, t)) };
    let pts = |v: &[Candidate]| v.iter().map(|c| point(&split, c)).collect::<Vec<_>>();
    let report = CalibrationReport {
        config: cfg.clone(),
        types: cfg.exits.types.clone(),
        sizes: sets.iter().map(|(n, s)| (n.to_string(), s.len())).collect(),
        full_accuracy: BTreeMap::from([
            ("calibration".into(), full.outcome.accuracy),
            ("test".into(), full_test.accuracy),
        ]),
        fronts: BTreeMap::from([
            ("ours".into(), pts(&ours)),
            ("onepass".into(), pts(&one)),
            ("uniform".into(), pts(&uni)),
            ("single".into(), pts(&single)),
        ]),
        shipped: pts(&shipped),
        seconds,
    };
    Ok((bundle, report))
}
