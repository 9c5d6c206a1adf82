//! Console sign-ins. Signing in takes an API key with the admin scope (or
//! `ADMIN_TOKEN`), checked by the same [`Authenticator`](crate::access::Authenticator)
//! as the API, so failures are slowed and throttled alike, and the answer never says
//! which part was wrong. A session is a random id in an HttpOnly, SameSite=Strict
//! cookie (Secure behind https); the database keeps only its SHA-256, the name of the
//! key that signed in (the audit log's actor) and the session's CSRF token, which
//! every form carries and every POST is checked against in constant time. A session
//! ends at its absolute expiry or when it signs out (its row deleted).

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minijinja::{Value, context};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::console::{self as rows, SessionRow};
use crate::store::now_ms;
use crate::web::State;
use crate::web::pages::Lang;

/// The session cookie; scoped to the console's paths.
pub const SESSION_COOKIE: &str = "wecom_console";
/// The sign-in form's own CSRF token (double-submit): there is no session yet.
pub const LOGIN_CSRF_COOKIE: &str = "wecom_console_login";
pub const CONSOLE_PATH: &str = "/admin";

/// How the console's cookies are made.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub session_lifetime: std::time::Duration,
    /// Set the cookies' Secure attribute: `PUBLIC_BASE_URL` is https.
    pub secure: bool,
}

/// 32 random bytes, base64url.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Equal, compared in constant time.
pub fn same_token(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// A cookie of the console's paths with the console's attributes.
pub fn console_cookie(
    settings: &ConsoleSettings,
    name: &'static str,
    value: String,
    max_age_secs: i64,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(CONSOLE_PATH)
        .http_only(true)
        .secure(settings.secure)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_secs))
        .finish()
}

/// Starts a session for `actor`; the cookie to set.
pub async fn sign_in(state: &State, actor: &str) -> Result<Cookie<'static>, crate::store::StoreError> {
    let settings = &state.console;
    let id = random_token();
    let lifetime_ms = i64::try_from(settings.session_lifetime.as_millis()).unwrap_or(i64::MAX);
    let now = now_ms();
    let row = SessionRow {
        id_hash: hash(&id),
        actor: actor.to_owned(),
        csrf_token: random_token(),
        created_at: now,
        expires_at: now.saturating_add(lifetime_ms),
    };
    state.db.run(move |conn| rows::insert_session(conn, &row)).await?;
    Ok(console_cookie(settings, SESSION_COOKIE, id, lifetime_ms / 1000))
}

/// A request of a signed-in session: the handler's way to render and to check forms.
pub struct Console {
    pub state: State,
    pub lang: Lang,
    lang_cookie: Option<Cookie<'static>>,
    pub actor: String,
    csrf: String,
    id_hash: String,
}

/// See other: where a form's action leads.
pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((LOCATION, to.to_owned())).finish()
}

impl FromRequest for Console {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let signed_out = || actix_web::error::InternalError::from_response("signed out", redirect("/admin/login"));
            let state = request.app_data::<State>().cloned().ok_or_else(signed_out)?;
            let id_hash = request.cookie(SESSION_COOKIE).map(|cookie| hash(cookie.value())).ok_or_else(signed_out)?;
            let lookup = id_hash.clone();
            let row = match state.db.run(move |conn| rows::find_session(conn, &lookup)).await {
                Ok(Some(row)) => row,
                Ok(None) => return Err(signed_out().into()),
                Err(error) => {
                    tracing::error!(%error, "console session lookup failed");
                    return Err(actix_web::error::ErrorServiceUnavailable("storage unavailable, try again"));
                }
            };
            let (lang, lang_cookie) = Lang::negotiate(&request);
            Ok(Console { state, lang, lang_cookie, actor: row.actor, csrf: row.csrf_token, id_hash })
        })
    }
}

impl Console {
    /// A console page: `template` with the session's CSRF token, the actor and `ctx`.
    pub fn page(&self, status: StatusCode, template: &str, ctx: Value) -> HttpResponse {
        let ctx = context! { csrf => self.csrf.as_str(), actor => self.actor.as_str(), signed_in => true, ..ctx };
        let mut response = self.state.pages.render(status, template, self.lang, ctx);
        if let Some(cookie) = &self.lang_cookie
            && let Err(error) = response.add_cookie(cookie)
        {
            tracing::error!(%error, "cannot set the language cookie");
        }
        response
    }

    /// The error page with `message` (a catalog key) and an optional detail, as an error.
    pub fn fail(&self, status: StatusCode, message: &str, detail: Option<String>) -> actix_web::Error {
        let page = self.page(status, "admin/error.html", context! { message, detail });
        actix_web::error::InternalError::from_response(message.to_owned(), page).into()
    }

    /// A form's CSRF token is the session's: else 403, and the handler changes nothing.
    pub fn check(&self, presented: &str) -> Result<(), actix_web::Error> {
        if same_token(presented, &self.csrf) {
            Ok(())
        } else {
            tracing::warn!(actor = self.actor.as_str(), "console form without its CSRF token refused");
            Err(self.fail(StatusCode::FORBIDDEN, "admin.error.csrf", None))
        }
    }

    /// Ends the session.
    pub async fn sign_out(&self) -> Result<(), crate::store::StoreError> {
        let id_hash = self.id_hash.clone();
        self.state.db.run(move |conn| rows::delete_session(conn, &id_hash)).await?;
        Ok(())
    }
}
