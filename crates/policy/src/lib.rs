//! The scaling policy of jitsi-scaler, as pure code.
//!
//! Every function here maps (observation, settings, ledger, time) to a decision or a ledger
//! change. There is no I/O, no clock read and no randomness, so the live service, the simulator
//! and the tests run exactly the same logic. Time is passed in as milliseconds since the Unix
//! epoch ([`Millis`]).
#![forbid(unsafe_code)]

pub mod capacity;
mod decide;
mod drain;
mod evidence;
mod lead;
mod ledger;
mod mixed;
mod pool;
mod settings;
mod sidecar;
mod step;

pub use decide::{
    AddRefusal, Counts, Inputs, KeepCause, LaunchDecision, LaunchHold, RemovalDecision,
    StoreHealth, decide_external_add, decide_launch, decide_removal, decide_removal_without_store,
};
pub use drain::DrainMode;
pub use evidence::{BusyStatus, HealthStatus, SidecarEvidence, SidecarReport};
pub use lead::{LeadStat, LeadTimes};
pub use ledger::{
    BOOT_TIMEOUT_CAP, BOOT_TIMEOUT_FACTOR, BOOTS_TO_TRUST, BootTimeout, Event, Instance, Ledger,
    Membership, Origin, State,
};
pub use mixed::{RequestedAdd, decide_requested_add, remove_request_as};
pub use pool::{
    LaunchPath, PoolTick, WarmPool, expire as expire_pool, next_launch, remove_request_with_pool,
    sizing_lead, tick_with_pool,
};
pub use settings::{Setting, Settings, SettingsError, Timing};
pub use sidecar::{Shutdown, SidecarEvent, SidecarTick, select_shutdowns, sidecar_tick};
pub use step::{
    Cap, CapChange, Creates, LaunchLine, Owed, Plan, StepInputs, VERIFY_PER_TICK, numbered, step,
};

/// Milliseconds since the Unix epoch: the only notion of time the policy knows.
pub type Millis = u64;

/// Why a gateway asks to be removed (the `reason` of a remove-me request).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Idle long enough: removal must respect the spare floor.
    Idle,
    /// Past its lifetime (or Jibri says EXPIRED): removed at once, replaced by the launch rule.
    Expired,
    /// Unhealthy or unreachable Jibri: removed at once, replaced by the launch rule.
    Unhealthy,
}

impl Reason {
    /// Parses a reason as clients send it; `unhealty` is the existing script's spelling.
    pub fn parse(s: &str) -> Option<Reason> {
        match s {
            "idle" => Some(Reason::Idle),
            "expired" => Some(Reason::Expired),
            "unhealthy" | "unhealty" => Some(Reason::Unhealthy),
            _ => None,
        }
    }

    /// The canonical lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Idle => "idle",
            Reason::Expired => "expired",
            Reason::Unhealthy => "unhealthy",
        }
    }
}

/// One merged Jicofo reading: how many gateways exist and how many are free, at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observation {
    /// Gateways Jicofo knows (idle, busy, unhealthy).
    pub total: u32,
    /// Gateways that are healthy and idle.
    pub available: u32,
    /// When the reading was taken.
    pub taken_at: Millis,
}

impl Observation {
    /// The reading if it is younger than `max_age` at `now`, else `None` (stale = missing).
    pub fn fresh(obs: Option<&Observation>, now: Millis, max_age_ms: u64) -> Option<&Observation> {
        obs.filter(|o| now.saturating_sub(o.taken_at) <= max_age_ms)
    }
}

/// What one control-loop tick decided.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tick {
    /// Ledger changes from the reading and the timeouts.
    pub events: Vec<Event>,
    /// The launch rule's result (the caller records and performs the launches).
    pub launch: LaunchDecision,
}

/// One tick of the control loop, shared by `serve` and `simulate`: attribute the reading (if
/// fresh), apply the timeouts, then run the launch rule. The caller then records
/// `launch.launch` new entries with [`Ledger::record_launch`] before calling the lifecycle
/// manager, and performs [`Ledger::deletes_owed`].
pub fn tick(
    ledger: &mut Ledger,
    settings: &Settings,
    obs: Option<&Observation>,
    timing: &Timing,
    now: Millis,
) -> Tick {
    let (fresh, events) = observe(ledger, obs, None, timing, now);
    let launch = decide_launch(Counts::of(ledger), settings, fresh, now, timing);
    Tick { events, launch }
}

/// The first half of a tick: attribute the reading (if fresh), then apply the timeouts (the
/// warm pool's first, with a `pool`). Returns the fresh reading and the events.
fn observe<'a>(
    ledger: &mut Ledger,
    obs: Option<&'a Observation>,
    pool: Option<&WarmPool>,
    timing: &Timing,
    now: Millis,
) -> (Option<&'a Observation>, Vec<Event>) {
    let fresh = Observation::fresh(obs, now, timing.stats_max_age_ms);
    let mut events = fresh.map(|o| ledger.absorb(o, timing)).unwrap_or_default();
    if let Some(pool) = pool {
        events.extend(pool::expire(ledger, pool, now));
    }
    events.extend(ledger.expire(timing, now));
    (fresh, events)
}

/// Test fixtures shared by the modules' tests.
#[cfg(test)]
mod testing {
    use crate::{Millis, Observation};

    /// A reading of `total` gateways, `available` of them free, taken at `taken_at`.
    pub(crate) fn obs_at(total: u32, available: u32, taken_at: Millis) -> Observation {
        Observation {
            total,
            available,
            taken_at,
        }
    }

    /// [`obs_at`] 1 s.
    pub(crate) fn obs(total: u32, available: u32) -> Observation {
        obs_at(total, available, 1_000)
    }
}
