//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' `#[utoipa::path]`
//! annotations and the typed answers they return, so it cannot say what the code does
//! not do. Served at [`PATH`] without a key; the integration tests validate every
//! answer they receive against it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::{ErrorBody, admin, api, api_keys, front, ids, licenses, webhooks};

/// Where the document is served.
pub const PATH: &str = "/openapi.json";

/// The errors every authenticated operation can answer, whatever it does.
const COMMON_ERRORS: [(&str, &str); 4] = [
    ("401", "`unauthorized`: missing, wrong or revoked bearer key"),
    ("403", "`forbidden_scope`: the key lacks the operation's scope, or does not reach its suite or provider"),
    ("429", "`rate_limited` or `too_many_failed_attempts` (see `Retry-After`)"),
    ("503", "`admin_token_unset`: no key can be checked; `unavailable`: storage unavailable"),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wecom-provider internal API",
        description = "Suites, corps, tokens, ciphertext IDs, the event feed, webhooks, licenses and the front \
                       door of a WeCom third-party service provider. Every operation but this document's takes \
                       a bearer API key; each names the scope it needs (`admin` implies every other). Errors \
                       are `ErrorBody` with a stable snake_case `code`.",
    ),
    paths(
        document_json,
        admin::create_provider,
        admin::list_providers,
        admin::get_provider,
        admin::update_provider,
        admin::remove_provider,
        admin::create_suite,
        admin::list_suites,
        admin::get_suite,
        admin::update_suite,
        admin::remove_suite,
        admin::audit_log,
        api_keys::create,
        api_keys::list,
        api_keys::get,
        api_keys::revoke,
        api::suite,
        api::suite_token,
        api::corp_list,
        api::corp,
        api::corp_token,
        api::provider_token,
        api::event_feed,
        api::replay_event,
        ids::open_corpids,
        ids::identity,
        ids::open_userids,
        ids::new_external_userids,
        ids::unionid_lookup,
        licenses::overview,
        licenses::activate,
        licenses::transfer,
        licenses::auto_active,
        licenses::set_auto_active,
        licenses::order,
        front::oauth_url,
        front::oauth_user,
        front::web_login_url,
        front::web_login_user,
        front::admin_login,
        front::jsapi_signatures,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::update,
        webhooks::remove,
        webhooks::deliveries,
        webhooks::replay,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Conventions),
)]
struct ApiDoc;

/// What every operation shares: the bearer scheme and the common error answers.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`wecom-provider api-keys create`), or ADMIN_TOKEN"))
                    .build(),
            ),
        );
        for (path, item) in document.paths.paths.iter_mut() {
            if path.ends_with(PATH) {
                continue;
            }
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                add_common_errors(operation);
            }
        }
    }
}

/// The errors of an operation that calls WeCom with a provider's, suite's or corp's
/// token; each operation adds its own `400` and `409`.
pub(super) struct WecomErrors;

impl IntoResponses for WecomErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            ("404", "`not_found`: unknown suite, corp or provider"),
            (
                "429",
                "`wecom_rate_limited`, `ticket_rate_limited` (JS-SDK tickets), `rate_limited`, \
                 `too_many_failed_attempts` (see `Retry-After`)",
            ),
            (
                "502",
                "`wecom_error` (with `errcode`, `errmsg`), `wecom_unavailable`, `wecom_answer_lost` \
                 (a license request that buys or binds may have been applied)",
            ),
            (
                "503",
                "`no_suite_ticket`, `suite_ticket_rejected`, `secrets_unavailable`, `unavailable`, \
                 `admin_token_unset`",
            ),
        ]
        .into_iter()
        .map(|(status, description)| (status.to_owned(), error_response(description).into()))
        .collect()
    }
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build()
}

fn add_common_errors(operation: &mut Operation) {
    operation.security =
        Some(vec![utoipa::openapi::security::SecurityRequirement::new::<&str, [&str; 0], &str>("api_key", [])]);
    for (status, description) in COMMON_ERRORS {
        operation.responses.responses.entry(status.to_owned()).or_insert(error_response(description).into());
    }
}

/// The document, with `info.version` the crate's version.
pub fn document() -> Document {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

static DOCUMENT: LazyLock<Document> = LazyLock::new(document);

/// The OpenAPI 3.1 document of `/api/v1` (no key needed).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "This document", body = Object),
        (status = 429, description = "`rate_limited` (see `Retry-After`)", body = ErrorBody),
    ),
)]
pub async fn document_json() -> HttpResponse {
    HttpResponse::Ok().json(&*DOCUMENT)
}
