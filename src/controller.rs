//! The control loop: observe (Jicofo) -> decide (policy) -> record (store) -> act (lifecycle).
//!
//! Intent is recorded in the ledger before any lifecycle call, and results after it, so a
//! call that is cancelled, times out or dies with the process is retried, never forgotten.

use std::sync::Arc;
use std::time::{Duration, Instant};

use policy::{Event, LaunchHold, Ledger, Origin};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lifecycle::LifecycleError;
use crate::service::{Service, now_ms};

/// A fresh host name `<prefix>-<12 hex digits>` not used in the ledger.
pub fn new_host_name(prefix: &str, ledger: &Ledger) -> String {
    let mut rng = rand::rng();
    loop {
        let name = format!("{prefix}-{:012x}", rng.random::<u64>() & 0xffff_ffff_ffff);
        if ledger.get(&name).is_none() {
            return name;
        }
    }
}

/// Runs the loop until `shutdown`; lifecycle calls in progress are tracked by `tasks`.
/// Every replica reads Jicofo (its approvals need a fresh view); only the leader launches,
/// times out, deletes and reconciles.
pub async fn run(svc: Arc<Service>, shutdown: CancellationToken, tasks: TaskTracker) {
    let mut interval = tokio::time::interval(svc.cfg.policy.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease_timer = tokio::time::interval(svc.cfg.store.lease_ttl / 3);
    lease_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reconcile = Instant::now();
    svc.renew_lease().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = lease_timer.tick() => {
                svc.renew_lease().await;
                continue;
            }
            _ = interval.tick() => {}
            _ = svc.wake.notified() => {}
        }
        let started = Instant::now();
        step(&svc, &tasks).await;
        svc.ops.tick_done(started.elapsed());
        if svc.is_leader() && last_reconcile.elapsed() >= svc.cfg.policy.reconcile_interval {
            last_reconcile = Instant::now();
            reconcile(&svc).await;
        }
    }
    svc.release_lease().await;
}

/// What the leader's tick decided, for logging and acting after the write.
struct Planned {
    tick: policy::Tick,
    launched: Vec<String>,
    merged: crate::jicofo::Merged,
    creates: Vec<String>,
    deletes: Vec<String>,
    // warm pool (issue 13)
    pool: crate::warm_pool::Launches,
    starts: Vec<String>,
    stops: Vec<String>,
}

/// One tick: read every shard, run the policy, record the launches, start the owed calls.
pub async fn step(svc: &Arc<Service>, tasks: &TaskTracker) {
    let mut shards = svc.core.lock().await.shards.clone();
    svc.jicofo.poll(&mut shards, now_ms).await;
    svc.mark_stats_attempted();
    svc.core.lock().await.shards = shards;
    svc.flush_queued().await;
    let Some(fence) = svc.lease() else {
        svc.sync().await;
        return;
    };
    let now = now_ms();
    let planned = svc
        .mutate(Some(&fence), |snap, core| {
            let merged = crate::jicofo::merge(&core.shards, now, svc.timing.stats_max_age_ms);
            // warm pool (issue 13): policy::tick plus starts from the pool and refills.
            let pool = crate::warm_pool::tick(
                &svc.cfg.warm_pool,
                &svc.cfg.lifecycle.name_prefix,
                &mut snap.ledger,
                &snap.settings,
                merged.observation.as_ref(),
                &svc.timing,
                now,
            );
            Planned {
                tick: pool.tick.clone(),
                launched: pool.created.clone(),
                merged,
                creates: snap.ledger.creates_owed(),
                deletes: snap.ledger.deletes_owed(),
                pool,
                starts: snap.ledger.starts_owed(),
                stops: snap.ledger.stops_owed(),
            }
        })
        .await;
    let Planned {
        tick,
        launched,
        merged,
        creates,
        deletes,
        pool,
        starts,
        stops,
    } = match planned {
        Ok(p) => p,
        Err(e) => {
            // Nothing recorded means nothing launched: try again next tick.
            tracing::error!(error = %e, "cannot store the tick's changes; launching nothing");
            return;
        }
    };
    let previous = svc.core.lock().await.last_launch.replace(tick.launch);

    for e in &tick.events {
        log_event(svc, e);
    }
    if !merged.stale.is_empty() && !merged.fresh.is_empty() {
        tracing::warn!(stale = ?merged.stale, fresh = ?merged.fresh, "some shards have no fresh stats; using the fresh ones");
    }
    if merged.disagreement {
        tracing::warn!(shards = ?merged.fresh, "shards disagree on the gateway counts; using highest total, lowest available");
    }
    let d = tick.launch;
    let numbers = format!(
        "deficit {} = min - (available {} + in flight {} - pending {}); room under max {} (total {})",
        d.deficit, d.available, d.in_flight, d.pending_removal, d.room, d.total
    );
    crate::warm_pool::record_launches(svc, &pool, &svc.cfg.warm_pool); // warm pool (issue 13)
    if !launched.is_empty() {
        svc.record(Service::decision(
            "launch",
            None,
            &format!("launch {}", launched.len()),
            format!("{numbers}; hosts {}", launched.join(", ")),
            None,
        ));
    } else if d.launch == 0
        && previous.map(|p| p.hold) != Some(d.hold)
        && d.hold != Some(LaunchHold::NoDeficit)
    {
        let why = match d.hold {
            Some(LaunchHold::StatsMissing) => {
                "no fresh Jicofo stats: launching nothing".to_string()
            }
            _ => format!("at max: {numbers}"),
        };
        svc.record(Service::decision("launch", None, "hold", why, None));
    } else {
        tracing::debug!("launch 0: {numbers}");
    }
    for host in creates {
        spawn_call(svc, tasks, host, Call::Create);
    }
    for host in deletes {
        spawn_call(svc, tasks, host, Call::Delete);
    }
    crate::warm_pool::spawn_power_calls(svc, tasks, starts, stops); // warm pool (issue 13)
}

fn log_event(svc: &Service, e: &Event) {
    if let Event::Seen { boot_ms, .. } = e {
        svc.ops.metrics.boot(*boot_ms);
    }
    let d = match e {
        Event::Seen { host, boot_ms } => Service::decision(
            "seen",
            Some(host),
            "ready",
            format!(
                "counted by Jicofo {:.0}s after launch",
                *boot_ms as f64 / 1000.0
            ),
            None,
        ),
        Event::Left { host } => Service::decision(
            "left",
            Some(host),
            "left",
            "no longer counted by Jicofo".into(),
            None,
        ),
        Event::Unexplained { delta, offset } => {
            tracing::info!(
                delta,
                unmanaged = offset,
                "Jicofo count changed outside the ledger"
            );
            return;
        }
        Event::BootTimeout { host } => Service::decision(
            "timeout",
            Some(host),
            "launch_failed",
            "not seen in Jicofo within the boot timeout: deleting it".into(),
            None,
        ),
        Event::DrainTimeout { host } => Service::decision(
            "timeout",
            Some(host),
            "deleting",
            "no drain confirmation within the drain timeout: deleting it".into(),
            None,
        ),
        Event::PendingExpired { host } => Service::decision(
            "timeout",
            Some(host),
            "not_pending",
            "still counted by Jicofo after the pending-removal TTL".into(),
            None,
        ),
        Event::Forgotten { host } => {
            tracing::debug!(host, "forgotten after the retention period");
            return;
        }
        // warm pool (issue 13)
        Event::Resumed { .. } | Event::StartTimeout { .. } | Event::PoolTrimmed { .. } => {
            match crate::warm_pool::event_decision(e) {
                Some(d) => d,
                None => return,
            }
        }
    };
    svc.record(d);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Call {
    Create,
    Delete,
}

/// Starts a lifecycle call for `host` unless one is already in progress.
fn spawn_call(svc: &Arc<Service>, tasks: &TaskTracker, host: String, call: Call) {
    {
        let Ok(mut calls) = svc.calls.lock() else {
            return;
        };
        if !calls.insert(host.clone()) {
            return;
        }
    }
    let svc = Arc::clone(svc);
    tasks.spawn(async move {
        match call {
            Call::Create => create(&svc, &host).await,
            Call::Delete => delete(&svc, &host).await,
        }
        if let Ok(mut calls) = svc.calls.lock() {
            calls.remove(&host);
        }
    });
}

async fn create(svc: &Arc<Service>, host: &str) {
    let started = Instant::now();
    let result = svc.lifecycle.create(host, &svc.cfg.instance_type).await;
    let elapsed = started.elapsed().as_millis();
    let (outcome, why) = match &result {
        Ok(_) => (
            "created",
            format!("lifecycle manager created it in {elapsed} ms"),
        ),
        Err(e) if e.is_definitive() => ("launch_failed", format!("create refused: {e}")),
        Err(e) => ("retry", format!("create failed, retrying next tick: {e}")),
    };
    record_outcome(
        svc,
        host,
        "create",
        outcome,
        why,
        |snap, now| match &result {
            Ok(created) => {
                snap.ledger.launch_confirmed(host, now);
                if let Some(ip) = &created.ip {
                    snap.ledger.set_ip(host, ip);
                }
            }
            Err(e) => snap
                .ledger
                .launch_error(host, now, &e.to_string(), e.is_definitive()),
        },
    )
    .await;
}

/// Stores a lifecycle call's outcome as leader and records the decision. A deposed leader
/// drops it: the new leader repeats the call, which is idempotent (by name; 404 = gone).
async fn record_outcome(
    svc: &Arc<Service>,
    host: &str,
    kind: &'static str,
    outcome: &str,
    why: String,
    apply: impl Fn(&mut crate::store::Snapshot, policy::Millis),
) {
    let Some(fence) = svc.lease() else {
        tracing::info!(
            host,
            kind,
            "not the leader any more; the new leader repeats the call"
        );
        return;
    };
    let now = now_ms();
    match svc.mutate(Some(&fence), |snap, _| apply(snap, now)).await {
        Ok(()) => svc.record(Service::decision(kind, Some(host), outcome, why, None)),
        Err(e) => {
            tracing::error!(host, kind, error = %e, "cannot store the call's outcome; it is repeated (idempotent)")
        }
    }
}

/// The name the lifecycle manager knows `host` by (`None`: it does not know it).
async fn lifecycle_name(svc: &Service, host: &str) -> Result<Option<String>, LifecycleError> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return svc.lifecycle.find_by_ip(host).await;
    }
    match &svc.cfg.lifecycle.foreman.domain {
        Some(domain) if !host.contains('.') => Ok(Some(format!("{host}.{domain}"))),
        _ => Ok(Some(host.to_string())),
    }
}

async fn delete(svc: &Arc<Service>, host: &str) {
    let result = match lifecycle_name(svc, host).await {
        Ok(Some(name)) => svc
            .lifecycle
            .delete(&name)
            .await
            .map(|()| format!("deleted {name}")),
        Ok(None) => Ok("the lifecycle manager has no host with this address".into()),
        Err(e) => Err(e),
    };
    let (outcome, why) = match &result {
        Ok(why) => ("deleted", why.clone()),
        Err(e) => ("retry", format!("delete failed, retrying next tick: {e}")),
    };
    record_outcome(
        svc,
        host,
        "delete",
        outcome,
        why,
        |snap, now| match &result {
            Ok(_) => snap.ledger.delete_done(host, now),
            Err(e) => snap.ledger.delete_error(host, &e.to_string()),
        },
    )
    .await;
}

/// Compares the lifecycle manager's hosts with our prefix against the ledger.
pub async fn reconcile(svc: &Arc<Service>) {
    let prefix = svc.cfg.lifecycle.name_prefix.clone();
    // Entries that changed after the list was asked for may legitimately be missing from it.
    let asked_at = now_ms();
    let listed = match svc.lifecycle.list(&prefix).await {
        Ok(l) => l,
        Err(LifecycleError::Unsupported(_)) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reconciliation skipped: cannot list hosts");
            return;
        }
    };
    let short = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_lowercase();
    let listed_short: std::collections::HashSet<String> = listed.iter().map(|h| short(h)).collect();
    let Some(fence) = svc.lease() else {
        return;
    };
    let now = now_ms();
    let result = svc
        .mutate(Some(&fence), |snap, _| {
            let vanished: Vec<String> = snap
                .ledger
                .instances()
                .filter(|i| {
                    let live = matches!(
                        i.state,
                        policy::State::Booting
                            | policy::State::Ready
                            | policy::State::Draining
                            | policy::State::Deleting
                            // warm pool (issue 13)
                            | policy::State::Stopped
                            | policy::State::Resuming
                            | policy::State::Stopping
                    );
                    i.origin != Origin::Adopted
                        && live
                        && i.state_since < asked_at
                        && !listed_short.contains(&short(&i.host))
                })
                .map(|i| i.host.clone())
                .collect();
            for h in &vanished {
                snap.ledger.vanished(h, now);
            }
            let orphans: Vec<String> = listed
                .iter()
                .filter(|h| snap.ledger.find(h).is_none())
                .cloned()
                .collect();
            (vanished, orphans)
        })
        .await;
    let (vanished, orphans) = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot store reconciliation");
            return;
        }
    };
    for h in vanished {
        svc.record(Service::decision(
            "reconcile",
            Some(&h),
            "gone",
            "missing from the lifecycle manager".into(),
            None,
        ));
    }
    // warm pool (issue 13): powered-off orphans join the pool.
    let learned = crate::warm_pool::learn_stopped(svc, &orphans).await;
    let orphans: Vec<&String> = orphans.iter().filter(|h| !learned.contains(h)).collect();
    if !orphans.is_empty() {
        tracing::warn!(hosts = ?orphans, "hosts with our prefix unknown to the ledger (left alone)");
    }
}

/// Waits for lifecycle calls in progress, at most `grace`.
pub async fn drain_tasks(tasks: &TaskTracker, grace: Duration) {
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!("lifecycle calls still running at shutdown; they are retried after restart");
    }
}
