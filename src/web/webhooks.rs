//! `/api/v1/webhooks`: subscriptions, their failed deliveries, replays.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::auth::{Granted, scope};
use super::{ErrorBody, State};
use crate::error::AppError;
use crate::model::{EventId, SuiteId};
use crate::webhooks::{self, Changes, Created, Delivery, NewSubscription, Replay, Subscription};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks", web::post().to(create))
        .route("/webhooks", web::get().to(list))
        .route("/webhooks/{id}", web::get().to(get))
        .route("/webhooks/{id}", web::patch().to(update))
        .route("/webhooks/{id}", web::delete().to(remove))
        .route("/webhooks/{id}/deliveries", web::get().to(deliveries))
        .route("/webhooks/{id}/replay", web::post().to(replay));
}

#[derive(Deserialize, ToSchema)]
#[schema(as = WebhookInput)]
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

#[derive(Deserialize, ToSchema)]
#[schema(as = WebhookPatch)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    url: Option<String>,
    kinds: Option<Vec<String>>,
    /// `null` clears the suite filter.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    suite_id: Option<Option<SuiteId>>,
    enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[schema(as = WebhookReplay)]
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

#[derive(Serialize, ToSchema)]
struct WebhookList {
    webhooks: Vec<Subscription>,
}

#[derive(Serialize, ToSchema)]
struct DeliveryPage {
    deliveries: Vec<Delivery>,
    /// Pass as `after` to read on.
    next_after: EventId,
}

#[derive(Serialize, ToSchema)]
struct Queued {
    /// How many deliveries the replay queued.
    queued: usize,
}

fn default_page() -> i64 {
    100
}

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks",
    description = "Subscribes a URL to events (scope `events`); the signing secret is in this answer only. \
                   A key restricted to suites must name one of them.",
    request_body = CreateBody,
    responses((status = 201, description = "The subscription and its secret", body = Created), (status = 400, description = "`invalid_body`: a bad URL, kind or suite", body = ErrorBody)))]
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

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    description = "The subscriptions the key reaches (scope `events`).",
    responses((status = 200, description = "The subscriptions", body = WebhookList)))]
async fn list(caller: Granted<scope::Events>, state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(WebhookList { webhooks: webhooks::list(&state.db, caller.suites()).await? }))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", description = "One subscription (scope `events`).",
    params(("id" = String, Path, description = "The subscription's id")), responses((status = 200, description = "The subscription", body = Subscription), (status = 404, description = "`not_found`: no such webhook (or not one the key reaches)", body = ErrorBody)))]
async fn get(caller: Granted<scope::Events>, state: State, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(webhooks::get(&state.db, &id, caller.suites()).await?))
}

#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", description = "Changes the fields given (scope `events`).",
    params(("id" = String, Path, description = "The subscription's id")), request_body = PatchBody,
    responses((status = 200, description = "The subscription as it now is", body = Subscription), (status = 400, description = "`invalid_body`: a bad URL, kind or suite", body = ErrorBody), (status = 404, description = "`not_found`: no such webhook (or not one the key reaches)", body = ErrorBody)))]
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

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", description = "Removes a subscription (scope `events`).",
    params(("id" = String, Path, description = "The subscription's id")), responses((status = 204, description = "Removed"), (status = 404, description = "`not_found`: no such webhook (or not one the key reaches)", body = ErrorBody)))]
async fn remove(caller: Granted<scope::Events>, state: State, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    webhooks::remove(&state.db, &id, caller.suites()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    description = "Deliveries that did not succeed at once, or that a replay queued (scope `events`).",
    params(("id" = String, Path, description = "The subscription's id"),
        ("after" = Option<i64>, Query, description = "Deliveries of events after this id (default 0)"),
        ("limit" = Option<i64>, Query, description = "1 to 1000 (default 100)")),
    responses((status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody), (status = 404, description = "`not_found`: no such webhook (or not one the key reaches)", body = ErrorBody)))]
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
    Ok(HttpResponse::Ok().json(DeliveryPage { deliveries: found, next_after }))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/replay", tag = "webhooks",
    description = "Queues events again for the subscription (scope `events`): a range (`after` and `until`) or `event_ids`.",
    params(("id" = String, Path, description = "The subscription's id")), request_body = ReplayBody,
    responses((status = 202, description = "Queued", body = Queued),
        (status = 400, description = "`invalid_body`: neither a range nor event_ids, or both", body = ErrorBody), (status = 404, description = "`not_found`: no such webhook (or not one the key reaches)", body = ErrorBody)))]
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
    Ok(HttpResponse::Accepted().json(Queued { queued }))
}
