//! The warm pool's lifecycle calls (power on, power off, learning stopped hosts) and their
//! decisions: the acting side of `crate::warm_pool`.

use std::sync::Arc;
use std::time::Instant;

use crate::decision::{Decision, PoolDecision, Record};
use crate::lifecycle::{LifecycleError, PowerState};
use crate::managed::Guard;
use crate::ops::now_ms;
use crate::service::Service;

/// Powers `host` on (`start`) or off, confirmed by status, and records the outcome as leader
/// (hook: the controller's `spawn_call`, one call per host at a time).
pub(super) async fn power(svc: &Arc<Service>, host: &str, start: bool) {
    let began = Instant::now();
    let result = if start {
        svc.lifecycle().start(host).await
    } else {
        // The one guard: a power-off goes only to a host the scaler launched or the lifecycle
        // manager confirms inside the managed set.
        match svc.guard(host).await {
            Guard::Go(name) => svc.lifecycle().stop(&name).await,
            Guard::Absent(note) => {
                let m = policy::Membership::ReportsOnly;
                svc.refuse_unmanaged(host, "power off", m, &note).await;
                return;
            }
            Guard::Refused(m, note) => {
                svc.refuse_unmanaged(host, "power off", m, &note).await;
                return;
            }
            Guard::Retry(error) => Err(LifecycleError::Transient(format!(
                "cannot ask the lifecycle manager whether the host is managed: {error}"
            ))),
        }
    };
    let elapsed_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    let h = host.to_string();
    let d = match (&result, start) {
        (Ok(()), true) => PoolDecision::Started {
            host: h,
            elapsed_ms,
        },
        (Ok(()), false) => PoolDecision::Stopped {
            host: h,
            elapsed_ms,
        },
        (Err(e), true) if e.is_definitive() => PoolDecision::StartRefused {
            host: h,
            error: e.to_string(),
        },
        (Err(e), false) if e.is_definitive() => PoolDecision::StopRefused {
            host: h,
            error: e.to_string(),
        },
        (Err(e), _) => PoolDecision::PowerRetry {
            host: h,
            action: if start { "start" } else { "stop" },
            error: e.to_string(),
        },
    };
    let now = now_ms();
    let Some(fence) = svc.lease() else {
        svc.record(
            Record::new(now, Decision::Pool(d))
                .refused("not the leader any more; the new leader repeats the call".into()),
        );
        return;
    };
    let stored = svc
        .apply(Some(&fence), |snap, _, _| match (&result, start) {
            (Ok(()), true) => snap.ledger.start_confirmed(host, now),
            (Ok(()), false) => snap.ledger.stop_done(host, now),
            (Err(e), true) => snap
                .ledger
                .start_error(host, now, &e.to_string(), e.is_definitive()),
            (Err(e), false) => snap
                .ledger
                .stop_error(host, now, &e.to_string(), e.is_definitive()),
        })
        .await;
    match stored {
        Ok(()) => svc.record(Record::new(now, Decision::Pool(d))),
        Err(e) if e.fenced() => {
            svc.record(Record::new(now, Decision::Pool(d)).refused(e.to_string()))
        }
        Err(e) => {
            tracing::error!(host, error = %e, "cannot store the power call's outcome; it is repeated")
        }
    }
    svc.wake();
}

/// Reconciliation hook: hosts with our prefix unknown to the ledger that are powered off (left
/// from a previous run) join the pool instead of new hosts being created. At most the pool's
/// size is asked about per run. Returns the hosts learned.
pub(super) async fn learn_stopped(svc: &Arc<Service>, orphans: &[String]) -> Vec<String> {
    let size = svc.cfg.warm_pool.size as usize;
    if size == 0 {
        return Vec::new();
    }
    let mut stopped = Vec::new();
    for host in orphans.iter().take(size) {
        match svc.lifecycle().power_status(host).await {
            Ok(PowerState::Off) => stopped.push(host.clone()),
            Ok(_) => {}
            Err(LifecycleError::Unsupported(_)) => return Vec::new(),
            Err(e) => {
                tracing::warn!(host, error = %e, "reconciliation: cannot read the power state")
            }
        }
    }
    if stopped.is_empty() {
        return stopped;
    }
    let Some(fence) = svc.lease() else {
        return Vec::new();
    };
    let now = now_ms();
    let learned = svc
        .apply(Some(&fence), |snap, _, _| {
            stopped
                .iter()
                .filter(|h| snap.ledger.learn_stopped(h, now))
                .cloned()
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    for h in &learned {
        let d = Decision::Pool(PoolDecision::Learned { host: h.clone() });
        svc.record(Record::new(now, d));
    }
    learned
}
