//! The operator's CLI: the same tick as the Lambda, by hand; policy checks;
//! and the simulator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shadowpilot_core::config::load_policies;

// The one place the CLI depends on its `aws` feature.
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
    /// Runs the controller over a simulated SageMaker and CloudWatch.
    Simulate(SimulateArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Prints the JSON Schema of policy files (policies/policy.schema.json).
    Schema,
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
        #[cfg(feature = "aws")]
        Command::Live(command) => live::run(command, cli.output == Output::Json),
        Command::Policy {
            command: PolicyCommand::Check { paths },
        } => policy_check(&paths, cli.output),
        Command::Policy {
            command: PolicyCommand::Schema,
        } => {
            let schema = shadowpilot_core::policy::json_schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
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
