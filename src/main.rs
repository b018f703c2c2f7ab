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
    /// Sign an ASAP JWT with a private key and print it (for curl and scripts).
    Token(jitsi_scaler::auth::TokenArgs),
    /// Scale-down agent on a gateway: watch Jibri, ask for removal, drain.
    Agent(jitsi_scaler::agent::AgentArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(args) => {
            // The token alone on stdout, so $(jitsi-scaler token ...) works.
            println!("{}", jitsi_scaler::auth::run_token(&args)?);
            Ok(())
        }
        Command::Agent(args) => {
            jitsi_scaler::agent::main(args)?;
            Ok(())
        }
    }
}
