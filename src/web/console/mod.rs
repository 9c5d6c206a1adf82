//! The admin console at `/admin`: server-rendered pages over the same services the
//! API uses, in Chinese and English. Every page needs a signed-in session (see
//! [`session`]); every form carries the session's CSRF token, and a POST without it
//! changes nothing. No page shows a secret: the views rendered here are the typed
//! views of the services (which carry none) and the summaries of `store::console`.

mod corps;
mod events;
mod overview;
mod records;
pub mod session;
mod webhooks;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_FRAME_OPTIONS};
use actix_web::{HttpRequest, HttpResponse, middleware, web};
use minijinja::context;
use serde::Deserialize;

pub use session::ConsoleSettings;
use session::{Console, LOGIN_CSRF_COOKIE, SESSION_COOKIE, console_cookie, random_token, redirect, same_token};

use super::State;
use super::pages::Lang;
use crate::access::{Refusal, Scope};
use crate::feed::rfc3339;

/// No script, no frames, forms only to ourselves.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(
                middleware::DefaultHeaders::new()
                    .add((CACHE_CONTROL, "no-store"))
                    .add((X_FRAME_OPTIONS, "DENY"))
                    .add((REFERRER_POLICY, "same-origin"))
                    .add((CONTENT_SECURITY_POLICY, CSP)),
            )
            .app_data(web::FormConfig::default().limit(16 << 10))
            .route("", web::get().to(overview::page))
            .route("/", web::get().to(overview::page))
            .route("/login", web::get().to(login_page))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .configure(corps::routes)
            .configure(events::routes)
            .configure(webhooks::routes)
            .configure(records::routes),
    );
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct Plain {
    #[serde(default)]
    pub csrf: String,
}

/// The message key of an action's `?done=` outcome, shown once after its redirect.
fn done_message(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "replayed" => Some("admin.done.replayed"),
        "token_refreshed" => Some("admin.done.token_refreshed"),
        "webhook_created" => Some("admin.done.webhook_created"),
        "webhook_deleted" => Some("admin.done.webhook_deleted"),
        "delivery_replayed" => Some("admin.done.delivery_replayed"),
        _ => None,
    }
}

/// Display of a stored Unix-ms time.
pub(super) fn at(unix_ms: i64) -> String {
    rfc3339(unix_ms).replace('T', " ").replace('Z', " UTC")
}

/// Milliseconds since `unix_ms`, in whole minutes.
fn minutes_since(unix_ms: i64) -> i64 {
    (crate::store::now_ms() - unix_ms).max(0) / 60_000
}

/// An optional text from a filter form: blank is none.
fn given(value: Option<&String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn login_form(
    state: &State,
    request: &HttpRequest,
    status: StatusCode,
    problem: Option<&str>,
    retry: Option<u64>,
) -> HttpResponse {
    let (lang, lang_cookie) = Lang::negotiate(request);
    let csrf = random_token();
    let ctx = context! { csrf => csrf.as_str(), problem, retry };
    let mut response = state.pages.render(status, "admin/login.html", lang, ctx);
    let cookie = console_cookie(&state.console, LOGIN_CSRF_COOKIE, csrf, 3600);
    for cookie in std::iter::once(cookie).chain(lang_cookie) {
        if let Err(error) = response.add_cookie(&cookie) {
            tracing::error!(%error, "cannot set a console cookie");
        }
    }
    response
}

async fn login_page(state: State, request: HttpRequest) -> HttpResponse {
    login_form(&state, &request, StatusCode::OK, None, None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
}

/// Signs in with an admin key. Whatever was wrong (unknown key, revoked, lacking the
/// admin scope), the answer is the same, slowed like the API's.
async fn login(state: State, request: HttpRequest, form: web::Form<LoginForm>) -> HttpResponse {
    let form = form.into_inner();
    let expected = request.cookie(LOGIN_CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if !same_token(&form.csrf, &expected) {
        return login_form(&state, &request, StatusCode::FORBIDDEN, Some("admin.error.csrf"), None);
    }
    let client = state.edge.client_of_request(&request);
    let key = form.key.trim();
    let outcome = state.access.authenticate(Some(key).filter(|k| !k.is_empty()), client).await;
    let refused =
        |state: &State| login_form(state, &request, StatusCode::UNAUTHORIZED, Some("admin.login.wrong"), None);
    match outcome {
        Ok(principal) if principal.require(Scope::Admin).is_ok() => {
            match session::sign_in(&state, &principal.name).await {
                Ok(cookie) => {
                    tracing::info!(key = principal.name.as_str(), "console sign-in");
                    let mut response = redirect("/admin");
                    let spent = console_cookie(&state.console, LOGIN_CSRF_COOKIE, String::new(), 0);
                    for cookie in [cookie, spent] {
                        if let Err(error) = response.add_cookie(&cookie) {
                            tracing::error!(%error, "cannot set a console cookie");
                        }
                    }
                    response
                }
                Err(error) => {
                    tracing::error!(%error, "cannot store a console session");
                    login_form(&state, &request, StatusCode::SERVICE_UNAVAILABLE, Some("admin.error.unavailable"), None)
                }
            }
        }
        Ok(principal) => {
            tracing::warn!(key = principal.name.as_str(), "console sign-in with a key lacking the admin scope");
            tokio::time::sleep(super::auth::FAILED_AUTH_DELAY).await;
            refused(&state)
        }
        Err(Refusal::Unknown) => {
            let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
            tracing::warn!(%client, "console sign-in failed");
            tokio::time::sleep(super::auth::FAILED_AUTH_DELAY).await;
            refused(&state)
        }
        Err(Refusal::Unconfigured) => {
            login_form(&state, &request, StatusCode::SERVICE_UNAVAILABLE, Some("admin.login.unconfigured"), None)
        }
        Err(Refusal::Throttled { retry_after_secs }) => {
            let mut response = login_form(
                &state,
                &request,
                StatusCode::TOO_MANY_REQUESTS,
                Some("admin.login.throttled"),
                Some(retry_after_secs),
            );
            if let Ok(value) = retry_after_secs.to_string().parse() {
                response.headers_mut().insert(actix_web::http::header::RETRY_AFTER, value);
            }
            response
        }
        Err(Refusal::Store(error)) => {
            tracing::error!(%error, "console sign-in could not look the key up");
            login_form(&state, &request, StatusCode::SERVICE_UNAVAILABLE, Some("admin.error.unavailable"), None)
        }
    }
}

async fn logout(console: Console, form: web::Form<Plain>) -> Result<HttpResponse, actix_web::Error> {
    console.check(&form.csrf)?;
    if let Err(error) = console.sign_out().await {
        tracing::error!(%error, "cannot end a console session");
        return Err(console.fail(StatusCode::SERVICE_UNAVAILABLE, "admin.error.unavailable", None));
    }
    let mut response = redirect("/admin/login");
    let cleared = console_cookie(&console.state.console, SESSION_COOKIE, String::new(), 0);
    if let Err(error) = response.add_cookie(&cleared) {
        tracing::error!(%error, "cannot clear the console cookie");
    }
    Ok(response)
}

/// A service's failure as the console's error page (its safe message as the detail).
fn failed(console: &Console, error: impl Into<crate::error::AppError>) -> actix_web::Error {
    use actix_web::ResponseError;
    let error = error.into();
    let status = error.status_code();
    console.fail(status, "admin.error.action", Some(error.to_string()))
}

#[cfg(test)]
mod tests {
    use crate::web::pages::Pages;

    /// Keys the console picks at run time (not written as `t("…")` in a template).
    #[test]
    fn every_message_the_console_chooses_exists_in_both_languages() {
        let pages = Pages::load(None).expect("built-in pages load");
        let sources = [
            include_str!("mod.rs"),
            include_str!("session.rs"),
            include_str!("overview.rs"),
            include_str!("corps.rs"),
            include_str!("events.rs"),
            include_str!("webhooks.rs"),
            include_str!("records.rs"),
        ];
        let mut used = 0;
        for source in sources {
            let keys = source.split("\"admin.").skip(1).filter_map(|rest| rest.split_once('"').map(|(key, _)| key));
            // Only whole keys: this test's own code names the prefix too.
            for key in keys
                .filter(|key| !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'))
            {
                used += 1;
                for lang in ["zh", "en"] {
                    assert!(pages.has_message(&format!("admin.{key}"), lang), "admin.{key} has no {lang} text");
                }
            }
        }
        assert!(used > 10, "the console names its messages");
    }
}
