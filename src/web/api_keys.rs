//! `/api/v1/admin/api-keys`: making, listing, reading and revoking API keys (the
//! admin scope). A key is in the answer to its creation only.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::State;
use super::auth::Admin;
use crate::access::{self, KeyView, NewKey};
use crate::error::AppError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/api-keys", web::post().to(create))
        .route("/admin/api-keys", web::get().to(list))
        .route("/admin/api-keys/{name}", web::get().to(get))
        .route("/admin/api-keys/{name}", web::delete().to(revoke));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    suites: Option<Vec<String>>,
}

#[derive(Serialize)]
struct KeyList {
    api_keys: Vec<KeyView>,
}

async fn create(admin: Admin, state: State, body: web::Json<CreateBody>) -> Result<HttpResponse, AppError> {
    let CreateBody { name, scopes, suites } = body.into_inner();
    let created = access::create(&state.db, NewKey { name, scopes, suites }, &admin.actor).await?;
    Ok(HttpResponse::Created().json(created))
}

async fn list(_: Admin, state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(KeyList { api_keys: access::list(&state.db).await? }))
}

async fn get(_: Admin, state: State, name: web::Path<String>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(access::get(&state.db, &name).await?))
}

async fn revoke(admin: Admin, state: State, name: web::Path<String>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(access::revoke(&state.db, &name, &admin.actor).await?))
}
