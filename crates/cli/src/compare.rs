//! `shadowpilot compare`: how the two variants' captured outputs agree,
//! read from S3 (with the AWS adapters) or from a scenario's simulated
//! capture (`--scenario`, any build). It judges and writes nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use shadowpilot_core::capture::read::ReadLimits;
use shadowpilot_core::capture::report::AgreementReport;
use shadowpilot_core::capture::{compare_experiment, options_for};
use shadowpilot_core::config::{load_policies, POLICIES_VAR};
use shadowpilot_core::policy::PolicySet;
use shadowpilot_core::ports::{CaptureSource, ExperimentStore};

#[derive(Args)]
pub struct CompareArgs {
    /// The inference experiment.
    name: String,
    /// How far back to read (e.g. 3h, 1d); the newest 5 minutes are left
    /// out, as capture lands late.
    #[arg(long, default_value = "3h", value_parser = humantime::parse_duration)]
    since: std::time::Duration,
    /// Disagreements to show side by side.
    #[arg(long, default_value_t = 5)]
    examples: usize,
    /// At most this many records read per variant.
    #[arg(long, default_value_t = 200_000)]
    max_records: u64,
    /// At most this many bytes read per variant.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    max_bytes: u64,
    /// A policy file or directory; default: the built-in policies. The
    /// experiment's policy (by its tags) says what is compared and how.
    #[arg(long, env = POLICIES_VAR)]
    policies: Option<PathBuf>,
    /// Compare in this scenario's simulated world instead of AWS.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// With --scenario: how long the simulation runs (the controller
    /// steering) before the capture is read (e.g. 6h).
    #[arg(long, default_value = "3h", value_parser = humantime::parse_duration)]
    at: std::time::Duration,
}

pub fn compare(args: CompareArgs, json: bool) -> anyhow::Result<ExitCode> {
    let policies = load_policies(args.policies.as_deref())?;
    let limits = ReadLimits {
        max_records: args.max_records,
        max_bytes: args.max_bytes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let compared = match &args.scenario {
        Some(path) => runtime.block_on(in_simulator(&args, path, &policies, limits))?,
        None => runtime.block_on(in_aws(&args, &policies, limits))?,
    };
    print(&args.name, &compared, json)?;
    Ok(ExitCode::SUCCESS)
}

/// What one comparison found, and over which policy and span.
struct Compared {
    policy: Option<String>,
    report: AgreementReport,
    span: (DateTime<Utc>, DateTime<Utc>),
}

async fn read(
    args: &CompareArgs,
    store: &dyn ExperimentStore,
    capture: &dyn CaptureSource,
    policies: &PolicySet,
    now: DateTime<Utc>,
    limits: ReadLimits,
) -> anyhow::Result<Compared> {
    let since = now - chrono::Duration::from_std(args.since).context("--since is too long")?;
    let mut policy = None;
    let (report, span) = compare_experiment(
        store,
        capture,
        &args.name,
        since,
        now,
        limits,
        |experiment| {
            let (name, mut options) = options_for(policies, experiment);
            policy = name;
            options.examples = args.examples;
            options
        },
    )
    .await?;
    Ok(Compared {
        policy,
        report,
        span,
    })
}

async fn in_simulator(
    args: &CompareArgs,
    path: &std::path::Path,
    policies: &PolicySet,
    limits: ReadLimits,
) -> anyhow::Result<Compared> {
    let scenario = shadowpilot_sim::Scenario::load(path)?;
    let (_, world) = shadowpilot_sim::run_keeping_world(&scenario, policies, Some(args.at)).await?;
    let now = world.now();
    read(args, &world, &world, policies, now, limits).await
}

#[cfg(feature = "aws")]
async fn in_aws(
    args: &CompareArgs,
    policies: &PolicySet,
    limits: ReadLimits,
) -> anyhow::Result<Compared> {
    let calls = shadowpilot_aws::CallSettings::from_env()?;
    let config = shadowpilot_aws::load_config(&calls).await;
    let (store, _) = shadowpilot_aws::clients_from_config(&config);
    let capture = shadowpilot_aws::capture_from_config(&config);
    read(args, &store, &capture, policies, Utc::now(), limits).await
}

#[cfg(not(feature = "aws"))]
async fn in_aws(_: &CompareArgs, _: &PolicySet, _: ReadLimits) -> anyhow::Result<Compared> {
    anyhow::bail!(
        "this build has no AWS adapters (built with --no-default-features): give --scenario FILE to compare in the simulator"
    )
}

fn print(name: &str, compared: &Compared, json: bool) -> anyhow::Result<()> {
    let (from, to) = compared.span;
    if json {
        let mut value = shadowpilot_core::report::agreement::agreement_json(&compared.report);
        if let Some(object) = value.as_object_mut() {
            object.insert("experiment".into(), name.into());
            object.insert("policy".into(), compared.policy.clone().into());
            object.insert("from".into(), serde_json::to_value(from)?);
            object.insert("to".into(), serde_json::to_value(to)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "{name}: capture from {} to {}, compared as policy {} declares",
            from.format("%Y-%m-%d %H:%M UTC"),
            to.format("%Y-%m-%d %H:%M UTC"),
            compared.policy.as_deref().map_or(
                "(none: outputs whole, 99 % agreement)".to_string(),
                |p| format!("{p:?}")
            )
        );
        print!(
            "{}",
            shadowpilot_core::report::agreement::agreement_text(&compared.report)
        );
    }
    Ok(())
}
