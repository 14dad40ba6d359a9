//! Ground truth from users (`POST /v1/feedback`): the runtime keeps the newest answers (config,
//! exit position and label per image) under an id the answer carries; a true label quoted with
//! that id counts the answer right or wrong for the configuration that served it. When a shadow
//! check also ran on the image, every configuration's answer to it is known, so the label
//! counts for all of them, the full model included: the one way to see a shift that hurts the
//! full model too. Pure: times come in as arguments.
//!
//! Bounded: at most `capacity` answered images are kept; the oldest answers go first, and
//! feedback for them gets 404. Each fed-back image counts once.

use std::collections::{HashMap, VecDeque};

use dyce_api::live::{Decayed, FeedbackAccuracy, FeedbackSummary};
use dyce_api::{FeedbackItem, FeedbackLabel};

/// An image's answer: the exit position (`None`: the final head) and the label.
pub type Answer = (Option<usize>, usize);

/// Why feedback was refused (nothing of the request was counted).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedbackError {
    /// Malformed: no items, a label out of range or unknown, an index past the request's images.
    #[error("{0}")]
    Invalid(String),
    /// The id is not among the kept answers.
    #[error("{0}")]
    UnknownId(String),
    /// The image already has its label, or the answer is not out yet.
    #[error("{0}")]
    Conflict(String),
}

/// One fed-back answer counted: for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    /// Index of the configuration in the book's list.
    pub config: usize,
    /// Where it answered.
    pub position: Option<usize>,
    /// Whether its label was the true one.
    pub correct: bool,
}

#[derive(Debug, Default)]
struct Image {
    answer: Option<Answer>,
    truth: Option<usize>,
    /// Every configuration's answer, from a shadow check.
    shadow: Option<Box<[Answer]>>,
}

#[derive(Debug)]
struct Record {
    id: String,
    /// Index of the serving configuration, once answered.
    config: Option<usize>,
    images: Vec<Image>,
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct FeedbackConfig {
    /// Most answered images kept.
    pub capacity: usize,
    /// Half-life of the decayed correctness counts, seconds.
    pub half_life: f64,
    /// Class names of the model (labels may be given by name).
    pub labels: Vec<String>,
    /// Number of classes.
    pub classes: usize,
}

/// The kept answers and the per-configuration correctness they gave.
#[derive(Debug)]
pub struct FeedbackStore {
    cfg: FeedbackConfig,
    configs: Vec<String>,
    /// Prefix of generated ids: random per process, so ids of a restarted runtime never alias.
    nonce: u32,
    next: u64,
    records: HashMap<u64, Record>,
    order: VecDeque<u64>,
    ids: HashMap<String, u64>,
    kept_images: usize,
    tallies: Vec<(Decayed, u64)>,
    accepted: u64,
    shadowed: u64,
}

impl FeedbackStore {
    /// A store for the configurations `configs` (ids, in the order `Counted::config` indexes).
    pub fn new(cfg: FeedbackConfig, configs: Vec<String>) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let nonce = std::collections::hash_map::RandomState::new().build_hasher().finish() as u32;
        let tallies = vec![(Decayed::default(), 0); configs.len()];
        Self {
            cfg,
            configs,
            nonce,
            next: 1,
            records: HashMap::new(),
            order: VecDeque::new(),
            ids: HashMap::new(),
            kept_images: 0,
            tallies,
            accepted: 0,
            shadowed: 0,
        }
    }

    /// Opens a record for a request of `n` images before it is submitted; returns its tag (for
    /// the queue) and the id its answer carries: the request's own id when it has one (a newer
    /// request with the same id takes it over), else a generated one.
    pub fn open(&mut self, client_id: Option<&str>, n: usize) -> (u64, String) {
        let seq = self.next;
        self.next += 1;
        let id = client_id.map_or_else(|| format!("d-{:08x}-{seq}", self.nonce), str::to_string);
        if n == 0 || n > self.cfg.capacity {
            return (seq, id);
        }
        self.ids.insert(id.clone(), seq);
        let images = (0..n).map(|_| Image::default()).collect();
        self.records.insert(seq, Record { id: id.clone(), config: None, images });
        self.order.push_back(seq);
        self.kept_images += n;
        while self.kept_images > self.cfg.capacity {
            let Some(old) = self.order.pop_front() else { break };
            self.drop_record(old);
        }
        (seq, id)
    }

    fn drop_record(&mut self, seq: u64) {
        if let Some(r) = self.records.remove(&seq) {
            self.kept_images -= r.images.len();
            if self.ids.get(&r.id) == Some(&seq) {
                self.ids.remove(&r.id);
            }
        }
    }

    /// The request's answers arrived: served by `config`, one answer per image.
    pub fn answered(&mut self, seq: u64, config: &str, answers: &[Answer]) {
        let config = self.configs.iter().position(|c| c == config);
        if let Some(r) = self.records.get_mut(&seq) {
            r.config = config;
            for (img, a) in r.images.iter_mut().zip(answers) {
                img.answer = Some(*a);
            }
        }
    }

    /// The request failed: nothing to give feedback on. Its place in the eviction order stays
    /// as a tombstone (a refused request must not cost a scan of the store); tombstones are
    /// swept once they outnumber the kept records, so the order stays bounded under overload.
    pub fn forget(&mut self, seq: u64) {
        self.drop_record(seq);
        if self.order.len() > 2 * self.records.len() + 1024 {
            let records = &self.records;
            self.order.retain(|s| records.contains_key(s));
        }
    }

    /// A shadow check ran on image `index` of request `seq`: `answers[c]` is configuration `c`'s
    /// answer. When the image's label is already known, every configuration but the serving
    /// one (counted with the feedback) is counted now.
    pub fn shadowed(&mut self, now: f64, seq: u64, index: usize, answers: Vec<Answer>) -> Vec<Counted> {
        let Some(r) = self.records.get_mut(&seq) else { return vec![] };
        let served = r.config;
        let Some(img) = r.images.get_mut(index) else { return vec![] };
        let truth = img.truth;
        img.shadow = Some(answers.clone().into_boxed_slice());
        let Some(t) = truth else { return vec![] };
        self.shadowed += 1;
        self.count_others(now, served, &answers, t)
    }

    fn count(&mut self, now: f64, config: usize, answer: Answer, truth: usize) -> Counted {
        let correct = answer.1 == truth;
        if let Some((d, total)) = self.tallies.get_mut(config) {
            d.add(now, self.cfg.half_life, !correct);
            *total += 1;
        }
        Counted { config, position: answer.0, correct }
    }

    fn count_others(
        &mut self,
        now: f64,
        served: Option<usize>,
        all: &[Answer],
        truth: usize,
    ) -> Vec<Counted> {
        (0..all.len().min(self.configs.len()))
            .filter(|&c| Some(c) != served)
            .map(|c| self.count(now, c, all[c], truth))
            .collect()
    }

    fn label(&self, l: &FeedbackLabel) -> Result<usize, String> {
        match l {
            FeedbackLabel::Index(i) if (0..self.cfg.classes as i64).contains(i) => Ok(*i as usize),
            FeedbackLabel::Index(i) => {
                Err(format!("label {i} is out of range: the model has classes 0..{}", self.cfg.classes))
            }
            FeedbackLabel::Name(n) => self.cfg.labels.iter().position(|x| x == n).ok_or_else(|| {
                let some: Vec<&str> = self.cfg.labels.iter().take(10).map(String::as_str).collect();
                format!(
                    "unknown label {n:?}: give a class index or one of the model's labels ({})",
                    some.join(", ")
                )
            }),
        }
    }

    /// Applies true labels, all or none: every item is checked before any is counted. Returns
    /// what was counted and how many of the served answers were right.
    pub fn feedback(
        &mut self,
        now: f64,
        items: &[FeedbackItem],
    ) -> Result<(Vec<Counted>, usize), FeedbackError> {
        if items.is_empty() {
            return Err(FeedbackError::Invalid(
                "no feedback items: send {\"id\", \"label\"} or a list of them".into(),
            ));
        }
        let mut checked = Vec::with_capacity(items.len());
        for (k, item) in items.iter().enumerate() {
            let at = if items.len() > 1 { format!("item {k}: ") } else { String::new() };
            let truth = self.label(&item.label).map_err(|e| FeedbackError::Invalid(format!("{at}{e}")))?;
            let seq = *self.ids.get(&item.id).ok_or_else(|| {
                FeedbackError::UnknownId(format!(
                    "{at}unknown answer id {:?}: never answered here, or older than the {} newest answered images kept (--feedback-capacity)",
                    item.id, self.cfg.capacity
                ))
            })?;
            let r = &self.records[&seq];
            let img = r.images.get(item.index).ok_or_else(|| {
                FeedbackError::Invalid(format!(
                    "{at}index {} is past the answer's {} images",
                    item.index,
                    r.images.len()
                ))
            })?;
            if img.answer.is_none() {
                return Err(FeedbackError::Conflict(format!("{at}answer {:?} is not out yet", item.id)));
            }
            if img.truth.is_some() || checked.iter().any(|&(s, i, _)| (s, i) == (seq, item.index)) {
                return Err(FeedbackError::Conflict(format!(
                    "{at}image {} of answer {:?} already has its label",
                    item.index, item.id
                )));
            }
            checked.push((seq, item.index, truth));
        }
        let (mut counted, mut correct) = (Vec::new(), 0);
        for (seq, index, truth) in checked {
            let r = self.records.get_mut(&seq).expect("checked above");
            let served = r.config;
            let img = &mut r.images[index];
            img.truth = Some(truth);
            let answer = img.answer.expect("checked above");
            let shadow = img.shadow.clone();
            correct += usize::from(answer.1 == truth);
            self.accepted += 1;
            if let Some(c) = served {
                counted.push(self.count(now, c, answer, truth));
            }
            if let Some(all) = shadow {
                self.shadowed += 1;
                counted.extend(self.count_others(now, served, &all, truth));
            }
        }
        Ok((counted, correct))
    }

    /// Configuration `config`'s accuracy from feedback, when any was counted for it.
    pub fn accuracy(&self, config: usize) -> Option<FeedbackAccuracy> {
        let (d, total) = self.tallies.get(config)?;
        (*total > 0).then(|| FeedbackAccuracy::from_decayed(d, *total))
    }

    /// The totals.
    pub fn summary(&self) -> FeedbackSummary {
        FeedbackSummary {
            capacity: self.cfg.capacity,
            kept: self.kept_images,
            accepted_total: self.accepted,
            shadowed_total: self.shadowed,
        }
    }
}

#[cfg(test)]
mod tests;
