//! The feed: events as the provider's services see them, in id order (ids grow in
//! commit order). One typed shape, shared by `GET /api/v1/events` and webhooks.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::model::{CorpId, EventId, EventStatus, ProviderCorpId, SuiteId};
use crate::store::audit::NewAuditEntry;
pub use crate::store::events::EventFilter;
use crate::store::events::{self, EventRow, Replayed};
use crate::store::{Db, StoreError};

/// The longest a long poll may wait.
pub const MAX_WAIT_SECONDS: u64 = 60;
/// A long poll also looks this often, for events another instance committed.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
const MAX_KIND_LEN: usize = 64;

/// One event of the feed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct FeedEvent {
    pub id: EventId,
    pub provider_corpid: ProviderCorpId,
    pub suite_id: Option<SuiteId>,
    pub corpid: Option<CorpId>,
    pub kind: String,
    /// RFC 3339, UTC.
    pub received_at: String,
    /// The message's fields (secrets such as tickets and auth codes redacted), or a
    /// derived event's own fields.
    #[schema(value_type = Object)]
    pub fields: Value,
    pub status: EventStatus,
    pub attempts: i32,
    pub processed_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
}

impl From<EventRow> for FeedEvent {
    fn from(row: EventRow) -> Self {
        FeedEvent {
            id: row.id,
            provider_corpid: row.provider_corpid,
            suite_id: row.suite_id,
            corpid: row.corpid,
            kind: row.kind,
            received_at: rfc3339(row.received_at),
            fields: serde_json::from_str(&row.fields).unwrap_or_else(|_| Value::Object(Default::default())),
            status: row.status,
            attempts: row.attempts,
            processed_at: row.processed_at.map(rfc3339),
            next_attempt_at: row.next_attempt_at.map(rfc3339),
            last_error: row.last_error,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    pub events: Vec<FeedEvent>,
    /// Pass as `after` to read on; the last event's id, or `after` when empty.
    pub next_after: EventId,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("kind must be 1 to 64 letters, digits or '_'")]
pub struct InvalidKind;

/// A kind filter names a kind: letters, digits and `_`, at most 64 of them. A
/// well-formed kind never seen yet is valid (it may arrive later).
pub fn check_kind(kind: &str) -> Result<(), InvalidKind> {
    let well_formed =
        !kind.is_empty() && kind.len() <= MAX_KIND_LEN && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if well_formed { Ok(()) } else { Err(InvalidKind) }
}

/// One page after `after`; with `wait`, a long poll that answers as soon as a
/// matching event is committed, or with an empty page when `wait` ends.
pub async fn page(
    db: &Db,
    after: EventId,
    limit: i64,
    filter: &EventFilter,
    wait: Duration,
) -> Result<FeedPage, StoreError> {
    let deadline = tokio::time::Instant::now() + wait.min(Duration::from_secs(MAX_WAIT_SECONDS));
    let mut appended = db.watch_appended();
    let mut first_look = true;
    loop {
        // Marked seen before reading, so a commit during the read wakes the next wait.
        appended.borrow_and_update();
        let query = filter.clone();
        let through = db.committed_through().await?;
        let mut rows = db.run(move |conn| events::page(conn, after, through, limit, &query)).await?;
        // A short page reached the cached mark: the first look at the head sees every
        // commit made before the request, on any instance. Woken looks take the cache,
        // so a long poll does not read the mark on every commit of a burst.
        if first_look && rows.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
            let now = db.committed_through_now().await?;
            if now > through {
                let query = filter.clone();
                rows = db.run(move |conn| events::page(conn, after, now, limit, &query)).await?;
            }
        }
        first_look = false;
        if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
            let next_after = rows.last().map_or(after, |row| row.id);
            return Ok(FeedPage { events: rows.into_iter().map(FeedEvent::from).collect(), next_after });
        }
        let next_look = (tokio::time::Instant::now() + POLL_INTERVAL).min(deadline);
        tokio::select! {
            _ = appended.changed() => {}
            _ = tokio::time::sleep_until(next_look) => {}
        }
    }
}

/// One event as the feed shows it.
pub async fn event(db: &Db, id: EventId) -> Result<Option<FeedEvent>, StoreError> {
    Ok(db.run(move |conn| events::find(conn, id)).await?.map(FeedEvent::from))
}

/// Why a failed event was not replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("event not found")]
    NotFound,
    #[error("event {id} is {status}, not failed: only a failed event can be replayed")]
    NotFailed { id: EventId, status: EventStatus },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Gives failed event `id` back to the worker at once, audited as `event.replay` on
/// behalf of `actor`; an event that is not failed is left as it is.
pub async fn replay_failed(db: &Db, id: EventId, actor: &str) -> Result<(), ReplayError> {
    let entry = NewAuditEntry::new(actor, "event.replay", &id.to_string(), serde_json::json!({}));
    match db.run(move |conn| events::replay_failed(conn, id, &entry)).await? {
        Replayed::Queued => {
            db.notify_appended();
            Ok(())
        }
        Replayed::NotFailed(status) => Err(ReplayError::NotFailed { id, status }),
        Replayed::NotFound => Err(ReplayError::NotFound),
    }
}

/// RFC 3339 in UTC from the stored Unix milliseconds.
pub fn rfc3339(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_short_words() {
        for good in ["create_auth", "change_contact", "a", "x".repeat(64).as_str(), "Kind9"] {
            assert_eq!(check_kind(good), Ok(()), "{good}");
        }
        for bad in ["", "create-auth", "a b", "x".repeat(65).as_str(), "名字", "a\n"] {
            assert_eq!(check_kind(bad), Err(InvalidKind), "{bad:?}");
        }
    }
}
