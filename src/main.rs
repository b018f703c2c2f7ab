//! The `jitsi-scaler` binary: thin CLI over the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

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
    /// Generate or check the multi-shard xmpp.environments block of jibri.conf.
    JibriConfig(jitsi_scaler::jibri_conf::JibriConfigArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::JibriConfig(args) => Ok(jitsi_scaler::jibri_conf::run(args)?),
    }
}
