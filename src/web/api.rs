//! `/api/v1`: what the provider's own services call, behind the bearer token.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{AppState, State};
use crate::error::AppError;
use crate::store::{corps, events, suites};
use crate::tokens::{Token, TokenKey};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/suites/{suite_id}", web::get().to(suite))
        .route("/suites/{suite_id}/token", web::get().to(suite_token))
        .route("/suites/{suite_id}/corps", web::get().to(corp_list))
        .route("/suites/{suite_id}/corps/{corpid}", web::get().to(corp))
        .route("/suites/{suite_id}/corps/{corpid}/token", web::get().to(corp_token))
        .route("/providers/{provider_corpid}/token", web::get().to(provider_token))
        .route("/events", web::get().to(event_feed));
}

/// Proof that the request carried `Authorization: Bearer $ADMIN_TOKEN`.
pub struct Admin;

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = request.app_data::<State>() else {
            return ready(Err(AppError::Unavailable));
        };
        ready(authorize(state, request))
    }
}

fn authorize(state: &AppState, request: &HttpRequest) -> Result<Admin, AppError> {
    let expected = state.admin_token.as_ref().ok_or(AppError::AdminTokenUnset)?;
    let presented = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(AppError::Unauthorized)?;
    let matches: bool = presented.as_bytes().ct_eq(expected.expose_secret().as_bytes()).into();
    if matches { Ok(Admin) } else { Err(AppError::Unauthorized) }
}

/// RFC 3339 in UTC from the stored Unix milliseconds.
pub fn rfc3339(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[derive(Serialize)]
struct SuiteView {
    suite_id: String,
    provider_corpid: String,
    has_ticket: bool,
    ticket_updated_at: Option<String>,
}

async fn suite(_: Admin, state: State, suite_id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = suite_id.into_inner();
    let row = state.db.run(move |conn| suites::find_suite(conn, &id)).await?.ok_or(AppError::NotFound("suite"))?;
    Ok(HttpResponse::Ok().json(SuiteView {
        suite_id: row.suite_id,
        provider_corpid: row.provider_corpid,
        has_ticket: row.ticket.is_some(),
        ticket_updated_at: row.ticket_updated_at.map(rfc3339),
    }))
}

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

#[derive(Deserialize)]
struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn event_feed(_: Admin, state: State, query: web::Query<FeedQuery>) -> Result<HttpResponse, AppError> {
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if after < 0 {
        return Err(AppError::bad_request("invalid_query", "after must be an event id (0 or more)"));
    }
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::bad_request("invalid_query", format!("limit must be 1 to {MAX_PAGE}")));
    }
    let rows = state.db.run(move |conn| events::page(conn, after, limit)).await?;
    let next_after = rows.last().map_or(after, |row| row.id);
    let events: Vec<Value> = rows.into_iter().map(event_view).collect();
    Ok(HttpResponse::Ok().json(json!({"events": events, "next_after": next_after})))
}

fn event_view(row: events::EventRow) -> Value {
    let fields: Value = serde_json::from_str(&row.fields).unwrap_or_else(|_| json!({}));
    json!({
        "id": row.id,
        "provider_corpid": row.provider_corpid,
        "suite_id": row.suite_id,
        "corpid": row.corpid,
        "kind": row.kind,
        "received_at": rfc3339(row.received_at),
        "fields": fields,
        "status": row.status,
        "attempts": row.attempts,
        "processed_at": row.processed_at.map(rfc3339),
        "next_attempt_at": row.next_attempt_at.map(rfc3339),
        "last_error": row.last_error,
    })
}

fn token_view(token: &Token) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "access_token": token.access_token.expose_secret(),
        "expires_at": rfc3339(token.expires_at),
    }))
}

/// A cached token, or a new one when the caller asks to refresh.
async fn hand_out(state: &State, key: &TokenKey, refresh: bool) -> Result<HttpResponse, AppError> {
    let token = if refresh { state.tokens.refresh(key).await? } else { state.tokens.get(key).await? };
    Ok(token_view(&token))
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    refresh: bool,
}

async fn suite_token(
    _: Admin,
    state: State,
    suite_id: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let key = TokenKey::suite(&suite_id);
    hand_out(&state, &key, query.refresh).await
}

async fn provider_token(
    _: Admin,
    state: State,
    provider_corpid: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let key = TokenKey::Provider { provider_corpid: provider_corpid.into_inner() };
    hand_out(&state, &key, query.refresh).await
}

async fn corp_token(
    _: Admin,
    state: State,
    path: web::Path<(String, String)>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    let key = TokenKey::corp(&suite_id, &corpid);
    hand_out(&state, &key, query.refresh).await
}

fn corp_summary(corp: &corps::CorpView) -> Value {
    json!({
        "corpid": corp.corpid,
        "corp_name": corp.corp_name,
        "agent_id": corp.agent_id,
        "status": corp.status,
        "authorized_at": rfc3339(corp.authorized_at),
        "updated_at": rfc3339(corp.updated_at),
    })
}

async fn corp_list(_: Admin, state: State, suite_id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = suite_id.into_inner();
    let lookup = id.clone();
    let suite = state.db.run(move |conn| suites::find_suite(conn, &lookup)).await?;
    if suite.is_none() {
        return Err(AppError::NotFound("suite"));
    }
    let rows = state.db.run(move |conn| corps::list(conn, &id)).await?;
    let corps: Vec<Value> = rows.iter().map(corp_summary).collect();
    Ok(HttpResponse::Ok().json(json!({ "corps": corps })))
}

async fn corp(_: Admin, state: State, path: web::Path<(String, String)>) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    let corp =
        state.db.run(move |conn| corps::find(conn, &suite_id, &corpid)).await?.ok_or(AppError::NotFound("corp"))?;
    let mut view = corp_summary(&corp);
    view["suite_id"] = json!(corp.suite_id);
    view["auth_info"] = serde_json::from_str(&corp.auth_info).unwrap_or_else(|_| json!({}));
    view["auth_error"] = json!(corp.auth_error);
    Ok(HttpResponse::Ok().json(view))
}
