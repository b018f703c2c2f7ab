//! Erlang B: the one implementation behind `plan` and the self-sizing capacity.
//!
//! Each call takes one spare gateway; the launch rule replaces it, and the replacement is ready
//! a lead time `L` later. So `k` spare slots behave like `k` servers of a loss system, each
//! "busy" for `L` after every call: with Poisson arrivals at rate `lambda`, the rejection
//! probability is `B(k, A)` with offered load `A = lambda * L` (exact for any distribution of L).

/// Erlang B: probability that all `n` servers are busy under offered load `a` (erlangs), by the
/// stable recursion `B(0,A) = 1`, `B(n,A) = A*B(n-1,A) / (n + A*B(n-1,A))`.
pub fn erlang_b(n: u32, a: f64) -> f64 {
    (1..=n).fold(1.0, |b, k| a * b / (f64::from(k) + a * b))
}

/// Search limit for [`spare_needed`].
pub const MAX_SPARE: u32 = 100_000;

/// The smallest `k` with `B(k, a) <= target` (B falls as k grows); `None` past [`MAX_SPARE`].
pub fn spare_needed(a: f64, target: f64) -> Option<u32> {
    if !(a.is_finite() && target.is_finite()) {
        return None;
    }
    let mut b = 1.0;
    for k in 0..=MAX_SPARE {
        if k > 0 {
            b = a * b / (f64::from(k) + a * b);
        }
        if b <= target {
            return Some(k);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_b_matches_published_values() {
        assert!((erlang_b(10, 4.0) - 0.005_308).abs() < 1e-5);
        assert!((erlang_b(5, 3.0) - 0.110_054).abs() < 1e-5);
        assert!((erlang_b(1, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(erlang_b(0, 7.0), 1.0);
        // Large loads stay finite and sensible with the recursion.
        let b = erlang_b(1000, 950.0);
        assert!(b > 0.0 && b < 0.05, "{b}");
    }

    #[test]
    fn spare_needed_inverts_erlang_b() {
        for a in [0.0, 0.1, 1.0, 4.0, 22.4, 300.0] {
            for target in [0.1, 0.01, 0.001] {
                let k = spare_needed(a, target).unwrap_or(u32::MAX);
                assert!(erlang_b(k, a) <= target);
                assert!(k == 0 || erlang_b(k - 1, a) > target, "a={a} t={target}");
            }
        }
        assert_eq!(spare_needed(4.0, 0.0054), Some(10));
        assert_eq!(spare_needed(4.0, 0.0053), Some(11));
        assert_eq!(spare_needed(f64::NAN, 0.01), None);
    }
}
