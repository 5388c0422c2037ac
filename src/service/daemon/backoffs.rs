//! Failure counts and backoff times per key: the daemon's accounts and kinds of work.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::backoff::Backoff;

/// Failure counts and the time until which each key (an account, a kind of work) waits.
#[derive(Debug)]
pub(crate) struct Backoffs<K> {
    map: HashMap<K, (u32, Instant)>,
}

impl<K> Default for Backoffs<K> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> Backoffs<K> {
    /// `(failures, time left)` while `key` is backing off at `now`.
    pub(crate) fn waiting(&self, key: &K, now: Instant) -> Option<(u32, Duration)> {
        self.map
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(n, until)| (*n, *until - now))
    }

    /// Counts a failure of `key` at `now`: `(failures, how long it now waits)`.
    pub(crate) fn failed(&mut self, key: K, rule: &Backoff, now: Instant) -> (u32, Duration) {
        let entry = self.map.entry(key).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        let wait = rule.delay(entry.0);
        entry.1 = now + wait;
        (entry.0, wait)
    }

    /// A success resets `key`; whether it had failed.
    pub(crate) fn succeeded(&mut self, key: &K) -> bool {
        self.map.remove(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failing_key_waits_twice_as_long_each_time_up_to_the_cap_and_a_success_resets_it() {
        let rule = Backoff::doubling(Duration::from_secs(2), Duration::from_secs(5));
        let mut b: Backoffs<&str> = Backoffs::default();
        let t0 = Instant::now();
        assert_eq!(b.waiting(&"a", t0), None, "nothing failed yet");
        // (failure at, expected failures, expected wait)
        for (at, n, wait) in [(0, 1, 2), (2, 2, 4), (6, 3, 5), (11, 4, 5)] {
            let now = t0 + Duration::from_secs(at);
            assert_eq!(b.waiting(&"a", now), None, "{at}: the last wait is over");
            assert_eq!(b.failed("a", &rule, now), (n, Duration::from_secs(wait)));
            assert_eq!(
                b.waiting(&"a", now + Duration::from_secs(1)),
                Some((n, Duration::from_secs(wait - 1)))
            );
            assert_eq!(b.waiting(&"b", now), None, "keys are independent");
        }
        assert!(b.succeeded(&"a"));
        assert!(!b.succeeded(&"a"), "reset once");
        assert_eq!(b.failed("a", &rule, t0), (1, Duration::from_secs(2)));
    }
}
