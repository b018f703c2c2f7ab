//! `serve`'s side of the warm pool (issue 13): the decisions and lifecycle calls for starting,
//! stopping and refilling pooled hosts. The rules are pure code in the policy crate
//! (`policy::tick_with_pool`, `policy::remove_request_with_pool`); this module only records and
//! acts. See docs/lifecycle.md, "Warm pool".

use policy::Event;

use crate::service::{Decision, Service};

/// The decision for a warm-pool ledger event (`None` for events that are not the pool's).
pub fn event_decision(e: &Event) -> Option<Decision> {
    Some(match e {
        Event::Resumed { host, lead_ms } => Service::decision(
            "seen",
            Some(host),
            "ready",
            format!(
                "counted by Jicofo {:.0}s after its start from the warm pool",
                *lead_ms as f64 / 1000.0
            ),
            None,
        ),
        Event::StartTimeout { host, failures } if *failures >= 2 => Service::decision(
            "timeout",
            Some(host),
            "launch_failed",
            format!("started from the pool, not seen within the start timeout ({failures} times in a row): deleting it"),
            None,
        ),
        Event::StartTimeout { host, .. } => Service::decision(
            "timeout",
            Some(host),
            "stopping",
            "started from the pool, not seen within the start timeout: powering it off and checking it (its launch is held until then)".into(),
            None,
        ),
        Event::PoolTrimmed { host } => Service::decision(
            "pool",
            Some(host),
            "deleting",
            "stopped host beyond the warm pool's size: deleting it".into(),
            None,
        ),
        _ => return None,
    })
}
