//! The `jitsi-scaler` binary: thin CLI over the library.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// Autoscaler for Jitsi video-sip-gateway (SIP-Jibri) pools.
#[derive(Parser)]
#[command(name = "jitsi-scaler", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay or generate a call trace against our policy, the legacy scaler and an
    /// autoscaler-style policy on a simulated clock; report rejected calls and worker-hours.
    // Boxed: the arguments are large and clippy flags the size difference between variants.
    Simulate(Box<jitsi_scaler::sim::SimulateArgs>),
    /// Erlang-B sizing: the spare count (`min`) needed for a target rejection rate.
    Plan(jitsi_scaler::plan::PlanArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => jitsi_scaler::sim::run(&args)?,
        Command::Plan(args) => jitsi_scaler::plan::run(&args)?,
    }
    Ok(())
}
