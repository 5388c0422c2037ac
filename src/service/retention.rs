//! What the purge keeps: the config's `[privacy]`, `[retention]` and `[api] feed_retain_days`
//! values and the API's Idempotency-Key lifetime, joined with the ticket fields Tampuuri keeps
//! personal data in (and the booking fields Slotti keeps the customer in), as the plain
//! [`Retention`] that [`Store::purge`](crate::store::Store::purge) takes. The one place that
//! knows them all, so
//! the store imports neither the config nor the API module.

use crate::config::Config;
use crate::store::Retention;
use crate::tampuuri::PERSONAL_FIELDS;

/// The purge's retention values from `config`.
pub fn from_config(config: &Config) -> Retention<'static> {
    Retention {
        personal_days: config.privacy.retain_days,
        sync_runs_days: config.retention.sync_runs_days,
        api_calls_days: config.retention.api_calls_days,
        outbox_days: config.retention.outbox_days,
        webhook_events_days: config.retention.webhook_events_days,
        feed_days: crate::config::feed_retain_days(config.api.as_ref()),
        idempotency_keys: crate::faces::api::IDEMPOTENCY_KEEP,
        personal_fields: &PERSONAL_FIELDS,
        booking_personal_fields: &crate::slotti::BOOKING_PERSONAL_FIELDS,
    }
}
