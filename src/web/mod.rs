//! HTTP: routes, bearer auth, error shapes. Handlers parse, call one service
//! function and render; rules live in the service modules.

mod admin;
mod api;
mod api_keys;
mod auth;
mod callback;
pub mod console;
pub mod edge;
mod front;
mod health;
mod ids;
pub mod install;
mod licenses;
pub mod openapi;
pub mod pages;
pub mod request_id;
mod webhooks;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, middleware, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::Authenticator;
use crate::error::AppError;
use crate::events::gateway::Gateway;
use crate::ids::Ids;
use crate::licenses::Licenses;
use crate::lifecycle::Lifecycle;
use crate::login::Login;
use crate::registry::Registry;
use crate::store::Db;
use crate::text::{excerpt, excerpt_of};
use crate::tokens::Tokens;
use crate::wecom::errcodes::{ErrcodeClass, classify};

/// Shared state of every handler.
pub struct AppState {
    pub db: Db,
    pub gateway: Gateway,
    pub registry: Arc<Registry>,
    pub tokens: Arc<Tokens>,
    pub lifecycle: Arc<Lifecycle>,
    pub login: Arc<Login>,
    pub ids: Arc<Ids>,
    pub licenses: Arc<Licenses>,
    pub access: Authenticator,
    pub install: install::InstallSettings,
    pub pages: pages::Pages,
    pub edge: edge::Edge,
    pub console: console::ConsoleSettings,
}

/// Where the internal API lives.
pub const API_SCOPE: &str = "/api/v1";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(health::healthz)))
        .service(web::resource("/readyz").route(web::get().to(health::readyz)))
        .configure(callback::routes)
        .configure(install::routes)
        .configure(console::routes)
        .service(
            web::scope(API_SCOPE)
                .wrap(middleware::from_fn(auth::authenticate))
                // Outermost: a client past its rate costs no key lookup.
                .wrap(middleware::from_fn(edge::limit_api))
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    AppError::bad_request("invalid_query", excerpt(&error.to_string())).into()
                }))
                .app_data(
                    // Conversion lists of any length are accepted: 4 MiB is ~100,000 ids.
                    web::JsonConfig::default()
                        .limit(4 << 20)
                        .error_handler(|error, _| AppError::bad_request("invalid_body", body_problem(&error)).into()),
                )
                .configure(admin::routes)
                .configure(ids::routes)
                .configure(api::routes)
                .configure(licenses::routes)
                .configure(front::routes)
                .configure(webhooks::routes)
                .configure(api_keys::routes)
                .route(openapi::PATH, web::get().to(openapi::document_json))
                .default_service(web::to(api_not_found)),
        );
}

/// A JSON body's problem as serde words it (naming the field and what was
/// expected), without actix's prefix, quoting little of the input.
fn body_problem(error: &actix_web::error::JsonPayloadError) -> String {
    const MAX_PROBLEM_CHARS: usize = 240;
    match error {
        actix_web::error::JsonPayloadError::Deserialize(problem) => excerpt_of(&problem.to_string(), MAX_PROBLEM_CHARS),
        other => excerpt(&other.to_string()),
    }
}

async fn api_not_found(_: HttpRequest) -> AppError {
    AppError::NotFound("route")
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyFailedAttempts { .. } | Self::RateLimited { .. } | Self::TicketLimit { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::AdminTokenUnset
            | Self::Unavailable
            | Self::NoSuiteTicket(_)
            | Self::SuiteTicketRejected(_)
            | Self::SecretsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::CorpNotActive
            | Self::PermanentCodeRejected(_)
            | Self::AuthCodeLost(_)
            | Self::SuiteDisabled
            | Self::Conflict { .. }
            | Self::LicenseRefused { .. } => StatusCode::CONFLICT,
            Self::Upstream { errcode, .. } if classify(*errcode) == ErrcodeClass::RateLimited => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Upstream { .. } | Self::UpstreamUnavailable | Self::AnswerLost(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            Self::TooManyFailedAttempts { retry_after_secs }
            | Self::RateLimited { retry_after_secs }
            | Self::TicketLimit { retry_after_secs, .. } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            // WeCom's frequency limits count per minute.
            Self::Upstream { .. } if self.status_code() == StatusCode::TOO_MANY_REQUESTS => {
                response.insert_header(("Retry-After", "60"));
            }
            _ => {}
        }
        let (errcode, errmsg) = match self {
            Self::Upstream { errcode, errmsg } | Self::LicenseRefused { errcode, errmsg, .. } => {
                (Some(*errcode), Some(errmsg.clone()))
            }
            _ => (None, None),
        };
        response
            .json(ErrorBody { error: ErrorDetail { code: self.code(), errcode, errmsg, message: self.to_string() } })
    }
}

/// Every error answer of `/api/v1`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (see each operation's responses).
    pub code: &'static str,
    /// WeCom's errcode, when a WeCom call failed or WeCom refused a license request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    /// WeCom's errmsg, with `errcode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errmsg: Option<String>,
    /// For people; may change.
    pub message: String,
}

impl actix_web::Responder for AppError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}

pub type State = web::Data<Arc<AppState>>;
