//! `/api/v1`: what the provider's own services call, behind the bearer token.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{AppState, State};
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
        .route("/events", web::get().to(event_feed));
}

/// Proof that the request carried `Authorization: Bearer $ADMIN_TOKEN`; `actor`
/// names the caller in the audit log.
pub struct Admin {
    pub actor: String,
}

/// A failed authentication is answered this much later, so guessing is slow.
const FAILED_AUTH_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

impl FromRequest for Admin {
    type Error = AppError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let outcome = match request.app_data::<State>() {
            Some(state) => authorize(state, request),
            None => Err(AppError::Unavailable),
        };
        let client = request.peer_addr().map(|addr| addr.ip().to_string()).unwrap_or_else(|| "unknown".into());
        Box::pin(async move {
            if let Err(AppError::Unauthorized) = &outcome {
                // The key is named when keys are; today one bearer exists, so "unknown".
                tracing::warn!(key = "unknown", %client, "authentication failed");
                tokio::time::sleep(FAILED_AUTH_DELAY).await;
            }
            outcome
        })
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
    if matches { Ok(Admin { actor: "bootstrap".to_owned() }) } else { Err(AppError::Unauthorized) }
}

async fn suite(_: Admin, state: State, suite_id: web::Path<SuiteId>) -> Result<HttpResponse, AppError> {
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

async fn event_feed(_: Admin, state: State, request: HttpRequest) -> Result<HttpResponse, AppError> {
    let query = FeedQuery::parse(request.query_string())?;
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
    _: Admin,
    state: State,
    suite_id: web::Path<SuiteId>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let key = TokenKey::suite(&suite_id);
    hand_out(&state, &key, query.refresh).await
}

async fn provider_token(
    _: Admin,
    state: State,
    provider_corpid: web::Path<ProviderCorpId>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let key = TokenKey::Provider { provider_corpid: provider_corpid.into_inner() };
    hand_out(&state, &key, query.refresh).await
}

async fn corp_token(
    _: Admin,
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

async fn corp_list(_: Admin, state: State, suite_id: web::Path<SuiteId>) -> Result<HttpResponse, AppError> {
    let id = suite_id.into_inner();
    if state.registry.suite(&id).is_none() {
        return Err(AppError::NotFound("suite"));
    }
    let rows = state.db.run(move |conn| corps::list(conn, &id)).await?;
    let corps: Vec<Value> = rows.iter().map(corp_summary).collect();
    Ok(HttpResponse::Ok().json(json!({ "corps": corps })))
}

async fn corp(_: Admin, state: State, path: web::Path<(SuiteId, CorpId)>) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    let corp =
        state.db.run(move |conn| corps::find(conn, &suite_id, &corpid)).await?.ok_or(AppError::NotFound("corp"))?;
    let mut view = corp_summary(&corp);
    view["suite_id"] = json!(corp.suite_id);
    view["auth_info"] = serde_json::from_str(&corp.auth_info).unwrap_or_else(|_| json!({}));
    view["auth_error"] = json!(corp.auth_error);
    Ok(HttpResponse::Ok().json(view))
}
