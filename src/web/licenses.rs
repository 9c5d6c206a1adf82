//! `/api/v1/suites/{suite_id}/corps/{corpid}/licenses…`: reads with the tokens
//! scope; whatever buys or changes a binding with the admin scope.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{Admin, Granted, scope};
use super::openapi::WecomErrors;
use super::{ErrorBody, State};
use crate::error::AppError;
use crate::licenses::client::{Activation, Transfer};
use crate::licenses::{AutoActive, LicensesView, OrderRequest, OrderView, Results};
use crate::model::{CorpId, SuiteId};

pub fn routes(cfg: &mut web::ServiceConfig) {
    const BASE: &str = "/suites/{suite_id}/corps/{corpid}/licenses";
    cfg.route(BASE, web::get().to(overview))
        .route(&format!("{BASE}/activations"), web::post().to(activate))
        .route(&format!("{BASE}/transfers"), web::post().to(transfer))
        .route(&format!("{BASE}/auto_activate"), web::get().to(auto_active))
        .route(&format!("{BASE}/auto_activate"), web::put().to(set_auto_active))
        .route(&format!("{BASE}/orders"), web::post().to(order));
}

/// One item, or a list of them (a batch).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(item) => vec![item],
            Self::Many(items) => items,
        }
    }
}

type CorpPath = web::Path<(SuiteId, CorpId)>;

#[utoipa::path(get, path = "/api/v1/suites/{suite_id}/corps/{corpid}/licenses", tag = "licenses",
    description = "The corp's licenses as last synchronised: codes, members, trial, unlicensed members (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")),
    responses((status = 200, description = "The licenses", body = LicensesView),
        (status = 409, description = "`corp_not_active`, `license_refused` (with `errcode`, `errmsg`), `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn overview(_: Granted<scope::Tokens>, state: State, path: CorpPath) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.overview(&suite_id, &corpid).await?))
}

#[utoipa::path(post, path = "/api/v1/suites/{suite_id}/corps/{corpid}/licenses/activations", tag = "licenses",
    description = "Binds codes to members (scope `admin`): one activation or a list (a batch).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")), request_body = OneOrMany<Activation>,
    responses((status = 200, description = "Each item's outcome", body = Results<Activation>),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `license_refused` (with `errcode`, `errmsg`), `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn activate(
    _: Admin,
    state: State,
    path: CorpPath,
    body: web::Json<OneOrMany<Activation>>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.activate(&suite_id, &corpid, body.into_inner().into_vec()).await?))
}

#[utoipa::path(post, path = "/api/v1/suites/{suite_id}/corps/{corpid}/licenses/transfers", tag = "licenses",
    description = "Moves members' licenses to other members (scope `admin`): one transfer or a list.",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")), request_body = OneOrMany<Transfer>,
    responses((status = 200, description = "Each item's outcome", body = Results<Transfer>),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `license_refused` (with `errcode`, `errmsg`), `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn transfer(
    _: Admin,
    state: State,
    path: CorpPath,
    body: web::Json<OneOrMany<Transfer>>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.transfer(&suite_id, &corpid, body.into_inner().into_vec()).await?))
}

#[utoipa::path(get, path = "/api/v1/suites/{suite_id}/corps/{corpid}/licenses/auto_activate", tag = "licenses",
    description = "Whether WeCom activates licenses automatically in the corp (scope `tokens`).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")),
    responses((status = 200, description = "The setting", body = AutoActive),
        (status = 409, description = "`corp_not_active`, `license_refused` (with `errcode`, `errmsg`), `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn auto_active(_: Granted<scope::Tokens>, state: State, path: CorpPath) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.auto_active(&suite_id, &corpid).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AutoActiveBody {
    /// 0: off; 1: WeCom activates a free license for a member who needs one.
    auto_active_status: i32,
}

#[utoipa::path(put, path = "/api/v1/suites/{suite_id}/corps/{corpid}/licenses/auto_activate", tag = "licenses",
    description = "Turns automatic activation on (1) or off (0) (scope `admin`).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")), request_body = AutoActiveBody,
    responses((status = 200, description = "The setting", body = AutoActive),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `license_refused` (with `errcode`, `errmsg`), `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn set_auto_active(
    _: Admin,
    state: State,
    path: CorpPath,
    body: web::Json<AutoActiveBody>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.set_auto_active(&suite_id, &corpid, body.auto_active_status).await?))
}

#[utoipa::path(post, path = "/api/v1/suites/{suite_id}/corps/{corpid}/licenses/orders", tag = "licenses",
    description = "Buys licenses for the corp (scope `admin`); `dry_run` only prices the order.",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")), request_body = OrderRequest,
    responses((status = 200, description = "The order", body = OrderView),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `license_refused` (with `errcode`, `errmsg`), `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn order(
    _: Admin,
    state: State,
    path: CorpPath,
    body: web::Json<OrderRequest>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.order(&suite_id, &corpid, body.into_inner()).await?))
}
