//! Batches of Fashion-MNIST images as the model takes them: normalised with the data set's mean
//! and std, with the training-time augmentation (random shift and flip) or without it (what
//! evaluation, `dyce bench` and the serving-accuracy test feed the model).

use rand::Rng;

use crate::fashion_mnist::{Images, PIXELS};

/// Fashion-MNIST per-channel mean of pixels scaled to [0, 1] (training split).
pub const FMNIST_MEAN: f32 = 0.2860;
/// Fashion-MNIST per-channel standard deviation.
pub const FMNIST_STD: f32 = 0.3530;

/// Normalised NCHW floats for images `idx`, optionally with a random shift of up to `pad`
/// pixels (a random crop of the zero-padded image) and a random horizontal flip.
pub fn batch<R: Rng>(set: &Images, idx: &[usize], pad: usize, flip: bool, rng: &mut R) -> Vec<f32> {
    let bg = -FMNIST_MEAN / FMNIST_STD;
    let mut out = Vec::with_capacity(idx.len() * PIXELS);
    for &i in idx {
        let img = set.image(i);
        let p = pad as i64;
        let (dy, dx) = if pad > 0 { (rng.random_range(-p..=p), rng.random_range(-p..=p)) } else { (0, 0) };
        let mirror = flip && rng.random_bool(0.5);
        for y in 0..28i64 {
            for x in 0..28i64 {
                let sx = if mirror { 27 - x } else { x } + dx;
                let sy = y + dy;
                let v = if (0..28).contains(&sx) && (0..28).contains(&sy) {
                    (img[(sy * 28 + sx) as usize] as f32 / 255.0 - FMNIST_MEAN) / FMNIST_STD
                } else {
                    bg
                };
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_augmentation_is_plain_normalisation() {
        let set = Images { pixels: (0..PIXELS).map(|i| (i % 256) as u8).collect(), labels: vec![3] };
        let mut rng = rand::rng();
        let x = batch(&set, &[0], 0, false, &mut rng);
        assert_eq!(x.len(), PIXELS);
        assert!((x[5] - (5.0 / 255.0 - FMNIST_MEAN) / FMNIST_STD).abs() < 1e-6);
    }
}
