//! Demand, learned online from what the scaler already sees: the busy count of each Jicofo
//! reading, the `expired` removals (a finished call on single-use gateways) and the measured
//! boot leads (launch -> first seen).
//!
//! Arrivals over an interval are `busy_end - busy_start + completions`. Single-use gateways
//! report every completion (their `expired` request), so that sum is the arrival count. With
//! reusable gateways completions are not seen; the busy change per minute is then a difference
//! of two Poisson counts (arrivals - completions), whose mean plus variance is twice the
//! arrivals (a Skellam moment estimate), unbiased without knowing the call duration.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::schedule::{WEEK_MS, WeekMs};
use crate::Millis;

const HOUR_MS: u64 = 3_600_000;
const MINUTE_MS: u64 = 60_000;
/// Hours in a week: the profile's bins.
pub const WEEK_HOURS: usize = 168;
/// Profile format version (stored with it).
pub const PROFILE_VERSION: u32 = 1;

/// Knobs of the estimator and the sizing (from `[capacity]`, or the simulator's flags).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityConfig {
    /// Target rejection probability (0.005 = 0.5 %).
    pub target: f64,
    /// Control-loop interval (part of the lead time: a decision waits up to one tick).
    pub tick_ms: u64,
    /// Jicofo poll interval (part of the lead time: a joined gateway is seen up to one poll late).
    pub poll_ms: u64,
    /// Boot time assumed until a few boots have been measured.
    pub default_boot_ms: u64,
    /// Short moving window of the arrival rate.
    pub window_ms: u64,
    /// Percentile of the measured boots used for the lead time.
    pub boot_percentile: f64,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            target: 0.005,
            tick_ms: 15_000,
            poll_ms: 15_000,
            default_boot_ms: 120_000,
            window_ms: 10 * MINUTE_MS,
            boot_percentile: 0.9,
        }
    }
}

/// The learned hour-of-week profile: serialisable, so the store keeps it across restarts and
/// replicas share it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Format version.
    pub version: u32,
    /// Mean arrivals per hour, per hour of the week (Monday 00-01 first, local time).
    pub rate: Vec<f64>,
    /// How many hours each bin has learned from (fractional: partly observed hours count less).
    pub weight: Vec<f64>,
    /// Multiplier raised by observed rejections in that hour (1: none).
    pub feedback: Vec<f64>,
    /// Busy gateway-milliseconds observed (decayed), for the mean call duration.
    pub busy_ms: f64,
    /// Arrivals observed over the same span (decayed).
    pub arrivals: f64,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            version: PROFILE_VERSION,
            rate: vec![0.0; WEEK_HOURS],
            weight: vec![0.0; WEEK_HOURS],
            feedback: vec![1.0; WEEK_HOURS],
            busy_ms: 0.0,
            arrivals: 0.0,
        }
    }
}

/// Weight of the newest hour once a bin has this many: a moving average over a few weeks.
const PROFILE_MEMORY: f64 = 4.0;
/// Weight given to the hour-of-day mean against one hour-of-week sample.
const DAY_PRIOR: f64 = 2.0;

impl Profile {
    /// Whether the stored vectors have the right shape (a foreign or corrupt blob does not).
    pub fn is_valid(&self) -> bool {
        self.version == PROFILE_VERSION
            && self.rate.len() == WEEK_HOURS
            && self.weight.len() == WEEK_HOURS
            && self.feedback.len() == WEEK_HOURS
            && self
                .rate
                .iter()
                .chain(&self.weight)
                .chain(&self.feedback)
                .all(|v| v.is_finite() && *v >= 0.0)
    }

    /// Hours learned in total.
    pub fn hours_learned(&self) -> f64 {
        self.weight.iter().sum()
    }

    /// Learns one hour: `rate` arrivals per hour in bin `hw`, observed for `coverage` of it.
    pub fn learn(&mut self, hw: usize, rate: f64, coverage: f64) {
        let hw = hw % WEEK_HOURS;
        if !(rate.is_finite() && rate >= 0.0 && coverage > 0.0) {
            return;
        }
        let w = self.weight[hw];
        let alpha = (coverage / (w + coverage)).max(coverage / PROFILE_MEMORY);
        self.rate[hw] += alpha * (rate - self.rate[hw]);
        self.weight[hw] = (w + coverage).min(PROFILE_MEMORY);
    }

    /// Adds busy time and arrivals for the mean call duration (slowly forgetting).
    pub fn learn_duration(&mut self, busy_ms: f64, arrivals: f64) {
        const KEEP: f64 = 0.995;
        self.busy_ms = self.busy_ms * KEEP + busy_ms;
        self.arrivals = self.arrivals * KEEP + arrivals;
    }

    /// Mean call duration, if enough calls were seen.
    pub fn mean_duration_ms(&self) -> Option<f64> {
        (self.arrivals >= 5.0).then(|| self.busy_ms / self.arrivals)
    }

    /// The expected rate (per hour) of bin `hw`: its own mean, pulled towards the mean of the
    /// same hour on the other days while it has few samples. `None` when nothing is learned.
    pub fn expected(&self, hw: usize) -> Option<f64> {
        let hw = hw % WEEK_HOURS;
        let h = hw % 24;
        let (mut sum, mut wsum) = (0.0, 0.0);
        for d in 0..7 {
            let b = d * 24 + h;
            sum += self.rate[b] * self.weight[b];
            wsum += self.weight[b];
        }
        if wsum <= 0.0 {
            return None;
        }
        let day = sum / wsum;
        let w = self.weight[hw];
        let prior = DAY_PRIOR.min(wsum - w);
        let mean = if w + prior > 0.0 {
            (self.rate[hw] * w + day * prior) / (w + prior)
        } else {
            day
        };
        Some(mean)
    }

    /// The expected rate at a point of the week, interpolated between hour centres, times each
    /// hour's feedback multiplier.
    pub fn expected_at(&self, week: WeekMs) -> Option<f64> {
        let w = week % WEEK_MS;
        let pos = (w as f64 / HOUR_MS as f64) - 0.5;
        let lo = pos.floor();
        let frac = pos - lo;
        let lo_bin = (lo as i64).rem_euclid(WEEK_HOURS as i64) as usize;
        let hi_bin = (lo_bin + 1) % WEEK_HOURS;
        let fb = |b: usize| self.expected(b).map(|r| r * self.feedback[b]);
        match (fb(lo_bin), fb(hi_bin)) {
            (Some(a), Some(b)) => Some(a + (b - a) * frac),
            (a, b) => a.or(b),
        }
    }

    /// Moves the learned week `hours` later (negative: earlier): bin `h` takes what bin
    /// `h - hours` held, for a pattern that now runs that much later.
    pub fn rotate(&mut self, hours: i64) {
        let k = hours.rem_euclid(WEEK_HOURS as i64) as usize;
        self.rate.rotate_right(k);
        self.weight.rotate_right(k);
        self.feedback.rotate_right(k);
    }

    /// Raises (rejections seen) or relaxes (none) bin `hw`'s feedback multiplier.
    pub fn feedback_hour(&mut self, hw: usize, rejected: bool) {
        let f = &mut self.feedback[hw % WEEK_HOURS];
        *f = if rejected {
            (*f * 1.15).min(2.0)
        } else {
            1.0 + (*f - 1.0) * 0.9
        };
    }
}

/// One reading as the estimator needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DemandSample {
    /// Gateways in a call (Jicofo's total minus available).
    pub busy: u32,
    /// Healthy idle gateways.
    pub available: u32,
    /// Calls finished since the previous sample (first `expired` requests of single-use gateways).
    pub completions: u32,
    /// A failure counter (Jicofo's SIP call failures) if known: a rise is a rejection.
    pub failures: Option<u64>,
    /// Calls waiting for a gateway (Jicofo's pending SIP calls), if known: any is a call the
    /// pool could not take at once, counted like a rejection.
    pub pending: Option<u32>,
}

/// Accumulates the hour in progress.
#[derive(Clone, Debug, Default)]
struct HourAcc {
    hw: Option<usize>,
    x: f64,
    minutes: Vec<f64>,
    completions: f64,
    drops: f64,
    busy_ms: f64,
    observed_ms: u64,
    ticks: u32,
    zero_ticks: u32,
}

/// The online demand estimator.
#[derive(Clone, Debug)]
pub struct Demand {
    cfg: CapacityConfig,
    profile: Profile,
    last: Option<(Millis, u32, Option<u64>)>,
    /// (time, x = busy change + completions, busy) per sample in the short window.
    recent: VecDeque<(Millis, f64, u32)>,
    /// When the short window last started from nothing (the first reading after a start or an
    /// outage: a baseline, whatever is busy then is not an arrival).
    baseline_at: Option<Millis>,
    hour: HourAcc,
    /// Completed hours: (observed arrivals, profile's expectation before learning them, hour
    /// of the week, share observed).
    trail: VecDeque<(f64, f64, usize, f64)>,
    /// The last completed hours as learned, newest last (the shift test and its undo).
    journal: VecDeque<Learned>,
    /// Today's observed and expected arrivals so far (local day of the week, 0 = Monday).
    today: (usize, f64, f64),
    /// Consecutive days (today included once it is off) whose level was far off the profile,
    /// and in which direction (-1 below, 1 above).
    off_days: (u32, i8),
    /// Hours the learned week has been moved by (the sum of the re-alignments).
    realigned_hours: i64,
    boots: VecDeque<u64>,
    /// The lead of the path launches take now when it is not provisioning (a warm pool's
    /// measured power-on starts), set each tick by [`Demand::set_launch_lead`].
    launch_lead: Option<LaunchLead>,
    /// Decayed evidence that completions are reported (single-use) vs busy drops.
    completions_seen: f64,
    drops_seen: f64,
    /// Cached [`Demand::spare_value`] (recomputed when the profile changes).
    value: Option<Option<f64>>,
}

/// What the learned week's busiest hour needs ([`Demand::peak_need`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PeakNeed {
    /// The busiest hour's expected arrivals per hour.
    pub rate_per_hour: f64,
    /// Gateways in a call then.
    pub busy: u32,
    /// Spares (ready or booting) sized to the target then.
    pub spares: u32,
}

impl PeakNeed {
    /// Gateways needed in all at the peak.
    pub fn total(&self) -> u32 {
        self.busy.saturating_add(self.spares)
    }
}

/// A measured launch lead other than the provisioning boots' (a warm pool's starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchLead {
    /// Mean lead (ms), launch -> seen in Jicofo.
    pub mean_ms: u64,
    /// A high estimate (ms), for how far ahead to look.
    pub high_ms: u64,
}

/// Largest pattern shift (hours, either way) the re-alignment looks for.
const MAX_LAG: usize = 6;
/// Completed hours the shift test weighs (a day: every hour of the daily shape votes).
const LAG_WINDOW: usize = 24;
/// Fewest completed hours since a shift began for the shift test to look at it.
const LAG_MIN_HOURS: usize = 12;
/// Log-likelihood gain (nats) a shifted week must have over the unshifted one, plus
/// [`LAG_GAIN_PER_CALL`] per call in the window: far beyond what bin noise gives.
const LAG_MIN_GAIN: f64 = 15.0;
/// See [`LAG_MIN_GAIN`].
const LAG_GAIN_PER_CALL: f64 = 0.02;
/// Log-likelihood (nats) by which the chosen lag must beat every other lag.
const LAG_SEPARATION: f64 = 10.0;
/// Expected calls below which an hour counts as this many (an empty bin is not impossible).
const LAG_FLOOR: f64 = 0.05;
/// A day whose calls so far are below 1 / this or above this times the profile's is off.
const OFF_DAY_RATIO: f64 = 2.0;
/// Weight an off day's hours are learned with (a holiday must not halve next week's forecast).
const OFF_DAY_WEIGHT: f64 = 0.25;
/// From this many consecutive off days in one direction on, the level is taken as a change.
const OFF_DAYS_CHANGE: u32 = 3;
/// Calls of prior in today's level (a quiet night says little).
const DAY_LEVEL_PRIOR: f64 = 20.0;

/// One completed hour as learned.
#[derive(Clone, Debug)]
struct Learned {
    hw: usize,
    /// Arrivals observed.
    arrivals: f64,
    /// The rate and the share of the hour observed.
    rate: f64,
    coverage: f64,
    /// The bin's rate and weight before (to undo it).
    before: (f64, f64),
    /// The profile's expected arrivals for the hour with the week moved by each lag
    /// (`-MAX_LAG..=MAX_LAG` hours), before learning.
    lagged: [f64; 2 * MAX_LAG + 1],
}

/// Completed hours kept for the day scale.
const TRAIL_HOURS: usize = 4;
/// Calls of prior in the day scale (shrinks it towards 1 with little data).
const SCALE_PRIOR: f64 = 10.0;
/// Measured boots kept for the lead percentile.
const BOOTS_KEPT: usize = 64;
/// A gap between samples longer than this is an outage, not an interval to learn from.
const MAX_GAP_MS: u64 = 2 * MINUTE_MS;

impl Demand {
    /// A fresh estimator on a learned (or empty) profile.
    pub fn new(cfg: CapacityConfig, profile: Profile) -> Demand {
        Demand {
            cfg,
            profile: if profile.is_valid() {
                profile
            } else {
                Profile::default()
            },
            last: None,
            recent: VecDeque::new(),
            baseline_at: None,
            hour: HourAcc::default(),
            trail: VecDeque::new(),
            journal: VecDeque::new(),
            today: (usize::MAX, 0.0, 0.0),
            off_days: (0, 0),
            realigned_hours: 0,
            boots: VecDeque::new(),
            launch_lead: None,
            completions_seen: 0.0,
            drops_seen: 0.0,
            value: None,
        }
    }

    /// The knobs.
    pub fn config(&self) -> &CapacityConfig {
        &self.cfg
    }

    /// The learned profile (to store it).
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Replaces the profile (another replica stored a newer one); ignored if invalid.
    pub fn set_profile(&mut self, p: Profile) {
        if p.is_valid() {
            self.profile = p;
            // The journal's undo values belong to the replaced profile.
            self.journal.clear();
            self.value = None;
        }
    }

    /// A measured boot lead (launch -> first seen in Jicofo).
    pub fn boot(&mut self, boot_ms: u64) {
        self.boots.push_back(boot_ms);
        while self.boots.len() > BOOTS_KEPT {
            self.boots.pop_front();
        }
    }

    /// Sets the lead of the path the next launches take (`None`: provisioning, the measured
    /// boots). A warm pool's starts take seconds where a create takes minutes, and the spares
    /// only have to cover the calls that arrive during the lead of the path actually taken.
    pub fn set_launch_lead(&mut self, lead: Option<LaunchLead>) {
        // The week's spare value depends on the mean lead: recompute it when the path changes
        // or its mean moves by more than a quarter (not on every new sample).
        let moved = match (self.launch_lead, lead) {
            (None, None) => false,
            (Some(a), Some(b)) => a.mean_ms.abs_diff(b.mean_ms) * 4 > a.mean_ms.max(1),
            _ => true,
        };
        if moved {
            self.value = None;
        }
        self.launch_lead = lead;
    }

    /// The lead set by [`Demand::set_launch_lead`], if any.
    pub fn launch_lead(&self) -> Option<LaunchLead> {
        self.launch_lead
    }

    /// Whether completions are being reported (single-use gateways).
    fn single_use(&self) -> bool {
        self.completions_seen >= 0.5 * self.drops_seen && self.completions_seen > 0.0
    }

    /// Feeds one reading taken at `now` (`week`: local time in the week).
    pub fn observe(&mut self, now: Millis, week: WeekMs, s: DemandSample) {
        let hw = ((week % WEEK_MS) / HOUR_MS) as usize;
        if self.hour.hw != Some(hw) {
            self.close_hour();
            self.hour = HourAcc {
                hw: Some(hw),
                minutes: vec![0.0; 60],
                ..HourAcc::default()
            };
        }
        let failed = match (self.last.and_then(|l| l.2), s.failures) {
            (Some(a), Some(b)) => b > a,
            _ => false,
        } || s.pending.is_some_and(|p| p > 0);
        self.hour.ticks += 1;
        if s.available == 0 || failed {
            self.hour.zero_ticks += 1;
        }
        if let Some((t0, b0, _)) = self.last.filter(|l| now > l.0 && now - l.0 <= MAX_GAP_MS) {
            let dt = now - t0;
            let x = f64::from(s.busy) - f64::from(b0) + f64::from(s.completions);
            let minute = (((week % HOUR_MS) / MINUTE_MS) as usize).min(59);
            let h = &mut self.hour;
            h.x += x;
            h.minutes[minute] += x;
            h.completions += f64::from(s.completions);
            h.drops += f64::from(b0.saturating_sub(s.busy));
            h.busy_ms += f64::from(b0) * dt as f64;
            h.observed_ms += dt;
            self.recent.push_back((now, x, s.busy));
        } else {
            self.recent.clear();
            self.recent.push_back((now, 0.0, s.busy));
            self.baseline_at = Some(now);
        }
        while self
            .recent
            .front()
            .is_some_and(|&(t, ..)| t + self.cfg.window_ms < now)
        {
            self.recent.pop_front();
        }
        self.last = Some((now, s.busy, s.failures.or(self.last.and_then(|l| l.2))));
    }

    /// Arrivals of the hour in progress, by the estimate that fits the gateways' kind.
    fn hour_arrivals(&self, h: &HourAcc) -> f64 {
        if self.single_use() || h.completions >= 0.5 * h.drops && h.completions > 0.0 {
            return h.x.max(0.0);
        }
        let covered = (h.observed_ms as f64 / MINUTE_MS as f64).clamp(1.0, 60.0);
        let used: Vec<f64> = h.minutes.clone();
        let n = used.len() as f64;
        let mean = used.iter().sum::<f64>() / n;
        let var = used.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (((mean + var) / 2.0) * covered).max(h.x).max(0.0)
    }

    fn close_hour(&mut self) {
        let h = std::mem::take(&mut self.hour);
        let Some(hw) = h.hw else { return };
        self.completions_seen = self.completions_seen * 0.9 + h.completions;
        self.drops_seen = self.drops_seen * 0.9 + h.drops;
        let coverage = h.observed_ms as f64 / HOUR_MS as f64;
        if coverage < 0.25 {
            return;
        }
        let arrivals = self.hour_arrivals(&h);
        let rate = arrivals / coverage;
        let expected = self.profile.expected(hw).unwrap_or(rate);
        self.trail
            .push_back((arrivals, expected * coverage, hw, coverage));
        while self.trail.len() > TRAIL_HOURS {
            self.trail.pop_front();
        }
        // Rejections: the share of readings with no spare (by PASTA, the share of arrivals
        // that found none) above the target, or the failure counter rising.
        let zero_share = f64::from(h.zero_ticks) / f64::from(h.ticks.max(1));
        let rejected = h.zero_ticks >= 2 && zero_share > 2.0 * self.cfg.target;
        self.profile.feedback_hour(hw, rejected);
        let learn_cov = coverage * self.day_weight(hw, arrivals, expected * coverage);
        let lagged = self.lagged(hw, coverage);
        let before = (self.profile.rate[hw], self.profile.weight[hw]);
        self.profile.learn(hw, rate, learn_cov);
        self.profile.learn_duration(h.busy_ms, arrivals);
        if let Some(lagged) = lagged {
            self.journal.push_back(Learned {
                hw,
                arrivals,
                rate,
                coverage,
                before,
                lagged,
            });
            while self.journal.len() > LAG_WINDOW {
                self.journal.pop_front();
            }
            self.realign();
        }
        self.value = None;
    }

    /// The profile's expected arrivals in hour `hw` (observed for `coverage`) were the week
    /// moved by each lag; `None` before anything is learned. The week is taken as it was before
    /// the journal's hours were learned: a bin learned an hour ago would otherwise predict
    /// this hour with this hour's own news (a step would look like a shift).
    fn lagged(&self, hw: usize, coverage: f64) -> Option<[f64; 2 * MAX_LAG + 1]> {
        let mut old = self.profile.clone();
        for e in self.journal.iter().rev() {
            old.rate[e.hw] = e.before.0;
            old.weight[e.hw] = e.before.1;
        }
        let mut out = [0.0; 2 * MAX_LAG + 1];
        for (i, o) in out.iter_mut().enumerate() {
            let b = (hw + WEEK_HOURS + MAX_LAG - i) % WEEK_HOURS;
            *o = (old.expected(b)? * coverage).max(LAG_FLOOR);
        }
        Some(out)
    }

    /// The weight to learn this hour with: full, or [`OFF_DAY_WEIGHT`] on a day whose level
    /// so far is far off the profile (a holiday, a one-off event) unless days like it have
    /// lasted long enough to be the new level.
    fn day_weight(&mut self, hw: usize, arrivals: f64, expected: f64) -> f64 {
        let day = hw / 24;
        let off = |obs: f64, exp: f64| -> i8 {
            let r = (obs + DAY_LEVEL_PRIOR) / (exp + DAY_LEVEL_PRIOR);
            if r > OFF_DAY_RATIO {
                1
            } else if r * OFF_DAY_RATIO < 1.0 {
                -1
            } else {
                0
            }
        };
        if self.today.0 != day {
            // Yesterday ends: a run of off days goes on only in the same direction.
            let dir = off(self.today.1, self.today.2);
            self.off_days = match dir {
                0 => (0, 0),
                d if d == self.off_days.1 => (self.off_days.0 + 1, d),
                d => (1, d),
            };
            self.today = (day, 0.0, 0.0);
        }
        self.today.1 += arrivals;
        self.today.2 += expected;
        let dir = off(self.today.1, self.today.2);
        if dir == 0 {
            return 1.0;
        }
        // Days so far in this direction, today included.
        let run = if dir == self.off_days.1 {
            self.off_days.0 + 1
        } else {
            1
        };
        if run >= OFF_DAYS_CHANGE {
            1.0
        } else {
            OFF_DAY_WEIGHT
        }
    }

    /// Moves the learned week when the last day fits it far better moved by a few hours (a
    /// shifted pattern): every day votes, so a shift is followed within a day, not the weeks
    /// each hour-of-week bin would take to relearn once a week. The hours learned since the
    /// shift began are undone, the week is moved, and they are learned again into it.
    fn realign(&mut self) {
        if self.journal.len() < LAG_MIN_HOURS {
            return;
        }
        // Multinomial log-likelihood of where each local day's calls fell among its hours, for
        // each lag: level-free, so a busy or quiet day (or a day level the week has wrong)
        // favours no lag.
        let score = |from: usize, lag: usize| -> (f64, f64) {
            let (mut total, mut calls) = (0.0, 0.0);
            let (mut s, mut p, mut o) = (0.0, 0.0, 0.0);
            let mut day = None;
            let mut close = |s: f64, p: f64, o: f64| {
                if o > 0.0 {
                    total += s - o * p.ln();
                    calls += o;
                }
            };
            for e in self.journal.iter().skip(from) {
                if day != Some(e.hw / 24) {
                    close(s, p, o);
                    (s, p, o) = (0.0, 0.0, 0.0);
                    day = Some(e.hw / 24);
                }
                s += e.arrivals * e.lagged[lag].ln();
                p += e.lagged[lag];
                o += e.arrivals;
            }
            close(s, p, o);
            (total, calls)
        };
        // Each lag's best onset (the shift began within the window; the hours before it favour
        // the old week): its gain over the old week from there, less a threshold. The best lag
        // must clear it and beat every other lag clearly (a few hours can fit several).
        let mut fits: Vec<(usize, usize, f64)> = (0..=2 * MAX_LAG)
            .filter(|&l| l != MAX_LAG)
            .filter_map(|lag| {
                (0..=self.journal.len() - LAG_MIN_HOURS)
                    .map(|from| {
                        let (base, calls) = score(from, MAX_LAG);
                        let need = LAG_MIN_GAIN + LAG_GAIN_PER_CALL * calls;
                        (lag, from, score(from, lag).0 - base - need)
                    })
                    .max_by(|a, b| a.2.total_cmp(&b.2))
            })
            .collect();
        fits.sort_by(|a, b| b.2.total_cmp(&a.2));
        let best = fits
            .first()
            .copied()
            .filter(|b| b.2 > 0.0 && fits.get(1).is_none_or(|s| b.2 - s.2 > LAG_SEPARATION));
        let Some((lag, from, _)) = best else {
            return;
        };
        let shifted: Vec<Learned> = self.journal.drain(..).skip(from).collect();
        for e in shifted.iter().rev() {
            self.profile.rate[e.hw] = e.before.0;
            self.profile.weight[e.hw] = e.before.1;
        }
        let hours = lag as i64 - MAX_LAG as i64;
        self.profile.rotate(hours);
        // The day scale compares the last hours with the moved week, as if it had been in
        // force then.
        for t in &mut self.trail {
            if let Some(e) = self.profile.expected(t.2) {
                t.1 = e * t.3;
            }
        }
        // Learned again at full weight: they looked off only against the unshifted week.
        for e in &shifted {
            self.profile.learn(e.hw, e.rate, e.coverage);
            if e.hw / 24 == self.today.0 {
                self.today.2 += e.lagged[lag] - e.lagged[MAX_LAG];
            }
        }
        self.realigned_hours += hours;
        self.value = None;
    }

    /// Hours the learned week has been moved by since this estimator started (positive:
    /// demand runs later than it was learned).
    pub fn realigned_hours(&self) -> i64 {
        self.realigned_hours
    }

    /// Seeds the profile with one fully observed hour (from a call trace).
    pub fn seed_hour(&mut self, week: WeekMs, arrivals: f64, busy_ms: f64) {
        let hw = ((week % WEEK_MS) / HOUR_MS) as usize;
        self.profile.learn(hw, arrivals, 1.0);
        self.profile.learn_duration(busy_ms, arrivals);
        self.value = None;
    }

    /// The value of a rejected call in spare-hours (a Lagrange multiplier) that meets the target
    /// over the learned week: with `k_h` the spare count where one more spare would save fewer
    /// than `1 / value` calls per hour, the week's call-weighted rejection is at most the
    /// target. Per-hour sizing to the target over-delivers (a whole spare per hour overshoots);
    /// this puts spares where they save the most calls. `None` without a profile.
    pub fn spare_value(&mut self) -> Option<f64> {
        if let Some(v) = self.value {
            return v;
        }
        let lead_h = self.mean_lead_ms() as f64 / HOUR_MS as f64;
        let rates: Vec<f64> = (0..WEEK_HOURS)
            .filter_map(|hw| {
                self.profile
                    .expected(hw)
                    .map(|r| r * self.profile.feedback[hw])
            })
            .collect();
        let total: f64 = rates.iter().sum();
        let v = if rates.is_empty() || total <= 0.0 {
            None
        } else {
            let rejected = |value: f64| -> f64 {
                rates
                    .iter()
                    .map(|&r| {
                        let k = spare_for_value(r, r * lead_h, value, self.cfg.target);
                        r * super::erlang_b(k, r * lead_h)
                    })
                    .sum::<f64>()
            };
            // Rejection falls as the value rises: bisect on a log scale.
            let (mut lo, mut hi) = (0.0f64, 12.0f64);
            for _ in 0..40 {
                let mid = (lo + hi) / 2.0;
                if rejected(10f64.powf(mid)) <= self.cfg.target * total {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            Some(10f64.powf(hi))
        };
        self.value = Some(v);
        v
    }

    /// The time the short window's arrivals are spread over: its span once the window has
    /// been full since the last baseline, its whole length before. A jump right after a start
    /// or an outage is evidence of a few calls, not of a rate of thousands an hour: it counts
    /// as that many calls in one window.
    fn short_span_ms(&self) -> Option<u64> {
        let (t0, t1) = (self.recent.front()?.0, self.recent.back()?.0);
        if t1 <= t0 {
            return None;
        }
        let young = self
            .baseline_at
            .is_some_and(|b| t1.saturating_sub(b) < self.cfg.window_ms);
        Some(if young { self.cfg.window_ms } else { t1 - t0 })
    }

    /// Arrivals per hour over the short window (`None` before two samples).
    pub fn short_rate(&self) -> Option<f64> {
        let (&(_, _, b0), &(_, _, b1)) = (self.recent.front()?, self.recent.back()?);
        let span_h = self.short_span_ms()? as f64 / HOUR_MS as f64;
        let sum: f64 = self.recent.iter().skip(1).map(|r| r.1).sum();
        if self.single_use() || self.hour.completions > 0.0 {
            return Some(sum.max(0.0) / span_h);
        }
        // Reusable gateways: Little's law plus the growth of the busy count; before the mean
        // duration is known, the growth alone (arrivals are at least the net growth).
        let Some(d) = self.profile.mean_duration_ms() else {
            return Some(sum.max(0.0) / span_h);
        };
        let mean_busy =
            self.recent.iter().map(|r| f64::from(r.2)).sum::<f64>() / self.recent.len() as f64;
        let growth = (f64::from(b1) - f64::from(b0)) / span_h;
        Some((mean_busy * HOUR_MS as f64 / d + growth).max(0.0))
    }

    /// How far today runs above or below the profile (observed / expected over the last hours,
    /// shrunk towards 1 with few calls).
    pub fn day_scale(&self) -> f64 {
        let (mut obs, mut exp) = self
            .trail
            .iter()
            .fold((0.0, 0.0), |(o, e), t| (o + t.0, e + t.1));
        if let Some(hw) = self.hour.hw
            && self.hour.observed_ms >= 10 * MINUTE_MS
        {
            let cov = self.hour.observed_ms as f64 / HOUR_MS as f64;
            if let Some(e) = self.profile.expected(hw) {
                obs += self.hour_arrivals(&self.hour);
                exp += e * cov;
            }
        }
        ((obs + SCALE_PRIOR) / (exp + SCALE_PRIOR)).clamp(0.2, 5.0)
    }

    /// The lead time: a high percentile of measured boots (or the launch path's high estimate),
    /// plus one tick and one poll.
    pub fn lead_ms(&self) -> u64 {
        if let Some(l) = self.launch_lead {
            return l.high_ms + self.cfg.tick_ms + self.cfg.poll_ms;
        }
        let boot = if self.boots.len() < 3 {
            self.cfg.default_boot_ms
        } else {
            let mut v: Vec<u64> = self.boots.iter().copied().collect();
            v.sort_unstable();
            let i = ((v.len() as f64 - 1.0) * self.cfg.boot_percentile).round() as usize;
            v[i.min(v.len() - 1)]
        };
        boot + self.cfg.tick_ms + self.cfg.poll_ms
    }

    /// The mean replacement lead: mean measured boot plus half a tick and half a poll (the mean
    /// waits). Erlang B depends on the lead only through its mean (insensitivity), so this sets
    /// the offered load; the high-percentile [`Demand::lead_ms`] sets how far ahead to look.
    pub fn mean_lead_ms(&self) -> u64 {
        if let Some(l) = self.launch_lead {
            return l.mean_ms + (self.cfg.tick_ms + self.cfg.poll_ms) / 2;
        }
        let boot = if self.boots.len() < 3 {
            self.cfg.default_boot_ms
        } else {
            self.boots.iter().sum::<u64>() / self.boots.len() as u64
        };
        boot + (self.cfg.tick_ms + self.cfg.poll_ms) / 2
    }

    /// Calls observed in the short window and its span (for the significance test).
    fn short_counts(&self) -> Option<(f64, f64)> {
        let r = self.short_rate()?;
        let span_h = self.short_span_ms()? as f64 / HOUR_MS as f64;
        Some((r * span_h, span_h))
    }

    /// The forecast arrival rate (per hour) at local week time `week`.
    pub fn forecast_at(&self, week: WeekMs) -> Option<f64> {
        self.profile.expected_at(week).map(|r| r * self.day_scale())
    }

    /// The rate to size for now: the largest forecast over the coming `lead_ms`, raised to
    /// the short-window rate when that is significantly higher (a step the profile does not
    /// know), and the short-window rate alone without a profile.
    pub fn sizing_rate(&self, week: WeekMs, lead_ms: u64) -> RateEstimate {
        let short = self.short_rate();
        let mut knots = vec![week, week + lead_ms];
        let first_centre = (week / HOUR_MS) * HOUR_MS + HOUR_MS / 2;
        let mut c = first_centre;
        while c < week + lead_ms {
            if c > week {
                knots.push(c);
            }
            c += HOUR_MS;
        }
        let profile_peak = knots
            .iter()
            .filter_map(|&k| self.forecast_at(k))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let rate = match (profile_peak, self.short_counts()) {
            (Some(p), Some((n, span_h))) => {
                // Poisson: more calls than the forecast explains (about 2.3 sigma).
                let expected = p * span_h;
                if n > expected + 2.3 * expected.sqrt() + 1.0 {
                    p.max(n / span_h)
                } else {
                    p
                }
            }
            (Some(p), None) => p,
            (None, _) => {
                // Nothing learned yet: the short window and the hour in progress, the higher.
                let hour = (self.hour.observed_ms >= 10 * MINUTE_MS).then(|| {
                    self.hour_arrivals(&self.hour) * HOUR_MS as f64 / self.hour.observed_ms as f64
                });
                short.unwrap_or(0.0).max(hour.unwrap_or(0.0))
            }
        };
        RateEstimate {
            rate_per_hour: rate,
            short_per_hour: short,
            profile_peak_per_hour: profile_peak,
            day_scale: self.day_scale(),
            mean_duration_ms: self.profile.mean_duration_ms(),
        }
    }

    /// What the learned week's busiest hour needs in all: its rate (per hour), the gateways
    /// in a call then (rate x mean duration) and the spares sized to the target for the mean
    /// lead (booting replacements included, as in Erlang B). `None` before a profile and a
    /// mean duration are learned.
    pub fn peak_need(&self) -> Option<PeakNeed> {
        let duration_ms = self.profile.mean_duration_ms()?;
        let rate = (0..WEEK_HOURS)
            .filter_map(|hw| self.profile.expected(hw))
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))?;
        let a = rate * self.mean_lead_ms() as f64 / HOUR_MS as f64;
        let spares = super::spare_needed(a, self.cfg.target)?;
        let busy = (rate * duration_ms / HOUR_MS as f64).ceil() as u32;
        Some(PeakNeed {
            rate_per_hour: rate,
            busy,
            spares,
        })
    }

    /// The feedback multiplier of the hour at `week`.
    pub fn feedback_at(&self, week: WeekMs) -> f64 {
        self.profile.feedback[((week % WEEK_MS) / HOUR_MS) as usize]
    }
}

/// Never let one hour's designed rejection exceed this multiple of the target (the worst hour
/// stays bounded even where spares are dear).
pub const WORST_HOUR_FACTOR: f64 = 4.0;

/// The spare count for rate `rate` (per hour) and offered load `a` when a rejected call is
/// worth `value` spare-hours: add spares while one more saves at least `1 / value` calls per
/// hour, and at least as many as keep this hour's rejection within
/// [`WORST_HOUR_FACTOR`] x `target`.
pub fn spare_for_value(rate: f64, a: f64, value: f64, target: f64) -> u32 {
    let floor = super::spare_needed(a, WORST_HOUR_FACTOR * target).unwrap_or(super::MAX_SPARE);
    let mut k = 0u32;
    let mut b = 1.0;
    while k < super::MAX_SPARE {
        let next = a * b / (f64::from(k + 1) + a * b);
        if value * rate * (b - next) < 1.0 {
            break;
        }
        b = next;
        k += 1;
    }
    k.max(floor)
}

/// The arrival-rate figures behind one sizing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RateEstimate {
    /// The rate sized for (calls per hour).
    pub rate_per_hour: f64,
    /// The short moving window's rate.
    pub short_per_hour: Option<f64>,
    /// The profile's largest forecast over the coming mean lead (times the day scale).
    pub profile_peak_per_hour: Option<f64>,
    /// Today against the profile.
    pub day_scale: f64,
    /// Mean call duration, when known.
    pub mean_duration_ms: Option<f64>,
}
