//! The effects worker. One instance at a time holds the `events` lease and works
//! the log off in id order; a failed effect is retried with exponential backoff and
//! holds back later events of its suite until it succeeds or is given up.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::effects::{EffectError, Effects};
use crate::backoff::backoff_ms;
use crate::store::{Db, events, leases, now_ms};

const LEASE_NAME: &str = "events-worker";
/// A crashed holder delays effects by at most this long; a live one renews the
/// lease every third of it, between events, so a slow effect never loses it.
const LEASE_TTL_MS: i64 = 10_000;
const LEASE_RENEW_MS: i64 = LEASE_TTL_MS / 3;
/// Without a wake-up (another instance stored the event, a retry came due) the
/// worker still looks this often.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
const BATCH: i64 = 200;
/// Attempts before an event is given up and marked `failed` (about 20 minutes).
pub const MAX_ATTEMPTS: i32 = 10;

pub struct Worker {
    db: Db,
    effects: Effects,
    wake: Arc<Notify>,
    holder: String,
    /// When the lease was last taken or renewed (Unix ms); 0 when not held.
    lease_renewed_at: AtomicI64,
}

impl Worker {
    pub fn new(db: Db, effects: Effects, wake: Arc<Notify>) -> Self {
        let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Worker { db, effects, wake, holder, lease_renewed_at: AtomicI64::new(0) }
    }

    pub fn spawn(self: Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.run_once().await {
                    tracing::warn!(%error, "event worker pass failed; retrying");
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        })
    }

    /// Works off every due event while holding the lease.
    pub async fn run_once(&self) -> Result<(), crate::store::StoreError> {
        loop {
            if !self.take_lease().await? {
                return Ok(());
            }
            let due = self.db.run(|conn| events::due(conn, BATCH)).await?;
            if due.is_empty() {
                self.effects.after_events().await;
                return Ok(());
            }
            let mut held_back = HashSet::new();
            for event in due {
                if event.ordering_key.as_ref().is_some_and(|key| held_back.contains(key)) {
                    continue;
                }
                if !self.take_lease().await? {
                    return Ok(());
                }
                if !self.process(&event).await?
                    && let Some(key) = event.ordering_key
                {
                    held_back.insert(key);
                }
            }
        }
    }

    /// Takes or renews the lease; false while another instance holds it. A lease
    /// renewed less than a third of its life ago is still ours without asking the
    /// database: the worker's idle passes then cost no write (and no fsync).
    async fn take_lease(&self) -> Result<bool, crate::store::StoreError> {
        let renewed_at = self.lease_renewed_at.load(Ordering::Relaxed);
        if now_ms() - renewed_at < LEASE_RENEW_MS {
            return Ok(true);
        }
        let holder = self.holder.clone();
        let taken = self.db.run(move |conn| leases::acquire(conn, LEASE_NAME, &holder, LEASE_TTL_MS)).await?;
        self.lease_renewed_at.store(if taken { now_ms() } else { 0 }, Ordering::Relaxed);
        Ok(taken)
    }

    /// Applies one event; false when it is to be retried later.
    async fn process(&self, event: &events::PendingEvent) -> Result<bool, crate::store::StoreError> {
        let id = event.id;
        match self.effects.apply(event).await {
            Ok(()) => {
                self.db.run(move |conn| events::mark_done(conn, id)).await?;
                Ok(true)
            }
            Err(error) => {
                let attempts = event.attempts + 1;
                let retry_at = match &error {
                    EffectError::Retryable(_) if attempts < MAX_ATTEMPTS => Some(now_ms() + backoff_ms(event.attempts)),
                    _ => None,
                };
                tracing::warn!(event = id, kind = %event.kind, attempts, %error, retrying = retry_at.is_some(), "effect failed");
                let message = error.to_string();
                self.db.run(move |conn| events::mark_failed_attempt(conn, id, &message, retry_at)).await?;
                Ok(retry_at.is_none())
            }
        }
    }

    /// Lets another instance take over at once (on shutdown).
    pub async fn release(&self) {
        self.lease_renewed_at.store(0, Ordering::Relaxed);
        let holder = self.holder.clone();
        let _ = self.db.run(move |conn| leases::release(conn, LEASE_NAME, &holder)).await;
    }
}
