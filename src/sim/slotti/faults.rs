//! Slotti's faults, set through the simulator's `POST /_sim/faults` next to Tampuuri's (flat
//! keys: `slot_taken_next` and the `slotti_*` ones, so none clashes with a Tampuuri fault), and
//! the preamble every Slotti call passes: Slotti on, counted, latency, Basic auth for
//! `api/v1/`, then errors, rate limits and dropped connections.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::super::faults::drop_connection;
use super::super::state::Sim;
use super::{data, error, not_simulated};

/// Faults of the Slotti APIs. Rates are probabilities per call; `*_next` hit the next n calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SlottiFaults {
    /// The next n booking POSTs find their slot taken: someone else books it just before
    /// (a real booking, with its `booking.created`), and ours is refused with 409.
    pub slot_taken_next: u32,
    /// Added to every Slotti call, in milliseconds.
    pub slotti_latency_ms: u64,
    pub slotti_error_rate: f64,
    /// The next n Slotti calls answer 500.
    pub slotti_error_next: u32,
    pub slotti_rate_limit_rate: f64,
    /// The next n Slotti calls answer 429 with `Retry-After: slotti_retry_after_secs`.
    pub slotti_rate_limit_next: u32,
    pub slotti_retry_after_secs: u64,
    /// The connection is closed before the call is applied.
    pub slotti_drop_rate: f64,
    pub slotti_drop_next: u32,
    /// A booking POST is applied (the booking is made, its webhooks fire), then the connection
    /// is closed without an answer. Counts booking POSTs only.
    pub slotti_drop_after_apply_rate: f64,
    pub slotti_drop_after_apply_next: u32,
    /// The next n booking POSTs make the booking as asked (its webhooks fire), but answer with
    /// another booking's object: the earliest other booking in the calendar (one is made a
    /// week later on the same resource when there is none). A lying or buggy Slotti.
    pub slotti_answer_other_next: u32,
    /// Availability times in the seed's exact form without seconds (`2016-04-04T09:00+03:00`).
    pub slotti_short_times: bool,
    /// Webhook events dropped entirely (never sent).
    pub slotti_webhook_drop_rate: f64,
    pub slotti_webhook_drop_next: u32,
    /// Webhook events delivered twice, with the same `X-Slotti-Shot-ID`.
    pub slotti_webhook_redeliver_rate: f64,
    pub slotti_webhook_redeliver_next: u32,
}

impl Default for SlottiFaults {
    fn default() -> Self {
        SlottiFaults {
            slot_taken_next: 0,
            slotti_latency_ms: 0,
            slotti_error_rate: 0.0,
            slotti_error_next: 0,
            slotti_rate_limit_rate: 0.0,
            slotti_rate_limit_next: 0,
            slotti_retry_after_secs: 1,
            slotti_drop_rate: 0.0,
            slotti_drop_next: 0,
            slotti_drop_after_apply_rate: 0.0,
            slotti_drop_after_apply_next: 0,
            slotti_answer_other_next: 0,
            slotti_short_times: false,
            slotti_webhook_drop_rate: 0.0,
            slotti_webhook_drop_next: 0,
            slotti_webhook_redeliver_rate: 0.0,
            slotti_webhook_redeliver_next: 0,
        }
    }
}

/// A counter fault or a rate fault, rolled once.
pub(super) fn roll(next: &mut u32, rate: f64, rng: &mut impl Rng) -> bool {
    if *next > 0 {
        *next -= 1;
        return true;
    }
    rate > 0.0 && rng.random_bool(rate.min(1.0))
}

/// What a call may do after its preamble.
pub(super) struct Granted {
    drop_after_apply: bool,
    pub short_times: bool,
}

impl Granted {
    /// After a booking was made: drop the connection if the faults say so.
    pub(super) fn after_apply(&self) {
        if self.drop_after_apply {
            drop_connection();
        }
    }
}

/// Which kind of call this is, for the preamble.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    /// The booking API (no key).
    Booking,
    /// The booking API's `POST bookings/` (drop-after-apply applies).
    Book,
    /// The Slotti API (Basic auth with the key).
    Api,
}

/// Counts the call, waits the latency, checks the key (`Call::Api`), and rolls the faults.
pub(super) async fn preamble(
    sim: &Sim,
    headers: &HeaderMap,
    route: &str,
    call: Call,
) -> Result<Granted, Response> {
    let latency = {
        let mut inner = sim.lock();
        let latency = inner.faults.slotti.slotti_latency_ms;
        let Some(s) = inner.slotti.as_mut() else {
            return Err(not_simulated().into_response());
        };
        *s.calls.entry(route.to_owned()).or_default() += 1;
        latency
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if call == Call::Api && basic_user(headers).as_deref() != Some(data::API_KEY) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "HTTP Basic with the API key as the user name is required",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Slotti\""),
        );
        return Err(r);
    }
    let mut guard = sim.lock();
    let inner = &mut *guard;
    let Some(s) = inner.slotti.as_mut() else {
        return Err(not_simulated().into_response());
    };
    let f = &mut inner.faults.slotti;
    let rng = &mut s.rng;
    // One fault a call, in this order, so that each `*_next` hits a call of its own.
    let failed = roll(&mut f.slotti_error_next, f.slotti_error_rate, rng);
    let limited = !failed && roll(&mut f.slotti_rate_limit_next, f.slotti_rate_limit_rate, rng);
    let dropped = !failed && !limited && roll(&mut f.slotti_drop_next, f.slotti_drop_rate, rng);
    let drop_after_apply = call == Call::Book
        && !(failed || limited || dropped)
        && roll(
            &mut f.slotti_drop_after_apply_next,
            f.slotti_drop_after_apply_rate,
            rng,
        );
    let (retry_after, short_times) = (f.slotti_retry_after_secs, f.slotti_short_times);
    drop(guard);
    if failed {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated server error",
        ));
    }
    if limited {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return Err(r);
    }
    if dropped {
        drop_connection();
    }
    Ok(Granted {
        drop_after_apply,
        short_times,
    })
}

/// The user name of an HTTP Basic `Authorization` header (the password is not needed).
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.clone(), |(u, _)| u.to_owned()),
    )
}
