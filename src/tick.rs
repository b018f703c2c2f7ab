//! The leader tick on the service: what [`policy::step`] reads besides the ledger, the step
//! itself with `serve`'s host names, and the record of the plan's decisions. The controller
//! runs them in that order and starts the calls the plan owes.

use policy::capacity::Profile;
use policy::{Creates, Event, LaunchDecision, Millis, Plan, StepInputs};

use crate::decision::{PlanContext, Record, plan_decisions};
use crate::jicofo::Merged;
use crate::lifecycle::Hold;
use crate::service::Service;
use crate::store::Snapshot;

/// What a tick reads outside the store write (taken once: the write may be retried).
#[derive(Clone, Debug)]
pub struct TickInputs {
    /// Now.
    pub now: Millis,
    /// The learned profile to store (target mode, leader).
    pub profile: Option<Profile>,
    /// Whether the lifecycle manager is up.
    pub lifecycle_up: bool,
    /// The launch hold after refused creates, if any.
    pub hold: Option<Hold>,
    /// The previous tick's launch decision.
    pub previous: Option<LaunchDecision>,
    /// The warm pool.
    pub pool: policy::WarmPool,
}

impl Service {
    /// The tick's inputs from outside the store.
    pub async fn tick_inputs(&self, now: Millis) -> TickInputs {
        TickInputs {
            now,
            profile: self.capacity.to_store(),
            lifecycle_up: self.lifecycle().is_up(),
            hold: self.lifecycle().launch_hold(),
            previous: self.last_launch().await,
            pool: self.cfg.warm_pool.to_policy(),
        }
    }

    /// The policy's step on the stored snapshot (inside the tick's one store write): the
    /// effective settings of target mode, new hosts named `<name_prefix>-<12 hex>`.
    pub fn plan(&self, snap: &mut Snapshot, merged: &Merged, t: &TickInputs) -> Plan {
        let prefix = &self.cfg.lifecycle.name_prefix;
        self.plan_named(snap, merged, t, &mut |l| {
            crate::hostname::new_host_name(prefix, l)
        })
    }

    /// [`Service::plan`] with new hosts named by `name`.
    pub fn plan_named(
        &self,
        snap: &mut Snapshot,
        merged: &Merged,
        t: &TickInputs,
        name: &mut dyn FnMut(&policy::Ledger) -> String,
    ) -> Plan {
        if let Some(p) = &t.profile {
            snap.capacity.get_or_insert_with(Default::default).profile = Some(p.clone());
        }
        let settings = self.capacity.effective(&snap.settings);
        let inputs = StepInputs {
            settings: &settings,
            obs: merged.observation.as_ref(),
            pool: &t.pool,
            lifecycle_up: t.lifecycle_up,
            creates: match &t.hold {
                None => Creates::Allowed,
                Some(h) => Creates::Held { first: h.new },
            },
            previous: t.previous,
            timing: self.timing(),
            now: t.now,
        };
        policy::step(&mut snap.ledger, &inputs, name)
    }

    /// Records a stored plan: its decisions, and the boots it measured (metrics, target mode).
    pub fn record_plan(&self, plan: &Plan, t: &TickInputs, now: Millis) {
        for e in &plan.events {
            if let Event::Seen { boot_ms, .. } = e {
                self.ops.metrics.boot(*boot_ms);
                self.capacity.boot(*boot_ms);
            }
        }
        let ctx = PlanContext {
            hold: t.hold.clone(),
            pool_size: t.pool.size,
        };
        for d in plan_decisions(plan, &ctx) {
            self.record(Record::new(now, d));
        }
        if plan.line.is_none() {
            let d = plan.launch;
            tracing::debug!(
                deficit = d.deficit,
                available = d.available,
                in_flight = d.in_flight,
                "launch 0"
            );
        }
    }
}
