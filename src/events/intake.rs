//! Group commit: callbacks arriving together are inserted in one transaction, and
//! each is acknowledged only after that transaction is committed. One fsync then
//! covers many callbacks, and nothing acknowledged can be lost.
//!
//! The writer is one OS thread that keeps its own connection: a request handler
//! hands its event straight to it and is woken by it, with no runtime task or
//! pool checkout in between, and SQLite keeps that connection's page cache (which
//! it drops whenever another connection wrote since) warm across batches.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::model::{EventId, EventStatus};
use crate::store::events::{NewEvent, append};
use crate::store::{Conn, Db, StoreError};
use crate::telemetry;

/// The most events one transaction takes; more wait for the next commit.
const MAX_BATCH: usize = 512;
/// Submissions waiting beyond this make callers wait: backpressure, not memory growth.
const QUEUE_CAPACITY: usize = 8192;

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
        std::thread::Builder::new().name("event-writer".into()).spawn(move || write_batches(&db, receiver, &stored))?;
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

fn write_batches(db: &Db, mut receiver: mpsc::Receiver<Submission>, stored: &Notify) {
    let mut conn: Option<Conn> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (events, replies): (Vec<NewEvent>, Vec<_>) = batch.drain(..).map(|s| (s.event, s.reply)).unzip();
        match store_batch(db, &mut conn, &events) {
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
                // The connection may be what failed: the next batch takes a fresh one.
                conn = None;
                log_store_error(events.len(), &error);
                for reply in replies {
                    let _ = reply.send(Err(()));
                }
            }
        }
    }
}

fn store_batch(db: &Db, conn: &mut Option<Conn>, events: &[NewEvent]) -> Result<Vec<Option<EventId>>, StoreError> {
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(db.connection()?),
    };
    append(conn, events)
}

fn log_store_error(count: usize, error: &StoreError) {
    tracing::error!(batch = count, %error, "storing callbacks failed; none of them was acknowledged");
}
