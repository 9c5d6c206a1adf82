//! Webhooks: the feed pushed to subscribed URLs, signed per Standard Webhooks.
//!
//! A subscription starts after the newest event committed when it was created and
//! sees every later event that matches its kinds and suite, at least once, in no
//! guaranteed order (see [`deliverer`]). Its secret is made here, shown once in the
//! answer to its creation and never again. A caller restricted to suites reaches only
//! subscriptions of one of its suites. Everything here validates before it writes: a
//! refused request changes nothing.

mod deliverer;
mod schedule;
mod signing;

pub use deliverer::Deliverer;
pub use schedule::RetrySchedule;

use serde::Serialize;
use url::Url;
use utoipa::ToSchema;

use crate::access::{Denied, Suites};
use crate::feed::{self, EventFilter, rfc3339};
use crate::model::{EventId, SuiteId};
use crate::store::webhooks::{self as rows, DeliveryRow, NewWebhook, ReplaySelection, WebhookChanges, WebhookRow};
use crate::store::{Db, StoreError, now_ms};

/// The most events one replay may queue.
pub const MAX_REPLAY: usize = 10_000;
const MAX_URL_LEN: usize = 2048;
const MAX_KINDS: usize = 64;
const MAX_SUITE_ID_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Refused input; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    #[error("webhook not found")]
    NotFound,
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> WebhookError {
    WebhookError::Invalid(message.into())
}

/// A subscription as shown: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    /// Empty: every kind.
    pub kinds: Vec<String>,
    pub suite_id: Option<SuiteId>,
    pub enabled: bool,
    /// The last event id handled: delivered, or recorded as a failed delivery.
    pub last_event_id: EventId,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&WebhookRow> for Subscription {
    fn from(row: &WebhookRow) -> Self {
        Subscription {
            id: row.id.clone(),
            url: row.url.clone(),
            kinds: parse_kinds(&row.kinds),
            suite_id: row.suite_id.clone(),
            enabled: row.enabled,
            last_event_id: row.cursor,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

/// The answer to a creation: the subscription and, this once, its secret.
#[derive(Serialize, ToSchema)]
pub struct Created {
    #[serde(flatten)]
    pub subscription: Subscription,
    pub secret: String,
}

/// What a new subscription asks for, unchecked.
pub struct NewSubscription {
    pub url: String,
    pub kinds: Vec<String>,
    pub suite_id: Option<SuiteId>,
    pub enabled: bool,
}

/// Changes to a subscription, unchecked; `None` keeps a field, `suite_id: Some(None)`
/// clears the suite filter.
#[derive(Default)]
pub struct Changes {
    pub url: Option<String>,
    pub kinds: Option<Vec<String>>,
    pub suite_id: Option<Option<SuiteId>>,
    pub enabled: Option<bool>,
}

/// A delivery that did not succeed at once, or that a replay queued.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub event_id: EventId,
    /// `queued`, `failed` or `dead`.
    pub status: &'static str,
    pub attempts: i32,
    /// The HTTP status of the last attempt; `None` when there was no answer.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub first_attempt_at: String,
    pub updated_at: String,
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Self {
        Delivery {
            event_id: row.event_id,
            status: row.status.as_str(),
            attempts: row.attempts,
            last_status: row.last_status,
            last_error: row.last_error,
            next_attempt_at: row.next_attempt_at.map(rfc3339),
            first_attempt_at: rfc3339(row.first_attempt_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

/// Which events a replay re-sends; only those matching the subscription's filters are.
pub enum Replay {
    /// Events with `after < id <= until`.
    Range {
        after: EventId,
        until: EventId,
    },
    Events(Vec<EventId>),
}

/// An http or https URL with a host.
pub fn check_url(url: &str) -> Result<Url, WebhookError> {
    if url.len() > MAX_URL_LEN {
        return Err(invalid(format!("url must be at most {MAX_URL_LEN} characters")));
    }
    let parsed = Url::parse(url).map_err(|e| invalid(format!("url is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url must be an http:// or https:// URL with a host"));
    }
    Ok(parsed)
}

fn check_kinds(mut kinds: Vec<String>) -> Result<Vec<String>, WebhookError> {
    for kind in &kinds {
        feed::check_kind(kind).map_err(|e| invalid(format!("kinds: {kind:?}: {e}")))?;
    }
    kinds.sort();
    kinds.dedup();
    if kinds.len() > MAX_KINDS {
        return Err(invalid(format!("at most {MAX_KINDS} kinds")));
    }
    Ok(kinds)
}

fn check_suite_id(suite_id: Option<SuiteId>) -> Result<Option<SuiteId>, WebhookError> {
    if let Some(suite) = &suite_id
        && (suite.as_str().is_empty()
            || suite.as_str().len() > MAX_SUITE_ID_LEN
            || suite.as_str().chars().any(char::is_control))
    {
        return Err(invalid(format!("suite_id must be 1 to {MAX_SUITE_ID_LEN} printable characters")));
    }
    Ok(suite_id)
}

fn kinds_json(kinds: &[String]) -> String {
    serde_json::to_string(kinds).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_kinds(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// The events a subscription wants.
fn filter_of(row: &WebhookRow) -> EventFilter {
    EventFilter { suite_id: row.suite_id.clone(), kinds: parse_kinds(&row.kinds), ..EventFilter::default() }
}

pub async fn create(db: &Db, new: NewSubscription, reach: &Suites) -> Result<Created, WebhookError> {
    let url = check_url(&new.url)?;
    let kinds = check_kinds(new.kinds)?;
    let suite_id = check_suite_id(new.suite_id)?;
    reach.check_optional(suite_id.as_ref().map(SuiteId::as_str))?;
    let secret = signing::new_secret();
    let row = NewWebhook {
        id: format!("wh_{}", hex::encode(rand::random::<[u8; 12]>())),
        url: url.to_string(),
        kinds: kinds_json(&kinds),
        suite_id,
        enabled: new.enabled,
        secret: db.sealer().seal(&secret),
        now: now_ms(),
    };
    let row = db.run(move |conn| rows::insert(conn, &row)).await?;
    Ok(Created { subscription: Subscription::from(&row), secret })
}

/// The subscriptions `reach` covers.
pub async fn list(db: &Db, reach: &Suites) -> Result<Vec<Subscription>, WebhookError> {
    let found = db.run(rows::list).await?;
    Ok(found
        .iter()
        .filter(|row| reach.check_optional(row.suite_id.as_ref().map(SuiteId::as_str)).is_ok())
        .map(Subscription::from)
        .collect())
}

/// The subscription `id`, if `reach` covers its suite.
async fn find(db: &Db, id: &str, reach: &Suites) -> Result<WebhookRow, WebhookError> {
    let id = id.to_owned();
    let row = db.run(move |conn| rows::find(conn, &id)).await?.ok_or(WebhookError::NotFound)?;
    reach.check_optional(row.suite_id.as_ref().map(SuiteId::as_str))?;
    Ok(row)
}

pub async fn get(db: &Db, id: &str, reach: &Suites) -> Result<Subscription, WebhookError> {
    Ok(Subscription::from(&find(db, id, reach).await?))
}

pub async fn update(db: &Db, id: &str, changes: Changes, reach: &Suites) -> Result<Subscription, WebhookError> {
    let changes = WebhookChanges {
        url: changes.url.as_deref().map(check_url).transpose()?.map(String::from),
        kinds: changes.kinds.map(check_kinds).transpose()?.as_deref().map(kinds_json),
        suite_id: changes.suite_id.map(check_suite_id).transpose()?,
        enabled: changes.enabled,
        updated_at: now_ms(),
    };
    if let Some(suite_id) = &changes.suite_id {
        reach.check_optional(suite_id.as_ref().map(SuiteId::as_str))?;
    }
    let row = find(db, id, reach).await?;
    let row = db.run(move |conn| rows::update(conn, &row.id, &changes)).await?.ok_or(WebhookError::NotFound)?;
    Ok(Subscription::from(&row))
}

/// Deletes a subscription; the deliverer stops its deliveries within a second.
pub async fn remove(db: &Db, id: &str, reach: &Suites) -> Result<(), WebhookError> {
    let row = find(db, id, reach).await?;
    if db.run(move |conn| rows::delete(conn, &row.id)).await? { Ok(()) } else { Err(WebhookError::NotFound) }
}

/// Deliveries with a row, in event order after `after`.
pub async fn deliveries(
    db: &Db,
    id: &str,
    after: EventId,
    limit: i64,
    reach: &Suites,
) -> Result<Vec<Delivery>, WebhookError> {
    let row = find(db, id, reach).await?;
    let found = db.run(move |conn| rows::deliveries(conn, &row.id, after, limit)).await?;
    Ok(found.into_iter().map(Delivery::from).collect())
}

/// Queues the selected events as due deliveries; returns how many were queued.
pub async fn replay(db: &Db, id: &str, replay: Replay, reach: &Suites) -> Result<usize, WebhookError> {
    match &replay {
        Replay::Range { after, until } if *after < EventId::BEFORE_ALL || after > until => {
            return Err(invalid("after must be 0 or more and not above until"));
        }
        Replay::Events(ids) if ids.is_empty() || ids.len() > MAX_REPLAY => {
            return Err(invalid(format!("event_ids must hold 1 to {MAX_REPLAY} ids")));
        }
        _ => {}
    }
    let row = find(db, id, reach).await?;
    let queued = db
        .run(move |conn| {
            let selection = match &replay {
                Replay::Range { after, until } => ReplaySelection::Range { after: *after, until: *until },
                Replay::Events(ids) => ReplaySelection::Ids(ids),
            };
            rows::queue_replay(conn, &row.id, &selection, &filter_of(&row), MAX_REPLAY, now_ms())
        })
        .await?;
    queued.ok_or_else(|| invalid(format!("the range holds more than {MAX_REPLAY} matching events; replay it in parts")))
}
