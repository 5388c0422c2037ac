//! The count of calls one account (or one remote) made, by endpoint, until they are recorded
//! in the store's `api_calls`; and the requests that never reached the remote, which are not
//! calls and never billed. The exchange is handed a meter with every call, so the remote
//! clients need nothing of the store.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::time;
use crate::store::Handle;

/// Calls made, by endpoint template.
pub type CallCounts = BTreeMap<&'static str, u64>;

/// One account's calls not yet recorded, and its unreached requests.
#[derive(Debug)]
pub struct Meter {
    /// The `account` of `api_calls` (an account's name, or `slotti`).
    account: String,
    calls: Mutex<CallCounts>,
    /// Requests that never reached the remote (no connection): not billed, not in `calls`.
    unreached: AtomicU64,
}

impl Meter {
    pub fn new(account: impl Into<String>) -> Meter {
        Meter {
            account: account.into(),
            calls: Mutex::default(),
            unreached: AtomicU64::new(0),
        }
    }

    /// Whose calls these are.
    pub fn account(&self) -> &str {
        &self.account
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, CallCounts> {
        // A panic while counting leaves the counts whole: they are plain numbers.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One call sent to `endpoint` (retries included: each one is billed).
    pub(crate) fn count(&self, endpoint: &'static str) {
        *self.calls().entry(endpoint).or_default() += 1;
    }

    /// One request that never reached the remote.
    pub(crate) fn count_unreached(&self) {
        self.unreached.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls sent and not yet recorded, for a report that has no store to meter them in.
    pub fn unrecorded(&self) -> u64 {
        self.calls().values().sum()
    }

    /// Requests that never reached the remote (connection refused, DNS, TLS handshake, proxy)
    /// since the last call of this: not API calls, so never metered.
    pub fn take_unreached(&self) -> u64 {
        self.unreached.swap(0, Ordering::Relaxed)
    }

    /// Records the calls sent since they were last recorded into the store's `api_calls`, by
    /// endpoint, on today's Helsinki day, and answers how many there were. If the store cannot
    /// take them they stay counted here, for the next time, and the error is returned.
    pub async fn record(&self, store: &Handle) -> anyhow::Result<u64> {
        let calls = std::mem::take(&mut *self.calls());
        if calls.is_empty() {
            return Ok(0);
        }
        let n = calls.values().sum();
        let (name, day, kept) = (
            self.account.clone(),
            time::local_day(time::now()),
            calls.clone(),
        );
        if let Err(e) = store
            .call(move |s| {
                s.meter()
                    .record_calls(&name, &day, calls.iter().map(|(e, n)| (*e, *n)))
            })
            .await
        {
            let mut meter = self.calls();
            for (endpoint, k) in kept {
                *meter.entry(endpoint).or_default() += k;
            }
            return Err(e.context(format!(
                "account {}: cannot meter {n} API call(s) in the store",
                self.account
            )));
        }
        Ok(n)
    }
}
