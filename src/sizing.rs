//! Target mode's service operations: the tick's sizing and the schedule API, on
//! top of `crate::capacity` (configuration and live state) and the service.

use policy::Millis;
use policy::capacity::ScheduleEntry;

use crate::decision::{Decision, Record};
use crate::ops::now_ms;
use crate::service::{Service, ServiceError};

use crate::capacity::CapacityError;
use crate::capacity::live::Change;

/// A schedule replacement that was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleRefused {
    /// The entries are wrong (a 400: nothing changed).
    #[error(transparent)]
    Invalid(#[from] CapacityError),
    /// The store did not take it (a 409: nothing changed).
    #[error(transparent)]
    Store(#[from] ServiceError),
}

impl Service {
    /// Once per tick on every replica: takes the stored profile and schedules (a follower
    /// always takes the leader's), then sizes the spare floor from the merged reading.
    pub async fn capacity_tick(&self, now: Millis, leader: bool) -> Option<Change> {
        // Warm pool: the lead of the path the next launch takes (a warm pool's starts).
        let pool = self.cfg.warm_pool.to_policy();
        let (stored, settings, lead) = self
            .store()
            .read(|s| {
                (
                    s.capacity.clone(),
                    s.settings,
                    policy::sizing_lead(&s.ledger, &pool),
                )
            })
            .await;
        self.capacity
            .load(stored.as_ref(), settings.max_total, !leader);
        self.capacity.launch_lead(lead);
        let merged = self.merged_now().await;
        let selector = match &self.cfg.capacity.selector_metrics_url {
            Some(url) => Some(
                crate::capacity::selector::read(url)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            None => None,
        };
        self.capacity.sip_calls(merged.sip, selector);
        self.capacity
            .settings(&settings, merged.observation.as_ref(), now)
            .1
    }

    /// The schedule entries in force.
    pub fn capacity_schedule(&self) -> Vec<ScheduleEntry> {
        self.capacity.schedule()
    }

    /// Replaces the schedule: checked against `max`, stored (replicas pick it up), then applied.
    pub async fn set_capacity_schedule(
        &self,
        entries: Vec<ScheduleEntry>,
        by: &str,
    ) -> Result<(), ScheduleRefused> {
        let max = self.settings().await.max_total;
        // Check first (entries and zones), so bad input changes nothing.
        let checked =
            policy::capacity::Schedule::new(entries.clone(), max).map_err(CapacityError::from)?;
        for z in checked.zones() {
            crate::capacity::tz::Zone::load(&z).map_err(CapacityError::from)?;
        }
        let stored = entries.clone();
        self.store()
            .apply(None, |snap, _| {
                snap.capacity.get_or_insert_with(Default::default).schedule = Some(stored.clone());
            })
            .await
            .map_err(ServiceError::from)?;
        let n = self.capacity.set_schedule(entries, max)?.len();
        self.record(Record::new(now_ms(), Decision::CapacitySchedule { entries: n }).by(by));
        self.wake();
        Ok(())
    }
}
