//! The front door under `/api/v1` (the tokens scope): member OAuth and web login,
//! the provider admin's login, and JS-SDK signatures.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::State;
use super::auth::{Granted, scope};
use crate::error::AppError;
use crate::login::OAuthScope;
use crate::model::{CorpId, ProviderCorpId, SuiteId};
use crate::wecom::jssdk::PageUrl;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/suites/{suite_id}/oauth/authorize_url", web::get().to(oauth_url))
        .route("/suites/{suite_id}/oauth/user", web::post().to(oauth_user))
        .route("/suites/{suite_id}/web_login/authorize_url", web::get().to(web_login_url))
        .route("/suites/{suite_id}/web_login/user", web::post().to(web_login_user))
        .route("/providers/{provider_corpid}/admin_login", web::post().to(admin_login))
        .route("/suites/{suite_id}/corps/{corpid}/jsapi_signatures", web::post().to(jsapi_signatures));
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthCodeBody {
    auth_code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    url: String,
}

async fn oauth_url(
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
    query: web::Query<AuthorizeQuery>,
) -> Result<HttpResponse, AppError> {
    let scope = OAuthScope::parse(query.scope.as_deref())?;
    let url = state.login.oauth_url(&suite_id, query.redirect_uri.as_deref(), scope, query.state.as_deref())?;
    Ok(HttpResponse::Ok().json(url))
}

async fn oauth_user(
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
    body: web::Json<CodeBody>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.login.oauth_member(&suite_id, &body.code).await?))
}

async fn web_login_url(
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
    query: web::Query<AuthorizeQuery>,
) -> Result<HttpResponse, AppError> {
    if query.scope.is_some() {
        return Err(AppError::bad_request("invalid_query", "web login takes no scope"));
    }
    let url = state.login.web_login_url(&suite_id, query.redirect_uri.as_deref(), query.state.as_deref())?;
    Ok(HttpResponse::Ok().json(url))
}

async fn web_login_user(
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
    body: web::Json<CodeBody>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.login.web_login_member(&suite_id, &body.code).await?))
}

async fn admin_login(
    _: Granted<scope::Tokens>,
    state: State,
    provider_corpid: web::Path<ProviderCorpId>,
    body: web::Json<AuthCodeBody>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.login.admin_login(&provider_corpid, &body.auth_code).await?))
}

async fn jsapi_signatures(
    _: Granted<scope::Tokens>,
    state: State,
    path: web::Path<(SuiteId, CorpId)>,
    body: web::Json<SignBody>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    let url = PageUrl::parse(&body.url).map_err(|problem| AppError::bad_request("invalid_url", problem))?;
    Ok(HttpResponse::Ok().json(state.tokens.jsapi_signatures(&suite_id, &corpid, &url).await?))
}
