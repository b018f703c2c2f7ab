//! Target mode inside `serve`: the `[capacity]` config section and the live sizing state the
//! control loop consults each tick (see docs/design.md, "Capacity that sizes itself").

use std::sync::Mutex;
use std::time::Duration;

use policy::capacity::{
    CapacityConfig, Demand, DemandSample, Profile, Schedule, ScheduleEntry, ScheduleError, Sizer,
    Sizing,
};
use policy::{Millis, Observation, Settings};
use serde::{Deserialize, Serialize};

use super::tz::{TzError, Zone};

/// How the spare floor is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Size it for `target_rejection` (the API's `min` is the floor).
    #[default]
    Target,
    /// Hold the API's `min` (the behaviour before target mode).
    Fixed,
}

/// `[capacity]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CapacitySection {
    /// `target` (default) or `fixed`.
    pub mode: Mode,
    /// Target rejection probability: `"0.5%"` or `"0.005"`.
    pub target_rejection: String,
    /// Time zone of the learned hour-of-week profile (an IANA name; default `UTC`).
    pub timezone: String,
    /// Boot time assumed until boots are measured.
    #[serde(with = "crate::duration")]
    pub default_boot: Duration,
    /// The short moving window of the arrival rate. Until it has been full since the first
    /// reading (after a start or a Jicofo outage), its arrivals count over its whole length.
    #[serde(with = "crate::duration")]
    pub short_window: Duration,
    /// jitsi-component-selector's `/metrics` URL (optional): its session starts answered 400
    /// (`unavailable.components`, no idle gateway) count as calls turned away.
    pub selector_metrics_url: Option<String>,
    /// A profile to start from when the store has none (`jitsi-scaler capacity seed` writes it).
    pub seed_profile: Option<std::path::PathBuf>,
    /// Operator schedules: at least `min` spares on these days and hours.
    pub schedule: Vec<ScheduleEntry>,
}

impl Default for CapacitySection {
    fn default() -> Self {
        CapacitySection {
            mode: Mode::Target,
            target_rejection: "0.5%".into(),
            timezone: "UTC".into(),
            default_boot: Duration::from_secs(120),
            short_window: Duration::from_millis(CapacityConfig::default().window_ms),
            selector_metrics_url: None,
            seed_profile: None,
            schedule: Vec::new(),
        }
    }
}

/// A `[capacity]` problem.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// `target_rejection` does not parse.
    #[error("capacity.target_rejection '{0}': expected a probability in (0, 1), e.g. \"0.5%\"")]
    Target(String),
    /// A schedule entry is wrong.
    #[error("capacity.schedule: {0}")]
    Schedule(#[from] ScheduleError),
    /// A zone cannot be loaded.
    #[error("capacity: {0}")]
    Tz(#[from] TzError),
    /// The seed profile cannot be read.
    #[error("capacity.seed_profile {path}: {why}")]
    Seed {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

impl CapacitySection {
    /// The target as a probability.
    pub fn target(&self) -> Result<f64, CapacityError> {
        crate::plan::parse_target(&self.target_rejection)
            .map_err(|_| CapacityError::Target(self.target_rejection.clone()))
    }

    /// Every problem (empty when valid); `max` bounds schedule entries.
    pub fn problems(&self, max: u32) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = self.target() {
            p.push(e.to_string());
        }
        if self.short_window < Duration::from_secs(1) {
            p.push("capacity.short_window: must be at least 1s".into());
        }
        if let Some(url) = &self.selector_metrics_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            p.push(format!(
                "capacity.selector_metrics_url: {url:?} is not an http(s) URL"
            ));
        }
        if let Err(e) = Zone::load(&self.timezone) {
            p.push(format!("capacity.timezone: {e}"));
        }
        match Schedule::new(self.schedule.clone(), max) {
            Ok(s) => {
                for z in s.zones() {
                    if let Err(e) = Zone::load(&z) {
                        p.push(format!("capacity.schedule: {e}"));
                    }
                }
            }
            Err(e) => p.push(format!("capacity.schedule: {e}")),
        }
        p
    }
}

/// What the store keeps for target mode (shared by replicas through the snapshot).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    /// The learned profile.
    pub profile: Option<Profile>,
    /// Schedules replaced through the API (win over the config's).
    pub schedule: Option<Vec<ScheduleEntry>>,
}

struct Inner {
    demand: Demand,
    sizer: Sizer,
    schedule: Schedule,
    zones: Vec<Zone>,
    last: Option<Sizing>,
    /// The part of the last tick's spare floor that is not the API's `min` (schedule, learned
    /// or held), so a changed `min` counts at once between ticks.
    above_floor: Option<u32>,
    completions: u32,
    /// Jicofo's SIP call counters of the reading being fed (merged over the shards).
    sip: crate::jicofo::SipCalls,
    /// The selector's last session-start counters, or why they could not be read.
    selector: Option<Result<super::selector::SessionStarts, String>>,
    /// The selector's refusals at its last successful read: kept through a failed read, so the
    /// sum with Jicofo's failures does not dip and then rise (a rise is a call turned away).
    selector_refused: Option<u64>,
    /// Profile changed since the store last got it.
    dirty: bool,
    hours_learned: f64,
}

/// The live sizing state of `serve`.
pub struct Live {
    mode: Mode,
    zone: Zone,
    inner: Mutex<Inner>,
}

/// One change of the effective min, for the decision log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    /// The previous effective min (`None` at the first tick).
    pub from: Option<u32>,
    /// The sizing that changed it.
    pub sizing: Sizing,
}

impl Live {
    /// Builds the state from the config (`tick` is also the Jicofo poll interval).
    pub fn new(section: &CapacitySection, tick: Duration, max: u32) -> Result<Live, CapacityError> {
        let target = section.target()?;
        let zone = Zone::load(&section.timezone)?;
        let schedule = Schedule::new(section.schedule.clone(), max)?;
        let zones = schedule
            .zones()
            .iter()
            .map(|z| Zone::load(z))
            .collect::<Result<Vec<_>, _>>()?;
        let seeded = section.seed_profile.is_some();
        let profile = match &section.seed_profile {
            None => Profile::default(),
            Some(path) => {
                let seed = || -> Result<Profile, String> {
                    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
                    let p: Profile = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    p.is_valid()
                        .then_some(p)
                        .ok_or_else(|| "not a valid profile".to_string())
                };
                seed().map_err(|why| CapacityError::Seed {
                    path: path.display().to_string(),
                    why,
                })?
            }
        };
        let tick_ms = tick.as_millis() as u64;
        let cfg = CapacityConfig {
            target,
            tick_ms,
            poll_ms: tick_ms,
            default_boot_ms: section.default_boot.as_millis() as u64,
            window_ms: crate::duration::millis(section.short_window),
            ..CapacityConfig::default()
        };
        Ok(Live {
            mode: section.mode,
            zone,
            inner: Mutex::new(Inner {
                hours_learned: profile.hours_learned(),
                demand: Demand::new(cfg, profile),
                sizer: Sizer::new(),
                schedule,
                zones,
                last: None,
                above_floor: None,
                completions: 0,
                sip: Default::default(),
                selector: None,
                selector_refused: None,
                // A seed goes to the store at the first tick (unless the store has more).
                dirty: seeded,
            }),
        })
    }

    /// Fixed mode with no schedule (the fallback when the section cannot be used).
    pub fn fixed() -> Live {
        Live {
            mode: Mode::Fixed,
            zone: Zone::utc(),
            inner: Mutex::new(Inner {
                demand: Demand::new(CapacityConfig::default(), Profile::default()),
                sizer: Sizer::new(),
                schedule: Schedule::default(),
                zones: Vec::new(),
                last: None,
                above_floor: None,
                completions: 0,
                sip: Default::default(),
                selector: None,
                selector_refused: None,
                dirty: false,
                hours_learned: 0.0,
            }),
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves plain data: keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the learned week's busiest hour needs in all (target mode, with a learned profile).
    pub fn peak_need(&self) -> Option<policy::capacity::PeakNeed> {
        if self.mode != Mode::Target {
            return None;
        }
        self.lock().demand.peak_need()
    }

    /// Warns when the learned week's busiest hour needs more gateways than `max` allows: the
    /// sizing will be capped then, and calls rejected.
    pub fn warn_if_capped(&self, max: u32) {
        if let Some(n) = self.peak_need().filter(|n| n.total() > max) {
            tracing::warn!(
                peak_per_hour = format!("{:.0}", n.rate_per_hour),
                busy = n.busy,
                spares = n.spares,
                max,
                "the learned busiest hour needs {} gateways ({} in calls + {} spares), more than max {max}: the spare floor will be capped then; raise max (POST /scaler/max or settings.max)",
                n.total(),
                n.busy,
                n.spares
            );
        }
    }

    /// Takes the stored profile and schedule (at start, and when another replica wrote them).
    /// A stored profile with less learning than ours is ignored, and so is any while this
    /// replica has learning not yet stored, unless `force` (at start: the store beats a seed
    /// file; on a follower: the leader's profile wins).
    pub fn load(&self, stored: Option<&Stored>, max: u32, force: bool) {
        let Some(s) = stored else { return };
        let mut i = self.lock();
        if let Some(p) = &s.profile
            && p.is_valid()
            && p.hours_learned() >= i.hours_learned
            && (force || !i.dirty)
            && p != i.demand.profile()
        {
            i.hours_learned = p.hours_learned();
            i.demand.set_profile(p.clone());
            i.dirty = false;
        }
        if let Some(entries) = &s.schedule
            && let Ok(sched) = Schedule::new(entries.clone(), max)
            && sched.entries() != i.schedule.entries()
        {
            let zones: Result<Vec<Zone>, _> = sched.zones().iter().map(|z| Zone::load(z)).collect();
            if let Ok(zones) = zones {
                i.schedule = sched;
                i.zones = zones;
            }
        }
    }

    /// What to store when the profile changed since the last call (`None`: nothing new).
    pub fn to_store(&self) -> Option<Profile> {
        let mut i = self.lock();
        if !i.dirty {
            return None;
        }
        i.dirty = false;
        Some(i.demand.profile().clone())
    }

    /// A finished call (the first `expired` request of a single-use gateway).
    pub fn completion(&self) {
        self.lock().completions += 1;
    }

    /// A measured boot lead.
    pub fn boot(&self, boot_ms: u64) {
        self.lock().demand.boot(boot_ms);
    }

    /// The lead of the path the next launches take (`None`: provisioning; see
    /// [`policy::sizing_lead`]).
    pub fn launch_lead(&self, lead: Option<policy::capacity::LaunchLead>) {
        self.lock().demand.set_launch_lead(lead);
    }

    /// Jicofo's SIP call counters to feed with the next reading: a rise of the failures, or
    /// calls pending, count as calls the pool turned away (the estimator's feedback).
    /// With the selector's session-start counters (when `selector_metrics_url` is set), its
    /// refusals are added to Jicofo's failures: both only grow, so a rise of the sum is a call
    /// turned away.
    pub fn sip_calls(
        &self,
        sip: crate::jicofo::SipCalls,
        selector: Option<Result<super::selector::SessionStarts, String>>,
    ) {
        let mut i = self.lock();
        if let Some(Ok(s)) = &selector {
            i.selector_refused = Some(s.refused);
        }
        let refused = i.selector_refused;
        i.sip = crate::jicofo::SipCalls {
            failures: match (sip.failures, refused) {
                (None, None) => None,
                (j, r) => Some(j.unwrap_or(0).saturating_add(r.unwrap_or(0))),
            },
            pending: sip.pending,
        };
        if let Some(Err(e)) = &selector
            && !matches!(&i.selector, Some(Err(prev)) if prev == e)
        {
            tracing::warn!(error = %e, "cannot read the component selector's metrics; sizing without its refusals");
        }
        if selector.is_some() {
            i.selector = selector;
        }
    }

    /// The settings to run the policy with now: `min` replaced by the effective min in target
    /// mode (and by the schedule in either mode). Feeds the reading to the estimator first.
    /// Returns the change of the effective min, if any.
    pub fn settings(
        &self,
        settings: &Settings,
        obs: Option<&Observation>,
        now: Millis,
    ) -> (Settings, Option<Change>) {
        let mut i = self.lock();
        let week = self.zone.week_ms(now);
        if let Some(o) = obs.filter(|o| o.taken_at + 1 >= now.saturating_sub(60_000)) {
            let completions = std::mem::take(&mut i.completions);
            let sip = i.sip;
            let before = i.demand.profile().clone();
            let moved_before = i.demand.realigned_hours();
            i.demand.observe(
                now,
                week,
                DemandSample {
                    busy: o.total.saturating_sub(o.available),
                    available: o.available,
                    completions,
                    failures: sip.failures,
                    pending: sip.pending,
                },
            );
            let moved = i.demand.realigned_hours() - moved_before;
            if moved != 0 {
                // Rare and worth knowing: the forecast changed for every hour of the week.
                tracing::info!(
                    hours = moved,
                    "capacity: demand runs {moved:+} h off the learned week; the learned week was moved to follow it"
                );
            }
            if *i.demand.profile() != before {
                i.dirty = true;
                i.hours_learned = i.demand.profile().hours_learned();
            }
        }
        let zones = i.zones.clone();
        let sched = i.schedule.at(|name| {
            zones
                .iter()
                .find(|z| z.name() == name)
                .map(|z| z.week_ms(now))
        });
        let floor = settings.min_available;
        let (eff, above, change) = match self.mode {
            Mode::Fixed => {
                let sched_min = sched.map_or(0, |s| s.min);
                (
                    floor.max(sched_min).min(settings.max_total),
                    sched_min,
                    None,
                )
            }
            Mode::Target => {
                let Inner { demand, sizer, .. } = &mut *i;
                let from = sizer.current();
                let s = sizer.size(demand, now, week, floor, sched, settings.max_total);
                i.last = Some(s);
                let change = (from != Some(s.effective_min)).then_some(Change { from, sizing: s });
                let above = if s.source == policy::capacity::Source::Floor {
                    0
                } else {
                    s.effective_min
                };
                (s.effective_min, above, change)
            }
        };
        i.above_floor = Some(above);
        (
            Settings {
                min_available: eff,
                ..*settings
            },
            change,
        )
    }

    /// The settings with the last tick's spare floor (between ticks, and inside a store write
    /// that may retry): its schedule or learned part with the API's `min` as it is now (a
    /// changed `min` counts at once), never above `max`.
    pub fn effective(&self, settings: &Settings) -> Settings {
        match self.lock().above_floor {
            Some(above) => Settings {
                min_available: above
                    .max(settings.min_available)
                    .min(settings.max_total.max(1)),
                ..*settings
            },
            None => *settings,
        }
    }

    /// The last sizing (status, metrics).
    pub fn last(&self) -> Option<Sizing> {
        self.lock().last
    }

    /// The schedule entries in force.
    pub fn schedule(&self) -> Vec<ScheduleEntry> {
        self.lock().schedule.entries().to_vec()
    }

    /// Replaces the schedule (checked; zones must load). Returns the entries to store.
    pub fn set_schedule(
        &self,
        entries: Vec<ScheduleEntry>,
        max: u32,
    ) -> Result<Vec<ScheduleEntry>, CapacityError> {
        let sched = Schedule::new(entries, max)?;
        let zones = sched
            .zones()
            .iter()
            .map(|z| Zone::load(z))
            .collect::<Result<Vec<_>, _>>()?;
        let mut i = self.lock();
        i.schedule = sched;
        i.zones = zones;
        Ok(i.schedule.entries().to_vec())
    }

    /// The status block (`/scaler/status`, the `status` command).
    pub fn status(&self) -> serde_json::Value {
        let i = self.lock();
        let p = i.demand.profile();
        serde_json::json!({
            "mode": self.mode,
            "target": i.demand.config().target,
            "timezone": self.zone.name(),
            "hours_learned": p.hours_learned(),
            "sizing": i.last,
            "schedule": i.schedule.entries(),
            "jicofo_sip_calls": i.sip,
            "selector": match &i.selector {
                None => serde_json::Value::Null,
                Some(Ok(s)) => serde_json::json!({"session_starts": s.asked, "refused": s.refused}),
                Some(Err(e)) => serde_json::json!({"error": e}),
            },
        })
    }
}

/// The decision line of a change of the effective min, with its numbers.
pub fn describe(from: Option<u32>, s: &Sizing) -> String {
    let what = match from {
        Some(f) => format!("effective min {f} -> {}", s.effective_min),
        None => format!("effective min {}", s.effective_min),
    };
    let why = format!(
        "source {}; floor {}, schedule {}, learned {} (without feedback {}); rate {:.1}/h (short window {}, profile peak {}, day scale {:.2}); lead {} s (mean {} s, {} path), offered load {:.2}; next hour {}; target {:.3} %, max {}",
        s.source.as_str(),
        s.floor,
        s.schedule.map_or("-".to_string(), |m| m.to_string()),
        s.learned,
        s.learned_without_feedback,
        s.rate.rate_per_hour,
        s.rate
            .short_per_hour
            .map_or("-".to_string(), |r| format!("{r:.1}/h")),
        s.rate
            .profile_peak_per_hour
            .map_or("-".to_string(), |r| format!("{r:.1}/h")),
        s.rate.day_scale,
        s.lead_ms / 1000,
        s.mean_lead_ms / 1000,
        s.lead_path,
        s.offered_load,
        s.next_hour_per_hour
            .map_or("-".to_string(), |r| format!("{r:.1}/h")),
        100.0 * s.target,
        s.max
    );
    format!("{what}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(min: u32) -> Settings {
        Settings {
            min_available: min,
            max_total: 80,
            bulk_max: 5,
        }
    }

    fn obs(now: Millis) -> Observation {
        Observation {
            total: 10,
            available: 10,
            taken_at: now,
        }
    }

    #[test]
    fn a_changed_floor_counts_at_once_and_a_schedule_holds_between_ticks() {
        let live = Live::new(&CapacitySection::default(), Duration::from_secs(15), 80)
            .unwrap_or_else(|e| panic!("{e}"));
        let (s, change) = live.settings(&settings(3), Some(&obs(1_000)), 1_000);
        assert_eq!(s.min_available, 3, "no demand: the floor");
        assert!(change.is_some_and(|c| c.from.is_none() && c.sizing.effective_min == 3));
        // The operator lowers `min`: a removal between ticks sees the new floor.
        assert_eq!(live.effective(&settings(1)).min_available, 1);
        let entries = vec![ScheduleEntry {
            days: "daily".into(),
            from: "00:00".into(),
            to: "24:00".into(),
            min: 6,
            tz: "UTC".into(),
            inhibit_scale_down: false,
        }];
        live.set_schedule(entries, 80)
            .unwrap_or_else(|e| panic!("{e}"));
        let (s, change) = live.settings(&settings(1), Some(&obs(16_000)), 16_000);
        assert_eq!(s.min_available, 6);
        assert!(change.is_some_and(|c| c.from == Some(3)));
        assert_eq!(live.effective(&settings(1)).min_available, 6);
        assert_eq!(live.effective(&settings(9)).min_available, 9);
        assert_eq!(
            live.last().map(|l| l.source),
            Some(policy::capacity::Source::Schedule)
        );
    }

    #[test]
    fn fixed_mode_holds_min_and_schedules_and_bad_sections_are_refused() {
        let section = CapacitySection {
            mode: Mode::Fixed,
            ..CapacitySection::default()
        };
        let live =
            Live::new(&section, Duration::from_secs(15), 80).unwrap_or_else(|e| panic!("{e}"));
        let (s, change) = live.settings(&settings(4), Some(&obs(1_000)), 1_000);
        assert_eq!((s.min_available, change), (4, None));
        assert!(live.last().is_none());
        let bad = CapacitySection {
            target_rejection: "150%".into(),
            ..CapacitySection::default()
        };
        assert!(!bad.problems(80).is_empty());
        assert!(Live::new(&bad, Duration::from_secs(15), 80).is_err());
        let bad = CapacitySection {
            timezone: "Nowhere/Atlantis".into(),
            ..CapacitySection::default()
        };
        assert!(
            bad.problems(80)
                .iter()
                .any(|p| p.contains("capacity.timezone"))
        );
    }
}
