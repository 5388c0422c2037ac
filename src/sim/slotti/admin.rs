//! Slotti's admin routes, under `/_sim/slotti/` (no auth, not counted): every booking, ours or
//! not; a dispatcher's change or deletion of one (firing its webhook); the counters.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::super::state::Sim;
use super::{error, not_simulated};

pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/slotti/bookings", get(list))
        .route(
            "/_sim/slotti/bookings/{guid}",
            axum::routing::patch(patch).delete(remove),
        )
        .route("/_sim/slotti/stats", get(stats))
}

fn enabled(sim: &Sim) -> bool {
    sim.lock().slotti.is_some()
}

/// Every booking, by start, in the shape of `GET bookings`, as a JSON array.
async fn list(State(sim): State<Sim>) -> Response {
    if !enabled(&sim) {
        return not_simulated().into_response();
    }
    Json(sim.slotti_bookings()).into_response()
}

/// Any booking fields (`start` and `end` too), applied unchecked; fires `booking.modified`.
async fn patch(
    State(sim): State<Sim>,
    Path(guid): Path<String>,
    Json(fields): Json<Map<String, Value>>,
) -> Response {
    if !enabled(&sim) {
        return not_simulated().into_response();
    }
    match sim.slotti_patch(&guid, &fields) {
        Ok(b) => Json(b).into_response(),
        Err(e) if e.starts_with("no booking") => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// Deletes a booking; fires `booking.deleted`.
async fn remove(State(sim): State<Sim>, Path(guid): Path<String>) -> Response {
    if !enabled(&sim) {
        return not_simulated().into_response();
    }
    if sim.slotti_delete(&guid) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no booking {guid}"))
    }
}

async fn stats(State(sim): State<Sim>) -> Response {
    if !enabled(&sim) {
        return not_simulated().into_response();
    }
    Json(sim.slotti_stats()).into_response()
}
