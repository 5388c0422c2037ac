//! The Tampuuri API as `tampuuri-api.md` assumes it: `selaa` pages, a ticket by id, the
//! workflow transitions (with the state machine and the follow-up rule), and `base64` creation,
//! each behind the preamble of [`super::faults`] and shaped by the faults it granted.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};

use super::deliveries::notification;
use super::faults::{Drift, Granted, apply_drift, preamble};
use super::state::{Filter, STATES, Sim, SimTicket, stamp, state_name};

/// The API's routes, under `/v10/api/`.
pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/v10/api/ilmoitukset/selaa", post(api_selaa))
        .route("/v10/api/ilmoitukset/base64", post(api_create))
        .route("/v10/api/ilmoitukset/{id}", get(api_get))
        .route("/v10/api/ilmoitukset/{id}/{action}", post(api_transition))
}

/// An error answer as Tampuuri gives one: `{"Message": …}`.
pub(super) fn message(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(json!({ "Message": text.into() }))).into_response()
}

/// A ticket as the API shows it, with the faults that shape it.
fn render(t: &SimTicket, g: &Granted) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Value::Object(obj) = &mut v {
        if g.int_states {
            let n = STATES
                .iter()
                .position(|s| *s == t.tila)
                .map_or(0, |i| i + 1);
            obj.insert("Tila".into(), n.into());
        }
        if g.extra_fields {
            obj.insert(
                "SimUusiKentta".into(),
                json!({ "Versio": 11, "Merkinnat": ["a", "b"] }),
            );
            obj.insert("Laskutettava".into(), Value::Bool(false));
        }
    }
    v
}

fn answer(g: &Granted, status: StatusCode, body: Value) -> Response {
    if g.malformed {
        let text = body.to_string();
        let cut = &text[..text.len() / 2];
        return (
            status,
            [("content-type", "application/json")],
            cut.to_owned(),
        )
            .into_response();
    }
    (status, Json(body)).into_response()
}

async fn api_selaa(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    let g = match preamble(&sim, &headers, "POST ilmoitukset/selaa".into()).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(Value::Object(q)) = serde_json::from_str::<Value>(&body) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Pyynnön runko ei ole JSON-objekti (body is not a JSON object)",
        );
    };
    let int = |k: &str| q.get(k).and_then(Value::as_i64);
    let offset = int("Offset").unwrap_or(0).max(0) as usize;
    let limit = int("Limit").unwrap_or(250);
    if !(1..=250).contains(&limit) {
        return message(
            StatusCode::BAD_REQUEST,
            format!("Limit {limit} ei ole sallittu: 1–250 (Limit must be 1 to 250)"),
        );
    }
    let assignee = int("TyonsuorittajaId");
    let states: Option<Vec<String>> = match q.get("Tila") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.iter().filter_map(state_name).collect()),
        Some(v) => Some(state_name(v).into_iter().collect()),
    };
    let asked = Filter {
        assignee,
        states: states.as_deref(),
    };
    let mut inner = sim.lock();
    let drift = inner.faults.drift;
    if offset == 0 {
        inner.drift_armed = drift != Drift::Off && inner.faults.drift_sweeps > 0;
    } else if inner.drift_armed {
        inner.drift_armed = false;
        inner.faults.drift_sweeps -= 1;
        if inner.faults.drift_sweeps == 0 {
            inner.faults.drift = Drift::Off;
        }
        apply_drift(&mut inner, &g.account, drift, asked);
    }
    // The page faults hit every account unless `only_account` names another one.
    let f = &inner.faults;
    let page_faults = f.only_account.as_ref().is_none_or(|a| *a == g.account);
    let (page_cap, no_total, ignore_filter, ignore_offset, lie_total) = if page_faults {
        (
            f.page_cap,
            f.no_total,
            f.ignore_filter,
            f.ignore_offset,
            f.lie_total,
        )
    } else {
        (0, false, false, false, 0)
    };
    if page_faults && f.no_state_list && matches!(q.get("Tila"), Some(Value::Array(_))) {
        return message(
            StatusCode::BAD_REQUEST,
            "Tila: odotettiin yksi arvo (Tila must be one value)",
        );
    }
    let offset = if ignore_offset { 0 } else { offset };
    let limit = match page_cap {
        0 => limit,
        cap => limit.min(i64::from(cap)),
    };
    let served = if ignore_filter {
        Filter {
            assignee: None,
            states: None,
        }
    } else {
        asked
    };
    let Some(acc) = inner.accounts.get(&g.account) else {
        return message(StatusCode::FORBIDDEN, "Tiliä ei ole (no such account)");
    };
    let (matching, page) = acc.tickets.page(served, offset, limit as usize);
    let total = match lie_total {
        0 => matching as u64,
        lie => lie,
    };
    let items: Vec<Value> = page.into_iter().map(|t| render(t, &g)).collect();
    drop(inner);
    let mut body = if g.meta_envelope {
        json!({ "Items": items, "metadata": { "total": total, "offset": offset, "limit": limit } })
    } else {
        json!({ "Offset": offset, "Limit": limit, "Total": total, "Items": items })
    };
    if no_total {
        if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("total");
        }
        if let Some(m) = body.as_object_mut() {
            m.remove("Total");
        }
    }
    if g.extra_fields {
        body["SimHakuId"] = json!("a1b2c3");
    }
    answer(&g, StatusCode::OK, body)
}

async fn api_get(State(sim): State<Sim>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let g = match preamble(&sim, &headers, "GET ilmoitukset/{id}".into()).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return message(
            StatusCode::BAD_REQUEST,
            format!("Tunniste {id:?} ei ole numero"),
        );
    };
    let found = sim
        .lock()
        .accounts
        .get(&g.account)
        .and_then(|a| a.tickets.get(id))
        .map(|t| render(t, &g));
    match found {
        Some(v) => answer(&g, StatusCode::OK, v),
        None => message(
            StatusCode::NOT_FOUND,
            format!("Ilmoitusta {id} ei löydy (not found)"),
        ),
    }
}

async fn api_transition(
    State(sim): State<Sim>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let g = match preamble(&sim, &headers, format!("POST ilmoitukset/{{id}}/{action}")).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return message(
            StatusCode::BAD_REQUEST,
            format!("Tunniste {id:?} ei ole numero"),
        );
    };
    let body: Value = if body.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Pyynnön runko ei ole JSON-objekti (body is not a JSON object)",
                );
            }
        }
    };
    let comment = body
        .get("Kommentti")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned();
    if let Err(refused) = apply_transition(&sim, &g.account, id, &action, body, &comment) {
        return *refused;
    }
    if let Some(t) = sim.ticket(&g.account, id) {
        sim.deliver(notification("IlmoitusTilamuutos", &g.account, &t));
    }
    g.after_apply().await;
    answer(&g, StatusCode::OK, json!({}))
}

/// Applies a workflow transition under the lock, or answers why not.
fn apply_transition(
    sim: &Sim,
    account: &str,
    id: i64,
    action: &str,
    body: Value,
    comment: &str,
) -> Result<(), Box<Response>> {
    let not_found = || {
        Box::new(message(
            StatusCode::NOT_FOUND,
            format!("Ilmoitusta {id} ei löydy (not found)"),
        ))
    };
    let mut inner = sim.lock();
    let acc = inner.accounts.get(account).ok_or_else(not_found)?;
    let t = acc.tickets.get(id).ok_or_else(not_found)?;
    let from = t.tila.clone();
    let to = match (action, from.as_str()) {
        ("vastaanota", "Avoin" | "Odottaa") => "Vastaanotettu",
        ("odotukseen", "Vastaanotettu") if comment.is_empty() => {
            return Err(Box::new(message(
                StatusCode::BAD_REQUEST,
                "Odotukseen siirto vaatii syyn (Kommentti is required)",
            )));
        }
        ("odotukseen", "Vastaanotettu") => "Odottaa",
        ("kuittaatehdyksi", "Avoin" | "Vastaanotettu" | "Odottaa") => {
            let open: Vec<i64> = acc
                .tickets
                .values()
                .filter(|c| {
                    c.parent_id == Some(id) && !matches!(c.tila.as_str(), "Tehty" | "Valmis")
                })
                .map(|c| c.id)
                .collect();
            if !open.is_empty() {
                return Err(Box::new(message(
                    StatusCode::CONFLICT,
                    format!(
                        "Ilmoituksella {id} on keskeneräisiä jatkoilmoituksia {open:?} (unfinished follow-ups)"
                    ),
                )));
            }
            "Tehty"
        }
        ("vastaanota" | "odotukseen" | "kuittaatehdyksi", _) => {
            return Err(Box::new(message(
                StatusCode::CONFLICT,
                format!(
                    "Ilmoitus {id} on tilassa {from}: {action} ei ole sallittu (not allowed in state {from})"
                ),
            )));
        }
        _ => {
            return Err(Box::new(message(
                StatusCode::NOT_FOUND,
                format!("Toimintoa {action} ei ole"),
            )));
        }
    };
    if let Some(acc) = inner.accounts.get_mut(account) {
        acc.tickets.update(id, |t| {
            t.tila = to.into();
            t.muokattu = stamp();
        });
    }
    inner.record(account, id, action, body);
    Ok(())
}

async fn api_create(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    let g = match preamble(&sim, &headers, "POST ilmoitukset/base64".into()).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(Value::Object(req)) = serde_json::from_str::<Value>(&body) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Pyynnön runko ei ole JSON-objekti (body is not a JSON object)",
        );
    };
    let text = |k: &str| {
        req.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut problems = Vec::new();
    if req
        .get("KustannuspaikkaId")
        .and_then(Value::as_i64)
        .is_none()
    {
        problems.push("KustannuspaikkaId puuttuu (required)".to_owned());
    }
    for (key, max, required) in [
        ("Otsikko", 255, true),
        ("TyotehtavanKuvaus", 8000, true),
        ("TyotehtavanLisatiedot", 20000, false),
    ] {
        let len = text(key).chars().count();
        if required && len == 0 {
            problems.push(format!("{key} puuttuu (required)"));
        }
        if len > max {
            problems.push(format!("{key} on liian pitkä: {len} > {max}"));
        }
    }
    let mut attachments = Vec::new();
    for (i, a) in req
        .get("Liitteet")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let name = a
            .get("FileName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match a
            .get("Base64Content")
            .and_then(Value::as_str)
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        {
            Some(Ok(bytes)) if !name.is_empty() => attachments.push(json!({
                "FileName": name,
                "ContentType": a.get("ContentType"),
                "Description": a.get("Description"),
                "Size": bytes.len(),
            })),
            _ => problems.push(format!(
                "Liitteet[{i}]: FileName and valid Base64Content required"
            )),
        }
    }
    let parent = req.get("ParentId").and_then(Value::as_i64);
    if let Some(p) = parent
        && !sim
            .lock()
            .accounts
            .get(&g.account)
            .is_some_and(|a| a.tickets.contains(p))
    {
        problems.push(format!(
            "ParentId {p}: ilmoitusta ei löydy (parent not found)"
        ));
    }
    if !problems.is_empty() {
        return message(StatusCode::BAD_REQUEST, problems.join("; "));
    }
    let mut fields = req.clone();
    fields.insert("Liitteet".into(), Value::Array(attachments.clone()));
    fields.insert("Tila".into(), "Avoin".into());
    if !fields.contains_key("TyonsuorittajaId") {
        fields.insert("TyonsuorittajaId".into(), Value::Null);
    }
    let id = match sim.insert(&g.account, &fields) {
        Ok(id) => id,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    let mut logged = req;
    logged.insert("Liitteet".into(), Value::Array(attachments));
    sim.lock()
        .record(&g.account, id, "create", Value::Object(logged));
    g.after_apply().await;
    answer(&g, StatusCode::OK, json!({ "Id": id }))
}
