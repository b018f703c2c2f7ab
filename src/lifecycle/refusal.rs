//! The launch hold after definitive create refusals: a pure state machine (the caller passes
//! the clock). A refused create (401/403, a validation 422, a success without a host) would
//! otherwise be followed by a new host name every tick; each consecutive refusal doubles the
//! hold, a create that succeeds ends it.

use std::time::{Duration, Instant};

/// The hold state of one lifecycle backend.
#[derive(Debug)]
pub(crate) struct RefusalHold {
    base: Duration,
    max: Duration,
    /// Consecutive refused creates.
    refusals: u32,
    until: Option<Instant>,
    last: Option<String>,
    /// The current hold was reported by `held` already.
    reported: bool,
}

/// A hold in force, for the launch loop, status and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Time until launches may be tried again.
    pub remaining: Duration,
    /// Consecutive refused creates.
    pub refusals: u32,
    /// The last refusal, with what to fix.
    pub reason: String,
    /// First time this hold is reported (log it once).
    pub new: bool,
}

impl RefusalHold {
    /// No hold; the first refusal holds `base`, doubling up to `max`.
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        RefusalHold {
            base,
            max: max.max(base),
            refusals: 0,
            until: None,
            last: None,
            reported: false,
        }
    }

    /// Sets the backoff (the config is read after construction).
    pub(crate) fn configure(&mut self, base: Duration, max: Duration) {
        self.base = base;
        self.max = max.max(base);
    }

    /// A create was refused: the hold starts now; returns its length.
    pub(crate) fn refused(&mut self, now: Instant, reason: &str) -> Duration {
        let hold = self
            .base
            .saturating_mul(2u32.saturating_pow(self.refusals.min(30)))
            .min(self.max);
        self.refusals = self.refusals.saturating_add(1);
        self.until = Some(now + hold);
        self.last = Some(reason.to_string());
        self.reported = false;
        hold
    }

    /// A create succeeded: launches go on.
    pub(crate) fn succeeded(&mut self) {
        self.refusals = 0;
        self.until = None;
    }

    /// The hold in force at `now`, if any; `new` is true the first time it is reported.
    pub(crate) fn held(&mut self, now: Instant) -> Option<Hold> {
        let until = self.until?;
        let remaining = until.saturating_duration_since(now);
        if remaining.is_zero() {
            return None;
        }
        let new = !self.reported;
        self.reported = true;
        Some(Hold {
            remaining,
            refusals: self.refusals,
            reason: self.last.clone().unwrap_or_default(),
            new,
        })
    }

    /// Time left of the hold at `now` (zero: none), without reporting it.
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now))
    }

    /// Consecutive refused creates (0 after a success).
    pub(crate) fn refusals(&self) -> u32 {
        self.refusals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_double_up_to_the_cap_and_a_success_ends_them() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut h = RefusalHold::new(s(30), s(100));
        assert_eq!(h.held(t0), None);
        assert_eq!(h.refused(t0, "401"), s(30));
        assert_eq!(
            h.held(t0 + s(29)).map(|x| (x.refusals, x.new)),
            Some((1, true))
        );
        assert_eq!(
            h.held(t0 + s(29)).map(|x| (x.refusals, x.new)),
            Some((1, false))
        );
        assert_eq!(h.held(t0 + s(30)), None);
        assert_eq!(h.refused(t0 + s(30), "401"), s(60));
        assert_eq!(h.refused(t0 + s(90), "401"), s(100));
        assert_eq!(h.refused(t0 + s(190), "401"), s(100));
        let held = h.held(t0 + s(200)).expect("held");
        assert_eq!((held.refusals, held.reason.as_str()), (4, "401"));
        h.succeeded();
        assert_eq!(h.held(t0 + s(200)), None);
        assert_eq!(h.refusals(), 0);
        assert_eq!(h.refused(t0 + s(300), "422"), s(30));
    }
}
