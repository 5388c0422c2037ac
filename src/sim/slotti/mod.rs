//! Slotti on the simulator (`Sim::with_slotti`, `huoltosync sim --slotti`): both of the seed's
//! APIs under `/slotti/` on the simulator's own port, for one contractor whose calendar is drawn
//! from the seed. What the seed (Slotti's API documentation) does not say is the simulator's
//! assumption, marked so here and in the README:
//!
//! - the booking answer (`POST bookings/`) is 200 with the created booking, in the shape of
//!   `GET bookings`; a taken slot is refused with 409, anything else wrong with 400 naming
//!   the field; the body of an error is `{"message": …}`;
//! - each `customerLinks` entry carries a `guid`, which `GET bookings/customerlink/{guid}` looks
//!   up; `GET bookings?from&to` lists the bookings that start in `[from, to)`;
//! - `X-Slotti-Digest` is the lowercase hex of HMAC-SHA256 of the exact body under the
//!   webhook's secret (absent without a secret); Basic is sent whenever `authUser` is set (the
//!   seed says real Slotti sends it over HTTPS only).
//!
//! - `model.rs`: the booking objects. `calendar.rs`: working hours and DST. `data.rs`: the
//!   account's services, technicians and other customers' bookings.
//! - `booking_api.rs`: `booking/{tili}/api/v2/`. `api.rs`: `api/v1/` (Basic auth).
//! - `admin.rs`: `/_sim/slotti/`. `faults.rs`: Slotti's faults and the preamble of every call.
//! - `webhooks.rs`: registrations and signed deliveries from a bounded queue.

mod admin;
mod api;
mod booking_api;
mod calendar;
mod data;
mod faults;
mod fields;
mod model;
mod webhooks;

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use super::state::Sim;
use model::Booking;

pub use faults::SlottiFaults;
pub use webhooks::SlottiStats;

/// The Slotti account's state, kept in the simulator's `Inner` when Slotti is on.
pub struct Slotti {
    seed: u64,
    /// Every booking, ours and other customers', by guid.
    bookings: BTreeMap<String, Booking>,
    /// The dates whose other customers' bookings have been drawn.
    drawn: BTreeSet<NaiveDate>,
    webhooks: Vec<webhooks::Webhook>,
    deliveries: webhooks::Deliveries,
    /// Calls received, by route (`"POST bookings/"`); not in the Tampuuri counters.
    calls: BTreeMap<String, u64>,
    rng: StdRng,
    last_stamp: DateTime<Utc>,
}

impl std::fmt::Debug for Slotti {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slotti")
            .field("bookings", &self.bookings.len())
            .field("webhooks", &self.webhooks.len())
            .finish_non_exhaustive()
    }
}

/// Other customers' bookings are drawn for the dates from this many days back …
const DRAW_BACK_DAYS: i64 = 400;
/// … to this many ahead (beyond, the calendar is empty), so memory stays bounded.
const DRAW_AHEAD_DAYS: i64 = 800;

impl Slotti {
    fn new(seed: u64) -> Slotti {
        let mut s = Slotti {
            seed,
            bookings: BTreeMap::new(),
            drawn: BTreeSet::new(),
            webhooks: Vec::new(),
            deliveries: webhooks::Deliveries::default(),
            calls: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x5107_7100),
            last_stamp: DateTime::<Utc>::MIN_UTC,
        };
        let today = calendar::local_date(Utc::now());
        s.draw(today - Duration::days(7), today + Duration::days(60));
        s
    }

    /// Draws other customers' bookings for the dates `from..=to` not drawn yet.
    fn draw(&mut self, from: NaiveDate, to: NaiveDate) {
        let today = calendar::local_date(Utc::now());
        let from = from.max(today - Duration::days(DRAW_BACK_DAYS));
        let to = to.min(today + Duration::days(DRAW_AHEAD_DAYS));
        for date in from.iter_days().take_while(|d| *d <= to) {
            if self.drawn.insert(date) {
                for b in data::day_bookings(self.seed, date) {
                    self.bookings.insert(b.guid.clone(), b);
                }
            }
        }
    }

    /// Draws the dates of `[from, to]` (local).
    fn draw_window(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) {
        self.draw(calendar::local_date(from), calendar::local_date(to));
    }

    /// `created`/`modified` of a change made now: milliseconds, strictly later than the last.
    fn stamp(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        let t = now.max(self.last_stamp + Duration::milliseconds(1));
        self.last_stamp = t;
        t
    }

    /// Whether `resource` is free for all of `[start, end)`.
    fn is_free(&self, resource: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        !self
            .bookings
            .values()
            .any(|b| b.overlaps(resource, start, end))
    }

    /// Every booking, by start (then guid).
    fn sorted(&self) -> Vec<&Booking> {
        let mut v: Vec<&Booking> = self.bookings.values().collect();
        v.sort_by(|a, b| (a.start, &a.guid).cmp(&(b.start, &b.guid)));
        v
    }
}

/// An error answer: `{"message": …}` (the body's shape is the simulator's assumption).
pub(super) fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "message": text.into() }))).into_response()
}

/// A refusal: its status and message, answered by [`error`].
pub(super) struct Refusal(StatusCode, String);

impl Refusal {
    pub(super) fn new(status: StatusCode, text: impl Into<String>) -> Refusal {
        Refusal(status, text.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// The refusal of a call while Slotti is off.
fn not_simulated() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "Slotti is not simulated: start the simulator with --slotti",
    )
}

/// Every Slotti route: the two APIs and the admin routes.
pub(super) fn routes() -> Router<Sim> {
    booking_api::routes()
        .merge(api::routes())
        .merge(admin::routes())
}

/// `path` and `path/`, both served by `method` (the seed writes some paths with a trailing
/// slash and some without).
fn both(router: Router<Sim>, path: &str, method: axum::routing::MethodRouter<Sim>) -> Router<Sim> {
    router
        .route(path, method.clone())
        .route(&format!("{path}/"), method)
}

impl Sim {
    /// Also serves Slotti (both APIs under `/slotti/`, admin routes under `/_sim/slotti/`):
    /// booking account `huoltosim`, API key `slotti-key`, two services, three technicians, and
    /// other customers' bookings drawn from the simulator's seed.
    pub fn with_slotti(self) -> Sim {
        {
            let mut inner = self.lock();
            if inner.slotti.is_none() {
                let seed = inner.seed;
                inner.slotti = Some(Slotti::new(seed));
            }
        }
        self
    }

    /// Every Slotti booking, ours and others', by start, in the shape of `GET bookings`
    /// (empty while Slotti is off).
    pub fn slotti_bookings(&self) -> Vec<Value> {
        let inner = self.lock();
        inner
            .slotti
            .as_ref()
            .map(|s| {
                s.sorted()
                    .into_iter()
                    .filter_map(|b| serde_json::to_value(b).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Changes fields of a booking as a dispatcher in Slotti would (unchecked: no working
    /// hours, no collision), stamps `modified` and fires `booking.modified`; answers the booking.
    pub fn slotti_patch(&self, guid: &str, fields: &Map<String, Value>) -> Result<Value, String> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let s = inner.slotti.as_mut().ok_or("Slotti is not simulated")?;
        let current = s
            .bookings
            .get(guid)
            .ok_or_else(|| format!("no booking {guid}"))?;
        let mut v = serde_json::to_value(current).map_err(|e| e.to_string())?;
        for key in ["guid", "created", "modified"] {
            if fields.contains_key(key) {
                return Err(format!("{key} cannot be changed"));
            }
        }
        let obj = v.as_object_mut().ok_or("a booking is an object")?;
        for (k, val) in fields {
            obj.insert(k.clone(), val.clone());
        }
        // A moved booking takes its set-up and clean-up times along unless they are given.
        for (edge, follows) in [("start", "warmupStart"), ("end", "cooldownEnd")] {
            if fields.contains_key(edge) && !fields.contains_key(follows) {
                let t = obj[edge].clone();
                obj.insert(follows.into(), t);
            }
        }
        let mut changed: Booking =
            serde_json::from_value(v).map_err(|e| format!("bad booking fields: {e}"))?;
        changed.modified = s.stamp();
        let answer = serde_json::to_value(&changed).map_err(|e| e.to_string())?;
        s.bookings.insert(guid.to_owned(), changed);
        webhooks::emit(&mut inner.faults.slotti, s, "booking.modified", &answer);
        Ok(answer)
    }

    /// Deletes a booking and fires `booking.deleted`; whether it existed.
    pub fn slotti_delete(&self, guid: &str) -> bool {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(s) = inner.slotti.as_mut() else {
            return false;
        };
        if s.bookings.remove(guid).is_none() {
            return false;
        }
        webhooks::emit(
            &mut inner.faults.slotti,
            s,
            "booking.deleted",
            &Value::String(guid.to_owned()),
        );
        true
    }

    /// Slotti's call counts and webhook delivery counts (zero while Slotti is off).
    pub fn slotti_stats(&self) -> SlottiStats {
        let inner = self.lock();
        inner
            .slotti
            .as_ref()
            .map(webhooks::stats)
            .unwrap_or_default()
    }
}
