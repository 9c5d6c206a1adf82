//! `/api/v1` routes of ciphertext IDs: conversions and the identity graph.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::State;
use super::auth::{Granted, scope};
use crate::error::AppError;
use crate::feed::rfc3339;
use crate::ids::{Conversion, IdKind};
use crate::model::{CorpId, ExternalUserId, PendingId, ProviderCorpId, SuiteId, UserId};
use crate::store::ids::{IdentityKey, LinkState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/providers/{provider_corpid}/open_corpids", web::post().to(open_corpids))
        .route("/providers/{provider_corpid}/identities", web::get().to(identity))
        .route("/suites/{suite_id}/corps/{corpid}/open_userids", web::post().to(open_userids))
        .route("/suites/{suite_id}/corps/{corpid}/new_external_userids", web::post().to(new_external_userids))
        .route("/suites/{suite_id}/corps/{corpid}/unionid_lookups", web::post().to(unionid_lookup));
}

#[derive(Deserialize)]
struct CorpidList {
    corpids: Vec<String>,
}

#[derive(Deserialize)]
struct UseridList {
    userids: Vec<UserId>,
}

#[derive(Deserialize)]
struct ExternalUseridList {
    external_userids: Vec<String>,
    #[serde(default)]
    chat_id: Option<String>,
}

#[derive(Deserialize)]
struct UnionidLookup {
    unionid: String,
    openid: String,
    subject_type: i32,
}

#[derive(Deserialize)]
struct IdentityQuery {
    unionid: Option<String>,
    corpid: Option<CorpId>,
    external_userid: Option<ExternalUserId>,
    pending_id: Option<PendingId>,
}

fn check_ids<T: AsRef<str>>(ids: &[T], field: &str) -> Result<(), AppError> {
    if ids.iter().map(AsRef::as_ref).any(|id| id.is_empty() || id.len() > 256) {
        return Err(AppError::bad_request(
            "invalid_body",
            format!("every entry of {field} must be 1 to 256 characters"),
        ));
    }
    Ok(())
}

fn conversion_view(kind: IdKind, conversion: Conversion) -> HttpResponse {
    let items: Vec<Value> = conversion
        .items
        .into_iter()
        .map(|(source, target)| json!({ kind.name(): source, kind.target_name(): target }))
        .collect();
    let invalid: Vec<Value> =
        conversion.invalid.into_iter().map(|(id, reason)| json!({"id": id, "reason": reason})).collect();
    HttpResponse::Ok().json(json!({ "items": items, "invalid": invalid }))
}

async fn open_corpids(
    _: Granted<scope::Ids>,
    state: State,
    provider_corpid: web::Path<ProviderCorpId>,
    body: web::Json<CorpidList>,
) -> Result<HttpResponse, AppError> {
    check_ids(&body.corpids, "corpids")?;
    let conversion = state.ids.open_corpids(&provider_corpid, &body.corpids, None).await?;
    Ok(conversion_view(IdKind::Corpid, conversion))
}

async fn open_userids(
    _: Granted<scope::Ids>,
    state: State,
    path: web::Path<(SuiteId, CorpId)>,
    body: web::Json<UseridList>,
) -> Result<HttpResponse, AppError> {
    check_ids(&body.userids, "userids")?;
    let scope = state.ids.corp_scope(&path.0, &path.1).await?;
    let conversion = state.ids.open_userids(&scope, &body.userids, None).await?;
    Ok(conversion_view(IdKind::Userid, conversion))
}

async fn new_external_userids(
    _: Granted<scope::Ids>,
    state: State,
    path: web::Path<(SuiteId, CorpId)>,
    body: web::Json<ExternalUseridList>,
) -> Result<HttpResponse, AppError> {
    check_ids(&body.external_userids, "external_userids")?;
    let chat_id = body.chat_id.as_deref().filter(|chat_id| !chat_id.is_empty());
    let scope = state.ids.corp_scope(&path.0, &path.1).await?;
    let conversion = state.ids.new_external_userids(&scope, &body.external_userids, chat_id, None).await?;
    Ok(conversion_view(IdKind::ExternalUserid, conversion))
}

async fn unionid_lookup(
    _: Granted<scope::Ids>,
    state: State,
    path: web::Path<(SuiteId, CorpId)>,
    body: web::Json<UnionidLookup>,
) -> Result<HttpResponse, AppError> {
    if body.unionid.is_empty() || body.openid.is_empty() {
        return Err(AppError::bad_request("invalid_body", "unionid and openid are required"));
    }
    if !matches!(body.subject_type, 0 | 1) {
        return Err(AppError::bad_request(
            "invalid_body",
            "subject_type is 0 (the MP or mini program belongs to the corp) or 1 (to the provider)",
        ));
    }
    let scope = state.ids.corp_scope(&path.0, &path.1).await?;
    let answer = match state.ids.lookup_unionid(&scope, &body.unionid, &body.openid, body.subject_type).await? {
        LinkState::Linked { external_userid } => json!({"external_userid": external_userid, "pending_id": null}),
        LinkState::Pending { pending_id } => json!({"external_userid": null, "pending_id": pending_id}),
    };
    Ok(HttpResponse::Ok().json(answer))
}

async fn identity(
    _: Granted<scope::Ids>,
    state: State,
    provider_corpid: web::Path<ProviderCorpId>,
    query: web::Query<IdentityQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let key = match (query.unionid, query.corpid, query.external_userid, query.pending_id) {
        (Some(unionid), None, None, None) => IdentityKey::Unionid(unionid),
        (None, Some(corpid), Some(external_userid), None) => IdentityKey::ExternalUserid { corpid, external_userid },
        (None, None, None, Some(pending_id)) => IdentityKey::PendingId(pending_id),
        _ => {
            return Err(AppError::bad_request(
                "invalid_query",
                "give exactly one of: unionid; corpid and external_userid; pending_id",
            ));
        }
    };
    let (identity, links) = state.ids.identity(&provider_corpid, key).await?.ok_or(AppError::NotFound("identity"))?;
    let links: Vec<Value> = links
        .into_iter()
        .map(|link| {
            json!({
                "corpid": link.corpid,
                "suite_id": link.suite_id,
                "external_userid": link.external_userid,
                "pending_id": link.pending_id,
                "status": link.status,
                "updated_at": rfc3339(link.updated_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "unionid": identity.unionid,
        "openid": identity.openid,
        "subject_type": identity.subject_type,
        "links": links,
    })))
}
