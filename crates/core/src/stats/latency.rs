//! §3 of statistics.md: the log ratio of a latency quantile, shadow over
//! production, averaged over periods long enough that the shadow's sample
//! quantile is nearly unbiased.

use super::{information_needed, needs, Decision, Inconclusive, Interval, TimeToDecision};

/// The periods CloudWatch can aggregate over, shortest first (§3, Period).
const PERIODS_SECS: [u32; 7] = [60, 120, 300, 600, 900, 1800, 3600];

/// The knobs of §3, defaults from §5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyParams {
    /// `p`, in (0, 1): 0.99 for p99.
    pub quantile: f64,
    /// The ratio the shadow may reach, 1.2 for "≤ 1.2 × production"; its
    /// logarithm is both the margin and `τ`.
    pub limit: f64,
    /// Two-sided level of the check.
    pub alpha: f64,
    /// `c`: each period's log ratio is clipped to `±c`; `None` does not clip.
    pub clip: Option<f64>,
    /// Fewer eligible periods than this is insufficient.
    pub min_periods: usize,
    /// Floor of `s`, so quantised values cannot give zero variance.
    pub min_sd: f64,
}

impl Default for LatencyParams {
    /// p99, limit 1.2, α = 0.05, c = ln 4, n ≥ 10, s ≥ 0.05 (§5).
    fn default() -> Self {
        Self {
            quantile: 0.99,
            limit: 1.2,
            alpha: 0.05,
            clip: Some(4f64.ln()),
            min_periods: 10,
            min_sd: 0.05,
        }
    }
}

/// The constants of a quantile `p` (§3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantileTerms {
    pub p: f64,
    /// `z_p = Φ⁻¹(p)`.
    pub z: f64,
    /// `k_p = (2p−1)/φ(z_p) − p(1−p)z_p/(2φ(z_p)²)`, the order-statistic
    /// bias coefficient: `E[ln sample quantile] ≈ ln Q(p) − σ·k_p/m`.
    pub k: f64,
    /// `m_target(p) = max(10, ⌈5/(1−p)⌉)` requests per period.
    pub m_target: f64,
}

impl QuantileTerms {
    /// `p` must lie in (0, 1); the policy validates it.
    pub fn new(p: f64) -> Self {
        let z = normal_quantile(p);
        let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let k = (2.0 * p - 1.0) / density - p * (1.0 - p) * z / (2.0 * density * density);
        // 1 − 0.9 is 0.09999999999999998 in binary, which would make p90's
        // target 51; the tolerance keeps §3's 50 (and 500, 100, 10).
        let m_target = (5.0 / (1.0 - p) - 1e-9).ceil().max(10.0);
        Self { p, z, k, m_target }
    }

    /// Whether a period expected to hold `expected` shadow requests holds
    /// `m_target`. The expectation comes from a measured rate, and a
    /// period's own count varies by about √m_target around it, so one such
    /// deviation is forgiven: at exactly 100 requests a minute (1000 at
    /// 10 %) a p99's five-minute periods were otherwise chosen or not on
    /// the noise of the hour the rate came from, doubling the time to FAIL
    /// for half the copies of `proof p99-1.5x`.
    pub fn period_holds_target(&self, expected: f64) -> bool {
        expected >= self.m_target - self.m_target.sqrt()
    }
}

/// §3: the shortest period in which the shadow, at `shadow_per_minute`
/// requests a minute, sees `m_target(p)` requests. When even an hour is too
/// short, an hour: its periods then fall short of eligibility and the check
/// reads insufficient rather than trusting a biased quantile.
pub fn period_secs(shadow_per_minute: f64, p: f64) -> u32 {
    let terms = QuantileTerms::new(p);
    PERIODS_SECS
        .into_iter()
        .find(|&secs| terms.period_holds_target(shadow_per_minute * f64::from(secs) / 60.0))
        .unwrap_or(PERIODS_SECS[PERIODS_SECS.len() - 1])
}

/// One period's quantile and SampleCount for both variants, and
/// production's median (for its tail scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyPeriod {
    pub shadow_quantile: f64,
    pub shadow_count: f64,
    pub production_quantile: f64,
    pub production_count: f64,
    pub production_median: f64,
}

impl LatencyPeriod {
    /// `(q_s, m_s, q_p, m_p, q50_p)`, the order §6 writes periods in.
    pub const fn new(
        shadow_quantile: f64,
        shadow_count: f64,
        production_quantile: f64,
        production_count: f64,
        production_median: f64,
    ) -> Self {
        Self {
            shadow_quantile,
            shadow_count,
            production_quantile,
            production_count,
            production_median,
        }
    }

    /// `r_j` (§3), or `None` when the period is not eligible: fewer than
    /// `m_target/2` requests on either side, or a quantile that is not
    /// positive. The bias term needs `σ̂`, so when `k_p ≠ 0` a period whose
    /// production median is not positive is not eligible either; for p50
    /// (`k_p = 0`) the median is not read, as `ln(q_p/q50_p)/z_p` is 0/0.
    pub fn log_ratio(&self, terms: &QuantileTerms, clip: Option<f64>) -> Option<f64> {
        let enough = terms.m_target / 2.0;
        let eligible = self.shadow_count >= enough
            && self.production_count >= enough
            && positive(self.shadow_quantile)
            && positive(self.production_quantile)
            && (terms.k == 0.0 || positive(self.production_median));
        if !eligible {
            return None;
        }
        let bias = if terms.k == 0.0 {
            0.0
        } else {
            // Production's own log-tail scale: ln(q_p/q50_p) = σ·z_p for a
            // log-normal tail; clamped so one odd period cannot dominate.
            let sigma = ((self.production_quantile / self.production_median).ln() / terms.z)
                .clamp(0.0, 2.0);
            sigma * terms.k * (1.0 / self.shadow_count - 1.0 / self.production_count)
        };
        let r = (self.shadow_quantile / self.production_quantile).ln() + bias;
        Some(match clip {
            Some(c) => r.clamp(-c, c),
            None => r,
        })
    }
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// The interval of §3 and the spread behind it, which §4 needs again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyEstimate {
    /// `r̄`, `V = s²/n`, `h(V; τ = ln limit, α)`, `lo`, `hi` on the log scale.
    pub interval: Interval,
    /// `s²`, floored at `min_sd²`.
    pub spread: f64,
    /// `exp(lo)` and `exp(hi)`: the interval as ratios, for reports.
    pub ratio_lo: f64,
    pub ratio_hi: f64,
}

/// What the latency check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyEvidence {
    /// Periods given, and `n`, those eligible.
    pub periods: usize,
    pub eligible: usize,
    /// `None` without an eligible period.
    pub estimate: Option<LatencyEstimate>,
    pub decision: Decision,
}

/// §3: the eligible periods' log ratios, `r̄ ± h(s²/n)`, and the decision.
/// Unweighted: between-period variation does not shrink with count.
pub fn assess(periods: &[LatencyPeriod], params: &LatencyParams) -> LatencyEvidence {
    let terms = QuantileTerms::new(params.quantile);
    let ratios: Vec<f64> = periods
        .iter()
        .filter_map(|period| period.log_ratio(&terms, params.clip))
        .collect();
    let eligible = ratios.len();
    let estimate = estimate(&ratios, params);
    let decision = match &estimate {
        Some(estimate) if eligible >= params.min_periods => {
            estimate.interval.against(params.limit.ln())
        }
        _ => Decision::Inconclusive(Inconclusive::Insufficient),
    };
    LatencyEvidence {
        periods: periods.len(),
        eligible,
        estimate,
        decision,
    }
}

/// Running sums of eligible log ratios: sequences that start at different
/// times share one pass over the periods, each its suffix of the sums.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RatioSums {
    pub n: usize,
    pub sum: f64,
    pub sum_sq: f64,
}

impl RatioSums {
    pub fn add(&mut self, r: f64) {
        self.n += 1;
        self.sum += r;
        self.sum_sq += r * r;
    }
}

/// §3 from sums: the same interval and decision as [`assess`] over the
/// ratios summed.
pub fn assess_sums(sums: RatioSums, params: &LatencyParams) -> LatencyEvidence {
    let estimate = estimate_from(sums, params);
    let decision = match &estimate {
        Some(estimate) if sums.n >= params.min_periods => {
            estimate.interval.against(params.limit.ln())
        }
        _ => Decision::Inconclusive(Inconclusive::Insufficient),
    };
    LatencyEvidence {
        periods: sums.n,
        eligible: sums.n,
        estimate,
        decision,
    }
}

fn estimate_from(sums: RatioSums, params: &LatencyParams) -> Option<LatencyEstimate> {
    if sums.n == 0 {
        return None;
    }
    let n = sums.n as f64;
    let mean = sums.sum / n;
    // One period has no sample variance; the floor stands in for it (the
    // check is insufficient then anyway). Ratios are clipped to ±ln 4, so
    // the one-pass form loses nothing that matters to cancellation.
    let sample = if sums.n > 1 {
        ((sums.sum_sq - n * mean * mean) / (n - 1.0)).max(0.0)
    } else {
        0.0
    };
    finish(mean, sample, n, params)
}

fn estimate(ratios: &[f64], params: &LatencyParams) -> Option<LatencyEstimate> {
    if ratios.is_empty() {
        return None;
    }
    let n = ratios.len() as f64;
    let mean = ratios.iter().sum::<f64>() / n;
    // One period has no sample variance; the floor stands in for it (the
    // check is insufficient then anyway).
    let sample = if ratios.len() > 1 {
        ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    finish(mean, sample, n, params)
}

fn finish(mean: f64, sample: f64, n: f64, params: &LatencyParams) -> Option<LatencyEstimate> {
    let spread = sample.max(params.min_sd * params.min_sd);
    let interval = Interval::around(mean, spread / n, params.limit.ln(), params.alpha);
    Some(LatencyEstimate {
        interval,
        spread,
        ratio_lo: interval.lo.exp(),
        ratio_hi: interval.hi.exp(),
    })
}

impl LatencyEstimate {
    /// §4 at `d = |r̄ − ln limit|`: extra eligible periods `Δn = s²(1/V* −
    /// 1/V)` and the minutes they take at `period_secs`, the period
    /// re-chosen for the candidate sampling ([`period_secs`] at
    /// `λ_s·f′/f`).
    pub fn time_to_decision(&self, params: &LatencyParams, period_secs: u32) -> TimeToDecision {
        let d = (self.interval.estimate - params.limit.ln()).abs();
        self.time_at_distance(d, params, period_secs)
    }

    /// §4 `T_parity`: the same at `d = ln limit`.
    pub fn time_to_parity(&self, params: &LatencyParams, period_secs: u32) -> TimeToDecision {
        self.time_at_distance(params.limit.ln(), params, period_secs)
    }

    fn time_at_distance(&self, d: f64, params: &LatencyParams, period_secs: u32) -> TimeToDecision {
        let tau = params.limit.ln();
        match information_needed(d, self.interval.variance, tau, params.alpha) {
            Some(information) => needs(self.spread * information, 60.0 / f64::from(period_secs)),
            None => TimeToDecision::Undecidable,
        }
    }
}

/// `Φ⁻¹(p)` by Wichura's AS241 (PPND16, Appl. Statist. 37, 1988), accurate
/// to about 1e-16: std has no normal quantile, and `k_p` needs `z_p` to more
/// digits than §3 prints. The three rational approximations cover
/// `|p − ½| ≤ 0.425`, then `r = sqrt(−ln min(p, 1−p)) ≤ 5`, then beyond.
#[allow(clippy::excessive_precision)]
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 8] = [
        3.387_132_872_796_366_608,
        1.331_416_678_917_843_774_5e2,
        1.971_590_950_306_551_442_7e3,
        1.373_169_376_550_946_112_5e4,
        4.592_195_393_154_987_145_7e4,
        6.726_577_092_700_870_085_3e4,
        3.343_057_558_358_812_810_5e4,
        2.509_080_928_730_122_672_7e3,
    ];
    const B: [f64; 8] = [
        1.0,
        4.231_333_070_160_091_125_2e1,
        6.871_870_074_920_579_083e2,
        5.394_196_021_424_751_107_7e3,
        2.121_379_430_158_659_586_7e4,
        3.930_789_580_009_271_061e4,
        2.872_908_573_572_194_267_4e4,
        5.226_495_278_852_854_561e3,
    ];
    const C: [f64; 8] = [
        1.423_437_110_749_683_577_34,
        4.630_337_846_156_545_295_9,
        5.769_497_221_460_691_405_5,
        3.647_848_324_763_204_605_04,
        1.270_458_252_452_368_382_58,
        2.417_807_251_774_506_117_7e-1,
        2.272_384_498_926_918_458_33e-2,
        7.745_450_142_783_414_076_4e-4,
    ];
    const D: [f64; 8] = [
        1.0,
        2.053_191_626_637_758_821_87,
        1.676_384_830_183_803_849_4,
        6.897_673_349_851_000_045_5e-1,
        1.481_039_764_274_800_745_9e-1,
        1.519_866_656_361_645_719_66e-2,
        5.475_938_084_995_344_946e-4,
        1.050_750_071_644_416_843_24e-9,
    ];
    const E: [f64; 8] = [
        6.657_904_643_501_103_777_2,
        5.463_784_911_164_114_369_9,
        1.784_826_539_917_291_335_8,
        2.965_605_718_285_048_912_3e-1,
        2.653_218_952_657_612_309_3e-2,
        1.242_660_947_388_078_438_6e-3,
        2.711_555_568_743_487_578_15e-5,
        2.010_334_399_292_288_132_65e-7,
    ];
    const F: [f64; 8] = [
        1.0,
        5.998_322_065_558_879_376_9e-1,
        1.369_298_809_227_358_053_1e-1,
        1.487_536_129_085_061_485_25e-2,
        7.868_691_311_456_132_591e-4,
        1.846_318_317_510_054_681_8e-5,
        1.421_511_758_316_445_888_7e-7,
        2.044_263_103_389_939_785_64e-15,
    ];
    fn ratio(num: &[f64; 8], den: &[f64; 8], x: f64) -> f64 {
        let horner = |c: &[f64; 8]| c.iter().rev().fold(0.0, |acc, &k| acc * x + k);
        horner(num) / horner(den)
    }

    let q = p - 0.5;
    if q.abs() <= 0.425 {
        return q * ratio(&A, &B, 0.180625 - q * q);
    }
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = (-tail.ln()).sqrt();
    let z = if r <= 5.0 {
        ratio(&C, &D, r - 1.6)
    } else {
        ratio(&E, &F, r - 5.0)
    };
    if q < 0.0 {
        -z
    } else {
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quantile_is_symmetric_and_matches_known_points() {
        // Φ⁻¹ at points in each of AS241's three ranges.
        for (p, z) in [
            (0.975, 1.959_963_984_540_054),
            (0.999_999, 4.753_424_308_817_089),
            (1e-9, -5.997_807_015_007_686),
            (1e-300, -37.047_096_299_361_2),
        ] {
            assert!((normal_quantile(p) / z - 1.0).abs() < 1e-14, "{p}");
        }
        for p in [0.01, 0.1, 0.3] {
            assert!((normal_quantile(p) + normal_quantile(1.0 - p)).abs() < 1e-12);
        }
        assert_eq!(normal_quantile(0.5), 0.0);
    }
}
