//! The simulated Slotti account: its services and technicians (fixed, so tests and docs can
//! name them), and other customers' bookings drawn from the seed, day by day, so that the same
//! seed always takes the same slots.

use chrono::{Datelike, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::calendar;
use super::model::{Booking, Customer, CustomerLink, ServiceLink, ServiceRef, Translation};

/// The booking account (`{tili}` of the booking API).
pub const BOOKING_ACCOUNT: &str = "huoltosim";
/// The Slotti API key (HTTP Basic user name, empty password).
pub const API_KEY: &str = "slotti-key";

const CATEGORY_GUID: &str = "5c1f0e2a-3b7d-4e88-9a41-0d6f2b9c7e10";

/// A service of the account.
pub struct Service {
    pub guid: &'static str,
    pub name: &'static str,
    pub minutes: u32,
    pub price: u32,
}

pub const SERVICES: [Service; 2] = [
    Service {
        guid: "9b2e4c61-7a0d-4f3e-8c55-2d1a6e7b3f30",
        name: "Huoltokäynti 30 min",
        minutes: 30,
        price: 45,
    },
    Service {
        guid: "9b2e4c61-7a0d-4f3e-8c55-2d1a6e7b3f60",
        name: "Huoltokäynti 60 min",
        minutes: 60,
        price: 80,
    },
];

/// A technician (a Slotti resource).
pub struct Resource {
    pub guid: &'static str,
    pub id: i64,
    pub name: &'static str,
}

pub const RESOURCES: [Resource; 3] = [
    Resource {
        guid: "3f6a1d20-5b8e-4c71-9e0a-7c4d2b1e5a01",
        id: 11,
        name: "Asentaja 1",
    },
    Resource {
        guid: "3f6a1d20-5b8e-4c71-9e0a-7c4d2b1e5a02",
        id: 12,
        name: "Asentaja 2",
    },
    Resource {
        guid: "3f6a1d20-5b8e-4c71-9e0a-7c4d2b1e5a03",
        id: 13,
        name: "Asentaja 3",
    },
];

pub fn service(guid: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.guid == guid)
}

pub fn resource_by_id(id: i64) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.id == id)
}

/// `GET services`, in the seed's shape.
pub fn services_json() -> Value {
    SERVICES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "categoryGuid": CATEGORY_GUID,
                "providerGuids": RESOURCES.iter().map(|r| r.guid).collect::<Vec<_>>(),
                "ordinal": i,
                "price": s.price,
                "translations": [{ "name": s.name, "languageCode": "fi", "description": null }],
                "durationMinutes": s.minutes,
                "onlyBookableByPhone": false,
                "guid": s.guid,
            })
        })
        .collect()
}

/// `GET resources`, in the seed's shape.
pub fn resources_json() -> Value {
    RESOURCES
        .iter()
        .map(|r| json!({ "name": r.name, "imgUrl": null, "guid": r.guid, "id": r.id }))
        .collect()
}

/// A booking's service link to `s`.
pub fn service_link(s: &Service, minutes: u32) -> ServiceLink {
    ServiceLink {
        duration_minutes: minutes,
        service: ServiceRef {
            guid: s.guid.into(),
            translations: vec![Translation {
                name: s.name.into(),
                language_code: "fi".into(),
                description: None,
            }],
        },
    }
}

/// A random (version 4) guid from `rng`.
pub fn guid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

/// A booking code as customers get them (`4DV3C88M`).
pub fn token(rng: &mut StdRng) -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..8)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

const FIRST: [&str; 10] = [
    "Aino", "Eero", "Helmi", "Juho", "Kaisa", "Lauri", "Minna", "Olli", "Saara", "Veikko",
];
const LAST: [&str; 10] = [
    "Heikkinen",
    "Järvinen",
    "Koskinen",
    "Laine",
    "Mäkelä",
    "Nieminen",
    "Salonen",
    "Turunen",
    "Virtanen",
    "Östman",
];
const WORK: [&str; 6] = [
    "Ilmanvaihdon suodattimien vaihto",
    "Lukon sarjoitus",
    "Palovaroittimen tarkastus",
    "Astianpesukoneen liitäntä",
    "Kylpyhuoneen kaivon puhdistus",
    "Termostaatin vaihto",
];

/// Someone else's booking, created by `rng` (another customer of the contractor).
pub fn other_booking(
    rng: &mut StdRng,
    resource: &Resource,
    start: chrono::DateTime<Utc>,
    minutes: u32,
    created: chrono::DateTime<Utc>,
) -> Booking {
    let (first, last) = (
        FIRST[rng.random_range(0..FIRST.len())],
        LAST[rng.random_range(0..LAST.len())],
    );
    let service = &SERVICES[usize::from(minutes > 30)];
    let end = calendar::plus(start, minutes);
    let phone = format!("040-{:07}", rng.random_range(0..10_000_000u32));
    let customer = Customer::person(guid(rng), first, last, None, Some(phone), Some("fi".into()));
    Booking {
        guid: guid(rng),
        resource_guid: resource.guid.into(),
        created,
        modified: created,
        warmup_start: start,
        start,
        end,
        cooldown_end: end,
        info: Some(WORK[rng.random_range(0..WORK.len())].into()),
        private_notes: None,
        busy_time: false,
        busy_time_title: None,
        any_provider: false,
        customer_links: vec![CustomerLink {
            guid: guid(rng),
            customer,
            online_booking: rng.random_bool(0.5),
            person_count: 1,
            token: token(rng),
        }],
        service_links: vec![service_link(service, minutes)],
        attributes: Vec::new(),
    }
}

/// Other customers' bookings on `date` (about a fifth of the slots, some an hour long): the
/// same for the same seed and date, whenever they are drawn.
pub fn day_bookings(seed: u64, date: NaiveDate) -> Vec<Booking> {
    if !calendar::is_working_day(date) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for r in &RESOURCES {
        let day = u64::try_from(date.num_days_from_ce()).unwrap_or(0);
        let mut rng = StdRng::seed_from_u64(
            seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(day.wrapping_mul(1_000_003))
                .wrapping_add(r.id as u64),
        );
        let cells = (calendar::DAY_END_MIN - calendar::DAY_START_MIN) / calendar::STEP_MIN;
        let mut cell = 0;
        while cell < cells {
            if !rng.random_bool(0.2) {
                cell += 1;
                continue;
            }
            let len = if cell + 2 <= cells && rng.random_bool(0.3) {
                2
            } else {
                1
            };
            let minute = calendar::DAY_START_MIN + cell * calendar::STEP_MIN;
            if let Some(start) = calendar::at(date, minute) {
                let created = start - chrono::Duration::days(rng.random_range(1..20));
                out.push(other_booking(
                    &mut rng,
                    r,
                    start,
                    len * calendar::STEP_MIN,
                    created,
                ));
            }
            cell += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_takes_the_same_slots_and_another_seed_others() {
        let day: NaiveDate = "2026-12-02".parse().unwrap();
        let a = day_bookings(11, day);
        assert_eq!(a, day_bookings(11, day));
        assert!(!a.is_empty() && a.len() < 3 * 16, "{} taken", a.len());
        let starts = |v: &[Booking]| {
            v.iter()
                .map(|b| (b.resource_guid.clone(), b.start))
                .collect::<Vec<_>>()
        };
        assert_ne!(starts(&a), starts(&day_bookings(12, day)));
        assert!(day_bookings(11, "2026-12-05".parse().unwrap()).is_empty());
        for b in &a {
            assert!(calendar::check_bookable(b.start, b.end).is_ok());
            assert!(!b.info.as_deref().unwrap_or_default().contains("huoltosync"));
        }
    }
}
