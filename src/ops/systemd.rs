//! systemd `Type=notify`: `READY=1` once listening with the store loaded, `STOPPING=1` at
//! shutdown, and `WATCHDOG=1` every half `WATCHDOG_USEC` while the control loop ticks.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::now_ms;

/// Tells systemd the service is ready (listening, store loaded).
pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Half the watchdog timeout systemd asked for, if it asked (`WatchdogSec=` in the unit).
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// Sends `WATCHDOG=1` every `period` while the control loop has ticked within `limit`
/// (`last_tick` gives when it last did, in ms since the epoch); a stalled loop stops the pings,
/// and systemd restarts the service.
pub async fn watchdog(
    last_tick: impl Fn() -> u64,
    limit: Duration,
    shutdown: CancellationToken,
    period: Duration,
) {
    let limit = crate::duration::millis(limit);
    let mut interval = tokio::time::interval(period);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let last = last_tick();
        if now_ms().saturating_sub(last) <= limit {
            warned = false;
            notify(&[NotifyState::Watchdog]);
        } else if !warned {
            warned = true;
            tracing::error!(
                last_tick_ms_ago = now_ms().saturating_sub(last),
                "control loop stalled: no longer feeding the systemd watchdog"
            );
        }
    }
}
