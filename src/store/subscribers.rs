//! Outgoing events: each subscriber's cursor in the change feed and how its current event is
//! failing (`subscribers` table), and the feed events a subscriber is served.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Feed, Subscribers};

/// A subscriber's delivery state, as `subscribers` and `status` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubscriberRow {
    pub name: String,
    pub url: String,
    /// The last feed seq delivered (or skipped by the subscriber's filter).
    pub cursor: i64,
    /// Feed events after the cursor (seq is gap-free; not all may be wanted by the filter).
    pub lag: i64,
    /// `active` or `dead`.
    pub status: String,
    /// Failed attempts at the event after the cursor.
    pub attempts: u32,
    pub next_try_at: Option<String>,
    pub first_failure_at: Option<String>,
    pub last_error: Option<String>,
    /// Events delivered, ever.
    pub delivered: u64,
    pub last_delivery_at: Option<String>,
}

const ROW: &str = "SELECT name, url, cursor, \
    max(0, coalesce((SELECT max(seq) FROM feed), 0) - cursor), status, attempts, next_try_at, \
    first_failure_at, last_error, delivered, last_delivery_at FROM subscribers s";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SubscriberRow> {
    Ok(SubscriberRow {
        name: r.get(0)?,
        url: r.get(1)?,
        cursor: r.get(2)?,
        lag: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get(5)?,
        next_try_at: r.get(6)?,
        first_failure_at: r.get(7)?,
        last_error: r.get(8)?,
        delivered: r.get(9)?,
        last_delivery_at: r.get(10)?,
    })
}

impl Subscribers<'_> {
    /// The subscriber `name`, created at the current end of the feed when it has no row yet
    /// (a new subscriber gets the events from now on); its url is kept up to date. Writes
    /// only when something changes.
    pub fn subscriber_start(
        &mut self,
        name: &str,
        url: &str,
        now: &str,
    ) -> anyhow::Result<SubscriberRow> {
        if let Some(row) = self.subscriber(name)?
            && row.url == url
        {
            return Ok(row);
        }
        // The end of the feed even when the purge emptied it: AUTOINCREMENT's counter.
        self.0.conn.execute(
            "INSERT INTO subscribers (name, url, cursor, created_at) VALUES (?1, ?2, \
             max(coalesce((SELECT max(seq) FROM feed), 0), \
                 coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'feed'), 0)), ?3) \
             ON CONFLICT (name) DO UPDATE SET url = excluded.url",
            params![name, url, now],
        )?;
        self.subscriber(name)?
            .ok_or_else(|| anyhow::anyhow!("subscriber {name:?} vanished"))
    }

    /// The subscriber `name`, if it has a row.
    pub fn subscriber(&self, name: &str) -> anyhow::Result<Option<SubscriberRow>> {
        Ok(self
            .0
            .conn
            .query_row(&format!("{ROW} WHERE name = ?1"), [name], row)
            .optional()?)
    }

    /// Every subscriber with a row, by name.
    pub fn subscribers(&self) -> anyhow::Result<Vec<SubscriberRow>> {
        let mut q = self.0.conn.prepare(&format!("{ROW} ORDER BY name"))?;
        let rows = q.query_map([], row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

impl Feed<'_> {
    /// The last seq in the feed (0 when empty).
    pub fn feed_end(&self) -> anyhow::Result<i64> {
        Ok(self
            .0
            .conn
            .query_row("SELECT coalesce(max(seq), 0) FROM feed", [], |r| r.get(0))?)
    }
}

impl Subscribers<'_> {
    /// Moves the cursor of an active subscriber forward to `cursor` after `delivered` events
    /// were delivered (the others skipped by its filter), clearing any failure. A cursor never
    /// moves back, and a dead subscriber is left as it is.
    pub fn subscriber_advanced(
        &mut self,
        name: &str,
        cursor: i64,
        delivered: u64,
        now: &str,
    ) -> anyhow::Result<()> {
        self.0.conn.execute(
            "UPDATE subscribers SET cursor = max(cursor, ?2), attempts = 0, next_try_at = NULL, \
             first_failure_at = NULL, last_error = NULL, delivered = delivered + ?3, \
             last_delivery_at = CASE WHEN ?3 > 0 THEN ?4 ELSE last_delivery_at END \
             WHERE name = ?1 AND status = 'active'",
            params![name, cursor, delivered, now],
        )?;
        Ok(())
    }

    /// Records a failed attempt at the event after the cursor: retried not before
    /// `next_try_at`, or, with `None`, the subscriber is dead. `first_failure_at` is kept from
    /// the first failure of this event.
    pub fn subscriber_failed(
        &mut self,
        name: &str,
        error: &str,
        now: &str,
        next_try_at: Option<&str>,
    ) -> anyhow::Result<()> {
        self.0.conn.execute(
            "UPDATE subscribers SET attempts = attempts + 1, last_error = ?2, \
             first_failure_at = coalesce(first_failure_at, ?3), next_try_at = ?4, \
             status = CASE WHEN ?4 IS NULL THEN 'dead' ELSE status END \
             WHERE name = ?1 AND status = 'active'",
            params![name, error, now, next_try_at],
        )?;
        Ok(())
    }

    /// Revives a dead subscriber: it starts again at the event it stopped on, with a fresh
    /// deadline. Answers whether there was a dead subscriber of that name.
    pub fn subscriber_retry(&mut self, name: &str) -> anyhow::Result<bool> {
        let n = self.0.conn.execute(
            "UPDATE subscribers SET status = 'active', attempts = 0, next_try_at = NULL, \
             first_failure_at = NULL WHERE name = ?1 AND status = 'dead'",
            [name],
        )?;
        Ok(n == 1)
    }
}
