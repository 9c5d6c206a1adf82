//! Webhook subscriptions and the deliveries that did not succeed at once.
//!
//! Delivering an event writes nothing by itself: a subscription keeps a cursor (the
//! last event id handled) that moves once per batch, and only a delivery that failed,
//! or one a replay queued, has a row. The row goes when the delivery succeeds.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::dsl::max;
use diesel::expression::AsExpression;
use diesel::prelude::*;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use diesel::upsert::excluded;

use super::events::{EventFilter, EventRow, filter_events};
use super::schema::{events, webhook_deliveries, webhooks};
use super::sealing::Sealed;
use super::{Conn, StoreResult, WriteTransaction};
use crate::model::{EventId, SuiteId};
use crate::with_backend;

/// Where a delivery that has a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum DeliveryStatus {
    /// Queued by a replay, not attempted yet.
    Queued,
    /// Attempted and failed; retried at `next_attempt_at`.
    Failed,
    /// Given up: still failing 24 hours after the first attempt.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

impl<DB: Backend> ToSql<Text, DB> for DeliveryStatus
where
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        self.as_str().to_sql(out)
    }
}

impl<DB: Backend> FromSql<Text, DB> for DeliveryStatus
where
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        match String::from_sql(bytes)?.as_str() {
            "queued" => Ok(Self::Queued),
            "failed" => Ok(Self::Failed),
            "dead" => Ok(Self::Dead),
            other => Err(format!("unknown delivery status {other:?}").into()),
        }
    }
}

/// A subscription as stored; `secret` is read only by the deliverer and the create answer.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = webhooks)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    /// JSON array of kinds; empty for every kind.
    pub kinds: String,
    pub suite_id: Option<SuiteId>,
    pub enabled: bool,
    pub secret: Sealed,
    pub cursor: EventId,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewWebhook {
    pub id: String,
    pub url: String,
    pub kinds: String,
    pub suite_id: Option<SuiteId>,
    pub enabled: bool,
    pub secret: Sealed,
    pub now: i64,
}

/// Fields to change; `None` keeps a field (`suite_id: Some(None)` clears it).
#[derive(AsChangeset)]
#[diesel(table_name = webhooks)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub kinds: Option<String>,
    pub suite_id: Option<Option<SuiteId>>,
    pub enabled: Option<bool>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries, treat_none_as_default_value = false)]
pub struct DeliveryRow {
    pub webhook_id: String,
    pub event_id: EventId,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    /// `None` once dead.
    pub next_attempt_at: Option<i64>,
    pub first_attempt_at: i64,
    pub updated_at: i64,
}

/// Stores a subscription whose cursor is the committed-through event id
/// ([`super::events::committed_through`]): it delivers only what commits after it,
/// and no later commit can carry an id at or below it.
pub fn insert(conn: &mut Conn, new: &NewWebhook) -> StoreResult<WebhookRow> {
    let cursor = super::events::committed_through(conn)?;
    let row = with_backend!(conn, c => c.write_transaction(|c| {
        diesel::insert_into(webhooks::table)
            .values((
                webhooks::id.eq(&new.id),
                webhooks::url.eq(&new.url),
                webhooks::kinds.eq(&new.kinds),
                webhooks::suite_id.eq(&new.suite_id),
                webhooks::enabled.eq(new.enabled),
                webhooks::secret.eq(&new.secret),
                webhooks::cursor.eq(cursor),
                webhooks::created_at.eq(new.now),
                webhooks::updated_at.eq(new.now),
            ))
            .returning(WebhookRow::as_returning())
            .get_result::<WebhookRow>(c)
    })?);
    Ok(row)
}

pub fn list(conn: &mut Conn) -> StoreResult<Vec<WebhookRow>> {
    let rows = with_backend!(conn, c => webhooks::table
        .order((webhooks::created_at, webhooks::id))
        .select(WebhookRow::as_select())
        .load(c)?);
    Ok(rows)
}

pub fn find(conn: &mut Conn, id: &str) -> StoreResult<Option<WebhookRow>> {
    let row = with_backend!(conn, c => webhooks::table.find(id).select(WebhookRow::as_select()).first(c).optional()?);
    Ok(row)
}

pub fn update(conn: &mut Conn, id: &str, changes: &WebhookChanges) -> StoreResult<Option<WebhookRow>> {
    let row = with_backend!(conn, c => diesel::update(webhooks::table.find(id))
        .set(changes)
        .returning(WebhookRow::as_returning())
        .get_result(c)
        .optional()?);
    Ok(row)
}

/// Deletes the subscription and its delivery rows; false when there was none.
pub fn delete(conn: &mut Conn, id: &str) -> StoreResult<bool> {
    let deleted = with_backend!(conn, c => c.write_transaction(|c| {
        diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(id))).execute(c)?;
        diesel::delete(webhooks::table.find(id)).execute(c)
    })?);
    Ok(deleted == 1)
}

/// The newest committed event id, [`EventId::BEFORE_ALL`] when there is none.
pub fn newest_event_id(conn: &mut Conn) -> StoreResult<EventId> {
    let newest: Option<EventId> = with_backend!(conn, c => events::table.select(max(events::id)).first(c)?);
    Ok(newest.unwrap_or(EventId::BEFORE_ALL))
}

/// Ends a batch: records its failed deliveries and moves the cursor forward (never
/// back), in one transaction. Nothing is written for a subscription deleted meanwhile.
/// A failure of an event that already has a row (queued by a replay) keeps that row.
pub fn advance(conn: &mut Conn, webhook_id: &str, cursor: EventId, failed: &[DeliveryRow]) -> StoreResult<()> {
    with_backend!(conn, c => c.write_transaction(|c| {
        let exists = webhooks::table.find(webhook_id).select(webhooks::id).first::<String>(c).optional()?.is_some();
        if !exists {
            return Ok::<_, diesel::result::Error>(());
        }
        for chunk in failed.chunks(500) {
            diesel::insert_into(webhook_deliveries::table).values(chunk).on_conflict_do_nothing().execute(c)?;
        }
        diesel::update(webhooks::table.find(webhook_id).filter(webhooks::cursor.lt(cursor)))
            .set(webhooks::cursor.eq(cursor))
            .execute(c)?;
        Ok(())
    })?);
    Ok(())
}

/// Deliveries due at `now`, soonest first, with their events (`None`: the event is gone).
pub fn due(
    conn: &mut Conn,
    webhook_id: &str,
    now: i64,
    limit: i64,
) -> StoreResult<Vec<(DeliveryRow, Option<EventRow>)>> {
    let (rows, mut found) = with_backend!(conn, c => {
        let rows: Vec<DeliveryRow> = webhook_deliveries::table
            .filter(webhook_deliveries::webhook_id.eq(webhook_id))
            .filter(webhook_deliveries::next_attempt_at.le(now))
            .order((webhook_deliveries::next_attempt_at, webhook_deliveries::event_id))
            .limit(limit)
            .select(DeliveryRow::as_select())
            .load(c)?;
        let ids: Vec<EventId> = rows.iter().map(|row| row.event_id).collect();
        let found: Vec<EventRow> =
            events::table.filter(events::id.eq_any(&ids)).select(EventRow::as_select()).load(c)?;
        (rows, found)
    });
    Ok(rows
        .into_iter()
        .map(|row| {
            let event = found.iter().position(|event| event.id == row.event_id).map(|at| found.swap_remove(at));
            (row, event)
        })
        .collect())
}

/// What became of a retried delivery.
pub enum RetryOutcome {
    /// Delivered (or its event is gone): the row goes.
    Done,
    /// Failed again: `next_attempt_at` `None` makes it dead.
    Failed { last_status: Option<i32>, last_error: String, next_attempt_at: Option<i64> },
}

/// Records the outcomes of one retry step in one transaction. A row a replay re-queued
/// meanwhile (its attempts reset) is left as the replay put it.
pub fn record_retries(
    conn: &mut Conn,
    webhook_id: &str,
    outcomes: &[(DeliveryRow, RetryOutcome)],
    now: i64,
) -> StoreResult<()> {
    with_backend!(conn, c => c.write_transaction(|c| {
        for (row, outcome) in outcomes {
            let target = webhook_deliveries::table
                .find((webhook_id, row.event_id))
                .filter(webhook_deliveries::attempts.eq(row.attempts))
                .filter(webhook_deliveries::first_attempt_at.eq(row.first_attempt_at));
            match outcome {
                RetryOutcome::Done => {
                    diesel::delete(target).execute(c)?;
                }
                RetryOutcome::Failed { last_status, last_error, next_attempt_at } => {
                    let status = if next_attempt_at.is_some() { DeliveryStatus::Failed } else { DeliveryStatus::Dead };
                    diesel::update(target)
                        .set((
                            webhook_deliveries::status.eq(status),
                            webhook_deliveries::attempts.eq(row.attempts + 1),
                            webhook_deliveries::last_status.eq(last_status),
                            webhook_deliveries::last_error.eq(last_error),
                            webhook_deliveries::next_attempt_at.eq(next_attempt_at),
                            webhook_deliveries::updated_at.eq(now),
                        ))
                        .execute(c)?;
                }
            }
        }
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

/// A subscription's delivery rows in event order after `after`.
pub fn deliveries(conn: &mut Conn, webhook_id: &str, after: EventId, limit: i64) -> StoreResult<Vec<DeliveryRow>> {
    let rows = with_backend!(conn, c => webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .filter(webhook_deliveries::event_id.gt(after))
        .order(webhook_deliveries::event_id)
        .limit(limit)
        .select(DeliveryRow::as_select())
        .load(c)?);
    Ok(rows)
}

/// Which events a replay re-sends.
pub enum ReplaySelection<'a> {
    /// `after < id <= until`.
    Range {
        after: EventId,
        until: EventId,
    },
    Ids(&'a [EventId]),
}

/// Queues the selected events that exist and match `filter` as due deliveries (a row
/// already there is re-queued with a fresh 24 hours). `None`, and nothing written,
/// when more than `max` events would be queued.
pub fn queue_replay(
    conn: &mut Conn,
    webhook_id: &str,
    selection: &ReplaySelection<'_>,
    filter: &EventFilter,
    max: usize,
    now: i64,
) -> StoreResult<Option<usize>> {
    let limit = i64::try_from(max).unwrap_or(i64::MAX).saturating_add(1);
    let queued = with_backend!(conn, c => c.write_transaction(|c| {
        let mut query = events::table.select(events::id).into_boxed();
        query = match selection {
            ReplaySelection::Range { after, until } => query.filter(events::id.gt(*after)).filter(events::id.le(*until)),
            ReplaySelection::Ids(ids) => query.filter(events::id.eq_any(*ids)),
        };
        let ids: Vec<EventId> = filter_events!(query, filter).order(events::id).limit(limit).load(c)?;
        if ids.len() > max {
            return Ok::<_, diesel::result::Error>(None);
        }
        let rows: Vec<DeliveryRow> = ids
            .iter()
            .map(|&event_id| DeliveryRow {
                webhook_id: webhook_id.to_owned(),
                event_id,
                status: DeliveryStatus::Queued,
                attempts: 0,
                last_status: None,
                last_error: None,
                next_attempt_at: Some(now),
                first_attempt_at: now,
                updated_at: now,
            })
            .collect();
        for chunk in rows.chunks(1000) {
            diesel::insert_into(webhook_deliveries::table)
                .values(chunk)
                .on_conflict((webhook_deliveries::webhook_id, webhook_deliveries::event_id))
                .do_update()
                .set((
                    webhook_deliveries::status.eq(excluded(webhook_deliveries::status)),
                    webhook_deliveries::attempts.eq(0),
                    webhook_deliveries::next_attempt_at.eq(now),
                    webhook_deliveries::first_attempt_at.eq(now),
                    webhook_deliveries::updated_at.eq(now),
                ))
                .execute(c)?;
        }
        Ok(Some(ids.len()))
    })?);
    Ok(queued)
}
