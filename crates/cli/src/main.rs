//! The operator's CLI: the same tick as the Lambda, by hand; policy checks;
//! and the simulator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shadowpilot_core::config::load_policies;

mod compare;
// The one place the CLI depends on its `aws` feature (and `compare`'s AWS
// half).
#[cfg(feature = "aws")]
mod live;

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
    /// `run` and `plan` against AWS: only in a build with the AWS adapters.
    #[cfg(feature = "aws")]
    #[command(flatten)]
    Live(live::LiveCommand),
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The EventBridge events shadowpilot sends.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// The report a tick returns (the Lambda's result, `--output json`).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Runs the controller over a simulated SageMaker and CloudWatch.
    Simulate(SimulateArgs),
    /// Reads both variants' data capture and prints how their outputs
    /// agree: counts, pairing, the output checks with their intervals and
    /// disagreements side by side. Judges and writes nothing. From S3, or
    /// in a scenario's simulated world with --scenario.
    Compare(compare::CompareArgs),
    /// Measures the judge's claims over many simulated copies (fixed seeds)
    /// and prints a table; best in a release build.
    Proof(ProofArgs),
}

#[derive(Args)]
struct ProofArgs {
    /// Cases to run (default: all): aa-60, aa-150, aa-1000, aa-5000,
    /// errors-1.3, errors-1.3-ramps, p99-1.5x, p99-3x-late, p99-bias,
    /// p99-1.15x, healthy-1200, healthy-1200-pass-only.
    cases: Vec<String>,
    /// Copies per case.
    #[arg(long, default_value_t = 200)]
    copies: u16,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Prints the JSON Schema of every event's detail
    /// (schemas/event-detail.schema.json).
    Schema,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Prints the JSON Schema of the report (schemas/report.schema.json).
    Schema,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Prints the JSON Schema of policy files (policies/policy.schema.json).
    Schema,
    /// Validates policy files or directories; lists every problem and every
    /// deprecated field.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also refuse change windows that no tick of this EventBridge
        /// schedule falls in (checked over two weeks).
        #[arg(long)]
        schedule: Option<String>,
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
        #[cfg(feature = "aws")]
        Command::Live(command) => live::run(command, cli.output == Output::Json),
        Command::Policy {
            command: PolicyCommand::Check { paths, schedule },
        } => policy_check(&paths, schedule.as_deref(), cli.output),
        Command::Policy {
            command: PolicyCommand::Schema,
        } => print_schema(&shadowpilot_core::policy::json_schema()),
        Command::Events {
            command: EventsCommand::Schema,
        } => print_schema(&shadowpilot_core::events::detail_schema()),
        Command::Report {
            command: ReportCommand::Schema,
        } => print_schema(&shadowpilot_core::report::report_schema()),
        Command::Simulate(args) => simulate(args, cli.output),
        Command::Compare(args) => compare::compare(args, cli.output == Output::Json),
        Command::Proof(args) => proof(args),
    }
}

fn proof(args: ProofArgs) -> anyhow::Result<ExitCode> {
    use shadowpilot_sim::proof;
    let all = proof::cases();
    let chosen: Vec<&proof::Case> = if args.cases.is_empty() {
        all.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args.cases {
            chosen.push(all.iter().find(|c| c.name == name).ok_or_else(|| {
                anyhow::anyhow!(
                    "no proof case {name:?}; cases: {}",
                    all.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                )
            })?);
        }
        chosen
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("| case | copies | claim | measured |");
    println!("|---|---|---|---|");
    for case in chosen {
        let started = std::time::Instant::now();
        let measured = runtime
            .block_on(proof::run_case(case, args.copies, args.seed))
            .map_err(|error| anyhow::anyhow!("{}: {error}", case.name))?;
        println!(
            "| {} | {} | {} | {measured} ({:.0} s) |",
            case.name,
            args.copies,
            case.claim,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn policy_check(
    paths: &[PathBuf],
    schedule: Option<&str>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let schedule = schedule
        .map(|text| {
            shadowpilot_core::schedule::Schedule::parse(text)
                .with_context(|| format!("--schedule {text:?}"))
        })
        .transpose()?;
    let mut problems: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut names = Vec::new();
    for path in paths {
        match load_policies(Some(path)) {
            Ok(set) => {
                for policy in set.policies() {
                    names.push(format!("{} ({})", policy.name(), policy.source));
                    warnings.extend(policy.deprecations.iter().map(ToString::to_string));
                    if let Some(schedule) = &schedule {
                        problems.extend(unreachable_windows(policy, schedule));
                    }
                }
            }
            Err(error) => {
                let mut text = format!("{error}");
                if let shadowpilot_core::policy::PolicyError::Read { source, .. } = &error {
                    text.push_str(&format!("\n  {source}"));
                }
                problems.push(text);
            }
        }
    }
    if output == Output::Json {
        let value = serde_json::json!({
            "valid": problems.is_empty(),
            "policies": names,
            "problems": problems,
            "warnings": warnings,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for name in &names {
            println!("ok  {name}");
        }
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        for problem in &problems {
            eprintln!("{problem}");
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A change window that no tick of the schedule falls in can never let a
/// write through; two weeks of ticks cover every weekly window.
fn unreachable_windows(
    policy: &shadowpilot_core::policy::Policy,
    schedule: &shadowpilot_core::schedule::Schedule,
) -> Vec<String> {
    let start = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    let horizon = start + chrono::Duration::days(14);
    let mut reached = vec![false; policy.change_windows.len()];
    let mut tick = schedule.next_tick_after(start);
    let mut steps = 0;
    while tick < horizon && steps < 100_000 && reached.iter().any(|r| !r) {
        for (window, seen) in policy.change_windows.iter().zip(&mut reached) {
            *seen |= window.is_open(tick);
        }
        tick = schedule.next_tick_after(tick);
        steps += 1;
    }
    policy
        .change_windows
        .iter()
        .zip(reached)
        .enumerate()
        .filter(|(_, (_, seen))| !seen)
        .map(|(index, (window, _))| {
            format!(
                "{}: change_windows[{index}]: no tick of the schedule falls in {} for {}, so nothing would ever be written there",
                policy.source,
                window.expression,
                shadowpilot_core::duration::format(window.duration)
            )
        })
        .collect()
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

fn print_schema(schema: &serde_json::Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(schema)?);
    Ok(ExitCode::SUCCESS)
}
