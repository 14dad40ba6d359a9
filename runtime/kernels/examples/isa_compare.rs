//! Every x86 ISA path side by side on one thread: each convolution shape of ResNet-20 and
//! ResNet-50 and the `mlp3x512` exit head, in interleaved rounds so that a noisy machine
//! affects both paths alike. Prints GFLOP/s per ISA (median over rounds) and the median of the
//! per-round ratios against AVX2. Times are the thread's CPU time, so preemption by other
//! processes does not count (their cache and memory traffic still does).
//!
//! Run with `cargo run -p dyce-kernels --release --example isa_compare [-- --rounds=N]`.

use dyce_kernels::{
    available_isas, Arena, BlockedTensor, ConvSpec, Isa, PackedConv, PackedDense, Par, ResBlock, Stem,
};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn weights(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919 + seed * 31) % 97) as f32 / 970.0 - 0.05).collect()
}

/// This thread's CPU time in seconds (`/proc/thread-self/schedstat`, nanoseconds), so that time
/// the thread spent preempted by other processes on a shared machine is not counted; wall time
/// where that file does not exist.
fn cpu_seconds(wall: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(|| wall.elapsed().as_secs_f64(), |ns| ns as f64 / 1e9)
}

/// CPU seconds per call of `f`, timed over about `budget` seconds.
fn time(budget: f64, mut f: impl FnMut()) -> f64 {
    f();
    let wall = Instant::now();
    let c0 = cpu_seconds(wall);
    let mut calls = 0;
    while wall.elapsed().as_secs_f64() < budget {
        f();
        calls += 1;
    }
    (cpu_seconds(wall) - c0) / calls as f64
}

/// A ResNet on `isa` from deterministic weights: (stem, blocks, input channels, size).
fn resnet(isa: Isa, r50: bool) -> (Stem, Vec<ResBlock>, usize, usize) {
    let mut seed = 0;
    let mut conv = |cin: usize, cout: usize, k: usize, stride: usize| {
        seed += 1;
        let spec = ConvSpec { cin, cout, kh: k, kw: k, stride, pad: k / 2 };
        let scale = (2.0 / (cin * k * k) as f32).sqrt() * 10.0;
        let w: Vec<f32> = weights(cout * cin * k * k, seed).iter().map(|v| v * scale).collect();
        PackedConv::with_isa(spec, &w, &weights(cout, seed + 1000), isa).expect("valid conv")
    };
    let mut blocks = Vec::new();
    if !r50 {
        let stem = Stem::new(conv(1, 16, 3, 1), false);
        let mut cin = 16;
        for (stage, &width) in [16usize, 32, 64].iter().enumerate() {
            for i in 0..3 {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let ds = (stride != 1 || cin != width).then(|| conv(cin, width, 1, stride));
                let (c1, c2) = (conv(cin, width, 3, stride), conv(width, width, 3, 1));
                blocks.push(ResBlock::basic(c1, c2, ds).expect("valid block"));
                cin = width;
            }
        }
        return (stem, blocks, 1, 28);
    }
    let stem = Stem::new(conv(3, 64, 7, 2), true);
    let mut cin = 64;
    for (stage, (&width, &depth)) in [64usize, 128, 256, 512].iter().zip(&[3, 4, 6, 3]).enumerate() {
        for i in 0..depth {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let ds = (stride != 1 || cin != width * 4).then(|| conv(cin, width * 4, 1, stride));
            let (c1, c2, c3) =
                (conv(cin, width, 1, 1), conv(width, width, 3, stride), conv(width, width * 4, 1, 1));
            blocks.push(ResBlock::bottleneck(c1, c2, c3, ds).expect("valid block"));
            cin = width * 4;
        }
    }
    (stem, blocks, 3, 224)
}

/// Whole networks on one thread per ISA, interleaved.
fn networks(isas: &[Isa], rounds: usize) {
    println!(
        "{:<28} {}  ratio",
        "network (img/s)",
        isas.iter().map(|i| format!("{:>10}", i.name())).collect::<String>()
    );
    for (r50, n) in [(false, 1), (false, 8), (false, 32), (true, 1), (true, 8)] {
        let nets: Vec<_> = isas.iter().map(|&i| resnet(i, r50)).collect();
        let (c, hw) = (nets[0].2, nets[0].3);
        let data = weights(n * c * hw * hw, 3);
        let mut arena = Arena::new();
        let mut x = BlockedTensor::new();
        let mut rates = vec![Vec::new(); nets.len()];
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let secs: Vec<f64> = nets
                .iter()
                .map(|(stem, blocks, _, _)| {
                    time(if r50 { 0.6 } else { 0.2 }, || {
                        x.load_nchw(&data, n, c, hw, hw).unwrap();
                        stem.forward_par_inplace(&mut x, &mut arena, Par::Serial).unwrap();
                        for b in blocks {
                            b.forward_par_inplace(&mut x, &mut arena, Par::Serial).unwrap();
                        }
                        std::hint::black_box(dyce_kernels::global_avg_pool(&x));
                    })
                })
                .collect();
            for (r, s) in rates.iter_mut().zip(&secs) {
                r.push(n as f64 / s);
            }
            ratios.push(secs[0] / secs[secs.len() - 1]);
        }
        let name = format!("{} batch {n}", if r50 { "resnet50 @224" } else { "resnet20 @28" });
        let cols: String = rates.into_iter().map(|r| format!("{:>10.1}", median(r))).collect();
        println!("{name:<28} {cols}  {:.2}", median(ratios));
    }
}

fn main() {
    let rounds: usize = std::env::args().find_map(|a| a.strip_prefix("--rounds=")?.parse().ok()).unwrap_or(5);
    let isas: Vec<Isa> =
        available_isas().into_iter().filter(|i| matches!(i, Isa::Avx2Fma | Isa::Avx512)).collect();
    println!(
        "cpu {}, isas {:?}, {rounds} interleaved rounds, one thread, CPU time",
        dyce_kernels::cpu_model(),
        isas
    );
    networks(&isas, rounds);
    if std::env::args().any(|a| a == "--networks") {
        return;
    }
    // (batch, cin, cout, h=w, k, stride): ResNet-20 @28 and ResNet-50 @224 layers.
    let shapes = [
        (8, 1, 16, 28, 3, 1),
        (8, 16, 16, 28, 3, 1),
        (8, 16, 32, 28, 3, 2),
        (8, 32, 32, 14, 3, 1),
        (8, 32, 64, 14, 3, 2),
        (8, 64, 64, 7, 3, 1),
        (8, 16, 32, 28, 1, 2),
        (1, 3, 64, 224, 7, 2),
        (1, 64, 64, 56, 1, 1),
        (1, 64, 64, 56, 3, 1),
        (1, 64, 256, 56, 1, 1),
        (1, 256, 64, 56, 1, 1),
        (1, 128, 128, 56, 3, 2),
        (1, 128, 128, 28, 3, 1),
        (1, 512, 128, 28, 1, 1),
        (1, 256, 256, 14, 3, 1),
        (1, 1024, 256, 14, 1, 1),
        (1, 256, 1024, 14, 1, 1),
        (1, 512, 512, 7, 3, 1),
        (1, 2048, 512, 7, 1, 1),
        (1, 512, 2048, 7, 1, 1),
        (8, 512, 512, 7, 3, 1),
    ];
    println!(
        "{:<28} {}  ratio",
        "conv",
        isas.iter().map(|i| format!("{:>10}", i.name())).collect::<String>()
    );
    for (case, &(n, cin, cout, hw, k, stride)) in shapes.iter().enumerate() {
        let spec = ConvSpec { cin, cout, kh: k, kw: k, stride, pad: k / 2 };
        let (w, b) = (weights(cout * cin * k * k, case), weights(cout, case + 1));
        let convs: Vec<PackedConv> =
            isas.iter().map(|&i| PackedConv::with_isa(spec, &w, &b, i).expect("valid conv")).collect();
        let x = BlockedTensor::from_nchw(&weights(n * cin * hw * hw, 7), n, cin, hw, hw).unwrap();
        let mut out = BlockedTensor::new();
        let budget = 0.15;
        let mut rates = vec![Vec::new(); convs.len()];
        let mut ratios = Vec::new();
        let flop = 2.0 * spec.macs(n, hw, hw) as f64;
        for _ in 0..rounds {
            let secs: Vec<f64> = convs
                .iter()
                .map(|c| time(budget, || c.forward_on(&x, None, true, &mut out, Par::Serial).unwrap()))
                .collect();
            for (r, s) in rates.iter_mut().zip(&secs) {
                r.push(flop / s / 1e9);
            }
            ratios.push(secs[0] / secs[secs.len() - 1]);
        }
        let name = format!("n{n} {cin}->{cout} {hw}x{hw} k{k}s{stride}");
        let cols: String = rates.into_iter().map(|r| format!("{:>10.1}", median(r))).collect();
        println!("{name:<28} {cols}  {:.2}", median(ratios));
    }
    let macs_per_row = (16 * 512 + 512 * 512 + 512 * 10) as f64;
    println!(
        "{:<28} {}  ratio",
        "mlp3x512 head (rows)",
        isas.iter().map(|i| format!("{:>10}", i.name())).collect::<String>()
    );
    for rows in [1usize, 2, 4, 6, 8, 12, 16, 32] {
        let heads: Vec<[PackedDense; 3]> = isas
            .iter()
            .map(|&i| {
                let l =
                    |s, a, o| PackedDense::with_isa(a, o, &weights(a * o, s), &weights(o, s + 1), i).unwrap();
                [l(1, 16, 512), l(2, 512, 512), l(3, 512, 10)]
            })
            .collect();
        let x = weights(rows * 16, 9);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let mut rates = vec![Vec::new(); heads.len()];
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let secs: Vec<f64> = heads
                .iter()
                .map(|h| {
                    time(0.1, || {
                        h[0].forward(&x, rows, true, &mut a);
                        h[1].forward(&a, rows, true, &mut b);
                        h[2].forward(&b, rows, false, &mut c);
                    })
                })
                .collect();
            for (r, s) in rates.iter_mut().zip(&secs) {
                r.push(2.0 * macs_per_row * rows as f64 / s / 1e9);
            }
            ratios.push(secs[0] / secs[secs.len() - 1]);
        }
        let cols: String = rates.into_iter().map(|r| format!("{:>10.1}", median(r))).collect();
        println!("{:<28} {cols}  {:.2}", format!("rows {rows}"), median(ratios));
    }
}
