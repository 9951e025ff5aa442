//! The acceptance vectors of statistics.md §6, to 1e-8 relative, and
//! properties of the statistics that a wrong formula would break.

use proptest::prelude::*;
use shadowpilot_core::stats::boundary::{c_alpha, h};
use shadowpilot_core::stats::errors::{self, ErrorParams, PairedMinute};
use shadowpilot_core::stats::latency::{
    self, period_secs, LatencyParams, LatencyPeriod, QuantileTerms,
};
use shadowpilot_core::stats::{Decision, Inconclusive, TimeToDecision};

/// §6's tolerance.
const REL: f64 = 1e-8;

const PASS: Decision = Decision::Pass;
const FAIL: Decision = Decision::Fail;
const INSUFFICIENT: Decision = Decision::Inconclusive(Inconclusive::Insufficient);
const STRADDLES: Decision = Decision::Inconclusive(Inconclusive::Straddles);

/// Relative closeness; a printed 0 is matched to rounding noise instead,
/// where a relative error is undefined.
#[track_caller]
fn close(what: &str, actual: f64, expected: f64) {
    let ok = if expected == 0.0 {
        actual.abs() < 1e-15
    } else {
        ((actual - expected) / expected).abs() <= REL
    };
    assert!(ok, "{what}: {actual:e}, expected {expected:e}");
}

/// `(n_s, e_s, n_p, e_p)`, a minute as §6 writes it.
type Counts = (f64, f64, f64, f64);

fn minutes(spec: &[(Counts, usize)]) -> Vec<PairedMinute> {
    spec.iter()
        .flat_map(|&((n_s, e_s, n_p, e_p), count)| {
            std::iter::repeat_n(PairedMinute::new(n_s, e_s, n_p, e_p), count)
        })
        .collect()
}

struct ErrorVector {
    id: &'static str,
    minutes: Vec<PairedMinute>,
    difference: f64,
    variance: f64,
    half_width: f64,
    decision: Decision,
}

fn error_vectors() -> Vec<ErrorVector> {
    let v = |id, spec: &[_], difference, variance, half_width, decision| ErrorVector {
        id,
        minutes: minutes(spec),
        difference,
        variance,
        half_width,
        decision,
    };
    vec![
        v(
            "E1",
            &[((100., 1., 1000., 10.), 60)],
            0.0,
            2.6304071875e-6,
            4.9249584374e-3,
            PASS,
        ),
        v(
            "E2",
            &[((100., 0., 1000., 0.), 30)],
            0.0,
            1.6704432297e-6,
            3.9514901120e-3,
            PASS,
        ),
        v(
            "E3",
            &[((100., 3., 1000., 10.), 30)],
            0.02,
            1.0129146692e-5,
            1.0147798953e-2,
            FAIL,
        ),
        v(
            "E4",
            &[
                ((50., 1., 1000., 20.), 1),
                ((100., 3., 1000., 10.), 1),
                ((500., 6., 1000., 5.), 1),
            ],
            0.0084615385,
            3.3058655275e-5,
            2.2432636956e-2,
            INSUFFICIENT,
        ),
        v(
            "E5",
            &[((100., 1., 1000., 6.), 120)],
            0.004,
            9.5702211925e-7,
            3.0385694931e-3,
            STRADDLES,
        ),
        v(
            "E6",
            &[((100., 1., 1000., 10.), 30)],
            0.0,
            5.2666281669e-6,
            7.0250948145e-3,
            STRADDLES,
        ),
    ]
}

#[test]
fn error_vectors_e1_to_e6() {
    let params = ErrorParams::default();
    for vector in error_vectors() {
        let evidence = errors::assess(&vector.minutes, &params);
        let estimate = evidence.estimate.expect(vector.id);
        let interval = estimate.interval;
        let id = vector.id;
        close(&format!("{id} Δ̂"), interval.estimate, vector.difference);
        close(&format!("{id} V"), interval.variance, vector.variance);
        close(&format!("{id} h"), interval.half_width, vector.half_width);
        close(
            &format!("{id} lo"),
            interval.lo,
            vector.difference - vector.half_width,
        );
        close(
            &format!("{id} hi"),
            interval.hi,
            vector.difference + vector.half_width,
        );
        assert_eq!(evidence.decision, vector.decision, "{id}");
    }
}

#[test]
fn e1_passes_with_hi_just_below_the_margin() {
    let evidence = errors::assess(&error_vectors()[0].minutes, &ErrorParams::default());
    let hi = evidence.estimate.unwrap().interval.hi;
    assert!(hi < 0.005 && hi > 0.0049, "{hi}");
}

#[test]
fn e3_fails_at_its_printed_lower_bound() {
    let evidence = errors::assess(&error_vectors()[2].minutes, &ErrorParams::default());
    close("E3 lo", evidence.estimate.unwrap().interval.lo, 9.852201e-3);
    assert_eq!(evidence.counts.shadow_errors, 90.0);
}

#[test]
fn e4_reweights_production_to_the_shadows_minutes() {
    let evidence = errors::assess(&error_vectors()[3].minutes, &ErrorParams::default());
    close("E4 Ê_p", evidence.counts.expected_shadow_errors, 4.5);
    close("E4 Q", evidence.counts.q, 262.5);
    assert_eq!(evidence.counts.shadow_requests, 650.0);
    assert_eq!(evidence.counts.minutes, 3);
}

#[test]
fn e6_time_to_decision_at_four_sampling_fractions() {
    let params = ErrorParams::default();
    let evidence = errors::assess(&error_vectors()[5].minutes, &params);
    let estimate = evidence.estimate.unwrap();
    for (fraction, printed) in [(0.1, "28.3"), (0.2, "15.0"), (0.5, "7.1"), (1.0, "4.4")] {
        let TimeToDecision::Needs { minutes, .. } =
            estimate.time_to_decision(&params, 1000.0, fraction)
        else {
            panic!("E6 at f′ = {fraction}: undecidable");
        };
        assert_eq!(format!("{minutes:.1}"), printed, "E6 at f′ = {fraction}");
    }
    // The estimate is 0, so the time to decide is the time to parity.
    assert_eq!(
        estimate.time_to_decision(&params, 1000.0, 0.1),
        estimate.time_to_parity(&params, 1000.0, 0.1)
    );
}

#[test]
fn too_few_shadow_errors_cannot_fail() {
    let params = ErrorParams {
        min_shadow_errors_to_fail: 100.0,
        ..ErrorParams::default()
    };
    let evidence = errors::assess(&error_vectors()[2].minutes, &params);
    assert_eq!(evidence.decision, INSUFFICIENT);
}

#[test]
fn an_estimate_on_the_margin_is_undecidable() {
    let params = ErrorParams::default();
    let on_margin = minutes(&[((1000., 15., 1000., 10.), 2)]);
    let estimate = errors::assess(&on_margin, &params).estimate.unwrap();
    assert_eq!(estimate.interval.estimate, params.margin);
    assert_eq!(
        estimate.time_to_decision(&params, 1000.0, 1.0),
        TimeToDecision::Undecidable
    );
}

#[test]
fn a_decided_check_needs_nothing_more() {
    let params = ErrorParams::default();
    let estimate = errors::assess(&error_vectors()[2].minutes, &params)
        .estimate
        .unwrap();
    assert_eq!(
        estimate.time_to_decision(&params, 1000.0, 0.1),
        TimeToDecision::Needs {
            extra: 0.0,
            minutes: 0.0
        }
    );
}

#[test]
fn no_minutes_and_no_production_requests_are_insufficient() {
    let params = ErrorParams::default();
    let empty = errors::assess(&[], &params);
    assert_eq!(empty.decision, INSUFFICIENT);
    assert_eq!(empty.estimate, None);

    let silent_production = minutes(&[((100., 1., 0., 0.), 20), ((100., 1., 1000., 10.), 1)]);
    let evidence = errors::assess(&silent_production, &params);
    assert_eq!((evidence.counts.minutes, evidence.counts.skipped), (1, 20));
    assert_eq!(evidence.counts.shadow_requests, 100.0);
    assert_eq!(evidence.decision, INSUFFICIENT);
}

#[test]
fn errors_above_requests_are_clamped() {
    let evidence = errors::assess(
        &minutes(&[((10., 50., 100., 500.), 1)]),
        &ErrorParams::default(),
    );
    assert_eq!(evidence.counts.shadow_errors, 10.0);
    assert_eq!(evidence.counts.production_errors, 100.0);
}

#[test]
fn the_boundarys_core_values() {
    close("h(1e-6, 0.005)", h(1e-6, 0.005, 0.05), 3.101538897e-3);
    close(
        "h(1e-3, ln 1.2)",
        h(1e-3, 1.2f64.ln(), 0.05),
        9.905267230e-2,
    );
    assert_eq!(h(0.0, 0.005, 0.05), 0.0);
    assert_eq!(format!("{:.4}", c_alpha(0.05)), "7.9362");
    assert_eq!(format!("{:.4}", c_alpha(0.01)), "11.5337");
}

#[test]
fn quantile_terms_match_the_printed_digits() {
    for (p, z, k) in [
        (0.99, 2.3263478740, 20.5588106473),
        (0.95, 1.6448536270, 5.0537748664),
        (0.9, 1.2815515655, 2.6860307218),
    ] {
        let terms = QuantileTerms::new(p);
        close(&format!("z {p}"), terms.z, z);
        close(&format!("k {p}"), terms.k, k);
    }
    let median = QuantileTerms::new(0.5);
    assert_eq!((median.z, median.k), (0.0, 0.0));
    let targets: Vec<f64> = [0.99, 0.95, 0.9, 0.5]
        .map(|p| QuantileTerms::new(p).m_target)
        .to_vec();
    assert_eq!(targets, [500.0, 100.0, 50.0, 10.0]);
}

#[test]
fn the_period_is_the_shortest_that_holds_m_target() {
    assert_eq!(period_secs(100.0, 0.99), 300);
    // Within one √m_target of it: the rate is an estimate.
    assert_eq!(period_secs(96.0, 0.99), 300);
    assert_eq!(period_secs(95.0, 0.99), 600);
    assert_eq!(period_secs(500.0, 0.99), 60);
    assert_eq!(period_secs(10.0, 0.5), 60);
    assert_eq!(period_secs(0.1, 0.99), 3600);
    assert_eq!(period_secs(0.0, 0.99), 3600);
}

const Q_P: [f64; 12] = [
    200000., 210000., 190000., 205000., 220000., 195000., 200000., 215000., 198000., 202000.,
    207000., 193000.,
];
const Q50_P: [f64; 12] = [
    80000., 82000., 79000., 81000., 85000., 80000., 80000., 83000., 79000., 81000., 82000., 78000.,
];
const L1: [f64; 12] = [
    210254., 203794., 209982., 205000., 228978., 183644., 216657., 219343., 196030., 214491.,
    213304., 189178.,
];
const L2: [f64; 12] = [
    298365., 329346., 269623., 312002., 321703., 302778., 301364., 308166., 307436., 298350.,
    318212., 279413.,
];
const L3: [f64; 12] = [
    256805., 232086., 236755., 238176., 296969., 219862., 244281., 257402., 227754., 256792.,
    242917., 238100.,
];

/// §6: every period has m_s = 500 and m_p = 5000.
fn periods(shadow: &[f64; 12]) -> Vec<LatencyPeriod> {
    (0..12)
        .map(|j| LatencyPeriod::new(shadow[j], 500.0, Q_P[j], 5000.0, Q50_P[j]))
        .collect()
}

/// L2 with its 13th period, too thin on both sides to be eligible.
fn l2_periods() -> Vec<LatencyPeriod> {
    let mut periods = periods(&L2);
    periods.push(LatencyPeriod::new(
        900000.0, 120.0, 200000.0, 1200.0, 80000.0,
    ));
    periods
}

/// L2 with period 6 replaced by a 12.8× spike.
fn l2b_periods() -> Vec<LatencyPeriod> {
    let mut periods = l2_periods();
    periods[5] = LatencyPeriod::new(2500000.0, 500.0, 195000.0, 5000.0, 80000.0);
    periods
}

struct LatencyVector {
    id: &'static str,
    periods: Vec<LatencyPeriod>,
    clip: Option<f64>,
    n: usize,
    mean: f64,
    spread: f64,
    half_width: Option<f64>,
    lo: f64,
    hi: Option<f64>,
    decision: Decision,
}

fn latency_vectors() -> Vec<LatencyVector> {
    let ln4 = Some(4f64.ln());
    let l1 = periods(&L1);
    vec![
        LatencyVector {
            id: "L1",
            periods: l1.clone(),
            clip: ln4,
            n: 12,
            mean: 0.03629734981,
            spread: 0.0025,
            half_width: Some(4.8173940285e-2),
            lo: -0.01187659047,
            hi: Some(0.0844712901),
            decision: PASS,
        },
        LatencyVector {
            id: "L2",
            periods: l2_periods(),
            clip: ln4,
            n: 12,
            mean: 0.4179650647,
            spread: 0.0025,
            half_width: Some(4.8173940285e-2),
            lo: 0.3697911244,
            hi: Some(0.466139005),
            decision: FAIL,
        },
        LatencyVector {
            id: "L2b",
            periods: l2b_periods(),
            clip: ln4,
            n: 12,
            mean: 0.4956418233,
            spread: 0.07967647913,
            half_width: Some(2.4901657516e-1),
            lo: 0.2466252481,
            hi: Some(0.7446583985),
            decision: FAIL,
        },
        LatencyVector {
            id: "L3",
            periods: periods(&L3),
            clip: ln4,
            n: 12,
            mean: 0.2037984115,
            spread: 0.003428653451,
            half_width: Some(5.5675763589e-2),
            lo: 0.1481226479,
            hi: Some(0.259474175),
            decision: STRADDLES,
        },
        LatencyVector {
            id: "L4",
            periods: l1[..6].to_vec(),
            clip: ln4,
            n: 6,
            mean: 0.03126043262,
            spread: 0.003375258244,
            half_width: Some(7.5964359446e-2),
            lo: -0.04470392683,
            hi: Some(0.1072247921),
            decision: INSUFFICIENT,
        },
    ]
}

/// The two variants of L2b that §6 prints only a lower bound for.
fn l2b_clip_variants() -> Vec<LatencyVector> {
    let bare = |id, clip, lo, decision| LatencyVector {
        id,
        periods: l2b_periods(),
        clip,
        n: 12,
        mean: f64::NAN,
        spread: f64::NAN,
        half_width: None,
        lo,
        hi: None,
        decision,
    };
    vec![
        bare("L2b c = ln 2", Some(2f64.ln()), 0.3583030126, FAIL),
        bare("L2b no clip", None, -0.0578653925, STRADDLES),
    ]
}

#[test]
fn latency_vectors_l1_to_l4() {
    for vector in latency_vectors().into_iter().chain(l2b_clip_variants()) {
        let params = LatencyParams {
            clip: vector.clip,
            ..LatencyParams::default()
        };
        let evidence = latency::assess(&vector.periods, &params);
        let id = vector.id;
        assert_eq!(evidence.eligible, vector.n, "{id} n");
        let estimate = evidence.estimate.expect(id);
        let interval = estimate.interval;
        if let Some(half_width) = vector.half_width {
            close(&format!("{id} r̄"), interval.estimate, vector.mean);
            close(&format!("{id} s²"), estimate.spread, vector.spread);
            close(
                &format!("{id} V"),
                interval.variance,
                vector.spread / vector.n as f64,
            );
            close(&format!("{id} h"), interval.half_width, half_width);
        }
        close(&format!("{id} lo"), interval.lo, vector.lo);
        if let Some(hi) = vector.hi {
            close(&format!("{id} hi"), interval.hi, hi);
        }
        close(
            &format!("{id} exp(lo)"),
            estimate.ratio_lo,
            interval.lo.exp(),
        );
        close(
            &format!("{id} exp(hi)"),
            estimate.ratio_hi,
            interval.hi.exp(),
        );
        assert_eq!(evidence.decision, vector.decision, "{id}");
    }
}

#[test]
fn l1_first_period_ratio() {
    let terms = QuantileTerms::new(0.99);
    let r1 = periods(&L1)[0].log_ratio(&terms, Some(4f64.ln())).unwrap();
    close("L1 r₁", r1, 0.0645746472);
}

#[test]
fn l2_thirteenth_period_is_ineligible() {
    let periods = l2_periods();
    let terms = QuantileTerms::new(0.99);
    assert_eq!(periods[12].log_ratio(&terms, Some(4f64.ln())), None);
    let evidence = latency::assess(&periods, &LatencyParams::default());
    assert_eq!((evidence.periods, evidence.eligible), (13, 12));
}

#[test]
fn l3_needs_83_4_more_periods() {
    let params = LatencyParams::default();
    let estimate = latency::assess(&periods(&L3), &params).estimate.unwrap();
    let TimeToDecision::Needs { extra, minutes } = estimate.time_to_decision(&params, 300) else {
        panic!("L3: undecidable");
    };
    assert_eq!(format!("{extra:.1}"), "83.4");
    assert_eq!(format!("{minutes:.0}"), "417");
}

#[test]
fn the_median_needs_no_production_median() {
    let params = LatencyParams {
        quantile: 0.5,
        ..LatencyParams::default()
    };
    let periods: Vec<LatencyPeriod> = (0..12)
        .map(|j| LatencyPeriod::new(L1[j], 500.0, Q_P[j], 5000.0, 0.0))
        .collect();
    let evidence = latency::assess(&periods, &params);
    assert_eq!(evidence.eligible, 12);
    let without_bias = periods[0]
        .log_ratio(&QuantileTerms::new(0.5), None)
        .unwrap();
    close("p50 r₁", without_bias, (L1[0] / Q_P[0]).ln());
}

#[test]
fn no_periods_are_insufficient() {
    let params = LatencyParams::default();
    let empty = latency::assess(&[], &params);
    assert_eq!((empty.decision, empty.estimate), (INSUFFICIENT, None));
    let one = latency::assess(&periods(&L1)[..1], &params);
    assert_eq!(one.decision, INSUFFICIENT);
    assert!(one.estimate.unwrap().interval.half_width.is_finite());
}

fn minute() -> impl Strategy<Value = PairedMinute> {
    (0u32..200, 0u32..20, 0u32..2000, 0u32..40).prop_map(|(n_s, e_s, n_p, e_p)| {
        PairedMinute::new(n_s.into(), e_s.into(), n_p.into(), e_p.into())
    })
}

proptest! {
    #[test]
    fn h_increases_with_v(a in -30.0f64..2.0, step in 1e-6f64..5.0, tau in 1e-3f64..1.0) {
        let (v1, v2) = (a.exp(), (a + step).exp());
        prop_assert!(h(v1, tau, 0.05) < h(v2, tau, 0.05));
        prop_assert!(h(v1, tau, 0.05) > h(0.0, tau, 0.05));
    }

    #[test]
    fn no_pass_below_1000_shadow_requests(
        thin in prop::collection::vec(
            (0u32..50, 0u32..3, 1u32..100_000, 0u32..3).prop_map(|(n_s, e_s, n_p, e_p)| {
                PairedMinute::new(n_s.into(), e_s.into(), n_p.into(), e_p.into())
            }),
            0..20,
        ),
    ) {
        let evidence = errors::assess(&thin, &ErrorParams::default());
        prop_assert!(evidence.counts.shadow_requests < 1000.0);
        prop_assert_eq!(evidence.decision, INSUFFICIENT);
    }

    #[test]
    fn the_error_interval_contains_its_estimate(
        sample in prop::collection::vec(minute(), 0..200),
    ) {
        let evidence = errors::assess(&sample, &ErrorParams::default());
        if let Some(estimate) = evidence.estimate {
            let i = estimate.interval;
            prop_assert!(i.variance > 0.0 && i.half_width > 0.0);
            prop_assert!(i.lo < i.estimate && i.estimate < i.hi);
        } else {
            prop_assert_eq!(evidence.counts.shadow_requests, 0.0);
            prop_assert_eq!(evidence.decision, INSUFFICIENT);
        }
    }

    #[test]
    fn the_latency_interval_contains_its_estimate(
        ratios in prop::collection::vec((0.5f64..3.0, 200.0f64..600.0), 0..40),
    ) {
        let periods: Vec<LatencyPeriod> = ratios
            .iter()
            .map(|&(ratio, m_s)| LatencyPeriod::new(200.0 * ratio, m_s, 200.0, 5000.0, 80.0))
            .collect();
        let evidence = latency::assess(&periods, &LatencyParams::default());
        if let Some(estimate) = evidence.estimate {
            let i = estimate.interval;
            prop_assert!(i.lo < i.estimate && i.estimate < i.hi);
            prop_assert!(estimate.ratio_lo < estimate.ratio_hi);
        } else {
            prop_assert_eq!(evidence.eligible, 0);
            prop_assert_eq!(evidence.decision, INSUFFICIENT);
        }
    }
}
