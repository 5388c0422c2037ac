//! The admin endpoints under `/_sim/`: what a test or benchmark in another process reads (call
//! counts, the change log, tickets) and changes (faults, tickets) without going through the
//! API, so nothing here is counted as a call.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::api::message;
use super::state::{LogEntry, Sim, SimTicket};

/// The admin routes, under `/_sim/`.
pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/stats", get(admin_stats))
        .route("/_sim/log", get(admin_log))
        .route(
            "/_sim/faults",
            post(admin_set_faults).delete(admin_clear_faults),
        )
        .route("/_sim/tickets", post(admin_create))
        .route("/_sim/tickets/{account}", get(admin_list))
        .route(
            "/_sim/tickets/{account}/{id}",
            get(admin_get).patch(admin_patch).delete(admin_delete),
        )
}

async fn admin_stats(State(sim): State<Sim>) -> Json<Value> {
    let inner = sim.lock();
    Json(
        json!({ "total_calls": inner.total_calls, "calls": inner.calls, "max_in_flight": inner.max_in_flight }),
    )
}

async fn admin_log(State(sim): State<Sim>) -> Json<Vec<LogEntry>> {
    Json(sim.log())
}

async fn admin_set_faults(State(sim): State<Sim>, Json(patch): Json<Value>) -> Response {
    match sim.set_faults(&patch) {
        Ok(f) => Json(f).into_response(),
        Err(e) => message(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

async fn admin_clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn admin_create(State(sim): State<Sim>, Json(fields): Json<Map<String, Value>>) -> Response {
    let account = fields
        .get("account")
        .and_then(Value::as_str)
        .unwrap_or("sim-1")
        .to_owned();
    match sim.insert(&account, &fields) {
        Ok(id) => Json(json!({ "Id": id })).into_response(),
        Err(e) => message(StatusCode::BAD_REQUEST, e),
    }
}

async fn admin_list(State(sim): State<Sim>, Path(account): Path<String>) -> Json<Vec<SimTicket>> {
    Json(sim.tickets(&account))
}

async fn admin_get(State(sim): State<Sim>, Path((account, id)): Path<(String, i64)>) -> Response {
    match sim.ticket(&account, id) {
        Some(t) => Json(t).into_response(),
        None => message(
            StatusCode::NOT_FOUND,
            format!("no ticket {id} in {account:?}"),
        ),
    }
}

async fn admin_patch(
    State(sim): State<Sim>,
    Path((account, id)): Path<(String, i64)>,
    Json(fields): Json<Map<String, Value>>,
) -> Response {
    match sim.patch(&account, id, &fields) {
        Ok(t) => Json(t).into_response(),
        Err(e) => message(StatusCode::BAD_REQUEST, e),
    }
}

async fn admin_delete(
    State(sim): State<Sim>,
    Path((account, id)): Path<(String, i64)>,
) -> StatusCode {
    if sim.delete(&account, id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
