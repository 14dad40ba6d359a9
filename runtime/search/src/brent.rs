//! Bounded scalar minimisation by Brent's method (golden section + parabolic interpolation).
//!
//! This follows the algorithm of SciPy's `minimize_scalar(method='bounded')` (fminbound) step
//! for step, because onepass must reproduce DyCE's published search, which used it.

/// Result of [`brent_minimize`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrentResult {
    /// Best abscissa found.
    pub x: f64,
    /// Function value at `x`.
    pub fun: f64,
    /// Number of function evaluations made.
    pub nfev: usize,
}

/// Minimises `f` over `[a, b]` to absolute tolerance `xatol`, with at most `max_iter` evaluations.
///
/// Same semantics as SciPy's bounded method (`xatol` default there is 1e-5, `maxiter` 500): the
/// endpoints themselves are never evaluated, the first probe is the golden-section point.
///
/// # Panics
/// If a bound is not finite or `a > b`.
pub fn brent_minimize<F: FnMut(f64) -> f64>(
    mut f: F,
    a: f64,
    b: f64,
    xatol: f64,
    max_iter: usize,
) -> BrentResult {
    assert!(a.is_finite() && b.is_finite(), "brent_minimize: bounds must be finite");
    assert!(a <= b, "brent_minimize: lower bound exceeds upper bound");
    let sqrt_eps = 2.2e-16f64.sqrt();
    let golden = 0.5 * (3.0 - 5.0f64.sqrt());
    let (mut a, mut b) = (a, b);
    // x: best so far; w: second best; v: previous w (SciPy's xf, nfc, fulc).
    let mut v = a + golden * (b - a);
    let mut w = v;
    let mut x = v;
    let (mut rat, mut e) = (0.0f64, 0.0f64);
    let mut fx = f(x);
    let mut nfev = 1;
    let (mut fv, mut fw) = (fx, fx);
    let mut xm = 0.5 * (a + b);
    let mut tol1 = sqrt_eps * x.abs() + xatol / 3.0;
    let mut tol2 = 2.0 * tol1;

    while (x - xm).abs() > tol2 - 0.5 * (b - a) {
        let mut use_golden = true;
        if e.abs() > tol1 {
            // Try a parabola through (x, w, v).
            use_golden = false;
            let mut r = (x - w) * (fx - fv);
            let mut q = (x - v) * (fx - fw);
            let mut p = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            }
            q = q.abs();
            r = e;
            e = rat;
            if p.abs() < (0.5 * q * r).abs() && p > q * (a - x) && p < q * (b - x) {
                rat = p / q;
                let u = x + rat;
                // Do not evaluate too close to the bounds.
                if (u - a) < tol2 || (b - u) < tol2 {
                    rat = tol1 * sign_or_one(xm - x);
                }
            } else {
                use_golden = true;
            }
        }
        if use_golden {
            e = if x >= xm { a - x } else { b - x };
            rat = golden * e;
        }
        let u = x + sign_or_one(rat) * rat.abs().max(tol1);
        let fu = f(u);
        nfev += 1;
        if fu <= fx {
            if u >= x {
                a = x;
            } else {
                b = x;
            }
            v = w;
            fv = fw;
            w = x;
            fw = fx;
            x = u;
            fx = fu;
        } else {
            if u < x {
                a = u;
            } else {
                b = u;
            }
            if fu <= fw || w == x {
                v = w;
                fv = fw;
                w = u;
                fw = fu;
            } else if fu <= fv || v == x || v == w {
                v = u;
                fv = fu;
            }
        }
        xm = 0.5 * (a + b);
        tol1 = sqrt_eps * x.abs() + xatol / 3.0;
        tol2 = 2.0 * tol1;
        if nfev >= max_iter {
            break;
        }
    }
    BrentResult { x, fun: fx, nfev }
}

/// `np.sign(d) + (d == 0)`: the sign, with zero counted as positive.
fn sign_or_one(d: f64) -> f64 {
    if d < 0.0 {
        -1.0
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_interior_minimum_of_a_parabola() {
        let r = brent_minimize(|x| (x - 0.3) * (x - 0.3) + 2.0, 0.0, 1.0, 1e-5, 500);
        assert!((r.x - 0.3).abs() < 1e-5, "{r:?}");
        assert!((r.fun - 2.0).abs() < 1e-9);
        // Parabolic steps make a quadratic converge in a handful of evaluations.
        assert!(r.nfev < 12, "{r:?}");
    }

    #[test]
    fn finds_kink_and_smooth_minima() {
        let r = brent_minimize(|x| (x - 0.7).abs(), 0.0, 1.0, 1e-5, 500);
        assert!((r.x - 0.7).abs() < 2e-5, "{r:?}");
        let r = brent_minimize(f64::sin, 0.0, 2.0 * std::f64::consts::PI, 1e-8, 500);
        assert!((r.x - 1.5 * std::f64::consts::PI).abs() < 1e-6, "{r:?}");
        assert!((r.fun + 1.0).abs() < 1e-12);
    }

    #[test]
    fn monotone_function_goes_to_the_bound() {
        let r = brent_minimize(|x| x, 0.0, 1.0, 1e-5, 500);
        assert!(r.x < 1e-4 && r.x > 0.0, "{r:?}");
        let r = brent_minimize(|x| -x, 0.0, 1.0, 1e-5, 500);
        assert!(r.x > 1.0 - 1e-4 && r.x < 1.0, "{r:?}");
    }

    #[test]
    fn respects_max_iter_and_degenerate_interval() {
        let mut calls = 0;
        let r = brent_minimize(
            |x| {
                calls += 1;
                (x - 0.123).powi(2)
            },
            0.0,
            1.0,
            1e-12,
            5,
        );
        assert_eq!(r.nfev, 5);
        assert_eq!(calls, 5);
        let r = brent_minimize(|x| x * x, 0.5, 0.5, 1e-5, 500);
        assert_eq!(r.x, 0.5);
        assert_eq!(r.nfev, 1);
    }
}
