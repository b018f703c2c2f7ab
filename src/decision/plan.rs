//! The decisions of a tick's [`policy::Plan`]: one pure mapping, so the controller only records
//! what the plan says.

use policy::{CapChange, Event, LaunchLine, Plan, SidecarEvent};

use super::{Decision, PoolDecision, Timeout};
use crate::lifecycle::Hold;

/// What the controller adds to a plan to word its decisions.
#[derive(Clone, Debug, Default)]
pub struct PlanContext {
    /// The launch hold after refused creates, if any (its numbers for the `held` line).
    pub hold: Option<Hold>,
    /// The warm pool's size.
    pub pool_size: u32,
}

/// Every decision line of `plan`, in the order they happened: the reading's and the timeouts'
/// events, the warm pool's starts and refills, the launch rule's line, the sidecar orders.
pub fn decisions(plan: &Plan, ctx: &PlanContext) -> Vec<Decision> {
    let mut out: Vec<Decision> = plan.events.iter().filter_map(event_decision).collect();
    let (level, size) = (plan.pool_level, ctx.pool_size);
    if !plan.resumed.is_empty() {
        let hosts = plan.resumed.clone();
        out.push(Decision::Pool(PoolDecision::Start { hosts, level, size }));
    }
    if !plan.refills.is_empty() {
        let hosts = plan.refills.clone();
        out.push(Decision::Pool(PoolDecision::Refill { hosts, level, size }));
    }
    match &plan.line {
        Some(LaunchLine::Launch { numbers, hosts }) => out.push(Decision::Launch {
            numbers: *numbers,
            hosts: hosts.clone(),
        }),
        Some(LaunchLine::Hold { numbers }) => out.push(Decision::Hold { numbers: *numbers }),
        Some(LaunchLine::Held { numbers }) => {
            let h = ctx.hold.clone().unwrap_or(Hold {
                remaining: std::time::Duration::ZERO,
                refusals: 0,
                reason: String::new(),
                new: true,
            });
            out.push(Decision::LaunchHeld {
                numbers: *numbers,
                refusals: h.refusals,
                hold_ms: u64::try_from(h.remaining.as_millis()).unwrap_or(u64::MAX),
                refusal: h.reason,
            });
        }
        None => {}
    }
    match plan.cap_change {
        Some(CapChange::Capped { cap }) => out.push(Decision::Capped { cap }),
        Some(CapChange::Released { max }) => out.push(Decision::Uncapped { max }),
        None => {}
    }
    for order in &plan.sidecar.shutdowns {
        out.push(Decision::SidecarShutdown {
            order: order.clone(),
        });
    }
    for e in &plan.sidecar.events {
        out.push(match e.clone() {
            SidecarEvent::SilentAfterShutdown { host, silent_ms } => {
                Decision::SidecarSilent { host, silent_ms }
            }
            SidecarEvent::Forgotten { host, silent_ms } => {
                Decision::SidecarForgotten { host, silent_ms }
            }
        });
    }
    out
}

/// The decision of a ledger event, if it gets a line (an unexplained count change and a
/// forgotten entry are logged, not recorded).
pub fn event_decision(e: &Event) -> Option<Decision> {
    let timeout = |host: &String, timeout| Decision::Timeout {
        host: host.clone(),
        timeout,
    };
    Some(match e {
        Event::Seen { host, boot_ms } => Decision::Seen {
            host: host.clone(),
            boot_ms: *boot_ms,
        },
        Event::Left { host } => Decision::Left { host: host.clone() },
        Event::BootTimeout { host } => timeout(host, Timeout::Boot),
        Event::DrainTimeout { host } => timeout(host, Timeout::Drain),
        Event::PendingExpired { host } => timeout(host, Timeout::Pending),
        Event::StartTimeout { host, failures } => timeout(
            host,
            Timeout::Start {
                failures: *failures,
            },
        ),
        Event::Resumed { host, lead_ms } => Decision::Pool(PoolDecision::Resumed {
            host: host.clone(),
            lead_ms: *lead_ms,
        }),
        Event::PoolTrimmed { host } => Decision::Pool(PoolDecision::Trimmed { host: host.clone() }),
        Event::Unexplained { delta, offset } => {
            tracing::info!(
                delta,
                unmanaged = offset,
                "Jicofo count changed outside the ledger"
            );
            return None;
        }
        Event::Forgotten { host } => {
            tracing::debug!(host, "forgotten after the retention period");
            return None;
        }
    })
}
