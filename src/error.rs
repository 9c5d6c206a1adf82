//! The internal API's error policy: one enum with stable snake_case codes. Causes
//! are logged where they happen; clients get the code and a safe message only,
//! plus WeCom's errcode and errmsg when an upstream call failed.

use crate::access::{AccessError, Denied, Refusal};
use crate::ids::IdError;
use crate::licenses::LicenseError;
use crate::lifecycle::LifecycleError;
use crate::login::LoginError;
use crate::registry::RegistryError;
use crate::store::StoreError;
use crate::store::sealing::SealError;
use crate::tokens::TokenError;
use crate::webhooks::WebhookError;
use crate::wecom::client::WecomError;
use crate::wecom::errcodes::{ErrcodeClass, classify};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("missing, wrong or revoked bearer token")]
    Unauthorized,
    #[error("the internal API is disabled: set ADMIN_TOKEN, or run `wecom-provider api-keys create`")]
    AdminTokenUnset,
    /// Authenticated, but the key's scopes or suites do not cover the request.
    #[error("{0}")]
    Forbidden(Denied),
    #[error("too many failed authentications from this address; try again in {retry_after_secs} s")]
    TooManyFailedAttempts { retry_after_secs: u64 },
    #[error("too many requests from this address; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NoSuiteTicket(String),
    #[error("the corp has cancelled its authorization")]
    CorpNotActive,
    #[error("{0}")]
    PermanentCodeRejected(String),
    #[error("WeCom answered an error")]
    Upstream { errcode: i64, errmsg: String },
    #[error("WeCom could not be reached or answered nonsense; try again")]
    UpstreamUnavailable,
    #[error("storage unavailable, try again")]
    Unavailable,
    #[error("{0}")]
    AuthCodeLost(String),
    #[error("{0}")]
    SuiteTicketRejected(String),
    #[error("the suite is disabled")]
    SuiteDisabled,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("a stored secret cannot be opened with the configured master key")]
    SecretsUnavailable,
    /// WeCom refused a license request (701xxx): its errcode and what it means.
    #[error("{meaning}")]
    LicenseRefused { errcode: i64, errmsg: String, meaning: &'static str },
    /// A request sent once (it buys or binds) may have been applied; its answer is lost.
    #[error("{0}")]
    AnswerLost(String),
    /// WeCom's hourly limit on JS-SDK ticket fetches would be passed.
    #[error("{message}")]
    TicketLimit { message: String, retry_after_secs: u64 },
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::AdminTokenUnset => "admin_token_unset",
            Self::Forbidden(_) => "forbidden_scope",
            Self::TooManyFailedAttempts { .. } => "too_many_failed_attempts",
            Self::RateLimited { .. } => "rate_limited",
            Self::NotFound(_) => "not_found",
            Self::BadRequest { code, .. } => code,
            Self::NoSuiteTicket(_) => "no_suite_ticket",
            Self::CorpNotActive => "corp_not_active",
            Self::PermanentCodeRejected(_) => "permanent_code_rejected",
            Self::Upstream { errcode, .. } if classify(*errcode) == ErrcodeClass::RateLimited => "wecom_rate_limited",
            Self::Upstream { .. } => "wecom_error",
            Self::UpstreamUnavailable => "wecom_unavailable",
            Self::Unavailable => "unavailable",
            Self::AuthCodeLost(_) => "auth_lost",
            Self::SuiteTicketRejected(_) => "suite_ticket_rejected",
            Self::SuiteDisabled => "suite_disabled",
            Self::Conflict { code, .. } => code,
            Self::SecretsUnavailable => "secrets_unavailable",
            Self::LicenseRefused { .. } => "license_refused",
            Self::AnswerLost(_) => "wecom_answer_lost",
            Self::TicketLimit { .. } => "ticket_rate_limited",
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "database call failed");
        Self::Unavailable
    }
}

impl From<WecomError> for AppError {
    fn from(error: WecomError) -> Self {
        match error {
            WecomError::Api { errcode, errmsg } => Self::Upstream { errcode, errmsg },
            other => {
                tracing::warn!(error = %other, "WeCom call failed");
                Self::UpstreamUnavailable
            }
        }
    }
}

impl From<TokenError> for AppError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::NoSuiteTicket => Self::NoSuiteTicket(error.to_string()),
            TokenError::Unknown(what) => Self::NotFound(what),
            TokenError::CorpNotActive => Self::CorpNotActive,
            TokenError::PermanentCodeRejected(_) => Self::PermanentCodeRejected(error.to_string()),
            TokenError::Upstream(upstream) => upstream.into(),
            TokenError::RefreshTimeout => Self::Unavailable,
            TokenError::Store(store) => store.into(),
            TokenError::TicketRejected { .. } => Self::SuiteTicketRejected(error.to_string()),
            TokenError::SuiteDisabled => Self::SuiteDisabled,
            TokenError::Sealing(sealing) => sealing.into(),
            TokenError::TicketLimit { retry_after_secs, .. } => {
                Self::TicketLimit { message: error.to_string(), retry_after_secs }
            }
        }
    }
}

impl From<SealError> for AppError {
    fn from(error: SealError) -> Self {
        tracing::error!(%error, "cannot open a stored secret");
        Self::SecretsUnavailable
    }
}

impl From<RegistryError> for AppError {
    fn from(error: RegistryError) -> Self {
        let message = error.to_string();
        match error {
            RegistryError::Invalid { .. } => Self::bad_request("invalid_body", message),
            RegistryError::AlreadyExists(..) => Self::Conflict { code: "already_exists", message },
            RegistryError::NotFound(what) => Self::NotFound(what),
            RegistryError::SuiteHasCorps(..) => Self::Conflict { code: "suite_has_corps", message },
            RegistryError::ProviderHasSuites(..) => Self::Conflict { code: "provider_has_suites", message },
            RegistryError::Sealing(sealing) => sealing.into(),
            RegistryError::Store(store) => store.into(),
        }
    }
}

impl From<IdError> for AppError {
    fn from(error: IdError) -> Self {
        match error {
            IdError::Token(token) => token.into(),
            IdError::Store(store) => store.into(),
        }
    }
}

impl From<LifecycleError> for AppError {
    fn from(error: LifecycleError) -> Self {
        match error {
            LifecycleError::Token(token) => token.into(),
            LifecycleError::Store(store) => store.into(),
            LifecycleError::ExchangeInProgress => Self::Unavailable,
            LifecycleError::UnknownCorp => Self::NotFound("corp"),
            LifecycleError::AuthCodeLost => Self::AuthCodeLost(error.to_string()),
        }
    }
}

impl From<LoginError> for AppError {
    fn from(error: LoginError) -> Self {
        let message = error.to_string();
        match error {
            LoginError::Invalid { code, message } => Self::bad_request(code, message),
            LoginError::WrongSuiteKind(..) => Self::bad_request("wrong_suite_kind", message),
            LoginError::CodeUsed => Self::Conflict { code: "oauth_code_used", message },
            LoginError::CodeInvalid => Self::bad_request("oauth_code_invalid", message),
            LoginError::Token(token) => token.into(),
            LoginError::Store(store) => store.into(),
        }
    }
}

impl From<WebhookError> for AppError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Invalid(message) => Self::bad_request("invalid_body", message),
            WebhookError::NotFound => Self::NotFound("webhook"),
            WebhookError::Denied(denied) => Self::Forbidden(denied),
            WebhookError::Store(store) => store.into(),
        }
    }
}

impl From<crate::feed::ReplayError> for AppError {
    fn from(error: crate::feed::ReplayError) -> Self {
        match error {
            crate::feed::ReplayError::NotFound => Self::NotFound("event"),
            crate::feed::ReplayError::NotFailed { .. } => {
                Self::Conflict { code: "not_failed", message: error.to_string() }
            }
            crate::feed::ReplayError::Store(store) => store.into(),
        }
    }
}

impl From<Denied> for AppError {
    fn from(denied: Denied) -> Self {
        Self::Forbidden(denied)
    }
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unknown => Self::Unauthorized,
            Refusal::Unconfigured => Self::AdminTokenUnset,
            Refusal::Throttled { retry_after_secs } => Self::TooManyFailedAttempts { retry_after_secs },
            Refusal::Store(store) => store.into(),
        }
    }
}

impl From<AccessError> for AppError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::Invalid { .. } => Self::bad_request("invalid_body", error.to_string()),
            AccessError::NameTaken(_) => Self::Conflict { code: "already_exists", message: error.to_string() },
            AccessError::NotFound => Self::NotFound("api key"),
            AccessError::Store(store) => store.into(),
        }
    }
}

impl From<LicenseError> for AppError {
    fn from(error: LicenseError) -> Self {
        match error {
            LicenseError::Refused { errcode, errmsg, meaning } => Self::LicenseRefused { errcode, errmsg, meaning },
            LicenseError::Token(token) => token.into(),
            LicenseError::Store(store) => store.into(),
            LicenseError::Invalid(message) => Self::bad_request("invalid_body", message),
            lost @ LicenseError::AnswerLost => Self::AnswerLost(lost.to_string()),
        }
    }
}
