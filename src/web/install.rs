//! The install flow an enterprise admin's browser walks: our page with a fresh
//! pre_auth_code, WeCom's consent screen, and back to `complete` with an auth code.
//! The `state` we issue is stored server-side and bound to the browser by a
//! cookie: it is checked and used once, so a forged redirect cannot complete.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use minijinja::context;
use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::State;
use super::pages::Lang;
use crate::error::AppError;
use crate::lifecycle::{CORP_AUTHORIZED, InstallPath};
use crate::model::SuiteId;
use crate::store::install_states;
use crate::tokens::TokenKey;
use crate::wecom::errcodes::SPENT_CODE_ERRCODES;

const WECOM_INSTALL_URL: &str = "https://open.work.weixin.qq.com/3rdapp/install";
const STATE_COOKIE: &str = "wecom_install_state";
/// An install started more than this long ago is refused at the end.
const STATE_LIFETIME_MS: i64 = 60 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct InstallSettings {
    pub public_base_url: Url,
    /// set_session_info auth_type: 1 marks test installs.
    pub auth_type: u8,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/install/{suite_id}")
            .wrap(actix_web::middleware::from_fn(super::edge::limit_install))
            .route("", web::get().to(install_page))
            .route("/complete", web::get().to(complete)),
    );
}

/// Why an install page cannot go on; names its texts in `messages.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    UnknownApp,
    NotReady,
    Lost,
    Expired,
    BadLink,
    Failed,
}

impl Problem {
    #[cfg(test)]
    const ALL: [Self; 6] = [Self::UnknownApp, Self::NotReady, Self::Lost, Self::Expired, Self::BadLink, Self::Failed];

    fn of(error: &AppError) -> Self {
        match error {
            AppError::NotFound(_) | AppError::SuiteDisabled => Self::UnknownApp,
            AppError::NoSuiteTicket(_) | AppError::SuiteTicketRejected(_) => Self::NotReady,
            AppError::AuthCodeLost(_) => Self::Lost,
            AppError::Upstream { errcode, .. } if SPENT_CODE_ERRCODES.contains(errcode) => Self::Expired,
            _ => Self::Failed,
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::UnknownApp => StatusCode::NOT_FOUND,
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Lost => StatusCode::CONFLICT,
            Self::Expired | Self::BadLink => StatusCode::BAD_REQUEST,
            Self::Failed => StatusCode::BAD_GATEWAY,
        }
    }

    fn messages(self) -> &'static str {
        match self {
            Self::UnknownApp => "error.unknown_app",
            Self::NotReady => "error.not_ready",
            Self::Lost => "error.lost",
            Self::Expired => "error.expired",
            Self::BadLink => "error.bad_link",
            Self::Failed => "error.failed",
        }
    }
}

/// A page of the flow, in the visitor's language (a `?lang=` choice remembered).
fn page(
    state: &State,
    request: &HttpRequest,
    status: StatusCode,
    template: &str,
    ctx: minijinja::Value,
) -> HttpResponse {
    let (lang, chosen) = Lang::negotiate(request);
    let mut response = state.pages.render(status, template, lang, ctx);
    if let Some(cookie) = chosen
        && let Err(error) = response.add_cookie(&cookie)
    {
        tracing::error!(%error, "cannot set the language cookie");
    }
    response
}

/// An error page with a way to start again: the install page itself, unless the
/// link names no app of ours.
fn problem_page(state: &State, request: &HttpRequest, suite_id: &SuiteId, problem: Problem) -> HttpResponse {
    let start_url = (problem != Problem::UnknownApp).then(|| format!("/install/{suite_id}"));
    page(state, request, problem.status(), "install_error.html", context! { problem => problem.messages(), start_url })
}

async fn install_page(state: State, suite_id: web::Path<SuiteId>, request: HttpRequest) -> HttpResponse {
    match start_install(&state, &suite_id).await {
        Ok(start) => {
            let cookie = Cookie::build(STATE_COOKIE, start.install_state)
                .path(format!("/install/{suite_id}"))
                .http_only(true)
                .secure(state.install.public_base_url.scheme() == "https")
                .same_site(SameSite::Lax)
                .max_age(actix_web::cookie::time::Duration::hours(1))
                .finish();
            let ctx = context! {
                install_url => start.install_url.as_str(),
                app => start.app,
                provider => start.provider,
                lang_switch => true,
            };
            let mut response = page(&state, &request, StatusCode::OK, "install.html", ctx);
            if let Err(error) = response.add_cookie(&cookie) {
                tracing::error!(%error, "cannot set the install cookie");
            }
            response
        }
        Err(error) => problem_page(&state, &request, &suite_id, Problem::of(&error)),
    }
}

/// What the install page shows of the app; nothing secret.
#[derive(serde::Serialize)]
struct AppShown {
    name: String,
    description: String,
    logo_url: Option<String>,
}

struct Started {
    install_url: Url,
    install_state: String,
    app: AppShown,
    provider: Option<String>,
}

async fn start_install(state: &State, suite_id: &SuiteId) -> Result<Started, AppError> {
    let suite = state.registry.suite(suite_id).ok_or(AppError::NotFound("suite"))?;
    // Every view shares one pre_auth_code while it has 2 of its 20 minutes left.
    let key = TokenKey::PreAuthCode { suite_id: suite_id.to_owned(), test_install: state.install.auth_type == 1 };
    let pre_auth_code = state.tokens.get(&key).await?.access_token;
    let install_state = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let (sid, issued) = (suite_id.to_owned(), install_state.clone());
    state.db.run(move |conn| install_states::issue(conn, &issued, &sid)).await?;

    let redirect_uri = state
        .install
        .public_base_url
        .join(&format!("install/{suite_id}/complete"))
        .map_err(|_| AppError::Unavailable)?;
    let mut install_url = Url::parse(WECOM_INSTALL_URL).map_err(|_| AppError::Unavailable)?;
    install_url
        .query_pairs_mut()
        .append_pair("suite_id", suite_id.as_str())
        .append_pair("pre_auth_code", pre_auth_code.expose_secret())
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("state", &install_state);
    let provider = state.registry.provider(&suite.provider_corpid).map(|p| p.name.clone()).filter(|n| !n.is_empty());
    let name = if suite.name.is_empty() { suite_id.to_string() } else { suite.name.clone() };
    let app = AppShown { name, description: suite.description.clone(), logo_url: suite.logo_url.clone() };
    Ok(Started { install_url, install_state, app, provider })
}

#[derive(Deserialize)]
struct CompleteQuery {
    auth_code: Option<String>,
    state: Option<String>,
}

async fn complete(
    state: State,
    suite_id: web::Path<SuiteId>,
    query: web::Query<CompleteQuery>,
    request: HttpRequest,
) -> HttpResponse {
    let problem = |problem| problem_page(&state, &request, &suite_id, problem);
    let (Some(auth_code), Some(install_state)) = (query.auth_code.clone(), query.state.clone()) else {
        return problem(Problem::BadLink);
    };
    let cookie_matches = request.cookie(STATE_COOKIE).is_some_and(|cookie| cookie.value() == install_state);
    if !cookie_matches {
        return problem(Problem::BadLink);
    }
    let sid = suite_id.clone();
    let consumed =
        state.db.run(move |conn| install_states::consume(conn, &install_state, &sid, STATE_LIFETIME_MS)).await;
    match consumed {
        Ok(true) => {}
        Ok(false) => return problem(Problem::BadLink),
        Err(error) => return problem(Problem::of(&error.into())),
    }
    let exchanged = state
        .lifecycle
        .exchange_auth_code(&suite_id, &SecretString::from(auth_code), InstallPath::InstallPage, CORP_AUTHORIZED)
        .await;
    match exchanged {
        Ok(authorized) => {
            let app_name = state.registry.suite(&suite_id).map_or_else(|| suite_id.to_string(), |s| s.name.clone());
            let ctx = context! {
                app_name,
                corp_name => authorized.corp_name,
                corpid => authorized.corpid,
                start_url => format!("/install/{suite_id}"),
            };
            page(&state, &request, StatusCode::OK, "installed.html", ctx)
        }
        Err(error) => problem(Problem::of(&error.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::pages::Pages;

    /// Every problem has its title and detail in both languages.
    #[test]
    fn every_problem_has_its_texts() {
        let pages = Pages::load(None).expect("built-in pages load");
        for problem in Problem::ALL {
            for part in ["title", "detail"] {
                let key = format!("{}.{part}", problem.messages());
                for lang in ["zh", "en"] {
                    assert!(pages.has_message(&key, lang), "{key} has no {lang} text");
                }
            }
        }
    }
}
