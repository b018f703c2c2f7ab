//! The control loop: observe (Jicofo) -> decide (policy) -> record (store) -> act (lifecycle).
//!
//! Intent is recorded in the ledger before any lifecycle call, and results after it, so a
//! call that is cancelled, times out or dies with the process is retried, never forgotten.

mod pool;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use policy::Origin;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::decision::{Decision, Record};
use crate::lifecycle::LifecycleError;
use crate::managed::Guard;
use crate::ops::now_ms;
use crate::service::Service;
use crate::store::Snapshot;

/// The loop's own state: the service it drives and the lifecycle calls in progress.
pub struct Controller {
    svc: Arc<Service>,
    tasks: TaskTracker,
    /// Hosts with a lifecycle call in progress (one call per host at a time).
    calls: Mutex<HashSet<String>>,
}

/// Runs the loop until `shutdown`; lifecycle calls in progress are tracked by `tasks`.
/// Every replica reads Jicofo (its approvals need a fresh view); only the leader launches,
/// times out, deletes and reconciles.
pub async fn run(svc: Arc<Service>, shutdown: CancellationToken, tasks: TaskTracker) {
    let ctl = Arc::new(Controller::new(svc, tasks));
    let svc = &ctl.svc;
    let mut interval = tokio::time::interval(svc.cfg.policy.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease_timer = tokio::time::interval(svc.cfg.store.lease_ttl / 3);
    lease_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reconcile = Instant::now();
    svc.renew_lease().await;
    // warm pool: learn stopped hosts left from a previous run before any launch.
    if svc.cfg.warm_pool.size > 0 && svc.is_leader() {
        ctl.reconcile().await;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = lease_timer.tick() => {
                svc.renew_lease().await;
                continue;
            }
            _ = interval.tick() => {}
            _ = svc.woken() => {}
        }
        let started = Instant::now();
        ctl.step().await;
        svc.ops.tick_done(started.elapsed());
        svc.record_history().await;
        if svc.is_leader() && last_reconcile.elapsed() >= svc.cfg.policy.reconcile_interval {
            last_reconcile = Instant::now();
            ctl.reconcile().await;
        }
    }
    svc.store().release_lease().await;
}

/// A lifecycle call the loop makes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Call {
    Create,
    Delete,
    /// Warm pool: power on / off.
    Start,
    Stop,
    /// Ask the lifecycle manager whether an adopted host is managed.
    Verify,
}

impl Controller {
    /// A controller for `svc`; lifecycle calls are spawned on `tasks`.
    pub fn new(svc: Arc<Service>, tasks: TaskTracker) -> Controller {
        Controller {
            svc,
            tasks,
            calls: Mutex::new(HashSet::new()),
        }
    }

    /// One tick: observe (every shard's Jicofo), size (the spare floor), plan (the policy's
    /// one pure step, applied to the ledger in one store write), record (the plan's
    /// decisions), act (the lifecycle calls it owes). Followers only observe and size.
    pub async fn step(self: &Arc<Self>) {
        let svc = &self.svc;
        svc.observe().await;
        svc.flush_queued().await;
        // Every replica sizes the spare floor once per tick (outside `apply`, which may
        // retry); followers take the leader's stored profile.
        let now = now_ms();
        let change = svc.capacity_tick(now, svc.lease().is_some()).await;
        let Some(fence) = svc.lease() else {
            svc.store().sync().await;
            return;
        };
        let tick = svc.tick_inputs(now).await;
        let planned = svc
            .apply(Some(&fence), |snap, merged, _| {
                let plan = svc.plan(snap, merged, &tick);
                (
                    plan,
                    merged.stale.clone(),
                    merged.fresh.clone(),
                    merged.disagreement,
                )
            })
            .await;
        let (plan, stale, fresh, disagreement) = match planned {
            Ok(p) => p,
            Err(e) => {
                // Nothing recorded means nothing launched: try again next tick.
                tracing::error!(error = %e, "cannot store the tick's changes; launching nothing");
                return;
            }
        };
        svc.note_launch(plan.launch).await;
        if !stale.is_empty() && !fresh.is_empty() {
            tracing::warn!(
                ?stale,
                ?fresh,
                "some shards have no fresh stats; using the fresh ones"
            );
        }
        if disagreement {
            tracing::warn!(shards = ?fresh, "shards disagree on the gateway counts; using highest total, lowest available");
        }
        if let Some(c) = change {
            svc.record(Record::new(
                now,
                Decision::Capacity {
                    from: c.from,
                    sizing: c.sizing,
                },
            ));
        }
        svc.record_plan(&plan, &tick, now);
        let owed = plan.owed;
        let calls = [
            (owed.creates, Call::Create),
            (owed.deletes, Call::Delete),
            (owed.starts, Call::Start),
            (owed.stops, Call::Stop),
            (owed.verify, Call::Verify),
        ];
        for (hosts, call) in calls {
            for host in hosts {
                self.spawn_call(host, call);
            }
        }
    }

    /// Starts a lifecycle call for `host` unless one is already in progress.
    fn spawn_call(self: &Arc<Self>, host: String, call: Call) {
        {
            let Ok(mut calls) = self.calls.lock() else {
                return;
            };
            if !calls.insert(host.clone()) {
                return;
            }
        }
        let ctl = Arc::clone(self);
        self.tasks.spawn(async move {
            match call {
                Call::Create => ctl.create(&host).await,
                Call::Delete => ctl.delete(&host).await,
                Call::Start => pool::power(&ctl.svc, &host, true).await,
                Call::Stop => pool::power(&ctl.svc, &host, false).await,
                Call::Verify => ctl.svc.verify_adopted(&host).await,
            }
            if let Ok(mut calls) = ctl.calls.lock() {
                calls.remove(&host);
            }
        });
    }

    async fn create(&self, host: &str) {
        let svc = &self.svc;
        let started = Instant::now();
        let result = svc.lifecycle().create(host, &svc.cfg.instance_type).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let decision = call_decision(
            host,
            &result,
            |host, _| Decision::Created { host, elapsed_ms },
            |host, error| Decision::CreateRefused { host, error },
            |host, error| Decision::CreateRetry { host, error },
        );
        self.record_outcome(decision, |snap, now| match &result {
            Ok(created) => {
                snap.ledger.launch_confirmed(host, now);
                if let Some(ip) = &created.ip {
                    snap.ledger.set_ip(host, ip);
                }
            }
            // A refused create created nothing: no delete is owed.
            Err(e) if e.is_definitive() => snap.ledger.launch_refused(host, now, &e.to_string()),
            Err(e) => snap.ledger.launch_error(host, now, &e.to_string(), false),
        })
        .await;
    }

    async fn delete(&self, host: &str) {
        let svc = &self.svc;
        // The one guard: a host the scaler did not launch is deleted only once the lifecycle
        // manager confirms it inside the managed set (a host asked for by address resolves to
        // its name there; names go to the backend as recorded).
        let result = match svc.guard(host).await {
            Guard::Go(name) => svc
                .lifecycle()
                .delete(&name)
                .await
                .map(|()| format!("deleted {name}")),
            Guard::Absent(note) => Ok(format!("nothing to delete: {note}")),
            Guard::Refused(membership, note) => {
                svc.refuse_unmanaged(host, "delete", membership, &note)
                    .await;
                return;
            }
            Guard::Retry(error) => Err(LifecycleError::Transient(format!(
                "cannot ask the lifecycle manager whether the host is managed: {error}"
            ))),
        };
        let decision = call_decision(
            host,
            &result,
            |host, detail| Decision::Deleted {
                host,
                detail: detail.clone(),
            },
            |host, error| Decision::Parked { host, error },
            |host, error| Decision::DeleteRetry { host, error },
        );
        self.record_outcome(decision, |snap, now| match &result {
            Ok(_) => snap.ledger.delete_done(host, now),
            Err(e) if e.is_definitive() => snap.ledger.park(host, &e.to_string()),
            Err(e) => snap.ledger.delete_error(host, &e.to_string()),
        })
        .await;
    }

    /// Stores a lifecycle call's outcome as leader and records the decision. A deposed leader's
    /// write is refused: the decision is recorded as refused (nothing happened), and the new
    /// leader repeats the call, which is idempotent (by name; 404 = gone).
    async fn record_outcome(&self, d: Decision, apply: impl Fn(&mut Snapshot, policy::Millis)) {
        let svc = &self.svc;
        let now = now_ms();
        let Some(fence) = svc.lease() else {
            svc.record(
                Record::new(now, d)
                    .refused("not the leader any more; the new leader repeats the call".into()),
            );
            return;
        };
        match svc.apply(Some(&fence), |snap, _, _| apply(snap, now)).await {
            Ok(()) => svc.record(Record::new(now, d)),
            Err(e) if e.fenced() => svc.record(Record::new(now, d).refused(e.to_string())),
            Err(e) => {
                tracing::error!(host = d.host().unwrap_or("-"), error = %e, "cannot store the call's outcome; it is repeated (idempotent)")
            }
        }
    }

    /// Compares the lifecycle manager's hosts with our prefix against the ledger.
    pub async fn reconcile(&self) {
        let svc = &self.svc;
        let prefix = svc.cfg.lifecycle.name_prefix.clone();
        // Entries that changed after the list was asked for may legitimately be missing from it.
        let asked_at = now_ms();
        let listed = match svc.lifecycle().list(&prefix).await {
            Ok(l) => l,
            Err(LifecycleError::Unsupported(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reconciliation skipped: cannot list hosts");
                return;
            }
        };
        let short = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_lowercase();
        let listed_short: HashSet<String> = listed.iter().map(|h| short(h)).collect();
        let Some(fence) = svc.lease() else {
            return;
        };
        let now = now_ms();
        let result = svc
            .apply(Some(&fence), |snap, _, _| {
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
                                // warm pool
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
        for host in vanished {
            svc.record(Record::new(now, Decision::Vanished { host }));
        }
        // warm pool: powered-off orphans join the pool.
        let learned = pool::learn_stopped(svc, &orphans).await;
        let orphans: Vec<&String> = orphans.iter().filter(|h| !learned.contains(h)).collect();
        if !orphans.is_empty() {
            tracing::warn!(hosts = ?orphans, "hosts with our prefix unknown to the ledger (left alone)");
        }
    }
}

/// The decision for a lifecycle call's result on `host`: `ok` on success, `refused` when the
/// lifecycle manager refused it for good, `retry` otherwise (the call is repeated).
fn call_decision<T>(
    host: &str,
    result: &Result<T, LifecycleError>,
    ok: impl FnOnce(String, &T) -> Decision,
    refused: impl FnOnce(String, String) -> Decision,
    retry: impl FnOnce(String, String) -> Decision,
) -> Decision {
    let host = host.to_string();
    match result {
        Ok(v) => ok(host, v),
        Err(e) if e.is_definitive() => refused(host, e.to_string()),
        Err(e) => retry(host, e.to_string()),
    }
}

/// Waits for lifecycle calls in progress, at most `grace`.
pub async fn drain_tasks(tasks: &TaskTracker, grace: Duration) {
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!("lifecycle calls still running at shutdown; they are retried after restart");
    }
}

#[cfg(test)]
mod tests {
    //! One step of the loop and the service's operations, in process: fake Jicofo and Foreman
    //! on loopback, the embedded store in a temporary directory.
    use super::*;
    use crate::config::Config;
    use axum::Router;
    use axum::routing::{get, post};
    use policy::{Reason, Setting};
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Fakes {
        available: Arc<AtomicU32>,
        creates: Arc<AtomicU32>,
        jicofo: String,
        foreman: String,
    }

    async fn fakes() -> Fakes {
        let available = Arc::new(AtomicU32::new(0));
        let creates = Arc::new(AtomicU32::new(0));
        let a = available.clone();
        let jicofo = Router::new().route(
            "/stats",
            get(move || {
                let n = a.load(Ordering::Relaxed);
                async move {
                    axum::Json(
                        serde_json::json!({"sip_jibri_detector": {"count": n, "available": n}}),
                    )
                }
            }),
        );
        let c = creates.clone();
        let foreman = Router::new().route(
            "/api/hosts",
            post(move |body: axum::Json<serde_json::Value>| {
                c.fetch_add(1, Ordering::Relaxed);
                async move {
                    (
                        axum::http::StatusCode::CREATED,
                        axum::Json(body.0["host"].clone()),
                    )
                }
            }),
        );
        let serve = |app: Router| async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = l.local_addr().expect("addr");
            tokio::spawn(async move { axum::serve(l, app).await });
            addr
        };
        Fakes {
            available,
            creates,
            jicofo: format!("http://{}/stats", serve(jicofo).await),
            foreman: format!("http://{}", serve(foreman).await),
        }
    }

    async fn controller(f: &Fakes, dir: &std::path::Path) -> Arc<Controller> {
        let toml = format!(
            "data_dir = {:?}\n[jicofo]\n[[jicofo.shards]]\nname = \"s1\"\nurl = {:?}\n\
             [lifecycle.foreman]\nnodes = [{:?}]\ntoken = \"t\"\n[audit]\nenabled = false\n",
            dir.display().to_string(),
            f.jicofo,
            f.foreman
        );
        let cfg = Config::from_toml(&toml, "test", &Default::default()).expect("config");
        let store = crate::store::Store::open(&cfg, "test").expect("store");
        let lifecycle = crate::lifecycle::Lifecycle::from_config(&cfg.lifecycle).expect("lc");
        let jicofo = crate::jicofo::JicofoClient::new(&cfg.jicofo).expect("jicofo");
        let svc = Service::start(cfg, store, lifecycle, jicofo)
            .await
            .expect("start");
        svc.renew_lease().await;
        Arc::new(Controller::new(svc, TaskTracker::new()))
    }

    #[tokio::test]
    async fn a_step_launches_the_deficit_once_and_the_service_guards_the_floor() {
        let f = fakes().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = controller(&f, dir.path()).await;
        let svc = ctl.svc.clone();
        // min 2, nothing available: two launches, recorded before the creates.
        ctl.step().await;
        ctl.tasks.close();
        ctl.tasks.wait().await;
        assert_eq!(f.creates.load(Ordering::Relaxed), 2);
        // In flight now: the next step launches nothing more.
        ctl.step().await;
        assert_eq!(f.creates.load(Ordering::Relaxed), 2);
        let status: serde_json::Value =
            serde_json::from_slice(&svc.status_json().await).expect("json");
        assert_eq!(status["ledger"]["in_flight"], 2);
        assert_eq!(status["recent_decisions"][0]["kind"], "create");

        // Three available with min 2: one idle removal goes, the next keeps.
        f.available.store(3, Ordering::Relaxed);
        svc.observe().await;
        let idle = |h: &'static str| svc.remove_me(h, Reason::Idle, "test");
        assert!(idle("gw-1").await.accepted());
        assert!(!idle("gw-2").await.accepted());
        assert!(idle("gw-1").await.accepted(), "a repeat spends nothing");
        svc.set_setting(Setting::Min, 1, "test").await.expect("set");
        assert_eq!(svc.settings().await.min_available, 1);
        assert!(idle("gw-2").await.accepted());
        assert!(svc.not_ready_reason().await.is_none());
    }
}
