//! How long one tick takes over many experiments on in-memory ports, and
//! how long the pure judge + plan take per experiment. Targets (2-core CI
//! machine, release): a 500-experiment tick well under 100 ms of CPU outside
//! the AWS calls, so the Lambda's time is the network's.

#[path = "../tests/common/mod.rs"]
mod common;

use chrono::Duration;
use common::{experiment, t0, FakeMetrics, FakeStore, Profile};
use criterion::{criterion_group, criterion_main, Criterion};
use shadowpilot_core::controller::{Controller, RunOptions};
use shadowpilot_core::judge::{judge, INVOCATIONS};
use shadowpilot_core::metrics::{Measurements, VariantMeasurements};
use shadowpilot_core::plan::plan;
use shadowpilot_core::policy::builtin_policies;

fn tick_over_500_experiments(c: &mut Criterion) {
    let policies = builtin_policies().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let now = t0() + Duration::hours(3);
    c.bench_function("dry-run tick, 500 experiments", |b| {
        b.iter(|| {
            let store = FakeStore::new((0..500).map(|i| experiment(&format!("exp-{i:04}"), 5)));
            let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
            let options = RunOptions {
                dry_run: true,
                only: None,
            };
            runtime
                .block_on(Controller::new(&store, &metrics, &policies).run_tick(
                    &options,
                    now,
                    now + Duration::minutes(10),
                ))
                .unwrap()
        })
    });
}

fn judge_and_plan(c: &mut Criterion) {
    let policies = builtin_policies().unwrap();
    let policy = policies.get("conservative").unwrap();
    let mut variant = VariantMeasurements::default();
    variant.set(INVOCATIONS, 10_000.0);
    for check in &policy.checks {
        variant.set(check.metric.series(), 1234.0);
    }
    let measurements = Measurements {
        production: variant.clone(),
        shadow: variant,
    };
    let e = experiment("x", 5);
    let now = t0() + Duration::hours(30);
    c.bench_function("judge + plan, one experiment", |b| {
        b.iter(|| {
            let verdict = judge(policy, &measurements);
            plan(&e, &verdict, policy, now, now + Duration::minutes(10))
        })
    });
}

criterion_group!(benches, tick_over_500_experiments, judge_and_plan);
criterion_main!(benches);
