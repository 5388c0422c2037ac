//! Slotti's objects as the seed documents them (`booking`, `customerLink`, `serviceLink`,
//! `customer`), with the seed's JSON names, and the simulator's time format.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::calendar;

/// A booking, in the shape of the Slotti API's `GET bookings`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Booking {
    pub guid: String,
    pub resource_guid: String,
    #[serde(with = "utc")]
    pub created: DateTime<Utc>,
    #[serde(with = "utc")]
    pub modified: DateTime<Utc>,
    #[serde(with = "utc")]
    pub warmup_start: DateTime<Utc>,
    #[serde(with = "utc")]
    pub start: DateTime<Utc>,
    #[serde(with = "utc")]
    pub end: DateTime<Utc>,
    #[serde(with = "utc")]
    pub cooldown_end: DateTime<Utc>,
    pub info: Option<String>,
    pub private_notes: Option<String>,
    pub busy_time: bool,
    pub busy_time_title: Option<String>,
    pub any_provider: bool,
    pub customer_links: Vec<CustomerLink>,
    pub service_links: Vec<ServiceLink>,
    pub attributes: Vec<Value>,
}

/// A customer's part in a booking. `guid` is not in the seed's example: it is the simulator's
/// assumption of what `GET bookings/customerlink/{customerLinkGuid}` looks a booking up by.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerLink {
    pub guid: String,
    pub customer: Customer,
    pub online_booking: bool,
    pub person_count: u32,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Customer {
    pub guid: String,
    pub first_name: String,
    pub last_name: String,
    pub language: Option<String>,
    pub notes: Option<String>,
    pub street_address: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub city: Option<String>,
    pub zip_code: Option<String>,
    pub company: bool,
    pub company_name: Option<String>,
    pub company_department: Option<String>,
    pub company_code: Option<String>,
    pub finvoice_address: Option<String>,
    pub finvoice_intermediator: Option<String>,
}

impl Customer {
    /// A private person's customer record.
    pub fn person(
        guid: String,
        first_name: &str,
        last_name: &str,
        email: Option<String>,
        phone: Option<String>,
        language: Option<String>,
    ) -> Customer {
        Customer {
            guid,
            first_name: first_name.into(),
            last_name: last_name.into(),
            language,
            notes: None,
            street_address: None,
            phone,
            email,
            city: None,
            zip_code: None,
            company: false,
            company_name: None,
            company_department: None,
            company_code: None,
            finvoice_address: None,
            finvoice_intermediator: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceLink {
    pub duration_minutes: u32,
    pub service: ServiceRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    pub guid: String,
    pub translations: Vec<Translation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Translation {
    pub name: String,
    pub language_code: String,
    pub description: Option<String>,
}

impl Booking {
    /// Whether this booking holds `resource` at some moment of `[start, end)`.
    pub fn overlaps(&self, resource: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.resource_guid == resource && self.start < end && start < self.end
    }
}

/// Instants as the Slotti API writes them: UTC with `Z`, fractions only when there are some
/// (`2017-01-15T15:32:00Z`); read back leniently (any offset, with or without seconds).
pub mod utc {
    use super::*;

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    pub fn serialize<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        calendar::parse_time(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an ISO 8601 time: {s:?}")))
    }
}
