use super::*;
use candle_core::{Device, Var};

fn close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len(), "{what}: length");
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y} (scale {scale})");
    }
}

/// The NHWC im2col convolution against candle's conv2d, forward and both gradients.
#[test]
fn conv_matches_candle_forward_and_gradients() {
    let dev = Device::Cpu;
    for &(n, cin, cout, h, w, k, stride, pad) in &[
        (2, 3, 5, 7, 9, 3, 1, 1),
        (3, 5, 7, 8, 8, 3, 2, 1),
        (2, 3, 5, 6, 7, 1, 1, 0),
        (2, 5, 3, 8, 6, 1, 2, 0),
        (1, 1, 4, 5, 5, 3, 1, 1),
        (2, 3, 3, 7, 7, 3, 2, 0),
    ] {
        let what = format!("n{n} cin{cin} cout{cout} {h}x{w} k{k} s{stride} p{pad}");
        let x = Var::randn(0f32, 1.0, (n, cin, h, w), &dev).unwrap();
        let wt = Var::randn(0f32, 1.0, (cout, cin, k, k), &dev).unwrap();
        let reference = x.as_tensor().conv2d(wt.as_tensor(), pad, stride, 1, 1).unwrap();
        let xn = x.as_tensor().permute((0, 2, 3, 1)).unwrap();
        let ours = conv2d_nhwc(&xn, wt.as_tensor(), stride, pad).unwrap().permute((0, 3, 1, 2)).unwrap();
        close(&ours, &reference, 1e-4, &format!("{what} forward"));
        let r = Tensor::randn(0f32, 1.0, reference.shape(), &dev).unwrap();
        let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (var, name) in [(&x, "d input"), (&wt, "d weight")] {
            let a = go.get(var.as_tensor()).unwrap();
            let b = gr.get(var.as_tensor()).unwrap();
            close(a, b, 1e-4, &format!("{what} {name}"));
        }
    }
}

/// Training-mode batch norm (+ ReLU) over the last dimension from candle's ops.
fn reference_bn(x: &Tensor, g: &Tensor, b: &Tensor, relu: bool) -> (Tensor, Tensor, Tensor) {
    let c = x.dim(x.rank() - 1).unwrap();
    let x2 = x.reshape(((), c)).unwrap();
    let mean = x2.mean_keepdim(0).unwrap();
    let xc = x2.broadcast_sub(&mean).unwrap();
    let var = xc.sqr().unwrap().mean_keepdim(0).unwrap();
    let y = xc
        .broadcast_div(&(var.clone() + BN_EPS).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(g)
        .unwrap()
        .broadcast_add(b)
        .unwrap();
    let y = if relu { y.relu().unwrap() } else { y };
    (y.reshape(x.shape()).unwrap(), mean, var)
}

/// Convolution + batch norm (+ ReLU) as one op against candle's conv2d and BN from ops.
#[test]
fn conv_bn_matches_candle_forward_and_gradients() {
    let dev = Device::Cpu;
    for &(n, cin, cout, h, k, stride, pad, relu) in &[
        (3, 3, 5, 8, 3, 1, 1, true),
        (3, 5, 7, 8, 3, 2, 1, false),
        (4, 3, 5, 6, 1, 2, 0, false),
        (2, 1, 3, 5, 3, 1, 1, true),
    ] {
        let what = format!("n{n} cin{cin} cout{cout} {h}x{h} k{k} s{stride} p{pad} relu {relu}");
        let x = Var::randn(0f32, 1.0, (n, h, h, cin), &dev).unwrap();
        let w = Var::randn(0f32, 1.0, (cout, cin, k, k), &dev).unwrap();
        let g = Var::randn(1f32, 0.3, cout, &dev).unwrap();
        let b = Var::randn(0f32, 0.3, cout, &dev).unwrap();
        let (ours, st) =
            conv_bn_train(x.as_tensor(), w.as_tensor(), g.as_tensor(), b.as_tensor(), stride, pad, relu)
                .unwrap();
        let xc = x.as_tensor().permute((0, 3, 1, 2)).unwrap();
        let z = xc.conv2d(w.as_tensor(), pad, stride, 1, 1).unwrap().permute((0, 2, 3, 1)).unwrap();
        let (reference, mean, var) = reference_bn(&z, g.as_tensor(), b.as_tensor(), relu);
        close(&ours, &reference, 1e-4, &format!("{what} forward"));
        close(&Tensor::new(st.mean.as_slice(), &dev).unwrap(), &mean, 1e-4, &format!("{what} mean"));
        close(&Tensor::new(st.var.as_slice(), &dev).unwrap(), &var, 1e-4, &format!("{what} var"));
        let r = Tensor::randn(0f32, 1.0, reference.shape(), &dev).unwrap();
        let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (v, name) in [(&x, "dx"), (&w, "dw"), (&g, "dgamma"), (&b, "dbeta")] {
            close(
                go.get(v.as_tensor()).unwrap(),
                gr.get(v.as_tensor()).unwrap(),
                1e-4,
                &format!("{what} {name}"),
            );
        }
    }
}

#[test]
fn add_relu_matches_candle() {
    let dev = Device::Cpu;
    let a = Var::randn(0f32, 1.0, (3, 70_000), &dev).unwrap();
    let b = Var::randn(0f32, 1.0, (3, 70_000), &dev).unwrap();
    let ours = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
    let reference = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
    close(&ours, &reference, 0.0, "add_relu forward");
    let r = Tensor::randn(0f32, 1.0, (3, 70_000), &dev).unwrap();
    let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for v in [&a, &b] {
        close(go.get(v.as_tensor()).unwrap(), gr.get(v.as_tensor()).unwrap(), 0.0, "add_relu grad");
    }
}

/// The fused batch norm (+ReLU) against the same computation from candle's ops.
#[test]
fn batch_norm_matches_reference_forward_and_gradients() {
    let dev = Device::Cpu;
    for relu in [false, true] {
        let (rows, c) = (300, 5);
        let x =
            Var::from_tensor(&(Tensor::randn(0f32, 2.0, (rows, c), &dev).unwrap() + 0.7).unwrap()).unwrap();
        let g = Var::randn(1f32, 0.3, c, &dev).unwrap();
        let b = Var::randn(0f32, 0.3, c, &dev).unwrap();
        let (ours, st) = batch_norm_train(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5, relu).unwrap();
        let xt = x.as_tensor();
        let mean = xt.mean_keepdim(0).unwrap();
        let xc = xt.broadcast_sub(&mean).unwrap();
        let var = xc.sqr().unwrap().mean_keepdim(0).unwrap();
        let mut reference = xc
            .broadcast_div(&(var.clone() + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(g.as_tensor())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        if relu {
            reference = reference.relu().unwrap();
        }
        close(&ours, &reference, 1e-5, "bn forward");
        close(&Tensor::new(st.mean.as_slice(), &dev).unwrap(), &mean, 1e-5, "bn mean");
        close(&Tensor::new(st.var.as_slice(), &dev).unwrap(), &var, 1e-5, "bn var");
        let r = Tensor::randn(0f32, 1.0, (rows, c), &dev).unwrap();
        let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (v, name) in [(&x, "dx"), (&g, "dgamma"), (&b, "dbeta")] {
            close(go.get(v.as_tensor()).unwrap(), gr.get(v.as_tensor()).unwrap(), 1e-4, name);
        }
    }
}

mod bench {
    use candle_core::{Device, Tensor};

    /// GEMM shapes of a stage-1 convolution (`-- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn matmul_shapes_speed() {
        let dev = Device::Cpu;
        let (m, k, n) = (128 * 784, 144, 16);
        let cols = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let g = Tensor::randn(0f32, 1.0, (m, n), &dev).unwrap();
        let time = |name: &str, f: &dyn Fn() -> Tensor| {
            f();
            let t = std::time::Instant::now();
            for _ in 0..5 {
                f();
            }
            let s = t.elapsed().as_secs_f64() / 5.0;
            println!("{name}: {:.1} ms, {:.1} GFLOP/s", s * 1e3, 2.0 * (m * k * n) as f64 / s / 1e9);
        };
        time("fwd cols·wᵀ", &|| cols.matmul(&w.t().unwrap()).unwrap());
        time("fwd (w·colsᵀ)", &|| w.matmul(&cols.t().unwrap()).unwrap());
        time("dw colsᵀ·g", &|| cols.t().unwrap().matmul(&g).unwrap());
        time("dw gᵀ·cols", &|| g.t().unwrap().matmul(&cols).unwrap());
        time("dcols g·w", &|| g.matmul(&w).unwrap());
    }
}

/// The NHWC depthwise convolution against candle's grouped conv2d, forward and both gradients,
/// including images smaller than the kernel (ConvNeXt's 3×3 and 1×1 stages under a 7×7 kernel).
#[test]
fn depthwise_matches_candle_forward_and_gradients() {
    let dev = Device::Cpu;
    for &(n, c, h, w, k) in &[(2, 5, 9, 7, 7), (3, 4, 3, 3, 7), (2, 3, 1, 1, 7), (1, 6, 5, 6, 3)] {
        let what = format!("n{n} c{c} {h}x{w} k{k}");
        let x = Var::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap();
        let wt = Var::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
        let reference = x.as_tensor().conv2d(wt.as_tensor(), k / 2, 1, 1, c).unwrap();
        let xn = x.as_tensor().permute((0, 2, 3, 1)).unwrap();
        let ours = depthwise_nhwc(&xn, wt.as_tensor()).unwrap().permute((0, 3, 1, 2)).unwrap();
        close(&ours, &reference, 1e-4, &format!("{what} forward"));
        let r = Tensor::randn(0f32, 1.0, reference.shape(), &dev).unwrap();
        let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (var, name) in [(&x, "d input"), (&wt, "d weight")] {
            close(
                go.get(var.as_tensor()).unwrap(),
                gr.get(var.as_tensor()).unwrap(),
                1e-4,
                &format!("{what} {name}"),
            );
        }
    }
}

/// LayerNorm over the last dimension and GRN against their compositions of candle ops (the
/// inference reference's formulas), forward and every gradient.
#[test]
fn layer_norm_and_grn_match_candle_ops() {
    let dev = Device::Cpu;
    let eps = 1e-6f32;
    for &(n, h, w, c) in &[(2, 3, 4, 5), (3, 1, 1, 8), (1, 7, 7, 16)] {
        let what = format!("n{n} {h}x{w} c{c}");
        let x = Var::randn(0f32, 1.0, (n, h, w, c), &dev).unwrap();
        let g = Var::randn(0f32, 1.0, c, &dev).unwrap();
        let b = Var::randn(0f32, 1.0, c, &dev).unwrap();
        let xt = x.as_tensor();
        let ln_ref = {
            let centred = xt.broadcast_sub(&xt.mean_keepdim(3).unwrap()).unwrap();
            let var = centred.sqr().unwrap().mean_keepdim(3).unwrap();
            let y = centred.broadcast_div(&(var + f64::from(eps)).unwrap().sqrt().unwrap()).unwrap();
            y.broadcast_mul(g.as_tensor()).unwrap().broadcast_add(b.as_tensor()).unwrap()
        };
        let grn_ref = {
            let gx = xt.sqr().unwrap().sum_keepdim((1, 2)).unwrap().sqrt().unwrap();
            let nx = gx.broadcast_div(&(gx.mean_keepdim(3).unwrap() + f64::from(eps)).unwrap()).unwrap();
            let scaled = xt.broadcast_mul(&nx).unwrap().broadcast_mul(g.as_tensor()).unwrap();
            (xt + scaled).unwrap().broadcast_add(b.as_tensor()).unwrap()
        };
        let ln = layer_norm_last(xt, g.as_tensor(), b.as_tensor(), eps).unwrap();
        let grn = grn_nhwc(xt, g.as_tensor(), b.as_tensor(), eps, 0.0).unwrap();
        for (ours, reference, op) in [(ln, ln_ref, "layer norm"), (grn, grn_ref, "grn")] {
            close(&ours, &reference, 1e-4, &format!("{what} {op} forward"));
            let r = Tensor::randn(0f32, 1.0, reference.shape(), &dev).unwrap();
            let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (var, name) in [(&x, "d input"), (&g, "d scale"), (&b, "d shift")] {
                let (a, e) = (go.get(var.as_tensor()).unwrap(), gr.get(var.as_tensor()).unwrap());
                close(a, e, 1e-3, &format!("{what} {op} {name}"));
            }
        }
    }
}
