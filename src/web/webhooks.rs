//! `/api/v1/webhooks`: subscriptions, their failed deliveries, replays.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::State;
use super::auth::{Granted, scope};
use crate::error::AppError;
use crate::model::{EventId, SuiteId};
use crate::webhooks::{self, Changes, NewSubscription, Replay};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks", web::post().to(create))
        .route("/webhooks", web::get().to(list))
        .route("/webhooks/{id}", web::get().to(get))
        .route("/webhooks/{id}", web::patch().to(update))
        .route("/webhooks/{id}", web::delete().to(remove))
        .route("/webhooks/{id}/deliveries", web::get().to(deliveries))
        .route("/webhooks/{id}/replay", web::post().to(replay));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    suite_id: Option<SuiteId>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Present (even as `null`) is `Some`, absent is `None`: `"suite_id": null` clears.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    url: Option<String>,
    kinds: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    suite_id: Option<Option<SuiteId>>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    after: Option<EventId>,
    until: Option<EventId>,
    event_ids: Option<Vec<EventId>>,
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_page")]
    limit: i64,
}

const MAX_PAGE: i64 = 1000;

fn default_page() -> i64 {
    100
}

async fn create(
    caller: Granted<scope::Events>,
    state: State,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let new = NewSubscription { url: body.url, kinds: body.kinds, suite_id: body.suite_id, enabled: body.enabled };
    let created = webhooks::create(&state.db, new, caller.suites()).await?;
    Ok(HttpResponse::Created().json(created))
}

async fn list(caller: Granted<scope::Events>, state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(json!({ "webhooks": webhooks::list(&state.db, caller.suites()).await? })))
}

async fn get(caller: Granted<scope::Events>, state: State, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(webhooks::get(&state.db, &id, caller.suites()).await?))
}

async fn update(
    caller: Granted<scope::Events>,
    state: State,
    id: web::Path<String>,
    body: web::Json<PatchBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let changes = Changes { url: body.url, kinds: body.kinds, suite_id: body.suite_id, enabled: body.enabled };
    Ok(HttpResponse::Ok().json(webhooks::update(&state.db, &id, changes, caller.suites()).await?))
}

async fn remove(caller: Granted<scope::Events>, state: State, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    webhooks::remove(&state.db, &id, caller.suites()).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn deliveries(
    caller: Granted<scope::Events>,
    state: State,
    id: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, AppError> {
    let invalid = |message: String| AppError::bad_request("invalid_query", message);
    if query.after < 0 {
        return Err(invalid("after must be an event id (0 or more)".into()));
    }
    if !(1..=MAX_PAGE).contains(&query.limit) {
        return Err(invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let after = EventId::new(query.after);
    let found = webhooks::deliveries(&state.db, &id, after, query.limit, caller.suites()).await?;
    let next_after = found.last().map_or(after, |delivery| delivery.event_id);
    Ok(HttpResponse::Ok().json(json!({ "deliveries": found, "next_after": next_after })))
}

async fn replay(
    caller: Granted<scope::Events>,
    state: State,
    id: web::Path<String>,
    body: web::Json<ReplayBody>,
) -> Result<HttpResponse, AppError> {
    let replay = match body.into_inner() {
        ReplayBody { after: Some(after), until: Some(until), event_ids: None } => Replay::Range { after, until },
        ReplayBody { after: None, until: None, event_ids: Some(ids) } => Replay::Events(ids),
        _ => return Err(AppError::bad_request("invalid_body", "give either after and until, or event_ids")),
    };
    let queued = webhooks::replay(&state.db, &id, replay, caller.suites()).await?;
    Ok(HttpResponse::Accepted().json(json!({ "queued": queued })))
}
