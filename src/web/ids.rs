//! `/api/v1` routes of ciphertext IDs: conversions and the identity graph.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Granted, scope};
use super::openapi::WecomErrors;
use super::{ErrorBody, State};
use crate::error::AppError;
use crate::feed::rfc3339;
use crate::ids::Conversion;
use crate::model::LinkStatus;
use crate::model::{CorpId, ExternalUserId, PendingId, ProviderCorpId, SuiteId, UserId};
use crate::store::ids::{IdentityKey, LinkState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/providers/{provider_corpid}/open_corpids", web::post().to(open_corpids))
        .route("/providers/{provider_corpid}/identities", web::get().to(identity))
        .route("/suites/{suite_id}/corps/{corpid}/open_userids", web::post().to(open_userids))
        .route("/suites/{suite_id}/corps/{corpid}/new_external_userids", web::post().to(new_external_userids))
        .route("/suites/{suite_id}/corps/{corpid}/unionid_lookups", web::post().to(unionid_lookup));
}

#[derive(Deserialize, ToSchema)]
struct CorpidList {
    corpids: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
struct UseridList {
    userids: Vec<UserId>,
}

#[derive(Deserialize, ToSchema)]
struct ExternalUseridList {
    external_userids: Vec<String>,
    #[serde(default)]
    chat_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
struct UnionidLookup {
    unionid: String,
    openid: String,
    /// 0: the MP or mini program belongs to the corp; 1: to the provider.
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

// One converted id per kind, named as WeCom names the pair (`corpid` and `open_corpid`, …).
#[derive(Serialize, ToSchema)]
struct OpenCorpid {
    corpid: String,
    open_corpid: String,
}

#[derive(Serialize, ToSchema)]
struct OpenUserid {
    open_userid: String,
    userid: String,
}

#[derive(Serialize, ToSchema)]
struct NewExternalUserid {
    external_userid: String,
    new_external_userid: String,
}

/// An id WeCom would not convert, and why.
#[derive(Serialize, ToSchema)]
struct InvalidId {
    id: String,
    reason: String,
}

/// A conversion's answer: the ids converted, in the order asked, and those refused.
#[derive(Serialize, ToSchema)]
struct Converted<T> {
    invalid: Vec<InvalidId>,
    items: Vec<T>,
}

fn conversion_view<T: Serialize>(conversion: Conversion, item: impl Fn(String, String) -> T) -> HttpResponse {
    let items = conversion.items.into_iter().map(|(source, target)| item(source, target)).collect();
    let invalid = conversion.invalid.into_iter().map(|(id, reason)| InvalidId { id, reason }).collect();
    HttpResponse::Ok().json(Converted { invalid, items })
}

/// Where a unionid leads in one corp: an external_userid, or a pending id until the
/// customer is matched.
#[derive(Serialize, ToSchema)]
struct UnionidAnswer {
    external_userid: Option<ExternalUserId>,
    pending_id: Option<PendingId>,
}

#[derive(Serialize, ToSchema)]
struct IdentityLink {
    corpid: CorpId,
    external_userid: Option<ExternalUserId>,
    pending_id: Option<PendingId>,
    status: LinkStatus,
    suite_id: SuiteId,
    updated_at: String,
}

/// A customer of the provider (unionid and openid) and the corps they are linked in.
#[derive(Serialize, ToSchema)]
struct IdentityView {
    links: Vec<IdentityLink>,
    openid: String,
    subject_type: i32,
    unionid: String,
}

#[utoipa::path(post, path = "/api/v1/providers/{provider_corpid}/open_corpids", tag = "ids",
    description = "Converts plaintext corpids to the provider's open_corpids (scope `ids`); known ones without calling WeCom.",
    params(("provider_corpid" = String, Path, description = "The provider's corpid")), request_body = CorpidList,
    responses((status = 200, description = "The conversions", body = Converted<OpenCorpid>),
        (status = 400, description = "`invalid_body`: an id is empty or longer than 256 characters, or a field is missing", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn open_corpids(
    _: Granted<scope::Ids>,
    state: State,
    provider_corpid: web::Path<ProviderCorpId>,
    body: web::Json<CorpidList>,
) -> Result<HttpResponse, AppError> {
    check_ids(&body.corpids, "corpids")?;
    let conversion = state.ids.open_corpids(&provider_corpid, &body.corpids, None).await?;
    Ok(conversion_view(conversion, |corpid, open_corpid| OpenCorpid { corpid, open_corpid }))
}

#[utoipa::path(post, path = "/api/v1/suites/{suite_id}/corps/{corpid}/open_userids", tag = "ids",
    description = "Converts a corp's plaintext userids to open_userids (scope `ids`).",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")), request_body = UseridList,
    responses((status = 200, description = "The conversions", body = Converted<OpenUserid>),
        (status = 400, description = "`invalid_body`: an id is empty or longer than 256 characters, or a field is missing", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
async fn open_userids(
    _: Granted<scope::Ids>,
    state: State,
    path: web::Path<(SuiteId, CorpId)>,
    body: web::Json<UseridList>,
) -> Result<HttpResponse, AppError> {
    check_ids(&body.userids, "userids")?;
    let scope = state.ids.corp_scope(&path.0, &path.1).await?;
    let conversion = state.ids.open_userids(&scope, &body.userids, None).await?;
    Ok(conversion_view(conversion, |userid, open_userid| OpenUserid { open_userid, userid }))
}

#[utoipa::path(post, path = "/api/v1/suites/{suite_id}/corps/{corpid}/new_external_userids", tag = "ids",
    description = "Converts a corp's old external_userids to new ones (scope `ids`), optionally within a group chat.",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")), request_body = ExternalUseridList,
    responses((status = 200, description = "The conversions", body = Converted<NewExternalUserid>),
        (status = 400, description = "`invalid_body`: an id is empty or longer than 256 characters, or a field is missing", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
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
    Ok(conversion_view(conversion, |external_userid, new_external_userid| NewExternalUserid {
        external_userid,
        new_external_userid,
    }))
}

#[utoipa::path(post, path = "/api/v1/suites/{suite_id}/corps/{corpid}/unionid_lookups", tag = "ids",
    description = "Finds the external_userid of a unionid in a corp (scope `ids`), or a pending id until it is known.",
    params(("suite_id" = String, Path, description = "The suite's id"), ("corpid" = String, Path, description = "The corp's corpid, as the suite sees it")), request_body = UnionidLookup,
    responses((status = 200, description = "Linked or pending", body = UnionidAnswer),
        (status = 400, description = "`invalid_body`: an id is empty or longer than 256 characters, or a field is missing", body = ErrorBody),
        (status = 409, description = "`corp_not_active`, `permanent_code_rejected`, `suite_disabled`", body = ErrorBody),
        WecomErrors))]
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
        LinkState::Linked { external_userid } => {
            UnionidAnswer { external_userid: Some(external_userid), pending_id: None }
        }
        LinkState::Pending { pending_id } => UnionidAnswer { external_userid: None, pending_id: Some(pending_id) },
    };
    Ok(HttpResponse::Ok().json(answer))
}

#[utoipa::path(get, path = "/api/v1/providers/{provider_corpid}/identities", tag = "ids",
    description = "A customer of the provider and their links (scope `ids`); give exactly one of: unionid; corpid and external_userid; pending_id.",
    params(("provider_corpid" = String, Path, description = "The provider's corpid"),
        ("unionid" = Option<String>, Query, description = "The customer's unionid"),
        ("corpid" = Option<String>, Query, description = "With external_userid: a corp the customer is linked in"),
        ("external_userid" = Option<String>, Query, description = "With corpid"),
        ("pending_id" = Option<String>, Query, description = "A pending id a lookup answered"),
    ),
    responses((status = 200, description = "The identity", body = IdentityView),
        (status = 400, description = "`invalid_query`: not exactly one key given", body = ErrorBody),
        (status = 404, description = "`not_found`: no such identity", body = ErrorBody)))]
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
    let links = links
        .into_iter()
        .map(|link| IdentityLink {
            corpid: link.corpid,
            external_userid: link.external_userid,
            pending_id: link.pending_id,
            status: link.status,
            suite_id: link.suite_id,
            updated_at: rfc3339(link.updated_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(IdentityView {
        links,
        openid: identity.openid,
        subject_type: identity.subject_type,
        unionid: identity.unionid,
    }))
}
