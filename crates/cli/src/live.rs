//! `run` and `plan`: the Lambda's tick by hand against the configured AWS
//! account, a dry run unless `--apply`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use shadowpilot_core::config::{load_policies, Config, EventBus, POLICIES_VAR, SCHEDULE_VAR};
use shadowpilot_core::controller::{Budget, Controller, RunOptions};
use shadowpilot_core::report::emf::{self, TickFacts};
use shadowpilot_core::schedule::Schedule;

#[derive(Subcommand)]
pub enum LiveCommand {
    /// One tick against the configured AWS account: a dry run unless --apply.
    Run(RunArgs),
    /// The same as `run` without --apply: what the next tick would do.
    Plan(TickArgs),
    /// Re-arms a latched experiment: deletes shadowpilot:failed and sets
    /// shadowpilot:since to now. A dry run unless --apply.
    Rearm(RearmArgs),
}

#[derive(Args)]
pub struct RearmArgs {
    /// The inference experiment.
    name: String,
    /// Write the tags. Without it nothing is changed.
    #[arg(long)]
    apply: bool,
}

#[derive(Args)]
pub struct TickArgs {
    /// Only these experiments (repeatable); default: every listed one.
    #[arg(long = "experiment", value_name = "NAME")]
    experiments: Vec<String>,
    /// The EventBridge expression the deployed function runs on.
    #[arg(long, env = SCHEDULE_VAR)]
    schedule: Option<String>,
    /// A policy file or directory; default: the built-in policies.
    #[arg(long, env = POLICIES_VAR)]
    policies: Option<PathBuf>,
    /// The report comes back within this (e.g. 110s, 2m): reads stop in
    /// time, and no write group starts inside its margin.
    #[arg(long, default_value = "110s", value_parser = humantime::parse_duration)]
    deadline: std::time::Duration,
    /// Also print the tick's CloudWatch Embedded Metric Format lines (as
    /// the Lambda writes them) to stderr, so stdout stays the report.
    #[arg(long)]
    emf: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    tick: TickArgs,
    /// Write to AWS. Without it nothing is changed. SHADOWPILOT_DRY_RUN=true
    /// overrides it.
    #[arg(long)]
    apply: bool,
}

pub fn run(command: LiveCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        LiveCommand::Run(args) => tick(args.tick, args.apply, json),
        LiveCommand::Plan(args) => tick(args, false, json),
        LiveCommand::Rearm(args) => rearm(args, json),
    }
}

fn rearm(args: RearmArgs, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::from_lookup(|name| std::env::var(name).ok())?;
    let apply = args.apply && !config.force_dry_run;
    if args.apply && config.force_dry_run {
        eprintln!("note: SHADOWPILOT_DRY_RUN=true overrides --apply; nothing will be written");
    }
    let calls = shadowpilot_aws::CallSettings::from_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let done = runtime.block_on(async {
        let (store, _) = shadowpilot_aws::clients_with(&calls).await;
        shadowpilot_core::controller::rearm(&store, &args.name, chrono::Utc::now(), apply).await
    })?;
    if json {
        let value = serde_json::json!({
            "name": done.name,
            "arn": done.arn,
            "latch": done.latch.as_ref().map(ToString::to_string),
            "set": done.changes.set,
            "remove": done.changes.remove,
            "written": done.written,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match &done.latch {
            None => println!("{}: not latched (no shadowpilot:failed tag); nothing to do", done.name),
            Some(latch) => println!(
                "{}: latch shadowpilot:failed={latch}; {} shadowpilot:failed and {} shadowpilot:since={}",
                done.name,
                if done.written { "deleted" } else { "would delete" },
                if done.written { "set" } else { "would set" },
                done.changes.set.values().next().map_or("", String::as_str)
            ),
        }
        if !done.written && done.latch.is_some() {
            println!("dry run: add --apply to write");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tick(args: TickArgs, apply: bool, json: bool) -> anyhow::Result<ExitCode> {
    // clap already took --schedule from SHADOWPILOT_SCHEDULE when the flag
    // is absent; reading the variable again would let a bad value in the
    // environment break an explicit, valid flag.
    let config = Config::from_lookup(|name| {
        (name != SCHEDULE_VAR)
            .then(|| std::env::var(name).ok())
            .flatten()
    })?;
    let expression = args.schedule.with_context(|| {
        format!("set --schedule or {SCHEDULE_VAR} to the expression the function runs on, e.g. rate(10 minutes)")
    })?;
    let schedule =
        Schedule::parse(&expression).with_context(|| format!("--schedule (or {SCHEDULE_VAR})"))?;
    let policies = load_policies(args.policies.as_deref().or(config.policies_path.as_deref()))?;
    if apply && config.force_dry_run {
        eprintln!("note: SHADOWPILOT_DRY_RUN=true overrides --apply; nothing will be written");
    }
    let calls = shadowpilot_aws::CallSettings::from_env()?;
    let options = RunOptions {
        dry_run: config.force_dry_run || !apply,
        only: (!args.experiments.is_empty()).then_some(args.experiments),
        budget: Some(Budget {
            deadline: tokio::time::Instant::now() + args.deadline,
            attempt_timeout: calls.attempt_timeout,
        }),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let started = std::time::Instant::now();
    let now = chrono::Utc::now();
    let report = runtime.block_on(async {
        let aws = shadowpilot_aws::load_config(&calls).await;
        let (store, metrics) = shadowpilot_aws::clients_from_config(&aws);
        let bus = match &config.event_bus {
            EventBus::Off => None,
            EventBus::Default => Some(None),
            EventBus::Named(name) => Some(Some(name.clone())),
        };
        let sink = bus.map(|bus| shadowpilot_aws::events_from_config(&aws, bus));
        let capture = shadowpilot_aws::capture_from_config(&aws);
        let mut controller = Controller::new(&store, &metrics, &policies).with_capture(&capture);
        if let Some(sink) = &sink {
            controller = controller.with_events(sink);
        }
        controller
            .run_tick(&options, now, schedule.next_tick_after(now))
            .await
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.table());
    }
    if args.emf {
        let facts = TickFacts {
            scheduled: !options.dry_run,
            duration: started.elapsed(),
            timestamp_ms: now.timestamp_millis(),
        };
        for line in emf::lines(&report, &facts) {
            eprintln!("{line}");
        }
    }
    Ok(ExitCode::from(report.run_verdict().exit_code()))
}
