//! Exit-head throughput: a `mlp3x512` head (16 → 512 → 512 → 10) at the row counts early exit
//! produces, cycling through `HEADS` heads (default 8, about 9 MiB: their weights come from L3;
//! `HEADS=64`, about 70 MiB, from memory, as they mostly do in serving between blocks).
//!
//! Run with `cargo run -p dyce-kernels --release --example dense_bench`.

use dyce_kernels::PackedDense;
use std::time::Instant;

fn layer(seed: usize, inputs: usize, outputs: usize) -> PackedDense {
    let w: Vec<f32> = (0..inputs * outputs).map(|i| ((i * 7919 + seed) % 97) as f32 / 970.0 - 0.05).collect();
    let b = vec![0.01; outputs];
    PackedDense::new(inputs, outputs, &w, &b).expect("valid layer")
}

fn main() {
    let heads: Vec<[PackedDense; 3]> =
        (0..std::env::var("HEADS").ok().and_then(|v| v.parse().ok()).unwrap_or(8))
            .map(|s| [layer(s, 16, 512), layer(s + 1, 512, 512), layer(s + 2, 512, 10)])
            .collect();
    let macs_per_row = (16 * 512 + 512 * 512 + 512 * 10) as f64;
    println!("{:>5} {:>12} {:>10}", "rows", "us/call", "GFLOP/s");
    for rows in [1usize, 2, 3, 5, 6, 8, 16, 32] {
        let x: Vec<f32> = (0..rows * 16).map(|i| (i % 13) as f32 / 13.0).collect();
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let calls = 4000 / rows.max(1) + 50;
            let t = Instant::now();
            for k in 0..calls {
                let h = &heads[k % heads.len()];
                h[0].forward(&x, rows, true, &mut a);
                h[1].forward(&a, rows, true, &mut b);
                h[2].forward(&b, rows, false, &mut c);
            }
            best = best.min(t.elapsed().as_secs_f64() / calls as f64);
        }
        println!("{rows:>5} {:>12.1} {:>10.1}", best * 1e6, 2.0 * macs_per_row * rows as f64 / best / 1e9);
    }
}
