//! `GET /events`: the live board's server-sent events. Each feed event after the page's `seq`
//! (`?after=`, or `Last-Event-ID` when the browser reconnects) is sent as one SSE message (`id`:
//! its seq; data: `{"seq", "type", "account", "ticket_id"}`); the board's script fetches the
//! row of a new or changed ticket and fades out one that left. Woken by the API's
//! [`FeedWatch`](crate::faces::api::FeedWatch); at most [`MAX_STREAMS`](super::MAX_STREAMS) at once
//! (503 beyond); a stream ends when its session does, and when the service stops.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Me;
use super::{Board, lang, message};
use crate::store::FeedEvent;

/// Events read from the store at once.
const BATCH: u32 = 100;

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    after: Option<i64>,
}

struct Stream {
    b: Board,
    after: i64,
    rx: tokio::sync::watch::Receiver<i64>,
    queued: VecDeque<FeedEvent>,
    ends: tokio::time::Instant,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

pub(crate) async fn events(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let lang = lang(&headers);
    let Ok(permit) = b.streams.clone().try_acquire_owned() else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            Some(&me),
            lang.t("err_busy"),
        );
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = last_id
        .or(q.ok().and_then(|Query(q)| q.after))
        .unwrap_or(0)
        .max(0);
    let left = me
        .expires_at()
        .map(|t| {
            (t - crate::domain::time::now())
                .to_std()
                .unwrap_or_default()
        })
        .unwrap_or(Duration::ZERO);
    let stream = Stream {
        rx: b.feed.subscribe(),
        b,
        after,
        queued: VecDeque::new(),
        ends: tokio::time::Instant::now() + left,
        _permit: permit,
    };
    let s = futures::stream::unfold(stream, |mut st| async move {
        loop {
            if let Some(e) = st.queued.pop_front() {
                st.after = e.seq;
                let data = serde_json::json!({
                    "seq": e.seq, "type": e.kind, "account": e.account, "ticket_id": e.ticket_id,
                });
                let ev = Event::default()
                    .id(e.seq.to_string())
                    .data(data.to_string());
                return Some((Ok::<Event, Infallible>(ev), st));
            }
            let after = st.after;
            match st
                .b
                .store
                .call(move |s| s.feed().feed_after(after, BATCH))
                .await
            {
                Ok(events) if !events.is_empty() => {
                    st.queued.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "The board's event stream cannot read the feed."
                    );
                }
            }
            // Nothing new: wait for the probe to see the feed move (or the session to end, or
            // the service to stop: the stream ends so that the listener can drain).
            let deadline = st.ends;
            tokio::select! {
                moved = tokio::time::timeout_at(deadline, st.rx.changed()) => match moved {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return None,
                },
                () = st.b.feed.stopped() => return None,
            }
        }
    });
    Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
