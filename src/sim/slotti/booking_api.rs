//! The booking API (`Ajanvaraus API`), per booking page: `/slotti/booking/{tili}/api/v2/`.
//! No key (it is the programmatic twin of the public booking page); an unknown `{tili}` is 404.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::super::state::Sim;
use super::data::{self, BOOKING_ACCOUNT, RESOURCES, Resource};
use super::faults::{Call, preamble};
use super::fields::{self, bad};
use super::model::{Booking, Customer, CustomerLink};
use super::{Refusal, both, calendar, error, webhooks};

/// The longest availability window asked at once.
const MAX_WINDOW_DAYS: i64 = 92;
/// The longest service combination.
const MAX_MINUTES: u32 = 8 * 60;

pub(super) fn routes() -> Router<Sim> {
    let base = "/slotti/booking/{tili}/api/v2";
    let r = Router::new();
    let r = both(r, &format!("{base}/services"), get(services));
    let r = both(r, &format!("{base}/resources"), get(resources));
    let r = both(
        r,
        &format!("{base}/bookings/serviceavailability"),
        post(availability),
    );
    let r = both(r, &format!("{base}/bookings"), post(book));
    both(
        r,
        &format!("{base}/bookings/customerlink/{{guid}}"),
        get(customer_link),
    )
}

fn account(tili: &str) -> Result<(), Refusal> {
    if tili == BOOKING_ACCOUNT {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no booking page {tili:?}"),
        ))
    }
}

async fn services(State(sim): State<Sim>, Path(tili): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = preamble(&sim, &h, "GET services", Call::Booking).await {
        return r;
    }
    match account(&tili) {
        Ok(()) => Json(data::services_json()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn resources(State(sim): State<Sim>, Path(tili): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = preamble(&sim, &h, "GET resources", Call::Booking).await {
        return r;
    }
    match account(&tili) {
        Ok(()) => Json(data::resources_json()).into_response(),
        Err(r) => r.into_response(),
    }
}

/// The service combination of `serviceLinks` at `path`: its first service and total minutes.
fn services_of(v: &Value, path: &str) -> Result<(&'static data::Service, u32), Refusal> {
    let links = fields::req(v, path)?
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| bad(format!("{path} must be a non-empty list")))?;
    let mut first = None;
    let mut total: u32 = 0;
    for (i, link) in links.iter().enumerate() {
        let at = |f: &str| format!("{path}[{i}].{f}");
        let guid = fields::text(link, "serviceGuid")
            .map_err(|_| bad(format!("missing field {}", at("serviceGuid"))))?;
        let service = data::service(&guid)
            .ok_or_else(|| bad(format!("{}: no service {guid}", at("serviceGuid"))))?;
        let minutes = match fields::opt(link, "durationMinutes") {
            None => service.minutes,
            Some(m) => m
                .as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| *m > 0)
                .ok_or_else(|| {
                    bad(format!(
                        "{} must be a positive integer",
                        at("durationMinutes")
                    ))
                })?,
        };
        total = total.saturating_add(minutes);
        first.get_or_insert(service);
    }
    if total > MAX_MINUTES {
        return Err(bad(format!(
            "{path}: {total} minutes is longer than a working day"
        )));
    }
    let first = first.ok_or_else(|| bad(format!("{path} must be a non-empty list")))?;
    Ok((first, total))
}

/// The resource of `resourceId` at `path`, if given.
fn resource_of(v: &Value, path: &str) -> Result<Option<&'static Resource>, Refusal> {
    match fields::opt_int(v, path)? {
        None => Ok(None),
        Some(id) => data::resource_by_id(id)
            .map(Some)
            .ok_or_else(|| bad(format!("{path}: no resource {id}"))),
    }
}

/// `POST bookings/serviceavailability`: for each local date of the window, the free slots
/// of the asked services, on one resource or on every one.
async fn availability(
    State(sim): State<Sim>,
    Path(tili): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let granted = match preamble(&sim, &h, "POST bookings/serviceavailability", Call::Booking).await
    {
        Ok(g) => g,
        Err(r) => return r,
    };
    match availability_of(&sim, &tili, &body, granted.short_times) {
        Ok(days) => Json(days).into_response(),
        Err(r) => r.into_response(),
    }
}

fn availability_of(sim: &Sim, tili: &str, body: &Bytes, short: bool) -> Result<Value, Refusal> {
    account(tili)?;
    let v = fields::json(body)?;
    fields::req(&v, "params")?;
    let start = fields::time(&v, "params.start")?;
    let end = fields::time(&v, "params.end")?;
    if end <= start {
        return Err(bad("params.end must be after params.start"));
    }
    if end - start > Duration::days(MAX_WINDOW_DAYS) {
        return Err(bad(format!(
            "params.start to params.end is more than {MAX_WINDOW_DAYS} days"
        )));
    }
    let (_, minutes) = services_of(&v, "params.serviceLinks")?;
    let only = resource_of(&v, "params.resourceId")?;
    let now = Utc::now();
    let mut inner = sim.lock();
    let Some(s) = inner.slotti.as_mut() else {
        return Err(super::not_simulated());
    };
    s.draw_window(start, end);
    let mut days = Vec::new();
    for date in calendar::dates(start, end) {
        let mut times: Vec<(DateTime<Utc>, i64, Value)> = Vec::new();
        for r in RESOURCES
            .iter()
            .filter(|r| only.is_none_or(|o| o.id == r.id))
        {
            for (a, b) in calendar::slots(date, minutes) {
                if a >= start && b <= end && a > now && s.is_free(r.guid, a, b) {
                    times.push((
                        a,
                        r.id,
                        json!({
                            "resourceGuid": r.guid,
                            "resourceId": r.id,
                            "start": calendar::local(a, short),
                            "end": calendar::local(b, short),
                        }),
                    ));
                }
            }
        }
        times.sort_by_key(|(a, id, _)| (*a, *id));
        let mut day = json!({
            "availableTimes": times.into_iter().map(|(_, _, t)| t).collect::<Vec<_>>(),
            "date": date.to_string(),
        });
        if let Some(r) = only {
            day["resourceGuid"] = r.guid.into();
        }
        days.push(day);
    }
    Ok(Value::Array(days))
}

/// What a booking POST asks for, checked.
struct Request {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    resource: Option<&'static Resource>,
    any_provider: bool,
    service: &'static data::Service,
    minutes: u32,
    first_name: String,
    last_name: String,
    email: Option<String>,
    phone: Option<String>,
    language: Option<String>,
    person_count: u32,
    info: Option<String>,
}

fn request(v: &Value) -> Result<Request, Refusal> {
    let start = fields::time(v, "start")?;
    let end = fields::time(v, "end")?;
    let (service, minutes) = services_of(v, "serviceLinks")?;
    let any_provider = fields::opt_bool(v, "anyProvider")?.unwrap_or(false);
    let resource = resource_of(v, "resourceId")?;
    if resource.is_none() && !any_provider {
        return Err(bad("missing field resourceId (or anyProvider: true)"));
    }
    if calendar::minutes(start, end) != i64::from(minutes) {
        return Err(bad(format!(
            "start to end is {} minutes, the serviceLinks take {minutes}",
            calendar::minutes(start, end)
        )));
    }
    calendar::check_bookable(start, end).map_err(bad)?;
    if start <= Utc::now() {
        return Err(bad("start has passed"));
    }
    fields::req(v, "customerLink")?;
    fields::req(v, "customerLink.customer")?;
    let c = "customerLink.customer";
    let email = fields::opt_str(v, &format!("{c}.email"))?.filter(|s| !s.trim().is_empty());
    let phone = fields::opt_str(v, &format!("{c}.phone"))?.filter(|s| !s.trim().is_empty());
    if email.is_none() && phone.is_none() {
        return Err(bad(format!(
            "missing field {c}.email or {c}.phone (one is required)"
        )));
    }
    let person_count = match fields::opt_int(v, "customerLink.personCount")? {
        None => 1,
        Some(1) => 1,
        Some(n) => {
            return Err(bad(format!(
                "customerLink.personCount is {n}: only 1 without the group size add-on"
            )));
        }
    };
    Ok(Request {
        start,
        end,
        resource,
        any_provider,
        service,
        minutes,
        first_name: fields::text(v, &format!("{c}.firstName"))?,
        last_name: fields::text(v, &format!("{c}.lastName"))?,
        email,
        phone,
        language: fields::opt_str(v, &format!("{c}.language"))?,
        person_count,
        info: fields::opt_str(v, "info")?,
    })
}

/// `POST bookings/`: books a free slot on the grid of working hours; a taken slot is 409.
async fn book(
    State(sim): State<Sim>,
    Path(tili): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let granted = match preamble(&sim, &h, "POST bookings/", Call::Book).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let made = match book_now(&sim, &tili, &body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    granted.after_apply();
    Json(made).into_response()
}

fn book_now(sim: &Sim, tili: &str, body: &Bytes) -> Result<Value, Refusal> {
    account(tili)?;
    let req = request(&fields::json(body)?)?;
    let mut guard = sim.lock();
    let inner = &mut *guard;
    let Some(s) = inner.slotti.as_mut() else {
        return Err(super::not_simulated());
    };
    s.draw_window(req.start, req.end);
    let candidates: Vec<&'static Resource> = match req.resource {
        Some(r) => vec![r],
        None => RESOURCES.iter().collect(),
    };
    let Some(resource) = candidates
        .into_iter()
        .find(|r| s.is_free(r.guid, req.start, req.end))
    else {
        return Err(taken());
    };
    let f = &mut inner.faults.slotti;
    if f.slot_taken_next > 0 {
        f.slot_taken_next -= 1;
        // Someone else was quicker: their booking is real, ours is refused.
        let created = s.stamp();
        let other = data::other_booking(&mut s.rng, resource, req.start, req.minutes, created);
        let payload = serde_json::to_value(&other).unwrap_or(Value::Null);
        s.bookings.insert(other.guid.clone(), other);
        webhooks::emit(f, s, "booking.created", &payload);
        return Err(taken());
    }
    let created = s.stamp();
    let customer = Customer::person(
        data::guid(&mut s.rng),
        &req.first_name,
        &req.last_name,
        req.email,
        req.phone,
        Some(req.language.unwrap_or_else(|| "fi".into())),
    );
    let booking = Booking {
        guid: data::guid(&mut s.rng),
        resource_guid: resource.guid.into(),
        created,
        modified: created,
        warmup_start: req.start,
        start: req.start,
        end: req.end,
        cooldown_end: req.end,
        info: req.info,
        private_notes: None,
        busy_time: false,
        busy_time_title: None,
        any_provider: req.any_provider,
        customer_links: vec![CustomerLink {
            guid: data::guid(&mut s.rng),
            customer,
            online_booking: true,
            person_count: req.person_count,
            token: data::token(&mut s.rng),
        }],
        service_links: vec![data::service_link(req.service, req.minutes)],
        attributes: Vec::new(),
    };
    let answer = serde_json::to_value(&booking).unwrap_or(Value::Null);
    let (ours, start, minutes) = (booking.guid.clone(), booking.start, req.minutes);
    s.bookings.insert(booking.guid.clone(), booking);
    webhooks::emit(f, s, "booking.created", &answer);
    if f.slotti_answer_other_next > 0 {
        f.slotti_answer_other_next -= 1;
        return Ok(another(f, s, &ours, resource, (start, minutes)));
    }
    Ok(answer)
}

/// `slotti_answer_other_next`: the object of the earliest booking other than `ours`; with no
/// other booking, one is made a week after the request on the same resource.
fn another(
    f: &mut super::faults::SlottiFaults,
    s: &mut super::Slotti,
    ours: &str,
    resource: &'static Resource,
    (start, minutes): (DateTime<Utc>, u32),
) -> Value {
    if let Some(b) = s.sorted().into_iter().find(|b| b.guid != ours) {
        return serde_json::to_value(b).unwrap_or(Value::Null);
    }
    let created = s.stamp();
    let start = start + Duration::days(7);
    let other = data::other_booking(&mut s.rng, resource, start, minutes, created);
    let payload = serde_json::to_value(&other).unwrap_or(Value::Null);
    s.bookings.insert(other.guid.clone(), other);
    webhooks::emit(f, s, "booking.created", &payload);
    payload
}

fn taken() -> Refusal {
    Refusal::new(StatusCode::CONFLICT, "the time is no longer free")
}

/// `GET bookings/customerlink/{guid}`: the booking's time and services, no customer data.
async fn customer_link(
    State(sim): State<Sim>,
    Path((tili, guid)): Path<(String, String)>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = preamble(&sim, &h, "GET bookings/customerlink/{guid}", Call::Booking).await {
        return r;
    }
    if let Err(r) = account(&tili) {
        return r.into_response();
    }
    let inner = sim.lock();
    let found = inner.slotti.as_ref().and_then(|s| {
        s.bookings
            .values()
            .find(|b| b.customer_links.iter().any(|l| l.guid == guid))
    });
    match found {
        Some(b) => Json(json!({
            "guid": b.guid,
            "resourceGuid": b.resource_guid,
            "start": super::model::utc::format(&b.start),
            "end": super::model::utc::format(&b.end),
            "serviceLinks": b.service_links,
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no customer link {guid}")),
    }
}
