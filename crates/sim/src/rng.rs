//! Reproducible randomness. Every number the simulator draws comes from a
//! ChaCha8 keystream keyed by the scenario seed and by what is being drawn
//! (which stream, which minute, which quantity), so answers do not depend on
//! the order of queries. The conversions to uniforms and the distributions
//! are written here rather than taken from `rand`, whose algorithms may change
//! between versions: committed results depend only on ChaCha8 and this file.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// FNV-1a, 64 bits: a stable hash for names (std's hasher is unspecified).
pub fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finaliser: spreads the bits of its input.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a random stream is drawn for; part of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    Traffic = 1,
    Errors = 2,
    ModelLatency = 3,
    OverheadLatency = 4,
    /// Production's captured requests of a minute: times, ids, inputs, answers.
    CaptureRequests = 5,
    /// Which of them the shadow got, and how its copies differ.
    CaptureCopies = 6,
    /// A capture file's name.
    CaptureFile = 7,
}

/// A generator for one (seed, stream, minute, purpose).
pub struct Draws {
    rng: ChaCha8Rng,
}

impl Draws {
    pub fn new(seed: u64, stream: u64, minute: i64, purpose: Purpose) -> Self {
        let mut state = mix(seed ^ mix(stream ^ mix(minute as u64 ^ mix(purpose as u64))));
        let mut key = [0u8; 32];
        for chunk in key.chunks_exact_mut(8) {
            state = mix(state);
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        Self {
            rng: ChaCha8Rng::from_seed(key),
        }
    }

    /// Uniform in the open interval (0, 1), from the top 53 bits.
    pub fn uniform(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// The raw 64 bits, for callers that split them.
    pub fn bits(&mut self) -> u64 {
        self.rng.next_u64()
    }

    pub fn normal(&mut self) -> f64 {
        inverse_normal_cdf(self.uniform())
    }

    /// Poisson with the given mean: inversion below 30, a rounded normal above.
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean.is_nan() || mean <= 0.0 {
            return 0;
        }
        if mean < 30.0 {
            let u = self.uniform();
            let mut k = 0u64;
            let mut p = (-mean).exp();
            let mut cdf = p;
            while u > cdf && k < 1000 {
                k += 1;
                p *= mean / k as f64;
                cdf += p;
            }
            k
        } else {
            (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64
        }
    }

    /// Binomial(n, p): inversion when the mean of the rarer outcome is small,
    /// a rounded normal otherwise.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p.is_nan() || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        let nf = n as f64;
        let mean = nf * p;
        if mean < 20.0 {
            let u = self.uniform();
            let ratio = p / (1.0 - p);
            let mut k = 0u64;
            let mut pk = (nf * (1.0 - p).ln()).exp();
            let mut cdf = pk;
            while u > cdf && k < n {
                pk *= (nf - k as f64) / (k as f64 + 1.0) * ratio;
                k += 1;
                cdf += pk;
                if pk < 1e-300 && cdf < u {
                    break;
                }
            }
            k
        } else {
            let sd = (mean * (1.0 - p)).sqrt();
            (mean + sd * self.normal()).round().clamp(0.0, nf) as u64
        }
    }
}

/// The inverse of the standard normal CDF (P. J. Acklam's rational
/// approximation, relative error below 1.2e-9).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// The standard normal CDF (Abramowitz–Stegun 7.1.26 via erf; absolute error
/// below 1.5e-7), enough to weigh histogram buckets.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

fn erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    sign * y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_numbers_other_key_other_numbers() {
        let a: Vec<u64> = (0..4)
            .map(|_| Draws::new(7, 1, 2, Purpose::Traffic).rng.next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut b = Draws::new(7, 1, 3, Purpose::Traffic);
        assert_ne!(a[0], b.rng.next_u64());
    }

    #[test]
    fn pinned_first_value_survives_upgrades() {
        // If this changes, every committed simulation result changes with it.
        let mut draws = Draws::new(42, fnv1a("endpoint/variant"), 1_000, Purpose::Traffic);
        let first = draws.rng.next_u64();
        assert_eq!(
            first, PINNED,
            "ChaCha8 keystream or key derivation changed: {first:#x}"
        );
    }
    const PINNED: u64 = 0xd1a8_c3e5_1be3_9663;

    #[test]
    fn distributions_have_their_means() {
        let mut draws = Draws::new(1, 2, 3, Purpose::Errors);
        let n = 20_000;
        for (mean, name) in [
            (0.7, "poisson small"),
            (12.0, "poisson mid"),
            (400.0, "poisson large"),
        ] {
            let total: u64 = (0..n).map(|_| draws.poisson(mean)).sum();
            let observed = total as f64 / n as f64;
            assert!(
                (observed - mean).abs() < 0.03 * mean + 0.02,
                "{name}: {observed} vs {mean}"
            );
        }
        for (trials, p) in [(50u64, 0.01), (1000, 0.3), (80, 0.9), (5, 0.5)] {
            let total: u64 = (0..n).map(|_| draws.binomial(trials, p)).sum();
            let observed = total as f64 / n as f64;
            let mean = trials as f64 * p;
            assert!(
                (observed - mean).abs() < 0.03 * mean + 0.02,
                "binomial({trials}, {p}): {observed} vs {mean}"
            );
        }
        let zs: Vec<f64> = (0..n).map(|_| draws.normal()).collect();
        let mean = zs.iter().sum::<f64>() / n as f64;
        let var = zs.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "normal: mean {mean} var {var}"
        );
    }

    #[test]
    fn normal_cdf_inverts() {
        for p in [0.001, 0.05, 0.5, 0.9, 0.99, 0.999] {
            let back = normal_cdf(inverse_normal_cdf(p));
            assert!((back - p).abs() < 1e-6, "{p} -> {back}");
        }
    }
}
