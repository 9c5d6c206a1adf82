//! ID migrations in progress (identities waiting for their new external_userid,
//! customers queued to be matched) and the audit log.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use minijinja::context;
use serde::Serialize;

use super::session::Console;
use super::{at, failed};
use crate::store::{audit, console as rows};

const AUDIT_ENTRIES: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ids", web::get().to(id_migrations)).route("/audit", web::get().to(audit_log));
}

#[derive(Serialize)]
struct MigrationLine {
    suite_id: String,
    corpid: String,
    pending_links: i64,
    oldest_pending_since: Option<String>,
    queued_matches: i64,
}

async fn id_migrations(console: Console) -> Result<HttpResponse, actix_web::Error> {
    let found = console.state.db.run(rows::id_migrations).await.map_err(|e| failed(&console, e))?;
    let migrations: Vec<MigrationLine> = found
        .into_iter()
        .map(|m| MigrationLine {
            suite_id: m.suite_id.to_string(),
            corpid: m.corpid.to_string(),
            pending_links: m.pending_links,
            oldest_pending_since: m.oldest_pending_since.map(at),
            queued_matches: m.queued_matches,
        })
        .collect();
    Ok(console.page(StatusCode::OK, "admin/ids.html", context! { nav => "ids", migrations }))
}

#[derive(Serialize)]
struct AuditLine {
    id: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
    details: String,
}

async fn audit_log(console: Console) -> Result<HttpResponse, actix_web::Error> {
    let found =
        console.state.db.run(|conn| audit::latest(conn, AUDIT_ENTRIES)).await.map_err(|e| failed(&console, e))?;
    let entries: Vec<AuditLine> = found
        .into_iter()
        .map(|row| AuditLine {
            id: row.id,
            at: at(row.at),
            actor: row.actor,
            action: row.action,
            target: row.target,
            details: row.details,
        })
        .collect();
    Ok(console.page(StatusCode::OK, "admin/audit.html", context! { nav => "audit", entries }))
}
