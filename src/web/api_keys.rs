//! `/api/v1/admin/api-keys`: making, listing, reading and revoking API keys (the
//! admin scope). A key is in the answer to its creation only.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Admin;
use super::{ErrorBody, State};
use crate::access::{self, CreatedKey, KeyView, NewKey};
use crate::error::AppError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/api-keys", web::post().to(create))
        .route("/admin/api-keys", web::get().to(list))
        .route("/admin/api-keys/{name}", web::get().to(get))
        .route("/admin/api-keys/{name}", web::delete().to(revoke));
}

#[derive(Deserialize, ToSchema)]
#[schema(as = ApiKeyInput)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    /// `admin`, `tokens`, `ids` and/or `events`.
    scopes: Vec<String>,
    /// The suites the key reaches; absent or null: every suite.
    #[serde(default)]
    suites: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
struct KeyList {
    api_keys: Vec<KeyView>,
}

#[utoipa::path(post, path = "/api/v1/admin/api-keys", tag = "api keys",
    description = "Makes an API key (scope `admin`); the key is in this answer only.",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The key, shown this once", body = CreatedKey),
        (status = 400, description = "`invalid_body`: unknown scope or suite, bad name", body = ErrorBody),
        (status = 409, description = "`already_exists`: the name is taken", body = ErrorBody),
    ))]
async fn create(admin: Admin, state: State, body: web::Json<CreateBody>) -> Result<HttpResponse, AppError> {
    let CreateBody { name, scopes, suites } = body.into_inner();
    let created = access::create(&state.db, NewKey { name, scopes, suites }, &admin.actor).await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/admin/api-keys", tag = "api keys", description = "Every key, revoked ones too (scope `admin`).",
    responses((status = 200, description = "The keys (never the key itself)", body = KeyList)))]
async fn list(_: Admin, state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(KeyList { api_keys: access::list(&state.db).await? }))
}

#[utoipa::path(get, path = "/api/v1/admin/api-keys/{name}", tag = "api keys", description = "One key (scope `admin`).",
    params(("name" = String, Path, description = "The key's name")), responses((status = 200, description = "The key", body = KeyView), (status = 404, description = "`not_found`: no such api key", body = ErrorBody)))]
async fn get(_: Admin, state: State, name: web::Path<String>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(access::get(&state.db, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/admin/api-keys/{name}", tag = "api keys",
    description = "Revokes a key at once (scope `admin`); revoking again answers the same.",
    params(("name" = String, Path, description = "The key's name")), responses((status = 200, description = "The revoked key", body = KeyView), (status = 404, description = "`not_found`: no such api key", body = ErrorBody)))]
async fn revoke(admin: Admin, state: State, name: web::Path<String>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(access::revoke(&state.db, &name, &admin.actor).await?))
}
