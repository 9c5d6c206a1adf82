//! The URLs WeCom calls. Every rejection is a short plain-text reason and changes
//! nothing; `success` is written only after the event is committed.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use tokio::sync::OwnedSemaphorePermit;

use super::State;
use super::edge::{Edge, FREE_BODY_BYTES};
use super::request_id::RequestId;
use crate::crypto::CryptoError;
use crate::events::gateway::{CallbackError, CallbackQuery, Endpoint};
use crate::events::intake::Stored;
use crate::telemetry;

/// WeCom's callbacks are a few KiB; anything larger is refused unread.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// A verified body is stored and acknowledged within this, well inside WeCom's 1 s.
pub const CALLBACK_DEADLINE: std::time::Duration = std::time::Duration::from_millis(800);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/callback/provider/{provider_corpid}")
            .route(web::get().to(verify_provider))
            .route(web::post().to(receive_provider)),
    )
    .service(
        web::resource("/callback/{suite_id}/command")
            .route(web::get().to(verify_command))
            .route(web::post().to(receive_command)),
    )
    .service(
        web::resource("/callback/{suite_id}/data")
            .route(web::get().to(verify_data))
            .route(web::post().to(receive_data)),
    );
}

async fn verify_provider(state: State, id: web::Path<String>, request: HttpRequest) -> HttpResponse {
    verify(state, Endpoint::Provider, &id, &request).await
}

async fn verify_command(state: State, id: web::Path<String>, request: HttpRequest) -> HttpResponse {
    verify(state, Endpoint::Command, &id, &request).await
}

async fn verify_data(state: State, id: web::Path<String>, request: HttpRequest) -> HttpResponse {
    verify(state, Endpoint::Data, &id, &request).await
}

async fn receive_provider(
    state: State,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    receive(state, Endpoint::Provider, &id, &request, body).await
}

async fn receive_command(
    state: State,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    receive(state, Endpoint::Command, &id, &request, body).await
}

async fn receive_data(state: State, id: web::Path<String>, request: HttpRequest, body: web::Payload) -> HttpResponse {
    receive(state, Endpoint::Data, &id, &request, body).await
}

async fn verify(state: State, endpoint: Endpoint, id: &str, request: &HttpRequest) -> HttpResponse {
    let query = CallbackQuery::parse(request.query_string());
    let response = match state.gateway.verify_url(endpoint, id, &query).await {
        Ok(echo) => HttpResponse::Ok().content_type("text/plain").body(echo),
        Err(error) => rejection(endpoint, id, &error),
    };
    count(route(endpoint), "GET", response.status());
    response
}

fn count(route: &'static str, method: &'static str, status: StatusCode) {
    let status = status.as_u16().to_string();
    metrics::counter!(telemetry::CALLBACKS, "route" => route, "method" => method, "status" => status).increment(1);
}

/// The metric label of a callback URL.
fn route(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Command => "command",
        Endpoint::Data => "data",
        Endpoint::Provider => "provider",
    }
}

async fn receive(
    state: State,
    endpoint: Endpoint,
    id: &str,
    request: &HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let response = receive_timed(state, endpoint, id, request, body, started).await;
    let route = route(endpoint);
    count(route, "POST", response.status());
    metrics::histogram!(telemetry::CALLBACK_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

async fn receive_timed(
    state: State,
    endpoint: Endpoint,
    id: &str,
    request: &HttpRequest,
    body: web::Payload,
    started: Instant,
) -> HttpResponse {
    // An unknown suite or provider is refused before a byte of its body is read.
    if let Err(error) = state.gateway.check_target(endpoint, id) {
        return rejection(endpoint, id, &error);
    }
    // A slow client holds its connection and its share of the budget no longer than this.
    let read_timeout = state.edge.limits.request_read_timeout;
    let (body, _budget_share) = match tokio::time::timeout(read_timeout, read_limited(&state.edge, request, body)).await
    {
        Ok(Ok(body)) => body,
        Ok(Err(response)) => return response,
        Err(_) => {
            let reason = format!("body not received within {} s", read_timeout.as_secs());
            return plain(StatusCode::REQUEST_TIMEOUT, &reason);
        }
    };
    let query = CallbackQuery::parse(request.query_string());
    let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone());
    // Past WeCom's 1 s it retries anyway: a 503 before then says so. An event that
    // commits after the 503 is stored once all the same (its retry is deduped).
    match tokio::time::timeout(
        CALLBACK_DEADLINE,
        state.gateway.receive(endpoint, id, &query, &body, request_id.as_deref()),
    )
    .await
    {
        Ok(Ok(accepted)) => {
            let event_id = match accepted.stored {
                Stored::New(id) => Some(id.get()),
                Stored::Duplicate => None,
            };
            tracing::info!(
                route = route(endpoint),
                suite = accepted.suite_id.as_ref().map(|suite| suite.as_str()),
                kind = %crate::text::excerpt(&accepted.kind),
                event_id,
                duplicate = event_id.is_none(),
                latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "callback accepted"
            );
            HttpResponse::Ok().content_type("text/plain").body("success")
        }
        Ok(Err(error)) => rejection(endpoint, id, &error),
        Err(_) => {
            tracing::warn!(?endpoint, "callback not stored within its deadline; answered 503");
            plain(StatusCode::SERVICE_UNAVAILABLE, "storage too slow, try again")
        }
    }
}

/// Reads the body up to [`MAX_BODY_BYTES`], refusing early when Content-Length says
/// more. A body needs no more than [`FREE_BODY_BYTES`] (real callbacks are a few
/// KiB); a larger one must declare its length and is buffered only with a share of
/// the shared budget for all of it, held until it is answered: bodies that never
/// finish cost the budget, never unbounded memory, and real callbacks never wait.
async fn read_limited(
    edge: &Edge,
    request: &HttpRequest,
    mut payload: web::Payload,
) -> Result<(web::BytesMut, Option<OwnedSemaphorePermit>), HttpResponse> {
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let share = match declared {
        Some(length) if length > MAX_BODY_BYTES => {
            return Err(plain(StatusCode::PAYLOAD_TOO_LARGE, "body exceeds 1 MiB"));
        }
        Some(length) if length > FREE_BODY_BYTES => Some(
            edge.reserve_body_bytes(length)
                .ok_or_else(|| plain(StatusCode::SERVICE_UNAVAILABLE, "too many large bodies in flight, try again"))?,
        ),
        _ => None,
    };
    let limit = declared.filter(|_| share.is_some()).unwrap_or(FREE_BODY_BYTES);
    // Whatever Content-Length claims, a body that never arrives costs only what came.
    let mut body = web::BytesMut::with_capacity(limit.min(FREE_BODY_BYTES));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| plain(StatusCode::BAD_REQUEST, "could not read the body"))?;
        if body.len() + chunk.len() > limit {
            // Only a body without Content-Length can outgrow its limit (actix holds the rest to it).
            return Err(plain(StatusCode::PAYLOAD_TOO_LARGE, "a body over 16 KiB must declare its Content-Length"));
        }
        if body.len() + chunk.len() > body.capacity() {
            // Exactly what was declared, so the budget is what is allocated.
            let mut whole = web::BytesMut::with_capacity(limit);
            whole.extend_from_slice(&body);
            body = whole;
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, share))
}

fn rejection(endpoint: Endpoint, id: &str, error: &CallbackError) -> HttpResponse {
    let status = match error {
        CallbackError::UnknownSuite | CallbackError::UnknownProvider => StatusCode::NOT_FOUND,
        CallbackError::Crypto(CryptoError::SignatureMismatch) => StatusCode::UNAUTHORIZED,
        CallbackError::ReceiveIdMismatch | CallbackError::SuiteMismatch => StatusCode::FORBIDDEN,
        CallbackError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        CallbackError::MissingParameter(_)
        | CallbackError::Envelope(_)
        | CallbackError::Crypto(_)
        | CallbackError::NotUtf8
        | CallbackError::Message(_)
        | CallbackError::StaleTimestamp => StatusCode::BAD_REQUEST,
    };
    let id = crate::text::excerpt(id);
    tracing::info!(?endpoint, %id, status = status.as_u16(), reason = %error, "callback rejected");
    plain(status, &error.to_string())
}

fn plain(status: StatusCode, reason: &str) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain").body(reason.to_owned())
}
