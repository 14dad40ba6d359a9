//! Throughput benchmark: machine FMA peak, ResNet-20 (28x28x1) and ResNet-50 (224x224x3).
//!
//! Run with `cargo run -p dyce-kernels --release --example kernel_bench [-- --quick]`.

use dyce_kernels::{
    detect_isa, global_avg_pool_into, Arena, BlockedTensor, ConvSpec, PackedConv, ResBlock, Stem,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// A ResNet built from random (He-scaled) folded weights.
struct Net {
    name: &'static str,
    stem: Stem,
    blocks: Vec<ResBlock>,
    input: (usize, usize, usize),
    macs_per_image: u64,
}

fn conv(rng: &mut StdRng, cin: usize, cout: usize, k: usize, stride: usize) -> PackedConv {
    let scale = (2.0 / (cin * k * k) as f32).sqrt();
    let w: Vec<f32> = (0..cout * cin * k * k).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect();
    let b: Vec<f32> = (0..cout).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    let spec = ConvSpec { cin, cout, kh: k, kw: k, stride, pad: k / 2 };
    PackedConv::new(spec, &w, &b).expect("valid conv")
}

fn resnet20(rng: &mut StdRng) -> Net {
    let stem = Stem::new(conv(rng, 1, 16, 3, 1), false);
    let mut blocks = Vec::new();
    let mut cin = 16;
    for (stage, &width) in [16usize, 32, 64].iter().enumerate() {
        for i in 0..3 {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let ds = (stride != 1 || cin != width).then(|| conv(rng, cin, width, 1, stride));
            let c1 = conv(rng, cin, width, 3, stride);
            let c2 = conv(rng, width, width, 3, 1);
            blocks.push(ResBlock::basic(c1, c2, ds).expect("valid block"));
            cin = width;
        }
    }
    finish("ResNet-20", stem, blocks, (1, 28, 28))
}

fn resnet50(rng: &mut StdRng) -> Net {
    let stem = Stem::new(conv(rng, 3, 64, 7, 2), true);
    let mut blocks = Vec::new();
    let mut cin = 64;
    for (stage, (&width, &depth)) in [64usize, 128, 256, 512].iter().zip(&[3, 4, 6, 3]).enumerate() {
        let cout = width * 4;
        for i in 0..depth {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let ds = (stride != 1 || cin != cout).then(|| conv(rng, cin, cout, 1, stride));
            let c1 = conv(rng, cin, width, 1, 1);
            let c2 = conv(rng, width, width, 3, stride);
            let c3 = conv(rng, width, cout, 1, 1);
            blocks.push(ResBlock::bottleneck(c1, c2, c3, ds).expect("valid block"));
            cin = cout;
        }
    }
    finish("ResNet-50", stem, blocks, (3, 224, 224))
}

fn finish(name: &'static str, stem: Stem, blocks: Vec<ResBlock>, input: (usize, usize, usize)) -> Net {
    let (_, mut h, mut w) = input;
    let mut macs = stem.conv().spec().macs(1, h, w);
    (h, w) = stem.conv().spec().output_hw(h, w).unwrap();
    if stem.has_maxpool() {
        (h, w) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    }
    for b in &blocks {
        macs += b.macs(1, h, w);
        for c in b.convs() {
            (h, w) = c.spec().output_hw(h, w).unwrap();
        }
    }
    Net { name, stem, blocks, input, macs_per_image: macs }
}

/// Reusable per-network state: steady-state forward passes allocate nothing.
struct Runner {
    x: BlockedTensor,
    arena: Arena,
    logits: Vec<f32>,
}

impl Net {
    /// Whole pass inside one `install`: per-layer parallel loops then start on a pool thread
    /// instead of paying a cross-thread hand-off per convolution.
    fn forward(&self, data: &[f32], n: usize, st: &mut Runner, pool: &rayon::ThreadPool) {
        pool.install(|| self.forward_inner(data, n, st, pool));
    }

    fn forward_inner(&self, data: &[f32], n: usize, st: &mut Runner, pool: &rayon::ThreadPool) {
        let (c, h, w) = self.input;
        st.x.load_nchw(data, n, c, h, w).unwrap();
        self.stem.forward_inplace(&mut st.x, &mut st.arena, pool).unwrap();
        for b in &self.blocks {
            b.forward_inplace(&mut st.x, &mut st.arena, pool).unwrap();
        }
        global_avg_pool_into(&st.x, &mut st.logits);
    }
}

/// FLOP/s of a register-resident FMA loop on every pool thread (NaN without AVX2+FMA).
fn peak_gflops(pool: &rayon::ThreadPool) -> f64 {
    dyce_kernels::peak::fma_peak_gflops(pool).unwrap_or(f64::NAN)
}

/// Single-thread GFLOP/s of representative convolutions (kernel efficiency, no scheduling).
fn conv_micro(pool: &rayon::ThreadPool) {
    let mut rng = StdRng::seed_from_u64(1);
    // (n, cin, cout, hw, k, stride)
    let focus = std::env::args().any(|a| a == "--focus");
    let focus_cases = [
        (1, 64, 256, 56, 1, 1),
        (1, 64, 64, 56, 1, 1),
        (1, 256, 256, 56, 1, 1),
        (1, 64, 256, 56, 1, 1),
        (1, 64, 64, 56, 3, 1),
    ];
    let all_cases = [
        (8, 16, 16, 28, 3, 1),
        (8, 64, 64, 7, 3, 1),
        (1, 64, 64, 56, 3, 1),
        (1, 256, 64, 56, 1, 1),
        (1, 64, 256, 56, 1, 1),
        (1, 512, 512, 7, 3, 1),
        (1, 1024, 256, 14, 1, 1),
        (1, 3, 64, 224, 7, 2),
        (1, 256, 1024, 14, 1, 1),
        (1, 2048, 512, 7, 1, 1),
        (1, 512, 2048, 7, 1, 1),
        (1, 512, 128, 28, 1, 1),
        (1, 256, 256, 14, 3, 1),
        (1, 128, 128, 56, 3, 2),
        (1, 512, 1024, 28, 1, 2),
        (8, 64, 64, 7, 3, 1),
        (8, 32, 32, 14, 3, 1),
    ];
    let cases: &[_] = if focus { &focus_cases } else { &all_cases };
    for &(n, cin, cout, hw, k, stride) in cases {
        let c = conv(&mut rng, cin, cout, k, stride);
        let x = BlockedTensor::zeros(n, cin, hw, hw);
        let mut out = BlockedTensor::new();
        c.forward(&x, None, true, &mut out, pool).unwrap();
        let macs = c.spec().macs(n, hw, hw);
        let iters = (2e9 / macs as f64).max(1.0) as usize;
        let t = Instant::now();
        for _ in 0..iters {
            c.forward(&x, None, true, &mut out, pool).unwrap();
        }
        let s = t.elapsed().as_secs_f64() / iters as f64;
        println!(
            "  conv n{n} {cin}->{cout} {hw}x{hw} k{k} s{stride}: {:.1} GFLOP/s",
            2.0 * macs as f64 / s / 1e9
        );
    }
}

/// Per-convolution time of one batch-`n` pass, slowest first (where the time goes).
fn layer_profile(net: &Net, n: usize, pool: &rayon::ThreadPool) {
    let (_, mut h, mut w) = net.input;
    let mut convs: Vec<(&PackedConv, usize, usize)> = vec![(net.stem.conv(), h, w)];
    (h, w) = net.stem.conv().spec().output_hw(h, w).unwrap();
    if net.stem.has_maxpool() {
        (h, w) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    }
    for b in &net.blocks {
        if let Some(d) = b.downsample() {
            convs.push((d, h, w));
        }
        for c in b.convs() {
            convs.push((c, h, w));
            (h, w) = c.spec().output_hw(h, w).unwrap();
        }
    }
    let mut rows = Vec::new();
    let mut total = 0.0;
    for (c, h, w) in convs {
        let x = BlockedTensor::zeros(n, c.spec().cin, h, w);
        let mut out = BlockedTensor::new();
        c.forward(&x, None, true, &mut out, pool).unwrap();
        // Fastest of 20 runs: robust against other processes sharing the machine.
        let mut sec = f64::INFINITY;
        for _ in 0..20 {
            let t = Instant::now();
            c.forward(&x, None, true, &mut out, pool).unwrap();
            sec = sec.min(t.elapsed().as_secs_f64());
        }
        total += sec;
        let s = c.spec();
        let name = format!("{}->{} k{} s{} @{h}x{w}", s.cin, s.cout, s.kh, s.stride);
        rows.push((sec, name, 2.0 * s.macs(n, h, w) as f64 / sec / 1e9));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("total conv time {:.1} ms", total * 1e3);
    for (sec, name, gf) in rows.iter().take(if std::env::args().any(|a| a == "--all") { 999 } else { 25 }) {
        println!("  {:>6.2} ms  {:>5.1}%  {gf:>6.1} GFLOP/s  {name}", sec * 1e3, 100.0 * sec / total);
    }
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench(net: &Net, n: usize, pool: &rayon::ThreadPool, peak: f64, quick: bool) {
    let (c, h, w) = net.input;
    let mut rng = StdRng::seed_from_u64(n as u64);
    let data: Vec<f32> = (0..n * c * h * w).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut st = Runner { x: BlockedTensor::new(), arena: Arena::new(), logits: Vec::new() };
    // Warm-up sizes the arena and estimates how many passes fill ~0.3 s per repeat.
    let t = Instant::now();
    net.forward(&data, n, &mut st, pool);
    net.forward(&data, n, &mut st, pool);
    let per = t.elapsed().as_secs_f64() / 2.0;
    let target = if quick { 0.1 } else { 0.3 };
    let iters = ((target / per) as usize).max(1);
    let repeats = if per > 1.0 { 3 } else { 7 };
    let times: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                net.forward(&data, n, &mut st, pool);
            }
            t.elapsed().as_secs_f64() / iters as f64
        })
        .collect();
    let sec = median(times);
    let gflops = 2.0 * (net.macs_per_image * n as u64) as f64 / sec / 1e9;
    println!(
        "{:<10} batch {:>2}: {:>9.1} img/s  {:>6.2} ms/batch  {:>6.1} GFLOP/s  {:>5.1}% of peak",
        net.name,
        n,
        n as f64 / sec,
        sec * 1e3,
        gflops,
        100.0 * gflops / peak
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let threads = std::env::args()
        .find_map(|a| a.strip_prefix("--threads=").and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let peak = peak_gflops(&pool);
    if std::env::args().any(|a| a == "--peak-only") {
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        println!("peak 1 thread {:.1}, {threads} threads {peak:.1} GFLOP/s", peak_gflops(&one));
        conv_micro(&one);
        conv_micro(&pool);
        return;
    }
    println!("isa {:?}, {threads} threads, FMA peak {peak:.1} GFLOP/s", detect_isa());
    let mut rng = StdRng::seed_from_u64(42);
    let r20 = resnet20(&mut rng);
    let r50 = resnet50(&mut rng);
    for net in [&r20, &r50] {
        println!("{}: {:.1} MMAC/image", net.name, net.macs_per_image as f64 / 1e6);
    }
    if let Some(n) = std::env::args().find_map(|a| a.strip_prefix("--layers20=")?.parse().ok()) {
        layer_profile(&r20, n, &pool);
        return;
    }
    if let Some(n) = std::env::args().find_map(|a| a.strip_prefix("--layers50=")?.parse().ok()) {
        layer_profile(&r50, n, &pool);
        return;
    }
    if std::env::args().any(|a| a == "--layers") {
        layer_profile(&r50, 1, &pool);
        return;
    }
    let only = std::env::args().find_map(|a| a.strip_prefix("--net=").map(str::to_string));
    for net in [&r20, &r50] {
        if only.as_deref().is_some_and(|o| o != net.name) {
            continue;
        }
        for n in [1, 8, 32] {
            bench(net, n, &pool, peak, quick);
        }
    }
    println!("peak RSS after batch-32 runs: VmHWM {} KiB", rss_kib("VmHWM:"));
    let (c, h, w) = r20.input;
    let data = vec![0.5f32; 32 * c * h * w];
    let mut st = Runner { x: BlockedTensor::new(), arena: Arena::new(), logits: Vec::new() };
    r20.forward(&data, 32, &mut st, &pool);
    let (hwm0, rss0) = (rss_kib("VmHWM:"), rss_kib("VmRSS:"));
    let loops = if quick { 100 } else { 1000 };
    for _ in 0..loops {
        r20.forward(&data, 32, &mut st, &pool);
    }
    let (hwm1, rss1) = (rss_kib("VmHWM:"), rss_kib("VmRSS:"));
    println!(
        "ResNet-20 batch 32 x {loops}: VmRSS {rss0} -> {rss1} KiB ({:+} KiB), VmHWM {hwm0} -> {hwm1} KiB ({:+} KiB)",
        rss1 as i64 - rss0 as i64,
        hwm1 as i64 - hwm0 as i64
    );
}
