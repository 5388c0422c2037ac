//! Slotti's JSON, with the field names of its API documentation (the seed), and the parsing
//! of its answers into the types of [`super`]. Nothing here leaves the `slotti` module.
//!
//! Parsing is lenient where the seed is silent (extra fields are ignored, optional ones may be
//! `null` or absent) and strict where the caller depends on a value (a booking without a
//! `guid`, a time without an offset): such an answer is an error naming what is missing.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Booking, BookingRequest, Customer, CustomerPage, NewWebhook, Resource, Service, Slot, Webhook,
};

/// A time as Slotti sends it: RFC 3339 (`2017-02-01T07:15:00Z`), or with minutes only
/// (`2016-04-04T09:00+03:00`, as the seed's availability answer shows).
pub(super) fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M%:z"))
        .or_else(|_| DateTime::parse_from_str(&s.replace('Z', "+00:00"), "%Y-%m-%dT%H:%M%:z"))
        .ok()
}

/// A time as Slotti takes it: ISO 8601 in UTC with milliseconds, as JavaScript's
/// `toISOString()` writes it (the seed's requests).
pub(super) fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("invalid JSON: {}", e.inner())
        } else {
            format!("invalid JSON at {path}: {}", e.inner())
        }
    })
}

fn time(what: &str, s: &str) -> Result<DateTime<FixedOffset>, String> {
    parse_time(s).ok_or_else(|| format!("{what} {s:?} is not a time with an offset"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Translation {
    name: Option<String>,
    language_code: Option<String>,
}

/// The Finnish name, else the first one.
fn name_of(translations: &[Translation]) -> String {
    translations
        .iter()
        .find(|t| t.language_code.as_deref() == Some("fi"))
        .or(translations.first())
        .and_then(|t| t.name.clone())
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireService {
    guid: String,
    #[serde(default)]
    translations: Vec<Translation>,
    duration_minutes: Option<u32>,
    #[serde(default)]
    provider_guids: Vec<String>,
    #[serde(default)]
    only_bookable_by_phone: bool,
}

pub(super) fn parse_services(body: &[u8]) -> Result<Vec<Service>, String> {
    let list: Vec<WireService> = json(body)?;
    Ok(list
        .into_iter()
        .map(|s| Service {
            name: name_of(&s.translations),
            guid: s.guid,
            duration_minutes: s.duration_minutes,
            provider_guids: s.provider_guids,
            only_bookable_by_phone: s.only_bookable_by_phone,
        })
        .collect())
}

#[derive(Deserialize)]
struct WireResource {
    name: Option<String>,
    guid: String,
    id: i64,
}

pub(super) fn parse_resources(body: &[u8]) -> Result<Vec<Resource>, String> {
    let list: Vec<WireResource> = json(body)?;
    Ok(list
        .into_iter()
        .map(|r| Resource {
            name: r.name.unwrap_or_default(),
            guid: r.guid,
            id: r.id,
        })
        .collect())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceLink<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    service_guid: &'a str,
    duration_minutes: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AvailabilityParams<'a> {
    start: String,
    end: String,
    service_links: [ServiceLink<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<i64>,
}

#[derive(Serialize)]
struct AvailabilityRequest<'a> {
    params: AvailabilityParams<'a>,
}

pub(super) fn availability_body(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    service_guid: &str,
    duration_minutes: u32,
    resource_id: Option<i64>,
) -> Value {
    serde_json::to_value(AvailabilityRequest {
        params: AvailabilityParams {
            start: format_time(start),
            end: format_time(end),
            service_links: [ServiceLink {
                kind: "primary",
                service_guid,
                duration_minutes,
            }],
            resource_id,
        },
    })
    .expect("plain JSON")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AvailableTime {
    resource_guid: Option<String>,
    resource_id: i64,
    start: String,
    end: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AvailabilityDay {
    #[serde(default)]
    available_times: Vec<AvailableTime>,
}

/// Every free time of every day, in the order Slotti listed them, then sorted by start.
pub(super) fn parse_availability(body: &[u8]) -> Result<Vec<Slot>, String> {
    let days: Vec<AvailabilityDay> = json(body)?;
    let mut out = Vec::new();
    for t in days.into_iter().flat_map(|d| d.available_times) {
        let (start, end) = (time("start", &t.start)?, time("end", &t.end)?);
        if end <= start {
            return Err(format!(
                "a free time ends ({}) before it starts ({})",
                t.end, t.start
            ));
        }
        out.push(Slot {
            resource_guid: t.resource_guid.unwrap_or_default(),
            resource_id: t.resource_id,
            start,
            end,
        });
    }
    out.sort_by_key(|s| (s.start, s.resource_id));
    Ok(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireCustomer<'a> {
    first_name: &'a str,
    last_name: &'a str,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    language: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CustomerLink<'a> {
    person_count: u32,
    customer: WireCustomer<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewBooking<'a> {
    resource_id: i64,
    start: String,
    end: String,
    customer_link: CustomerLink<'a>,
    info: Option<&'a str>,
    service_links: [ServiceLink<'a>; 1],
    any_provider: bool,
}

pub(super) fn booking_body(b: &BookingRequest) -> Value {
    serde_json::to_value(NewBooking {
        resource_id: b.resource_id,
        start: format_time(b.start),
        end: format_time(b.end),
        customer_link: CustomerLink {
            person_count: 1,
            customer: WireCustomer {
                first_name: &b.customer.first_name,
                last_name: &b.customer.last_name,
                email: b.customer.email.as_deref(),
                phone: b.customer.phone.as_deref(),
                language: &b.customer.language,
            },
        },
        info: b.info.as_deref(),
        service_links: [ServiceLink {
            kind: "primary",
            service_guid: &b.service_guid,
            duration_minutes: b.duration_minutes,
        }],
        any_provider: b.any_provider,
    })
    .expect("plain JSON")
}

#[derive(Deserialize)]
struct LinkedService {
    guid: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireServiceLink {
    service: Option<LinkedService>,
    service_guid: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBooking {
    guid: String,
    resource_guid: Option<String>,
    created: Option<String>,
    modified: Option<String>,
    start: String,
    end: String,
    info: Option<String>,
    private_notes: Option<String>,
    #[serde(default)]
    service_links: Vec<WireServiceLink>,
}

fn booking(raw: Value) -> Result<Booking, String> {
    let w: WireBooking = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let (start, end) = (time("start", &w.start)?, time("end", &w.end)?);
    Ok(Booking {
        resource_guid: w.resource_guid,
        created: w.created,
        modified: w.modified,
        start: start.with_timezone(&Utc),
        end: end.with_timezone(&Utc),
        info: w.info,
        private_notes: w.private_notes,
        service_guids: w
            .service_links
            .into_iter()
            .filter_map(|l| l.service.and_then(|s| s.guid).or(l.service_guid))
            .collect(),
        guid: w.guid,
        raw,
    })
}

/// `GET bookings`: a list of booking objects; one that cannot be read fails the answer, naming
/// its place in the list.
pub(super) fn parse_bookings(body: &[u8]) -> Result<Vec<Booking>, String> {
    let list: Vec<Value> = json(body)?;
    list.into_iter()
        .enumerate()
        .map(|(i, v)| booking(v).map_err(|e| format!("booking [{i}]: {e}")))
        .collect()
}

/// A `booking.created`/`booking.modified` delivery's payload: the booking object (the seed's
/// "Varaus-objekti", as `GET bookings` has it).
pub fn parse_event_booking(body: &[u8]) -> Result<Booking, String> {
    let v: Value = json(body)?;
    booking(v)
}

/// A `booking.deleted` delivery's payload: "the booking's identifier (guid)". Assumed, since
/// the seed shows no example: a JSON string, or an object with a `guid`; a bare guid without
/// quotes is taken too.
pub fn parse_deleted_guid(body: &[u8]) -> Result<String, String> {
    let guid = match serde_json::from_slice::<Value>(body) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(o)) => match o.get("guid").or_else(|| o.get("Guid")) {
            Some(Value::String(s)) => s.clone(),
            _ => return Err("the payload is an object without a \"guid\"".into()),
        },
        Ok(_) => return Err("the payload is neither a guid string nor an object".into()),
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let guid = guid.trim();
    let plausible = !guid.is_empty()
        && guid.len() <= 100
        && guid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plausible {
        Ok(guid.to_owned())
    } else {
        Err("the payload is not a booking guid".into())
    }
}

/// `POST bookings/`: the seed does not show the answer. A booking object (as `GET bookings`
/// has it) is read; any other 2xx body answers `None` (the booking was made, its guid is to be
/// looked up).
pub(super) fn parse_booked(body: &[u8]) -> Option<Booking> {
    let v: Value = serde_json::from_slice(body).ok()?;
    booking(v).ok()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCustomerRow {
    guid: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct PagedResult {
    count: u64,
    #[serde(default)]
    items: Vec<WireCustomerRow>,
}

pub(super) fn parse_customers(body: &[u8]) -> Result<CustomerPage, String> {
    let p: PagedResult = json(body)?;
    Ok(CustomerPage {
        count: p.count,
        items: p
            .items
            .into_iter()
            .map(|c| Customer {
                guid: c.guid.unwrap_or_default(),
                first_name: c.first_name,
                last_name: c.last_name,
                phone: c.phone,
                email: c.email,
            })
            .collect(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireNewWebhook<'a> {
    delivery_url: &'a str,
    topics: &'a [String],
    secret: Option<&'a str>,
    auth_user: Option<&'a str>,
    auth_password: Option<&'a str>,
}

pub(super) fn webhook_body(w: &NewWebhook) -> Value {
    use secrecy::ExposeSecret;
    serde_json::to_value(WireNewWebhook {
        delivery_url: w.delivery_url.as_str(),
        topics: &w.topics,
        secret: w.secret.as_ref().map(|s| s.expose_secret()),
        auth_user: w.auth_user.as_deref(),
        auth_password: w.auth_password.as_ref().map(|s| s.expose_secret()),
    })
    .expect("plain JSON")
}

/// The id of a created webhook: the seed says only "its unique id", so a JSON string, an object
/// with `guid` or `id`, or the bare text of a guid are all taken.
pub(super) fn parse_webhook_id(body: &[u8]) -> Result<String, String> {
    let id = match serde_json::from_slice::<Value>(body) {
        Ok(Value::String(s)) => Some(s),
        Ok(Value::Object(o)) => o.get("guid").or_else(|| o.get("id")).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }),
        Ok(_) => None,
        Err(_) => std::str::from_utf8(body).ok().map(|s| s.trim().to_owned()),
    };
    id.filter(|s| {
        !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
    .ok_or_else(|| "the answer holds no webhook id (a string, or an object with guid or id)".into())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireWebhook {
    guid: Option<String>,
    id: Option<Value>,
    delivery_url: Option<String>,
    #[serde(default)]
    topics: Vec<String>,
}

/// `GET webhooks`: the seed names no field of the listed objects; those of the create request
/// are assumed, with `guid` (or `id`) for the id.
pub(super) fn parse_webhooks(body: &[u8]) -> Result<Vec<Webhook>, String> {
    let list: Vec<WireWebhook> = json(body)?;
    list.into_iter()
        .enumerate()
        .map(|(i, w)| {
            let guid = w
                .guid
                .or_else(|| match w.id {
                    Some(Value::String(s)) => Some(s),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                })
                .ok_or_else(|| format!("webhook [{i}] has no guid"))?;
            Ok(Webhook {
                guid,
                delivery_url: w.delivery_url.unwrap_or_default(),
                topics: w.topics,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_minutes_only_or_seconds_are_read_with_their_offset() {
        let t = parse_time("2016-04-04T09:00+03:00").unwrap();
        assert_eq!(
            format_time(t.with_timezone(&Utc)),
            "2016-04-04T06:00:00.000Z"
        );
        let t = parse_time("2017-02-01T07:15:00Z").unwrap();
        assert_eq!(
            format_time(t.with_timezone(&Utc)),
            "2017-02-01T07:15:00.000Z"
        );
        assert!(parse_time("2016-04-04T09:00").is_none());
        assert!(parse_time("huomenna").is_none());
    }

    #[test]
    fn the_seeds_examples_parse() {
        let services = br#"[{"categoryGuid": "72d6b334-cc87-439d-a9d0-3c41d906875d",
            "providerGuids": ["7d0a73c3-274e-47d3-ad3a-9eb358cc05c3"], "ordinal": 0, "price": 30,
            "translations": [{"name": "Testipalvelu", "languageCode": "fi", "description": null}],
            "durationMinutes": 30, "onlyBookableByPhone": false,
            "guid": "2358dbde-7e1c-42f6-a31d-50f05b95217d"}]"#;
        let s = parse_services(services).unwrap();
        assert_eq!(
            (s[0].name.as_str(), s[0].duration_minutes),
            ("Testipalvelu", Some(30))
        );
        let r = parse_resources(br#"[{"name": "Testi K\u00e4ytt\u00e4j\u00e4", "imgUrl": null, "guid": "7d0a73c3-274e-47d3-ad3a-9eb358cc05c3", "id": 2}]"#).unwrap();
        assert_eq!((r[0].name.as_str(), r[0].id), ("Testi Käyttäjä", 2));
        let days = br#"[{"availableTimes": [], "date": "2016-04-03"},
            {"availableTimes": [{"resourceGuid": "7d0a", "resourceId": 2, "start": "2016-04-04T09:30+03:00", "end": "2016-04-04T10:00+03:00"},
              {"resourceGuid": "7d0a", "resourceId": 2, "start": "2016-04-04T09:00+03:00", "end": "2016-04-04T09:30+03:00"}],
             "resourceGuid": "7d0a", "date": "2016-04-04"}]"#;
        let slots = parse_availability(days).unwrap();
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].start.to_rfc3339(), "2016-04-04T09:00:00+03:00");
        let bookings = br#"[{"guid": "0822b475", "resourceGuid": "9abc", "created": "2017-01-15T15:32:00Z",
            "modified": "2017-01-15T15:32:00Z", "warmupStart": "2017-02-01T07:15:00Z",
            "start": "2017-02-01T07:15:00Z", "end": "2017-02-01T10:15:00Z", "info": "Lis\u00e4tiedot",
            "privateNotes": null, "customerLinks": [], "serviceLinks": [{"durationMinutes": 180,
            "service": {"guid": "3fd6", "translations": []}}]}]"#;
        let b = parse_bookings(bookings).unwrap();
        assert_eq!(
            (b[0].guid.as_str(), b[0].service_guids.as_slice()),
            ("0822b475", &["3fd6".to_owned()][..])
        );
        let c = parse_customers(br#"{"count": 1, "items": [{"guid": "8519", "firstName": "Testi", "lastName": "Asiakas", "phone": "044-3411156", "email": null}]}"#).unwrap();
        assert_eq!(
            (c.count, c.items[0].first_name.as_deref()),
            (1, Some("Testi"))
        );
    }

    #[test]
    fn bad_answers_are_errors_naming_what_is_wrong() {
        assert!(parse_services(b"{").unwrap_err().contains("invalid JSON"));
        let e = parse_availability(
            br#"[{"availableTimes": [{"resourceId": 2, "start": "x", "end": "y"}]}]"#,
        )
        .unwrap_err();
        assert!(e.contains("\"x\""), "{e}");
        let e = parse_bookings(br#"[{"guid": "a", "start": "2017-02-01T07:15:00Z", "end": "2017-02-01T08:15:00Z"}, {"start": "2017-02-01T07:15:00Z"}]"#).unwrap_err();
        assert!(e.contains("booking [1]"), "{e}");
        assert!(parse_booked(b"{}").is_none());
    }

    #[test]
    fn a_deleted_bookings_guid_is_read_as_a_string_an_object_or_bare_and_nothing_else() {
        for ok in [
            &br#""0822b475-73f7-4b3b-8a9b-85da065f2094""#[..],
            br#"{"guid": "0822b475-73f7-4b3b-8a9b-85da065f2094"}"#,
            b" 0822b475-73f7-4b3b-8a9b-85da065f2094\n",
        ] {
            assert_eq!(
                parse_deleted_guid(ok).as_deref(),
                Ok("0822b475-73f7-4b3b-8a9b-85da065f2094")
            );
        }
        for bad in [&b"42"[..], b"{}", br#""""#, b"a b", br#""x/../y""#] {
            assert!(parse_deleted_guid(bad).is_err(), "{bad:?}");
        }
        assert!(parse_event_booking(br#"{"guid": "g", "start": "nyt"}"#).is_err());
    }

    #[test]
    fn a_webhook_id_is_taken_in_any_plausible_form() {
        for (body, id) in [
            (&br#""5f1c-aa""#[..], "5f1c-aa"),
            (br#"{"guid": "5f1c-aa"}"#, "5f1c-aa"),
            (br#"{"id": 17}"#, "17"),
            (b"5f1c-aa\n", "5f1c-aa"),
        ] {
            assert_eq!(parse_webhook_id(body).unwrap(), id);
        }
        for bad in [&b"{}"[..], b"null", b"<html>oops</html>", b""] {
            assert!(parse_webhook_id(bad).is_err());
        }
    }
}
