//! `/api/v1/suites/{suite_id}/corps/{corpid}/licenses…`: reads with the tokens
//! scope; whatever buys or changes a binding with the admin scope.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::State;
use super::auth::{Admin, Granted, scope};
use crate::error::AppError;
use crate::licenses::OrderRequest;
use crate::licenses::client::{Activation, Transfer};
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
#[derive(Deserialize)]
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

async fn overview(_: Granted<scope::Tokens>, state: State, path: CorpPath) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.overview(&suite_id, &corpid).await?))
}

async fn activate(
    _: Admin,
    state: State,
    path: CorpPath,
    body: web::Json<OneOrMany<Activation>>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.activate(&suite_id, &corpid, body.into_inner().into_vec()).await?))
}

async fn transfer(
    _: Admin,
    state: State,
    path: CorpPath,
    body: web::Json<OneOrMany<Transfer>>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.transfer(&suite_id, &corpid, body.into_inner().into_vec()).await?))
}

async fn auto_active(_: Granted<scope::Tokens>, state: State, path: CorpPath) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.auto_active(&suite_id, &corpid).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoActiveBody {
    auto_active_status: i32,
}

async fn set_auto_active(
    _: Admin,
    state: State,
    path: CorpPath,
    body: web::Json<AutoActiveBody>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.set_auto_active(&suite_id, &corpid, body.auto_active_status).await?))
}

async fn order(
    _: Admin,
    state: State,
    path: CorpPath,
    body: web::Json<OrderRequest>,
) -> Result<HttpResponse, AppError> {
    let (suite_id, corpid) = path.into_inner();
    Ok(HttpResponse::Ok().json(state.licenses.order(&suite_id, &corpid, body.into_inner()).await?))
}
