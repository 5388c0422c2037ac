//! A delivered action as a ticket's history shows it in the API: what was sent, who asked,
//! and when Tampuuri took it (`ticket_changes.outbox_id`, see `sql/017_delivered.sql`).

use serde::Serialize;
use utoipa::ToSchema;

/// A delivered action in a ticket's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveredAction {
    /// The outbox id.
    pub id: i64,
    /// `accept`, `hold`, `done`, `create`.
    pub kind: String,
    /// The comment sent (accept, done).
    pub comment: Option<String>,
    /// The reason sent (hold).
    pub reason: Option<String>,
    /// Whether Tampuuri was asked to tell the ticket's parties (hold, done).
    pub notify: Option<bool>,
    /// The title sent (create).
    pub title: Option<String>,
    /// Who asked: the API token's name, `cli`, `demo`, `board:<user>`.
    pub requested_by: Option<String>,
    /// When Tampuuri took it (UTC, RFC 3339).
    pub delivered_at: Option<String>,
}

impl From<crate::store::DeliveredAction> for DeliveredAction {
    fn from(a: crate::store::DeliveredAction) -> DeliveredAction {
        DeliveredAction {
            id: a.id,
            kind: a.kind,
            comment: a.comment,
            reason: a.reason,
            notify: a.notify,
            title: a.title,
            requested_by: a.requested_by,
            delivered_at: a.delivered_at,
        }
    }
}
