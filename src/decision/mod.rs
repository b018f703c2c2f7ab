//! Typed decisions: what the service decided, with its numbers.
//!
//! Every decision is one [`Decision`] value. The log line, the metric labels, the audit
//! record and the `/scaler/status` entry are all derived from it, so they cannot disagree;
//! [`Kind`] and [`Outcome`] are the bounded label sets, and every variant maps to them by an
//! exhaustive match: a new decision without labels does not compile.

use policy::{
    AddRefusal, LaunchDecision, Millis, Reason, RemovalDecision, RequestedAdd, Setting, Shutdown,
};
use serde::{Serialize, Serializer};

use crate::lifecycle::BreakerState;

mod labels;
mod plan;
mod why;

pub use labels::{Kind, Outcome};
pub use plan::{PlanContext, decisions as plan_decisions, event_decision};
pub use why::refusal_text;

/// The ledger's timeouts (`policy.boot_timeout`, `drain_timeout`, `pending_ttl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// A launch not seen within the boot timeout: failed, deleted.
    Boot,
    /// A draining host without a drain confirmation: deleted anyway.
    Drain,
    /// An approved host still counted past the pending-removal TTL: no longer pending.
    Pending,
    /// A host started from the warm pool not seen within the start timeout: powered off and
    /// checked (first failure) or deleted (`failures` 2).
    Start {
        /// Consecutive failed starts, this one included.
        failures: u32,
    },
}

/// One decision of the service, with the numbers that made it.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The launch rule launched `hosts`.
    Launch {
        /// The rule's numbers.
        numbers: LaunchDecision,
        /// The host names recorded before the create calls.
        hosts: Vec<String>,
    },
    /// The launch rule holds (recorded when the reason changes).
    Hold {
        /// The rule's numbers (`hold` says why).
        numbers: LaunchDecision,
    },
    /// `max` now holds back what the spare floor needs (said once; see [`policy::Cap`]).
    Capped {
        /// The numbers.
        cap: policy::Cap,
    },
    /// The spare floor fits under `max` again.
    Uncapped {
        /// The `max` setting.
        max: u32,
    },
    /// Launches held after the lifecycle manager refused creates, once per refusal.
    LaunchHeld {
        /// The rule's numbers (what would have been launched).
        numbers: LaunchDecision,
        /// Refused creates in a row.
        refusals: u32,
        /// How long no host is launched.
        hold_ms: u64,
        /// The last refusal, with what to fix.
        refusal: String,
    },
    /// An agent announced its host at start: the ledger knows it runs.
    Hello {
        /// The host.
        host: String,
        /// It was `launch_failed` (not yet deleted): adopted back.
        adopted: bool,
    },
    /// A remove-me request answered.
    Remove {
        /// The host.
        host: String,
        /// Its reason.
        reason: Reason,
        /// The answer.
        answer: RemovalDecision,
        /// The floor it was checked against.
        min: u32,
        /// The store error, when the approval could not be stored (queued or kept).
        store_error: Option<String>,
    },
    /// An approval queued while the store was down, now stored.
    QueuedStored {
        /// The host.
        host: String,
        /// Its reason.
        reason: Reason,
    },
    /// An agent confirmed its drain.
    Drained {
        /// The host.
        host: String,
        /// Whether it had an approved removal.
        known: bool,
    },
    /// `POST /scaler/instance` recorded a launch.
    Add {
        /// The host name chosen.
        host: String,
        /// Launches in flight before it.
        in_flight: u32,
    },
    /// `POST /scaler/instance` refused.
    AddRefused {
        /// Why.
        refusal: AddRefusal,
    },
    /// `POST /scaler/instance` not needed: answered as the legacy scaler did,
    /// nothing launched.
    AddNotNeeded {
        /// The launch rule's numbers (deficit <= 0).
        add: RequestedAdd,
    },
    /// A sidecar host told to shut down at its next poll (surplus spare, or expired).
    SidecarShutdown {
        /// Which host and why, with the numbers.
        order: Shutdown,
    },
    /// A sidecar's `/sidecar/shutdown` arrived: the host is deleted.
    SidecarConfirmed {
        /// The host.
        host: String,
        /// Whether we had told it to shut down (else it leaves on its own: expired).
        ordered: bool,
    },
    /// A sidecar host told to shut down fell silent past the TTL: deleted.
    SidecarSilent {
        /// The host.
        host: String,
        /// How long it was silent.
        silent_ms: u64,
    },
    /// An adopted sidecar host fell silent past the TTL: no longer tracked, not deleted.
    SidecarForgotten {
        /// The host.
        host: String,
        /// How long it was silent.
        silent_ms: u64,
    },
    /// A sidecar host the ledger did not know, adopted at its first report.
    SidecarAdopted {
        /// The host.
        host: String,
        /// Its `instanceType`.
        kind: Option<String>,
        /// Its `group`.
        group: Option<String>,
    },
    /// What the lifecycle manager confirmed of a host the scaler did not launch.
    Membership {
        /// The host.
        host: String,
        /// The verdict.
        membership: policy::Membership,
        /// The lifecycle manager's answer.
        note: String,
    },
    /// A call or request for a host the scaler may not touch: nothing was sent for it.
    NotManaged {
        /// The host.
        host: String,
        /// What was refused: `delete`, `power off`, `remove` (a remove-me), `adopt` (a report).
        action: &'static str,
        /// The verdict.
        membership: policy::Membership,
        /// The lifecycle manager's answer.
        note: String,
    },
    /// A launch is counted by Jicofo.
    Seen {
        /// The host.
        host: String,
        /// Launch to first seen.
        boot_ms: u64,
    },
    /// An approved host is no longer counted by Jicofo.
    Left {
        /// The host.
        host: String,
    },
    /// A host ran into one of the ledger's timeouts.
    Timeout {
        /// The host.
        host: String,
        /// Which.
        timeout: Timeout,
    },
    /// The lifecycle manager created a host.
    Created {
        /// The host.
        host: String,
        /// How long the call took.
        elapsed_ms: u64,
    },
    /// The lifecycle manager refused a create for good.
    CreateRefused {
        /// The host.
        host: String,
        /// The refusal.
        error: String,
    },
    /// A create failed and is retried next tick.
    CreateRetry {
        /// The host.
        host: String,
        /// The failure.
        error: String,
    },
    /// The lifecycle manager deleted a host (or had none with its address).
    Deleted {
        /// The host.
        host: String,
        /// What was deleted.
        detail: String,
    },
    /// A delete failed and is retried next tick.
    DeleteRetry {
        /// The host.
        host: String,
        /// The failure.
        error: String,
    },
    /// A delete that can never succeed: reported once, no longer retried.
    Parked {
        /// The host.
        host: String,
        /// Why it cannot be deleted.
        error: String,
    },
    /// An API setting changed.
    Setting {
        /// Which.
        setting: Setting,
        /// Its value before.
        before: u32,
        /// Its value now.
        after: u32,
    },
    /// Reconciliation found a host of ours missing from the lifecycle manager.
    Vanished {
        /// The host.
        host: String,
    },
    /// A lifecycle node's breaker changed state.
    Breaker {
        /// The node URL.
        node: String,
        /// Its new state.
        state: BreakerState,
        /// Failures in a row when it opened.
        failures: u32,
        /// The last error, when it opened.
        last_error: Option<String>,
    },
    /// A warm-pool decision.
    Pool(PoolDecision),
    /// This replica took the leader lease (`Some(value)`) or lost it (`None`).
    Leader {
        /// The lease value when acquired.
        lease: Option<String>,
    },
    /// Target mode changed the effective min.
    Capacity {
        /// The previous effective min (`None`: the first sizing).
        from: Option<u32>,
        /// The sizing that changed it, with its numbers.
        sizing: policy::capacity::Sizing,
    },
    /// The capacity schedule was replaced through the API.
    CapacitySchedule {
        /// Entries now in force.
        entries: usize,
    },
}

impl Decision {
    /// What it is about.
    pub fn kind(&self) -> Kind {
        match self {
            Decision::Launch { .. }
            | Decision::Hold { .. }
            | Decision::LaunchHeld { .. }
            | Decision::Capped { .. }
            | Decision::Uncapped { .. } => Kind::Launch,
            Decision::Hello { .. } => Kind::Hello,
            Decision::Remove { .. } | Decision::QueuedStored { .. } => Kind::Remove,
            Decision::Add { .. } | Decision::AddRefused { .. } | Decision::AddNotNeeded { .. } => {
                Kind::Add
            }
            Decision::SidecarShutdown { .. }
            | Decision::SidecarConfirmed { .. }
            | Decision::SidecarSilent { .. }
            | Decision::SidecarForgotten { .. }
            | Decision::SidecarAdopted { .. } => Kind::Sidecar,
            Decision::Created { .. }
            | Decision::CreateRefused { .. }
            | Decision::CreateRetry { .. } => Kind::Create,
            Decision::Deleted { .. } | Decision::DeleteRetry { .. } | Decision::Parked { .. } => {
                Kind::Delete
            }
            Decision::Drained { .. } => Kind::Drained,
            Decision::Seen { .. } => Kind::Seen,
            Decision::Left { .. } => Kind::Left,
            Decision::Timeout { .. } => Kind::Timeout,
            Decision::Setting { .. } => Kind::Setting,
            Decision::Vanished { .. } => Kind::Reconcile,
            Decision::Breaker { .. } => Kind::Breaker,
            Decision::Leader { .. } => Kind::Leader,
            Decision::Capacity { .. } | Decision::CapacitySchedule { .. } => Kind::Capacity,
            Decision::Pool(p) => p.kind(),
            Decision::Membership { .. } | Decision::NotManaged { .. } => Kind::Managed,
        }
    }

    /// How it came out.
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Launch { .. } => Outcome::Launch,
            Decision::Hold { .. } | Decision::LaunchHeld { .. } => Outcome::Hold,
            Decision::Capped { .. } => Outcome::Capped,
            Decision::Uncapped { .. } => Outcome::Uncapped,
            Decision::Hello { adopted: true, .. } => Outcome::Adopted,
            Decision::Hello { adopted: false, .. } => Outcome::Alive,
            Decision::Remove { answer, .. } if answer.accepted() => Outcome::Accepted,
            Decision::Remove { .. } => Outcome::Keep,
            Decision::QueuedStored { .. } => Outcome::Recorded,
            Decision::Drained { known: true, .. } => Outcome::Delete,
            Decision::Drained { known: false, .. } => Outcome::Unknown,
            Decision::Add { .. } => Outcome::Requested,
            Decision::AddRefused { .. } => Outcome::Refused,
            Decision::AddNotNeeded { .. } => Outcome::NotNeeded,
            Decision::SidecarShutdown { .. } => Outcome::Shutdown,
            Decision::SidecarConfirmed { .. } => Outcome::ShutdownConfirmed,
            Decision::SidecarSilent { .. } => Outcome::Deleting,
            Decision::SidecarForgotten { .. } => Outcome::Forgotten,
            Decision::SidecarAdopted { .. } => Outcome::Adopted,
            Decision::Seen { .. } => Outcome::Ready,
            Decision::Left { .. } => Outcome::Left,
            Decision::CreateRefused { .. } => Outcome::LaunchFailed,
            Decision::Timeout { timeout, .. } => match timeout {
                Timeout::Boot => Outcome::LaunchFailed,
                Timeout::Drain => Outcome::Deleting,
                Timeout::Pending => Outcome::NotPending,
                Timeout::Start { failures } if *failures >= 2 => Outcome::LaunchFailed,
                Timeout::Start { .. } => Outcome::Stopping,
            },
            Decision::Created { .. } => Outcome::Created,
            Decision::CreateRetry { .. } | Decision::DeleteRetry { .. } => Outcome::Retry,
            Decision::Deleted { .. } => Outcome::Deleted,
            Decision::Parked { .. } => Outcome::Parked,
            Decision::Setting { .. } => Outcome::Changed,
            Decision::Vanished { .. } => Outcome::Gone,
            Decision::Breaker { state, .. } => match state {
                BreakerState::Closed => Outcome::Closed,
                BreakerState::Open => Outcome::Open,
                BreakerState::HalfOpen => Outcome::HalfOpen,
            },
            Decision::Leader { lease: Some(_) } => Outcome::Acquired,
            Decision::Leader { lease: None } => Outcome::Lost,
            Decision::Capacity { .. } | Decision::CapacitySchedule { .. } => Outcome::Changed,
            Decision::Pool(p) => p.outcome(),
            Decision::Membership { membership, .. } | Decision::NotManaged { membership, .. } => {
                match membership {
                    policy::Membership::Managed | policy::Membership::Unverified => {
                        Outcome::Managed
                    }
                    policy::Membership::ReportsOnly => Outcome::ReportsOnly,
                    policy::Membership::Outside => Outcome::NotManaged,
                    policy::Membership::Mismatch => Outcome::AddressMismatch,
                }
            }
        }
    }

    /// The host concerned, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            Decision::Remove { host, .. }
            | Decision::QueuedStored { host, .. }
            | Decision::Drained { host, .. }
            | Decision::Add { host, .. }
            | Decision::Seen { host, .. }
            | Decision::Left { host }
            | Decision::Timeout { host, .. }
            | Decision::Created { host, .. }
            | Decision::CreateRefused { host, .. }
            | Decision::CreateRetry { host, .. }
            | Decision::Deleted { host, .. }
            | Decision::DeleteRetry { host, .. }
            | Decision::Parked { host, .. }
            | Decision::Vanished { host }
            | Decision::SidecarConfirmed { host, .. }
            | Decision::SidecarSilent { host, .. }
            | Decision::SidecarForgotten { host, .. }
            | Decision::SidecarAdopted { host, .. }
            | Decision::Membership { host, .. }
            | Decision::NotManaged { host, .. }
            | Decision::Hello { host, .. } => Some(host),
            Decision::SidecarShutdown { order } => Some(&order.host),
            Decision::Launch { .. }
            | Decision::Hold { .. }
            | Decision::LaunchHeld { .. }
            | Decision::Capped { .. }
            | Decision::Uncapped { .. }
            | Decision::AddRefused { .. }
            | Decision::AddNotNeeded { .. }
            | Decision::Setting { .. }
            | Decision::Breaker { .. }
            | Decision::Leader { .. }
            | Decision::Capacity { .. }
            | Decision::CapacitySchedule { .. } => None,
            Decision::Pool(p) => p.host(),
        }
    }

    /// The remove-me reason (a metric label), for removal decisions.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Remove { reason, .. } | Decision::QueuedStored { reason, .. } => {
                Some(*reason)
            }
            Decision::SidecarShutdown { order } => Some(order.reason),
            _ => None,
        }
    }

    /// Gateways launched by this decision (the launches counter).
    pub fn launched(&self) -> u32 {
        match self {
            Decision::Launch { numbers, .. } => numbers.launch,
            _ => 0,
        }
    }
}

/// A warm-pool decision (one variant of [`Decision`]), with its numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum PoolDecision {
    /// Hosts taken from the pool for a launch (power-on owed).
    Start {
        /// The hosts.
        hosts: Vec<String>,
        /// The pool's level after the tick.
        level: u32,
        /// The pool's size.
        size: u32,
    },
    /// Hosts created to refill the pool.
    Refill {
        /// The hosts.
        hosts: Vec<String>,
        /// The pool's level (refills included) after the tick.
        level: u32,
        /// The pool's size.
        size: u32,
    },
    /// A power-on confirmed by status.
    Started {
        /// The host.
        host: String,
        /// How long the call took.
        elapsed_ms: u64,
    },
    /// A power-off confirmed by status: the host is in the pool.
    Stopped {
        /// The host.
        host: String,
        /// How long the call took.
        elapsed_ms: u64,
    },
    /// A power-on refused: the host stays in the pool, held (deleted only when an earlier
    /// attempt may have powered it on).
    StartRefused {
        /// The host.
        host: String,
        /// The refusal.
        error: String,
    },
    /// A power-off refused: the host is deleted instead.
    StopRefused {
        /// The host.
        host: String,
        /// The refusal.
        error: String,
    },
    /// A power call failed; retried next tick (the host stays in the ledger).
    PowerRetry {
        /// The host.
        host: String,
        /// `start` or `stop`.
        action: &'static str,
        /// The error.
        error: String,
    },
    /// A host started from the pool is counted by Jicofo.
    Resumed {
        /// The host.
        host: String,
        /// Start (power-on) to seen.
        lead_ms: u64,
    },
    /// A stopped host beyond the pool's size is deleted.
    Trimmed {
        /// The host.
        host: String,
    },
    /// Reconciliation found a powered-off host with our prefix: it joins the pool.
    Learned {
        /// The host.
        host: String,
    },
}

impl PoolDecision {
    /// The kind label.
    pub fn kind(&self) -> Kind {
        match self {
            PoolDecision::Start { .. } => Kind::Launch,
            PoolDecision::Resumed { .. } => Kind::Seen,
            PoolDecision::Learned { .. } => Kind::Reconcile,
            _ => Kind::Pool,
        }
    }

    /// The outcome label.
    pub fn outcome(&self) -> Outcome {
        match self {
            PoolDecision::Start { .. } | PoolDecision::Started { .. } => Outcome::Started,
            PoolDecision::Refill { .. } => Outcome::Refill,
            PoolDecision::Stopped { .. } | PoolDecision::Learned { .. } => Outcome::Stopped,
            PoolDecision::StartRefused { .. } => Outcome::LaunchFailed,
            PoolDecision::StopRefused { .. } | PoolDecision::Trimmed { .. } => Outcome::Deleting,
            PoolDecision::PowerRetry { .. } => Outcome::Retry,
            PoolDecision::Resumed { .. } => Outcome::Ready,
        }
    }

    /// The host concerned, if one.
    pub fn host(&self) -> Option<&str> {
        match self {
            PoolDecision::Start { .. } | PoolDecision::Refill { .. } => None,
            PoolDecision::Started { host, .. }
            | PoolDecision::Stopped { host, .. }
            | PoolDecision::StartRefused { host, .. }
            | PoolDecision::StopRefused { host, .. }
            | PoolDecision::PowerRetry { host, .. }
            | PoolDecision::Resumed { host, .. }
            | PoolDecision::Trimmed { host }
            | PoolDecision::Learned { host } => Some(host),
        }
    }

    /// Why, with the numbers.
    pub fn why(&self) -> String {
        match self {
            PoolDecision::Start { hosts, level, size } => format!(
                "start {} from the warm pool (level {level} of {size} after this tick); hosts {}",
                hosts.len(),
                hosts.join(", ")
            ),
            PoolDecision::Refill { hosts, level, size } => format!(
                "warm pool at {level} of {size} (refills and hosts on loan included): creating {}; they join as spares and go into the pool by idle removal; hosts {}",
                hosts.len(),
                hosts.join(", ")
            ),
            PoolDecision::Started { elapsed_ms, .. } => {
                format!("powered on (status on) in {elapsed_ms} ms")
            }
            PoolDecision::Stopped { elapsed_ms, .. } => {
                format!("powered off (status off) in {elapsed_ms} ms: in the warm pool")
            }
            PoolDecision::StartRefused { error, .. } => {
                format!(
                    "power-on refused: {error}; the host stays in the pool and is not started again for a while (launches create instead), unless an earlier attempt may have powered it on: then it is deleted"
                )
            }
            PoolDecision::StopRefused { error, .. } => {
                format!("power-off refused, deleting it instead: {error}")
            }
            PoolDecision::PowerRetry { action, error, .. } => format!(
                "power {action} failed, retrying next tick (the host stays in the ledger): {error}"
            ),
            PoolDecision::Resumed { lead_ms, .. } => format!(
                "counted by Jicofo {:.0}s after its start from the warm pool",
                *lead_ms as f64 / 1000.0
            ),
            PoolDecision::Trimmed { .. } => {
                "stopped host beyond the warm pool's size: deleting it".into()
            }
            PoolDecision::Learned { .. } => {
                "powered-off host with our prefix, unknown to the ledger: joins the warm pool"
                    .into()
            }
        }
    }
}

/// A decision as recorded: when, by whom, and whether its store write went through.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// When (ms since the epoch).
    pub at: Millis,
    /// Who asked (token subject and client address), when someone did.
    pub by: Option<String>,
    /// The decision.
    pub decision: Decision,
    /// Why its store write was refused (a deposed leader): then nothing happened.
    pub refused: Option<String>,
}

impl Record {
    /// A decision made at `at`.
    pub fn new(at: Millis, decision: Decision) -> Record {
        Record {
            at,
            by: None,
            decision,
            refused: None,
        }
    }

    /// The same record, asked for by `by`.
    pub fn by(mut self, by: &str) -> Record {
        self.by = Some(by.to_string());
        self
    }

    /// The same record, marked as not carried out because its write was refused.
    pub fn refused(mut self, why: String) -> Record {
        self.refused = Some(why);
        self
    }

    /// The kind label.
    pub fn kind(&self) -> Kind {
        self.decision.kind()
    }

    /// The outcome label: `refused` when the write was refused.
    pub fn outcome(&self) -> Outcome {
        if self.refused.is_some() {
            Outcome::Refused
        } else {
            self.decision.outcome()
        }
    }

    /// Why, with the numbers (and the refusal first, when refused).
    pub fn why(&self) -> String {
        match &self.refused {
            Some(r) => format!(
                "not carried out ({r}): {} {}",
                self.decision.outcome().as_str(),
                self.decision.why()
            ),
            None => self.decision.why(),
        }
    }

    /// Writes the decision's log line.
    pub fn log(&self) {
        let (kind, outcome) = (self.kind().as_str(), self.outcome().as_str());
        let host = self.decision.host().unwrap_or("-");
        let by = self.by.as_deref().unwrap_or("-");
        if self.refused.is_some() {
            tracing::warn!(kind, host, outcome, by, "{}", self.why());
        } else {
            tracing::info!(kind, host, outcome, by, "{}", self.why());
        }
    }
}

/// The JSON of a record (audit trail, `/scaler/status`): `at`, `kind`, `host`, `outcome`,
/// `why`, `by`, `reason`.
impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            at: Millis,
            kind: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            host: Option<&'a str>,
            outcome: &'static str,
            why: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            by: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<Reason>,
        }
        Doc {
            at: self.at,
            kind: self.kind().as_str(),
            host: self.decision.host(),
            outcome: self.outcome().as_str(),
            why: self.why(),
            by: self.by.as_deref(),
            reason: self.decision.reason(),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_documented_in_metrics_md() {
        let doc = include_str!("../../docs/metrics.md");
        for k in Kind::ALL {
            assert!(doc.contains(&format!("`{}`", k.as_str())), "kind {k:?}");
        }
        for o in Outcome::ALL {
            assert!(doc.contains(&format!("`{}`", o.as_str())), "outcome {o:?}");
        }
    }

    #[test]
    fn records_serialise_with_derived_labels() {
        let r = Record::new(
            5,
            Decision::Setting {
                setting: Setting::BulkMax,
                before: 5,
                after: 7,
            },
        )
        .by("scaler@127.0.0.1");
        let v = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(v["kind"], "setting");
        assert_eq!(v["outcome"], "changed");
        assert_eq!(v["why"], "bulk-max 5 -> 7");
        assert_eq!(v["by"], "scaler@127.0.0.1");
        let refused = Record::new(
            5,
            Decision::Created {
                host: "vsg-1".into(),
                elapsed_ms: 3,
            },
        )
        .refused("not the leader any more".into());
        let v = serde_json::to_value(&refused).unwrap_or_default();
        assert_eq!(v["kind"], "create");
        assert_eq!(v["outcome"], "refused");
        assert!(
            v["why"]
                .as_str()
                .is_some_and(|w| w.starts_with("not carried out"))
        );
    }
}
