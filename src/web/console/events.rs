//! Events: the log filtered by suite, corp, kind and status; one event with its
//! fields; the replay of a failed event through the events service (as the API's
//! `POST /api/v1/events/{id}/replay`).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use minijinja::{Value, context};
use serde::Serialize;

use super::session::{Console, redirect};
use super::{Plain, at, done_message, failed, given};
use crate::feed::{self, EventFilter, ReplayError};
use crate::model::{CorpId, EventId, EventStatus, SuiteId};
use crate::store::console as rows;
use crate::store::events::EventRow;

const LIST_LIMIT: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(list))
        .route("/events/{id}", web::get().to(detail))
        .route("/events/{id}/replay", web::post().to(replay));
}

#[derive(Serialize)]
struct EventLine {
    id: i64,
    kind: String,
    suite_id: Option<String>,
    corpid: Option<String>,
    status: &'static str,
    attempts: i32,
    received_at: String,
    last_error: Option<String>,
}

pub(super) fn event_rows(rows: Vec<EventRow>) -> Vec<Value> {
    rows.into_iter()
        .map(|row| {
            Value::from_serialize(EventLine {
                id: row.id.get(),
                kind: row.kind,
                suite_id: row.suite_id.map(|s| s.to_string()),
                corpid: row.corpid.map(|c| c.to_string()),
                status: row.status.as_str(),
                attempts: row.attempts,
                received_at: at(row.received_at),
                last_error: row.last_error,
            })
        })
        .collect()
}

async fn list(console: Console, query: web::Query<HashMap<String, String>>) -> Result<HttpResponse, actix_web::Error> {
    let kind = given(query.get("kind")).filter(|kind| feed::check_kind(kind).is_ok());
    let filter = EventFilter {
        suite_id: given(query.get("suite_id")).map(SuiteId::from),
        corpid: given(query.get("corpid")).map(CorpId::from),
        kinds: kind.iter().cloned().collect(),
        ..EventFilter::default()
    };
    let status = given(query.get("status")).and_then(|s| s.parse::<EventStatus>().ok());
    let shown = context! {
        suite_id => filter.suite_id.as_ref().map(ToString::to_string),
        corpid => filter.corpid.as_ref().map(ToString::to_string),
        kind,
        status => status.map(EventStatus::as_str),
    };
    let found = console
        .state
        .db
        .run(move |conn| rows::recent_events(conn, &filter, status, LIST_LIMIT))
        .await
        .map_err(|e| failed(&console, e))?;
    let ctx = context! {
        nav => "events",
        events => event_rows(found),
        filter => shown,
        suites => console.state.registry.suites().iter().map(|s| s.suite_id.to_string()).collect::<Vec<_>>(),
        statuses => EventStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    };
    Ok(console.page(StatusCode::OK, "admin/events.html", ctx))
}

async fn render_event(
    console: &Console,
    id: EventId,
    status: StatusCode,
    done: Option<&'static str>,
    problem: Option<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let Some(event) = feed::event(&console.state.db, id).await.map_err(|e| failed(console, e))? else {
        return Err(console.fail(StatusCode::NOT_FOUND, "admin.error.not_found", None));
    };
    let fields = serde_json::to_string_pretty(&event.fields).unwrap_or_default();
    let ctx = context! {
        nav => "events",
        failed => event.status == EventStatus::Failed,
        event => Value::from_serialize(&event),
        fields,
        done,
        problem,
    };
    Ok(console.page(status, "admin/event.html", ctx))
}

async fn detail(
    console: Console,
    id: web::Path<i64>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, actix_web::Error> {
    let done = done_message(query.get("done").map(String::as_str));
    render_event(&console, EventId::new(id.into_inner()), StatusCode::OK, done, None).await
}

async fn replay(
    console: Console,
    id: web::Path<i64>,
    form: web::Form<Plain>,
) -> Result<HttpResponse, actix_web::Error> {
    console.check(&form.csrf)?;
    let id = EventId::new(id.into_inner());
    match feed::replay_failed(&console.state.db, id, &console.actor).await {
        Ok(()) => Ok(redirect(&format!("/admin/events/{id}?done=replayed"))),
        Err(ReplayError::NotFailed { .. }) => {
            render_event(&console, id, StatusCode::CONFLICT, None, Some("admin.event.not_failed".to_owned())).await
        }
        Err(error) => Err(failed(&console, error)),
    }
}
