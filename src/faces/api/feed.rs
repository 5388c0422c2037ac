//! The change feed: [`FeedWatch`] (the probe of the feed's last `seq` that long polls and the
//! board's event streams wait on) and `GET changes`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::problem::{limit, query};
use super::*;
use crate::store::{FeedEvent, Handle};

/// The feed's last `seq` as last probed, for long polls to wait on.
pub struct FeedWatch {
    last: watch::Sender<i64>,
    /// Cancelled at the stop: long polls answer with what they have, event streams end.
    stop: CancellationToken,
    waiters: Arc<Semaphore>,
    /// Notified when a request starts waiting: the probe sleeps while nobody waits.
    wanted: tokio::sync::Notify,
}

impl FeedWatch {
    /// Starts probing `store` (its own connection: probes never queue behind requests).
    /// At most `long_polls` requests wait at once (`[api] max_long_polls`); at `stop` every
    /// waiting one answers at once with what it has.
    pub(super) fn start(
        store: Handle,
        stop: CancellationToken,
        long_polls: usize,
    ) -> Arc<FeedWatch> {
        let (tx, _) = watch::channel(0);
        let feed = Arc::new(FeedWatch {
            last: tx,
            stop,
            waiters: Arc::new(Semaphore::new(long_polls)),
            wanted: tokio::sync::Notify::new(),
        });
        let weak = Arc::downgrade(&feed);
        tokio::spawn(async move {
            loop {
                let Some(feed) = weak.upgrade() else { return };
                if feed.last.receiver_count() == 0 {
                    // Idle: no probe until a request waits (checking now and then that the
                    // router still exists).
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), feed.wanted.notified()).await;
                    continue;
                }
                match store.call(|s| s.feed().feed_head()).await {
                    Ok((_, last)) => {
                        feed.last.send_if_modified(|v| {
                            let changed = *v != last;
                            *v = last;
                            changed
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "Cannot probe the change feed.")
                    }
                }
                drop(feed);
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
        feed
    }
}

impl FeedWatch {
    /// A receiver of the feed's last `seq`: the probe runs while it is held (the board's live
    /// event streams wait on it, as long polls do).
    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        let rx = self.last.subscribe();
        self.wanted.notify_one();
        rx
    }

    /// Resolves at the stop: whoever waits on the feed answers now.
    pub(crate) fn stopped(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }
}

/// Where to read the feed from.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The last `seq` already seen (0 for the start).
    pub after: Option<i64>,
    /// Events a page: 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Seconds (at most 60) to hold the request open until an event after `after` exists.
    pub wait: Option<u64>,
}

/// One feed event. Besides the fields listed, each type has its own: `ticket.new`: `state`;
/// `ticket.changed` / `ticket.returned`: `fields`, `old_state`, `state`; `ticket.left`:
/// `reason`, `state`; `action.*`: `action_id`, `kind` (and `outcome`, `error`,
/// `created_ticket_id` when the action ended); `visit.*`: `visit_id`, `booking_guid`, `start`,
/// `end`, `old_start`, `old_end`, `technician`, `source`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    /// Gap-free and increasing, in commit order.
    pub seq: i64,
    /// `ticket.new`, `ticket.changed`, `ticket.returned`, `ticket.left`, `action.queued`,
    /// `action.applied`, `action.dead`, `action.cancelled`, `action.requeued`, `visit.booked`,
    /// `visit.moved`, `visit.cancelled`.
    #[serde(rename = "type")]
    pub kind: String,
    pub account: String,
    pub ticket_id: Option<i64>,
    /// When the change was committed (UTC).
    pub at: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl From<FeedEvent> for Event {
    fn from(e: FeedEvent) -> Event {
        let mut data: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&e.data).unwrap_or_default();
        // The fixed fields win over a data field of the same name.
        for k in ["seq", "type", "account", "ticket_id", "at"] {
            data.remove(k);
        }
        Event {
            seq: e.seq,
            kind: e.kind,
            account: e.account,
            ticket_id: e.ticket_id,
            at: e.at,
            data,
        }
    }
}

/// A page of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changes {
    pub events: Vec<Event>,
    /// Pass as `after` next time: the last `seq` returned, or `after` when none was.
    pub next_after: i64,
}

/// The change feed: every change of the mirror and the outbox, in commit order.
#[utoipa::path(get, path = "/api/v1/changes", tag = "changes", params(ChangesParams),
    responses(
        (status = 200, description = "Events after `after`", body = Changes),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Events after `after` were purged; `oldest_seq` says where the feed starts", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many requests waiting", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn changes(
    State(st): State<AppState>,
    q: Result<Query<ChangesParams>, QueryRejection>,
) -> Result<axum::Json<Changes>, Problem> {
    let p = query(q)?;
    let limit = limit(p.limit)?;
    let after = p.after.unwrap_or(0);
    if after < 0 {
        return Err(Problem::bad_request(format!("after {after} is negative")));
    }
    let wait = p.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(Problem::bad_request(format!(
            "wait {wait} is over {MAX_WAIT_SECS} seconds"
        )));
    }
    let read = |st: &AppState| {
        let store = st.store.clone();
        async move {
            store
                .call(move |s| Ok((s.feed().feed_bounds()?, s.feed().feed_after(after, limit)?)))
                .await
                .map_err(Problem::internal)
        }
    };
    let (bounds, mut events) = read(&st).await?;
    if after < bounds.last && bounds.oldest.is_none_or(|o| o > after + 1) {
        let oldest = bounds.oldest.unwrap_or(bounds.last + 1);
        let mut p = Problem::new(
            StatusCode::GONE,
            format!(
                "the events after {after} were purged ([api] feed_retain_days): the feed starts at seq {oldest}; read the tickets again, then follow the feed with after={}",
                oldest - 1
            ),
        );
        p.oldest_seq = Some(oldest);
        return Err(p);
    }
    if events.is_empty() && wait > 0 {
        let Ok(_waiting) = st.feed.waiters.clone().try_acquire_owned() else {
            // Over the cap: answered at once, so long polls never take the slots that
            // ordinary requests need.
            metrics::counter!("huoltosync_api_long_polls_refused_total").increment(1);
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} long polls are already waiting ([api] max_long_polls); try again without wait, or after {LONG_POLL_RETRY_AFTER} s",
                    st.api.long_polls()
                ),
            );
            p.retry_after = Some(LONG_POLL_RETRY_AFTER);
            return Err(p);
        };
        let mut rx = st.feed.last.subscribe();
        st.feed.wanted.notify_one();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        // Read again whenever the probe sees the feed past `after` (it may already have seen
        // an event committed after the read above).
        let mut first = true;
        tracing::debug!(after, wait_s = wait, "A long poll waits for the feed.");
        loop {
            if !first {
                // At the stop the poll answers with what it has (nothing new), at once.
                let moved = tokio::select! {
                    moved = tokio::time::timeout_at(deadline, rx.changed()) => {
                        matches!(moved, Ok(Ok(())))
                    }
                    () = st.feed.stopped() => false,
                };
                if !moved {
                    break;
                }
            }
            first = false;
            if *rx.borrow_and_update() > after {
                events = read(&st).await?.1;
                if !events.is_empty() {
                    break;
                }
            }
        }
    }
    let next_after = events.last().map_or(after, |e| e.seq);
    Ok(axum::Json(Changes {
        events: events.into_iter().map(Event::from).collect(),
        next_after,
    }))
}
