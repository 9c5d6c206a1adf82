//! `/api/v1` suites, corps, tokens (the tokens scope) and the event feed (the events scope).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::State;
use super::auth::{Admin, Granted, scope};
use crate::error::AppError;
use crate::feed::{self, EventFilter, rfc3339};
use crate::model::{CorpId, EventId, ProviderCorpId, SuiteId};
use crate::store::corps;
use crate::tokens::{Token, TokenKey};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/suites/{suite_id}", web::get().to(suite))
        .route("/suites/{suite_id}/token", web::get().to(suite_token))
        .route("/suites/{suite_id}/corps", web::get().to(corp_list))
        .route("/suites/{suite_id}/corps/{corpid}", web::get().to(corp))
        .route("/suites/{suite_id}/corps/{corpid}/token", web::get().to(corp_token))
        .route("/providers/{provider_corpid}/token", web::get().to(provider_token))
        .route("/events", web::get().to(event_feed))
        .route("/events/{id}/replay", web::post().to(replay_event));
}

async fn suite(
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.registry.suite_view(&suite_id).await?))
}

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

/// `after`, `limit`, `suite_id`, `corpid`, `kind` (repeatable) and `wait`; parsed by
/// hand because `kind` repeats.
struct FeedQuery {
    after: i64,
    limit: i64,
    filter: EventFilter,
    wait: Duration,
}

impl FeedQuery {
    fn parse(query: &str) -> Result<Self, AppError> {
        let invalid = |message: String| AppError::bad_request("invalid_query", message);
        let number = |name: &str, value: &str| {
            value.parse::<i64>().map_err(|_| invalid(format!("{name} must be a whole number")))
        };
        let mut parsed =
            FeedQuery { after: 0, limit: DEFAULT_PAGE, filter: EventFilter::default(), wait: Duration::ZERO };
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "after" => parsed.after = number("after", &value)?,
                "limit" => parsed.limit = number("limit", &value)?,
                "wait" => {
                    let seconds = number("wait", &value)?;
                    if !(0..=i64::try_from(feed::MAX_WAIT_SECONDS).unwrap_or(60)).contains(&seconds) {
                        return Err(invalid(format!("wait must be 0 to {} seconds", feed::MAX_WAIT_SECONDS)));
                    }
                    parsed.wait = Duration::from_secs(seconds.unsigned_abs());
                }
                "suite_id" => parsed.filter.suite_id = Some(SuiteId::from(value.into_owned())),
                "corpid" => parsed.filter.corpid = Some(CorpId::from(value.into_owned())),
                "kind" => {
                    feed::check_kind(&value).map_err(|e| invalid(e.to_string()))?;
                    parsed.filter.kinds.push(value.into_owned());
                }
                _ => {}
            }
        }
        if parsed.after < 0 {
            return Err(invalid("after must be an event id (0 or more)".into()));
        }
        if !(1..=MAX_PAGE).contains(&parsed.limit) {
            return Err(invalid(format!("limit must be 1 to {MAX_PAGE}")));
        }
        Ok(parsed)
    }
}

async fn event_feed(
    caller: Granted<scope::Events>,
    state: State,
    request: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let mut query = FeedQuery::parse(request.query_string())?;
    caller.suites().restrict(&mut query.filter)?;
    let page = feed::page(&state.db, EventId::new(query.after), query.limit, &query.filter, query.wait).await?;
    Ok(HttpResponse::Ok().json(page))
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
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let key = TokenKey::suite(&suite_id);
    hand_out(&state, &key, query.refresh).await
}

async fn provider_token(
    _: Granted<scope::Tokens>,
    state: State,
    provider_corpid: web::Path<ProviderCorpId>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let key = TokenKey::Provider { provider_corpid: provider_corpid.into_inner() };
    hand_out(&state, &key, query.refresh).await
}

async fn corp_token(
    _: Granted<scope::Tokens>,
    state: State,
    path: web::Path<(SuiteId, CorpId)>,
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

async fn corp_list(
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
) -> Result<HttpResponse, AppError> {
    let id = suite_id.into_inner();
    if state.registry.suite(&id).is_none() {
        return Err(AppError::NotFound("suite"));
    }
    let rows = state.db.run(move |conn| corps::list(conn, &id)).await?;
    let corps: Vec<Value> = rows.iter().map(corp_summary).collect();
    Ok(HttpResponse::Ok().json(json!({ "corps": corps })))
}

async fn corp(
    _: Granted<scope::Tokens>,
    state: State,
    path: web::Path<(SuiteId, CorpId)>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    let corp =
        state.db.run(move |conn| corps::find(conn, &suite_id, &corpid)).await?.ok_or(AppError::NotFound("corp"))?;
    let mut view = corp_summary(&corp);
    view["suite_id"] = json!(corp.suite_id);
    view["auth_info"] = serde_json::from_str(&corp.auth_info).unwrap_or_else(|_| json!({}));
    view["auth_error"] = json!(corp.auth_error);
    Ok(HttpResponse::Ok().json(view))
}

/// A failed event given back to the worker (admin scope): 202, or 409 `not_failed`.
async fn replay_event(admin: Admin, state: State, id: web::Path<i64>) -> Result<HttpResponse, AppError> {
    let id = EventId::new(id.into_inner());
    feed::replay_failed(&state.db, id, &admin.actor).await?;
    Ok(HttpResponse::Accepted().json(json!({ "replayed": id })))
}
