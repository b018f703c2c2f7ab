//! What a jitsi-autoscaler sidecar reports of its Jibri ([`SidecarReport`]) and what the ledger
//! keeps of it ([`SidecarEvidence`]), timed on our own clock.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::settings::Timing;

/// Jibri's `busyStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusyStatus {
    /// Free for a call.
    Idle,
    /// In a call.
    Busy,
    /// Done (single use, or past its lifetime): should go and be replaced.
    Expired,
    /// Missing from the report (a failed stats read).
    Unknown,
}

impl BusyStatus {
    /// Parses Jibri's spelling (`IDLE`, `BUSY`, `EXPIRED`); anything else is unknown.
    pub fn parse(s: &str) -> BusyStatus {
        match s {
            "IDLE" => BusyStatus::Idle,
            "BUSY" => BusyStatus::Busy,
            "EXPIRED" => BusyStatus::Expired,
            _ => BusyStatus::Unknown,
        }
    }
}

/// Jibri's `health.healthStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// `HEALTHY`.
    Healthy,
    /// `UNHEALTHY`.
    Unhealthy,
    /// Missing from the report.
    Unknown,
}

impl HealthStatus {
    /// Parses Jibri's spelling (`HEALTHY`, `UNHEALTHY`); anything else is unknown.
    pub fn parse(s: &str) -> HealthStatus {
        match s {
            "HEALTHY" => HealthStatus::Healthy,
            "UNHEALTHY" => HealthStatus::Unhealthy,
            _ => HealthStatus::Unknown,
        }
    }
}

/// One status report (`/sidecar/status` or `/sidecar/stats`), as the policy needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarReport {
    /// `stats.status.busyStatus`.
    pub busy: BusyStatus,
    /// `stats.status.health.healthStatus`.
    pub health: HealthStatus,
    /// `shutdownStatus`: the sidecar has started its shutdown scripts.
    pub shutting_down: bool,
}

/// What the ledger keeps of a host's sidecar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarEvidence {
    /// Last reported busy status.
    pub busy: BusyStatus,
    /// Last reported health.
    pub health: HealthStatus,
    /// Our receive time of the last status report (refreshed at most every TTL/5 while
    /// nothing changes, to keep store writes rare).
    pub reported_at: Millis,
    /// Our receive time of the last request of any kind (same refresh rule).
    pub heard_at: Millis,
    /// Since when it reports idle without a break (our clock): longest idle goes first.
    #[serde(default)]
    pub idle_since: Option<Millis>,
    /// Since when it reports UNHEALTHY without a break (our clock).
    #[serde(default)]
    pub unhealthy_since: Option<Millis>,
    /// The sidecar reported `shutdownStatus: true`.
    #[serde(default)]
    pub shutting_down: bool,
    /// When its `/sidecar/shutdown` arrived.
    #[serde(default)]
    pub confirmed_at: Option<Millis>,
}

impl SidecarEvidence {
    /// The last report is recent enough to act on (one report interval and a half, at most
    /// the TTL): what a host did a quarter of an hour ago says nothing about now.
    pub fn fresh(&self, now: Millis, timing: &Timing) -> bool {
        now.saturating_sub(self.reported_at) <= timing.sidecar_report_max_age_ms()
    }

    /// Reports UNHEALTHY, not BUSY, freshly and for at least TTL/5 (Jibri's UNHEALTHY is sticky
    /// until a restart; a short streak is not enough, as the agent's `unhealthy_checks`).
    pub fn broken(&self, now: Millis, timing: &Timing) -> bool {
        self.fresh(now, timing)
            && self.busy != BusyStatus::Busy
            && self
                .unhealthy_since
                .is_some_and(|t| now.saturating_sub(t) >= timing.sidecar_ttl_ms / 5)
    }

    /// Counts as a spare: a fresh report of IDLE *and* HEALTHY, not shutting down.
    pub fn spare(&self, now: Millis, timing: &Timing) -> bool {
        self.fresh(now, timing)
            && self.busy == BusyStatus::Idle
            && self.health == HealthStatus::Healthy
            && !self.shutting_down
    }
}
