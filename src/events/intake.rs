//! Group commit: callbacks arriving together are inserted in one transaction, and
//! each is acknowledged only after that transaction is committed. One fsync then
//! covers many callbacks, and nothing acknowledged can be lost.
//!
//! The writer is one OS thread that keeps its own connection: a request handler
//! hands its event straight to it and is woken by it, with no runtime task or
//! pool checkout in between, and SQLite keeps that connection's page cache (which
//! it drops whenever another connection wrote since) warm across batches. On SQLite
//! it also keeps the dedupe keys of its recent appends ([`RecentKeys`]) and moves
//! them to their index while no callback waits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::model::{EventId, EventStatus};
use crate::store::event_keys::RecentKeys;
use crate::store::events::{NewEvent, append};
use crate::store::{Conn, Db, StoreError};
use crate::telemetry;

/// The most events one transaction takes; more wait for the next commit.
const MAX_BATCH: usize = 512;
/// Submissions waiting beyond this make callers wait: backpressure, not memory growth.
const QUEUE_CAPACITY: usize = 8192;
/// No callback for this long: the writer moves recent dedupe keys to their index.
const IDLE_AFTER: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("event store unavailable")]
    Unavailable,
}

/// What storing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New(EventId),
    Duplicate,
}

struct Submission {
    event: NewEvent,
    reply: oneshot::Sender<Result<Stored, ()>>,
}

#[derive(Clone)]
pub struct Intake {
    queue: mpsc::Sender<Submission>,
}

impl Intake {
    /// Starts the writer thread; it ends when every `Intake` clone is dropped and the
    /// queue is drained.
    pub fn start(db: Db, stored: Arc<Notify>) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        // The writer's own clock, to wait for a callback at most IDLE_AFTER.
        let clock = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        std::thread::Builder::new()
            .name("event-writer".into())
            .spawn(move || write_batches(&db, receiver, &stored, &clock))?;
        Ok(Intake { queue })
    }

    /// Whether the writer thread still takes events (it ends only if it died).
    pub fn is_alive(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Stores one event durably; returns once it is committed.
    pub async fn submit(&self, event: NewEvent) -> Result<Stored, IntakeError> {
        let (reply, committed) = oneshot::channel();
        self.queue.send(Submission { event, reply }).await.map_err(|_| IntakeError::Unavailable)?;
        committed.await.map_err(|_| IntakeError::Unavailable)?.map_err(|()| IntakeError::Unavailable)
    }
}

fn write_batches(db: &Db, mut receiver: mpsc::Receiver<Submission>, stored: &Notify, clock: &tokio::runtime::Runtime) {
    let mut writer = Writer { conn: None, recent_keys: None };
    writer.prepare(db);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = if writer.recent_keys.as_ref().is_some_and(RecentKeys::has_keys_to_move) {
            // The timer is made inside the clock's runtime: that is where it is driven.
            match clock.block_on(async { tokio::time::timeout(IDLE_AFTER, receiver.recv()).await }) {
                Ok(first) => first,
                Err(_idle) => {
                    writer.move_keys_while_idle();
                    continue;
                }
            }
        } else {
            receiver.blocking_recv()
        };
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (events, replies): (Vec<NewEvent>, Vec<_>) = batch.drain(..).map(|s| (s.event, s.reply)).unzip();
        match writer.store(db, &events) {
            Ok(fresh) => {
                metrics::histogram!(telemetry::INTAKE_BATCH_SIZE).record(events.len() as f64);
                // Only new events with an effect are the worker's business.
                let wake_worker = fresh
                    .iter()
                    .zip(&events)
                    .any(|(new_id, event)| new_id.is_some() && event.status == EventStatus::Pending);
                let any_new = fresh.iter().any(Option::is_some);
                for (reply, new_id) in replies.into_iter().zip(fresh) {
                    let _ = reply.send(Ok(new_id.map_or(Stored::Duplicate, Stored::New)));
                }
                if any_new {
                    db.notify_appended();
                }
                if wake_worker {
                    stored.notify_one();
                }
            }
            Err(error) => {
                log_store_error(events.len(), &error);
                for reply in replies {
                    let _ = reply.send(Err(()));
                }
            }
        }
    }
}

/// The writer's connection and, on SQLite, the keys it appended lately. Both are
/// dropped on any error: the connection may be what failed, and the keys are
/// reloaded from what the log holds, so memory never claims a key a rolled-back
/// commit did not store.
struct Writer {
    conn: Option<Conn>,
    recent_keys: Option<RecentKeys>,
}

impl Writer {
    /// Connects and, on SQLite, loads the recent keys, so the idle moves start
    /// before the first callback; a failure here is retried by the first batch.
    fn prepare(&mut self, db: &Db) {
        if let Err(error) = self.connected(db).map(drop) {
            self.reset();
            tracing::warn!(%error, "the event writer could not open the event store yet; retrying with the first callback");
        }
    }

    fn connected(&mut self, db: &Db) -> Result<(&mut Conn, &mut Option<RecentKeys>), StoreError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => db.connection()?,
        };
        let conn = self.conn.insert(conn);
        if let (Conn::Sqlite(c), None) = (&mut *conn, &self.recent_keys) {
            self.recent_keys = Some(RecentKeys::load(c)?);
        }
        Ok((conn, &mut self.recent_keys))
    }

    fn store(&mut self, db: &Db, events: &[NewEvent]) -> Result<Vec<Option<EventId>>, StoreError> {
        let stored = self.connected(db).and_then(|connected| match connected {
            (Conn::Sqlite(c), Some(recent_keys)) => Ok(recent_keys.append(c, events)?),
            (conn, _) => append(conn, events),
        });
        if stored.is_err() {
            self.reset();
        }
        stored
    }

    fn move_keys_while_idle(&mut self) {
        let (Some(Conn::Sqlite(c)), Some(recent_keys)) = (&mut self.conn, &mut self.recent_keys) else { return };
        if let Err(error) = recent_keys.move_while_idle(c) {
            tracing::warn!(%error, "moving recent dedupe keys failed; they stay in memory and the log");
            self.reset();
        }
    }

    fn reset(&mut self) {
        self.conn = None;
        self.recent_keys = None;
    }
}

fn log_store_error(count: usize, error: &StoreError) {
    tracing::error!(batch = count, %error, "storing callbacks failed; none of them was acknowledged");
}
