//! The nested sample of pairs. A record is in the sample when a hash of its
//! pairing key falls under the step's rate, so a record in this tick's
//! sample is in every later tick's sample of the same step: the evidence
//! only grows, as the always-valid sequences need. The hash is FNV-1a with
//! MurmurHash3's finalizer, the same on every machine and every run.

/// The key's place in [0, 1).
pub fn key_position(key: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's high bits barely move between keys that differ in their last
    // characters (req-1, req-2): MurmurHash3's finalizer spreads them.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    // The top 53 bits, as a double in [0, 1).
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the record with this key is in a sample taken at `rate`.
pub fn in_sample(key: &str, rate: f64) -> bool {
    rate >= 1.0 || key_position(key) < rate
}

/// The rate that keeps a step's expected records under `cap`: fixed when
/// the step starts (from production's traffic before it, like the latency
/// period), so that it does not move while the step runs.
pub fn rate_for(cap_records: u64, expected_records: f64) -> f64 {
    if expected_records.is_nan() || expected_records <= 0.0 {
        return 1.0;
    }
    (cap_records as f64 / expected_records).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_rate_samples_a_subset() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("req-{i}")).collect();
        let low: Vec<&String> = keys.iter().filter(|k| in_sample(k, 0.1)).collect();
        let high: Vec<&String> = keys.iter().filter(|k| in_sample(k, 0.3)).collect();
        assert!(low.iter().all(|k| in_sample(k, 0.3)), "nested");
        // Close to the rates (binomial sd at 20 000 draws is under 0.4 pt).
        let share = |n: usize| n as f64 / keys.len() as f64;
        assert!(
            (share(low.len()) - 0.1).abs() < 0.01,
            "{}",
            share(low.len())
        );
        assert!(
            (share(high.len()) - 0.3).abs() < 0.015,
            "{}",
            share(high.len())
        );
        assert!(keys.iter().all(|k| in_sample(k, 1.0)));
        assert_eq!(key_position("req-1"), key_position("req-1"));
    }

    #[test]
    fn the_rate_keeps_the_expected_records_under_the_cap() {
        assert_eq!(rate_for(10_000, 5_000.0), 1.0);
        assert_eq!(rate_for(10_000, 40_000.0), 0.25);
        assert_eq!(rate_for(10_000, 0.0), 1.0);
        assert_eq!(rate_for(10_000, f64::NAN), 1.0);
    }
}
