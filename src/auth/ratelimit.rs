//! Per-client token bucket with a bounded map.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token bucket per client address; memory is bounded by `max_clients`.
///
/// IPv6 clients are keyed by their /64, since one host usually owns a whole /64.
/// The lock is std's and is never held across an `.await` (the API is sync).
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    per_sec: f64,
    burst: f64,
    max_clients: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn refilled(&self, now: Instant, per_sec: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * per_sec).min(burst)
    }
}

impl RateLimiter {
    /// A limiter allowing `burst` requests at once, then `per_minute` sustained.
    pub fn new(per_minute: u32, burst: u32, max_clients: usize) -> Self {
        RateLimiter {
            buckets: Mutex::new(HashMap::new()),
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            max_clients: max_clients.max(1),
        }
    }

    /// Takes one token for `ip` at `now`; `false` means rate limited.
    pub fn check(&self, ip: IpAddr, now: Instant) -> bool {
        let key = bucket_key(ip);
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(&key) {
            let tokens = b.refilled(now, self.per_sec, self.burst);
            b.last = now;
            if tokens >= 1.0 {
                b.tokens = tokens - 1.0;
                return true;
            }
            b.tokens = tokens;
            return false;
        }
        if map.len() >= self.max_clients {
            self.evict(&mut map, now);
        }
        map.insert(
            key,
            Bucket {
                tokens: self.burst - 1.0,
                last: now,
            },
        );
        true
    }

    /// Makes room: first drops buckets that have refilled completely (forgetting
    /// them changes nothing), then, if still full, the least recently used one.
    fn evict(&self, map: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        map.retain(|_, b| b.refilled(now, self.per_sec, self.burst) < self.burst);
        while map.len() >= self.max_clients {
            let oldest = map.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    map.remove(&k);
                }
                None => break,
            }
        }
    }

    /// How long until one more request is allowed to a client that ran dry.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_sec)
    }

    /// Number of clients currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn burst_then_limited_then_refills() {
        let rl = RateLimiter::new(60, 3, 100); // one per second
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        assert!(rl.check(ip, t0));
        assert!(rl.check(ip, t0));
        assert!(rl.check(ip, t0));
        assert!(!rl.check(ip, t0), "burst spent");
        assert!(!rl.check(ip, t0 + Duration::from_millis(500)));
        assert!(
            rl.check(ip, t0 + Duration::from_millis(1600)),
            "refilled one"
        );
        assert!(!rl.check(ip, t0 + Duration::from_millis(1700)));
        // a long pause refills to the burst, not beyond
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| rl.check(ip, later)));
        assert!(!rl.check(ip, later));
        assert_eq!(rl.retry_after(), Duration::from_secs(1));
    }

    /// With one request per client: `first` passes, `same` (the same client) is refused and
    /// `other` (another client) passes.
    fn one_each([first, same, other]: [&str; 3]) {
        let rl = RateLimiter::new(1, 1, 100);
        let t = Instant::now();
        assert!(rl.check(first.parse().expect("ip"), t));
        assert!(!rl.check(same.parse().expect("ip"), t));
        assert!(rl.check(other.parse().expect("ip"), t));
    }

    #[test]
    fn clients_are_independent() {
        one_each(["192.0.2.1", "192.0.2.1", "192.0.2.2"]);
    }

    #[test]
    fn ipv6_keyed_by_slash_64() {
        one_each(["2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:3::1"]);
    }

    #[test]
    fn map_stays_bounded() {
        let rl = RateLimiter::new(1, 2, 64);
        let t = Instant::now();
        for i in 0..10_000u32 {
            rl.check(
                IpAddr::V4(Ipv4Addr::from(i)),
                t + Duration::from_millis(u64::from(i)),
            );
            assert!(rl.len() <= 64);
        }
        assert_eq!(rl.len(), 64);
        // the most recent client is still limited (its bucket was not evicted)
        let last = IpAddr::V4(Ipv4Addr::from(9_999u32));
        let now = t + Duration::from_millis(10_000);
        assert!(rl.check(last, now));
        assert!(!rl.check(last, now));
    }
}
