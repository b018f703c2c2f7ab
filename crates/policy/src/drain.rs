//! How an approved host is taken out ([`DrainMode`]): per host, so a fleet half on the old
//! script and half on the agent (or on jitsi-autoscaler's sidecar) needs no global switch.

use serde::{Deserialize, Serialize};

use crate::settings::Timing;

/// How an approved host is taken out: decided per host by what its client can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainMode {
    /// Our agent: it drains Jibri and confirms with `POST /scaler/drained`; the host is deleted
    /// then (or at the drain timeout).
    Confirm,
    /// A client that never confirms (the legacy scale-down script): deleted right after the
    /// approval, as the legacy scaler did.
    Immediate,
    /// A jitsi-autoscaler sidecar: told `shutdown: true` in its poll answers; deleted after its
    /// `/sidecar/shutdown`, or its silence past the sidecar TTL (or at the drain timeout).
    Sidecar,
}

impl DrainMode {
    /// Whether the host drains before the delete (anything but [`DrainMode::Immediate`]).
    pub fn waits(self) -> bool {
        self != DrainMode::Immediate
    }

    /// The mode of a remove-me client that does not say: `policy.drain_confirm`.
    pub fn default_for(timing: &Timing) -> DrainMode {
        if timing.drain_confirm {
            DrainMode::Confirm
        } else {
            DrainMode::Immediate
        }
    }

    /// The `drain` field of a remove-me request: `confirm` or `immediate`. (`sidecar` is never
    /// asked for: only the sidecar routes set it.)
    pub fn parse(s: &str) -> Option<DrainMode> {
        match s {
            "confirm" => Some(DrainMode::Confirm),
            "immediate" => Some(DrainMode::Immediate),
            _ => None,
        }
    }

    /// The snake_case name, as in `/scaler/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrainMode::Confirm => "confirm",
            DrainMode::Immediate => "immediate",
            DrainMode::Sidecar => "sidecar",
        }
    }
}
