//! Whole small networks (stem + residual blocks) against a naive NCHW composition.

mod common;

use common::*;
use dyce_kernels::{
    available_isas, Arena, BlockedTensor, ConvSpec, Isa, KernelError, PackedConv, Par, ResBlock, Stem, Team,
};
use rand::rngs::StdRng;

type Shape = (usize, usize, usize, usize);

/// Folded conv weights kept in OIHW for the reference.
struct RefConv {
    w: Vec<f32>,
    b: Vec<f32>,
    cout: usize,
    k: usize,
    stride: usize,
}

impl RefConv {
    fn new(r: &mut StdRng, cin: usize, cout: usize, k: usize, stride: usize) -> Self {
        let scale = (2.0 / (cin * k * k) as f32).sqrt();
        let w = rand_vec(r, cout * cin * k * k).iter().map(|v| v * scale).collect();
        Self { w, b: rand_vec(r, cout), cout, k, stride }
    }

    fn packed(&self, cin: usize, isa: Isa) -> PackedConv {
        let spec =
            ConvSpec { cin, cout: self.cout, kh: self.k, kw: self.k, stride: self.stride, pad: self.k / 2 };
        PackedConv::with_isa(spec, &self.w, &self.b, isa).unwrap()
    }

    fn run(&self, x: &[f32], s: Shape, res: Option<&[f32]>, relu: bool) -> (Vec<f32>, Shape) {
        conv_ref(x, s, &self.w, &self.b, (self.cout, self.k, self.stride, self.k / 2), res, relu)
    }
}

/// Main-path convs plus optional downsample.
struct RefBlock {
    convs: Vec<RefConv>,
    ds: Option<RefConv>,
}

impl RefBlock {
    fn run(&self, x: &[f32], s: Shape) -> (Vec<f32>, Shape) {
        let mut cur = (x.to_vec(), s);
        for c in &self.convs[..self.convs.len() - 1] {
            cur = c.run(&cur.0, cur.1, None, true);
        }
        let short = match &self.ds {
            Some(d) => d.run(x, s, None, false).0,
            None => x.to_vec(),
        };
        self.convs.last().unwrap().run(&cur.0, cur.1, Some(&short), true)
    }

    fn packed(&self, cin: usize, isa: Isa) -> ResBlock {
        let mut c = cin;
        let mut convs = Vec::new();
        for rc in &self.convs {
            convs.push(rc.packed(c, isa));
            c = rc.cout;
        }
        let ds = self.ds.as_ref().map(|d| d.packed(cin, isa));
        let mut it = convs.into_iter();
        if self.convs.len() == 2 {
            ResBlock::basic(it.next().unwrap(), it.next().unwrap(), ds).unwrap()
        } else {
            ResBlock::bottleneck(it.next().unwrap(), it.next().unwrap(), it.next().unwrap(), ds).unwrap()
        }
    }
}

fn check_net(isa: Isa, stem: &RefConv, maxpool: bool, blocks: &[RefBlock], input: Shape, seed: u64) {
    let pool = pool();
    let team = Team::new(2).unwrap();
    let mut r = rng(seed);
    let x = rand_vec(&mut r, input.0 * input.1 * input.2 * input.3);
    // Reference.
    let (mut y, mut s) = stem.run(&x, input, None, true);
    if maxpool {
        (y, s) = maxpool_ref(&y, s);
    }
    let mut cins = Vec::new();
    for b in blocks {
        cins.push(s.1);
        (y, s) = b.run(&y, s);
    }
    let want_gap = gap_ref(&y, s);
    // Kernels, twice through the same arena to check reuse gives identical results.
    let kstem = Stem::new(stem.packed(input.1, isa), maxpool);
    let kblocks: Vec<ResBlock> = blocks.iter().zip(&cins).map(|(b, &c)| b.packed(c, isa)).collect();
    let mut arena = Arena::new();
    let mut t = BlockedTensor::new();
    let mut cap = 0;
    // Every way of running a pass gives the same answer: rayon, the spinning team, serial.
    for (pass, par) in
        [Par::Rayon(&pool), Par::Team(&team), Par::Serial, Par::Rayon(&pool)].into_iter().enumerate()
    {
        t.load_nchw(&x, input.0, input.1, input.2, input.3).unwrap();
        let run = || -> Result<(), dyce_kernels::KernelError> {
            kstem.forward_par_inplace(&mut t, &mut arena, par)?;
            for b in &kblocks {
                b.forward_par_inplace(&mut t, &mut arena, par)?;
            }
            Ok(())
        };
        team.session(run).unwrap();
        assert_eq!(t.shape(), s);
        let e = rel_err(&t.to_nchw(), &y);
        assert!(e < 1e-4, "{isa:?} pass {pass} {par:?}: rel err {e}");
        let gap = dyce_kernels::global_avg_pool(&t);
        assert!(rel_err(&gap, &want_gap) < 1e-4);
        let now = arena.capacity_floats() + t.capacity();
        if pass > 0 {
            assert_eq!(now, cap, "arena grew in steady state");
        }
        cap = now;
    }
}

#[test]
fn basic_resnet_matches_naive() {
    let mut r = rng(10);
    let stem = RefConv::new(&mut r, 1, 16, 3, 1);
    let blocks = vec![
        RefBlock {
            convs: vec![RefConv::new(&mut r, 16, 16, 3, 1), RefConv::new(&mut r, 16, 16, 3, 1)],
            ds: None,
        },
        RefBlock {
            convs: vec![RefConv::new(&mut r, 16, 32, 3, 2), RefConv::new(&mut r, 32, 32, 3, 1)],
            ds: Some(RefConv::new(&mut r, 16, 32, 1, 2)),
        },
        RefBlock {
            convs: vec![RefConv::new(&mut r, 32, 20, 3, 2), RefConv::new(&mut r, 20, 20, 3, 1)],
            ds: Some(RefConv::new(&mut r, 32, 20, 1, 2)),
        },
        RefBlock {
            convs: vec![RefConv::new(&mut r, 20, 20, 3, 1), RefConv::new(&mut r, 20, 20, 3, 1)],
            ds: None,
        },
    ];
    for isa in available_isas() {
        check_net(isa, &stem, false, &blocks, (3, 1, 28, 28), 11);
        check_net(isa, &stem, false, &blocks, (1, 1, 9, 9), 12);
        // Batches above the minimum sub-batch: blocks run on the pool in uneven sub-batches.
        check_net(isa, &stem, false, &blocks, (33, 1, 28, 28), 13);
    }
}

#[test]
fn bottleneck_resnet_matches_naive() {
    let mut r = rng(20);
    let stem = RefConv::new(&mut r, 3, 16, 7, 2);
    let bott = |r: &mut StdRng, cin: usize, width: usize, stride: usize, ds: bool| RefBlock {
        convs: vec![
            RefConv::new(r, cin, width, 1, 1),
            RefConv::new(r, width, width, 3, stride),
            RefConv::new(r, width, width * 4, 1, 1),
        ],
        ds: ds.then(|| RefConv::new(r, cin, width * 4, 1, stride)),
    };
    let blocks =
        vec![bott(&mut r, 16, 8, 1, true), bott(&mut r, 32, 8, 1, false), bott(&mut r, 32, 16, 2, true)];
    for isa in available_isas() {
        check_net(isa, &stem, true, &blocks, (2, 3, 37, 37), 21);
        check_net(isa, &stem, true, &blocks, (19, 3, 33, 33), 22);
    }
}

#[test]
fn block_construction_validates() {
    let isa = Isa::Portable;
    let c = |cin, cout, k, s| {
        let spec = ConvSpec { cin, cout, kh: k, kw: k, stride: s, pad: k / 2 };
        PackedConv::with_isa(spec, &vec![0.0; cin * cout * k * k], &vec![0.0; cout], isa).unwrap()
    };
    assert!(matches!(
        ResBlock::basic(c(8, 16, 3, 1), c(8, 16, 3, 1), None),
        Err(KernelError::ShapeMismatch { .. })
    ));
    assert!(ResBlock::basic(c(8, 16, 3, 2), c(16, 16, 3, 1), None).is_err());
    assert!(ResBlock::basic(c(8, 16, 3, 2), c(16, 16, 3, 1), Some(c(8, 15, 1, 2))).is_err());
    assert!(ResBlock::basic(c(8, 16, 3, 2), c(16, 16, 3, 1), Some(c(8, 16, 1, 2))).is_ok());
    // Wrong input channels surface as an error, not a panic.
    let b = ResBlock::basic(c(8, 8, 3, 1), c(8, 8, 3, 1), None).unwrap();
    let mut arena = Arena::new();
    let x = BlockedTensor::zeros(1, 9, 4, 4);
    assert!(b.forward(&x, &mut arena, &pool()).is_err());
}
