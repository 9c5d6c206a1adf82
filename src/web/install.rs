//! The install flow an enterprise admin's browser walks: our page with a fresh
//! pre_auth_code, WeCom's consent screen, and back to `complete` with an auth code.
//! The `state` we issue is stored server-side and bound to the browser by a
//! cookie: it is checked and used once, so a forged redirect cannot complete.

use std::sync::LazyLock;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use minijinja::{Environment, context};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::State;
use crate::error::AppError;
use crate::lifecycle::{CORP_AUTHORIZED, InstallPath};
use crate::model::SuiteId;
use crate::store::{install_states, suites};
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

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../../templates/base.html")),
        ("install.html", include_str!("../../templates/install.html")),
        ("installed.html", include_str!("../../templates/installed.html")),
        ("install_error.html", include_str!("../../templates/install_error.html")),
    ] {
        if let Err(error) = env.add_template(name, source) {
            tracing::error!(%error, name, "template does not compile");
        }
    }
    env
});

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/install/{suite_id}")
            .wrap(actix_web::middleware::from_fn(super::edge::limit_install))
            .route("", web::get().to(install_page))
            .route("/complete", web::get().to(complete)),
    );
}

fn render(status: StatusCode, template: &str, ctx: minijinja::Value) -> HttpResponse {
    match TEMPLATES.get_template(template).and_then(|t| t.render(ctx)) {
        Ok(html) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html),
        Err(error) => {
            tracing::error!(%error, template, "rendering failed");
            HttpResponse::InternalServerError().content_type("text/plain").body("page unavailable")
        }
    }
}

fn error_page(status: StatusCode, title: &str, detail: &str) -> HttpResponse {
    render(status, "install_error.html", context! { title, detail })
}

fn error_page_for(error: &AppError) -> HttpResponse {
    match error {
        AppError::NotFound(_) => {
            error_page(StatusCode::NOT_FOUND, "Unknown app", "This install link names no app of ours.")
        }
        AppError::NoSuiteTicket(_) => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready yet",
            "The app has not received its ticket from WeCom yet. Please try again in a few minutes.",
        ),
        AppError::AuthCodeLost(_) => error_page(
            StatusCode::CONFLICT,
            "Please install the app again",
            "WeCom did not confirm the installation in time. Please start the installation again.",
        ),
        AppError::Upstream { errcode, .. } if SPENT_CODE_ERRCODES.contains(errcode) => error_page(
            StatusCode::BAD_REQUEST,
            "The authorization expired",
            "The authorization code has expired or was already used. Please start the installation again.",
        ),
        _ => error_page(
            StatusCode::BAD_GATEWAY,
            "Installation failed",
            "WeCom could not complete the installation. Please try again.",
        ),
    }
}

async fn install_page(state: State, suite_id: web::Path<SuiteId>) -> HttpResponse {
    match start_install(&state, &suite_id).await {
        Ok((install_url, install_state)) => {
            let cookie = Cookie::build(STATE_COOKIE, install_state)
                .path(format!("/install/{suite_id}"))
                .http_only(true)
                .secure(state.install.public_base_url.scheme() == "https")
                .same_site(SameSite::Lax)
                .max_age(actix_web::cookie::time::Duration::hours(1))
                .finish();
            let mut response = render(StatusCode::OK, "install.html", context! { install_url => install_url.as_str() });
            if let Err(error) = response.add_cookie(&cookie) {
                tracing::error!(%error, "cannot set the install cookie");
            }
            response
        }
        Err(error) => error_page_for(&error),
    }
}

async fn start_install(state: &State, suite_id: &SuiteId) -> Result<(Url, String), AppError> {
    let id = suite_id.to_owned();
    state.db.run(move |conn| suites::find_suite(conn, &id)).await?.ok_or(AppError::NotFound("suite"))?;
    let key = TokenKey::suite(suite_id);
    let client = state.tokens.client();
    let pre_auth = state.tokens.call(&key, |token| async move { client.get_pre_auth_code(&token).await }).await?;
    if state.install.auth_type == 1 {
        let pre_auth_code = &pre_auth.token;
        state.tokens.call(&key, |token| async move { client.set_session_info(&token, pre_auth_code, 1).await }).await?;
    }
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
        .append_pair("pre_auth_code", pre_auth.token.expose_secret())
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("state", &install_state);
    Ok((install_url, install_state))
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
    let bad_state = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "This installation link is not valid",
            "It was not started here, has expired, or was already used. Please start the installation again.",
        )
    };
    let (Some(auth_code), Some(install_state)) = (query.auth_code.clone(), query.state.clone()) else {
        return bad_state();
    };
    let cookie_matches = request.cookie(STATE_COOKIE).is_some_and(|cookie| cookie.value() == install_state);
    if !cookie_matches {
        return bad_state();
    }
    let sid = suite_id.clone();
    let consumed =
        state.db.run(move |conn| install_states::consume(conn, &install_state, &sid, STATE_LIFETIME_MS)).await;
    match consumed {
        Ok(true) => {}
        Ok(false) => return bad_state(),
        Err(error) => return error_page_for(&error.into()),
    }
    let exchanged = state
        .lifecycle
        .exchange_auth_code(&suite_id, &SecretString::from(auth_code), InstallPath::InstallPage, CORP_AUTHORIZED)
        .await;
    match exchanged {
        Ok(authorized) => render(
            StatusCode::OK,
            "installed.html",
            context! { corp_name => authorized.corp_name, corpid => authorized.corpid },
        ),
        Err(error) => error_page_for(&error.into()),
    }
}
