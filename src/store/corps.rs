//! Corps that authorized a suite, with their permanent codes. The permanent code is
//! read only by the token center and the lifecycle; views never carry it.

use diesel::prelude::*;

use super::events::{InsertEvents, NewEvent};
use super::schema::{auth_codes, corps};
use super::sealing::Sealed;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::model::{CodeStatus, CorpId, CorpStatus, SuiteId};
use crate::with_backend;

/// A corp as the API shows it (no permanent code).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = corps)]
pub struct CorpView {
    pub suite_id: SuiteId,
    pub corpid: CorpId,
    pub corp_name: String,
    pub agent_id: Option<i64>,
    pub status: CorpStatus,
    pub auth_info: String,
    pub auth_error: Option<String>,
    pub authorized_at: i64,
    pub updated_at: i64,
}

/// What the token center needs to fetch a corp token.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = corps)]
pub struct CorpCredentials {
    pub status: CorpStatus,
    pub permanent_code: Option<Sealed>,
    pub auth_error: Option<String>,
    pub agent_id: Option<i64>,
}

/// The outcome of exchanging an auth code, to store.
pub struct Authorization<'a> {
    pub suite_id: &'a SuiteId,
    pub corpid: &'a CorpId,
    pub corp_name: &'a str,
    pub agent_id: Option<i64>,
    pub permanent_code: &'a Sealed,
    pub auth_info: &'a str,
}

/// Stores a (re-)authorization: active, new permanent code, any old error cleared;
/// the auth code that granted it marked done, and `events` appended, all in one
/// transaction.
pub fn upsert_authorized(
    conn: &mut Conn,
    auth: &Authorization<'_>,
    code_hash: &str,
    events: &[NewEvent],
) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => c.write_transaction(|c| {
        diesel::insert_into(corps::table)
            .values((
                corps::suite_id.eq(auth.suite_id),
                corps::corpid.eq(auth.corpid),
                corps::corp_name.eq(auth.corp_name),
                corps::agent_id.eq(auth.agent_id),
                corps::permanent_code.eq(auth.permanent_code),
                corps::status.eq(CorpStatus::Active),
                corps::auth_info.eq(auth.auth_info),
                corps::authorized_at.eq(now),
                corps::updated_at.eq(now),
            ))
            .on_conflict((corps::suite_id, corps::corpid))
            .do_update()
            .set((
                corps::corp_name.eq(auth.corp_name),
                corps::agent_id.eq(auth.agent_id),
                corps::permanent_code.eq(auth.permanent_code),
                corps::status.eq(CorpStatus::Active),
                corps::auth_info.eq(auth.auth_info),
                corps::auth_error.eq(None::<String>),
                corps::authorized_at.eq(now),
                corps::updated_at.eq(now),
            ))
            .execute(c)?;
        diesel::update(
            auth_codes::table.find((auth.suite_id, code_hash)).filter(auth_codes::status.eq(CodeStatus::Exchanging)),
        )
        .set((auth_codes::status.eq(CodeStatus::Done), auth_codes::corpid.eq(auth.corpid)))
        .execute(c)?;
        c.insert_events(events)?;
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

/// Refreshed auth info after change_auth, with `events` appended when the corp is
/// known; false if it is not.
pub fn update_auth_info(
    conn: &mut Conn,
    corp: (&SuiteId, &CorpId),
    corp_name: &str,
    agent_id: Option<i64>,
    auth_info: &str,
    events: &[NewEvent],
) -> StoreResult<bool> {
    let now = now_ms();
    let updated = with_backend!(conn, c => c.write_transaction(|c| {
        let updated = diesel::update(corps::table.find(corp))
            .set((
                corps::corp_name.eq(corp_name),
                corps::agent_id.eq(agent_id),
                corps::auth_info.eq(auth_info),
                corps::updated_at.eq(now),
            ))
            .execute(c)?;
        append_when_found(c, updated, events)
    })?);
    Ok(updated)
}

/// Marks the corp cancelled (cancel_auth), its permanent code dropped, and appends
/// `events`; false (nothing appended) if the corp is unknown.
pub fn cancel(conn: &mut Conn, suite_id: &SuiteId, corpid: &CorpId, events: &[NewEvent]) -> StoreResult<bool> {
    let now = now_ms();
    let updated = with_backend!(conn, c => c.write_transaction(|c| {
        let updated = diesel::update(corps::table.find((suite_id, corpid)))
            .set((
                corps::status.eq(CorpStatus::Cancelled),
                corps::permanent_code.eq(None::<Sealed>),
                corps::updated_at.eq(now),
            ))
            .execute(c)?;
        append_when_found(c, updated, events)
    })?);
    Ok(updated)
}

/// Appends `events` when the update before it found its corp (`updated` rows), in
/// the same transaction: a change that did not happen reports nothing.
fn append_when_found<C: InsertEvents>(c: &mut C, updated: usize, events: &[NewEvent]) -> QueryResult<bool> {
    if updated == 1 {
        c.insert_events(events)?;
    }
    Ok(updated == 1)
}

/// Records that WeCom rejected the permanent code, so callers stop asking for
/// tokens; `events` are appended the first time only.
pub fn mark_auth_error(
    conn: &mut Conn,
    suite_id: &SuiteId,
    corpid: &CorpId,
    error: &str,
    events: &[NewEvent],
) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => c.write_transaction(|c| {
        let marked = diesel::update(corps::table.find((suite_id, corpid)).filter(corps::auth_error.is_null()))
            .set((corps::auth_error.eq(error), corps::updated_at.eq(now)))
            .execute(c)?;
        append_when_found(c, marked, events)
    })?);
    Ok(())
}

pub fn credentials(conn: &mut Conn, suite_id: &SuiteId, corpid: &CorpId) -> StoreResult<Option<CorpCredentials>> {
    let row = with_backend!(conn, c => corps::table
        .find((suite_id, corpid))
        .select(CorpCredentials::as_select())
        .first(c)
        .optional()?);
    Ok(row)
}

pub fn find(conn: &mut Conn, suite_id: &SuiteId, corpid: &CorpId) -> StoreResult<Option<CorpView>> {
    let row = with_backend!(conn, c => corps::table
        .find((suite_id, corpid))
        .select(CorpView::as_select())
        .first(c)
        .optional()?);
    Ok(row)
}

pub fn list(conn: &mut Conn, suite_id: &SuiteId) -> StoreResult<Vec<CorpView>> {
    let rows = with_backend!(conn, c => corps::table
        .filter(corps::suite_id.eq(suite_id))
        .order(corps::corpid)
        .select(CorpView::as_select())
        .load(c)?);
    Ok(rows)
}

/// Whether `corpid` currently authorizes `suite_id`: the receiveid rule of the data URL.
pub fn is_active(conn: &mut Conn, suite_id: &SuiteId, corpid: &CorpId) -> StoreResult<bool> {
    let found: Option<String> = with_backend!(conn, c => corps::table
        .find((suite_id, corpid))
        .filter(corps::status.eq(CorpStatus::Active))
        .select(corps::corpid)
        .first(c)
        .optional()?);
    Ok(found.is_some())
}
