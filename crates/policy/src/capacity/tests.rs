//! Tests of the estimator and the sizing on synthetic traces.

use super::*;

const H: u64 = 3_600_000;

/// A small deterministic generator (the pure crate has no `rand`).
struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }
}

/// Poisson calls at `rate(t)` per hour (thinning), exponential durations of `mean_ms`.
fn calls(
    seed: u64,
    hours: u64,
    peak: f64,
    rate: impl Fn(u64) -> f64,
    mean_ms: f64,
) -> Vec<(u64, u64)> {
    let mut g = Lcg(seed);
    let mut t = 0.0;
    let mut out = Vec::new();
    loop {
        t += g.exp(H as f64 / peak);
        if t >= (hours * H) as f64 {
            return out;
        }
        if g.unit() * peak < rate(t as u64) {
            out.push((t as u64, g.exp(mean_ms).max(1.0) as u64));
        }
    }
}

/// Feeds readings every 15 s as `serve` would see them: busy = calls in progress (single-use:
/// until the gateway exits 10 s after the call), completions = `expired` requests (single-use).
fn feed(d: &mut Demand, calls: &[(u64, u64)], hours: u64, single_use: bool, offset: u64) {
    feed_until(d, calls, hours * H, single_use, offset);
}

/// [`feed`] up to `until` ms.
fn feed_until(d: &mut Demand, calls: &[(u64, u64)], until: u64, single_use: bool, offset: u64) {
    let tick = 15_000;
    let mut t = 0;
    while t <= until {
        let busy = calls
            .iter()
            .filter(|&&(a, dur)| a <= t && t < a + dur + if single_use { 10_000 } else { 0 })
            .count() as u32;
        let completions = if single_use {
            calls
                .iter()
                .filter(|&&(a, dur)| a + dur + tick > t && a + dur <= t)
                .count() as u32
        } else {
            0
        };
        d.observe(
            offset + t,
            (offset + t) % WEEK_MS,
            DemandSample {
                busy,
                available: 5,
                completions,
                failures: None,
                pending: None,
            },
        );
        t += tick;
    }
}

fn cfg() -> CapacityConfig {
    CapacityConfig::default()
}

#[test]
fn recovers_a_flat_rate_within_ten_percent_single_use_and_reuse() {
    for single_use in [true, false] {
        for (seed, rate) in [(1, 30.0), (2, 60.0), (3, 150.0)] {
            let hours = 24;
            let c = calls(seed, hours, rate, |_| rate, 20.0 * 60_000.0);
            let mut d = Demand::new(cfg(), Profile::default());
            feed(&mut d, &c, hours, single_use, 0);
            let learned: f64 = (1..hours as usize - 1)
                .map(|h| d.profile().rate[h])
                .sum::<f64>()
                / (hours - 2) as f64;
            let err = (learned - rate).abs() / rate;
            assert!(
                err < 0.10,
                "single_use={single_use} rate={rate} learned={learned}"
            );
        }
    }
}

#[test]
fn learns_a_daily_shape_and_the_mean_duration() {
    // 3 weekdays of a two-level day: 20/h at night, 100/h from 08:00 to 18:00.
    let shape = |t: u64| {
        if (8..18).contains(&((t / H) % 24)) {
            100.0
        } else {
            20.0
        }
    };
    let c = calls(7, 72, 100.0, shape, 10.0 * 60_000.0);
    let mut d = Demand::new(cfg(), Profile::default());
    feed(&mut d, &c, 72, true, 0);
    let p = d.profile();
    let day: f64 = (8..18)
        .map(|h| p.expected(24 + h).unwrap_or(0.0))
        .sum::<f64>()
        / 10.0;
    let night: f64 = (0..6)
        .map(|h| p.expected(24 + h).unwrap_or(0.0))
        .sum::<f64>()
        / 6.0;
    assert!((day - 100.0).abs() < 10.0, "day {day}");
    assert!((night - 20.0).abs() < 4.0, "night {night}");
    let dur = p.mean_duration_ms().unwrap_or(0.0) / 60_000.0;
    assert!((dur - 10.0).abs() < 1.5, "duration {dur} min");
}

#[test]
fn the_short_window_sees_a_step_the_profile_does_not_know() {
    let mut p = Profile::default();
    for hw in 0..WEEK_HOURS {
        p.learn(hw, 30.0, 1.0);
    }
    let c = calls(3, 2, 90.0, |_| 90.0, 20.0 * 60_000.0);
    let mut d = Demand::new(cfg(), p);
    feed(&mut d, &c, 1, true, 0);
    let r = d.sizing_rate(H, 120_000);
    assert!(r.rate_per_hour > 60.0, "{r:?}");
    // Without the step the profile's rate stands.
    let c = calls(4, 2, 30.0, |_| 30.0, 20.0 * 60_000.0);
    let mut p = Profile::default();
    for hw in 0..WEEK_HOURS {
        p.learn(hw, 30.0, 1.0);
    }
    let mut d = Demand::new(cfg(), p);
    feed(&mut d, &c, 1, true, 0);
    let r = d.sizing_rate(H, 120_000);
    assert!((r.rate_per_hour - 30.0).abs() < 10.0, "{r:?}");
}

#[test]
fn a_jump_right_after_a_start_or_an_outage_is_a_few_calls_not_a_rate() {
    let sample = |busy| DemandSample {
        busy,
        available: 2,
        completions: 0,
        failures: None,
        pending: None,
    };
    for gap_ms in [1_000, 20_000] {
        let mut d = Demand::new(cfg(), Profile::default());
        // The first reading is a baseline: 3 calls already running are not arrivals.
        d.observe(0, 0, sample(3));
        d.observe(gap_ms, gap_ms, sample(9));
        let r = d.short_rate().unwrap_or(f64::MAX);
        // 6 calls in one reading: 6 in a 10-minute window, 36/h (not 6 in 1 s, 21600/h).
        assert!((r - 36.0).abs() < 1e-9, "{gap_ms}: {r}");
        let sized = Sizer::new().size(&mut d, gap_ms, gap_ms, 1, None, 1000);
        let a = 36.0 * sized.mean_lead_ms as f64 / H as f64;
        let plan = spare_needed(a, cfg().target).unwrap_or(0).max(1);
        assert!(
            sized.effective_min <= plan,
            "{gap_ms}: {sized:?}, plan {plan}"
        );
        // After an outage (a gap of more than two minutes) the next reading is a baseline again.
        let later = gap_ms + 10 * 60_000;
        d.observe(later, later, sample(20));
        assert_eq!(d.short_rate(), None, "one sample: no rate yet");
    }
    // Once the window has been full since the baseline, its own span counts again: a steady
    // rate reads the same as before.
    let mut d = Demand::new(cfg(), Profile::default());
    for minute in 0..=30u32 {
        let t = u64::from(minute) * 60_000;
        d.observe(t, t, sample(minute));
    }
    let r = d.short_rate().unwrap_or(0.0);
    assert!((r - 60.0).abs() < 1e-6, "{r}");
}

fn flat_profile(rate: f64) -> Profile {
    let mut p = Profile::default();
    for hw in 0..WEEK_HOURS {
        p.learn(hw, rate, 1.0);
    }
    p
}

#[test]
fn sizing_equals_the_erlang_b_plan_for_the_same_rate_and_lead() {
    for (rate, boot_s, target) in [(60.0, 90, 0.01), (144.0, 90, 0.005), (300.0, 600, 0.005)] {
        let c = CapacityConfig { target, ..cfg() };
        let mut d = Demand::new(c, flat_profile(rate));
        for _ in 0..5 {
            d.boot(boot_s * 1000);
        }
        let lead = boot_s * 1000 + c.tick_ms + c.poll_ms;
        let mean_lead = boot_s * 1000 + (c.tick_ms + c.poll_ms) / 2;
        let s = Sizer::new().size(&mut d, 0, 0, 1, None, 1000);
        let a = rate * mean_lead as f64 / H as f64;
        assert_eq!((s.lead_ms, s.mean_lead_ms), (lead, mean_lead));
        assert!((s.offered_load - a).abs() < 1e-9);
        assert_eq!(Some(s.effective_min), spare_needed(a, target));
        assert_eq!(s.source, Source::Learned);
    }
}

#[test]
fn floor_schedule_and_max_bound_the_learned_value() {
    let mut d = Demand::new(cfg(), flat_profile(60.0));
    let learned = Sizer::new().size(&mut d, 0, 0, 1, None, 1000).learned;
    let s = Sizer::new().size(&mut d, 0, 0, learned + 3, None, 1000);
    assert_eq!((s.effective_min, s.source), (learned + 3, Source::Floor));
    let sched = ScheduleNow {
        min: learned + 5,
        inhibit_scale_down: false,
    };
    let s = Sizer::new().size(&mut d, 0, 0, 1, Some(sched), 1000);
    assert_eq!((s.effective_min, s.source), (learned + 5, Source::Schedule));
    let s = Sizer::new().size(&mut d, 0, 0, 1, None, 2);
    assert_eq!(s.effective_min, 2, "capped by max");
}

#[test]
fn rising_demand_is_met_a_mean_lead_ahead_and_a_forecast_fall_is_taken_at_once() {
    // 20/h until 10:00, 140/h from 10:00 (hour-centre interpolation: the ramp starts at 09:30).
    let mut p = Profile::default();
    for hw in 0..WEEK_HOURS {
        p.learn(hw, if hw % 24 >= 10 { 140.0 } else { 20.0 }, 1.0);
    }
    let mut d = Demand::new(cfg(), p);
    let mean_lead = d.mean_lead_ms();
    let lead = d.lead_ms();
    assert!(mean_lead < lead);
    let mut sz = Sizer::new();
    let early = sz.size(&mut d, 0, 9 * H, 1, None, 1000).effective_min;
    // A mean lead before 10:30 the forecast window already reaches the 10:00-11:00 level.
    let ahead = sz.size(&mut d, 1, 10 * H + H / 2 - mean_lead, 1, None, 1000);
    let at = Sizer::new().size(&mut d, 1, 10 * H + H / 2, 1, None, 1000);
    assert!(ahead.effective_min > early);
    assert_eq!(ahead.effective_min, at.effective_min);
    // Falling as the profile forecasts: taken at once (the window kept what the lead needs).
    let mut sz = Sizer::new();
    let high = sz.size(&mut d, 0, 12 * H, 1, None, 1000).effective_min;
    let low = Sizer::new()
        .size(&mut d, 0, 2 * H, 1, None, 1000)
        .effective_min;
    assert!(low < high);
    let t0 = 1_000_000;
    let fell = sz.size(&mut d, t0, 2 * H, 1, None, 1000);
    assert_eq!((fell.effective_min, fell.source), (low, Source::Learned));
    // A schedule that inhibits scale-down holds the high value.
    let mut sz = Sizer::new();
    sz.size(&mut d, 0, 12 * H, 1, None, 1000);
    let inhibit = Some(ScheduleNow {
        min: 1,
        inhibit_scale_down: true,
    });
    let s = sz.size(&mut d, 10 * lead, 2 * H, 1, inhibit, 1000);
    assert_eq!(s.effective_min, high);
}

#[test]
fn a_fall_waits_one_lead_only_without_a_profile() {
    // The profile says 30/h; the last 8 minutes ran 200/h, a step it does not know (too short
    // to move the day scale much).
    let flat = || {
        let mut p = Profile::default();
        for hw in 0..WEEK_HOURS {
            p.learn(hw, 30.0, 1.0);
        }
        p
    };
    let step = |t: u64| if t >= 52 * 60_000 { 200.0 } else { 30.0 };
    let stepped_calls = calls(3, 1, 200.0, step, 20.0 * 60_000.0);
    let quiet_calls = calls(4, 1, 30.0, |_| 30.0, 20.0 * 60_000.0);
    let demand = |p: Profile, c: &[(u64, u64)]| {
        let mut d = Demand::new(cfg(), p);
        feed(&mut d, c, 1, true, 0);
        d
    };
    // With a profile: the short window's raise ends when the short window no longer sees the
    // step, at once.
    let (mut stepped, mut quiet) = (demand(flat(), &stepped_calls), demand(flat(), &quiet_calls));
    let mut sz = Sizer::new();
    let high = sz.size(&mut stepped, H, H, 1, None, 1000);
    let forecast = high.rate.profile_peak_per_hour.unwrap_or(f64::MAX);
    assert!(high.rate.rate_per_hour > forecast, "{:?}", high.rate);
    let low = Sizer::new()
        .size(&mut quiet, H, H, 1, None, 1000)
        .effective_min;
    assert!(low < high.effective_min);
    let fell = sz.size(&mut quiet, H + 1, H, 1, None, 1000);
    assert_eq!((fell.effective_min, fell.source), (low, Source::Learned));
    // Without one (the first hour, not yet learned) the rate is the short window's alone: a
    // fall is held for a whole lead.
    let first_hour = |c: &[(u64, u64)]| {
        let mut d = Demand::new(cfg(), Profile::default());
        feed_until(&mut d, c, 59 * 60_000, true, 0);
        d
    };
    let (mut stepped, mut quiet) = (first_hour(&stepped_calls), first_hour(&quiet_calls));
    let t = 59 * 60_000;
    let mut sz = Sizer::new();
    let high = sz.size(&mut stepped, t, t, 1, None, 1000);
    assert_eq!(high.rate.profile_peak_per_hour, None);
    let high = high.effective_min;
    let low = Sizer::new()
        .size(&mut quiet, t, t, 1, None, 1000)
        .effective_min;
    assert!(low < high, "{low} {high}");
    let lead = quiet.lead_ms();
    let held = sz.size(&mut quiet, t + 1, t, 1, None, 1000);
    assert_eq!((held.effective_min, held.source), (high, Source::Hold));
    assert_eq!(
        sz.size(&mut quiet, t + lead, t, 1, None, 1000)
            .effective_min,
        high
    );
    assert_eq!(
        sz.size(&mut quiet, t + 1 + lead, t, 1, None, 1000)
            .effective_min,
        low
    );
}

#[test]
fn observed_rejections_raise_that_hours_estimate() {
    let mut d = Demand::new(cfg(), flat_profile(60.0));
    let before = Sizer::new().size(&mut d, 0, 3 * H, 1, None, 1000);
    // An hour (03:00-04:00) with readings showing no spare gateway half the time.
    for i in 0..=240u64 {
        let t = 3 * H + i * 15_000;
        d.observe(
            t,
            t,
            DemandSample {
                busy: 20 + (i % 2) as u32,
                available: (i % 2) as u32,
                completions: (i % 2) as u32,
                failures: None,
                pending: None,
            },
        );
    }
    assert!(d.profile().feedback[3] > 1.0);
    let after = Sizer::new().size(&mut d, 0, 3 * H, 1, None, 1000);
    assert!(after.learned > before.learned, "{after:?}");
    assert_eq!(after.source, Source::Feedback);
}

/// Hour 5 (and the tick into hour 6) of 20 busy, 3 available, with the failure counter and the
/// pending calls `signals` gives for tick `i`; the estimator that saw it.
fn busy_hour(signals: impl Fn(u64) -> (Option<u64>, Option<u32>)) -> Demand {
    let mut d = Demand::new(cfg(), flat_profile(60.0));
    for i in 0..=240u64 {
        let t = 5 * H + i * 15_000;
        let (failures, pending) = signals(i);
        let sample = DemandSample {
            busy: 20,
            available: 3,
            completions: 0,
            failures,
            pending,
        };
        d.observe(t, t, sample);
    }
    d
}

#[test]
fn a_failure_counter_rising_counts_as_a_rejection() {
    let d = busy_hour(|i| (Some(i / 40), None));
    assert!(d.profile().feedback[5] > 1.0);
    assert_eq!(d.profile().feedback[4], 1.0);
}

#[test]
fn calls_pending_for_a_gateway_count_as_rejections() {
    let run = |pending: Option<u32>| {
        busy_hour(|i| (Some(0), pending.filter(|_| i % 20 == 0)))
            .profile()
            .feedback[5]
    };
    assert!(
        run(Some(1)) > 1.0,
        "pending calls raise the hour's estimate"
    );
    assert_eq!(run(Some(0)), 1.0);
    assert_eq!(run(None), 1.0);
}

#[test]
fn the_profile_round_trips_and_a_corrupt_one_is_refused() {
    let p = flat_profile(42.0);
    let json = serde_json::to_string(&p).unwrap_or_default();
    let back: Profile = serde_json::from_str(&json).unwrap_or_default();
    assert_eq!(back, p);
    let mut bad = p.clone();
    bad.rate.pop();
    assert!(!bad.is_valid());
    let d = Demand::new(cfg(), bad);
    assert_eq!(d.profile(), &Profile::default());
}

#[test]
fn the_lead_is_a_high_percentile_of_measured_boots_plus_tick_and_poll() {
    let mut d = Demand::new(cfg(), Profile::default());
    assert_eq!(
        d.lead_ms(),
        120_000 + 30_000,
        "default boot before measurements"
    );
    for s in 1..=10u64 {
        d.boot(s * 10_000);
    }
    assert_eq!(d.lead_ms(), 90_000 + 30_000);
    assert_eq!(d.mean_lead_ms(), 55_000 + 15_000);
}

#[test]
fn a_warm_pools_start_lead_replaces_the_boots_and_shrinks_the_spares() {
    let mut d = Demand::new(cfg(), Profile::default());
    for _ in 0..10 {
        d.boot(600_000);
    }
    let flat = |d: &mut Demand| {
        for i in 0..=40u64 {
            // 300 calls/h: five arrivals a minute, each taking a gateway.
            d.observe(
                i * 60_000,
                i * 60_000,
                DemandSample {
                    busy: (5 * i) as u32,
                    available: 10,
                    completions: 0,
                    failures: None,
                    pending: None,
                },
            );
        }
    };
    flat(&mut d);
    let create = Sizer::new().size(&mut d, 40 * 60_000, 40 * 60_000, 1, None, 1000);
    assert_eq!(create.lead_path, "create");
    assert_eq!(create.mean_lead_ms, 600_000 + 15_000);
    d.set_launch_lead(Some(LaunchLead {
        mean_ms: 30_000,
        high_ms: 45_000,
    }));
    let start = Sizer::new().size(&mut d, 40 * 60_000, 40 * 60_000, 1, None, 1000);
    assert_eq!(start.lead_path, "start");
    assert_eq!(
        (start.lead_ms, start.mean_lead_ms),
        (45_000 + 30_000, 30_000 + 15_000)
    );
    assert!(
        start.learned * 3 < create.learned,
        "spares for 45 s, not 10 min: {} vs {}",
        start.learned,
        create.learned
    );
    d.set_launch_lead(None);
    assert_eq!(d.mean_lead_ms(), 600_000 + 15_000, "back to the boots");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn effective_min_is_within_floor_and_max(rate in 0.0f64..500.0, floor in 0u32..50, max in 1u32..200, sched in proptest::option::of(0u32..80)) {
            let mut d = Demand::new(cfg(), flat_profile(rate));
            let s = Sizer::new().size(&mut d, 0, 0, floor, sched.map(|m| ScheduleNow { min: m, inhibit_scale_down: false }), max);
            prop_assert!(s.effective_min <= max);
            prop_assert!(s.effective_min >= floor.min(max));
            prop_assert!(s.effective_min >= sched.unwrap_or(0).min(max));
            prop_assert!(s.effective_min >= s.learned.min(max));
        }

        #[test]
        fn more_demand_never_means_fewer_spares(r1 in 0.0f64..300.0, extra in 0.0f64..300.0) {
            let a = Sizer::new().size(&mut Demand::new(cfg(), flat_profile(r1)), 0, 0, 0, None, 100_000);
            let b = Sizer::new().size(&mut Demand::new(cfg(), flat_profile(r1 + extra)), 0, 0, 0, None, 100_000);
            prop_assert!(b.learned >= a.learned);
        }
    }
}

#[test]
fn the_week_meets_the_target_with_fewer_spare_hours_than_hour_by_hour_sizing() {
    // Office hours: 10/h at night, 150/h from 08:00 to 18:00 on weekdays.
    let mut p = Profile::default();
    for hw in 0..WEEK_HOURS {
        let day = hw / 24 < 5 && (8..18).contains(&(hw % 24));
        p.learn(hw, if day { 150.0 } else { 10.0 }, 1.0);
    }
    let mut d = Demand::new(cfg(), p.clone());
    let value = d.spare_value().unwrap_or(0.0);
    let lead_h = d.mean_lead_ms() as f64 / H as f64;
    let (mut calls, mut rejected, mut spares, mut spares_hourly) = (0.0, 0.0, 0u32, 0u32);
    for hw in 0..WEEK_HOURS {
        let r = p.rate[hw];
        let a = r * lead_h;
        let k = spare_for_value(r, a, value, cfg().target);
        calls += r;
        rejected += r * erlang_b(k, a);
        spares += k;
        spares_hourly += spare_needed(a, cfg().target).unwrap_or(MAX_SPARE);
        assert!(erlang_b(k, a) <= WORST_HOUR_FACTOR * cfg().target + 1e-12);
    }
    assert!(rejected / calls <= cfg().target, "{}", rejected / calls);
    assert!(spares < spares_hourly, "{spares} vs {spares_hourly}");
}

/// Feeds single-use readings every 15 s from `from_h` for `hours` (like [`feed`], in one pass
/// over the calls: days of calls stay fast).
fn feed_span(d: &mut Demand, calls: &[(u64, u64)], from_h: u64, hours: u64) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let tick = 15_000;
    let (mut next, mut ends, mut exits) = (0, BinaryHeap::new(), BinaryHeap::new());
    let mut t = from_h * H;
    while t <= (from_h + hours) * H {
        while next < calls.len() && calls[next].0 <= t {
            let (a, dur) = calls[next];
            ends.push(Reverse(a + dur));
            exits.push(Reverse(a + dur + 10_000));
            next += 1;
        }
        let mut completions = 0;
        while ends.peek().is_some_and(|e| e.0 <= t) {
            ends.pop();
            completions += 1;
        }
        while exits.peek().is_some_and(|e| e.0 <= t) {
            exits.pop();
        }
        d.observe(
            t,
            t % WEEK_MS,
            DemandSample {
                busy: exits.len() as u32,
                available: 5,
                completions,
                failures: None,
                pending: None,
            },
        );
        t += tick;
    }
}

/// A weekday shape (quiet nights, two peaks), mean 1; weekends at 0.3.
fn weekly(t_h: f64) -> f64 {
    const DAY: [f64; 24] = [
        0.10, 0.08, 0.06, 0.06, 0.08, 0.15, 0.35, 0.80, 1.60, 2.20, 2.40, 2.20, 1.50, 1.90, 2.30,
        2.20, 1.80, 1.20, 0.70, 0.45, 0.35, 0.30, 0.20, 0.15,
    ];
    let h = t_h.rem_euclid(168.0);
    let day = if h >= 120.0 { 0.3 } else { 1.0 };
    DAY[(h as usize) % 24] * day
}

/// A profile that learned `weeks` of the weekly shape at `rate` per hour exactly.
fn weekly_profile(rate: f64, weeks: u32) -> Profile {
    let mut p = Profile::default();
    for _ in 0..weeks {
        for hw in 0..WEEK_HOURS {
            p.learn(hw, rate * weekly(hw as f64 + 0.5), 1.0);
        }
    }
    p
}

#[test]
fn a_shifted_week_is_followed_within_a_day_not_relearned_for_weeks() {
    for shift in [3i64, -3] {
        let rate = 60.0;
        let mut d = Demand::new(cfg(), weekly_profile(rate, 2));
        // Monday and Tuesday as learned, then the pattern runs `shift` hours later.
        let at = |t: u64| {
            let h = t as f64 / H as f64;
            let h = if h >= 48.0 { h - shift as f64 } else { h };
            rate * weekly(h)
        };
        let c = calls(11, 96, rate * 2.5, at, 20.0 * 60_000.0);
        feed_span(&mut d, &c, 0, 72);
        assert_eq!(d.realigned_hours(), shift, "shift {shift}");
        // Thursday's forecast is the shifted week, hour by hour (peaks included).
        for h in 72..96u64 {
            let truth = at(h * H + H / 2);
            let got = d.profile().expected(h as usize).unwrap_or(0.0);
            assert!(
                (got - truth).abs() <= 0.12 * truth + 2.0,
                "shift {shift} hour {h}: forecast {got:.1}, truth {truth:.1}"
            );
        }
    }
    // The same days unshifted move nothing.
    let mut d = Demand::new(cfg(), weekly_profile(60.0, 2));
    let c = calls(
        12,
        72,
        150.0,
        |t| 60.0 * weekly(t as f64 / H as f64),
        20.0 * 60_000.0,
    );
    feed_span(&mut d, &c, 0, 72);
    assert_eq!(d.realigned_hours(), 0);
}

#[test]
fn a_holiday_moves_next_weeks_forecast_little_but_a_lasting_change_is_learned() {
    let rate = 60.0;
    let learned = weekly_profile(rate, 4);
    // Monday and Tuesday as usual, Wednesday a holiday at 0.2, Thursday as usual.
    let at = |t: u64| {
        let h = t as f64 / H as f64;
        rate * weekly(h) * if (48.0..72.0).contains(&h) { 0.2 } else { 1.0 }
    };
    let c = calls(21, 96, rate * 2.5, at, 20.0 * 60_000.0);
    let mut d = Demand::new(cfg(), learned.clone());
    feed_span(&mut d, &c, 0, 96);
    assert_eq!(d.realigned_hours(), 0);
    let day = |p: &Profile, d: usize| -> f64 {
        (8..18).map(|h| p.expected(d * 24 + h).unwrap_or(0.0)).sum()
    };
    let ratio = day(d.profile(), 2) / day(&learned, 2);
    // Learned at full weight the holiday would leave next Wednesday at 0.8 (1 - 0.8 / 4).
    assert!(ratio > 0.93, "next Wednesday at {ratio:.3} of normal");
    // A level that stays at 0.4 from Monday on is a change: learned at full weight from the
    // third day on.
    let low = |t: u64| 0.4 * rate * weekly(t as f64 / H as f64);
    let c = calls(22, 96, rate, low, 20.0 * 60_000.0);
    let mut d = Demand::new(cfg(), learned.clone());
    feed_span(&mut d, &c, 0, 96);
    let (mon, thu) = (
        day(d.profile(), 0) / day(&learned, 0),
        day(d.profile(), 3) / day(&learned, 3),
    );
    assert!(mon > 0.9 && thu < 0.9, "Monday {mon:.3}, Thursday {thu:.3}");
}
