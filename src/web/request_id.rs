//! A request id on every request: the caller's `x-request-id` when it is a sane
//! token, a fresh one otherwise; returned on every answer and carried by the span
//! every log line of the request is written in (its intake, its WeCom calls).

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

const HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_CHARS: usize = 128;

pub async fn tag(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_sane(id))
        .map_or_else(fresh, str::to_owned);
    let span = tracing::info_span!("request", request_id = %id);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.call(request).instrument(span).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}

/// The request's id, in its extensions: a callback's event keeps it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Short, and only characters that cannot forge a log line or a header.
fn is_sane(id: &str) -> bool {
    (1..=MAX_CHARS).contains(&id.len())
        && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

fn fresh() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_tokens_are_taken_from_the_caller() {
        assert!(is_sane("3f2a-b9c1.trace:1_x"));
        assert!(!is_sane(""));
        assert!(!is_sane(&"a".repeat(MAX_CHARS + 1)));
        assert!(!is_sane("id\nforged log line"));
        assert!(!is_sane("id with space"));
        assert_eq!(fresh().len(), 32);
        assert_ne!(fresh(), fresh());
    }
}
