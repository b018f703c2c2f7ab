//! systemd `Type=notify`: `READY=1` once listening with the store loaded, `STOPPING=1` at
//! shutdown, and `WATCHDOG=1` every half `WATCHDOG_USEC` while the control loop ticks.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::service::{Service, now_ms};

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

/// The longest a tick may be missing before the watchdog stops being fed: three ticks plus
/// the Jicofo timeout (a tick may wait that long for a shard).
fn stall_limit(svc: &Service) -> Duration {
    svc.cfg.policy.tick * 3 + svc.cfg.jicofo.timeout
}

/// Sends `WATCHDOG=1` every `period` while the control loop has ticked recently; a stalled
/// loop stops the pings, and systemd restarts the service.
pub async fn watchdog(svc: Arc<Service>, shutdown: CancellationToken, period: Duration) {
    let limit = crate::duration::millis(stall_limit(&svc));
    let mut interval = tokio::time::interval(period);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let last = svc.ops.last_tick_ms();
        // Before the first tick the loop is starting: the start itself counts as a tick.
        let last = if last == 0 { svc.started_at } else { last };
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
