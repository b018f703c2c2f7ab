//! Process plumbing shared by every command: log setup, the stop signal, and the prefix of
//! our environment variables.

/// Prefix of the environment variables that override config keys (`JITSI_SCALER_SECTION__KEY`);
/// lifecycle commands never inherit them.
pub const ENV_PREFIX: &str = "JITSI_SCALER_";

/// Sets up logging to stderr: `level` in `RUST_LOG` syntax (the `RUST_LOG` variable wins when
/// set), `json` for JSON lines. A second call (tests, `demo`) is not an error.
pub fn init_tracing(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::debug!("no SIGTERM handler ({e}); Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
