//! Latency histograms on one fixed logarithmic grid (8 buckets per doubling,
//! from 10 µs to past 100 s), so minutes can be merged into a window and its
//! percentiles read from the merged counts, as CloudWatch does, instead of
//! averaging per-minute percentiles. Within a bucket values are taken as
//! spread geometrically, which keeps percentiles within about 3 % of the
//! exact sample percentiles.

use super::rng::{normal_cdf, Draws};

const PER_DOUBLING: f64 = 8.0;
const LOWEST_US: f64 = 10.0;
/// 10 µs · 2^(187/8) ≈ 107 s.
pub const BUCKETS: usize = 187;
/// Lognormal tails beyond this many standard deviations are cut off (a
/// fraction of about 2e-6 of requests on each side).
const TAIL_SIGMAS: f64 = 4.4;

fn ratio() -> f64 {
    2f64.powf(1.0 / PER_DOUBLING)
}

pub fn lower_edge(bucket: usize) -> f64 {
    LOWEST_US * 2f64.powf(bucket as f64 / PER_DOUBLING)
}

/// The value that stands for every sample in a bucket (its geometric middle).
pub fn middle(bucket: usize) -> f64 {
    LOWEST_US * 2f64.powf((bucket as f64 + 0.5) / PER_DOUBLING)
}

pub fn bucket_of(value_us: f64) -> usize {
    if value_us.is_nan() || value_us <= LOWEST_US {
        return 0;
    }
    ((value_us / LOWEST_US).log2() * PER_DOUBLING)
        .floor()
        .min((BUCKETS - 1) as f64) as usize
}

/// A lognormal latency distribution spread over the grid once, so a minute
/// of samples costs one draw per bucket at most.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketTable {
    first: usize,
    /// Cumulative probability up to and including each bucket; ends at 1.
    cumulative: Vec<f64>,
    /// Probability of each bucket given that the sample is not below it.
    conditional: Vec<f64>,
    /// For each of GUIDE equal slices of [0, 1), the first bucket whose
    /// cumulative probability reaches the slice: a draw starts its search there.
    guide: Vec<u16>,
}

const GUIDE: usize = 1024;
/// Up to this many samples a minute are drawn one by one; above, one
/// binomial per bucket is cheaper.
const DIRECT_MAX: u64 = 160;

impl BucketTable {
    /// `median_us` and `sigma` (the standard deviation of ln latency).
    pub fn lognormal(median_us: f64, sigma: f64) -> Self {
        let mu = median_us.ln();
        let sigma = sigma.max(1e-6);
        let low = bucket_of((mu - TAIL_SIGMAS * sigma).exp());
        let high = bucket_of((mu + TAIL_SIGMAS * sigma).exp());
        let cdf = |x: f64| normal_cdf((x.ln() - mu) / sigma);
        let base = if low == 0 { 0.0 } else { cdf(lower_edge(low)) };
        let top = if high == BUCKETS - 1 {
            1.0
        } else {
            cdf(lower_edge(high + 1))
        };
        let mass = (top - base).max(f64::MIN_POSITIVE);
        let mut cumulative = Vec::with_capacity(high - low + 1);
        for bucket in low..=high {
            let upper = if bucket == high {
                1.0
            } else {
                ((cdf(lower_edge(bucket + 1)) - base) / mass).clamp(0.0, 1.0)
            };
            cumulative.push(upper);
        }
        let mut conditional = Vec::with_capacity(cumulative.len());
        let mut below = 0.0;
        for &upper in &cumulative {
            let remaining = 1.0 - below;
            conditional.push(if remaining > 0.0 {
                ((upper - below) / remaining).clamp(0.0, 1.0)
            } else {
                1.0
            });
            below = upper;
        }
        let guide = (0..GUIDE)
            .map(|slice| {
                let u = slice as f64 / GUIDE as f64;
                cumulative
                    .partition_point(|&c| c <= u)
                    .min(cumulative.len() - 1) as u16
            })
            .collect();
        Self {
            first: low,
            cumulative,
            conditional,
            guide,
        }
    }

    /// A multinomial draw of `n` samples over the buckets.
    pub fn sample(&self, n: u64, draws: &mut Draws) -> MinuteHistogram {
        let mut counts = vec![0u32; self.cumulative.len()];
        if n == 0 {
            return MinuteHistogram::default();
        }
        let last = counts.len() - 1;
        if n <= DIRECT_MAX.min(2 * counts.len() as u64) {
            // Two 32-bit uniforms per draw of 64 bits: 2^-32 resolves the
            // tails far finer than where they are cut.
            let mut left = n;
            while left > 0 {
                let bits = draws.bits();
                let pair = [bits >> 32, bits & 0xffff_ffff];
                for &half in pair.iter().take(left.min(2) as usize) {
                    let u = (half as f64 + 0.5) * (1.0 / 4_294_967_296.0);
                    let mut index = usize::from(self.guide[(half >> 22) as usize]);
                    while index < last && self.cumulative[index] < u {
                        index += 1;
                    }
                    counts[index] += 1;
                }
                left = left.saturating_sub(2);
            }
        } else {
            let mut remaining = n;
            for (index, &q) in self.conditional.iter().enumerate() {
                if remaining == 0 {
                    break;
                }
                let count = if index == last {
                    remaining
                } else {
                    draws.binomial(remaining, q)
                };
                counts[index] = count as u32;
                remaining -= count;
            }
        }
        MinuteHistogram::trimmed(self.first, counts)
    }
}

/// One minute of latency samples: counts over a contiguous run of buckets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MinuteHistogram {
    first: usize,
    counts: Vec<u32>,
}

impl MinuteHistogram {
    fn trimmed(first: usize, counts: Vec<u32>) -> Self {
        let Some(start) = counts.iter().position(|&c| c > 0) else {
            return Self::default();
        };
        let end = counts.iter().rposition(|&c| c > 0).map_or(start, |e| e + 1);
        Self {
            first: first + start,
            counts: counts[start..end].to_vec(),
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }
}

/// Samples of several minutes merged, dense over the grid.
#[derive(Debug, Clone)]
pub struct WindowHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for WindowHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl WindowHistogram {
    pub fn add(&mut self, minute: &MinuteHistogram) {
        for (offset, &count) in minute.counts.iter().enumerate() {
            self.counts[minute.first + offset] += u64::from(count);
            self.total += u64::from(count);
        }
    }

    /// Takes out a minute that was added before.
    pub fn subtract(&mut self, minute: &MinuteHistogram) {
        for (offset, &count) in minute.counts.iter().enumerate() {
            self.counts[minute.first + offset] -= u64::from(count);
            self.total -= u64::from(count);
        }
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn sum(&self) -> f64 {
        self.counts
            .iter()
            .enumerate()
            .map(|(b, &c)| c as f64 * middle(b))
            .sum()
    }

    pub fn average(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum() / self.total as f64)
    }

    pub fn minimum(&self) -> Option<f64> {
        self.counts.iter().position(|&c| c > 0).map(middle)
    }

    pub fn maximum(&self) -> Option<f64> {
        self.counts.iter().rposition(|&c| c > 0).map(middle)
    }

    /// The value below which `percent` % of the samples lie.
    pub fn percentile(&self, percent: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = (percent / 100.0 * self.total as f64).clamp(0.0, self.total as f64);
        let mut below = 0u64;
        for (bucket, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if (below + count) as f64 >= rank {
                let fraction = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(lower_edge(bucket) * ratio().powf(fraction));
            }
            below += count;
        }
        self.maximum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::{inverse_normal_cdf, Purpose};
    use super::*;

    #[test]
    fn grid_round_trips() {
        for value in [10.5, 999.0, 40_000.0, 2_500_000.0] {
            let bucket = bucket_of(value);
            assert!(
                lower_edge(bucket) <= value && value < lower_edge(bucket + 1),
                "{value}"
            );
        }
        assert_eq!(bucket_of(1.0), 0);
        assert_eq!(bucket_of(1e12), BUCKETS - 1);
    }

    #[test]
    fn merged_percentiles_match_the_distribution() {
        // median 40 ms, p99 120 ms
        let sigma = (120.0f64 / 40.0).ln() / inverse_normal_cdf(0.99);
        let table = BucketTable::lognormal(40_000.0, sigma);
        let mut window = WindowHistogram::default();
        for minute in 0..200 {
            let mut draws = Draws::new(9, 1, minute, Purpose::ModelLatency);
            let n = if minute % 2 == 0 { 500 } else { 12 };
            let hist = table.sample(n, &mut draws);
            assert_eq!(hist.count(), n);
            window.add(&hist);
        }
        assert_eq!(window.count(), 100 * 512);
        let p50 = window.percentile(50.0).unwrap();
        let p99 = window.percentile(99.0).unwrap();
        assert!((p50 / 40_000.0 - 1.0).abs() < 0.03, "p50 {p50}");
        assert!((p99 / 120_000.0 - 1.0).abs() < 0.05, "p99 {p99}");
        let mean = window.average().unwrap();
        let expected = 40_000.0 * (sigma * sigma / 2.0).exp();
        assert!(
            (mean / expected - 1.0).abs() < 0.03,
            "mean {mean} vs {expected}"
        );
        assert!(window.minimum().unwrap() < p50 && window.maximum().unwrap() > p99);
    }

    #[test]
    fn empty_window_has_no_statistics() {
        let window = WindowHistogram::default();
        assert_eq!(window.percentile(99.0), None);
        assert_eq!(window.average(), None);
        assert_eq!(window.maximum(), None);
    }
}
