//! The board of open tickets (`GET /`) and one of its rows (`GET /fragments/row/…`, for the live
//! board): a dispatcher's order (urgent first, then the latest completion time, then the oldest
//! reported), at most [`PAGE_ROWS`] rows a page with links to the next and previous pages, and
//! every filter run in the store's query, so that the heading counts every match.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::auth::Me;
use super::super::{Board, Lang, lang, render, segment};
use super::{internal, not_found};
use crate::store::{BoardQuery, BoardRow, URGENT};

/// The most rows a page of the board shows.
pub const PAGE_ROWS: u32 = 100;

/// The board's filters (a GET form), each optional, and the page (from 1).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Filters {
    account: Option<String>,
    state: Option<String>,
    urgency: Option<String>,
    /// Only tickets reported more than this many days ago.
    age: Option<String>,
    q: Option<String>,
    page: Option<String>,
}

impl Filters {
    fn from(q: Result<Query<Filters>, QueryRejection>) -> Filters {
        let f = q.map(|Query(f)| f).unwrap_or_default();
        let keep = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        Filters {
            account: keep(f.account),
            state: keep(f.state),
            urgency: keep(f.urgency),
            age: keep(f.age),
            q: keep(f.q),
            page: keep(f.page),
        }
    }

    /// The page asked for, from 1 (anything else is the first page).
    fn page(&self) -> u64 {
        self.page
            .as_deref()
            .and_then(|p| p.parse::<u64>().ok())
            .filter(|p| *p >= 1)
            .unwrap_or(1)
    }

    /// The store's query for these filters at `now`: page [`Filters::page`].
    fn query(&self, now: DateTime<Utc>) -> BoardQuery {
        let days = self.age.as_deref().and_then(|a| a.parse::<i64>().ok());
        BoardQuery {
            account: self.account.clone(),
            state: self.state.clone(),
            urgency: self.urgency.clone(),
            reported_before: days
                .and_then(chrono::Duration::try_days)
                .and_then(|d| now.checked_sub_signed(d))
                .map(crate::domain::time::fmt),
            q: self.q.clone(),
            offset: (self.page() - 1).saturating_mul(u64::from(PAGE_ROWS)),
            limit: PAGE_ROWS,
        }
    }

    /// The board's URL with these filters on page `page` (the first page has no `page`).
    fn href(&self, page: u64) -> String {
        let page = (page > 1).then(|| page.to_string());
        let pairs = [
            ("account", &self.account),
            ("state", &self.state),
            ("urgency", &self.urgency),
            ("age", &self.age),
            ("q", &self.q),
            ("page", &page),
        ];
        let query: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| format!("{k}={}", segment(v))))
            .collect();
        match query.is_empty() {
            true => "/".to_owned(),
            false => format!("/?{}", query.join("&")),
        }
    }

    fn view(&self) -> Value {
        json!({
            "account": self.account, "state": self.state, "urgency": self.urgency,
            "age": self.age, "q": self.q,
            "any": self.account.is_some() || self.state.is_some() || self.urgency.is_some()
                || self.age.is_some() || self.q.is_some(),
        })
    }
}

/// One row of the board. Links (`href`) are built here from a percent-encoded account
/// ([`segment`]) and an integer id, so they hold no character HTML needs escaped: the
/// templates write them `|safe` (the escaper would write `/` as `&#x2f;`).
pub(super) fn row_view(lang: Lang, b: &BoardRow, now: DateTime<Utc>) -> Value {
    let r = &b.ticket;
    let age = crate::domain::time::parse(&b.reported).map(|t| lang.age(now - t));
    let latest = b.latest.as_deref().and_then(crate::domain::time::parse);
    let failed = b.failed.as_ref().map(|f| {
        json!({
            "id": f.id,
            "kind": lang.action_kind(&f.kind),
            "reason": f.error.as_deref().map(|e| lang.reason(e)),
        })
    });
    json!({
        "account": r.account,
        "id": r.id,
        "href": format!("/tickets/{}/{}", segment(&r.account), r.id),
        "dom_id": format!("t-{}-{}", r.account, r.id),
        "title": r.title.as_deref().unwrap_or("—"),
        "address": r.address.as_deref().unwrap_or("—"),
        "state": lang.state(&r.state),
        "pending": b.waiting.as_deref().map(|s| lang.state(s)),
        "failed": failed,
        "age": age.unwrap_or_default(),
        "reported_at": b.reported,
        "urgency": r.urgency.as_deref().unwrap_or("—"),
        "urgent": r.urgency.as_deref().is_some_and(|u| u.trim().eq_ignore_ascii_case(URGENT)),
        "latest": latest.map(|t| lang.time(t)),
        "latest_at": b.latest,
        "overdue": latest.is_some_and(|t| t < now),
        "next_visit": r.next_visit.as_ref().and_then(|v| crate::domain::time::parse(&v.start)).map(|t| lang.time(t)),
        "next_visit_at": r.next_visit.as_ref().map(|v| v.start.clone()),
        "next_visit_who": r.next_visit.as_ref().and_then(|v| v.technician.clone()),
    })
}

/// `GET /`: a page of the open tickets of every account, filtered.
pub(crate) async fn board(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    q: Result<Query<Filters>, QueryRejection>,
) -> Response {
    let lang = lang(&headers);
    let f = Filters::from(q);
    let now = crate::domain::time::now();
    let query = f.query(now);
    let read = b
        .store
        .call(move |s| {
            // The feed's head first: the live board asks for events after it, so none is missed.
            let seq = s.feed().feed_bounds()?.last;
            Ok((
                seq,
                s.board().board_page(&query)?,
                s.board().open_urgencies()?,
            ))
        })
        .await;
    let (seq, page, urgencies) = match read {
        Ok(x) => x,
        Err(e) => return internal(lang, Some(&me), e),
    };
    let mut states: Vec<String> = Vec::new();
    for a in &b.config.accounts {
        for s in &a.states {
            if !states.contains(s) {
                states.push(s.clone());
            }
        }
    }
    let states: Vec<Value> = states
        .iter()
        .map(|s| json!({"value": s, "label": lang.state(s)}))
        .collect();
    let rows: Vec<Value> = page.rows.iter().map(|r| row_view(lang, r, now)).collect();
    let n = f.page();
    let pages = page.total.div_ceil(u64::from(PAGE_ROWS)).max(1);
    let first = (n - 1)
        .saturating_mul(u64::from(PAGE_ROWS))
        .saturating_add(1);
    let paging = json!({
        "page": n,
        "pages": pages,
        "first": first.min(page.total),
        "last": (first + rows.len() as u64).saturating_sub(1),
        "prev": (n > 1).then(|| f.href((n - 1).min(pages))),
        "next": (n < pages).then(|| f.href(n + 1)),
    });
    render(
        StatusCode::OK,
        "board.html",
        json!({
            "t": lang.words(),
            "lang": lang.code(),
            "me": me.view(),
            "nav": "board",
            "rows": rows,
            "count": page.total,
            "paging": paging,
            "filters": f.view(),
            "accounts": b.config.accounts.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
            "states": states,
            "urgencies": urgencies,
            "seq": seq,
        }),
    )
}

/// `GET /fragments/row/{account}/{id}` (with the board's filters): the ticket's row, for the live
/// board to insert or replace; 204 when the ticket is not open or the filters leave it out.
pub(crate) async fn row_fragment(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
    path: Result<Path<(String, i64)>, PathRejection>,
    q: Result<Query<Filters>, QueryRejection>,
) -> Response {
    let lang = lang(&headers);
    let Ok(Path((account, id))) = path else {
        return not_found(lang, &me);
    };
    let mut f = Filters::from(q);
    if f.account.as_deref().is_some_and(|a| a != account) {
        return StatusCode::NO_CONTENT.into_response();
    }
    f.account = Some(account.clone());
    let now = crate::domain::time::now();
    let query = f.query(now);
    let read = b.store.call(move |s| s.board().board_row(&query, id)).await;
    let row = match read {
        Ok(x) => x,
        Err(e) => return internal(lang, Some(&me), e),
    };
    let Some(row) = row else {
        return StatusCode::NO_CONTENT.into_response();
    };
    render(
        StatusCode::OK,
        "row.html",
        json!({
            "t": lang.words(),
            "row": row_view(lang, &row, now),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_keep_the_filters_encoded() {
        let f = Filters {
            urgency: Some("Ei kiireellinen".into()),
            q: Some("a&b=c".into()),
            page: Some("3".into()),
            ..Filters::default()
        };
        assert_eq!(f.page(), 3);
        assert_eq!(f.href(4), "/?urgency=Ei%20kiireellinen&q=a%26b%3Dc&page=4");
        assert_eq!(f.href(1), "/?urgency=Ei%20kiireellinen&q=a%26b%3Dc");
        assert_eq!(Filters::default().href(1), "/");
        for bad in ["0", "-1", "x", "99999999999999999999999"] {
            let f = Filters {
                page: Some(bad.into()),
                ..Filters::default()
            };
            assert_eq!(f.page(), 1, "{bad}");
        }
        let far = Filters {
            page: Some(u64::MAX.to_string()),
            ..Filters::default()
        };
        assert_eq!(
            far.query(Utc::now()).offset,
            u64::MAX,
            "saturates, never panics"
        );
    }
}
