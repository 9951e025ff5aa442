//! The operator's CLI: the same tick as the Lambda, by hand; policy checks;
//! and the simulator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shadowpilot_core::config::{load_policies, POLICIES_VAR, SCHEDULE_VAR};

#[derive(Parser)]
#[command(
    name = "shadowpilot",
    version,
    about = "Steers Amazon SageMaker shadow tests"
)]
struct Cli {
    /// How results are printed.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// One tick against the configured AWS account: a dry run unless --apply.
    Run(RunArgs),
    /// The same as `run` without --apply: what the next tick would do.
    Plan(TickArgs),
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Runs the controller over a simulated SageMaker and CloudWatch.
    Simulate(SimulateArgs),
}

#[derive(Args)]
struct TickArgs {
    /// Only these experiments (repeatable); default: every listed one.
    #[arg(long = "experiment", value_name = "NAME")]
    experiments: Vec<String>,
    /// The EventBridge expression the deployed function runs on.
    #[arg(long, env = SCHEDULE_VAR)]
    schedule: Option<String>,
    /// A policy file or directory; default: the built-in policies.
    #[arg(long, env = POLICIES_VAR)]
    policies: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    tick: TickArgs,
    /// Write to AWS. Without it nothing is changed. SHADOWPILOT_DRY_RUN=true
    /// overrides it.
    #[arg(long)]
    apply: bool,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validates policy files or directories; lists every problem.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct SimulateArgs {
    /// A scenario file (see scenarios/).
    scenario: PathBuf,
    /// A policy file or directory; default: the built-in policies.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Stop after this much virtual time (e.g. 3d, 12h).
    #[arg(long)]
    until: Option<String>,
    /// Draw the run as an SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    // Decisions are in the report; logs go to stderr at warn unless asked.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHADOWPILOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => tick(args.tick, args.apply, cli.output),
        Command::Plan(args) => tick(args, false, cli.output),
        Command::Policy {
            command: PolicyCommand::Check { paths },
        } => policy_check(&paths, cli.output),
        Command::Simulate(args) => simulate(args, cli.output),
    }
}

fn policy_check(paths: &[PathBuf], output: Output) -> anyhow::Result<ExitCode> {
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for path in paths {
        match load_policies(Some(path)) {
            Ok(set) => names.extend(
                set.policies()
                    .iter()
                    .map(|p| format!("{} ({})", p.name(), p.source)),
            ),
            Err(error) => problems.push(error),
        }
    }
    if output == Output::Json {
        let value = serde_json::json!({
            "valid": problems.is_empty(),
            "policies": names,
            "problems": problems.iter().map(|p| format!("{p}")).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for name in &names {
            println!("ok  {name}");
        }
        for problem in &problems {
            eprintln!("{problem}");
            if let shadowpilot_core::policy::PolicyError::Read { source, .. } = problem {
                eprintln!("  {source}");
            }
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(feature = "aws")]
fn tick(args: TickArgs, apply: bool, output: Output) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use shadowpilot_core::config::Config;
    use shadowpilot_core::controller::{Controller, RunOptions};
    use shadowpilot_core::schedule::Schedule;

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
    let schedule = Schedule::parse(&expression)?;
    let policies = load_policies(args.policies.as_deref().or(config.policies_path.as_deref()))?;
    if apply && config.force_dry_run {
        eprintln!("note: SHADOWPILOT_DRY_RUN=true overrides --apply; nothing will be written");
    }
    let options = RunOptions {
        dry_run: config.force_dry_run || !apply,
        only: (!args.experiments.is_empty()).then_some(args.experiments),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let (store, metrics) = shadowpilot_aws::clients_from_env().await;
        let now = chrono::Utc::now();
        Controller::new(&store, &metrics, &policies)
            .run_tick(&options, now, schedule.next_tick_after(now))
            .await
    })?;
    match output {
        Output::Table => println!("{}", report.table()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    let failed = report.summary.verdicts.error > 0;
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(not(feature = "aws"))]
fn tick(_: TickArgs, _: bool, _: Output) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this build has no AWS support: build with the default features (cargo build) to run against AWS")
}

fn simulate(args: SimulateArgs, output: Output) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use shadowpilot_sim as sim;

    let scenario = sim::Scenario::load(&args.scenario)?;
    let policies = load_policies(args.policies.as_deref())?;
    let until = args
        .until
        .as_deref()
        .map(|text| {
            humantime::parse_duration(text)
                .with_context(|| format!("--until {text:?} is not a duration such as 3d or 12h"))
        })
        .transpose()?;
    if let Some(until) = until {
        // The simulated world never lasts longer than the 30-day cap plus
        // its latest start; a bound keeps the clock arithmetic in range.
        anyhow::ensure!(
            until <= std::time::Duration::from_secs(400 * 86_400),
            "--until {} is longer than 400 days",
            args.until.as_deref().unwrap_or_default()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(sim::run(&scenario, &policies, until))?;
    if let Some(path) = &args.plot {
        sim::write_svg(&outcome, path)
            .with_context(|| format!("cannot draw {}", path.display()))?;
    }
    match output {
        Output::Table => println!("{}\n{}", outcome.timeline_table(), outcome.summary_table()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&outcome.to_json())?),
    }
    if let Some(path) = &args.plot {
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
