//! The simulated CloudWatch answers GetMetricData-shaped queries from the
//! simulated traffic: no datapoint without traffic, percentiles over merged
//! windows, the shadow getting production × sampling, reproducible draws.

use chrono::{DateTime, Duration, Utc};
use shadowpilot_core::experiment::{ExperimentUpdate, SamplingUpdate};
use shadowpilot_core::metrics::{MetricQuery, Statistic, Window, SAGEMAKER_NAMESPACE};
use shadowpilot_core::ports::{ExperimentStore, MetricError, MetricSource};
use shadowpilot_sim::{Scenario, SimWorld};

const SCENARIO: &str = "
name: cw
seed: 7
schedule: rate(10 minutes)
cloudwatch:
  publish_delay: 0s
sagemaker:
  update_takes: 0s
defaults:
  traffic: {per_minute: 600}
  production:
    latency: {median_ms: 40, p99_ms: 120}
    errors: {5xx: 1, 4xx: 2}
experiments:
  - name: a
    sampling: 10
    shadow:
      latency: {median_ms: 80, p99_ms: 400}
    changes:
      - at: 3h
        until: 4h
        traffic: {factor: 0}
";

fn setup() -> (SimWorld, DateTime<Utc>) {
    let scenario = Scenario::parse("cw.yaml", SCENARIO).expect("valid");
    let start = scenario.start;
    (SimWorld::new(&scenario), start)
}

fn query(
    id: &str,
    variant: &str,
    metric: &str,
    statistic: Statistic,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    period: i64,
) -> MetricQuery {
    MetricQuery {
        id: id.into(),
        namespace: SAGEMAKER_NAMESPACE.into(),
        metric_name: metric.into(),
        dimensions: vec![
            ("EndpointName".into(), "a-endpoint".into()),
            ("VariantName".into(), variant.into()),
        ],
        statistic,
        period_seconds: period,
        window: Window {
            start: from,
            end: to,
        },
    }
}

async fn one(world: &SimWorld, q: MetricQuery) -> Vec<(DateTime<Utc>, f64)> {
    let answer = world.fetch(&[q]).await.unwrap();
    answer[0].points.iter().map(|(t, v)| (*t, *v)).collect()
}

#[tokio::test]
async fn one_datapoint_per_period_with_data_and_none_without_traffic() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(5));
    let per_minute = one(
        &world,
        query(
            "q",
            "production",
            "Invocations",
            Statistic::Sum,
            start,
            start + Duration::hours(5),
            60,
        ),
    )
    .await;
    // Three hours of traffic, an hour with none, an hour of traffic.
    assert_eq!(per_minute.len(), 4 * 60);
    assert!(per_minute
        .iter()
        .all(|(t, v)| *v > 0.0
            && (*t < start + Duration::hours(3) || *t >= start + Duration::hours(4))));
    let mean = per_minute.iter().map(|(_, v)| v).sum::<f64>() / per_minute.len() as f64;
    assert!((mean - 600.0).abs() < 10.0, "mean {mean}");
    // Errors: a datapoint (0 included) for every minute with traffic.
    let errors = one(
        &world,
        query(
            "q",
            "production",
            "Invocation5XXErrors",
            Statistic::Sum,
            start,
            start + Duration::hours(5),
            60,
        ),
    )
    .await;
    assert_eq!(errors.len(), per_minute.len());
    // Hourly periods start at the window start.
    let hourly = one(
        &world,
        query(
            "q",
            "production",
            "Invocations",
            Statistic::Sum,
            start,
            start + Duration::hours(5),
            3600,
        ),
    )
    .await;
    let times: Vec<_> = hourly
        .iter()
        .map(|(t, _)| (*t - start).num_hours())
        .collect();
    assert_eq!(times, [0, 1, 2, 4]);
    let total: f64 = per_minute
        .iter()
        .filter(|(t, _)| *t < start + Duration::hours(1))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(hourly[0].1, total);
}

#[tokio::test]
async fn nothing_is_published_for_minutes_not_yet_over() {
    let (world, start) = setup();
    world.set_now(start + Duration::minutes(10) + Duration::seconds(30));
    let points = one(
        &world,
        query(
            "q",
            "production",
            "Invocations",
            Statistic::Sum,
            start,
            start + Duration::hours(1),
            60,
        ),
    )
    .await;
    assert_eq!(points.len(), 10);
}

#[tokio::test]
async fn the_shadow_gets_production_times_the_sampling_in_force() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(1));
    world
        .update(&ExperimentUpdate {
            name: "a".into(),
            sampling: Some(SamplingUpdate {
                source_variant: "production".into(),
                shadow_variant: "shadow".into(),
                percentage: 50,
            }),
            end_time: None,
        })
        .await
        .unwrap();
    world.set_now(start + Duration::hours(2));
    let hour = |h: i64| (start + Duration::hours(h), start + Duration::hours(h + 1));
    let sum = |variant: &'static str, h: i64| {
        let (from, to) = hour(h);
        let world = world.clone();
        async move {
            one(
                &world,
                query("q", variant, "Invocations", Statistic::Sum, from, to, 3600),
            )
            .await[0]
                .1
        }
    };
    let (p0, s0, p1, s1) = (
        sum("production", 0).await,
        sum("shadow", 0).await,
        sum("production", 1).await,
        sum("shadow", 1).await,
    );
    assert!((s0 / p0 - 0.10).abs() < 0.01, "first hour {s0}/{p0}");
    assert!((s1 / p1 - 0.50).abs() < 0.02, "second hour {s1}/{p1}");
}

#[tokio::test]
async fn window_percentiles_come_from_the_merged_window() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(2));
    let (from, to) = (start, start + Duration::hours(2));
    let p99 = one(
        &world,
        query(
            "q",
            "production",
            "ModelLatency",
            Statistic::percentile(99.0),
            from,
            to,
            7200,
        ),
    )
    .await;
    let p50 = one(
        &world,
        query(
            "q",
            "production",
            "ModelLatency",
            Statistic::percentile(50.0),
            from,
            to,
            7200,
        ),
    )
    .await;
    assert_eq!(p99.len(), 1);
    // Microseconds, within a few percent of the model.
    assert!(
        (p99[0].1 / 120_000.0 - 1.0).abs() < 0.05,
        "p99 {}",
        p99[0].1
    );
    assert!((p50[0].1 / 40_000.0 - 1.0).abs() < 0.03, "p50 {}", p50[0].1);
    let shadow = one(
        &world,
        query(
            "q",
            "shadow",
            "ModelLatency",
            Statistic::percentile(99.0),
            from,
            to,
            7200,
        ),
    )
    .await;
    assert!(
        (shadow[0].1 / 400_000.0 - 1.0).abs() < 0.1,
        "shadow p99 {}",
        shadow[0].1
    );
    let count = one(
        &world,
        query(
            "q",
            "production",
            "ModelLatency",
            Statistic::SampleCount,
            from,
            to,
            7200,
        ),
    )
    .await;
    let invocations = one(
        &world,
        query(
            "q",
            "production",
            "Invocations",
            Statistic::Sum,
            from,
            to,
            7200,
        ),
    )
    .await;
    assert_eq!(count[0].1, invocations[0].1);
    let (min, max, avg) = (
        one(
            &world,
            query(
                "q",
                "production",
                "ModelLatency",
                Statistic::Minimum,
                from,
                to,
                7200,
            ),
        )
        .await[0]
            .1,
        one(
            &world,
            query(
                "q",
                "production",
                "ModelLatency",
                Statistic::Maximum,
                from,
                to,
                7200,
            ),
        )
        .await[0]
            .1,
        one(
            &world,
            query(
                "q",
                "production",
                "ModelLatency",
                Statistic::Average,
                from,
                to,
                7200,
            ),
        )
        .await[0]
            .1,
    );
    assert!(min < p50[0].1 && p50[0].1 < avg && avg < p99[0].1 && p99[0].1 < max);
    // Error rates from Sum / Invocations, and Average of the 0/1 samples.
    let errors = one(
        &world,
        query(
            "q",
            "production",
            "Invocation5XXErrors",
            Statistic::Sum,
            from,
            to,
            7200,
        ),
    )
    .await[0]
        .1;
    let rate = one(
        &world,
        query(
            "q",
            "production",
            "Invocation5XXErrors",
            Statistic::Average,
            from,
            to,
            7200,
        ),
    )
    .await[0]
        .1;
    assert!((errors / invocations[0].1 - 0.01).abs() < 0.002);
    assert!((rate - errors / invocations[0].1).abs() < 1e-12);
}

#[tokio::test]
async fn answers_do_not_depend_on_query_order() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(2));
    let q1 = query(
        "a1",
        "shadow",
        "ModelLatency",
        Statistic::percentile(99.0),
        start,
        start + Duration::hours(1),
        3600,
    );
    let q2 = query(
        "a2",
        "shadow",
        "Invocation4XXErrors",
        Statistic::Sum,
        start + Duration::minutes(30),
        start + Duration::hours(2),
        60,
    );
    let forward = world.fetch(&[q1.clone(), q2.clone()]).await.unwrap();
    let (other, _) = setup();
    other.set_now(start + Duration::hours(2));
    let backward = other.fetch(&[q2, q1]).await.unwrap();
    assert_eq!(forward[0], backward[1]);
    assert_eq!(forward[1], backward[0]);
}

#[tokio::test]
async fn unknown_series_are_empty_and_malformed_calls_are_refused() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(1));
    let mut unknown = query(
        "q",
        "purple",
        "Invocations",
        Statistic::Sum,
        start,
        start + Duration::hours(1),
        60,
    );
    assert!(one(&world, unknown.clone()).await.is_empty());
    unknown.dimensions[1].1 = "production".into();
    unknown.namespace = "/aws/sagemaker/Endpoints".into();
    assert!(one(&world, unknown).await.is_empty());
    let good = query(
        "q",
        "production",
        "Invocations",
        Statistic::Sum,
        start,
        start + Duration::hours(1),
        60,
    );
    for (bad, expected) in [
        (
            MetricQuery {
                id: "Q1".into(),
                ..good.clone()
            },
            "must start with a lowercase letter",
        ),
        (
            MetricQuery {
                period_seconds: 90,
                ..good.clone()
            },
            "not a positive multiple of 60",
        ),
        (
            MetricQuery {
                window: Window {
                    start: good.window.end,
                    end: good.window.start,
                },
                ..good.clone()
            },
            "is not after StartTime",
        ),
    ] {
        let error = world.fetch(&[bad]).await.unwrap_err();
        let MetricError::Service { source } = error else {
            panic!("expected a refusal")
        };
        assert!(source.to_string().contains(expected), "{source}");
    }
    assert!(
        world.fetch(&[good.clone(), good.clone()]).await.is_err(),
        "duplicate ids"
    );
    let many: Vec<_> = (0..501)
        .map(|i| MetricQuery {
            id: format!("q{i}"),
            ..good.clone()
        })
        .collect();
    assert!(world.fetch(&many).await.is_err(), "more than 500 queries");
}
