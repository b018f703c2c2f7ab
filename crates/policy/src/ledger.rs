//! The ledger: every gateway the scaler launched or approved for removal, by host name.
//!
//! Jicofo reports only counts, never names, so the ledger attributes changes of Jicofo's total
//! to its own entries: a rise is taken as the oldest in-flight launches showing up, a drop as
//! the oldest approved removals leaving. What cannot be attributed (gateways started or lost
//! outside the scaler) goes into `offset`, the number of gateways Jicofo counts beyond the
//! ledger's own. Every change to an entry's `counted` flag that is *not* driven by a reading
//! moves `offset` the other way, so the next reading is attributed correctly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::drain::DrainMode;
use crate::evidence::SidecarEvidence;
use crate::settings::Timing;
use crate::{Millis, Observation, Reason};

/// Lifecycle state of one gateway in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Recorded before the create call; the call may still be in progress or be retried.
    Requested,
    /// The lifecycle manager confirmed the create; not yet seen in Jicofo.
    Booting,
    /// Seen in Jicofo's count.
    Ready,
    /// Removal approved; the gateway is draining (Jibri graceful shutdown).
    Draining,
    /// Drained or timed out: the delete call is owed or in progress.
    Deleting,
    /// Deleted in the lifecycle manager.
    Gone,
    /// Never showed up within the boot timeout (or the create was refused): deleted, not counted.
    LaunchFailed,
    /// In the warm pool: the host exists in the lifecycle manager, powered off (confirmed).
    Stopped,
    /// Taken from the warm pool: the power-on call is owed or in progress.
    Starting,
    /// Power-on confirmed; not yet seen in Jicofo.
    Resuming,
    /// The power-off call is owed or in progress; the host then goes back into the pool.
    Stopping,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 11] = [
        State::Requested,
        State::Booting,
        State::Ready,
        State::Draining,
        State::Deleting,
        State::Gone,
        State::LaunchFailed,
        State::Stopped,
        State::Starting,
        State::Resuming,
        State::Stopping,
    ];

    /// The state's snake_case name, as in the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::Booting => "booting",
            State::Ready => "ready",
            State::Draining => "draining",
            State::Deleting => "deleting",
            State::Gone => "gone",
            State::LaunchFailed => "launch_failed",
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Resuming => "resuming",
            State::Stopping => "stopping",
        }
    }

    /// A launch that was asked for (created or started from the pool) and has not shown up yet.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            State::Requested | State::Booting | State::Starting | State::Resuming
        )
    }

    /// A removal was approved for the host (or a failed start is being powered off).
    pub fn approved(self) -> bool {
        matches!(
            self,
            State::Draining | State::Deleting | State::Gone | State::Stopping
        )
    }
}

/// Measured boots needed before they may lengthen the boot timeout.
pub const BOOTS_TO_TRUST: u64 = 5;
/// How far past the measured boots' high estimate a launch may still boot.
pub const BOOT_TIMEOUT_FACTOR: f64 = 1.5;
/// The boot timeout in force is at most this many times the configured one.
pub const BOOT_TIMEOUT_CAP: u64 = 4;

/// The boot timeout in force and why (see [`Ledger::boot_timeout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BootTimeout {
    /// `policy.boot_timeout`.
    pub configured_ms: u64,
    /// The measured boots' high estimate times the factor, once enough are measured.
    pub measured_ms: Option<u64>,
    /// The one that applies.
    pub in_force_ms: u64,
    /// Boots measured so far.
    pub boots: u64,
}

/// How an entry came into the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Launched by the scale-up loop.
    Scaler,
    /// Launched on request (`POST /scaler/instance`).
    Api,
    /// Not launched by us: recorded when its removal was approved.
    Adopted,
}

/// What the lifecycle manager confirms of a host the scaler did not launch (origin
/// `adopted`). Only a `managed` host is ever deleted or powered off; a host the scaler launched
/// is managed by its origin and never asked about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    /// Not asked yet (or to be asked again).
    #[default]
    Unverified,
    /// The lifecycle manager has it inside the managed set (hostgroup or name prefix), and a
    /// reporting sidecar speaks from the host's own address there.
    Managed,
    /// The lifecycle manager has no such host: known from reports alone. Its sidecar may be
    /// told to shut down (that affects only its own container); it is never deleted.
    ReportsOnly,
    /// The lifecycle manager has it outside the managed set: never deleted, powered off or told.
    Outside,
    /// Inside the managed set, but its reports come from another address than the host's at
    /// the lifecycle manager: never deleted, powered off or told.
    Mismatch,
}

impl Membership {
    /// The snake_case name, as in the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Unverified => "unverified",
            Membership::Managed => "managed",
            Membership::ReportsOnly => "reports_only",
            Membership::Outside => "outside",
            Membership::Mismatch => "address_mismatch",
        }
    }

    /// Nothing the scaler may do to the host beyond answering its own sidecar.
    pub fn refused(self) -> bool {
        matches!(self, Membership::Outside | Membership::Mismatch)
    }
}

/// One gateway in the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Host name in the lifecycle manager (or the identifier the gateway gave, when adopted).
    pub host: String,
    /// Current state.
    pub state: State,
    /// Who created the entry.
    pub origin: Origin,
    /// When the entry was created.
    pub created_at: Millis,
    /// When the entry entered its current state.
    pub state_since: Millis,
    /// When Jicofo's count first included it.
    #[serde(default)]
    pub seen_at: Option<Millis>,
    /// Whether Jicofo is believed to count this gateway now.
    #[serde(default)]
    pub counted: bool,
    /// Reason of the approved removal.
    #[serde(default)]
    pub reason: Option<Reason>,
    /// When the removal was approved.
    #[serde(default)]
    pub approved_at: Option<Millis>,
    /// When the lifecycle manager confirmed the delete.
    #[serde(default)]
    pub deleted_at: Option<Millis>,
    /// When the host was known to stop (drained, or deleted): Jicofo stops counting it
    /// shortly after, whatever the totals say.
    #[serde(default)]
    pub stopped_at: Option<Millis>,
    /// IPv4/IPv6 address, when known (gateways may identify themselves by address).
    #[serde(default)]
    pub ip: Option<String>,
    /// Failed lifecycle calls for the current step.
    #[serde(default)]
    pub attempts: u32,
    /// The last lifecycle error, for the status page.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the host proved by itself that it runs (its agent announced itself) while the
    /// ledger still had it in flight or failed: it is never failed or deleted for not showing
    /// up, and the next rise of Jicofo's count is attributed to it first.
    #[serde(default)]
    pub alive_at: Option<Millis>,
    /// When it was last taken from the warm pool (its lead is measured from here).
    #[serde(default)]
    pub started_at: Option<Millis>,
    /// The approved removal powers it off into the warm pool instead of deleting it.
    #[serde(default)]
    pub to_pool: bool,
    /// Created to refill the warm pool: not a launch for demand.
    #[serde(default)]
    pub refill: bool,
    /// Consecutive starts from the pool that were not seen within the start timeout.
    #[serde(default)]
    pub start_failures: u32,
    /// How its approved removal is carried out (set at approval; see [`DrainMode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainMode>,
    /// What a jitsi-autoscaler sidecar on the host last reported (see `crate::sidecar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarEvidence>,
    /// Its delete was refused for good (a name the lifecycle manager never accepts): reported
    /// once and no longer retried; reconciliation forgets it once it is gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parked: bool,
    /// For a host the scaler did not launch: what the lifecycle manager confirmed.
    #[serde(default, skip_serializing_if = "is_unverified")]
    pub membership: Membership,
    /// The lifecycle manager's answer behind `membership`, for the status page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_note: Option<String>,
    /// A failed lifecycle call of the current step is retried from then on (backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Millis>,
    /// The power API refused to start this host: it stays in the warm pool, not taken again
    /// until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_hold_until: Option<Millis>,
    /// Power-ons refused in a row (the hold doubles with each).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub power_refusals: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_unverified(m: &Membership) -> bool {
    *m == Membership::Unverified
}

impl Instance {
    /// A fresh entry for `host` in `state` since `now`: nothing seen, approved or attempted yet.
    pub fn new(host: &str, state: State, origin: Origin, now: Millis) -> Self {
        Instance {
            host: host.to_string(),
            state,
            origin,
            created_at: now,
            state_since: now,
            seen_at: None,
            counted: false,
            reason: None,
            approved_at: None,
            deleted_at: None,
            stopped_at: None,
            ip: None,
            attempts: 0,
            last_error: None,
            alive_at: None,
            started_at: None,
            to_pool: false,
            refill: false,
            start_failures: 0,
            drain: None,
            sidecar: None,
            parked: false,
            membership: Membership::Unverified,
            membership_note: None,
            retry_at: None,
            power_hold_until: None,
            power_refusals: 0,
        }
    }

    /// The scaler may delete or power off this host: it launched it, or the lifecycle manager
    /// confirmed it inside the managed set.
    pub fn managed(&self) -> bool {
        self.origin != Origin::Adopted || self.membership == Membership::Managed
    }

    pub(crate) fn set_state(&mut self, state: State, now: Millis) {
        if self.state != state {
            self.state = state;
            self.state_since = now;
            self.attempts = 0;
            self.last_error = None;
            self.retry_at = None;
        }
    }

    /// Still counted by Jicofo although a removal was approved, and possibly counted as
    /// available (idle, or expired by lifetime while idle): what an idle approval must
    /// reserve so that concurrent removals never break the floor.
    pub fn pending_removal(&self) -> bool {
        self.counted && self.leaving() && self.reason != Some(Reason::Unhealthy)
    }

    /// Left Jicofo (or never joined) but not yet deleted in the lifecycle manager: the host
    /// still exists and counts against `max`.
    pub fn undeleted_leftover(&self) -> bool {
        !self.counted
            && self.deleted_at.is_none()
            && (self.state.approved() || self.state == State::LaunchFailed)
    }

    /// An approved *idle* removal Jicofo still counts as available: what the launch rule
    /// subtracts. Expired hosts are mostly busy (EXPIRED counts as busy), so subtracting them
    /// would launch one extra gateway per expiry; an idle-expired host is replaced once it
    /// leaves.
    pub fn pending_idle_removal(&self) -> bool {
        self.counted && self.leaving() && self.reason == Some(Reason::Idle)
    }

    /// On its way out of Jicofo's count after an approved removal: approved, or powered off
    /// into the warm pool by one (Jicofo may count it a little longer, as a deleted host).
    pub fn leaving(&self) -> bool {
        self.state.approved() || (self.state == State::Stopped && self.approved_at.is_some())
    }

    /// Where an approved removal goes once drained: power-off into the pool, or delete.
    fn removal_state(&self) -> State {
        if self.to_pool {
            State::Stopping
        } else {
            State::Deleting
        }
    }

    /// A failed start from the pool that may still run (power-off or delete not confirmed): it
    /// keeps holding its launch, so the launch rule never starts a second host for it.
    pub fn recalled(&self) -> bool {
        match self.state {
            State::Stopping => self.approved_at.is_none(),
            State::LaunchFailed => self.started_at.is_some() && self.deleted_at.is_none(),
            _ => false,
        }
    }

    /// Its agent announced it since it was last launched (created, or started from the pool):
    /// it runs, so it is never failed for not showing up.
    pub fn proven_alive(&self) -> bool {
        self.alive_at
            .is_some_and(|a| self.started_at.is_none_or(|s| a >= s))
    }

    /// Counts as a launch in flight for the launch rule: asked for (created or started), not
    /// yet seen, not a pool refill; or a failed start still being powered off.
    pub fn holds_launch(&self) -> bool {
        (self.state.in_flight() && !self.refill) || self.recalled()
    }

    /// Whether `name` names this instance: the same name, the same short name (an FQDN and its
    /// first label), or its address.
    pub fn answers_to(&self, name: &str) -> bool {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        if self.host == name || self.ip.as_deref() == Some(name.as_str()) {
            return true;
        }
        // Short-name match only for names, never for dotted IPv4 addresses.
        if name.parse::<std::net::IpAddr>().is_ok() {
            return false;
        }
        let short = |s: &str| s.split('.').next().unwrap_or(s).to_string();
        (self.host.contains('.') != name.contains('.')) && short(&self.host) == short(&name)
    }
}

/// What happened to the ledger while absorbing a reading or expiring entries (for the logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A launch showed up in Jicofo's count.
    Seen {
        /// The host.
        host: String,
        /// Time from launch to first seen.
        boot_ms: u64,
    },
    /// An approved host left Jicofo's count.
    Left {
        /// The host.
        host: String,
    },
    /// Jicofo's count changed in a way no ledger entry explains.
    Unexplained {
        /// The change (positive: more gateways than the ledger explains).
        delta: i64,
        /// The new number of gateways outside the ledger.
        offset: i64,
    },
    /// A host started from the warm pool showed up in Jicofo's count.
    Resumed {
        /// The host.
        host: String,
        /// Time from the start (power-on) to first seen.
        lead_ms: u64,
    },
    /// A host started from the pool was not seen within the start timeout: it is powered off
    /// and checked (first failure) or deleted (second).
    StartTimeout {
        /// The host.
        host: String,
        /// Consecutive failed starts, this one included.
        failures: u32,
    },
    /// A stopped host beyond the pool's size is deleted.
    PoolTrimmed {
        /// The host.
        host: String,
    },
    /// A launch did not show up within the boot timeout.
    BootTimeout {
        /// The host.
        host: String,
    },
    /// A draining host did not confirm within the drain timeout.
    DrainTimeout {
        /// The host.
        host: String,
    },
    /// An approved host stayed counted past the pending-removal TTL.
    PendingExpired {
        /// The host.
        host: String,
    },
    /// A finished entry was dropped after the retention period.
    Forgotten {
        /// The host.
        host: String,
    },
}

/// The persistent record of gateways, keyed by lower-case host name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub(crate) instances: BTreeMap<String, Instance>,
    /// Gateways Jicofo counts beyond the ledger's counted entries (may be negative briefly).
    #[serde(default)]
    offset: i64,
    /// Measured lead times per launch path (create or start from the pool).
    #[serde(default)]
    pub(crate) leads: crate::lead::LeadTimes,
}

/// Normalises a host name to its ledger key.
pub(crate) fn key_of(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a ledger from stored parts.
    pub fn from_parts(instances: impl IntoIterator<Item = Instance>, offset: i64) -> Self {
        let instances = instances
            .into_iter()
            .map(|i| (key_of(&i.host), i))
            .collect();
        Ledger {
            instances,
            offset,
            leads: Default::default(),
        }
    }

    /// Every entry, ordered by host name.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values()
    }

    /// Gateways Jicofo counts beyond the ledger's own.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The entry stored under exactly this host name.
    pub fn get(&self, host: &str) -> Option<&Instance> {
        self.instances.get(&key_of(host))
    }

    /// The entry a gateway means by `name` (host name, short name or address).
    pub fn find(&self, name: &str) -> Option<&Instance> {
        self.get(name)
            .or_else(|| self.instances.values().find(|i| i.answers_to(name)))
    }

    /// Records the address of a host (learned from the lifecycle manager).
    pub fn set_ip(&mut self, host: &str, ip: &str) {
        if let Some(i) = self.instances.get_mut(&key_of(host)) {
            i.ip = Some(ip.to_ascii_lowercase());
        }
    }

    /// Records a launch *before* the create call, so a crash or retry never launches twice.
    pub fn record_launch(&mut self, host: &str, origin: Origin, now: Millis) {
        let key = key_of(host);
        self.instances
            .entry(key.clone())
            .or_insert_with(|| Instance::new(&key, State::Requested, origin, now));
    }

    /// The entry of `host` if it is in `state`.
    pub(crate) fn in_state(&mut self, host: &str, state: State) -> Option<&mut Instance> {
        self.instances
            .get_mut(&key_of(host))
            .filter(|i| i.state == state)
    }

    /// The lifecycle manager confirmed the create.
    pub fn launch_confirmed(&mut self, host: &str, now: Millis) {
        if let Some(i) = self.in_state(host, State::Requested) {
            i.set_state(State::Booting, now);
        }
    }

    /// A create call failed. A definitive refusal ends the launch (`launch_failed`, a delete is
    /// still owed in case it half-happened); a transient error keeps it for a retry.
    pub fn launch_error(&mut self, host: &str, now: Millis, error: &str, definitive: bool) {
        if let Some(i) = self.instances.get_mut(&key_of(host))
            && i.state.in_flight()
        {
            if definitive {
                i.set_state(State::LaunchFailed, now);
            }
            i.attempts += 1;
            i.last_error = Some(error.to_string());
        }
    }

    /// The lifecycle manager refused the create outright (401/403, a validation error, an
    /// answer that is not a host): nothing was created, so nothing is owed; the entry ends as
    /// `launch_failed`, not counted, and is forgotten after the retention period.
    pub fn launch_refused(&mut self, host: &str, now: Millis, error: &str) {
        if let Some(i) = self.instances.get_mut(&key_of(host))
            && i.state.in_flight()
        {
            i.set_state(State::LaunchFailed, now);
            i.deleted_at = Some(now);
            i.attempts = 1;
            i.last_error = Some(error.to_string());
        }
    }

    /// A delete call failed; it is retried on the next tick.
    pub fn delete_error(&mut self, host: &str, error: &str) {
        if let Some(i) = self.instances.get_mut(&key_of(host)) {
            i.attempts += 1;
            i.last_error = Some(error.to_string());
        }
    }

    /// A delete was refused for good: stop retrying it (it stays in the ledger, shown as
    /// parked, until reconciliation finds it gone).
    pub fn park(&mut self, host: &str, error: &str) {
        if let Some(i) = self.instances.get_mut(&key_of(host)) {
            i.parked = true;
            i.attempts += 1;
            i.last_error = Some(error.to_string());
        }
    }

    /// The lifecycle manager confirmed the delete (or said the host was already gone).
    pub fn delete_done(&mut self, host: &str, now: Millis) {
        if let Some(i) = self.instances.get_mut(&key_of(host)) {
            i.deleted_at = Some(now);
            i.stopped_at.get_or_insert(now);
            if i.state != State::LaunchFailed {
                i.set_state(State::Gone, now);
            } else {
                i.attempts = 0;
                i.last_error = None;
            }
        }
    }

    /// The host is missing from the lifecycle manager (found by reconciliation).
    pub fn vanished(&mut self, host: &str, now: Millis) {
        let key = key_of(host);
        self.set_counted(&key, false);
        if let Some(i) = self.instances.get_mut(&key) {
            i.deleted_at.get_or_insert(now);
            if i.state != State::LaunchFailed {
                i.set_state(State::Gone, now);
            }
        }
    }

    /// A gateway the ledger has as in flight has spoken to the scaler (a remove-me, even one
    /// answered `keep`): it runs, so it is ready and counted, whatever the totals said.
    /// Returns whether anything changed.
    pub fn seen_alive(&mut self, name: &str, now: Millis) -> bool {
        let Some(key) = self.find(name).map(|i| key_of(&i.host)) else {
            return false;
        };
        if !self
            .instances
            .get(&key)
            .is_some_and(|i| i.state.in_flight())
        {
            return false;
        }
        // It asks after minutes of idleness, so Jicofo has long counted it: compensate.
        self.set_counted(&key, true);
        if let Some(i) = self.instances.get_mut(&key) {
            i.seen_at.get_or_insert(now);
            i.set_state(State::Ready, now);
        }
        true
    }

    /// The agent on `name` announced itself when it started: the host runs. An in-flight
    /// entry is marked alive (attributed first by the next rise of Jicofo's count, never failed
    /// by the boot timeout); a `launch_failed` entry whose delete has not happened yet is
    /// adopted back as in flight and alive, so it is not deleted under a call. Jicofo may not
    /// count the host yet, so `counted` is left to the readings. Returns whether anything
    /// changed.
    pub fn hello(&mut self, name: &str, now: Millis) -> bool {
        let Some(key) = self.find(name).map(|i| key_of(&i.host)) else {
            return false;
        };
        let Some(i) = self.instances.get_mut(&key) else {
            return false;
        };
        // Failed and still there: a launch past the boot timeout, or a start from the pool
        // that timed out and is being deleted or powered off.
        let adoptable = !i.counted
            && ((i.state == State::LaunchFailed && i.deleted_at.is_none()) || i.recalled());
        // In flight and not yet known alive, or failed and still there.
        let news = (i.state.in_flight() && !i.proven_alive()) || adoptable;
        if !news {
            return false;
        }
        i.alive_at = Some(now);
        // The create (or power-on) happened, whatever its call said: the host runs and waits to
        // be counted, on its own path.
        let waiting = if i.started_at.is_some() {
            State::Resuming
        } else {
            State::Booting
        };
        if i.state != waiting {
            i.set_state(waiting, now);
        }
        true
    }

    /// Applies an approved removal for `name`, adopting the host if the ledger does not know it,
    /// with the drain mode `timing.drain_confirm` gives clients that do not say.
    /// Returns the ledger key of the host.
    pub fn approve(&mut self, name: &str, reason: Reason, now: Millis, timing: &Timing) -> String {
        self.approve_as(name, reason, now, DrainMode::default_for(timing))
    }

    /// Applies an approved removal for `name` carried out as `mode` (the host's own way to
    /// drain), adopting the host if the ledger does not know it. Returns its ledger key.
    pub fn approve_as(
        &mut self,
        name: &str,
        reason: Reason,
        now: Millis,
        mode: DrainMode,
    ) -> String {
        self.approve_to(name, reason, now, mode, false)
    }

    /// [`Ledger::approve_as`], choosing where the host goes: powered off into the warm pool
    /// (`to_pool`) or deleted. A repeat keeps the first choice.
    pub fn approve_to(
        &mut self,
        name: &str,
        reason: Reason,
        now: Millis,
        mode: DrainMode,
        to_pool: bool,
    ) -> String {
        let key = match self.find(name) {
            Some(i) => key_of(&i.host),
            None => {
                let key = key_of(name);
                self.instances.insert(
                    key.clone(),
                    Instance::new(&key, State::Ready, Origin::Adopted, now),
                );
                key
            }
        };
        // It asks, so it runs and Jicofo counts it; attribute it now rather than by a count.
        if self
            .instances
            .get(&key)
            .is_some_and(|i| i.state != State::LaunchFailed)
        {
            self.set_counted(&key, true);
        }
        if let Some(i) = self.instances.get_mut(&key)
            && !i.state.approved()
            && i.state != State::LaunchFailed
        {
            i.seen_at.get_or_insert(now);
            let next = if mode.waits() {
                State::Draining
            } else if to_pool {
                State::Stopping
            } else {
                State::Deleting
            };
            i.set_state(next, now);
            i.reason = Some(reason);
            i.approved_at = Some(now);
            i.to_pool = to_pool;
            i.refill = false;
            i.drain = Some(mode);
        }
        key
    }

    /// The agent confirmed that the host has drained: delete it now.
    /// Returns false when the host is not draining.
    pub fn drained(&mut self, name: &str, now: Millis) -> bool {
        let Some(key) = self.find(name).map(|i| key_of(&i.host)) else {
            return false;
        };
        match self.instances.get_mut(&key) {
            Some(i) if i.state == State::Draining => {
                i.set_state(i.removal_state(), now);
                // Jibri has exited: it leaves Jicofo now.
                i.stopped_at.get_or_insert(now);
                true
            }
            Some(i) => i.state.approved(),
            None => false,
        }
    }

    /// The entry stored under the ledger key `key`, to change (for the sibling modules).
    pub(crate) fn entry_mut(&mut self, key: &str) -> Option<&mut Instance> {
        self.instances.get_mut(key)
    }

    /// Adds a running host the ledger did not know (`ready`, origin `adopted`, membership
    /// unverified). Returns its ledger key.
    ///
    /// It is not counted yet: a sidecar reports as its Jibri starts, about when Jicofo first
    /// counts it, so the next rise of Jicofo's count is attributed to it before any launch in
    /// flight (crediting that rise to a launch would mark ready a host that never booted). If
    /// no rise comes within one report age, Jicofo counted it before it reported: it is taken
    /// from the gateways the ledger could not explain (see [`Ledger::absorb`]).
    pub(crate) fn adopt(&mut self, name: &str, now: Millis) -> String {
        let key = key_of(name);
        if !self.instances.contains_key(&key) {
            let mut i = Instance::new(&key, State::Ready, Origin::Adopted, now);
            i.seen_at = Some(now);
            self.instances.insert(key.clone(), i);
        }
        key
    }

    /// Adopted hosts the lifecycle manager has not been asked about yet, oldest first (at most
    /// `limit`): the leader asks before any of them may be deleted or told to shut down.
    pub fn unverified(&self, limit: usize) -> Vec<String> {
        let mut v: Vec<(Millis, &String)> = self
            .instances
            .iter()
            .filter(|(_, i)| {
                i.origin == Origin::Adopted
                    && i.membership == Membership::Unverified
                    && i.deleted_at.is_none()
                    && !matches!(i.state, State::Gone | State::LaunchFailed)
            })
            .map(|(k, i)| (i.created_at, k))
            .collect();
        v.sort();
        v.into_iter().take(limit).map(|(_, k)| k.clone()).collect()
    }

    /// Adopted hosts not (yet) confirmed managed: what a flood of invented ids would grow.
    pub fn unconfirmed_adoptions(&self) -> usize {
        self.instances
            .values()
            .filter(|i| i.origin == Origin::Adopted && i.membership != Membership::Managed)
            .count()
    }

    /// Records what the lifecycle manager confirmed of `host` (see [`Membership`]), with its
    /// address there (`ip`). A host found outside the managed set, or reporting from another
    /// address, stops being counted and loses the evidence of its reports: whoever sent them
    /// was not that host, or the host is not a gateway of ours. Returns whether it changed.
    pub fn set_membership(
        &mut self,
        host: &str,
        membership: Membership,
        note: &str,
        ip: Option<&str>,
    ) -> bool {
        let key = key_of(host);
        let Some(i) = self.instances.get_mut(&key) else {
            return false;
        };
        if i.origin != Origin::Adopted {
            return false;
        }
        let changed = i.membership != membership;
        i.membership = membership;
        i.membership_note = Some(note.to_string());
        if let Some(ip) = ip.filter(|_| membership != Membership::ReportsOnly) {
            // From now on the host's own address at the lifecycle manager binds its requests.
            i.ip = Some(ip.to_ascii_lowercase());
        }
        if membership.refused() {
            i.sidecar = None;
            self.set_counted(&key, false);
        }
        changed
    }

    /// A removal owed for a host the scaler must not touch (not managed): nothing is sent to
    /// the lifecycle manager, and the entry ends as if the host had left.
    pub fn not_managed(&mut self, host: &str, now: Millis, note: &str) {
        let key = key_of(host);
        if let Some(i) = self.instances.get_mut(&key) {
            i.deleted_at.get_or_insert(now);
            i.stopped_at.get_or_insert(now);
            i.last_error = Some(note.to_string());
            if i.state != State::LaunchFailed {
                i.set_state(State::Gone, now);
                i.last_error = Some(note.to_string());
            }
        }
    }

    /// Sets `counted` outside of a reading, moving `offset` so the next reading still balances.
    pub(crate) fn set_counted(&mut self, key: &str, counted: bool) {
        if let Some(i) = self.instances.get_mut(key)
            && i.counted != counted
        {
            i.counted = counted;
            self.offset += if counted { -1 } else { 1 };
        }
    }

    /// Attributes a new Jicofo reading to ledger entries (see the module doc).
    ///
    /// Hosts known to have stopped (drained or deleted) more than `timing.stop_grace_ms` ago are
    /// taken out of the count first, by that evidence rather than by the totals: a gateway
    /// leaving while a launch joins leaves the total unchanged, and counting alone would take
    /// the launch for still booting (and fail it at the boot timeout although it runs).
    pub fn absorb(&mut self, obs: &Observation, timing: &Timing) -> Vec<Event> {
        let mut events = Vec::new();
        for (key, i) in self.instances.iter_mut() {
            let stopped_long_ago = i
                .stopped_at
                .is_some_and(|t| obs.taken_at.saturating_sub(t) >= timing.stop_grace_ms);
            if i.counted && stopped_long_ago {
                i.counted = false;
                events.push(Event::Left { host: key.clone() });
            }
        }
        // Adopted reporting hosts no rise was attributed to within one report age were counted
        // before they reported: each takes one gateway the ledger could not explain.
        let window = timing.sidecar_report_max_age_ms();
        let overdue: Vec<String> = self
            .instances
            .iter()
            .filter(|(_, i)| awaits_count(i) && obs.taken_at.saturating_sub(i.created_at) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        for key in overdue {
            if self.offset <= 0 {
                break;
            }
            self.set_counted(&key, true);
        }
        let counted = self.instances.values().filter(|i| i.counted).count() as i64;
        let mut diff = i64::from(obs.total) - counted - self.offset;
        if diff > 0 {
            // Oldest expected arrival first: a start from the pool joins much sooner than a
            // create, so each path's launch time is shifted by its own measured lead.
            // Before any measurement a create is assumed to take the boot timeout, a start 0.
            let leads = self.leads;
            // A start counts from its confirmed power-on (a retried power-on starts later).
            // A failed start (it did not join in time) is expected after the starts in time.
            let expected = |i: &Instance| match i.started_at {
                Some(_) if i.recalled() => {
                    // + 2: after a start in time expected at the same instant.
                    i.state_since
                        .saturating_add(leads.start.expected_or(0))
                        .saturating_add(2)
                }
                // Confirmed power-on first; an unconfirmed one (+ 1) is at least as late.
                Some(_) if i.state == State::Resuming => {
                    i.state_since.saturating_add(leads.start.expected_or(0))
                }
                Some(t) => t
                    .saturating_add(leads.start.expected_or(0))
                    .saturating_add(1),
                None => i
                    .created_at
                    .saturating_add(leads.create.expected_or(timing.boot_timeout_ms)),
            };
            // A failed start being powered off or deleted may still join late: it is a
            // candidate too (counted while it goes; it leaves by the stop evidence), so its
            // join is not taken for a launch that is still booting.
            let late_start = |i: &Instance| i.recalled() && !i.counted;
            // Hosts proven to run go first: those that announced themselves (earliest hello
            // first), then launches whose sidecar already reports; then by expected arrival.
            let order = |i: &Instance| {
                if awaits_count(i) {
                    return i.created_at / 8;
                }
                match (i.alive_at.filter(|_| i.proven_alive()), i.sidecar.is_some()) {
                    (Some(t), _) => u64::MAX / 8 + t / 8,
                    (None, true) => u64::MAX / 4 + expected(i) / 4,
                    (None, false) => u64::MAX / 2 + expected(i) / 2,
                }
            };
            let candidates = self.oldest(
                |i| i.state.in_flight() || late_start(i) || awaits_count(i),
                order,
            );
            for key in candidates {
                if diff == 0 {
                    break;
                }
                if let Some(i) = self.instances.get_mut(&key) {
                    if i.recalled() || i.state == State::Ready {
                        i.counted = true;
                        diff -= 1;
                        continue;
                    }
                    i.counted = true;
                    i.seen_at = Some(obs.taken_at);
                    i.set_state(State::Ready, obs.taken_at);
                    let event = match i.started_at {
                        Some(t) => {
                            let lead_ms = obs.taken_at.saturating_sub(t);
                            i.start_failures = 0;
                            self.leads.start.add(lead_ms);
                            Event::Resumed {
                                host: key.clone(),
                                lead_ms,
                            }
                        }
                        None => {
                            let boot_ms = obs.taken_at.saturating_sub(i.created_at);
                            self.leads.create.add(boot_ms);
                            Event::Seen {
                                host: key.clone(),
                                boot_ms,
                            }
                        }
                    };
                    events.push(event);
                    diff -= 1;
                }
            }
        }
        if diff > 0 {
            // Nothing in flight explains the rise: a failed launch whose delete has not
            // happened yet may have booted late. It shows itself alive: adopt it rather than
            // delete it under a call.
            for key in self.oldest(
                |i| i.state == State::LaunchFailed && i.deleted_at.is_none() && !i.counted,
                |i| i.state_since,
            ) {
                if diff == 0 {
                    break;
                }
                if let Some(i) = self.instances.get_mut(&key) {
                    i.counted = true;
                    i.seen_at = Some(obs.taken_at);
                    i.set_state(State::Ready, obs.taken_at);
                    events.push(Event::Seen {
                        host: key.clone(),
                        boot_ms: obs.taken_at.saturating_sub(i.created_at),
                    });
                    diff -= 1;
                }
            }
        } else if diff < 0 {
            // Hosts known to have stopped go first (they are the ones leaving), then the
            // oldest approvals; a wrong pick here would later be counted out twice. A host
            // already powered off into the pool leaves too: Jicofo may drop it only after the
            // power-off is done, and kept counted it would read as a missing spare.
            let order = |i: &Instance| match i.stopped_at {
                Some(t) => t,
                None => u64::MAX / 2 + i.approved_at.unwrap_or(i.state_since) / 2,
            };
            for key in self.oldest(|i| i.counted && i.leaving(), order) {
                if diff == 0 {
                    break;
                }
                if let Some(i) = self.instances.get_mut(&key) {
                    i.counted = false;
                    events.push(Event::Left { host: key.clone() });
                    diff += 1;
                }
            }
        }
        if diff != 0 {
            self.offset += diff;
            events.push(Event::Unexplained {
                delta: diff,
                offset: self.offset,
            });
        }
        events
    }

    /// Keys of the entries matching `pick`, oldest first by `age`.
    fn oldest(
        &self,
        pick: impl Fn(&Instance) -> bool,
        age: impl Fn(&Instance) -> Millis,
    ) -> Vec<String> {
        let mut keys: Vec<(Millis, &String)> = self
            .instances
            .iter()
            .filter(|(_, i)| pick(i))
            .map(|(k, i)| (age(i), k))
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k.clone()).collect()
    }

    /// The boot timeout in force: the configured one, or, once [`BOOTS_TO_TRUST`] boots have
    /// been measured, [`BOOT_TIMEOUT_FACTOR`] times a high estimate of them (mean plus four
    /// mean deviations: about the 99.9th percentile of lognormal boots), if that is longer; at
    /// most [`BOOT_TIMEOUT_CAP`] times the configured one. A slow cloud keeps its hosts while
    /// they boot; a launch that never appears is still failed and deleted.
    pub fn boot_timeout(&self, timing: &Timing) -> BootTimeout {
        let configured_ms = timing.boot_timeout_ms;
        let boots = self.leads.create;
        let measured_ms = (boots.samples >= BOOTS_TO_TRUST).then(|| {
            let high = boots.mean_ms.saturating_add(4 * boots.dev_ms) as f64;
            (high * BOOT_TIMEOUT_FACTOR) as u64
        });
        let in_force_ms = measured_ms.map_or(configured_ms, |m| {
            m.clamp(
                configured_ms,
                configured_ms.saturating_mul(BOOT_TIMEOUT_CAP),
            )
        });
        BootTimeout {
            configured_ms,
            measured_ms,
            in_force_ms,
            boots: boots.samples,
        }
    }

    /// Applies the timeouts: boot timeout, drain timeout, pending-removal TTL, retention.
    pub fn expire(&mut self, timing: &Timing, now: Millis) -> Vec<Event> {
        let mut events = Vec::new();
        let boot_timeout = self.boot_timeout(timing);
        let keys: Vec<String> = self.instances.keys().cloned().collect();
        for key in keys {
            let Some(i) = self.instances.get(&key) else {
                continue;
            };
            let since = now.saturating_sub(i.state_since);
            let created = now.saturating_sub(i.created_at);
            let approved = i.approved_at.map(|t| now.saturating_sub(t));
            let (state, counted) = (i.state, i.counted);
            // Starts from the pool have their own timeout (`pool::expire`).
            let started = i.started_at.is_some();
            if state.in_flight() && !started && created >= boot_timeout.in_force_ms {
                if i.alive_at.is_some() {
                    // It runs: never failed. A gateway Jicofo counts beyond the ledger is
                    // taken to be this one (it joined before it could be attributed).
                    if self.offset > 0 {
                        self.set_counted(&key, true);
                        if let Some(i) = self.instances.get_mut(&key) {
                            i.seen_at = Some(now);
                            i.set_state(State::Ready, now);
                            events.push(Event::Seen {
                                host: key.clone(),
                                boot_ms: now.saturating_sub(i.created_at),
                            });
                        }
                    }
                    continue;
                }
                if let Some(i) = self.instances.get_mut(&key) {
                    i.set_state(State::LaunchFailed, now);
                }
                events.push(Event::BootTimeout { host: key });
                continue;
            }
            if state == State::Draining && since >= timing.drain_timeout_ms {
                if let Some(i) = self.instances.get_mut(&key) {
                    i.set_state(i.removal_state(), now);
                }
                events.push(Event::DrainTimeout { host: key.clone() });
            }
            let leaving = self.instances.get(&key).is_some_and(Instance::leaving);
            if counted && leaving && approved.is_some_and(|a| a >= timing.pending_ttl_ms) {
                self.set_counted(&key, false);
                events.push(Event::PendingExpired { host: key.clone() });
            }
            let Some(i) = self.instances.get(&key) else {
                continue;
            };
            let finished = i
                .deleted_at
                .is_some_and(|d| now.saturating_sub(d) >= timing.retention_ms);
            if finished && !i.counted && matches!(i.state, State::Gone | State::LaunchFailed) {
                self.instances.remove(&key);
                events.push(Event::Forgotten { host: key });
            }
        }
        events
    }

    /// Hosts whose create call is owed (recorded but not confirmed).
    pub fn creates_owed(&self) -> Vec<String> {
        self.instances
            .values()
            .filter(|i| i.state == State::Requested)
            .map(|i| i.host.clone())
            .collect()
    }

    /// Hosts whose delete call is owed.
    pub fn deletes_owed(&self) -> Vec<String> {
        self.instances
            .values()
            .filter(|i| {
                i.deleted_at.is_none()
                    && !i.parked
                    && matches!(i.state, State::Deleting | State::LaunchFailed)
            })
            .map(|i| i.host.clone())
            .collect()
    }

    /// Number of entries in each state.
    pub fn count_by_state(&self) -> BTreeMap<State, u32> {
        let mut map: BTreeMap<State, u32> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for i in self.instances.values() {
            *map.entry(i.state).or_default() += 1;
        }
        map
    }
}

/// An adopted host that reports through its sidecar, not yet counted: it runs, so Jicofo's next
/// rise is its own before it is any launch's.
fn awaits_count(i: &Instance) -> bool {
    i.origin == Origin::Adopted
        && i.state == State::Ready
        && !i.counted
        && i.sidecar.is_some()
        && !i.membership.refused()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_timeout_follows_measured_boots_and_a_launch_that_never_appears_still_fails() {
        let t = Timing::default();
        let mut l = Ledger::new();
        assert_eq!(l.boot_timeout(&t).in_force_ms, t.boot_timeout_ms);
        // Slow boots: 10 min, 14 min, 8 min, 13 min, 11 min, 12 min measured.
        for (n, boot_min) in [10u64, 14, 8, 13, 11, 12].iter().enumerate() {
            let host = format!("b{n}");
            l.record_launch(&host, Origin::Scaler, 0);
            l.absorb(&obs((n + 1) as u32, boot_min * 60_000), &t);
        }
        let b = l.boot_timeout(&t);
        assert_eq!(b.boots, 6);
        assert!(b.in_force_ms > t.boot_timeout_ms, "{b:?}");
        assert!(
            b.in_force_ms <= BOOT_TIMEOUT_CAP * t.boot_timeout_ms,
            "{b:?}"
        );
        // A launch slower than the configured 15 min is not failed while it may still boot...
        l.record_launch("slow", Origin::Scaler, 1_000_000);
        assert!(
            l.expire(&t, 1_000_000 + t.boot_timeout_ms + 60_000)
                .is_empty()
        );
        // ... and one that never appears is failed at the timeout in force.
        let ev = l.expire(&t, 1_000_000 + b.in_force_ms);
        assert_eq!(
            ev,
            vec![Event::BootTimeout {
                host: "slow".into()
            }]
        );
        // Boots faster than the configured timeout never shorten it.
        let mut fast = Ledger::new();
        for n in 0..6u32 {
            fast.record_launch(&format!("f{n}"), Origin::Scaler, 0);
            fast.absorb(&obs(n + 1, 90_000), &t);
        }
        assert_eq!(fast.boot_timeout(&t).in_force_ms, t.boot_timeout_ms);
    }

    fn obs(total: u32, at: Millis) -> Observation {
        Observation {
            total,
            available: total,
            taken_at: at,
        }
    }

    impl Ledger {
        fn absorb_t(&mut self, o: &Observation) -> Vec<Event> {
            self.absorb(o, &Timing::default())
        }
    }

    #[test]
    fn launches_show_up_oldest_first_and_externals_go_to_offset() {
        let mut l = Ledger::new();
        l.absorb_t(&obs(2, 0)); // two gateways we did not launch
        assert_eq!(l.offset(), 2);
        l.record_launch("a", Origin::Scaler, 10);
        l.record_launch("b", Origin::Scaler, 20);
        l.launch_confirmed("a", 11);
        l.launch_confirmed("b", 21);
        assert!(l.absorb_t(&obs(2, 30)).is_empty());
        let ev = l.absorb_t(&obs(3, 40));
        assert_eq!(
            ev,
            vec![Event::Seen {
                host: "a".into(),
                boot_ms: 30
            }]
        );
        assert_eq!(l.get("a").map(|i| i.state), Some(State::Ready));
        assert_eq!(l.get("b").map(|i| i.state), Some(State::Booting));
    }

    #[test]
    fn approved_hosts_leave_when_the_count_drops() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.absorb_t(&obs(3, 0));
        let k = l.approve("gw-1.example.org", Reason::Idle, 5, &t);
        assert_eq!(k, "gw-1.example.org");
        assert!(l.get(&k).is_some_and(|i| i.pending_removal()));
        assert!(
            l.absorb_t(&obs(3, 10)).is_empty(),
            "adoption keeps the balance"
        );
        l.absorb_t(&obs(2, 20));
        assert!(l.get(&k).is_some_and(|i| !i.pending_removal()));
        assert_eq!(l.offset(), 2);
    }

    #[test]
    fn short_names_and_addresses_match() {
        let mut l = Ledger::new();
        l.record_launch("vsg-abc.example.org", Origin::Scaler, 0);
        l.set_ip("vsg-abc.example.org", "10.0.0.7");
        assert!(l.find("vsg-abc").is_some());
        assert!(l.find("VSG-ABC.example.org.").is_some());
        assert!(l.find("10.0.0.7").is_some());
        assert!(l.find("10.0.0.8").is_none());
        assert!(l.find("vsg-abd").is_none());
    }

    #[test]
    fn boot_timeout_fails_the_launch_and_owes_a_delete() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.record_launch("a", Origin::Scaler, 0);
        l.launch_confirmed("a", 1);
        assert!(l.expire(&t, t.boot_timeout_ms - 1).is_empty());
        let ev = l.expire(&t, t.boot_timeout_ms);
        assert_eq!(ev, vec![Event::BootTimeout { host: "a".into() }]);
        assert_eq!(l.deletes_owed(), vec!["a".to_string()]);
        l.delete_done("a", t.boot_timeout_ms + 1);
        assert!(l.deletes_owed().is_empty());
        let ev = l.expire(&t, t.boot_timeout_ms + 1 + t.retention_ms);
        assert_eq!(ev, vec![Event::Forgotten { host: "a".into() }]);
    }

    #[test]
    fn a_host_that_says_hello_is_attributed_first_and_never_failed() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.absorb_t(&obs(0, 0));
        // a: slow boot, launched first; b: fast, says hello when it starts.
        l.record_launch("a", Origin::Scaler, 10);
        l.record_launch("b", Origin::Scaler, 20);
        l.launch_confirmed("a", 11);
        l.launch_confirmed("b", 21);
        assert!(l.hello("b", 30));
        assert!(!l.hello("b", 31), "a repeated hello changes nothing");
        assert!(!l.hello("nobody", 31));
        // Jicofo counts one more: it is b (by name), not the oldest launch a.
        let ev = l.absorb_t(&obs(1, 40));
        assert_eq!(
            ev,
            vec![Event::Seen {
                host: "b".into(),
                boot_ms: 20
            }]
        );
        assert_eq!(l.get("a").map(|i| i.state), Some(State::Booting));
        // a times out: it never proved it runs.
        l.expire(&t, 10 + t.boot_timeout_ms);
        assert_eq!(l.get("a").map(|i| i.state), Some(State::LaunchFailed));
        assert_eq!(l.deletes_owed(), vec!["a".to_string()]);
        // a's agent announces itself before the delete happened: adopted, no delete owed.
        assert!(l.hello("a", 20 + t.boot_timeout_ms));
        assert_eq!(l.get("a").map(|i| i.state), Some(State::Booting));
        assert!(l.deletes_owed().is_empty());
        // Past the boot timeout an alive host stays in flight while Jicofo does not count
        // it, and is taken as Jicofo's unexplained extra gateway once there is one.
        assert!(l.expire(&t, 30 + t.boot_timeout_ms).is_empty());
        assert_eq!(l.get("a").map(|i| i.state), Some(State::Booting));
        l.absorb_t(&obs(2, 40 + t.boot_timeout_ms));
        assert_eq!(l.get("a").map(|i| i.state), Some(State::Ready));
    }

    #[test]
    fn an_alive_host_past_the_boot_timeout_claims_an_unexplained_gateway() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.absorb_t(&obs(0, 0));
        l.record_launch("a", Origin::Scaler, 0);
        l.launch_confirmed("a", 1);
        l.hello("a", 5);
        // Jicofo's count rose while nothing was in flight... a was; so simulate a rise
        // attributed elsewhere: an unmanaged gateway appears in the offset.
        l.offset = 1;
        let ev = l.expire(&t, t.boot_timeout_ms);
        assert_eq!(
            ev,
            vec![Event::Seen {
                host: "a".into(),
                boot_ms: t.boot_timeout_ms
            }]
        );
        assert_eq!(l.offset(), 0);
        assert!(
            l.get("a")
                .is_some_and(|i| i.counted && i.state == State::Ready)
        );
    }

    #[test]
    fn an_unexplained_rise_adopts_a_failed_launch_not_yet_deleted() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.absorb_t(&obs(0, 0));
        l.record_launch("a", Origin::Scaler, 0);
        l.launch_confirmed("a", 1);
        l.expire(&t, t.boot_timeout_ms);
        assert_eq!(l.deletes_owed(), vec!["a".to_string()]);
        // The delete failed (lifecycle down); a boots late: Jicofo counts one more.
        l.delete_error("a", "down");
        let ev = l.absorb_t(&obs(1, t.boot_timeout_ms + 5));
        assert_eq!(
            ev,
            vec![Event::Seen {
                host: "a".into(),
                boot_ms: t.boot_timeout_ms + 5
            }]
        );
        assert!(l.deletes_owed().is_empty());
        assert_eq!(l.offset(), 0);
        // A deleted failed launch is never adopted: the rise is someone else's.
        let mut l = Ledger::new();
        l.absorb_t(&obs(0, 0));
        l.record_launch("b", Origin::Scaler, 0);
        l.expire(&t, t.boot_timeout_ms);
        l.delete_done("b", t.boot_timeout_ms + 1);
        l.absorb_t(&obs(1, t.boot_timeout_ms + 5));
        assert_eq!(l.get("b").map(|i| i.state), Some(State::LaunchFailed));
        assert_eq!(l.offset(), 1);
    }

    #[test]
    fn a_refused_create_owes_nothing() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.record_launch("a", Origin::Scaler, 0);
        l.launch_refused("a", 5, "401");
        assert_eq!(l.get("a").map(|i| i.state), Some(State::LaunchFailed));
        assert!(l.creates_owed().is_empty());
        assert!(l.deletes_owed().is_empty());
        assert_eq!(crate::Counts::of(&l).in_flight, 0);
        let ev = l.expire(&t, 5 + t.retention_ms);
        assert_eq!(ev, vec![Event::Forgotten { host: "a".into() }]);
    }

    #[test]
    fn a_parked_delete_is_owed_no_more_and_shows_why() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.record_launch("a", Origin::Scaler, 0);
        l.launch_confirmed("a", 1);
        l.expire(&t, t.boot_timeout_ms);
        assert_eq!(l.deletes_owed(), vec!["a".to_string()]);
        l.park("a", "invalid host name");
        assert!(l.deletes_owed().is_empty(), "not retried every tick");
        let i = l.find("a").expect("kept in the ledger");
        assert!(i.parked && i.last_error.as_deref() == Some("invalid host name"));
    }

    #[test]
    fn drain_confirm_waits_for_drained_or_timeout() {
        let t = Timing {
            drain_confirm: true,
            ..Timing::default()
        };
        let mut l = Ledger::new();
        l.approve("a", Reason::Idle, 0, &t);
        assert!(l.deletes_owed().is_empty());
        assert!(l.drained("a", 5));
        assert_eq!(l.deletes_owed(), vec!["a".to_string()]);
        l.approve("b", Reason::Idle, 0, &t);
        l.expire(&t, t.drain_timeout_ms);
        assert_eq!(l.deletes_owed().len(), 2);
    }
}
