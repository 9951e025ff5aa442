//! The simulated CloudWatch answers domain queries from the simulated
//! traffic: no datapoint without traffic, percentiles over merged windows,
//! the shadow getting production × sampling, reproducible draws.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use shadowpilot_core::experiment::{ExperimentUpdate, SamplingUpdate};
use shadowpilot_core::metrics::{
    MeasuredExperiment, SageMakerMetric, SeriesQuery, Statistic, VariantRole, Window,
};
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

fn experiment(name: &str) -> Arc<MeasuredExperiment> {
    Arc::new(MeasuredExperiment {
        name: name.into(),
        endpoint: format!("{name}-endpoint"),
        production_variant: "production".into(),
        shadow_variant: "shadow".into(),
    })
}

fn query(
    role: VariantRole,
    metric: SageMakerMetric,
    statistic: Statistic,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    period: u64,
) -> SeriesQuery {
    SeriesQuery {
        experiment: experiment("a"),
        role,
        metric,
        statistic,
        window: Window {
            start: from,
            end: to,
        },
        period: std::time::Duration::from_secs(period),
    }
}

/// Production's invocations in the first hour, one value per `period` s.
fn first_hour_invocations(start: DateTime<Utc>, period: u64) -> SeriesQuery {
    query(
        VariantRole::Production,
        SageMakerMetric::Invocations,
        Statistic::Sum,
        start,
        start + Duration::hours(1),
        period,
    )
}

/// The simulator answers every query of an accepted request.
fn answered(
    answers: Vec<shadowpilot_core::ports::SeriesAnswer>,
) -> Vec<shadowpilot_core::metrics::Series> {
    answers
        .into_iter()
        .map(|answer| answer.expect("the simulator answers every query"))
        .collect()
}

async fn one(world: &SimWorld, q: SeriesQuery) -> Vec<(DateTime<Utc>, f64)> {
    let answer = answered(world.fetch(&[q]).await.unwrap());
    answer[0].iter().map(|(t, v)| (*t, *v)).collect()
}

#[tokio::test]
async fn one_datapoint_per_period_with_data_and_none_without_traffic() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(5));
    let per_minute = one(
        &world,
        query(
            VariantRole::Production,
            SageMakerMetric::Invocations,
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
            VariantRole::Production,
            SageMakerMetric::Invocation5XXErrors,
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
            VariantRole::Production,
            SageMakerMetric::Invocations,
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
    let points = one(&world, first_hour_invocations(start, 60)).await;
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
    let sum = |role: VariantRole, h: i64| {
        let (from, to) = hour(h);
        let world = world.clone();
        async move {
            one(
                &world,
                query(
                    role,
                    SageMakerMetric::Invocations,
                    Statistic::Sum,
                    from,
                    to,
                    3600,
                ),
            )
            .await[0]
                .1
        }
    };
    let (p0, s0, p1, s1) = (
        sum(VariantRole::Production, 0).await,
        sum(VariantRole::Shadow, 0).await,
        sum(VariantRole::Production, 1).await,
        sum(VariantRole::Shadow, 1).await,
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
            VariantRole::Production,
            SageMakerMetric::ModelLatency,
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
            VariantRole::Production,
            SageMakerMetric::ModelLatency,
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
            VariantRole::Shadow,
            SageMakerMetric::ModelLatency,
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
            VariantRole::Production,
            SageMakerMetric::ModelLatency,
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
            VariantRole::Production,
            SageMakerMetric::Invocations,
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
                VariantRole::Production,
                SageMakerMetric::ModelLatency,
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
                VariantRole::Production,
                SageMakerMetric::ModelLatency,
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
                VariantRole::Production,
                SageMakerMetric::ModelLatency,
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
            VariantRole::Production,
            SageMakerMetric::Invocation5XXErrors,
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
            VariantRole::Production,
            SageMakerMetric::Invocation5XXErrors,
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
        VariantRole::Shadow,
        SageMakerMetric::ModelLatency,
        Statistic::percentile(99.0),
        start,
        start + Duration::hours(1),
        3600,
    );
    let q2 = query(
        VariantRole::Shadow,
        SageMakerMetric::Invocation4XXErrors,
        Statistic::Sum,
        start + Duration::minutes(30),
        start + Duration::hours(2),
        60,
    );
    let forward = answered(world.fetch(&[q1.clone(), q2.clone()]).await.unwrap());
    let (other, _) = setup();
    other.set_now(start + Duration::hours(2));
    let backward = answered(other.fetch(&[q2, q1]).await.unwrap());
    assert_eq!(forward[0], backward[1]);
    assert_eq!(forward[1], backward[0]);
}

#[tokio::test]
async fn unknown_experiments_are_empty_and_malformed_queries_are_refused() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(1));
    let good = first_hour_invocations(start, 60);
    let unknown = SeriesQuery {
        experiment: experiment("purple"),
        ..good.clone()
    };
    assert!(one(&world, unknown).await.is_empty());
    for (bad, expected) in [
        (
            SeriesQuery {
                period: std::time::Duration::from_secs(90),
                ..good.clone()
            },
            "period 90 s is not a positive multiple of 60",
        ),
        (
            SeriesQuery {
                period: std::time::Duration::ZERO,
                ..good.clone()
            },
            "period 0 s is not a positive multiple of 60",
        ),
        (
            SeriesQuery {
                period: std::time::Duration::from_millis(60_500),
                ..good.clone()
            },
            "period 60.5 s is not a positive multiple of 60",
        ),
        (
            SeriesQuery {
                window: Window {
                    start: good.window.end,
                    end: good.window.start,
                },
                ..good.clone()
            },
            "is not after StartTime",
        ),
    ] {
        let error = world.fetch(&[good.clone(), bad]).await.unwrap_err();
        let MetricError::Service { source } = error else {
            panic!("expected a refusal")
        };
        let message = source.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("query 1 (a production"), "{message}");
    }
}

#[tokio::test]
async fn call_limits_are_the_adapters_so_any_number_of_queries_is_answered_in_order() {
    let (world, start) = setup();
    world.set_now(start + Duration::hours(1));
    let invocations = first_hour_invocations(start, 3600);
    let latency = SeriesQuery {
        metric: SageMakerMetric::ModelLatency,
        statistic: Statistic::percentile(99.0),
        ..invocations.clone()
    };
    let queries: Vec<SeriesQuery> = (0..501)
        .map(|i| if i % 2 == 0 { &invocations } else { &latency }.clone())
        .collect();
    let answers = answered(world.fetch(&queries).await.unwrap());
    assert_eq!(answers.len(), 501);
    let expected_invocations = one(&world, invocations).await;
    let expected_latency = one(&world, latency).await;
    for (i, answer) in answers.iter().enumerate() {
        let expected = if i % 2 == 0 {
            &expected_invocations
        } else {
            &expected_latency
        };
        let got: Vec<_> = answer.iter().map(|(t, v)| (*t, *v)).collect();
        assert_eq!(&got, expected, "answer {i}");
    }
    assert_ne!(expected_invocations, expected_latency);
}
