//! How long one tick takes over many experiments on in-memory ports, and
//! how long the pure judge + plan take per experiment. Targets (2-core CI
//! machine, release): a 500-experiment tick well under 100 ms of CPU outside
//! the AWS calls, so the Lambda's time is the network's.

#[path = "../tests/common/mod.rs"]
mod common;

use chrono::Duration;
use common::{experiment, gather, t0, FakeMetrics, FakeStore, Profile};
use criterion::{criterion_group, criterion_main, Criterion};
use shadowpilot_core::controller::{Controller, RunOptions};
use shadowpilot_core::evidence::Timeline;
use shadowpilot_core::judge::judge;
use shadowpilot_core::plan::{plan, Cadence};
use shadowpilot_core::policy::builtin_policies;

/// Three days into each experiment: every tick reads three days of
/// five-minute counts and the step's latency periods.
fn tick_over_500_experiments(c: &mut Criterion) {
    let policies = builtin_policies().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let now = t0() + Duration::days(3);
    c.bench_function("dry-run tick, 500 experiments, 3 days of evidence", |b| {
        b.iter(|| {
            let store = FakeStore::new((0..500).map(|i| experiment(&format!("exp-{i:04}"), 5)));
            let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
            let options = RunOptions {
                dry_run: true,
                only: None,
                budget: None,
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
    let e = experiment("x", 5);
    let now = t0() + Duration::hours(30);
    let timeline = Timeline::of(&e, policy, now);
    let metrics = FakeMetrics::new(Profile::healthy(), Profile::healthy());
    let evidence = gather(&metrics, &e, policy, &timeline);
    let cadence = Cadence {
        now,
        next_write: now + Duration::minutes(10),
        tick: Duration::minutes(10),
    };
    c.bench_function("judge + plan, one experiment, 30 h of evidence", |b| {
        b.iter(|| {
            let verdict = judge(policy, &timeline, &evidence);
            plan(&e, &timeline, &verdict, policy, cadence)
        })
    });
}

criterion_group!(benches, tick_over_500_experiments, judge_and_plan);
criterion_main!(benches);
