//! Per-node circuit breaker: a pure state machine; the caller passes the clock so tests need no sleeps.

use std::time::{Duration, Instant};

use super::BreakerState;

/// Internal state; `Open` remembers when it opened so the cooldown can be measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        since: Instant,
    },
    /// `trial` is true while the single trial call is in flight.
    HalfOpen {
        trial: bool,
    },
}

/// How a call was let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The breaker is closed: an ordinary call.
    Normal,
    /// The breaker was open past its cooldown: this call is the one trial.
    Trial,
}

/// A circuit breaker: `threshold` consecutive failures open it; after `cooldown` one trial call
/// is let through (half-open); its success closes the breaker, its failure re-opens it.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: State,
    consecutive_failures: u32,
    last_error: Option<String>,
}

impl Breaker {
    /// A closed breaker. `threshold` is at least 1.
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: State::Closed,
            consecutive_failures: 0,
            last_error: None,
        }
    }

    /// Whether a call may go to this node now; `None` means skip the node.
    pub(crate) fn try_acquire(&mut self, now: Instant) -> Option<Admission> {
        match self.state {
            State::Closed => Some(Admission::Normal),
            State::Open { since } if now.saturating_duration_since(since) >= self.cooldown => {
                self.state = State::HalfOpen { trial: true };
                Some(Admission::Trial)
            }
            State::Open { .. } => None,
            State::HalfOpen { trial: false } => {
                self.state = State::HalfOpen { trial: true };
                Some(Admission::Trial)
            }
            // Only one trial at a time: the others skip the node.
            State::HalfOpen { trial: true } => None,
        }
    }

    /// The node answered usefully: close the breaker.
    pub(crate) fn on_success(&mut self) {
        self.state = State::Closed;
        self.consecutive_failures = 0;
    }

    /// The node failed (connect error, timeout, 429, 5xx).
    pub(crate) fn on_failure(&mut self, now: Instant, error: String) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_error = Some(error);
        match self.state {
            State::HalfOpen { .. } => self.state = State::Open { since: now },
            State::Closed if self.consecutive_failures >= self.threshold => {
                self.state = State::Open { since: now };
            }
            // Already open (a call admitted before it opened failed late): keep the cooldown.
            State::Closed | State::Open { .. } => {}
        }
    }

    /// A trial call was abandoned (its future dropped) without an outcome: let another call try.
    pub(crate) fn release_trial(&mut self) {
        if self.state == (State::HalfOpen { trial: true }) {
            self.state = State::HalfOpen { trial: false };
        }
    }

    /// The state as seen from outside: an open breaker past its cooldown reports `HalfOpen`,
    /// because the next call will try the node.
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { since } if now.saturating_duration_since(since) >= self.cooldown => {
                BreakerState::HalfOpen
            }
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Failures since the last success.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The most recent failure, kept after a success for diagnosis.
    pub(crate) fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, COOL);
        for _ in 0..2 {
            assert_eq!(b.try_acquire(t0), Some(Admission::Normal));
            b.on_failure(t0, "boom".into());
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.on_failure(t0, "boom".into());
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.try_acquire(t0), None);
        assert_eq!(b.consecutive_failures(), 3);
        assert_eq!(b.last_error(), Some("boom"));
    }

    #[test]
    fn success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, COOL);
        b.on_failure(t0, "x".into());
        b.on_success();
        b.on_failure(t0, "x".into());
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    /// A breaker opened by one failure, and the instant its cooldown ends.
    fn cooled_down() -> (Breaker, Instant) {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOL);
        b.on_failure(t0, "down".into());
        (b, t0 + COOL)
    }

    #[test]
    fn one_trial_after_cooldown_then_close_or_reopen() {
        let (mut b, later) = cooled_down();
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert_eq!(b.try_acquire(later), Some(Admission::Trial));
        // A second caller skips the node while the trial runs.
        assert_eq!(b.try_acquire(later), None);
        b.on_failure(later, "still down".into());
        assert_eq!(b.state(later), BreakerState::Open);
        assert_eq!(b.try_acquire(later), None);

        let much_later = later + COOL;
        assert_eq!(b.try_acquire(much_later), Some(Admission::Trial));
        b.on_success();
        assert_eq!(b.state(much_later), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn abandoned_trial_lets_another_call_try() {
        let (mut b, later) = cooled_down();
        assert_eq!(b.try_acquire(later), Some(Admission::Trial));
        b.release_trial();
        assert_eq!(b.try_acquire(later), Some(Admission::Trial));
    }
}
