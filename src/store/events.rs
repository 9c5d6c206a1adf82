//! The event log: every verified callback, stored once, then worked off in id order.

use std::collections::HashMap;

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::schema::events;
use super::sealing::Sealed;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::model::{CorpId, EventId, EventStatus, ProviderCorpId, SuiteId};
use crate::with_backend;

/// The append lock of PostgreSQL. Every event-inserting transaction holds it shared
/// until it commits, so instances append side by side; [`committed_through`] takes it
/// exclusively for a moment to wait out the appends in flight, and readers paging by
/// id stop at the id it returns, so none passes an id that commits later. SQLite's
/// single writer commits ids in order by itself.
pub const EVENT_APPEND_LOCK_KEY: i64 = 0x7765_636f_6d02;

/// `None` is inserted as NULL, not as the column default, so that every insert has
/// one SQL text: one cached statement on SQLite.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub struct NewEvent {
    pub provider_corpid: ProviderCorpId,
    pub suite_id: Option<SuiteId>,
    pub corpid: Option<CorpId>,
    pub kind: String,
    pub dedupe_key: String,
    /// Events with the same key are applied in id order; `None` for order-free kinds.
    pub ordering_key: Option<String>,
    pub plaintext: Option<Sealed>,
    /// JSON object, already redacted.
    pub fields: String,
    pub received_at: i64,
    pub status: EventStatus,
    pub processed_at: Option<i64>,
    /// The callback's request id, for the effect's spans.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub id: EventId,
    pub provider_corpid: ProviderCorpId,
    pub suite_id: Option<SuiteId>,
    pub corpid: Option<CorpId>,
    pub kind: String,
    pub ordering_key: Option<String>,
    pub fields: String,
    pub received_at: i64,
    pub status: EventStatus,
    pub processed_at: Option<i64>,
    pub attempts: i32,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
}

/// An event as the worker needs it: with the plaintext to re-parse.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = events)]
pub struct PendingEvent {
    pub id: EventId,
    pub provider_corpid: ProviderCorpId,
    pub suite_id: Option<SuiteId>,
    pub corpid: Option<CorpId>,
    pub kind: String,
    pub ordering_key: Option<String>,
    pub plaintext: Option<Sealed>,
    pub received_at: i64,
    pub attempts: i32,
    pub request_id: Option<String>,
}

/// SHA-256 over length-prefixed parts, so no two different lists of parts collide by
/// moving bytes from one part to the next.
pub fn hash_parts(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

impl NewEvent {
    /// An event the service itself appends to the feed (`corp_authorized`,
    /// `identity_linked`, …), written in the transaction of the change it reports:
    /// already done, no plaintext. It is stored once per `identity` (what makes this
    /// occurrence unique: the auth code's hash, the event that caused it …), so a
    /// retried effect or a second install path appends nothing.
    pub fn derived(
        provider_corpid: &ProviderCorpId,
        suite_id: &SuiteId,
        corpid: Option<&CorpId>,
        kind: &str,
        identity: &[&str],
        fields: serde_json::Value,
    ) -> Self {
        Self::derived_of(provider_corpid, Some(suite_id), corpid, kind, identity, fields)
    }

    /// A derived event of the provider itself (from its system-event URL): no suite.
    pub fn provider_derived(
        provider_corpid: &ProviderCorpId,
        corpid: Option<&CorpId>,
        kind: &str,
        identity: &[&str],
        fields: serde_json::Value,
    ) -> Self {
        Self::derived_of(provider_corpid, None, corpid, kind, identity, fields)
    }

    fn derived_of(
        provider_corpid: &ProviderCorpId,
        suite_id: Option<&SuiteId>,
        corpid: Option<&CorpId>,
        kind: &str,
        identity: &[&str],
        fields: serde_json::Value,
    ) -> Self {
        let now = now_ms();
        let mut parts = vec![
            kind,
            provider_corpid.as_str(),
            suite_id.map_or("", SuiteId::as_str),
            corpid.map_or("", CorpId::as_str),
        ];
        parts.extend_from_slice(identity);
        NewEvent {
            provider_corpid: provider_corpid.clone(),
            suite_id: suite_id.cloned(),
            corpid: corpid.cloned(),
            kind: kind.to_owned(),
            dedupe_key: hex::encode(hash_parts(&parts)),
            ordering_key: None,
            plaintext: None,
            fields: fields.to_string(),
            received_at: now,
            status: EventStatus::Done,
            processed_at: Some(now),
            request_id: None,
        }
    }
}

/// Inserts events, inside the caller's transaction if there is one, each once per
/// dedupe key.
/// Returns, per event, its id when it was new (`None`: an identical event was
/// stored before, or earlier in the batch).
pub trait InsertEvents {
    fn insert_events(&mut self, batch: &[NewEvent]) -> QueryResult<Vec<Option<EventId>>>;
}

/// PostgreSQL: one statement per batch, one round trip. The append lock is taken
/// shared inside the statement, before it draws ids; the columns go as arrays, so the
/// text is the same for every batch and the server parses and plans it once per
/// connection ([`PgAppend`]) instead of once per batch.
impl InsertEvents for diesel::PgConnection {
    fn insert_events(&mut self, batch: &[NewEvent]) -> QueryResult<Vec<Option<EventId>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let inserted: Vec<Inserted> = PgAppend::of(batch).load(self)?;
        let mut inserted: HashMap<String, EventId> = inserted.into_iter().map(|row| (row.dedupe_key, row.id)).collect();
        Ok(batch.iter().map(|event| inserted.remove(&event.dedupe_key)).collect())
    }
}

/// The columns a batch fills, in the order [`PgAppend`] binds them.
const APPENDED_COLUMNS: &str = "provider_corpid, suite_id, corpid, kind, dedupe_key, ordering_key, plaintext, fields, received_at, status, processed_at, request_id";

/// The batch's rows in the order given (their ids follow it), each skipped when its
/// key is stored already or earlier in the batch. Outside a transaction it commits by
/// itself. The lock is a materialized CTE joined to the rows, so it is held before
/// the first id is drawn.
///
/// A query type of its own rather than `sql_query`, which diesel never keeps as a
/// prepared statement: parsing and planning this statement for every batch was about
/// half of PostgreSQL's CPU per commit (BENCHMARKS.md).
struct PgAppend<'a> {
    provider_corpid: Vec<&'a str>,
    suite_id: Vec<Option<&'a str>>,
    corpid: Vec<Option<&'a str>>,
    kind: Vec<&'a str>,
    dedupe_key: Vec<&'a str>,
    ordering_key: Vec<Option<&'a str>>,
    plaintext: Vec<Option<&'a str>>,
    fields: Vec<&'a str>,
    received_at: Vec<i64>,
    status: Vec<&'a str>,
    processed_at: Vec<Option<i64>>,
    request_id: Vec<Option<&'a str>>,
}

impl<'a> PgAppend<'a> {
    fn of(batch: &'a [NewEvent]) -> Self {
        fn column<'a, T>(batch: &'a [NewEvent], value: impl Fn(&'a NewEvent) -> T) -> Vec<T> {
            batch.iter().map(value).collect()
        }
        PgAppend {
            provider_corpid: column(batch, |e| e.provider_corpid.as_str()),
            suite_id: column(batch, |e| e.suite_id.as_ref().map(SuiteId::as_str)),
            corpid: column(batch, |e| e.corpid.as_ref().map(CorpId::as_str)),
            kind: column(batch, |e| e.kind.as_str()),
            dedupe_key: column(batch, |e| e.dedupe_key.as_str()),
            ordering_key: column(batch, |e| e.ordering_key.as_deref()),
            plaintext: column(batch, |e| e.plaintext.as_ref().map(Sealed::as_str)),
            fields: column(batch, |e| e.fields.as_str()),
            received_at: column(batch, |e| e.received_at),
            status: column(batch, |e| e.status.as_str()),
            processed_at: column(batch, |e| e.processed_at),
            request_id: column(batch, |e| e.request_id.as_deref()),
        }
    }
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for PgAppend<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Nullable, Text};

        out.push_sql(&PG_APPEND_HEAD);
        out.push_bind_param::<Array<Text>, _>(&self.provider_corpid)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.suite_id)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.corpid)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.kind)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.dedupe_key)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.ordering_key)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.plaintext)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.fields)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.received_at)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Text>, _>(&self.status)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.processed_at)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.request_id)?;
        out.push_sql(&PG_APPEND_TAIL);
        Ok(())
    }
}

// The statement around the bound arrays; built once, as walk_ast runs for every batch.
static PG_APPEND_HEAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH append_lock AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared({EVENT_APPEND_LOCK_KEY})) \
         INSERT INTO events ({APPENDED_COLUMNS}) SELECT {APPENDED_COLUMNS} FROM append_lock, unnest("
    )
});
static PG_APPEND_TAIL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "::text[]) WITH ORDINALITY AS batch({APPENDED_COLUMNS}, position) ORDER BY position \
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key, id"
    )
});

/// One type, one SQL text: diesel's statement cache keys the prepared statement by it.
impl diesel::query_builder::QueryId for PgAppend<'_> {
    type QueryId = PgAppend<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for PgAppend<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<diesel::PgConnection> for PgAppend<'_> {}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = diesel::sql_types::Text)]
    dedupe_key: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: EventId,
}

/// SQLite: events has no unique key; each event claims its key in `event_keys`
/// first ([`super::event_keys`]). Callbacks take the event writer's path instead,
/// which defers that write.
impl InsertEvents for diesel::SqliteConnection {
    fn insert_events(&mut self, batch: &[NewEvent]) -> QueryResult<Vec<Option<EventId>>> {
        super::event_keys::insert_claiming_keys(self, batch)
    }
}

/// Inserts a batch in one transaction: one fsync for all of them. On PostgreSQL the
/// insert is one statement, which is its own transaction: no `BEGIN` and `COMMIT`
/// round trips.
pub fn append(conn: &mut Conn, batch: &[NewEvent]) -> StoreResult<Vec<Option<EventId>>> {
    Ok(match conn {
        Conn::Sqlite(c) => c.write_transaction(|c| c.insert_events(batch))?,
        Conn::Pg(c) => c.insert_events(batch)?,
    })
}

/// Events whose effects are still to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub count: i64,
    pub oldest_received_at: Option<i64>,
}

pub fn backlog(conn: &mut Conn) -> StoreResult<Backlog> {
    let (count, oldest_received_at) = with_backend!(conn, c => events::table
        .filter(events::status.eq(EventStatus::Pending))
        .select((diesel::dsl::count_star(), diesel::dsl::min(events::received_at)))
        .first::<(i64, Option<i64>)>(c)?);
    Ok(Backlog { count, oldest_received_at })
}

/// Which events a reader wants; empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub suite_id: Option<SuiteId>,
    /// Only events of one of these suites (an API key restricted to suites): events
    /// without a suite are left out too. `None`: any suite.
    pub suites: Option<Vec<SuiteId>>,
    pub corpid: Option<CorpId>,
    pub kinds: Vec<String>,
}

/// Narrows a boxed query of `events` to what an [`EventFilter`] wants: one
/// definition for the feed and for webhook replays, expanded for each backend.
macro_rules! filter_events {
    ($query:expr, $filter:expr) => {{
        let filter: &EventFilter = $filter;
        let mut query = $query;
        if let Some(suite_id) = &filter.suite_id {
            query = query.filter(events::suite_id.eq(suite_id));
        }
        if let Some(suites) = &filter.suites {
            query = query.filter(events::suite_id.eq_any(suites));
        }
        if let Some(corpid) = &filter.corpid {
            query = query.filter(events::corpid.eq(corpid));
        }
        if !filter.kinds.is_empty() {
            query = query.filter(events::kind.eq_any(&filter.kinds));
        }
        query
    }};
}
pub(super) use filter_events;

/// The newest id through which every event has committed ([`EventId::BEFORE_ALL`] when
/// there is none): what a reader paging by id may read up to. On PostgreSQL it waits
/// for the appends in flight (the append lock taken exclusively, one statement long)
/// and reads the newest id behind them; appends that start later draw higher ids.
/// Readers get it through [`super::Db::committed_through`], which caches it.
pub fn committed_through(conn: &mut Conn) -> StoreResult<EventId> {
    let newest: Option<EventId> = match conn {
        Conn::Sqlite(c) => events::table.select(diesel::dsl::max(events::id)).first(&mut **c)?,
        Conn::Pg(c) => c.transaction(|c| {
            diesel::sql_query(format!("SELECT pg_advisory_xact_lock({EVENT_APPEND_LOCK_KEY})")).execute(c)?;
            events::table.select(diesel::dsl::max(events::id)).first(c)
        })?,
    };
    Ok(newest.unwrap_or(EventId::BEFORE_ALL))
}

/// One page of the feed, in id order after `after` and through `through` (from
/// [`committed_through`]), filtered.
pub fn page(
    conn: &mut Conn,
    after: EventId,
    through: EventId,
    limit: i64,
    filter: &EventFilter,
) -> StoreResult<Vec<EventRow>> {
    let rows = with_backend!(conn, c => {
        let query = events::table.filter(events::id.gt(after)).filter(events::id.le(through)).into_boxed();
        let query = filter_events!(query, filter);
        query.order(events::id).limit(limit).select(EventRow::as_select()).load(c)?
    });
    Ok(rows)
}

/// Claims up to `limit` events through `through` (from [`committed_through`], so an
/// earlier event of the same key cannot still be in flight) due for their effects for
/// `holder` until `ttl_ms` from now, oldest first. Due: pending, its retry time reached, unclaimed (or the
/// claim lapsed), and the head of its ordering key: no earlier event of the same
/// key still pending, so one corp's events apply in order while a corp whose event
/// waits for a retry holds back only itself. PostgreSQL skips rows another
/// instance is claiming at that moment (`FOR UPDATE SKIP LOCKED`); the outer
/// condition re-checks the claim, so no event is ever claimed twice.
pub fn claim_due(
    conn: &mut Conn,
    holder: &str,
    through: EventId,
    limit: i64,
    ttl_ms: i64,
) -> StoreResult<Vec<PendingEvent>> {
    let now = now_ms();
    let candidates = "SELECT e.id FROM events e \
         WHERE e.status = 'pending' AND e.id <= {through} \
           AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= {now}) \
           AND (e.claimed_until IS NULL OR e.claimed_until < {now}) \
           AND (e.ordering_key IS NULL OR NOT EXISTS (\
                SELECT 1 FROM events p WHERE p.status = 'pending' \
                  AND p.ordering_key = e.ordering_key AND p.id < e.id)) \
         ORDER BY e.id LIMIT {limit}";
    let update = "UPDATE events SET claimed_by = {holder}, claimed_until = {until} \
         WHERE id IN ({candidates}) AND (claimed_until IS NULL OR claimed_until < {now}) \
         RETURNING id, provider_corpid, suite_id, corpid, kind, ordering_key, plaintext, received_at, attempts, request_id";
    let sql = |holder: &str, until: &str, now: &str, limit: &str, lock: &str| {
        let candidates = candidates
            .replace("{now}", now)
            .replace("{limit}", limit)
            // Our own number, not input: written into the text, the binds keep their places.
            .replace("{through}", &through.to_string())
            + lock;
        update
            .replace("{candidates}", &candidates)
            .replace("{holder}", holder)
            .replace("{until}", until)
            .replace("{now}", now)
    };
    use diesel::sql_types::{BigInt, Text};
    let mut rows: Vec<PendingEvent> = match conn {
        Conn::Sqlite(c) => diesel::sql_query(sql("?", "?", "?", "?", ""))
            .bind::<Text, _>(holder)
            .bind::<BigInt, _>(now + ttl_ms)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(limit)
            .bind::<BigInt, _>(now)
            .load(&mut **c)?,
        Conn::Pg(c) => diesel::sql_query(sql("$1", "$2", "$3", "$4", " FOR UPDATE SKIP LOCKED"))
            .bind::<Text, _>(holder)
            .bind::<BigInt, _>(now + ttl_ms)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(limit)
            .load(&mut **c)?,
    };
    rows.sort_by_key(|event| event.id);
    Ok(rows)
}

/// Extends `holder`'s claims on `ids` while their effects run.
pub fn renew_claims(conn: &mut Conn, holder: &str, ids: &[EventId], ttl_ms: i64) -> StoreResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let until = now_ms() + ttl_ms;
    let renewed = with_backend!(conn, c => diesel::update(
        events::table.filter(events::id.eq_any(ids)).filter(events::claimed_by.eq(holder)),
    )
    .set(events::claimed_until.eq(until))
    .execute(c)?);
    Ok(renewed)
}

/// Gives up every claim of `holder` (shutdown), so another instance takes them at once.
pub fn release_claims(conn: &mut Conn, holder: &str) -> StoreResult<usize> {
    let released = with_backend!(conn, c => diesel::update(events::table.filter(events::claimed_by.eq(holder)))
        .set((events::claimed_by.eq(None::<String>), events::claimed_until.eq(None::<i64>)))
        .execute(c)?);
    Ok(released)
}

/// The effect of `id` is applied. `corpid` fills in the corp a create_auth named only
/// through its exchange.
pub fn mark_done(conn: &mut Conn, id: EventId, corpid: Option<&CorpId>) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => {
        let event = events::table.find(id).filter(events::status.eq(EventStatus::Pending));
        let done = (
            events::status.eq(EventStatus::Done),
            events::processed_at.eq(now),
            // The plaintext holds tickets and auth codes; a done event needs none.
            events::plaintext.eq(None::<Sealed>),
            events::attempts.eq(events::attempts + 1),
            events::next_attempt_at.eq(None::<i64>),
            events::claimed_by.eq(None::<String>),
            events::claimed_until.eq(None::<i64>),
        );
        match corpid {
            Some(corpid) => diesel::update(event).set((done, events::corpid.eq(corpid))).execute(c)?,
            None => diesel::update(event).set(done).execute(c)?,
        };
    });
    Ok(())
}

/// Records a failed attempt: retried at `retry_at`, or given up (`None`).
pub fn mark_failed_attempt(conn: &mut Conn, id: EventId, error: &str, retry_at: Option<i64>) -> StoreResult<()> {
    let now = now_ms();
    let (status, processed_at) = match retry_at {
        Some(_) => (EventStatus::Pending, None),
        None => (EventStatus::Failed, Some(now)),
    };
    with_backend!(conn, c => {
        diesel::update(events::table.find(id).filter(events::status.eq(EventStatus::Pending)))
            .set((
                events::status.eq(status),
                events::processed_at.eq(processed_at),
                events::attempts.eq(events::attempts + 1),
                events::next_attempt_at.eq(retry_at),
                events::last_error.eq(error),
                events::claimed_by.eq(None::<String>),
                events::claimed_until.eq(None::<i64>),
            ))
            .execute(c)?;
    });
    Ok(())
}

/// Deletes up to `batch` done events received before `cutoff` (Unix ms), oldest
/// first, with their dedupe keys; pending and failed events are kept whatever their age.
pub fn prune_done(conn: &mut Conn, cutoff: i64, batch: i64) -> StoreResult<usize> {
    macro_rules! oldest_done {
        () => {
            events::table
                .filter(events::status.eq(EventStatus::Done))
                .filter(events::received_at.lt(cutoff))
                .order(events::id)
                .limit(batch)
        };
    }
    let deleted = match conn {
        Conn::Sqlite(c) => c.write_transaction(|c| {
            let (ids, keys): (Vec<i64>, Vec<String>) =
                oldest_done!().select((events::id, events::dedupe_key)).load::<(i64, String)>(c)?.into_iter().unzip();
            super::event_keys::forget(c, &keys)?;
            diesel::delete(events::table.filter(events::id.eq_any(ids))).execute(c)
        })?,
        Conn::Pg(c) => {
            let old: Vec<i64> = oldest_done!().select(events::id).load(&mut **c)?;
            diesel::delete(events::table.filter(events::id.eq_any(old))).execute(&mut **c)?
        }
    };
    Ok(deleted)
}

pub fn find(conn: &mut Conn, id: EventId) -> StoreResult<Option<EventRow>> {
    let row = with_backend!(conn, c => events::table.find(id).select(EventRow::as_select()).first(c).optional()?);
    Ok(row)
}

/// What a replay of a failed event found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Pending again, due now, with its audit entry.
    Queued,
    /// The event is not failed (pending or done): nothing changed.
    NotFailed(EventStatus),
    NotFound,
}

/// Gives a failed event back to the worker: pending, due now, its attempts counted
/// afresh (the last error kept until the next attempt), with `entry` audited in the
/// same transaction. Only a failed event is replayed.
pub fn replay_failed(conn: &mut Conn, id: EventId, entry: &super::audit::NewAuditEntry) -> StoreResult<Replayed> {
    let now = now_ms();
    let outcome = with_backend!(conn, c => c.write_transaction(|c| {
        let updated = diesel::update(events::table.find(id).filter(events::status.eq(EventStatus::Failed)))
            .set((
                events::status.eq(EventStatus::Pending),
                events::processed_at.eq(None::<i64>),
                events::attempts.eq(0),
                events::next_attempt_at.eq(now),
                events::claimed_by.eq(None::<String>),
                events::claimed_until.eq(None::<i64>),
            ))
            .execute(c)?;
        if updated == 1 {
            super::audit::append_to(c, entry)?;
            return Ok::<_, diesel::result::Error>(Replayed::Queued);
        }
        let status: Option<EventStatus> = events::table.find(id).select(events::status).first(c).optional()?;
        Ok(status.map_or(Replayed::NotFound, Replayed::NotFailed))
    })?);
    Ok(outcome)
}
