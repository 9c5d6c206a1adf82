//! What the admin console reads and keeps: its sessions (only the SHA-256 of a
//! session id is stored, so the table cannot sign anybody in), and the read-only
//! summaries its pages show. No query here selects a secret column: permanent codes,
//! tokens, tickets and suite or webhook secrets never leave through these rows.

use diesel::prelude::*;

use super::events::{EventFilter, EventRow, filter_events};
use super::schema::{console_sessions, corps, events, identity_links, pending_matches, tokens, webhook_deliveries};
use super::{Conn, StoreResult, now_ms};
use crate::model::{CorpId, CorpStatus, EventStatus, LinkStatus, SuiteId};
use crate::store::corps::CorpView;
use crate::store::webhooks::DeliveryStatus;
use crate::with_backend;

/// A console sign-in, found by the hash of its id.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = console_sessions)]
pub struct SessionRow {
    pub id_hash: String,
    /// The name of the key that signed in.
    pub actor: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Stores a session; expired ones are pruned on the way.
pub fn insert_session(conn: &mut Conn, row: &SessionRow) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => {
        diesel::delete(console_sessions::table.filter(console_sessions::expires_at.le(now))).execute(c)?;
        diesel::insert_into(console_sessions::table).values(row).execute(c)?;
    });
    Ok(())
}

/// The unexpired session of `id_hash`.
pub fn find_session(conn: &mut Conn, id_hash: &str) -> StoreResult<Option<SessionRow>> {
    let now = now_ms();
    let row = with_backend!(conn, c => console_sessions::table
        .find(id_hash)
        .filter(console_sessions::expires_at.gt(now))
        .select(SessionRow::as_select())
        .first(c)
        .optional()?);
    Ok(row)
}

/// Signs a session out; false when there was none.
pub fn delete_session(conn: &mut Conn, id_hash: &str) -> StoreResult<bool> {
    let deleted = with_backend!(conn, c => diesel::delete(console_sessions::table.find(id_hash)).execute(c)?);
    Ok(deleted == 1)
}

/// A cached token's state: when it expires and whether a refresh is under way.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tokens)]
pub struct TokenState {
    pub scope: String,
    pub key: String,
    pub expires_at: Option<i64>,
    pub refreshing_until: Option<i64>,
    pub updated_at: i64,
}

/// Every cached token's state (never the token), by scope and key.
pub fn token_states(conn: &mut Conn) -> StoreResult<Vec<TokenState>> {
    let rows = with_backend!(conn, c => tokens::table
        .order((tokens::scope, tokens::key))
        .select(TokenState::as_select())
        .load(c)?);
    Ok(rows)
}

/// Counts of the last hour.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastHour {
    pub failed_events: i64,
    pub failed_deliveries: i64,
}

pub fn last_hour(conn: &mut Conn) -> StoreResult<LastHour> {
    let since = now_ms() - 60 * 60 * 1000;
    let counts = with_backend!(conn, c => {
        let failed_events = events::table
            .filter(events::status.eq(EventStatus::Failed))
            .filter(events::processed_at.ge(since))
            .count()
            .get_result(c)?;
        let failed_deliveries = webhook_deliveries::table
            .filter(webhook_deliveries::status.eq_any([DeliveryStatus::Failed, DeliveryStatus::Dead]))
            .filter(webhook_deliveries::updated_at.ge(since))
            .count()
            .get_result(c)?;
        LastHour { failed_events, failed_deliveries }
    });
    Ok(counts)
}

/// Which corps the corps page lists; empty means all.
#[derive(Debug, Clone, Default)]
pub struct CorpFilter {
    pub suite_id: Option<SuiteId>,
    pub status: Option<CorpStatus>,
    /// Part of the corpid or of the corp's name.
    pub search: Option<String>,
}

/// Corps matching `filter`, newest authorization first, at most `limit`.
pub fn corps(conn: &mut Conn, filter: &CorpFilter, limit: i64) -> StoreResult<Vec<CorpView>> {
    let rows = with_backend!(conn, c => {
        let mut query = corps::table.into_boxed();
        if let Some(suite_id) = &filter.suite_id {
            query = query.filter(corps::suite_id.eq(suite_id));
        }
        if let Some(status) = filter.status {
            query = query.filter(corps::status.eq(status));
        }
        if let Some(search) = &filter.search {
            let pattern = format!("%{}%", search.replace(['%', '_'], ""));
            query = query.filter(corps::corpid.like(pattern.clone()).or(corps::corp_name.like(pattern)));
        }
        query
            .order((corps::authorized_at.desc(), corps::corpid))
            .limit(limit)
            .select(CorpView::as_select())
            .load(c)?
    });
    Ok(rows)
}

/// Events matching `filter` and `status`, newest first, at most `limit`.
pub fn recent_events(
    conn: &mut Conn,
    filter: &EventFilter,
    status: Option<EventStatus>,
    limit: i64,
) -> StoreResult<Vec<EventRow>> {
    let rows = with_backend!(conn, c => {
        let mut query = filter_events!(events::table.into_boxed(), filter);
        if let Some(status) = status {
            query = query.filter(events::status.eq(status));
        }
        query.order(events::id.desc()).limit(limit).select(EventRow::as_select()).load(c)?
    });
    Ok(rows)
}

/// A subscription's delivery rows by status: `(webhook_id, status, count)`.
pub fn delivery_counts(conn: &mut Conn) -> StoreResult<Vec<(String, DeliveryStatus, i64)>> {
    let rows = with_backend!(conn, c => webhook_deliveries::table
        .group_by((webhook_deliveries::webhook_id, webhook_deliveries::status))
        .select((webhook_deliveries::webhook_id, webhook_deliveries::status, diesel::dsl::count_star()))
        .load(c)?);
    Ok(rows)
}

/// Dead deliveries (given up), newest first: `(webhook_id, event_id, attempts, last_status, last_error, updated_at)`.
pub fn dead_deliveries(conn: &mut Conn, limit: i64) -> StoreResult<Vec<super::webhooks::DeliveryRow>> {
    let rows = with_backend!(conn, c => webhook_deliveries::table
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Dead))
        .order(webhook_deliveries::updated_at.desc())
        .limit(limit)
        .select(super::webhooks::DeliveryRow::as_select())
        .load(c)?);
    Ok(rows)
}

/// Per corp: identities still waiting for their new external_userid (a pending_id
/// issued, not matched yet), the oldest of them, and customers queued to be matched.
#[derive(Debug, Clone)]
pub struct IdMigration {
    pub suite_id: SuiteId,
    pub corpid: CorpId,
    pub pending_links: i64,
    pub oldest_pending_since: Option<i64>,
    pub queued_matches: i64,
}

pub fn id_migrations(conn: &mut Conn) -> StoreResult<Vec<IdMigration>> {
    let (links, queued) = with_backend!(conn, c => {
        let links: Vec<(String, String, i64, Option<i64>)> = identity_links::table
            .filter(identity_links::status.eq(LinkStatus::Pending))
            .group_by((identity_links::suite_id, identity_links::corpid))
            .select((
                identity_links::suite_id,
                identity_links::corpid,
                diesel::dsl::count_star(),
                diesel::dsl::min(identity_links::pending_since),
            ))
            .load(c)?;
        let queued: Vec<(String, String, i64)> = pending_matches::table
            .group_by((pending_matches::suite_id, pending_matches::corpid))
            .select((pending_matches::suite_id, pending_matches::corpid, diesel::dsl::count_star()))
            .load(c)?;
        (links, queued)
    });
    let mut found: Vec<IdMigration> = links
        .into_iter()
        .map(|(suite_id, corpid, pending_links, oldest_pending_since)| IdMigration {
            suite_id: SuiteId::from(suite_id),
            corpid: CorpId::from(corpid),
            pending_links,
            oldest_pending_since,
            queued_matches: 0,
        })
        .collect();
    for (suite_id, corpid, count) in queued {
        match found.iter_mut().find(|m| m.suite_id.as_str() == suite_id && m.corpid.as_str() == corpid) {
            Some(migration) => migration.queued_matches = count,
            None => found.push(IdMigration {
                suite_id: SuiteId::from(suite_id),
                corpid: CorpId::from(corpid),
                pending_links: 0,
                oldest_pending_since: None,
                queued_matches: count,
            }),
        }
    }
    found.sort_by(|a, b| (a.suite_id.as_str(), a.corpid.as_str()).cmp(&(b.suite_id.as_str(), b.corpid.as_str())));
    Ok(found)
}
