//! The audit log: who changed what and when, written in the transaction of the
//! change itself. Details name fields, never secret values.

use diesel::prelude::*;

use super::schema::audit_log;
use super::{Conn, StoreResult, now_ms};
use crate::with_backend;

/// Who made changes that came from no API key: the command line and the environment seed.
pub const ACTOR_CLI: &str = "cli";
pub const ACTOR_ENVIRONMENT: &str = "environment";

#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub actor: String,
    /// `suite.create`, `suite.update`, `provider.remove`, …
    pub action: String,
    pub target: String,
    /// A JSON object; for updates, the names of the fields that changed.
    pub details: serde_json::Value,
}

impl NewAuditEntry {
    pub fn new(actor: &str, action: &str, target: &str, details: serde_json::Value) -> Self {
        NewAuditEntry { actor: actor.to_owned(), action: action.to_owned(), target: target.to_owned(), details }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

/// Appends an entry on a connection inside the caller's transaction.
pub trait AppendAudit {
    fn append_audit(&mut self, entry: &NewAuditEntry) -> QueryResult<()>;
}

macro_rules! impl_append_audit {
    ($($connection:ty),*) => {$(
        impl AppendAudit for $connection {
            fn append_audit(&mut self, entry: &NewAuditEntry) -> QueryResult<()> {
                diesel::insert_into(audit_log::table)
                    .values((
                        audit_log::at.eq(now_ms()),
                        audit_log::actor.eq(&entry.actor),
                        audit_log::action.eq(&entry.action),
                        audit_log::target.eq(&entry.target),
                        audit_log::details.eq(entry.details.to_string()),
                    ))
                    .execute(self)
                    .map(drop)
            }
        }
    )*};
}

impl_append_audit!(diesel::SqliteConnection, diesel::PgConnection);

pub fn append_to<C: AppendAudit>(c: &mut C, entry: &NewAuditEntry) -> QueryResult<()> {
    c.append_audit(entry)
}

/// An entry on its own, for changes whose own write is elsewhere (a key rotation).
pub fn append(conn: &mut Conn, entry: &NewAuditEntry) -> StoreResult<()> {
    with_backend!(conn, c => c.append_audit(entry)?);
    Ok(())
}

/// Entries after `after`, oldest first.
pub fn page(conn: &mut Conn, after: i64, limit: i64) -> StoreResult<Vec<AuditRow>> {
    Ok(with_backend!(conn, c => audit_log::table
        .filter(audit_log::id.gt(after))
        .order(audit_log::id)
        .limit(limit)
        .select(AuditRow::as_select())
        .load(c)?))
}

/// The newest `limit` entries, newest first.
pub fn latest(conn: &mut Conn, limit: i64) -> StoreResult<Vec<AuditRow>> {
    Ok(with_backend!(conn, c => audit_log::table
        .order(audit_log::id.desc())
        .limit(limit)
        .select(AuditRow::as_select())
        .load(c)?))
}
