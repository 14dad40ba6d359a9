//! The `dyce` command line: the product's commands (`cmd/`) and the developer tools (`tools/`).

mod cmd;
mod tools;

use clap::{Parser, Subcommand};

use cmd::{calibrate, control, inspect, serve, train, up};
use tools::{bench, bench_backbone, demo, load};

/// dyce: early-exit CNN serving that trades a little accuracy for latency under load.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
