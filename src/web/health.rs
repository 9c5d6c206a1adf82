use actix_web::HttpResponse;
use serde::Serialize;

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

/// What `/readyz` checked.
#[derive(Serialize)]
struct Readiness {
    ready: bool,
    /// `ok`, or `refused` while a write cannot commit (disk full, read-only database).
    writes: &'static str,
    /// `alive`, or `dead`: callbacks cannot be stored.
    event_writer: &'static str,
    /// SQLite only: the write-ahead log's size.
    wal_bytes: Option<u64>,
}

/// Readiness: `200` only while a write commits and the event writer runs, so a
/// callback sent here can be acknowledged; `503` with the failing check otherwise.
pub async fn readyz(state: State) -> HttpResponse {
    let writes = match state.db.probe_write().await {
        Ok(()) => "ok",
        Err(error) => {
            tracing::warn!(%error, "readiness: the database refuses writes");
            "refused"
        }
    };
    let event_writer = if state.gateway.writer_alive() { "alive" } else { "dead" };
    let ready = writes == "ok" && event_writer == "alive";
    let body = Readiness { ready, writes, event_writer, wal_bytes: state.db.wal_bytes() };
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
