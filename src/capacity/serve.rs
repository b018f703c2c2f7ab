//! Target mode's service operations that need the store (kept out of service.rs, issue 12).

use policy::capacity::ScheduleEntry;

use crate::service::{Service, ServiceError};

/// A schedule replacement that was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleRefused {
    /// The entries are wrong (a 400: nothing changed).
    #[error(transparent)]
    Invalid(#[from] super::CapacityError),
    /// The store did not take it (a 409: nothing changed).
    #[error(transparent)]
    Store(#[from] ServiceError),
}

impl Service {
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
        // Check first, so bad input changes nothing.
        policy::capacity::Schedule::new(entries.clone(), max)
            .map_err(super::CapacityError::from)?;
        for z in policy::capacity::Schedule::new(entries.clone(), max)
            .map_err(super::CapacityError::from)?
            .zones()
        {
            super::tz::Zone::load(&z).map_err(super::CapacityError::from)?;
        }
        let stored = entries.clone();
        self.mutate(None, |snap, _| {
            snap.capacity.get_or_insert_with(Default::default).schedule = Some(stored.clone());
        })
        .await?;
        let n = self.capacity.set_schedule(entries, max)?.len();
        self.record(Service::decision(
            "setting",
            None,
            "changed",
            format!("capacity schedule replaced: {n} entries"),
            Some(by),
        ));
        self.wake.notify_one();
        Ok(())
    }
}
