//! The event log: every verified callback, stored once, then worked off in id order.

use std::collections::HashSet;

use diesel::prelude::*;

use super::schema::events;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::with_backend;

pub const STATUS_PENDING: &str = "pending";
pub const STATUS_DONE: &str = "done";
pub const STATUS_FAILED: &str = "failed";

/// Serialises event-inserting transactions on PostgreSQL: ids are drawn and committed
/// in the same order, so a reader paging by id never passes an id that commits later.
/// SQLite's single writer gives the same guarantee by itself.
const EVENT_APPEND_LOCK_KEY: i64 = 0x7765_636f_6d02;

/// `None` is inserted as NULL, not as the column default, so that diesel can put a
/// whole batch into one statement on SQLite too.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub struct NewEvent {
    pub provider_corpid: String,
    pub suite_id: Option<String>,
    pub corpid: Option<String>,
    pub kind: String,
    pub dedupe_key: String,
    /// Events with the same key are applied in id order; `None` for order-free kinds.
    pub ordering_key: Option<String>,
    pub plaintext: Option<String>,
    /// JSON object, already redacted.
    pub fields: String,
    pub received_at: i64,
    pub status: &'static str,
    pub processed_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub id: i64,
    pub provider_corpid: String,
    pub suite_id: Option<String>,
    pub corpid: Option<String>,
    pub kind: String,
    pub ordering_key: Option<String>,
    pub fields: String,
    pub received_at: i64,
    pub status: String,
    pub processed_at: Option<i64>,
    pub attempts: i32,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
}

/// An event as the worker needs it: with the plaintext to re-parse.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct PendingEvent {
    pub id: i64,
    pub provider_corpid: String,
    pub suite_id: Option<String>,
    pub corpid: Option<String>,
    pub kind: String,
    pub ordering_key: Option<String>,
    pub plaintext: Option<String>,
    pub received_at: i64,
    pub attempts: i32,
}

/// What a transaction appending events takes first. PostgreSQL: the append lock that
/// keeps ids committing in order. SQLite: nothing, its single writer does that.
trait AppendLock {
    fn take_append_lock(&mut self) -> QueryResult<()>;
}

impl AppendLock for diesel::SqliteConnection {
    fn take_append_lock(&mut self) -> QueryResult<()> {
        Ok(())
    }
}

impl AppendLock for diesel::PgConnection {
    fn take_append_lock(&mut self) -> QueryResult<()> {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({EVENT_APPEND_LOCK_KEY})")).execute(self)?;
        Ok(())
    }
}

/// Inserts events inside the caller's transaction with one multi-row
/// `INSERT … ON CONFLICT DO NOTHING RETURNING dedupe_key`, after the append lock.
/// Returns, per event, whether it was new (false: an identical event was stored
/// before, or earlier in the batch).
pub trait InsertEvents {
    fn insert_events(&mut self, batch: &[NewEvent]) -> QueryResult<Vec<bool>>;
}

/// The same diesel query, compiled once per backend.
macro_rules! impl_insert_events {
    ($($connection:ty),*) => {$(
        impl InsertEvents for $connection {
            fn insert_events(&mut self, batch: &[NewEvent]) -> QueryResult<Vec<bool>> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                self.take_append_lock()?;
                let inserted: Vec<String> = diesel::insert_into(events::table)
                    .values(batch)
                    .on_conflict(events::dedupe_key)
                    .do_nothing()
                    .returning(events::dedupe_key)
                    .get_results(self)?;
                let mut inserted: HashSet<String> = inserted.into_iter().collect();
                Ok(batch.iter().map(|event| inserted.remove(&event.dedupe_key)).collect())
            }
        }
    )*};
}

impl_insert_events!(diesel::SqliteConnection, diesel::PgConnection);

/// Inserts a batch in one transaction: one fsync for all of them.
pub fn append(conn: &mut Conn, batch: &[NewEvent]) -> StoreResult<Vec<bool>> {
    Ok(with_backend!(conn, c => c.write_transaction(|c| c.insert_events(batch))?))
}

/// One page of the feed, in id order after `after`.
pub fn page(conn: &mut Conn, after: i64, limit: i64) -> StoreResult<Vec<EventRow>> {
    let rows = with_backend!(conn, c => events::table
        .filter(events::id.gt(after))
        .order(events::id)
        .limit(limit)
        .select(EventRow::as_select())
        .load(c)?);
    Ok(rows)
}

/// The next events due for their effects, oldest first. An ordering key whose oldest
/// pending event waits for a retry holds back every later event of that key.
pub fn due(conn: &mut Conn, limit: i64) -> StoreResult<Vec<PendingEvent>> {
    let now = now_ms();
    let rows = with_backend!(conn, c => {
        let waiting: Vec<Option<String>> = events::table
            .filter(events::status.eq(STATUS_PENDING))
            .filter(events::next_attempt_at.gt(now))
            .filter(events::ordering_key.is_not_null())
            .select(events::ordering_key)
            .distinct()
            .load(c)?;
        let waiting: Vec<String> = waiting.into_iter().flatten().collect();
        events::table
            .filter(events::status.eq(STATUS_PENDING))
            .filter(events::next_attempt_at.is_null().or(events::next_attempt_at.le(now)))
            .filter(events::ordering_key.is_null().or(events::ordering_key.ne_all(waiting)))
            .order(events::id)
            .limit(limit)
            .select(PendingEvent::as_select())
            .load(c)?
    });
    Ok(rows)
}

pub fn mark_done(conn: &mut Conn, id: i64) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => {
        diesel::update(events::table.find(id).filter(events::status.eq(STATUS_PENDING)))
            .set((
                events::status.eq(STATUS_DONE),
                events::processed_at.eq(now),
                // The plaintext holds tickets and auth codes; a done event needs none.
                events::plaintext.eq(None::<String>),
                events::attempts.eq(events::attempts + 1),
                events::next_attempt_at.eq(None::<i64>),
            ))
            .execute(c)?;
    });
    Ok(())
}

/// Records a failed attempt: retried at `retry_at`, or given up (`None`).
pub fn mark_failed_attempt(conn: &mut Conn, id: i64, error: &str, retry_at: Option<i64>) -> StoreResult<()> {
    let now = now_ms();
    let (status, processed_at) = match retry_at {
        Some(_) => (STATUS_PENDING, None),
        None => (STATUS_FAILED, Some(now)),
    };
    with_backend!(conn, c => {
        diesel::update(events::table.find(id).filter(events::status.eq(STATUS_PENDING)))
            .set((
                events::status.eq(status),
                events::processed_at.eq(processed_at),
                events::attempts.eq(events::attempts + 1),
                events::next_attempt_at.eq(retry_at),
                events::last_error.eq(error),
            ))
            .execute(c)?;
    });
    Ok(())
}
