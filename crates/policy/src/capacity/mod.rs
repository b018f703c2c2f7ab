//! Capacity that sizes itself: the spare floor (`min`) recomputed each tick from a target
//! rejection rate, learned demand, the measured lead time and operator schedules.
//!
//! Effective min = max(floor (the API's `min`), schedule, learned), capped by `max`. The
//! learned part is the Erlang-B spare count, for the mean lead, of the largest forecast rate over
//! the coming mean lead: rising demand is met a lead time ahead. With a learned profile a lower
//! value is taken at once (the forecast window already keeps what the next lead needs); without
//! one, the rate is the short window's alone and a lower value is taken only once it has held
//! for a whole high-percentile lead (no flapping).

pub mod erlang;
pub mod estimate;
pub mod schedule;

use serde::Serialize;

pub use erlang::{MAX_SPARE, erlang_b, spare_needed};
pub use estimate::{
    CapacityConfig, Demand, DemandSample, LaunchLead, PeakNeed, Profile, RateEstimate, WEEK_HOURS,
    WORST_HOUR_FACTOR, spare_for_value,
};
pub use schedule::{Schedule, ScheduleEntry, ScheduleError, ScheduleNow, WEEK_MS, WeekMs};

use crate::Millis;

/// Which part decided the effective min.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The API's `min` (the floor never gone below).
    Floor,
    /// An active schedule entry.
    Schedule,
    /// The Erlang-B spare count for the learned demand.
    Learned,
    /// The learned count, raised by observed rejections.
    Feedback,
    /// Held at the previous value (without a profile a lower one has not lasted a lead window
    /// yet, or a schedule inhibits scale-down).
    Hold,
}

impl Source {
    /// Lower-case name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Floor => "floor",
            Source::Schedule => "schedule",
            Source::Learned => "learned",
            Source::Feedback => "feedback",
            Source::Hold => "hold",
        }
    }
}

/// One sizing, with the numbers behind it (for logs, status and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sizing {
    /// The spare floor to hold now.
    pub effective_min: u32,
    /// What decided it.
    pub source: Source,
    /// The API's `min`.
    pub floor: u32,
    /// The active schedule's min, if any.
    pub schedule: Option<u32>,
    /// The Erlang-B spare count for the forecast (before hold and cap).
    pub learned: u32,
    /// The same without the rejection feedback.
    pub learned_without_feedback: u32,
    /// The rate figures.
    pub rate: RateEstimate,
    /// Lead time (ms): high percentile of boots plus a tick and a poll; without a profile, how
    /// long a lower value must hold before it is taken.
    pub lead_ms: u64,
    /// Mean lead (ms): mean boot plus half a tick and half a poll; sets the offered load.
    pub mean_lead_ms: u64,
    /// Which launch path the lead was measured on: `create` (provisioning boots) or `start`
    /// (a warm pool's power-on starts).
    pub lead_path: &'static str,
    /// Offered load on the spare pool, rate x mean lead (erlangs).
    pub offered_load: f64,
    /// Forecast for the next hour (calls per hour), if a profile exists.
    pub next_hour_per_hour: Option<f64>,
    /// The `max` setting (the cap).
    pub max: u32,
    /// The target rejection.
    pub target: f64,
    /// Value of a rejected call in spare-hours that meets the target over the learned week
    /// (`None`: no profile yet, each moment is sized to the target on its own).
    pub spare_value: Option<f64>,
}

/// The sizing state carried from tick to tick: the previous effective min and how long a lower
/// one has been asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sizer {
    current: Option<u32>,
    lower_since: Option<Millis>,
}

impl Sizer {
    /// A sizer with no history.
    pub fn new() -> Sizer {
        Sizer::default()
    }

    /// The last effective min.
    pub fn current(&self) -> Option<u32> {
        self.current
    }

    /// Sizes the spare floor at `now` (`week`: local time in the week for the profile).
    pub fn size(
        &mut self,
        demand: &mut Demand,
        now: Millis,
        week: WeekMs,
        floor: u32,
        schedule: Option<ScheduleNow>,
        max: u32,
    ) -> Sizing {
        let cfg = *demand.config();
        let lead_ms = demand.lead_ms();
        let mean_lead_ms = demand.mean_lead_ms();
        // The forecast window is the mean lead: Erlang B's offered load already prices the
        // spread of the boots, and a high-percentile window paid for a rise twice.
        let rate = demand.sizing_rate(week, mean_lead_ms);
        let lead_h = mean_lead_ms as f64 / 3_600_000.0;
        let a = rate.rate_per_hour * lead_h;
        let target = cfg.target;
        let value = demand.spare_value();
        let spares = |a: f64, rate: f64| match value {
            Some(v) => spare_for_value(rate, a, v, target),
            None => spare_needed(a, target).unwrap_or(MAX_SPARE),
        };
        let fb = demand.feedback_at(week).max(1.0);
        let learned = spares(a, rate.rate_per_hour);
        let learned_without_feedback = spares(a / fb, rate.rate_per_hour / fb);
        let sched = schedule.map(|s| s.min);
        let mut want = floor.max(sched.unwrap_or(0)).max(learned).min(max);
        let mut source = if want == floor.min(max) && floor >= learned {
            Source::Floor
        } else if sched.is_some_and(|m| m >= learned && m.min(max) == want) {
            Source::Schedule
        } else if learned > learned_without_feedback {
            Source::Feedback
        } else {
            Source::Learned
        };
        let inhibit = schedule.is_some_and(|s| s.inhibit_scale_down);
        // With a learned profile the forecast window keeps what the next lead needs, and a
        // step the short window raised ends when it no longer sees the step: a fall is taken at
        // once. Without one the rate is the short window's alone, smoothed by the hold.
        let hold_falls = rate.profile_peak_per_hour.is_none();
        if let Some(cur) = self.current
            && want < cur
        {
            let since = *self.lower_since.get_or_insert(now);
            if inhibit || (hold_falls && now.saturating_sub(since) < lead_ms) {
                want = cur.min(max);
                source = Source::Hold;
            } else {
                self.lower_since = None;
            }
        } else {
            self.lower_since = None;
        }
        self.current = Some(want);
        Sizing {
            effective_min: want,
            source,
            floor,
            schedule: sched,
            learned,
            learned_without_feedback,
            rate,
            lead_ms,
            mean_lead_ms,
            lead_path: if demand.launch_lead().is_some() {
                "start"
            } else {
                "create"
            },
            offered_load: a,
            next_hour_per_hour: demand.forecast_at(week + 3_600_000),
            max,
            target,
            spare_value: value,
        }
    }
}

#[cfg(test)]
mod tests;
