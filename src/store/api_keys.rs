//! API keys: a name, the SHA-256 of the key, its scopes and suites. The key itself is
//! never written anywhere; a revoked key keeps its row with `revoked_at` set. Each
//! change is written with its audit entry in one transaction.

use diesel::prelude::*;

use super::audit::{self, NewAuditEntry};
use super::schema::{api_keys, suites};
use super::{Conn, StoreResult, WriteTransaction};
use crate::with_backend;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub name: String,
    pub key_hash: String,
    /// JSON array of scope names.
    pub scopes: String,
    /// JSON array of suite ids; `None`: every suite.
    pub suites: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey {
    pub name: String,
    pub key_hash: String,
    pub scopes: String,
    pub suites: Option<String>,
    pub created_at: i64,
}

/// What became of an insert; nothing is written unless `Created`.
pub enum Insert {
    Created(ApiKeyRow),
    /// A key of that name exists, revoked or not.
    NameTaken,
    /// One of the suites the key was to be restricted to is not in `suites`.
    UnknownSuite(String),
}

/// Stores a key and its audit entry after checking, in the same transaction, that
/// every suite of `suite_ids` exists.
pub fn insert(conn: &mut Conn, new: &NewApiKey, suite_ids: &[String], entry: &NewAuditEntry) -> StoreResult<Insert> {
    let outcome = with_backend!(conn, c => c.write_transaction(|c| {
        let known: Vec<String> =
            suites::table.filter(suites::suite_id.eq_any(suite_ids)).select(suites::suite_id).load(c)?;
        if let Some(unknown) = suite_ids.iter().find(|id| !known.contains(id)) {
            return Ok::<_, diesel::result::Error>(Insert::UnknownSuite(unknown.clone()));
        }
        // A conflict on key_hash too would read as a taken name; 256 random bits never collide.
        let row = diesel::insert_into(api_keys::table)
            .values(new)
            .on_conflict_do_nothing()
            .returning(ApiKeyRow::as_returning())
            .get_result(c)
            .optional()?;
        let Some(row) = row else {
            return Ok(Insert::NameTaken);
        };
        audit::append_to(c, entry)?;
        Ok(Insert::Created(row))
    })?);
    Ok(outcome)
}

pub fn list(conn: &mut Conn) -> StoreResult<Vec<ApiKeyRow>> {
    let rows = with_backend!(conn, c => api_keys::table
        .order((api_keys::created_at, api_keys::name))
        .select(ApiKeyRow::as_select())
        .load(c)?);
    Ok(rows)
}

pub fn find(conn: &mut Conn, name: &str) -> StoreResult<Option<ApiKeyRow>> {
    let row = with_backend!(conn, c => api_keys::table.find(name).select(ApiKeyRow::as_select()).first(c).optional()?);
    Ok(row)
}

/// The unrevoked key whose hash is `key_hash`.
pub fn find_active_by_hash(conn: &mut Conn, key_hash: &str) -> StoreResult<Option<ApiKeyRow>> {
    let row = with_backend!(conn, c => api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .select(ApiKeyRow::as_select())
        .first(c)
        .optional()?);
    Ok(row)
}

/// Whether any key is unrevoked.
pub fn any_active(conn: &mut Conn) -> StoreResult<bool> {
    let found = with_backend!(conn, c => api_keys::table
        .filter(api_keys::revoked_at.is_null())
        .select(api_keys::name)
        .first::<String>(c)
        .optional()?);
    Ok(found.is_some())
}

/// Revokes a key at `now`, with its audit entry; an already revoked key keeps its
/// first `revoked_at` and gets no second entry. `None` when there is no such key.
pub fn revoke(conn: &mut Conn, name: &str, now: i64, entry: &NewAuditEntry) -> StoreResult<Option<ApiKeyRow>> {
    let outcome = with_backend!(conn, c => c.write_transaction(|c| {
        let revoked = diesel::update(api_keys::table.find(name).filter(api_keys::revoked_at.is_null()))
            .set(api_keys::revoked_at.eq(now))
            .execute(c)?;
        if revoked == 1 {
            audit::append_to(c, entry)?;
        }
        api_keys::table.find(name).select(ApiKeyRow::as_select()).first(c).optional()
    })?);
    Ok(outcome)
}

/// Sets `last_used_at` to `now` unless it is less than `interval_ms` old, so that
/// instances sharing the database write it at most once per interval between them.
pub fn record_use(conn: &mut Conn, name: &str, now: i64, interval_ms: i64) -> StoreResult<()> {
    with_backend!(conn, c => diesel::update(
        api_keys::table
            .find(name)
            .filter(api_keys::last_used_at.is_null().or(api_keys::last_used_at.le(now - interval_ms))),
    )
    .set(api_keys::last_used_at.eq(now))
    .execute(c)?);
    Ok(())
}
