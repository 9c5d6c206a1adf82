use actix_web::HttpResponse;

use super::State;

/// `200 ok` while the database answers; load balancers take the instance out otherwise.
pub async fn healthz(state: State) -> HttpResponse {
    match state.db.ping().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ok"),
        Err(error) => {
            tracing::warn!(%error, "health check: database unavailable");
            HttpResponse::ServiceUnavailable().content_type("text/plain").body("database unavailable")
        }
    }
}
