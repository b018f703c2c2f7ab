//! A decision in words, with its numbers: the `why` of log lines, audit records and
//! `/scaler/status`.

use policy::{
    AddRefusal, KeepCause, LaunchDecision, LaunchHold, Reason, RemovalDecision, RequestedAdd,
};

use super::{Decision, Timeout};
use crate::lifecycle::BreakerState;

impl Decision {
    /// Why, in words with the numbers.
    pub fn why(&self) -> String {
        match self {
            Decision::Launch { numbers, hosts } => {
                format!(
                    "launch {}: {}; hosts {}",
                    numbers.launch,
                    launch_numbers(numbers),
                    hosts.join(", ")
                )
            }
            Decision::Capped { cap } => format!(
                "max {} holds the spare floor back: it needs {} more gateway(s), max leaves room for {}; raise max (POST /scaler/max) or accept fewer spares",
                cap.max,
                cap.deficit,
                cap.room.max(0)
            ),
            Decision::Uncapped { max } => format!("the spare floor fits under max {max} again"),
            Decision::Hold { numbers } => match numbers.hold {
                Some(LaunchHold::StatsMissing) => {
                    "no fresh Jicofo stats: launching nothing".to_string()
                }
                _ => format!("at max: {}", launch_numbers(numbers)),
            },
            Decision::LaunchHeld {
                numbers,
                refusals,
                hold_ms,
                refusal,
            } => format!(
                "lifecycle manager refused {refusals} create(s) in a row: no launch for {}s; {}; last refusal: {refusal}",
                hold_ms.div_ceil(1000),
                launch_numbers(numbers)
            ),
            Decision::Hello { adopted: true, .. } => {
                "its agent started after the boot timeout: adopted, not deleted".into()
            }
            Decision::Hello { adopted: false, .. } => {
                "its agent started: it runs; Jicofo's next rise is attributed to it".into()
            }
            Decision::Remove {
                reason,
                answer,
                min,
                store_error,
                ..
            } => format!(
                "{}: {}",
                reason.as_str(),
                removal_why(answer, *reason, *min, store_error.as_deref())
            ),
            Decision::QueuedStored { reason, .. } => {
                format!("{}: queued approval stored", reason.as_str())
            }
            Decision::Drained { known: true, .. } => "agent confirmed the drain".into(),
            Decision::Drained { known: false, .. } => "no approved removal for this host".into(),
            Decision::Add { in_flight, .. } => {
                format!("on request: in flight {in_flight} + 1, within max")
            }
            Decision::AddRefused { refusal } => refusal_text(refusal),
            Decision::AddNotNeeded { add } => match add {
                RequestedAdd::NotNeeded {
                    deficit,
                    available,
                    in_flight,
                    pending,
                    min,
                } => format!(
                    "not needed, launching nothing: available {available} + in flight {in_flight} - pending {pending} >= min {min} (deficit {deficit}); raise min for more spares"
                ),
                RequestedAdd::Launch { deficit } => format!("needed: deficit {deficit}"),
            },
            Decision::SidecarShutdown { order } => match order.reason {
                Reason::Idle => format!(
                    "surplus spare, idle {:.0}s: available {} - pending {} - 1 >= min; told to shut down at its next poll",
                    order.idle_ms.unwrap_or(0) as f64 / 1000.0,
                    order.available,
                    order.pending_removal
                ),
                r => format!(
                    "reports {}: told to shut down at its next poll and replaced",
                    r.as_str()
                ),
            },
            Decision::SidecarConfirmed { ordered: true, .. } => {
                "the sidecar confirmed its shutdown: deleting the host".into()
            }
            Decision::SidecarConfirmed { ordered: false, .. } => {
                "the sidecar reports a shutdown we did not order: the host leaves (expired) and is replaced".into()
            }
            Decision::SidecarSilent { silent_ms, .. } => format!(
                "silent {:.0}s after its shutdown order: taken as gone, deleting it",
                *silent_ms as f64 / 1000.0
            ),
            Decision::SidecarForgotten { silent_ms, .. } => format!(
                "adopted sidecar host silent {:.0}s: no longer tracked (not ours to delete)",
                *silent_ms as f64 / 1000.0
            ),
            Decision::SidecarAdopted { kind, group, .. } => format!(
                "first report from a host the ledger did not know (type {}, group {})",
                kind.as_deref().unwrap_or("-"),
                group.as_deref().unwrap_or("-")
            ),
            Decision::Seen { boot_ms, .. } => format!(
                "counted by Jicofo {:.0}s after launch",
                *boot_ms as f64 / 1000.0
            ),
            Decision::Left { .. } => "no longer counted by Jicofo".into(),
            Decision::Timeout { timeout, .. } => match timeout {
                Timeout::Boot => "not seen in Jicofo within the boot timeout: deleting it".into(),
                Timeout::Drain => {
                    "no drain confirmation within the drain timeout: deleting it".into()
                }
                Timeout::Pending => {
                    "still counted by Jicofo after the pending-removal TTL".into()
                }
                Timeout::Start { failures } if *failures >= 2 => format!(
                    "started from the pool, not seen within the start timeout ({failures} times in a row): deleting it"
                ),
                Timeout::Start { .. } => "started from the pool, not seen within the start timeout: powering it off and checking it (its launch is held until then)".into(),
            },
            Decision::Created { elapsed_ms, .. } => {
                format!("lifecycle manager created it in {elapsed_ms} ms")
            }
            Decision::CreateRefused { error, .. } => format!("create refused: {error}"),
            Decision::CreateRetry { error, .. } => {
                format!("create failed, retrying next tick: {error}")
            }
            Decision::Deleted { detail, .. } => detail.clone(),
            Decision::DeleteRetry { error, .. } => {
                format!("delete failed, retrying next tick: {error}")
            }
            Decision::Parked { error, .. } => format!(
                "cannot ever be deleted ({error}): parked, no longer retried; delete it by hand, then it is forgotten"
            ),
            Decision::Setting {
                setting,
                before,
                after,
            } => format!("{setting} {before} -> {after}"),
            Decision::Vanished { .. } => "missing from the lifecycle manager".into(),
            Decision::Breaker {
                node,
                state,
                failures,
                last_error,
            } => match (state, last_error) {
                (BreakerState::Open, Some(e)) => {
                    format!("node {node}: {failures} consecutive failures; last: {e}")
                }
                (BreakerState::HalfOpen, _) => {
                    format!("node {node}: cooldown over, next call is a trial")
                }
                _ => format!("node {node}: {}", self.outcome().as_str()),
            },
            Decision::Leader { lease: Some(v) } => format!("lease {v}"),
            Decision::Leader { lease: None } => "lease taken or store unreachable".into(),
            Decision::Capacity { from, sizing } => crate::capacity::live::describe(*from, sizing),
            Decision::CapacitySchedule { entries } => {
                format!("capacity schedule replaced: {entries} entries")
            }
            Decision::Pool(p) => p.why(),
            Decision::Membership {
                membership, note, ..
            } => match membership {
                policy::Membership::Managed | policy::Membership::Unverified => {
                    format!("a managed host: {note}")
                }
                policy::Membership::ReportsOnly => {
                    format!("known from its reports alone ({note}): never deleted or powered off")
                }
                policy::Membership::Outside => {
                    format!("not a managed host ({note}): never deleted, powered off or told")
                }
                policy::Membership::Mismatch => format!(
                    "not a managed host for this caller ({note}): never deleted, powered off or told"
                ),
            },
            Decision::NotManaged { action, note, .. } => {
                format!("not a managed host: {action} refused, nothing sent to the lifecycle manager; {note}")
            }
        }
    }
}

/// The launch rule's numbers in words.
fn launch_numbers(d: &LaunchDecision) -> String {
    format!(
        "deficit {} = min - (available {} + in flight {} - pending {}); room under max {} (total {})",
        d.deficit, d.available, d.in_flight, d.pending_removal, d.room, d.total
    )
}

/// The words of an add refusal, with its numbers (also the 409 body).
pub fn refusal_text(r: &AddRefusal) -> String {
    match r {
        AddRefusal::StatsMissing => "refused: no fresh Jicofo stats, the total is unknown".into(),
        AddRefusal::AtMax {
            total,
            in_flight,
            max,
        } => {
            format!("refused: total {total} + in flight {in_flight} + 1 would pass max {max}")
        }
    }
}

/// The words of a removal decision, with its numbers.
fn removal_why(d: &RemovalDecision, reason: Reason, min: u32, store_error: Option<&str>) -> String {
    match (*d, store_error) {
        (RemovalDecision::Accept { .. }, Some(e)) => {
            format!("store unavailable ({e}): accepted and queued until it is back")
        }
        (RemovalDecision::Keep { .. }, Some(e)) => {
            format!("cannot reserve the removal budget: {e}")
        }
        (RemovalDecision::Accept { repeat: true, .. }, None) => {
            "already approved (no budget spent)".into()
        }
        (
            RemovalDecision::Accept {
                available,
                pending_removal,
                ..
            },
            None,
        ) if reason == Reason::Idle => format!(
            "available {available} - pending {pending_removal} - 1 >= min {min}; stats fresh, lifecycle up"
        ),
        (RemovalDecision::Accept { .. }, None) => {
            format!("{} hosts are removed at once and replaced", reason.as_str())
        }
        (
            RemovalDecision::Keep {
                cause,
                available,
                pending_removal,
            },
            None,
        ) => match cause {
            KeepCause::StatsMissing => "no fresh Jicofo stats: fail safe".into(),
            KeepCause::LifecycleDown => "lifecycle manager unreachable (all breakers open)".into(),
            KeepCause::StoreDown => "store unreachable".into(),
            KeepCause::StoreRecovering => {
                "shared store is restoring its state after a data loss: no idle removal until it is complete".into()
            }
            KeepCause::Floor => format!(
                "available {available} - pending {pending_removal} - 1 < min {min}: at the spare floor"
            ),
        },
    }
}
