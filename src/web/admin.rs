//! `/api/v1/admin`: providers, suites and the audit log. Handlers parse, call one
//! registry function and render its typed view; secrets go in, never out.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Admin;
use super::{ErrorBody, State};
use crate::error::AppError;
use crate::feed::rfc3339;
use crate::model::{ProviderCorpId, SuiteId};
use crate::registry::{ProviderInput, ProviderPatch, ProviderView, SuiteInput, SuitePatch, SuiteView};
use crate::store::audit;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/providers", web::post().to(create_provider))
        .route("/admin/providers", web::get().to(list_providers))
        .route("/admin/providers/{provider_corpid}", web::get().to(get_provider))
        .route("/admin/providers/{provider_corpid}", web::patch().to(update_provider))
        .route("/admin/providers/{provider_corpid}", web::delete().to(remove_provider))
        .route("/admin/suites", web::post().to(create_suite))
        .route("/admin/suites", web::get().to(list_suites))
        .route("/admin/suites/{suite_id}", web::get().to(get_suite))
        .route("/admin/suites/{suite_id}", web::patch().to(update_suite))
        .route("/admin/suites/{suite_id}", web::delete().to(remove_suite))
        .route("/admin/audit", web::get().to(audit_log));
}

#[derive(Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

#[derive(Serialize, ToSchema)]
struct Providers {
    providers: Vec<ProviderView>,
}

#[derive(Serialize, ToSchema)]
struct Suites {
    suites: Vec<SuiteView>,
}

/// An update's answer: the record as it now is and the fields that changed.
#[derive(Serialize, ToSchema)]
struct Updated<T> {
    changed: Vec<&'static str>,
    #[serde(flatten)]
    record: T,
}

#[utoipa::path(post, path = "/api/v1/admin/providers", tag = "admin",
    description = "Registers a provider (scope `admin`); its secret is required and never shown again.",
    request_body = ProviderInput,
    responses(
        (status = 201, description = "The new provider", body = ProviderView),
        (status = 400, description = "`invalid_body`: the body is not what the operation takes, or a field is invalid", body = ErrorBody),
        (status = 409, description = "`already_exists`: the provider exists", body = ErrorBody),
    ))]
async fn create_provider(admin: Admin, state: State, body: web::Json<ProviderInput>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Created().json(state.registry.create_provider(&admin.actor, body.into_inner()).await?))
}

#[utoipa::path(get, path = "/api/v1/admin/providers", tag = "admin", description = "Every provider (scope `admin`).",
    responses((status = 200, description = "The providers", body = Providers)))]
async fn list_providers(_: Admin, state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(Providers { providers: state.registry.provider_views().await? }))
}

#[utoipa::path(get, path = "/api/v1/admin/providers/{provider_corpid}", tag = "admin",
    description = "One provider (scope `admin`).", params(("provider_corpid" = String, Path, description = "The provider's corpid")),
    responses((status = 200, description = "The provider", body = ProviderView), (status = 404, description = "`not_found`: no such provider", body = ErrorBody)))]
async fn get_provider(_: Admin, state: State, id: web::Path<ProviderCorpId>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.registry.provider_view(&id).await?))
}

#[utoipa::path(patch, path = "/api/v1/admin/providers/{provider_corpid}", tag = "admin",
    description = "Changes the fields given (scope `admin`).", params(("provider_corpid" = String, Path, description = "The provider's corpid")), request_body = ProviderPatch,
    responses(
        (status = 200, description = "The provider as it now is, and the fields that changed", body = Updated<ProviderView>),
        (status = 400, description = "`invalid_body`: the body is not what the operation takes, or a field is invalid", body = ErrorBody), (status = 404, description = "`not_found`: no such provider", body = ErrorBody),
    ))]
async fn update_provider(
    admin: Admin,
    state: State,
    id: web::Path<ProviderCorpId>,
    body: web::Json<ProviderPatch>,
) -> Result<HttpResponse, AppError> {
    let changed = state.registry.update_provider(&admin.actor, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(Updated { changed, record: state.registry.provider_view(&id).await? }))
}

#[utoipa::path(delete, path = "/api/v1/admin/providers/{provider_corpid}", tag = "admin",
    description = "Removes a provider without suites (scope `admin`).", params(("provider_corpid" = String, Path, description = "The provider's corpid")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`not_found`: no such provider", body = ErrorBody),
        (status = 409, description = "`provider_has_suites`: remove its suites first", body = ErrorBody),
    ))]
async fn remove_provider(admin: Admin, state: State, id: web::Path<ProviderCorpId>) -> Result<HttpResponse, AppError> {
    state.registry.remove_provider(&admin.actor, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/admin/suites", tag = "admin",
    description = "Registers a suite of a known provider (scope `admin`); secrets go in, never out.",
    request_body = SuiteInput,
    responses(
        (status = 201, description = "The new suite", body = SuiteView),
        (status = 400, description = "`invalid_body`: the body is not what the operation takes, or a field is invalid", body = ErrorBody), (status = 404, description = "`not_found`: no such provider", body = ErrorBody),
        (status = 409, description = "`already_exists`: the suite exists", body = ErrorBody),
    ))]
async fn create_suite(admin: Admin, state: State, body: web::Json<SuiteInput>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Created().json(state.registry.create_suite(&admin.actor, body.into_inner()).await?))
}

#[utoipa::path(get, path = "/api/v1/admin/suites", tag = "admin", description = "Every suite (scope `admin`).",
    responses((status = 200, description = "The suites", body = Suites)))]
async fn list_suites(_: Admin, state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(Suites { suites: state.registry.suite_views().await? }))
}

#[utoipa::path(get, path = "/api/v1/admin/suites/{suite_id}", tag = "admin",
    description = "One suite (scope `admin`).", params(("suite_id" = String, Path, description = "The suite's id")),
    responses((status = 200, description = "The suite", body = SuiteView), (status = 404, description = "`not_found`: no such suite", body = ErrorBody)))]
async fn get_suite(_: Admin, state: State, id: web::Path<SuiteId>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.registry.suite_view(&id).await?))
}

#[utoipa::path(patch, path = "/api/v1/admin/suites/{suite_id}", tag = "admin",
    description = "Changes the fields given (scope `admin`).", params(("suite_id" = String, Path, description = "The suite's id")), request_body = SuitePatch,
    responses(
        (status = 200, description = "The suite as it now is, and the fields that changed", body = Updated<SuiteView>),
        (status = 400, description = "`invalid_body`: the body is not what the operation takes, or a field is invalid", body = ErrorBody), (status = 404, description = "`not_found`: no such suite", body = ErrorBody),
    ))]
async fn update_suite(
    admin: Admin,
    state: State,
    id: web::Path<SuiteId>,
    body: web::Json<SuitePatch>,
) -> Result<HttpResponse, AppError> {
    let changed = state.registry.update_suite(&admin.actor, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(Updated { changed, record: state.registry.suite_view(&id).await? }))
}

#[utoipa::path(delete, path = "/api/v1/admin/suites/{suite_id}", tag = "admin",
    description = "Removes a suite (scope `admin`); one with active corps only with `force`.",
    params(("suite_id" = String, Path, description = "The suite's id"), ("force" = Option<bool>, Query, description = "Remove even with active corps")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such suite", body = ErrorBody),
        (status = 409, description = "`suite_has_corps`: the suite has active corps and `force` is not set", body = ErrorBody),
    ))]
async fn remove_suite(
    admin: Admin,
    state: State,
    id: web::Path<SuiteId>,
    query: web::Query<RemoveQuery>,
) -> Result<HttpResponse, AppError> {
    state.registry.remove_suite(&admin.actor, &id, query.force).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_page")]
    limit: i64,
}

fn default_page() -> i64 {
    100
}

const MAX_PAGE: i64 = 1000;

#[derive(Serialize, ToSchema)]
struct AuditEntry {
    id: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    next_after: i64,
}

#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin",
    description = "The audit log, oldest first (scope `admin`).",
    params(
        ("after" = Option<i64>, Query, description = "Entries after this id (default 0)"),
        ("limit" = Option<i64>, Query, description = "1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 400, description = "`invalid_query`: after below 0 or limit out of range", body = ErrorBody),
    ))]
async fn audit_log(_: Admin, state: State, query: web::Query<AuditQuery>) -> Result<HttpResponse, AppError> {
    let AuditQuery { after, limit } = query.into_inner();
    if after < 0 || !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::bad_request("invalid_query", format!("after must be 0 or more, limit 1 to {MAX_PAGE}")));
    }
    let rows = state.db.run(move |conn| audit::page(conn, after, limit)).await?;
    let next_after = rows.last().map_or(after, |row| row.id);
    let entries = rows
        .into_iter()
        .map(|row| AuditEntry {
            id: row.id,
            at: rfc3339(row.at),
            actor: row.actor,
            action: row.action,
            target: row.target,
            details: serde_json::from_str(&row.details).unwrap_or_default(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AuditPage { entries, next_after }))
}
