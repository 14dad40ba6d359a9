//! `dyce calibrate`: frozen backbone → pooled features → exit heads → records → search →
//! configuration table → bundle and report.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use dyce_api::{ConfigEntry, ConfigTable, ExitChoice, FULL_CONFIG_ID};
use dyce_search::{
    coordinate_search, disagreement, evaluate, onepass, select_table, uniform_threshold, Candidate, Config,
    Records,
};

use super::exit_train::TrainingFeatures;
use crate::cache::{extract, CachedFeatures, Progress};
use crate::dataset::{Fnv, SplitData};
use crate::error::CalibrateError;
use crate::exit_cost::measure as measure_exit_costs;
pub use crate::outcome::{
    shipped_accuracy, wilson_lower, BoundSplit, CalibrateConfig, CalibrationReport, CostRatios, FrontPoint,
    BOUND_Z,
};
use crate::recipes::{train_and_choose, Chosen, RecipeResult, Recorder, Training};
use dyce_runtime::engine::{default_pool, FastBackend};
use dyce_runtime::model::bundle::{ExitInfo, FORMAT};
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Backbone, BackboneSpec, Bundle, ExitType, InputSpec, Manifest};

/// The images of a calibration and how the model takes them.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Exit training.
    pub train: SplitData,
    /// Configuration search and `expected_accuracy`.
    pub calibration: SplitData,
    /// The report only.
    pub test: SplitData,
    /// Shape, normalisation, transform and class names, as the bundle's manifest records them.
    pub input: InputSpec,
}

/// One calibration run.
pub struct Job<'a> {
    /// The backbone's architecture.
    pub spec: &'a BackboneSpec,
    /// Its tensors, torchvision names, BatchNorm unfolded.
    pub backbone: HashMap<String, Tensor>,
    /// The images.
    pub data: &'a Dataset,
    /// Settings.
    pub cfg: &'a CalibrateConfig,
    /// Written into the manifest.
    pub provenance: BTreeMap<String, serde_json::Value>,
    /// Bundle directory.
    pub out: &'a Path,
    /// Feature cache root: one sub-folder per split and inputs (model, images, transform).
    pub cache: PathBuf,
    /// Images per backbone batch.
    pub batch: usize,
}

/// Time spent measuring exit costs (split over types and row counts).
const EXIT_COST_SECONDS: f64 = 12.0;

/// A long phase's progress: its name, units done, units in all.
pub type ProgressFn<'a> = dyn FnMut(&str, usize, usize) + 'a;

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

/// The recipe comparison and chosen recipe recorded in a bundle's `calibration.json`, if any
/// (a bundle from before recipes, or without the file, has neither).
fn training_record(dir: &Path) -> (Vec<RecipeResult>, Option<crate::recipe::Recipe>) {
    let Ok(text) = std::fs::read_to_string(dir.join("calibration.json")) else { return (vec![], None) };
    match serde_json::from_str::<CalibrationReport>(&text) {
        Ok(r) if !r.recipes.is_empty() => (r.recipes, Some(r.config.exits.recipe)),
        _ => (vec![], None),
    }
}

/// The model's part of the cache keys: architecture, every weight and the input settings.
/// Hashed once per run, not per split: a ResNet-50 has 100 MB of weights.
fn model_hash(job: &Job) -> Result<Fnv, CalibrateError> {
    let mut h = Fnv::default();
    h.write(b"dyce-features-v1");
    h.write(serde_json::to_string(job.spec).expect("plain struct").as_bytes());
    h.write(format!("{:?}", job.data.input).as_bytes());
    let mut names: Vec<&String> = job.backbone.keys().collect();
    names.sort();
    for name in names {
        h.write(name.as_bytes());
        let v: Vec<f32> = job.backbone[name].flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        h.write(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    }
    Ok(h)
}

/// The cache key of one split: the model's hash extended with the split's files.
fn cache_key(model: Fnv, split: &SplitData) -> String {
    let mut h = model;
    split.fingerprint(&mut h);
    format!("{:016x}", h.0)
}

/// Writes `predictions.csv`: the full model's answer for every file of the calibration and
/// test splits, what `/v1/classify` must answer for them under the full configuration.
fn write_predictions(
    out: &Path,
    splits: &[(&str, &SplitData, &CachedFeatures)],
) -> Result<(), CalibrateError> {
    let mut text = String::from("split,file,label,predicted,confidence\n");
    for (name, split, feats) in splits {
        let (pred, conf) = feats.final_top1()?;
        for (i, label) in split.labels().iter().enumerate() {
            let Some(path) = split.path(i) else { return Ok(()) };
            let file = path.to_string_lossy().replace('"', "\"\"");
            text.push_str(&format!("{name},\"{file}\",{label},{},{:.6}\n", pred[i], conf[i]));
        }
    }
    let path = out.join("predictions.csv");
    std::fs::write(&path, text).map_err(|e| CalibrateError::Io { path, reason: e.to_string() })
}

/// Runs a calibration and writes the bundle to `job.out`; returns the loaded bundle and the
/// report.
pub fn calibrate(job: Job, progress: &mut ProgressFn) -> Result<(Bundle, CalibrationReport), CalibrateError> {
    let cfg = job.cfg;
    let mut seconds = BTreeMap::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, seconds: &mut BTreeMap<String, f64>| {
        seconds.insert(name.to_string(), clock.elapsed().as_secs_f64());
        clock = Instant::now();
    };
    let net = Backbone::load(job.spec, &TensorStore::new(job.backbone.clone()))?;
    let shape = job.data.input.shape;
    let mut be = FastBackend::new(&net, shape, default_pool(None)?)?;
    // The training split only feeds exit training, which reused exits skip.
    let train = if cfg.exits_from.is_some() {
        job.data.train.limited(Some(0))
    } else {
        job.data.train.limited(cfg.limit)
    };
    let sets = [
        ("train", train),
        ("calibration", job.data.calibration.limited(cfg.limit)),
        ("test", job.data.test.limited(cfg.limit)),
    ];
    let mut feats = Vec::new();
    let model = model_hash(&job)?;
    for (name, set) in &sets {
        let dir = job.cache.join(format!("{name}-{}", cache_key(model, set)));
        let phase = format!("features {name}");
        let (t0, mut first) = (Instant::now(), None);
        feats.push(extract(&net, &mut be, set, &dir, job.batch, &mut |p: Progress| {
            first.get_or_insert(p.done);
            progress(&phase, p.done, p.total)
        })?);
        // The rate of the images computed now, not of those found in the cache.
        let cached = first.unwrap_or(0);
        let (computed, secs) = (set.len() - cached, t0.elapsed().as_secs_f64());
        let rate = computed as f64 / secs;
        tracing::info!(split = name, computed, cached, seconds = secs, images_per_s = rate, "features");
    }
    lap("features", &mut seconds);
    let classes = job.spec.num_classes();
    let labels: Vec<Vec<u32>> = sets.iter().map(|(_, s)| s.labels()).collect();
    let types: Vec<ExitType> = cfg.exits.types.iter().map(|t| t.parse()).collect::<Result<_, _>>()?;
    let positions = net.positions();
    let manifest = Manifest {
        format: FORMAT,
        name: cfg.name.clone(),
        input: job.data.input.clone(),
        backbone: job.spec.clone(),
        positions: vec![],
        full_macs: 0,
        exits: (0..positions)
            .flat_map(|p| {
                types.iter().map(move |t| ExitInfo { position: p, exit_type: t.to_string(), macs: 0 })
            })
            .collect(),
        provenance: job.provenance.clone(),
    };
    let mut cfg = cfg.clone();
    if cfg.measure_exit_costs && cfg.exit_cost_model.is_none() {
        let m = measure_exit_costs(&manifest, &job.backbone, &types, EXIT_COST_SECONDS)?;
        tracing::info!(
            heads = m.heads.len(),
            backbone_ns_per_mac = m.backbone_ns_per_mac,
            "exit costs measured"
        );
        cfg.exit_cost_model = Some(m);
    }
    lap("exit_costs", &mut seconds);
    let recorder = Recorder {
        manifest: &manifest,
        backbone: &job.backbone,
        net: &net,
        feats: [&feats[1], &feats[2]],
        labels: [&labels[1], &labels[2]],
        types: &types,
        classes,
        exit_cost: &cfg.exit_cost,
        model: cfg.exit_cost_model.as_ref(),
    };
    let (exit_tensors, recorded, recipe_results, chosen) = match &cfg.exits_from {
        Some(dir) => {
            let heads = pretrained_exits(dir)?;
            lap("exit_training", &mut seconds);
            let rec = recorder.record(&heads)?;
            // The heads' recipe and the comparison that chose it come with them.
            let (results, recipe) = training_record(dir);
            (heads, rec, results, recipe)
        }
        None => {
            let recipes =
                if cfg.recipes.is_empty() { vec![cfg.exits.recipe.clone()] } else { cfg.recipes.clone() };
            // The teacher of distillation: the final head on the last position's pooled
            // features, which are exactly what it reads.
            let teacher = match recipes.iter().any(|r| r.needs_teacher()) {
                true => Some(net.head(&feats[0].position(positions - 1)?, feats[0].n)),
                false => None,
            };
            let rows = |p: usize| feats[0].position(p);
            let tf = TrainingFeatures {
                channels: feats[0].channels.clone(),
                n: feats[0].n,
                rows: &rows,
                teacher: teacher.as_deref(),
            };
            let total = cfg.exits.epochs * tf.channels.len() * recipes.len();
            let mut done = 0;
            let training = Training { feats: tf, labels: &labels[0], cfg: &cfg.exits };
            let Chosen { heads, records: rec, recipe, results } =
                train_and_choose(&training, &recipes, &recorder, &mut |r, p, e, l| {
                    tracing::info!(recipe = %r, position = p, epoch = e, loss = l, "exit training");
                    done += 1;
                    progress("exit training epochs", done, total);
                })?;
            lap("exit_training", &mut seconds);
            (heads, rec, results, Some(recipe))
        }
    };
    if let Some(r) = chosen {
        cfg.exits.recipe = r;
    }
    let cfg = &cfg;
    let mut tensors = job.backbone;
    tensors.extend(exit_tensors);
    let cost = recorded.search_cost();
    let (cal, test) = (&recorded.cal, &recorded.test);
    lap("recording", &mut seconds);

    let full = Candidate::evaluate(cal, Config::none(positions));
    let full_test = evaluate(test, &full.config);
    let ours = coordinate_search(cost, &Default::default());
    lap("search_ours", &mut seconds);
    let one = onepass(cost, &Default::default());
    lap("search_onepass", &mut seconds);
    let uni = uniform_threshold(cost, 256);
    let single = dyce_search::pareto_front(single_exits(cost, types.len()));
    let floor = full.outcome.accuracy - cfg.max_accuracy_drop;
    let shipped = select_table(cost, &ours, floor, cfg.k_min, cfg.k_max);
    lap("search_rest", &mut seconds);

    let n_cal = cal.n_samples();
    let table = ConfigTable {
        model: cfg.name.clone(),
        configs: shipped
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Chosen on calibration only; the bound is the lower of both splits'
                // (`shipped_accuracy` says why), and the disagreement the live estimate allows
                // for comes from the same split, so the two describe the same images.
                let o = evaluate(cal, &c.config);
                let t = evaluate(test, &c.config);
                let (expected, on) = shipped_accuracy((o.accuracy, n_cal), (t.accuracy, test.n_samples()));
                let on = if on == BoundSplit::Test { test } else { cal };
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
                    expected_accuracy: Some(expected),
                    macs_ratio: Some(o.mean_macs / cal.full_macs()),
                    latency_ratio: None,
                    expected_disagreement: Some(disagreement(on, &c.config)),
                }
            })
            .collect(),
    };
    let bundle = Bundle::write(job.out, manifest, &tensors, &table)?;
    if let Some(m) = &cfg.exit_cost_model {
        // Beside the bundle, for `--exit-cost-model PATH` to re-search with the same costs.
        let path = job.out.join("exit_cost.json");
        let text = serde_json::to_string_pretty(m).expect("plain struct");
        std::fs::write(&path, text).map_err(|e| CalibrateError::Io { path, reason: e.to_string() })?;
    }
    write_predictions(job.out, &[("calibration", &sets[1].1, &feats[1]), ("test", &sets[2].1, &feats[2])])?;
    lap("write", &mut seconds);
    let split = Split { cal, test, cost: recorded.costed.as_ref().map(|(c, t)| (c, t)) };
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
        recipes: recipe_results,
        seconds,
    };
    Ok((bundle, report))
}
