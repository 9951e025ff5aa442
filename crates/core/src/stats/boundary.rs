//! §1 of statistics.md: the two-sided normal-mixture boundary shared by
//! every check, and its inverse for §4's time to decision.

/// Half-width `h(V; τ, α)` of the normal-mixture confidence sequence (§1):
/// `sqrt(V·(1 + V/τ²)·(2·ln(1/α) + ln(1 + τ²/V)))`.
///
/// `v` is the variance of the estimate (SE²), `tau` the sd of the mixing
/// distribution on the effect's scale (we pass the margin, §1 "Choosing τ"),
/// `alpha` the two-sided level. `h = 0` when `v = 0`: no variance, no
/// uncertainty, and the formula itself would be `0 · ∞`.
pub fn h(v: f64, tau: f64, alpha: f64) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    let tau2 = tau * tau;
    (v * (1.0 + v / tau2) * (2.0 * (1.0 / alpha).ln() + (1.0 + tau2 / v).ln())).sqrt()
}

/// `c_α = 2·ln(1/α) + ln(1 + 2·ln(1/α))`: the CS is tightest at variance
/// `V_opt` when `τ² = c_α·V_opt` (§1, Howard's `best_rho`).
pub fn c_alpha(alpha: f64) -> f64 {
    let l = 2.0 * (1.0 / alpha).ln();
    l + (1.0 + l).ln()
}

/// §4 brackets ln V* in [−80, 20] and halves it 200 times; `h` increases
/// with V, so bisection cannot miss.
const LN_V_RANGE: (f64, f64) = (-80.0, 20.0);
const BISECTIONS: usize = 200;

/// The variance `V*` at which `h(V*) = d` (§4), by bisection on ln V.
pub(super) fn variance_for_half_width(d: f64, tau: f64, alpha: f64) -> f64 {
    let (mut lo, mut hi) = LN_V_RANGE;
    for _ in 0..BISECTIONS {
        let mid = 0.5 * (lo + hi);
        if h(mid.exp(), tau, alpha) < d {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inverse_finds_the_variance_it_came_from() {
        for v in [1e-9, 1e-6, 2.5e-4, 0.1] {
            let d = h(v, 0.005, 0.05);
            let found = variance_for_half_width(d, 0.005, 0.05);
            assert!((found / v - 1.0).abs() < 1e-12, "{v}: {found}");
        }
    }
}
