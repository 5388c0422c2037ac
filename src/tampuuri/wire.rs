//! Tampuuri's JSON as it arrives, turned into [`crate::domain::model`] types, and the request bodies
//! built from them. The only place that knows field names like `TyonsuorittajaId` (private to
//! [`crate::tampuuri`], which offers what the rest of the crate needs in the model's terms).
//!
//! Parsing is deliberately lenient (see `tampuuri-api.md`, "open/closed evolution"): unknown
//! fields are kept in the raw JSON and never rejected; a field of an unexpected type is read as
//! best it can be (`"4711"` as 4711, `2` as `"2"`) instead of failing the ticket; the state may be
//! a name or an integer; the envelope's total may be at the top level or inside `metadata`, in
//! any key case. Only a ticket without an `Id` is an error.

use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::domain::action::{Action, Attachment, NewTicket};
use crate::domain::model::{Reporter, Ticket, TicketState, content_hash, field};

/// One page of `ilmoitukset/selaa`.
#[derive(Debug)]
pub struct Page {
    /// How many objects match in all, when the envelope says.
    pub total: Option<u64>,
    pub items: Vec<Ticket>,
    /// The `Limit` the envelope echoed (top level or `metadata.limit`), if any: a server that
    /// serves fewer than asked may say so here.
    pub limit: Option<u64>,
    /// Where the envelope keeps its total, for the first-contact report.
    pub total_at: TotalAt,
}

/// Where a selaa envelope keeps its total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalAt {
    /// `{"Total": n, "Items": [...]}`, in any key case.
    TopLevel,
    /// `{"Items": [...], "metadata": {"total": n}}`.
    Metadata,
    /// An envelope without a total.
    Absent,
    /// A bare array of tickets.
    BareArray,
}

impl std::fmt::Display for TotalAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TotalAt::TopLevel => "Total at the top level",
            TotalAt::Metadata => "total inside metadata",
            TotalAt::Absent => "no Total (paging ends at an empty page)",
            TotalAt::BareArray => "a bare array, no Total (paging ends at an empty page)",
        })
    }
}

/// Parses a selaa response: `{"Offset", "Limit", "Total", "Items"}`, or `Total` inside
/// `metadata`, in any key case; a bare array is accepted too (then there is no total).
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<&RawValue> =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        return Ok(Page {
            total: None,
            items: parse_items(&items)?,
            limit: None,
            total_at: TotalAt::BareArray,
        });
    }
    let envelope: HashMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let field = |name: &str| {
        envelope
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let items_raw = field("items").ok_or("the response has no Items collection")?;
    let items: Vec<&RawValue> =
        serde_json::from_str(items_raw.get()).map_err(|e| format!("Items is not a list: {e}"))?;
    let meta: Option<Result<Map<String, Value>, String>> = field("metadata").map(|m| {
        serde_json::from_str(m.get()).map_err(|e| format!("metadata is not an object: {e}"))
    });
    if field("total").is_none()
        && let Some(Err(e)) = &meta
    {
        return Err(e.clone());
    }
    let meta = meta.and_then(Result::ok);
    let in_meta = |name: &str| {
        meta.as_ref().and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string())
        })
    };
    let (total, total_at) = match (field("total"), in_meta("total")) {
        (Some(t), _) => (Some(parse_total(t.get())?), TotalAt::TopLevel),
        (None, Some(t)) => (Some(parse_total(&t)?), TotalAt::Metadata),
        (None, None) => (None, TotalAt::Absent),
    };
    // An echoed Limit is informative only: one that is not a count is ignored.
    let limit = field("limit")
        .map(|l| l.get().to_owned())
        .or_else(|| in_meta("limit"))
        .and_then(|l| parse_total(&l).ok());
    Ok(Page {
        total,
        items: parse_items(&items)?,
        limit,
        total_at,
    })
}

fn parse_total(raw: &str) -> Result<u64, String> {
    raw.trim()
        .trim_matches('"')
        .parse()
        .map_err(|_| format!("Total is not a count: {raw}"))
}

fn parse_items(items: &[&RawValue]) -> Result<Vec<Ticket>, String> {
    items.iter().map(|r| parse_ticket(r.get())).collect()
}

/// Parses one ticket object, keeping `raw` as its raw JSON.
pub fn parse_ticket(raw: &str) -> Result<Ticket, String> {
    let map: Map<String, Value> =
        serde_json::from_str(raw).map_err(|e| format!("a ticket is not a JSON object: {e}"))?;
    let get = |name: &str| -> Option<&Value> {
        map.get(name)
            .or_else(|| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .filter(|v| !v.is_null())
    };
    let int = |name: &str| get(name).and_then(as_i64);
    let text = |name: &str| get(name).and_then(as_text);
    let id = int("Id").ok_or_else(|| format!("a ticket has no numeric Id: {}", preview(raw)))?;
    let state = match get("Tila") {
        Some(Value::Number(n)) => n.as_i64().map(TicketState::from_number),
        Some(Value::String(s)) => Some(match s.trim().parse::<i64>() {
            Ok(n) => TicketState::from_number(n),
            Err(_) => TicketState::from_name(s),
        }),
        _ => None,
    }
    .unwrap_or_else(|| TicketState::Other(String::new()));
    let reporter = match get("Ilmoittaja") {
        Some(Value::Object(p)) => {
            let pget = |n: &str| {
                p.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v)
                    .and_then(as_text)
            };
            Reporter {
                name: pget("Nimi"),
                phone: pget("Puhelin"),
                email: pget("Sahkoposti"),
            }
        }
        _ => Reporter::default(),
    };
    Ok(Ticket {
        id,
        state,
        title: text("Otsikko"),
        description: text("TyotehtavanKuvaus"),
        address: get(ADDRESS_FIELD).and_then(address_text),
        extra_info: text("TyotehtavanLisatiedot"),
        assignee_id: int("TyonsuorittajaId"),
        cost_centre_id: int("KustannuspaikkaId"),
        space_id: int("TilaId"),
        room_id: int("HuoneId"),
        parent_id: int("ParentId"),
        urgency: text("Kiireellisyys"),
        access: text("Sisaanpaasy"),
        fault_class: text("Vikaluokka"),
        earliest: text("SuoritusaikaAikaisintaan"),
        latest: text("SuoritusaikaViimeistaan"),
        reporter,
        remote_created: text("Luotu"),
        remote_modified: text("Muokattu"),
        content_hash: content_hash(raw),
        raw_json: raw.to_owned(),
    })
}

/// An address as text: a string as it is, an object (a structured site) as its JSON text, as the
/// board and a booking have always shown it.
fn address_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(_) => Some(v.to_string()),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

fn preview(raw: &str) -> String {
    raw.chars().take(120).collect()
}

/// The selaa fields huoltosync sets itself: `[accounts] extra_filter` may not name them (in any
/// key case). The selaa body sets exactly these.
pub const RESERVED_FILTER_KEYS: [&str; 4] = ["Offset", "Limit", "Tila", "TyonsuorittajaId"];

/// Top-level ticket fields that hold personal data (party objects): erased from a stored
/// ticket's raw JSON when its retention ends.
pub const PERSONAL_FIELDS: [&str; 3] = ["Ilmoittaja", "Tilaaja", "Maksaja"];

/// The top-level ticket field that holds the ticket's address (the site, "As Oy …, street,
/// city"): parsed into [`Ticket::address`] (`sql/016_ticket_address.sql` filled the column of
/// the tickets stored before).
const ADDRESS_FIELD: &str = "Kohde";

/// The body of `ilmoitukset/selaa`: our assignee id, the state filter, paging, and the
/// account's extra filter fields.
pub fn selaa_body(
    contractor_id: i64,
    states: &[String],
    offset: u64,
    limit: u32,
    extra: &Map<String, Value>,
) -> Value {
    let mut body = extra.clone();
    body.insert("TyonsuorittajaId".into(), contractor_id.into());
    body.insert(
        "Tila".into(),
        match states {
            [one] => Value::String(one.clone()),
            many => Value::Array(many.iter().map(|s| Value::String(s.clone())).collect()),
        },
    );
    body.insert("Offset".into(), offset.into());
    body.insert("Limit".into(), limit.into());
    Value::Object(body)
}

/// The body of a workflow transition: `Kommentti` (the reason, for a hold) and
/// `IlmoitaOsallisille` (tell the resident and other parties).
pub fn transition_body(action: &Action) -> Value {
    let mut body = Map::new();
    let (comment, notify) = match action {
        Action::Accept { comment } => (comment.clone(), None),
        Action::Hold { reason, notify } => (Some(reason.clone()), Some(*notify)),
        Action::Done { comment, notify } => (comment.clone(), Some(*notify)),
        Action::Create(_) | Action::Book(_) => (None, None),
    };
    if let Some(c) = comment {
        body.insert("Kommentti".into(), c.into());
    }
    if let Some(n) = notify {
        body.insert("IlmoitaOsallisille".into(), n.into());
    }
    Value::Object(body)
}

/// The body of `ilmoitukset/base64`: the create model (`ApiIlmoitusRequestModel`) plus
/// `Liitteet` with each file as base64.
pub fn create_body(t: &NewTicket, attachments: &[Attachment]) -> Value {
    use base64::Engine;
    let mut body = Map::new();
    body.insert("KustannuspaikkaId".into(), t.cost_centre_id.into());
    body.insert("Otsikko".into(), t.title.clone().into());
    body.insert("TyotehtavanKuvaus".into(), t.description.clone().into());
    body.insert(
        "TyotehtavanLisatiedot".into(),
        t.details_with_marker().into(),
    );
    let optional = [
        ("ParentId", t.parent_id),
        ("TilaId", t.space_id),
        ("HuoneId", t.room_id),
        ("TyonsuorittajaId", t.assignee_id),
    ];
    for (key, v) in optional {
        if let Some(v) = v {
            body.insert(key.into(), v.into());
        }
    }
    if let Some(u) = &t.urgency {
        body.insert("Kiireellisyys".into(), u.clone().into());
    }
    let files: Vec<Value> = attachments
        .iter()
        .map(|a| {
            serde_json::json!({
                "FileName": a.file_name,
                "ContentType": a.content_type,
                "Description": a.description,
                "Base64Content": base64::engine::general_purpose::STANDARD.encode(&a.bytes),
            })
        })
        .collect();
    body.insert("Liitteet".into(), Value::Array(files));
    Value::Object(body)
}

/// One notification of a webhook delivery, as the store keeps it. Every field is optional: a
/// notification is recorded whatever it lacks, and processing decides what it can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// A hash of the notification's JSON: the same notification delivered twice is one event.
    pub key: i64,
    pub account: Option<String>,
    pub action: Option<String>,
    /// The ticket it is about.
    pub reference_id: Option<i64>,
    /// The ticket's JSON as the notification carried it, if it did.
    pub reference_json: Option<String>,
    pub event_time: Option<String>,
}

/// Parses a webhook delivery, `{"Notifications": [{"Account", "Action", "ReferenceId",
/// "ReferenceJson", "Timestamp"}, ...]}` in any key case. An error says why the whole delivery is
/// refused (not JSON, or no `Notifications` list); a notification missing fields is kept.
pub fn parse_notifications(body: &[u8]) -> Result<Vec<Notification>, String> {
    let parsed: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let Some(Value::Array(notes)) = field(&parsed, "Notifications") else {
        return Err("no Notifications collection".into());
    };
    Ok(notes.iter().map(notification).collect())
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn notification(n: &Value) -> Notification {
    let text = |k: &str| {
        field(n, k).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
    };
    Notification {
        key: content_hash(&n.to_string()),
        account: text("Account"),
        action: text("Action"),
        reference_id: field(n, "ReferenceId").and_then(as_i64),
        reference_json: text("ReferenceJson"),
        event_time: text("Timestamp"),
    }
}

/// The assignee a notification's ticket JSON names (`TyonsuorittajaId`), if it is JSON and
/// names one.
pub fn reference_assignee(reference_json: &str) -> Option<i64> {
    let v: Value = serde_json::from_str(reference_json).ok()?;
    field(&v, "TyonsuorittajaId").and_then(as_i64)
}

/// The top-level ticket fields [`parse_ticket`] reads, each with its name in the model's terms
/// (what `ticket_changes.fields` stores, `sql/019_changed_fields_in_model_terms.sql`); any other
/// field is kept in the raw JSON only, and named as the server spells it.
const KNOWN_FIELDS: &[(&str, &str)] = &[
    ("Id", field::ID),
    ("Tila", field::STATE),
    ("Otsikko", field::TITLE),
    ("TyotehtavanKuvaus", field::DESCRIPTION),
    ("TyotehtavanLisatiedot", field::EXTRA_INFO),
    ("TyonsuorittajaId", field::ASSIGNEE_ID),
    ("KustannuspaikkaId", field::COST_CENTRE_ID),
    ("TilaId", field::SPACE_ID),
    ("HuoneId", field::ROOM_ID),
    ("ParentId", field::PARENT_ID),
    ("Kiireellisyys", field::URGENCY),
    ("Sisaanpaasy", field::ACCESS),
    ("Vikaluokka", field::FAULT_CLASS),
    ("SuoritusaikaAikaisintaan", field::EARLIEST),
    ("SuoritusaikaViimeistaan", field::LATEST),
    ("Ilmoittaja", field::REPORTER),
    ("Luotu", field::CREATED),
    ("Muokattu", field::MODIFIED),
    (ADDRESS_FIELD, field::ADDRESS),
];

/// A top-level field's name in the model's terms: the [`field`] it fills, in any key case, or
/// the server's own name for a field the model does not read.
fn model_name(key: &str) -> &str {
    KNOWN_FIELDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map_or(key, |(_, name)| name)
}

/// The top-level fields whose values differ between two raw ticket objects, in the model's
/// terms, sorted (a [`crate::domain::model::ChangedFields`]).
///
/// A field that changed only in representation is not a change: `Tila` sent once as a name
/// and once as a number (`"Avoin"` vs `1`) counts as the same state.
pub fn changed_fields(old_raw: &str, new_raw: &str) -> Vec<String> {
    let parse = |s: &str| serde_json::from_str::<Map<String, Value>>(s).unwrap_or_default();
    let (old, new) = (parse(old_raw), parse(new_raw));
    let state_of = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(TicketState::from_name(s)),
        Some(Value::Number(n)) => n.as_i64().map(TicketState::from_number),
        _ => None,
    };
    let mut fields: Vec<String> = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)))
        .filter(|k| {
            let (a, b) = (old.get(*k), new.get(*k));
            if model_name(k) == field::STATE {
                state_of(a) != state_of(b)
            } else {
                a != b
            }
        })
        .map(|k| model_name(k).to_owned())
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

/// How one ticket object arrived, for the first-contact report (`check-config --online`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketShape {
    /// `Tila` as it arrived; `None` when absent or null.
    pub state: Option<StateAs>,
    /// The creation and modification stamps (`Luotu`, `Muokattu`) as they arrived.
    pub dates: Vec<String>,
    /// Top-level fields the mirror does not read, as the server spells them.
    pub unknown_fields: Vec<String>,
}

/// How a ticket's state arrived.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StateAs {
    Name(String),
    Number(i64),
}

/// Describes a ticket's raw JSON (see [`TicketShape`]); `None` if it is not a JSON object.
pub fn ticket_shape(raw: &str) -> Option<TicketShape> {
    let map: Map<String, Value> = serde_json::from_str(raw).ok()?;
    let get = |name: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let state = match get("Tila") {
        Some(Value::Number(n)) => n.as_i64().map(StateAs::Number),
        Some(Value::String(s)) => Some(match s.trim().parse() {
            Ok(n) => StateAs::Number(n),
            Err(_) => StateAs::Name(s.clone()),
        }),
        _ => None,
    };
    let dates = ["Luotu", "Muokattu"]
        .iter()
        .filter_map(|k| get(k).and_then(as_text))
        .collect();
    let unknown_fields = map
        .keys()
        .filter(|k| !KNOWN_FIELDS.iter().any(|(f, _)| f.eq_ignore_ascii_case(k)))
        .cloned()
        .collect();
    Some(TicketShape {
        state,
        dates,
        unknown_fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_fields_names_real_changes_only_in_the_models_terms() {
        let old = r#"{"Id":1,"Tila":"Avoin","Otsikko":"Vuoto","Vanha":1,"Muokattu":"a"}"#;
        let new = r#"{"Id":1,"Tila":1,"Otsikko":"Vuoto keittiössä","Uusi":true,"muokattu":"b"}"#;
        assert_eq!(
            changed_fields(old, new),
            ["Uusi", "Vanha", "modified", "title"]
        );
        assert!(changed_fields(old, old).is_empty());
        let moved = r#"{"Id":1,"Tila":2,"Otsikko":"Vuoto","Vanha":1,"Muokattu":"a"}"#;
        assert_eq!(changed_fields(old, moved), ["state"]);
        let kohde =
            r#"{"Id":1,"Tila":"Avoin","Otsikko":"Vuoto","Vanha":1,"Muokattu":"a","Kohde":"Tie 1"}"#;
        assert_eq!(changed_fields(old, kohde), ["address"]);
    }

    #[test]
    fn envelope_total_in_any_place_and_case() {
        let top = parse_page(br#"{"Offset":0,"Limit":250,"Total":2,"Items":[{"Id":1},{"Id":2}]}"#)
            .unwrap();
        assert_eq!((top.total, top.items.len()), (Some(2), 2));
        let meta = parse_page(br#"{"items":[{"Id":1}],"metadata":{"total":7}}"#).unwrap();
        assert_eq!(meta.total, Some(7));
        let bare = parse_page(br#"[{"Id":5}]"#).unwrap();
        assert_eq!((bare.total, bare.items[0].id), (None, 5));
        assert!(
            parse_page(br#"{"Total":1,"Items":[{"Id":1}"#)
                .unwrap_err()
                .contains("invalid JSON")
        );
        assert!(parse_page(br#"{"Total":1}"#).unwrap_err().contains("Items"));
    }

    #[test]
    fn the_envelope_tells_where_its_total_is_and_what_limit_it_served() {
        let check = |body: &str, expected: (TotalAt, Option<u64>, Option<u64>)| {
            let p = parse_page(body.as_bytes()).unwrap();
            assert_eq!((p.total_at, p.total, p.limit), expected, "{body}");
        };
        check(
            r#"{"Offset":0,"Limit":100,"Total":600,"Items":[]}"#,
            (TotalAt::TopLevel, Some(600), Some(100)),
        );
        check(
            r#"{"items":[],"metadata":{"total":"7","limit":50}}"#,
            (TotalAt::Metadata, Some(7), Some(50)),
        );
        check(
            r#"{"Offset":0,"Limit":100,"Items":[]}"#,
            (TotalAt::Absent, None, Some(100)),
        );
        check(r#"{"Items":[],"Limit":"x"}"#, (TotalAt::Absent, None, None));
        check(r#"[]"#, (TotalAt::BareArray, None, None));
        // A broken metadata matters only when the total must come from it.
        check(
            r#"{"Total":3,"Items":[],"metadata":7}"#,
            (TotalAt::TopLevel, Some(3), None),
        );
        assert!(
            parse_page(br#"{"Items":[],"metadata":7}"#)
                .unwrap_err()
                .contains("metadata")
        );
    }

    #[test]
    fn a_ticket_shape_names_its_state_form_dates_and_unknown_fields() {
        let shape = ticket_shape(
            r#"{"id":1,"Tila":"Avoin","Luotu":"2025-04-20T00:37:45.86+03:00","Kohde":"Koivutie 3","SimUusi":{}}"#,
        )
        .unwrap();
        assert_eq!(shape.state, Some(StateAs::Name("Avoin".into())));
        assert_eq!(shape.dates, vec!["2025-04-20T00:37:45.86+03:00".to_owned()]);
        assert_eq!(shape.unknown_fields, vec!["SimUusi"]);
        let numeric = ticket_shape(r#"{"Id":1,"Tila":"2"}"#).unwrap();
        assert_eq!(numeric.state, Some(StateAs::Number(2)));
        let null = ticket_shape(r#"{"Id":1,"Tila":null}"#).unwrap();
        assert_eq!((null.state, null.unknown_fields.len()), (None, 0));
        assert_eq!(ticket_shape("[1]"), None);
    }

    #[test]
    fn tickets_are_read_leniently_and_kept_raw() {
        let raw = r#"{"Id":"12","Tila":2,"Otsikko":"Vuoto","TyonsuorittajaId":"4711","Kiireellisyys":3,
                      "Ilmoittaja":{"Nimi":"Aino","Puhelin":"040 123"},"Uusi":{"x":1}}"#;
        let t = parse_ticket(raw).unwrap();
        assert_eq!(
            (t.id, t.state.clone(), t.assignee_id),
            (12, TicketState::Vastaanotettu, Some(4711))
        );
        assert_eq!(t.urgency.as_deref(), Some("3"));
        assert_eq!(t.reporter.phone.as_deref(), Some("040 123"));
        assert_eq!(t.raw_json, raw);
        assert_eq!(t.address, None);
        assert!(parse_ticket(r#"{"Otsikko":"no id"}"#).is_err());
        // The address: text as it is, a structured site as its JSON text, anything else none.
        let address = |raw: &str| parse_ticket(raw).unwrap().address;
        assert_eq!(
            address(r#"{"Id":1,"kohde":"As Oy Koivu, Koivutie 3"}"#).as_deref(),
            Some("As Oy Koivu, Koivutie 3")
        );
        assert_eq!(
            address(r#"{"Id":1,"Kohde":{"Katu":"Koivutie 3"}}"#).as_deref(),
            Some(r#"{"Katu":"Koivutie 3"}"#)
        );
        assert_eq!(address(r#"{"Id":1,"Kohde":7}"#), None);
        // A null or missing state is no known state (so not open), never an error.
        for raw in [r#"{"Id":3,"Tila":null}"#, r#"{"Id":4}"#] {
            assert_eq!(
                parse_ticket(raw).unwrap().state,
                TicketState::Other(String::new())
            );
        }
    }

    #[test]
    fn selaa_body_takes_one_state_or_a_list() {
        let extra = Map::new();
        let one = selaa_body(4711, &["Avoin".into()], 0, 250, &extra);
        assert_eq!(one["Tila"], "Avoin");
        let many = selaa_body(4711, &["Avoin".into(), "Odottaa".into()], 250, 250, &extra);
        assert_eq!(many["Tila"], serde_json::json!(["Avoin", "Odottaa"]));
        assert_eq!(many["Offset"], 250);
    }

    #[test]
    fn selaa_body_sets_exactly_the_reserved_keys_over_the_extra_filter() {
        let mut extra = Map::new();
        extra.insert("KustannuspaikkaId".into(), 120.into());
        extra.insert("Limit".into(), 5.into());
        let body = selaa_body(4711, &["Avoin".into()], 0, 250, &extra);
        assert_eq!(
            (body["Limit"].clone(), body["KustannuspaikkaId"].clone()),
            (250.into(), 120.into())
        );
        let mut set: Vec<String> = selaa_body(4711, &["Avoin".into()], 0, 250, &Map::new())
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut reserved: Vec<String> =
            RESERVED_FILTER_KEYS.iter().map(|k| k.to_string()).collect();
        set.sort();
        reserved.sort();
        assert_eq!(set, reserved);
    }

    #[test]
    fn a_transition_body_carries_the_comment_and_whom_to_tell() {
        let hold = transition_body(&Action::Hold {
            reason: "Odotetaan varaosia".into(),
            notify: true,
        });
        assert_eq!(
            hold,
            serde_json::json!({"Kommentti": "Odotetaan varaosia", "IlmoitaOsallisille": true})
        );
        let accept = transition_body(&Action::Accept { comment: None });
        assert_eq!(accept, serde_json::json!({}));
        let done = transition_body(&Action::Done {
            comment: Some("Vaihdettu".into()),
            notify: false,
        });
        assert_eq!(
            done,
            serde_json::json!({"Kommentti": "Vaihdettu", "IlmoitaOsallisille": false})
        );
    }

    #[test]
    fn a_create_body_carries_the_marker_after_the_details_and_the_files_as_base64() {
        let t = NewTicket {
            parent_id: Some(77),
            cost_centre_id: 120,
            space_id: None,
            room_id: Some(3),
            title: "Jatkotyö".into(),
            description: "Vaihda tiiviste".into(),
            details: Some("Avain huoltoyhtiöltä".into()),
            urgency: Some("Kiireellinen".into()),
            assignee_id: Some(4711),
            marker: "[huoltosync:abc123]".into(),
        };
        let files = [Attachment {
            file_name: "kuva.jpg".into(),
            content_type: "image/jpeg".into(),
            description: None,
            bytes: b"hei".to_vec(),
        }];
        let body = create_body(&t, &files);
        assert_eq!(
            body["TyotehtavanLisatiedot"],
            "Avain huoltoyhtiöltä\n\n[huoltosync:abc123]"
        );
        assert_eq!(
            (
                body["ParentId"].clone(),
                body["HuoneId"].clone(),
                body["TyonsuorittajaId"].clone(),
                body["KustannuspaikkaId"].clone()
            ),
            (77.into(), 3.into(), 4711.into(), 120.into())
        );
        assert!(body.get("TilaId").is_none(), "an absent space is not sent");
        assert_eq!(
            body["Liitteet"],
            serde_json::json!([{"FileName": "kuva.jpg", "ContentType": "image/jpeg",
                "Description": null, "Base64Content": "aGVp"}])
        );
        let bare = create_body(&NewTicket { details: None, ..t }, &[]);
        assert_eq!(bare["TyotehtavanLisatiedot"], "[huoltosync:abc123]");
        assert_eq!(bare["Liitteet"], serde_json::json!([]));
    }

    #[test]
    fn a_webhook_delivery_is_read_notification_by_notification() {
        let body = br#"{"notifications":[
            {"Account":"sim-1","Action":"Muokattu","ReferenceId":"42",
             "ReferenceJson":"{\"TyonsuorittajaId\":4711}","Timestamp":"2026-11-25T10:00:00Z"},
            {"ACTION":"Luotu","referenceid":7,"Extra":{"x":1}},
            {}]}"#;
        let notes = parse_notifications(body).unwrap();
        assert_eq!(notes.len(), 3);
        assert_eq!(
            (
                notes[0].account.as_deref(),
                notes[0].action.as_deref(),
                notes[0].reference_id,
                notes[0].event_time.as_deref()
            ),
            (
                Some("sim-1"),
                Some("Muokattu"),
                Some(42),
                Some("2026-11-25T10:00:00Z")
            )
        );
        assert_eq!(
            notes[0]
                .reference_json
                .as_deref()
                .and_then(reference_assignee),
            Some(4711)
        );
        assert_eq!(
            (
                notes[1].action.as_deref(),
                notes[1].reference_id,
                notes[1].account.as_deref()
            ),
            (Some("Luotu"), Some(7), None)
        );
        assert_eq!(notes[2].reference_id, None);
        assert_ne!(notes[0].key, notes[1].key);
        let again = parse_notifications(body).unwrap();
        assert_eq!(
            again[0].key, notes[0].key,
            "the same notification, the same key"
        );
        assert!(
            parse_notifications(b"{")
                .unwrap_err()
                .starts_with("malformed JSON")
        );
        assert_eq!(
            parse_notifications(br#"{"Notifications":{}}"#).unwrap_err(),
            "no Notifications collection"
        );
    }

    #[test]
    fn reference_json_tells_the_assignee_when_it_can() {
        assert_eq!(
            reference_assignee(r#"{"TyonsuorittajaId":4711,"Tila":"Avoin"}"#),
            Some(4711)
        );
        assert_eq!(
            reference_assignee(r#"{"tyonsuorittajaid":"5020"}"#),
            Some(5020)
        );
        assert_eq!(reference_assignee(r#"{"Tila":"Avoin"}"#), None);
        assert_eq!(reference_assignee("not json"), None);
    }
}
