//! The front door under `/api/v1` (the tokens scope): member OAuth and web login,
//! the provider admin's login, and JS-SDK signatures.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{Granted, scope};
use super::openapi::WecomErrors;
use super::{ErrorBody, State};
use crate::error::AppError;
use crate::login::{AuthorizeUrl, CodeMember, OAuthScope};
use crate::model::{CorpId, ProviderCorpId, SuiteId};
use crate::tokens::JsapiSignatures;
use crate::wecom::front::LoginInfo;
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AuthCodeBody {
    auth_code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignBody {
    url: String,
}

#[utoipa::path(get, path = "/api/v1/suites/{suite_id}/oauth/authorize_url", tag = "front door",
    description = "The member OAuth URL of a third-party app (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("redirect_uri" = Option<String>, Query, description = "Where WeCom sends the member back (default: the suite's)"),
        ("state" = Option<String>, Query, description = "Passed back unchanged"),
        ("scope" = Option<String>, Query, description = "`snsapi_base` (default) or `snsapi_privateinfo`")),
    responses((status = 200, description = "The URL", body = AuthorizeUrl),
        (status = 400, description = "`invalid_query`, `invalid_scope`, `invalid_redirect_uri`, `wrong_suite_kind`", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown suite", body = ErrorBody)))]
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

#[utoipa::path(post, path = "/api/v1/suites/{suite_id}/oauth/user", tag = "front door",
    description = "The member an OAuth code names (scope `tokens`); a code is exchanged once.",
    params(("suite_id" = String, Path, description = "The suite's id")), request_body = CodeBody,
    responses((status = 200, description = "The member", body = CodeMember),
        (status = 400, description = "`invalid_body`, `oauth_code_invalid`, `wrong_suite_kind`", body = ErrorBody),
        (status = 409, description = "`oauth_code_used`: the code was already exchanged; `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn oauth_user(
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
    body: web::Json<CodeBody>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.login.oauth_member(&suite_id, &body.code).await?))
}

#[utoipa::path(get, path = "/api/v1/suites/{suite_id}/web_login/authorize_url", tag = "front door",
    description = "The web-login (QR code) URL of the login app (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("redirect_uri" = Option<String>, Query, description = "Where WeCom sends the member back (default: the suite's)"),
        ("state" = Option<String>, Query, description = "Passed back unchanged")),
    responses((status = 200, description = "The URL", body = AuthorizeUrl),
        (status = 400, description = "`invalid_query` (web login takes no scope), `invalid_redirect_uri`, `wrong_suite_kind`", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown suite", body = ErrorBody)))]
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

#[utoipa::path(post, path = "/api/v1/suites/{suite_id}/web_login/user", tag = "front door",
    description = "The member a web-login code names (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id")), request_body = CodeBody,
    responses((status = 200, description = "The member", body = CodeMember),
        (status = 400, description = "`invalid_body`, `oauth_code_invalid`, `wrong_suite_kind`", body = ErrorBody),
        (status = 409, description = "`oauth_code_used`: the code was already exchanged; `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn web_login_user(
    _: Granted<scope::Tokens>,
    state: State,
    suite_id: web::Path<SuiteId>,
    body: web::Json<CodeBody>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.login.web_login_member(&suite_id, &body.code).await?))
}

#[utoipa::path(post, path = "/api/v1/providers/{provider_corpid}/admin_login", tag = "front door",
    description = "Who logged in to the provider's admin from WeCom (scope `tokens`): get_login_info of an auth_code.",
    params(("provider_corpid" = String, Path, description = "The provider's corpid")), request_body = AuthCodeBody,
    responses((status = 200, description = "The login", body = LoginInfo),
        (status = 400, description = "`invalid_body`, `oauth_code_invalid`", body = ErrorBody),
        (status = 409, description = "`oauth_code_used`: the code was already exchanged; `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn admin_login(
    _: Granted<scope::Tokens>,
    state: State,
    provider_corpid: web::Path<ProviderCorpId>,
    body: web::Json<AuthCodeBody>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.login.admin_login(&provider_corpid, &body.auth_code).await?))
}

#[utoipa::path(post, path = "/api/v1/suites/{suite_id}/corps/{corpid}/jsapi_signatures", tag = "front door",
    description = "wx.config and wx.agentConfig signatures of a page URL (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")), request_body = SignBody,
    responses((status = 200, description = "The signatures", body = JsapiSignatures),
        (status = 400, description = "`invalid_body`, `invalid_url`", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
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
