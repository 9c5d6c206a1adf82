//! Authentication of `/api/v1`, as middleware around the whole scope: every request's
//! bearer is checked before routing, its principal put into the request's extensions,
//! and one log line written per request, naming the key (never the key itself, never
//! its hash). Handlers then name the scope they need with an extractor: [`Granted`]
//! checks the scope and the route's `{suite_id}` and `{provider_corpid}` against the
//! key's suites; [`Admin`] is a caller with the admin scope. The one exception is
//! `GET /api/v1/openapi.json`: the document holds no secret and tooling fetches it
//! without a key.

use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use serde::Deserialize;

use super::{API_SCOPE, State, openapi};
use crate::access::{Principal, Scope, Suites};
use crate::error::AppError;

/// A failed authentication is answered this much later, so guessing is slow.
pub(super) const FAILED_AUTH_DELAY: Duration = Duration::from_millis(250);

/// The middleware of `/api/v1` (see the module documentation).
pub async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if request.method() == Method::GET && request.path().strip_prefix(API_SCOPE) == Some(openapi::PATH) {
        return next.call(request).await.map(ServiceResponse::map_into_left_body);
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.path().to_owned();
    let state = request.app_data::<State>().cloned();
    let client = state.as_ref().and_then(|state| state.edge.client_of_request(request.request()));
    let outcome = match state {
        Some(state) => {
            let bearer = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "));
            state.access.authenticate(bearer, client).await.map_err(AppError::from)
        }
        None => Err(AppError::Unavailable),
    };
    let (key, response) = match outcome {
        Ok(principal) => {
            let key = principal.name.clone();
            request.extensions_mut().insert(principal);
            (key, next.call(request).await.map(ServiceResponse::map_into_left_body))
        }
        Err(error) => {
            if let AppError::Unauthorized = error {
                let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
                tracing::warn!(key = "unknown", %client, "authentication failed");
                tokio::time::sleep(FAILED_AUTH_DELAY).await;
            }
            ("-".to_owned(), Ok(request.error_response(error).map_into_right_body()))
        }
    };
    let status = match &response {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    tracing::info!(
        %method,
        %path,
        status = status.as_u16(),
        latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        key = key.as_str(),
        "api request"
    );
    response
}

/// A scope as a type, so that a handler names the one it needs in its signature.
pub trait Needs {
    const SCOPE: Scope;
}

pub mod scope {
    use super::{Needs, Scope};

    pub struct Tokens;
    pub struct Ids;
    pub struct Events;

    impl Needs for Tokens {
        const SCOPE: Scope = Scope::Tokens;
    }
    impl Needs for Ids {
        const SCOPE: Scope = Scope::Ids;
    }
    impl Needs for Events {
        const SCOPE: Scope = Scope::Events;
    }
}

/// A caller holding scope `S` and allowed the route's suite and provider, if it names them.
pub struct Granted<S> {
    principal: Arc<Principal>,
    _scope: PhantomData<S>,
}

impl<S> Granted<S> {
    /// The suites the caller reaches, for what the route itself does not name.
    pub fn suites(&self) -> &Suites {
        &self.principal.suites
    }
}

impl<S: Needs> FromRequest for Granted<S> {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(grant(request, S::SCOPE).map(|principal| Granted { principal, _scope: PhantomData }))
    }
}

/// A caller with the admin scope.
pub struct Admin {
    /// The key's name (`bootstrap` for ADMIN_TOKEN), for audit entries.
    pub actor: String,
}

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(grant(request, Scope::Admin).map(|principal| Admin { actor: principal.name.clone() }))
    }
}

/// The route's parameters a key's suites restrict, decoded as the handler's `Path` sees them.
#[derive(Deserialize)]
struct RouteSubjects {
    suite_id: Option<String>,
    provider_corpid: Option<String>,
}

fn grant(request: &HttpRequest, scope: Scope) -> Result<Arc<Principal>, AppError> {
    // Absent only on a route outside the middleware: nobody is let in there.
    let principal = request.extensions().get::<Arc<Principal>>().cloned().ok_or(AppError::Unauthorized)?;
    principal.require(scope)?;
    let subjects: RouteSubjects = request.match_info().load().map_err(|_| AppError::NotFound("route"))?;
    if let Some(suite_id) = &subjects.suite_id {
        principal.suites.check(suite_id)?;
    }
    if let Some(provider_corpid) = &subjects.provider_corpid {
        principal.suites.check_provider(provider_corpid)?;
    }
    Ok(principal)
}
