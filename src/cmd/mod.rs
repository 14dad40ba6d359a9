//! The product's commands: what a user runs to serve, steer and build models.

pub mod calibrate;
pub mod calibrate_folder;
pub mod control;
pub mod control_kube;
pub mod inspect;
pub mod serve;
pub mod simulate;
pub mod stack;
pub mod train;
pub mod up;
