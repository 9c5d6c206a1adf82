//! The deliverer: one loop per enabled subscription, each under the lease
//! `webhook:{id}`, so that of several instances on one database exactly one delivers
//! a given subscription. A loop runs two halves side by side: *fresh* reads the
//! events after the subscription's cursor, posts up to 64 at once, records the
//! failures and moves the cursor in one transaction per batch; *retries* re-sends due
//! delivery rows. Every request gives up after 10 s, and nothing a loop waits on is
//! shared with another subscription's loop, the ingest path or the effects worker:
//! a slow or dead endpoint delays its own subscription only.
//!
//! At least once, in no guaranteed order: a batch cut short (stop, lost lease) is
//! sent again from the cursor, and retries overtake nothing and wait for nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use reqwest::header::CONTENT_TYPE;
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::filter_of;
use super::schedule::RetrySchedule;
use super::signing::SigningKey;
use crate::feed::{EventFilter, FeedEvent};
use crate::model::EventId;
use crate::store::events::{self, EventRow};
use crate::store::sealing::Sealer;
use crate::store::webhooks::{self as rows, DeliveryRow, DeliveryStatus, RetryOutcome, WebhookRow};
use crate::store::{Db, StoreError, leases, now_ms};
use crate::telemetry;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight per half (fresh, retries) of one subscription.
const IN_FLIGHT: usize = 64;
const BATCH: i64 = 512;
const RETRY_BATCH: i64 = 64;
const LEASE_TTL_MS: i64 = 10_000;
const LEASE_RENEW: Duration = Duration::from_millis(3_000);
/// How often a subscription another instance delivers is asked for again.
const LEASE_RETRY: Duration = Duration::from_secs(2);
/// How often the list of subscriptions is re-read (changes by the API, the command
/// line or another instance).
const RELOAD: Duration = Duration::from_secs(1);
/// Besides waking on this process's commits, fresh deliveries look this often for
/// events another instance committed.
const POLL: Duration = Duration::from_millis(500);
const RETRY_POLL: Duration = Duration::from_secs(1);
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Of a refusal's body, at most this many characters are kept.
const ERROR_CHARS: usize = 200;
const READ_AT_MOST: usize = 1024;

/// The running deliverer; [`Deliverer::stop`] ends it.
pub struct Deliverer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Shared {
    db: Db,
    http: reqwest::Client,
    schedule: RetrySchedule,
    holder: String,
}

/// What a subscription's loop delivers to; a change restarts the loop.
#[derive(Clone, PartialEq)]
struct Settings {
    url: String,
    filter: EventFilter,
    secret: String,
}

struct Target {
    id: String,
    settings: Settings,
    key: SigningKey,
}

impl Target {
    fn of(row: &WebhookRow, sealer: &Sealer) -> Option<Self> {
        let secret = match sealer.open(&row.secret) {
            Ok(secret) => secret.expose_secret().to_owned(),
            Err(error) => {
                tracing::error!(webhook = %row.id, %error, "cannot open the subscription's secret; not delivering");
                return None;
            }
        };
        let key = SigningKey::from_secret(&secret)?;
        let settings = Settings { url: row.url.clone(), filter: filter_of(row), secret };
        Some(Target { id: row.id.clone(), settings, key })
    }
}

struct Loop {
    settings: Settings,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Deliverer {
    pub fn start(db: Db, schedule: RetrySchedule) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wecom-provider/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the TLS backend initialises");
        let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let shared = Arc::new(Shared { db, http, schedule, holder });
        let (stop, stopped) = watch::channel(false);
        Deliverer { stop, task: tokio::spawn(supervise(shared, stopped)) }
    }

    /// Stops every loop (requests in flight are dropped and sent again by whoever
    /// delivers next) and releases their leases.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Resolves once a stop is asked for (or the asker is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn supervise(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut loops: HashMap<String, Loop> = HashMap::new();
    loop {
        match shared.db.run(rows::list).await {
            Ok(found) => reconcile(&shared, &mut loops, &found).await,
            Err(error) => tracing::warn!(%error, "cannot read webhook subscriptions"),
        }
        tokio::select! {
            () = stopped(&mut stop) => break,
            () = tokio::time::sleep(RELOAD) => {}
        }
    }
    stop_all(loops.into_values().collect()).await;
}

/// Runs a loop for every enabled subscription: stops those deleted, disabled or
/// changed, starts the new and the changed.
async fn reconcile(shared: &Arc<Shared>, loops: &mut HashMap<String, Loop>, found: &[WebhookRow]) {
    let mut wanted: HashMap<String, Target> = found
        .iter()
        .filter(|row| row.enabled)
        .filter_map(|row| Target::of(row, shared.db.sealer()))
        .map(|t| (t.id.clone(), t))
        .collect();
    let stale: Vec<String> = loops
        .iter()
        .filter(|(id, running)| wanted.get(*id).is_none_or(|target| target.settings != running.settings))
        .map(|(id, _)| id.clone())
        .collect();
    stop_all(stale.iter().filter_map(|id| loops.remove(id)).collect()).await;
    for (id, target) in wanted.drain() {
        if loops.contains_key(&id) {
            continue;
        }
        let (stop, stopped) = watch::channel(false);
        let settings = target.settings.clone();
        let task = tokio::spawn(run(shared.clone(), target, stopped));
        loops.insert(id, Loop { settings, stop, task });
    }
}

async fn stop_all(loops: Vec<Loop>) {
    for running in &loops {
        running.stop.send_replace(true);
    }
    for running in loops {
        let _ = running.task.await;
    }
}

/// One subscription: waits for its lease, delivers while holding it, and gives it
/// up when stopped.
async fn run(shared: Arc<Shared>, target: Target, mut stop: watch::Receiver<bool>) {
    let lease = format!("webhook:{}", target.id);
    loop {
        match acquire(&shared, &lease).await {
            Ok(true) => {
                tokio::select! {
                    () = stopped(&mut stop) => break,
                    () = keep_lease(&shared, &lease) => {}
                    () = fresh(&shared, &target) => {}
                    () = retries(&shared, &target) => {}
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(webhook = %target.id, %error, "cannot take the webhook lease"),
        }
        tokio::select! {
            () = stopped(&mut stop) => break,
            () = tokio::time::sleep(LEASE_RETRY) => {}
        }
    }
    let holder = shared.holder.clone();
    if let Err(error) = shared.db.run(move |conn| leases::release(conn, &lease, &holder)).await {
        tracing::warn!(webhook = %target.id, %error, "cannot release the webhook lease");
    }
}

async fn acquire(shared: &Shared, lease: &str) -> Result<bool, StoreError> {
    let (lease, holder) = (lease.to_owned(), shared.holder.clone());
    shared.db.run(move |conn| leases::acquire(conn, &lease, &holder, LEASE_TTL_MS)).await
}

/// Renews the lease; returns when it is lost (or cannot be renewed), which ends the
/// deliveries running beside it.
async fn keep_lease(shared: &Shared, lease: &str) {
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        match acquire(shared, lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(lease, "webhook lease taken over by another instance");
                return;
            }
            Err(error) => {
                tracing::warn!(lease, %error, "cannot renew the webhook lease");
                return;
            }
        }
    }
}

/// Delivers the events after the cursor, batch by batch, for as long as it runs.
async fn fresh(shared: &Shared, target: &Target) {
    let mut appended = shared.db.watch_appended();
    let mut cursor = None;
    loop {
        // Marked seen before reading, so a commit during the pass wakes the next wait.
        appended.borrow_and_update();
        match fresh_batch(shared, target, &mut cursor).await {
            Ok(true) => {}
            Ok(false) => {
                tokio::select! {
                    _ = appended.changed() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            Err(error) => {
                tracing::warn!(webhook = %target.id, %error, "webhook delivery pass failed; retrying");
                cursor = None;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

/// One batch after the cursor; true when it was full (more may be waiting). The cursor
/// also moves past events that do not match, so that no later read scans them again.
async fn fresh_batch(shared: &Shared, target: &Target, cursor: &mut Option<EventId>) -> Result<bool, StoreError> {
    let id = target.id.clone();
    let filter = target.settings.filter.clone();
    let known = *cursor;
    // Every id up to it has committed, so a page shorter than asked for covers
    // everything up to it.
    let newest = shared.db.committed_through().await?;
    let read = shared.db.run(move |conn| {
        let after = match known {
            Some(after) => after,
            None => match rows::find(conn, &id)? {
                Some(row) => row.cursor,
                None => return Ok(None),
            },
        };
        Ok(Some((after, events::page(conn, after, newest, BATCH, &filter)?)))
    });
    let Some((after, batch)) = read.await? else {
        return Ok(false);
    };
    let full = batch.len() == usize::try_from(BATCH).unwrap_or(usize::MAX);
    let last = batch.last().map_or(after, |event| event.id);
    let next = if full { last } else { last.max(newest) };
    if next <= after {
        *cursor = Some(after);
        return Ok(false);
    }
    let failed: Vec<DeliveryRow> = stream::iter(batch)
        .map(|event| async move { (event.id, attempt(shared, target, event).await) })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(|(event_id, outcome)| async move {
            let failure = outcome.err()?;
            let now = now_ms();
            Some(DeliveryRow {
                webhook_id: target.id.clone(),
                event_id,
                status: DeliveryStatus::Failed,
                attempts: 1,
                last_status: failure.status,
                last_error: Some(failure.error),
                next_attempt_at: shared.schedule.next_attempt_at(1, now, now),
                first_attempt_at: now,
                updated_at: now,
            })
        })
        .collect()
        .await;
    if !failed.is_empty() {
        tracing::warn!(webhook = %target.id, failed = failed.len(), "webhook deliveries failed; retrying later");
    }
    let id = target.id.clone();
    shared.db.run(move |conn| rows::advance(conn, &id, next, &failed)).await?;
    *cursor = Some(next);
    Ok(full)
}

/// Re-sends due delivery rows, a bounded step at a time, for as long as it runs.
async fn retries(shared: &Shared, target: &Target) {
    loop {
        match retry_step(shared, target).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(error) => tracing::warn!(webhook = %target.id, %error, "webhook retry step failed"),
        }
        tokio::time::sleep(RETRY_POLL).await;
    }
}

/// One step of due retries; true when there were any.
async fn retry_step(shared: &Shared, target: &Target) -> Result<bool, StoreError> {
    let id = target.id.clone();
    let due = shared.db.run(move |conn| rows::due(conn, &id, now_ms(), RETRY_BATCH)).await?;
    if due.is_empty() {
        return Ok(false);
    }
    let outcomes: Vec<(DeliveryRow, RetryOutcome)> = stream::iter(due)
        .map(|(row, event)| async move {
            let Some(event) = event else {
                return (row, RetryOutcome::Done);
            };
            let outcome = match attempt(shared, target, event).await {
                Ok(()) => RetryOutcome::Done,
                Err(failure) => RetryOutcome::Failed {
                    last_status: failure.status,
                    last_error: failure.error,
                    next_attempt_at: shared.schedule.next_attempt_at(row.attempts + 1, row.first_attempt_at, now_ms()),
                },
            };
            (row, outcome)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let dead = outcomes.iter().filter(|(_, o)| matches!(o, RetryOutcome::Failed { next_attempt_at: None, .. })).count();
    if dead > 0 {
        metrics::counter!(telemetry::WEBHOOK_DELIVERIES, "outcome" => "dead").increment(dead as u64);
        tracing::warn!(webhook = %target.id, dead, "webhook deliveries given up after 24 hours");
    }
    let id = target.id.clone();
    shared.db.run(move |conn| rows::record_retries(conn, &id, &outcomes, now_ms())).await?;
    Ok(true)
}

struct Failure {
    status: Option<i32>,
    error: String,
}

/// Posts one event as the feed shows it, signed; any 2xx delivers it.
async fn attempt(shared: &Shared, target: &Target, event: EventRow) -> Result<(), Failure> {
    let outcome = post(shared, target, event).await;
    let label = if outcome.is_ok() { "delivered" } else { "failed" };
    metrics::counter!(telemetry::WEBHOOK_DELIVERIES, "outcome" => label).increment(1);
    outcome
}

async fn post(shared: &Shared, target: &Target, event: EventRow) -> Result<(), Failure> {
    let msg_id = event.id.to_string();
    let body = serde_json::to_vec(&FeedEvent::from(event))
        .map_err(|e| Failure { status: None, error: format!("cannot serialise the event: {e}") })?;
    let timestamp = now_ms() / 1000;
    let signature = target.key.sign(&msg_id, timestamp, &body);
    let response = shared
        .http
        .post(&target.settings.url)
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| Failure { status: None, error: transport_error(&e) })?;
    let status = response.status();
    // Read (a little of) the body in every case: the connection is then reused.
    let head = read_head(response).await;
    if status.is_success() {
        return Ok(());
    }
    let error = if status.is_redirection() {
        format!("HTTP {}: redirects are not followed", status.as_u16())
    } else if head.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {head}", status.as_u16())
    };
    Err(Failure { status: Some(i32::from(status.as_u16())), error })
}

/// The start of the answer's body as one short line.
async fn read_head(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < READ_AT_MOST {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(ERROR_CHARS).collect();
    line.trim().to_owned()
}

/// Why a request got no answer, without the URL (it may carry credentials).
fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
    }
    let mut message = if error.is_connect() { "cannot connect".to_owned() } else { "request failed".to_owned() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message.chars().take(ERROR_CHARS).collect()
}
