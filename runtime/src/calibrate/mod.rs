//! Calibration: data sets, training of backbones and exits, recording, search and reports.

pub mod augment;
pub mod data;
pub mod sgd;
pub mod train;
pub mod trainnet;
