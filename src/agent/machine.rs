//! The agent's decision as pure code: Jibri readings in, "ask to be removed" out.
//!
//! No I/O and no clock reads: the caller passes `now`, so tests drive it with a
//! fake clock. The live loop in [`super::run`] is a thin shell around [`Machine`].

use std::fmt;
use std::time::Duration;

/// Milliseconds on a monotonic clock whose zero is the instance's start (boot).
pub type Millis = u64;

/// Jibri's `busyStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyStatus {
    /// `IDLE`: ready for a call.
    Idle,
    /// `BUSY`: in a call.
    Busy,
    /// `EXPIRED`: will take no more calls (single-use Jibri after its session).
    Expired,
    /// Missing or unknown: treated as not idle, never as idle.
    Unknown,
}

/// The value whose spelling in `table` is `s` (trimmed, case-insensitively), else `unknown`.
fn parse_spelling<T: Copy>(s: Option<&str>, table: &[(&str, T)], unknown: T) -> T {
    let s = s.map(str::trim);
    let found = table
        .iter()
        .find(|(name, _)| s.is_some_and(|s| s.eq_ignore_ascii_case(name)));
    found.map_or(unknown, |&(_, value)| value)
}

impl BusyStatus {
    /// Parses Jibri's spelling (case-insensitively); anything else is `Unknown`.
    pub fn parse(s: Option<&str>) -> Self {
        use BusyStatus::*;
        parse_spelling(
            s,
            &[("IDLE", Idle), ("BUSY", Busy), ("EXPIRED", Expired)],
            Unknown,
        )
    }
}

/// Jibri's `healthStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// `HEALTHY`.
    Healthy,
    /// `UNHEALTHY` (sticky in Jibri until a restart).
    Unhealthy,
    /// Missing or unknown: neither healthy nor unhealthy.
    Unknown,
}

impl HealthStatus {
    /// Parses Jibri's spelling (case-insensitively); anything else is `Unknown`.
    pub fn parse(s: Option<&str>) -> Self {
        use HealthStatus::*;
        parse_spelling(
            s,
            &[("HEALTHY", Healthy), ("UNHEALTHY", Unhealthy)],
            Unknown,
        )
    }
}

/// One health check of the local Jibri.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JibriReading {
    /// Jibri answered with its status.
    Status {
        /// `busyStatus`.
        busy: BusyStatus,
        /// `health.healthStatus`.
        health: HealthStatus,
    },
    /// No usable answer (connection refused, timeout, HTTP error, not JSON).
    Unreachable,
}

impl JibriReading {
    /// A reading with both values known (tests and fakes).
    pub fn status(busy: BusyStatus, health: HealthStatus) -> Self {
        JibriReading::Status { busy, health }
    }
}

impl fmt::Display for JibriReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JibriReading::Status { busy, health } => write!(f, "{busy:?}/{health:?}"),
            JibriReading::Unreachable => f.write_str("unreachable"),
        }
    }
}

/// Why the agent asks to be removed: the scaler's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Idle for `idle_time`.
    Idle,
    /// Jibri is `EXPIRED`, or the instance outlived its lifetime while idle.
    Expired,
    /// `UNHEALTHY` for `unhealthy_checks` checks, or unreachable for `unreachable_time`.
    Unhealthy,
}

impl Reason {
    /// The wire spelling (`idle`, `expired`, `unhealthy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Idle => "idle",
            Reason::Expired => "expired",
            Reason::Unhealthy => "unhealthy",
        }
    }
}

/// What exactly triggered an ask, with the numbers for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `IDLE` continuously for this long.
    IdleFor(Millis),
    /// Jibri reports `busyStatus` `EXPIRED`.
    JibriExpired,
    /// Idle, and the instance is `age` old, past its jittered `lifetime`.
    Lifetime {
        /// Instance age.
        age: Millis,
        /// This instance's jittered `max_lifetime`.
        lifetime: Millis,
    },
    /// `UNHEALTHY` in this many consecutive checks.
    Unhealthy(u32),
    /// No usable answer from Jibri for this long.
    UnreachableFor(Millis),
}

impl Cause {
    /// The reason sent to the scaler.
    pub fn reason(self) -> Reason {
        match self {
            Cause::IdleFor(_) => Reason::Idle,
            Cause::JibriExpired | Cause::Lifetime { .. } => Reason::Expired,
            Cause::Unhealthy(_) | Cause::UnreachableFor(_) => Reason::Unhealthy,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |ms: Millis| ms as f64 / 1000.0;
        match *self {
            Cause::IdleFor(ms) => write!(f, "idle for {:.1} s", secs(ms)),
            Cause::JibriExpired => f.write_str("Jibri busyStatus is EXPIRED"),
            Cause::Lifetime { age, lifetime } => write!(
                f,
                "idle and {:.0} s old, past its lifetime of {:.0} s",
                secs(age),
                secs(lifetime)
            ),
            Cause::Unhealthy(n) => write!(f, "UNHEALTHY in {n} consecutive checks"),
            Cause::UnreachableFor(ms) => write!(f, "Jibri unreachable for {:.1} s", secs(ms)),
        }
    }
}

/// The thresholds of the state machine (from the agent config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Ask `idle` after `IDLE` continuously for this long.
    pub idle_time: Duration,
    /// Ask `expired` when idle and older than this (before the per-instance jitter).
    pub max_lifetime: Option<Duration>,
    /// Ask `unhealthy` after this many consecutive `UNHEALTHY` checks (at least 1).
    pub unhealthy_checks: u32,
    /// Ask `unhealthy` after no usable answer for this long.
    pub unreachable_time: Duration,
}

/// The scale-down state machine of one instance.
#[derive(Debug, Clone)]
pub struct Machine {
    idle_time: Millis,
    lifetime: Option<Millis>,
    unhealthy_checks: u32,
    unreachable_time: Millis,
    idle_since: Option<Millis>,
    unhealthy_streak: u32,
    unreachable_since: Option<Millis>,
    not_before: Millis,
}

fn ms(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Machine {
    /// A machine for the instance `key`; its lifetime is jittered from the key.
    pub fn new(th: &Thresholds, key: &str) -> Self {
        Machine {
            idle_time: ms(th.idle_time),
            lifetime: th.max_lifetime.map(|l| ms(jittered_lifetime(l, key))),
            unhealthy_checks: th.unhealthy_checks.max(1),
            unreachable_time: ms(th.unreachable_time),
            idle_since: None,
            unhealthy_streak: 0,
            unreachable_since: None,
            not_before: 0,
        }
    }

    /// This instance's lifetime after jitter, if `max_lifetime` is set.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime.map(Duration::from_millis)
    }

    /// Since when Jibri has been `IDLE` without a break, if it is now.
    pub fn idle_since(&self) -> Option<Millis> {
        self.idle_since
    }

    /// Takes one reading at `now` (ms since the instance started) and says
    /// whether to ask for removal now. The state is updated even while a
    /// [`Machine::defer`] backoff holds the asks back.
    pub fn observe(&mut self, reading: JibriReading, now: Millis) -> Option<Cause> {
        let cause = self.update(reading, now)?;
        (now >= self.not_before).then_some(cause)
    }

    /// Asks nothing before `until` (after a `keep` or a failed request).
    pub fn defer(&mut self, until: Millis) {
        self.not_before = until;
    }

    /// The end of the current backoff (0 if none was set).
    pub fn deferred_until(&self) -> Millis {
        self.not_before
    }

    fn update(&mut self, reading: JibriReading, now: Millis) -> Option<Cause> {
        let (busy, health) = match reading {
            JibriReading::Unreachable => {
                // Unknown is never idle, and it breaks an UNHEALTHY streak.
                self.idle_since = None;
                self.unhealthy_streak = 0;
                let since = *self.unreachable_since.get_or_insert(now);
                let down_for = now.saturating_sub(since);
                return (down_for >= self.unreachable_time)
                    .then_some(Cause::UnreachableFor(down_for));
            }
            JibriReading::Status { busy, health } => (busy, health),
        };
        self.unreachable_since = None;
        self.unhealthy_streak = match health {
            HealthStatus::Unhealthy => self.unhealthy_streak.saturating_add(1),
            _ => 0,
        };
        if busy == BusyStatus::Idle {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
        match busy {
            // A call is running: never ask, whatever else is wrong.
            BusyStatus::Busy => return None,
            BusyStatus::Expired => return Some(Cause::JibriExpired),
            BusyStatus::Idle | BusyStatus::Unknown => {}
        }
        if self.unhealthy_streak >= self.unhealthy_checks {
            return Some(Cause::Unhealthy(self.unhealthy_streak));
        }
        let idle_since = self.idle_since?;
        if let Some(lifetime) = self.lifetime
            && now >= lifetime
        {
            return Some(Cause::Lifetime { age: now, lifetime });
        }
        let idle_for = now.saturating_sub(idle_since);
        (idle_for >= self.idle_time).then_some(Cause::IdleFor(idle_for))
    }
}

/// A stable 64-bit hash of `key` (FNV-1a, then the splitmix64 finaliser to
/// spread similar keys); unlike `DefaultHasher` it never changes between builds.
pub fn stable_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `base` scaled by a factor in [0.9, 1.1] derived from `key`: the same on
/// every restart, different across a fleet, so instances do not expire together.
pub fn jittered_lifetime(base: Duration, key: &str) -> Duration {
    // Per-mille factor 900..=1100.
    let permille = 900 + u128::from(stable_hash(key) % 201);
    let millis = base.as_millis().saturating_mul(permille) / 1000;
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// The `failures`-th retry delay: `base * 2^(failures-1)`, capped at `max`.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    base.saturating_mul(1u32 << exp).min(max)
}

/// `d` scaled by `1 + spread * (2u - 1)` for `u` in [0, 1): +/- `spread` jitter.
pub fn jitter(d: Duration, spread: f64, u: f64) -> Duration {
    let factor = 1.0 + spread * (2.0 * u.clamp(0.0, 1.0) - 1.0);
    d.mul_f64(factor.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn status(busy: BusyStatus, health: HealthStatus) -> JibriReading {
        JibriReading::Status { busy, health }
    }
    const IDLE: JibriReading = status(BusyStatus::Idle, HealthStatus::Healthy);
    const BUSY: JibriReading = status(BusyStatus::Busy, HealthStatus::Healthy);
    const EXPIRED: JibriReading = status(BusyStatus::Expired, HealthStatus::Healthy);
    const SICK: JibriReading = status(BusyStatus::Idle, HealthStatus::Unhealthy);
    const SICK_BUSY: JibriReading = status(BusyStatus::Busy, HealthStatus::Unhealthy);
    const UNKNOWN: JibriReading = status(BusyStatus::Unknown, HealthStatus::Unknown);
    const DOWN: JibriReading = JibriReading::Unreachable;

    fn th() -> Thresholds {
        Thresholds {
            idle_time: Duration::from_secs(600),
            max_lifetime: None,
            unhealthy_checks: 3,
            unreachable_time: Duration::from_secs(120),
        }
    }

    /// Feeds `reading` every 5 s from `from` to `to` (inclusive); returns the first ask.
    fn feed(m: &mut Machine, r: JibriReading, from: Millis, to: Millis) -> Option<(Millis, Cause)> {
        let mut t = from;
        while t <= to {
            if let Some(c) = m.observe(r, t) {
                return Some((t, c));
            }
            t += 5_000;
        }
        None
    }

    #[test]
    fn idle_for_idle_time_asks_idle() {
        let mut m = Machine::new(&th(), "gw-1");
        assert_eq!(feed(&mut m, IDLE, 0, 595_000), None);
        assert_eq!(m.observe(IDLE, 600_000), Some(Cause::IdleFor(600_000)));
        assert_eq!(Cause::IdleFor(1).reason(), Reason::Idle);
    }

    #[test]
    fn busy_never_asks_and_resets_idle() {
        let mut m = Machine::new(&th(), "gw-1");
        assert_eq!(feed(&mut m, BUSY, 0, 10 * 3_600_000), None);
        assert_eq!(
            feed(&mut m, SICK_BUSY, 10 * 3_600_000, 11 * 3_600_000),
            None
        );
        // Idle 9 minutes, one busy reading, idle again: the clock starts over.
        let mut m = Machine::new(&th(), "gw-1");
        assert_eq!(feed(&mut m, IDLE, 0, 540_000), None);
        assert_eq!(m.observe(BUSY, 545_000), None);
        assert_eq!(m.idle_since(), None);
        assert_eq!(feed(&mut m, IDLE, 550_000, 1_145_000), None);
        assert_eq!(m.observe(IDLE, 1_150_000), Some(Cause::IdleFor(600_000)));
    }

    #[test]
    fn a_busy_recheck_cancels_the_ask() {
        let mut m = Machine::new(&th(), "gw-1");
        assert!(feed(&mut m, IDLE, 0, 600_000).is_some());
        // The agent re-reads Jibri right before sending: busy now.
        assert_eq!(m.observe(BUSY, 600_010), None);
        assert_eq!(m.observe(IDLE, 605_000), None);
    }

    #[test]
    fn unknown_values_are_never_idle() {
        let mut m = Machine::new(&th(), "gw-1");
        assert_eq!(feed(&mut m, UNKNOWN, 0, 24 * 3_600_000), None);
        assert_eq!(m.idle_since(), None);
    }

    #[test]
    fn expired_asks_at_once() {
        let mut m = Machine::new(&th(), "gw-1");
        assert_eq!(m.observe(EXPIRED, 1), Some(Cause::JibriExpired));
        assert_eq!(Cause::JibriExpired.reason(), Reason::Expired);
    }

    #[test]
    fn unhealthy_needs_consecutive_checks() {
        let mut m = Machine::new(&th(), "gw-1");
        assert_eq!(m.observe(SICK, 0), None);
        assert_eq!(m.observe(SICK, 5_000), None);
        assert_eq!(
            m.observe(IDLE, 10_000),
            None,
            "a healthy check breaks the streak"
        );
        assert_eq!(m.observe(SICK, 15_000), None);
        assert_eq!(m.observe(SICK, 20_000), None);
        assert_eq!(m.observe(SICK, 25_000), Some(Cause::Unhealthy(3)));
        assert_eq!(Cause::Unhealthy(3).reason(), Reason::Unhealthy);
        // Unhealthy but in a call: no ask until the call ends.
        let mut m = Machine::new(&th(), "gw-1");
        assert_eq!(feed(&mut m, SICK_BUSY, 0, 60_000), None);
        assert_eq!(m.observe(SICK, 65_000), Some(Cause::Unhealthy(14)));
    }

    #[test]
    fn unreachable_for_unreachable_time_asks_unhealthy() {
        let mut m = Machine::new(&th(), "gw-1");
        assert_eq!(feed(&mut m, DOWN, 0, 115_000), None);
        assert_eq!(
            m.observe(DOWN, 120_000),
            Some(Cause::UnreachableFor(120_000))
        );
        // Back for one check: the outage starts over.
        let mut m = Machine::new(&th(), "gw-1");
        assert_eq!(feed(&mut m, DOWN, 0, 100_000), None);
        assert_eq!(m.observe(BUSY, 105_000), None);
        assert_eq!(feed(&mut m, DOWN, 110_000, 225_000), None);
        assert_eq!(
            m.observe(DOWN, 230_000),
            Some(Cause::UnreachableFor(120_000))
        );
        assert_eq!(m.idle_since(), None);
    }

    #[test]
    fn lifetime_asks_expired_only_while_idle() {
        let hour = 3_600_000;
        let t = Thresholds {
            max_lifetime: Some(Duration::from_secs(24 * 3600)),
            idle_time: Duration::from_secs(100 * 3600),
            ..th()
        };
        let mut m = Machine::new(&t, "gw-1");
        let lifetime = m.lifetime().map(|d| d.as_millis() as u64).unwrap_or(0);
        assert!((21 * hour..=27 * hour).contains(&lifetime));
        assert_eq!(
            m.observe(BUSY, lifetime + 1),
            None,
            "busy past the lifetime"
        );
        assert_eq!(
            m.observe(IDLE, lifetime + 2),
            Some(Cause::Lifetime {
                age: lifetime + 2,
                lifetime
            })
        );
        assert_eq!(
            Cause::Lifetime {
                age: 2,
                lifetime: 1
            }
            .reason(),
            Reason::Expired
        );
        assert_eq!(m.observe(IDLE, 5), None, "young and idle: nothing yet");
    }

    #[test]
    fn defer_holds_asks_back_but_keeps_tracking() {
        let mut m = Machine::new(&th(), "gw-1");
        assert!(feed(&mut m, IDLE, 0, 600_000).is_some());
        m.defer(660_000);
        assert_eq!(m.deferred_until(), 660_000);
        assert_eq!(m.observe(IDLE, 630_000), None);
        assert_eq!(m.observe(IDLE, 660_000), Some(Cause::IdleFor(660_000)));
        // A call during the backoff resets the idle clock as usual.
        m.defer(700_000);
        assert_eq!(m.observe(BUSY, 680_000), None);
        assert_eq!(m.observe(IDLE, 700_000), None);
        assert_eq!(m.observe(IDLE, 1_300_000), Some(Cause::IdleFor(600_000)));
    }

    #[test]
    fn lifetime_jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(86_400);
        let mut below = 0;
        let mut above = 0;
        for i in 0..1000 {
            let key = format!("10.0.{}.{}", i / 256, i % 256);
            let l = jittered_lifetime(base, &key);
            assert!(
                l >= base.mul_f64(0.9) && l <= base.mul_f64(1.1),
                "{key}: {l:?}"
            );
            if l < base.mul_f64(0.97) {
                below += 1;
            }
            if l > base.mul_f64(1.03) {
                above += 1;
            }
        }
        // Spread over the whole band, not bunched: a fleet does not expire together.
        assert!(below > 250 && above > 250, "below {below}, above {above}");
    }

    #[test]
    fn lifetime_jitter_is_stable_per_key() {
        let base = Duration::from_secs(86_400);
        let a = jittered_lifetime(base, "vsg-7f3a.example.org");
        for _ in 0..10 {
            assert_eq!(jittered_lifetime(base, "vsg-7f3a.example.org"), a);
        }
        // Pinned values: a change here would move every fleet's expiry on upgrade.
        assert_eq!(stable_hash("10.0.0.5"), 0x0848_dabd_5d54_cad3);
        assert_eq!(
            jittered_lifetime(base, "10.0.0.5"),
            Duration::from_secs(85_536)
        );
        let m1 = Machine::new(
            &Thresholds {
                max_lifetime: Some(base),
                ..th()
            },
            "10.0.0.5",
        );
        let m2 = Machine::new(
            &Thresholds {
                max_lifetime: Some(base),
                ..th()
            },
            "10.0.0.5",
        );
        assert_eq!(m1.lifetime(), m2.lifetime());
        assert_ne!(
            jittered_lifetime(base, "10.0.0.5"),
            jittered_lifetime(base, "10.0.0.6")
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(5), s(300), 1), s(5));
        assert_eq!(backoff(s(5), s(300), 2), s(10));
        assert_eq!(backoff(s(5), s(300), 4), s(40));
        assert_eq!(backoff(s(5), s(300), 10), s(300));
        assert_eq!(backoff(s(5), s(300), u32::MAX), s(300));
        assert_eq!(jitter(s(100), 0.2, 0.0), s(80));
        assert_eq!(jitter(s(100), 0.2, 0.5), s(100));
        assert!(jitter(s(100), 0.2, 0.999_999) <= s(120));
    }
}
