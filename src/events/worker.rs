//! The effects worker: applies stored events' effects, many at once.
//!
//! Each due event is claimed in the database by one worker of any instance (a
//! claim names its holder and lapses 10 s after its holder stops renewing it), and
//! only the head of its ordering key (one corp of a suite) is ever due: one corp's
//! effects apply in event order, different corps and suites side by side, at most
//! `concurrency` at a time. A failed effect is retried with exponential backoff and
//! holds back later events of its own corp only, until it succeeds or is given up.
//! On shutdown the worker takes no new event, lets those in flight finish within the
//! grace period, and releases what it still holds.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use super::effects::{EffectError, Effects};
use crate::backoff::backoff_ms;
use crate::model::EventId;
use crate::store::{Db, events, now_ms};

/// A dead holder's claims lapse after this; a live one renews every third of it.
const CLAIM_TTL_MS: i64 = 10_000;
const CLAIM_RENEW: Duration = Duration::from_millis(3_000);
/// Without a wake-up (another instance stored the event, a retry came due) the
/// worker still looks this often.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Attempts before an event is given up and marked `failed` (about 20 minutes).
pub const MAX_ATTEMPTS: i32 = 10;

pub struct Worker {
    db: Db,
    effects: Effects,
    wake: Arc<Notify>,
    holder: String,
    concurrency: usize,
    /// Ids of the events whose effects run in this process, for renewing claims.
    in_flight: Mutex<HashSet<EventId>>,
}

/// A running worker; `shutdown` stops it.
pub struct WorkerHandle {
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Takes no new event, lets effects in flight finish for up to `grace`, aborts the
    /// rest, and releases every claim still held.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.send_replace(Some(grace));
        let _ = self.task.await;
    }
}

impl Worker {
    pub fn new(db: Db, effects: Effects, wake: Arc<Notify>, concurrency: usize) -> Self {
        let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Worker { db, effects, wake, holder, concurrency: concurrency.max(1), in_flight: Mutex::default() }
    }

    pub fn spawn(self: Arc<Self>) -> WorkerHandle {
        let (stop, stopping) = watch::channel(None);
        let task = tokio::spawn(async move { self.run(stopping).await });
        WorkerHandle { stop, task }
    }

    async fn run(self: Arc<Self>, mut stopping: watch::Receiver<Option<Duration>>) {
        let mut running = JoinSet::new();
        let mut renew = tokio::time::interval(CLAIM_RENEW);
        loop {
            if stopping.borrow().is_some() {
                break;
            }
            let free = self.concurrency.saturating_sub(running.len());
            let mut claimed = 0;
            if free > 0 {
                match self.claim(free).await {
                    Ok(events) => {
                        claimed = events.len();
                        for event in events {
                            let worker = self.clone();
                            running.spawn(async move { worker.process(event).await });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "claiming due events failed; retrying"),
                }
            }
            if claimed > 0 && claimed == free {
                // Every free slot was filled: more may be due once one frees up.
                tokio::select! {
                    _ = running.join_next() => {}
                    _ = stopping.changed() => {}
                    _ = renew.tick() => self.renew_claims().await,
                }
                continue;
            }
            if running.is_empty() && claimed == 0 {
                self.effects.after_events().await;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stopping.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = renew.tick() => self.renew_claims().await,
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        let grace = stopping.borrow().unwrap_or_default();
        self.drain(&mut running, grace, &mut renew).await;
    }

    async fn drain(&self, running: &mut JoinSet<()>, grace: Duration, renew: &mut tokio::time::Interval) {
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        if !running.is_empty() {
            tracing::info!(in_flight = running.len(), ?grace, "letting effects in flight finish");
        }
        while !running.is_empty() {
            tokio::select! {
                _ = running.join_next() => {}
                _ = renew.tick() => self.renew_claims().await,
                _ = &mut deadline => {
                    tracing::warn!(aborted = running.len(), "grace period over; aborting effects in flight");
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                }
            }
        }
        let holder = self.holder.clone();
        match self.db.run(move |conn| events::release_claims(conn, &holder)).await {
            Ok(released) if released > 0 => tracing::info!(released, "released event claims"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not release event claims; they lapse in 10 s"),
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<events::PendingEvent>, crate::store::StoreError> {
        let holder = self.holder.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let through = self.db.committed_through().await?;
        let claimed = self.db.run(move |conn| events::claim_due(conn, &holder, through, limit, CLAIM_TTL_MS)).await?;
        lock(&self.in_flight).extend(claimed.iter().map(|event| event.id));
        Ok(claimed)
    }

    async fn renew_claims(&self) {
        let ids: Vec<EventId> = lock(&self.in_flight).iter().copied().collect();
        if ids.is_empty() {
            return;
        }
        let holder = self.holder.clone();
        if let Err(error) = self.db.run(move |conn| events::renew_claims(conn, &holder, &ids, CLAIM_TTL_MS)).await {
            tracing::warn!(%error, "could not renew event claims");
        }
    }

    /// Applies one event and records the outcome, which also releases its claim; in a
    /// span naming the event and the request that brought it.
    async fn process(&self, event: events::PendingEvent) {
        let span = tracing::info_span!(
            "effect",
            event = %event.id,
            kind = %event.kind,
            request_id = event.request_id.as_deref().unwrap_or("-"),
        );
        self.process_in_span(event).instrument(span).await;
    }

    async fn process_in_span(&self, event: events::PendingEvent) {
        let id = event.id;
        let outcome = match self.effects.apply(&event).await {
            Ok(corpid) => self.db.run(move |conn| events::mark_done(conn, id, corpid.as_ref())).await,
            Err(error) => {
                let attempts = event.attempts + 1;
                let retry_at = match &error {
                    EffectError::Retryable(_) if attempts < MAX_ATTEMPTS => Some(now_ms() + backoff_ms(event.attempts)),
                    _ => None,
                };
                tracing::warn!(event = %id, kind = %event.kind, attempts, %error, retrying = retry_at.is_some(), "effect failed");
                let message = error.to_string();
                self.db.run(move |conn| events::mark_failed_attempt(conn, id, &message, retry_at)).await
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(event = %id, %error, "recording an effect's outcome failed; its claim lapses and it runs again");
        }
        lock(&self.in_flight).remove(&id);
        // Finishing may have made the next event of this corp due.
        self.wake.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
