//! Data capture, pure: records in SageMaker's format (all three encodings,
//! charsets, malformed lines), pairing edge cases, output comparison as a
//! table, and the agreement checks' statistics against values worked out
//! by hand from statistics.md §1–2.

use chrono::{DateTime, Duration, TimeZone, Utc};
use shadowpilot_core::capture::agreement::{
    agreement_evidence, mean_abs_diff_evidence, OutputCounts,
};
use shadowpilot_core::capture::compare::{compare, Compared, Comparison, Extract, Match, Side};
use shadowpilot_core::capture::pair::{pair, EventIdCheck, PairedBy, PairingOptions, Unpaired};
use shadowpilot_core::capture::record::{parse_lines, Body, CaptureRecord, Encoding, Payload};
use shadowpilot_core::stats::boundary::h;
use shadowpilot_core::stats::Decision;

const SHADOW_FILE: &str = include_str!("fixtures/capture/shadow-variant.jsonl");

#[test]
fn a_capture_file_in_every_encoding_is_read_and_bad_lines_are_reported_and_skipped() {
    let parsed = parse_lines(SHADOW_FILE);
    let ids: Vec<Option<&str>> = parsed
        .records
        .iter()
        .map(|r| r.inference_id.as_deref())
        .collect();
    assert_eq!(
        ids,
        [
            Some("req-1"),
            Some("req-2"),
            Some("req-3"),
            None,
            Some("req-8")
        ]
    );

    let first = &parsed.records[0];
    assert_eq!(
        first.inference_time,
        Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 1).unwrap()
    );
    assert_eq!(
        first.event_id.as_deref(),
        Some("11111111-2222-3333-4444-000000000001")
    );
    let input = first.input.as_ref().unwrap();
    assert_eq!(
        (input.encoding, input.body.as_text()),
        (Encoding::Csv, Some("1,2,3"))
    );
    let output = first.output.as_ref().unwrap();
    assert_eq!(output.encoding, Encoding::Json);
    assert_eq!(
        output.body.as_text(),
        Some(r#"{"label":1,"scores":[0.1,0.9]}"#)
    );
    // CSV with a charset: the text as captured.
    let csv = parsed.records[1].output.as_ref().unwrap();
    assert_eq!(csv.content_type, "text/csv; charset=utf-8");
    assert_eq!(csv.body.as_text(), Some("0.75\n"));
    // BASE64: decoded, and text in its charset.
    let b64 = &parsed.records[2];
    assert_eq!(
        b64.input.as_ref().unwrap().body.as_text(),
        Some(r#"{"x":[1,2]}"#)
    );
    assert_eq!(b64.output.as_ref().unwrap().body.as_text(), Some("café"));
    // BASE64 that is not text stays bytes.
    assert_eq!(
        parsed.records[4].input.as_ref().unwrap().body,
        Body::Bytes(vec![0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59])
    );

    let problems: Vec<(usize, &str)> = parsed
        .problems
        .iter()
        .map(|p| (p.line, p.problem.as_str()))
        .collect();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert_eq!(problems[0].0, 4);
    assert!(
        problems[0].1.starts_with("not a capture record"),
        "{problems:?}"
    );
    assert_eq!(problems[1].0, 6);
    assert!(problems[1]
        .1
        .contains("eventMetadata.inferenceTime \"yesterday\""));
    assert_eq!(problems[2].0, 7);
    assert!(problems[2]
        .1
        .starts_with("captureData.endpointOutput: data is not base64"));
    assert_eq!(problems[3].0, 10);
    assert!(problems[3]
        .1
        .contains("encoding \"XML\" is not CSV, JSON or BASE64"));
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "\n\n",
        "{}",
        "[1,2]",
        "null",
        "{\"captureData\": 5}",
        "\u{feff}{",
        "🦀",
    ] {
        let parsed = parse_lines(text);
        assert!(parsed.records.is_empty(), "{text:?}");
    }
}

fn at(second: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap() + Duration::seconds(second)
}

fn text(body: &str) -> Payload {
    Payload {
        content_type: "application/json".into(),
        encoding: Encoding::Json,
        body: Body::Text(body.into()),
    }
}

fn record(
    inference_id: Option<&str>,
    event_id: Option<&str>,
    second: i64,
    input: &str,
) -> CaptureRecord {
    CaptureRecord {
        event_id: event_id.map(str::to_string),
        inference_id: inference_id.map(str::to_string),
        inference_time: at(second),
        input: Some(text(input)),
        output: Some(text("1")),
    }
}

#[test]
fn pairing_by_inference_id_with_duplicates_and_missing_ids() {
    let shadow = vec![
        record(Some("a"), None, 0, "x"),
        record(Some("b"), None, 1, "x"),
        record(Some("b"), None, 2, "x"), // a duplicate key pairs nothing
        record(Some("c"), None, 3, "x"), // no production copy
        record(None, None, 4, "x"),      // no inferenceId
    ];
    let production = vec![
        record(Some("b"), None, 1, "x"),
        record(Some("a"), None, 0, "x"),
        record(Some("d"), None, 5, "x"),
    ];
    let pairing = pair(
        &shadow,
        &production,
        PairingOptions {
            by_input_within: None,
        },
    );
    let pairs: Vec<(usize, usize, PairedBy)> = pairing
        .pairs
        .iter()
        .map(|p| (p.shadow, p.production, p.by))
        .collect();
    assert_eq!(pairs, [(0, 1, PairedBy::InferenceId)]);
    assert_eq!(
        pairing.unpaired_shadow,
        Unpaired {
            without_inference_id: 1,
            duplicate_key: 2,
            no_match: 1,
            ambiguous: 0
        }
    );
    // Production's "b" has no unique shadow partner; "d" has none at all.
    assert_eq!(pairing.unpaired_production.no_match, 2);
    assert_eq!(pairing.rate(), Some(0.2));
    assert_eq!(pairing.production_per_shadow_record(), Some(0.6));
    assert_eq!(
        pairing.event_id_check,
        EventIdCheck::TooFewPairs { compared: 0 }
    );
}

#[test]
fn event_ids_pair_only_after_a_hundred_inference_id_pairs_agree_on_them() {
    let keyed = |n: usize, differ: bool| -> (Vec<CaptureRecord>, Vec<CaptureRecord>) {
        let mut shadow: Vec<CaptureRecord> = (0..n)
            .map(|i| {
                record(
                    Some(&format!("r{i}")),
                    Some(&format!("e{i}")),
                    i as i64,
                    "x",
                )
            })
            .collect();
        let mut production = shadow.clone();
        if differ {
            production[0].event_id = Some("other".into());
        }
        // Two more without inferenceIds, same eventId on both sides.
        shadow.push(record(None, Some("e-late"), 500, "y"));
        production.push(record(None, Some("e-late"), 500, "y"));
        (shadow, production)
    };
    let options = PairingOptions {
        by_input_within: None,
    };

    let (shadow, production) = keyed(99, false);
    let pairing = pair(&shadow, &production, options);
    assert_eq!(
        pairing.event_id_check,
        EventIdCheck::TooFewPairs { compared: 99 }
    );
    assert_eq!(pairing.pairs.len(), 99);
    assert_eq!(pairing.unpaired_shadow.without_inference_id, 1);

    let (shadow, production) = keyed(100, false);
    let pairing = pair(&shadow, &production, options);
    assert_eq!(
        pairing.event_id_check,
        EventIdCheck::AllEqual { compared: 100 }
    );
    assert_eq!(pairing.pairs.len(), 101);
    assert_eq!(pairing.pairs.last().unwrap().by, PairedBy::EventId);

    let (shadow, production) = keyed(150, true);
    let pairing = pair(&shadow, &production, options);
    assert_eq!(
        pairing.event_id_check,
        EventIdCheck::Differ {
            compared: 150,
            differing: 1
        }
    );
    assert_eq!(pairing.pairs.len(), 150, "eventId is not trusted");
}

#[test]
fn pairing_by_input_is_opt_in_within_the_tolerance_and_one_to_one() {
    let shadow = vec![
        record(None, None, 10, "same-1"), // production at 12: within 3 s
        record(None, None, 20, "late"),   // production at 30: outside
        record(None, None, 40, "twice"),  // two production candidates: ambiguous
        record(None, None, 55, "shared"), // two shadows, one production: ambiguous
        record(None, None, 56, "shared"),
    ];
    let production = vec![
        record(None, None, 12, "same-1"),
        record(None, None, 30, "late"),
        record(None, None, 41, "twice"),
        record(None, None, 39, "twice"),
        record(None, None, 55, "shared"),
    ];
    let off = pair(
        &shadow,
        &production,
        PairingOptions {
            by_input_within: None,
        },
    );
    assert!(off.pairs.is_empty());
    assert_eq!(off.unpaired_shadow.without_inference_id, 5);

    let within = PairingOptions {
        by_input_within: Some(Duration::seconds(3)),
    };
    let pairing = pair(&shadow, &production, within);
    let pairs: Vec<(usize, usize, PairedBy)> = pairing
        .pairs
        .iter()
        .map(|p| (p.shadow, p.production, p.by))
        .collect();
    assert_eq!(pairs, [(0, 0, PairedBy::Payload)]);
    assert_eq!(pairing.unpaired_shadow.ambiguous, 3);
    assert_eq!(pairing.unpaired_shadow.without_inference_id, 1);
    assert_eq!(pairing.unpaired_production.ambiguous, 3);
    // Clock skew beyond the tolerance pairs nothing.
    let skewed = pair(&shadow[..1], &[record(None, None, 14, "same-1")], within);
    assert!(skewed.pairs.is_empty());
}

#[test]
fn comparisons_as_a_table() {
    use Match::*;
    let whole = Comparison::default();
    let at = |pointer: &str, matching| Comparison {
        extract: Extract::Pointer(pointer.into()),
        matching,
    };
    let column = |index, matching| Comparison {
        extract: Extract::CsvColumn(index),
        matching,
    };
    let agree = |d: Option<f64>| Compared::Agree { difference: d };
    let disagree = |d: Option<f64>| Compared::Disagree { difference: d };
    let cases: Vec<(&str, Comparison, &str, &str, Compared)> = vec![
        (
            "whole JSON, numbers by value",
            whole.clone(),
            r#"{"a":1,"b":[1,2]}"#,
            r#"{"b":[1.0,2],"a":1}"#,
            agree(None),
        ),
        (
            "whole JSON differs",
            whole.clone(),
            r#"{"a":1}"#,
            r#"{"a":2}"#,
            disagree(None),
        ),
        (
            "whole text, trimmed",
            whole.clone(),
            "cat \n",
            "cat",
            agree(None),
        ),
        (
            "whole number text",
            whole.clone(),
            "0.75\n",
            "0.75",
            agree(Some(0.0)),
        ),
        (
            "label by pointer",
            at("/label", Exact),
            r#"{"label":"cat"}"#,
            r#"{"label":"dog"}"#,
            disagree(None),
        ),
        (
            "absolute tolerance",
            at("/score", Absolute(0.05)),
            r#"{"score":0.91}"#,
            r#"{"score":0.88}"#,
            agree(Some(0.030000000000000027)),
        ),
        (
            "absolute tolerance exceeded",
            at("/score", Absolute(0.01)),
            r#"{"score":0.91}"#,
            r#"{"score":0.88}"#,
            disagree(Some(0.030000000000000027)),
        ),
        (
            "relative tolerance",
            at("/y", Relative(0.1)),
            r#"{"y":105}"#,
            r#"{"y":100}"#,
            agree(Some(5.0)),
        ),
        (
            "top-1 label flip",
            at("/scores", Top1),
            r#"{"scores":[0.2,0.8]}"#,
            r#"{"scores":[0.6,0.4]}"#,
            disagree(None),
        ),
        (
            "top-1 same",
            at("/scores", Top1),
            r#"{"scores":[0.1,0.7,0.2]}"#,
            r#"{"scores":[0.3,0.4,0.3]}"#,
            agree(None),
        ),
        (
            "csv column",
            column(1, Exact),
            "1,cat,0.9",
            "2,cat,0.8",
            agree(None),
        ),
        (
            "csv column numbers",
            column(2, Absolute(0.2)),
            "1,cat,0.9",
            "2,cat,0.8",
            agree(Some(0.09999999999999998)),
        ),
    ];
    for (name, comparison, shadow, production, expected) in cases {
        let got = compare(&comparison, Some(&text(shadow)), Some(&text(production)));
        assert_eq!(got, expected, "{name}");
    }
    let unreadable = |c: &Comparison, s: &str, p: &str| compare(c, Some(&text(s)), Some(&text(p)));
    assert!(matches!(
        unreadable(&at("/label", Exact), "not json", r#"{"label":1}"#),
        Compared::Unreadable {
            side: Side::Shadow,
            ..
        }
    ));
    assert!(matches!(
        unreadable(&at("/label", Exact), r#"{"label":1}"#, r#"{"other":1}"#),
        Compared::Unreadable { side: Side::Production, problem } if problem.contains("nothing at /label")
    ));
    assert!(matches!(
        unreadable(&column(5, Exact), "1,2", "1,2"),
        Compared::Unreadable {
            side: Side::Shadow,
            ..
        }
    ));
    assert!(matches!(
        unreadable(&at("/y", Absolute(1.0)), r#"{"y":"cat"}"#, r#"{"y":1}"#),
        Compared::Unreadable { side: Side::Shadow, problem } if problem.contains("not a number")
    ));
    let binary = Payload {
        content_type: "application/x-npy".into(),
        encoding: Encoding::Base64,
        body: Body::Bytes(vec![1, 2]),
    };
    assert!(matches!(
        compare(&whole, Some(&binary), Some(&text("1"))),
        Compared::Unreadable {
            side: Side::Shadow,
            ..
        }
    ));
    assert!(matches!(
        compare(&whole, Some(&text("1")), None),
        Compared::Unreadable {
            side: Side::Production,
            ..
        }
    ));
}

fn counts(agree: u64, disagree: u64) -> OutputCounts {
    OutputCounts {
        agree,
        disagree,
        ..OutputCounts::default()
    }
}

/// The README's test values for `output_agreement` min 99 % at α = 0.05:
/// N = 10 000 pairs, D = 20 disagreements: Δ̂ = 0.002, p̃ = 21/10 002,
/// p† = δ = 0.01, V = 0.01·0.99/10 000 = 9.9e-7, h(V; 0.01, 0.05) =
/// 0.0032580…, interval [−0.00126, 0.00526] below 0.01: PASS.
#[test]
fn agreement_test_values() {
    let evidence = agreement_evidence(&counts(9_980, 20), 0.99, 0.05);
    let estimate = evidence.estimate.unwrap();
    assert_eq!(estimate.interval.estimate, 0.002);
    assert!((estimate.interval.variance - 9.9e-7).abs() < 1e-18);
    let half = h(9.9e-7, 0.01, 0.05);
    assert!((half - 0.003_258_0).abs() < 1e-7, "{half}");
    assert!((estimate.interval.hi - (0.002 + half)).abs() < 1e-15);
    assert_eq!(evidence.decision, Decision::Pass);

    // 5 % disagreement (the shipped scenario's shadow): FAIL at 2000 pairs.
    let failing = agreement_evidence(&counts(1_900, 100), 0.99, 0.05);
    assert_eq!(failing.decision, Decision::Fail, "{failing:?}");
    // 0.9 % at 2000 pairs: the interval straddles 1 %.
    let close = agreement_evidence(&counts(1_982, 18), 0.99, 0.05);
    assert!(
        matches!(close.decision, Decision::Inconclusive(_)),
        "{close:?}"
    );
    // Fewer than 1000 pairs never decide.
    let thin = agreement_evidence(&counts(500, 100), 0.99, 0.05);
    assert!(matches!(thin.decision, Decision::Inconclusive(_)));
}

/// `output_mean_abs_diff` max 0.05, clipped at C = 0.5: x = min(|d|, C)/C,
/// judged against 0.1. N = 4000 pairs with Σ min(|d|, C) = 80 (mean 0.02):
/// x̄ = 0.04, V = 0.1·0.9/4000 = 2.25e-5, h = 0.01651…, upper end 0.0565
/// below 0.1: PASS.
#[test]
fn mean_abs_diff_test_values() {
    let mut counts = OutputCounts::default();
    for i in 0..4_000 {
        // Differences of 0.01 and 0.03 alternating: mean 0.02.
        let d = if i % 2 == 0 { 0.01 } else { 0.03 };
        counts.add(
            &Compared::Agree {
                difference: Some(d),
            },
            0.5,
        );
    }
    assert_eq!(counts.numeric, 4_000);
    assert!((counts.clipped_difference_sum - 80.0).abs() < 1e-9);
    let evidence = mean_abs_diff_evidence(&counts, 0.05, 0.5, 0.05);
    let estimate = evidence.estimate.unwrap();
    assert!((estimate.interval.estimate - 0.04).abs() < 1e-12);
    assert!((estimate.interval.variance - 2.25e-5).abs() < 1e-15);
    assert!((estimate.interval.half_width - h(2.25e-5, 0.1, 0.05)).abs() < 1e-15);
    assert_eq!(evidence.decision, Decision::Pass);

    // A regressor off by 0.2 on average fails; differences above C count as C.
    let mut far = OutputCounts::default();
    for i in 0..2_000 {
        let d = if i % 10 == 0 { 3.0 } else { 0.2 };
        far.add(
            &Compared::Disagree {
                difference: Some(d),
            },
            0.5,
        );
    }
    assert_eq!(far.clipped, 200);
    assert!((far.clipped_difference_sum - (200.0 * 0.5 + 1_800.0 * 0.2)).abs() < 1e-9);
    assert_eq!(
        mean_abs_diff_evidence(&far, 0.05, 0.5, 0.05).decision,
        Decision::Fail
    );
    // Unreadable pairs are counted apart and judged nowhere.
    far.add(
        &Compared::Unreadable {
            side: Side::Shadow,
            problem: "x".into(),
        },
        0.5,
    );
    assert_eq!((far.unreadable, far.compared()), (1, 2_000));
}
