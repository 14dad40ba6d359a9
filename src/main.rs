//! The `dyce` command line: the product's commands (`cmd/`) and the developer tools (`tools/`).

mod cmd;
mod tools;

use std::io::IsTerminal;

use clap::{Parser, Subcommand, ValueEnum};

use cmd::{calibrate, control, inspect, serve, train, up};
use tools::{bench, bench_backbone, demo, load};

/// dyce: early-exit CNN serving that trades a little accuracy for latency under load.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log line format on stderr: `text` for people, `json` (one object per line, with the
    /// span fields) for log collectors. Colour only when stderr is a terminal.
    #[arg(long, global = true, env = "DYCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr at `RUST_LOG` (default `info`) in `format`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
        // Escape codes only for a person at a terminal: in a file, a pipe or a log collector
        // they are noise around every level and field.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve early-exit inference (OIP v2) with a data port and an admin port.
    Serve(serve::ServeArgs),
    /// Show a model's exit positions, cumulative MACs, exit heads and configurations.
    Inspect(inspect::InspectArgs),
    /// Measure each configuration's real cost on this hardware (and record it in configs.json).
    Bench(bench::BenchArgs),
    /// Measure images/s of a full backbone on random weights (no exits).
    BenchBackbone(bench_backbone::BenchBackboneArgs),
    /// Train a small-input ResNet backbone on Fashion-MNIST (checkpoints, resume, fixed seed).
    Train(train::TrainArgs),
    /// Train exits on a trained backbone, search configurations, write the bundle and report.
    Calibrate(calibrate::CalibrateArgs),
    /// Steer runtimes by an SLO policy (`simulate`: against simulated runtimes).
    Control(control::ControlArgs),
    /// Check a policy file or print the policy JSON schema.
    Policy(control::PolicyArgs),
    /// Print the SloPolicy CustomResourceDefinition (YAML), for `kubectl apply -f -`.
    Crd,
    /// A runtime with the embedded model and a controller with the default policy, on loopback.
    Up(up::UpArgs),
    /// Offer open-loop OIP v2 load of labelled Fashion-MNIST images; measure latency and accuracy.
    Load(load::LoadArgs),
    /// Proof under load: a burst served by static configs and by dyce, plus simulated autoscaling.
    Demo(demo::DemoArgs),
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchBackbone(args) => bench_backbone::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Calibrate(args) => calibrate::run(&args),
        Command::Control(args) => control::run(&args),
        Command::Policy(args) => control::policy(&args),
        Command::Crd => {
            print!("{}", dyce_controller::kube::resource::crd_yaml());
            Ok(())
        }
        Command::Up(args) => up::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Demo(args) => demo::run(&args),
    };
    if let Err(e) = result {
        // One line, the whole cause chain: what a user needs to fix the input.
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
