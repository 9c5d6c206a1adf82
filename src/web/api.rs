//! `/api/v1` suites, corps, tokens (the tokens scope) and the event feed (the events scope).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{Admin, Granted, scope};
use super::openapi::WecomErrors;
use super::{ErrorBody, State};
use crate::error::AppError;
use crate::feed::{self, EventFilter, FeedPage, rfc3339};
use crate::model::{CorpId, CorpStatus, EventId, ProviderCorpId, SuiteId};
use crate::registry::SuiteView;
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

#[utoipa::path(get, path = "/api/v1/suites/{suite_id}", tag = "suites",
    description = "A suite: its kind, ticket state, active corps and callback URLs (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id")),
    responses((status = 200, description = "The suite", body = SuiteView),
        (status = 404, description = "`not_found`: no such suite", body = ErrorBody)))]
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

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    description = "The event log in commit order (scope `events`); a key restricted to suites sees only theirs. \
                   With `wait`, an empty page is held until an event arrives or the wait ends.",
    params(
        ("after" = Option<i64>, Query, description = "Events after this id (default 0)"),
        ("limit" = Option<i64>, Query, description = "1 to 1000 (default 100)"),
        ("suite_id" = Option<String>, Query, description = "Only this suite's events"),
        ("corpid" = Option<String>, Query, description = "Only this corp's events"),
        ("kind" = Option<Vec<String>>, Query, explode = true, description = "Only these kinds (repeatable)"),
        ("wait" = Option<i64>, Query, description = "Long poll: 0 to 60 seconds (default 0)"),
    ),
    responses((status = 200, description = "A page of events", body = FeedPage),
        (status = 400, description = "`invalid_query`: a number, kind or range is wrong", body = ErrorBody)))]
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

/// A token as handed out (fields in the order they have always been written).
#[derive(Serialize, ToSchema)]
struct TokenView {
    access_token: String,
    /// RFC 3339, UTC.
    expires_at: String,
}

fn token_view(token: &Token) -> HttpResponse {
    HttpResponse::Ok().json(TokenView {
        access_token: token.access_token.expose_secret().to_owned(),
        expires_at: rfc3339(token.expires_at),
    })
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

#[utoipa::path(get, path = "/api/v1/suites/{suite_id}/token", tag = "tokens",
    description = "The suite_access_token (scope `tokens`), cached until shortly before it expires.",
    params(("suite_id" = String, Path, description = "The suite's id"), ("refresh" = Option<bool>, Query, description = "Fetch a new token even if the cached one is valid")),
    responses((status = 200, description = "The token", body = TokenView),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `permanent_code_rejected`, `suite_disabled`, `auth_lost`", body = ErrorBody),
        WecomErrors))]
async fn suite_token(
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let key = TokenKey::suite(&suite_id);
    hand_out(&state, &key, query.refresh).await
}

#[utoipa::path(get, path = "/api/v1/providers/{provider_corpid}/token", tag = "tokens",
    description = "The provider_access_token (scope `tokens`).",
    params(("provider_corpid" = String, Path, description = "The provider's corpid"), ("refresh" = Option<bool>, Query, description = "Fetch a new token even if the cached one is valid")),
    responses((status = 200, description = "The token", body = TokenView),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `permanent_code_rejected`, `suite_disabled`, `auth_lost`", body = ErrorBody),
        WecomErrors))]
async fn provider_token(
    _: Granted<scope::Tokens>,
    state: State,
    provider_corpid: web::Path<ProviderCorpId>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let key = TokenKey::Provider { provider_corpid: provider_corpid.into_inner() };
    hand_out(&state, &key, query.refresh).await
}

#[utoipa::path(get, path = "/api/v1/suites/{suite_id}/corps/{corpid}/token", tag = "tokens",
    description = "The corp's access_token for the suite (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it"), ("refresh" = Option<bool>, Query, description = "Fetch a new token even if the cached one is valid")),
    responses((status = 200, description = "The token", body = TokenView),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `permanent_code_rejected`, `suite_disabled`, `auth_lost`", body = ErrorBody),
        WecomErrors))]
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

/// A corp as listed (fields in the order they have always been written).
#[derive(Serialize, ToSchema)]
struct CorpSummary {
    agent_id: Option<i64>,
    authorized_at: String,
    corp_name: String,
    corpid: CorpId,
    status: CorpStatus,
    updated_at: String,
}

impl From<corps::CorpView> for CorpSummary {
    fn from(corp: corps::CorpView) -> Self {
        CorpSummary {
            agent_id: corp.agent_id,
            authorized_at: rfc3339(corp.authorized_at),
            corp_name: corp.corp_name,
            corpid: corp.corpid,
            status: corp.status,
            updated_at: rfc3339(corp.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct CorpList {
    corps: Vec<CorpSummary>,
}

/// One corp: the summary's fields, its suite, WeCom's authorization and the last
/// exchange error, in alphabetical order as they have always been written.
#[derive(Serialize, ToSchema)]
struct CorpDetail {
    agent_id: Option<i64>,
    /// Why the last exchange of the corp's auth code failed, if it did.
    auth_error: Option<String>,
    /// WeCom's authorization of the corp (as get_auth_info answered it).
    #[schema(value_type = Object)]
    auth_info: Value,
    authorized_at: String,
    corp_name: String,
    corpid: CorpId,
    status: CorpStatus,
    suite_id: SuiteId,
    updated_at: String,
}

impl From<corps::CorpView> for CorpDetail {
    fn from(corp: corps::CorpView) -> Self {
        CorpDetail {
            agent_id: corp.agent_id,
            auth_error: corp.auth_error,
            auth_info: serde_json::from_str(&corp.auth_info).unwrap_or_else(|_| Value::Object(Default::default())),
            authorized_at: rfc3339(corp.authorized_at),
            corp_name: corp.corp_name,
            corpid: corp.corpid,
            status: corp.status,
            suite_id: corp.suite_id,
            updated_at: rfc3339(corp.updated_at),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/suites/{suite_id}/corps", tag = "suites",
    description = "The corps that authorized the suite, whatever their status (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id")),
    responses((status = 200, description = "The corps", body = CorpList),
        (status = 404, description = "`not_found`: no such suite", body = ErrorBody)))]
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
    Ok(HttpResponse::Ok().json(CorpList { corps: rows.into_iter().map(CorpSummary::from).collect() }))
}

#[utoipa::path(get, path = "/api/v1/suites/{suite_id}/corps/{corpid}", tag = "suites",
    description = "One corp of the suite, with WeCom's authorization (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")),
    responses((status = 200, description = "The corp", body = CorpDetail),
        (status = 404, description = "`not_found`: no such corp", body = ErrorBody)))]
async fn corp(
    _: Granted<scope::Tokens>,
    state: State,
    path: web::Path<(SuiteId, CorpId)>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    let corp =
        state.db.run(move |conn| corps::find(conn, &suite_id, &corpid)).await?.ok_or(AppError::NotFound("corp"))?;
    Ok(HttpResponse::Ok().json(CorpDetail::from(corp)))
}

#[derive(Serialize, ToSchema)]
struct Replayed {
    /// The event given back to the worker.
    replayed: EventId,
}

/// A failed event given back to the worker (admin scope): 202, or 409 `not_failed`.
#[utoipa::path(post, path = "/api/v1/events/{id}/replay", tag = "events",
    description = "Gives a failed event back to the worker (scope `admin`): pending, due now, its attempts counted \
                   afresh, audited as `event.replay`. Only a failed event is replayed.",
    params(("id" = i64, Path, description = "The event's id")),
    responses((status = 202, description = "Queued again", body = Replayed),
        (status = 404, description = "`not_found`: no such event", body = ErrorBody),
        (status = 409, description = "`not_failed`: the event is pending or done; nothing changed", body = ErrorBody)))]
async fn replay_event(admin: Admin, state: State, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = EventId::new(id.parse().map_err(|_| AppError::NotFound("event"))?);
    feed::replay_failed(&state.db, id, &admin.actor).await?;
    Ok(HttpResponse::Accepted().json(Replayed { replayed: id }))
}
