//! Group commit: callbacks arriving together are inserted in one transaction, and
//! each is acknowledged only after that transaction is committed. One fsync then
//! covers many callbacks, and nothing acknowledged can be lost.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::store::events::{NewEvent, STATUS_PENDING, append};
use crate::store::{Db, StoreError};

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
    New,
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
    /// Starts the writer; it ends when every `Intake` clone is dropped and the queue is drained.
    pub fn start(db: Db, stored: Arc<Notify>) -> (Self, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer = tokio::spawn(write_batches(db, receiver, stored));
        (Intake { queue }, writer)
    }

    /// Stores one event durably; returns once it is committed.
    pub async fn submit(&self, event: NewEvent) -> Result<Stored, IntakeError> {
        let (reply, committed) = oneshot::channel();
        self.queue.send(Submission { event, reply }).await.map_err(|_| IntakeError::Unavailable)?;
        committed.await.map_err(|_| IntakeError::Unavailable)?.map_err(|()| IntakeError::Unavailable)
    }
}

async fn write_batches(db: Db, mut receiver: mpsc::Receiver<Submission>, stored: Arc<Notify>) {
    let mut buffer = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut buffer, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<_>) = buffer.drain(..).map(|s| (s.event, s.reply)).unzip();
        let count = events.len();
        let has_effects: Vec<bool> = events.iter().map(|event| event.status == STATUS_PENDING).collect();
        match db.run(move |conn| append(conn, &events)).await {
            Ok(fresh) => {
                // Only new events with an effect are the worker's business.
                let wake_worker = fresh.iter().zip(&has_effects).any(|(is_new, pending)| *is_new && *pending);
                for (reply, is_new) in replies.into_iter().zip(fresh) {
                    let _ = reply.send(Ok(if is_new { Stored::New } else { Stored::Duplicate }));
                }
                if wake_worker {
                    stored.notify_one();
                }
            }
            Err(error) => {
                log_store_error(count, &error);
                for reply in replies {
                    let _ = reply.send(Err(()));
                }
            }
        }
    }
}

fn log_store_error(count: usize, error: &StoreError) {
    tracing::error!(batch = count, %error, "storing callbacks failed; none of them was acknowledged");
}
