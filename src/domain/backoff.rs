//! The one backoff rule: a delay that starts at `first`, doubles with every failure and stops
//! growing at `max`, optionally with jitter. Tampuuri call retries, outbox retries, webhook
//! fetch retries, subscriber delivery retries and the daemon's account and work backoff all
//! use it.

use std::time::Duration;

/// Exponential backoff from `first`, doubling, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub first: Duration,
    /// No delay is longer than this (jitter included).
    pub max: Duration,
    /// Spread each delay over `[d/2, d]` so that many clients failing together do not retry
    /// together.
    pub jitter: bool,
}

impl Backoff {
    /// Doubling from `first` up to `max`, without jitter.
    pub const fn doubling(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            jitter: false,
        }
    }

    /// The same, with jitter.
    pub const fn jittered(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            jitter: true,
        }
    }

    /// The nominal delay after `failures` failures (counting from 1; 0 counts as 1):
    /// `first * 2^(failures-1)`, at most `max`. Saturates instead of overflowing.
    pub fn nominal(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(63);
        self.first
            .checked_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX)
            .min(self.max)
    }

    /// The delay to wait after `failures` failures: the nominal delay, or with jitter a delay
    /// drawn from `[nominal/2, nominal]`.
    pub fn delay(&self, failures: u32) -> Duration {
        self.spread(failures, rand::random::<f64>())
    }

    /// [`Backoff::delay`] with the random draw `unit` in `[0, 1)` given (for tests).
    pub fn spread(&self, failures: u32, unit: f64) -> Duration {
        let d = self.nominal(failures);
        if !self.jitter {
            return d;
        }
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        d / 2 + (d / 2).mul_f64(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_from_first_and_stop_at_max() {
        let b = Backoff::doubling(S, 300 * S);
        let table = [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (8, 128),
            (9, 256),
            (10, 300),
            (40, 300),
            (u32::MAX, 300),
        ];
        for (failures, secs) in table {
            assert_eq!(b.delay(failures), secs * S, "after {failures} failures");
        }
    }

    #[test]
    fn huge_first_delays_saturate_instead_of_overflowing() {
        let b = Backoff::doubling(Duration::MAX / 2, Duration::MAX);
        assert_eq!(b.nominal(5), Duration::MAX);
        let b = Backoff::doubling(Duration::from_secs(u64::MAX / 4), Duration::from_secs(60));
        assert_eq!(b.nominal(3), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_between_half_and_the_nominal_delay() {
        let b = Backoff::jittered(S, 60 * S);
        for (failures, unit, want_ms) in [
            (1, 0.0, 500),
            (1, 0.999_999, 999),
            (3, 0.5, 3_000),
            (10, 0.0, 30_000),
            (10, 1.0, 60_000),
            (10, f64::NAN, 30_000),
            (10, -3.0, 30_000),
            (10, 7.0, 60_000),
        ] {
            assert_eq!(
                b.spread(failures, unit).as_millis(),
                want_ms,
                "{failures} {unit}"
            );
        }
        for failures in 1..20 {
            let d = b.delay(failures);
            assert!(d >= b.nominal(failures) / 2 && d <= b.nominal(failures));
        }
    }
}
