//! Group commit: callbacks arriving together are inserted in one transaction, and
//! each is acknowledged only after that transaction is committed. One fsync then
//! covers many callbacks, and nothing acknowledged can be lost. When callbacks come
//! fast but the batch is small (several instances share the load), it waits up to
//! 2 ms for more ([`Arrivals`]): a commit's fixed cost is then shared.
//!
//! The writer is one OS thread that keeps its own connection: a request handler
//! hands its event straight to it and is woken by it, with no runtime task or
//! pool checkout in between, and SQLite keeps that connection's page cache (which
//! it drops whenever another connection wrote since) warm across batches. On SQLite
//! it also keeps the dedupe keys of its recent appends ([`RecentKeys`]) and moves
//! them to their index while no callback waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// A commit of fewer callbacks than this waits for more when more are due soon. Each
/// commit has a fixed cost (on PostgreSQL about 185 µs of the server's CPU for the
/// commit and its WAL flush, besides the wake-ups on both sides) that a small batch
/// pays per callback: several instances sharing the load each commit small batches.
const LINGER_TARGET: usize = 16;
/// The longest a commit waits for more callbacks.
const LINGER_MAX: Duration = Duration::from_millis(2);
/// The span the arrival rate is averaged over.
const RATE_SMOOTHING: Duration = Duration::from_millis(10);

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
    let mut arrivals = Arrivals::default();
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
        take_queued(&mut receiver, &mut batch);
        if let Some(wait) = arrivals.linger(batch.len()) {
            std::thread::sleep(wait);
            take_queued(&mut receiver, &mut batch);
        }
        arrivals.took(batch.len(), Instant::now());
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

fn take_queued(receiver: &mut mpsc::Receiver<Submission>, batch: &mut Vec<Submission>) {
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
}

/// How fast callbacks reach the writer, from the batches it took: whether a small
/// batch should wait for more. A quiet provider's callback never waits; under a load
/// that fills batches by itself nothing waits either.
#[derive(Debug, Default)]
struct Arrivals {
    /// Smoothed over about [`RATE_SMOOTHING`].
    per_second: f64,
    last_take: Option<Instant>,
}

impl Arrivals {
    /// A batch of `count` callbacks was taken at `now`.
    fn took(&mut self, count: usize, now: Instant) {
        if let Some(last) = self.last_take {
            let elapsed = now.duration_since(last).as_secs_f64().max(1e-6);
            // Smoothed over time, not batches: a long pause outweighs the burst before it.
            let weight = 1.0 - (-elapsed / RATE_SMOOTHING.as_secs_f64()).exp();
            self.per_second += weight * (count as f64 / elapsed - self.per_second);
        }
        self.last_take = Some(now);
    }

    /// How long a batch of `count` waits: until [`LINGER_TARGET`] callbacks are due at
    /// the recent rate, at most [`LINGER_MAX`]; not at all when it is full enough or
    /// fewer than one more callback is due within [`LINGER_MAX`].
    fn linger(&self, count: usize) -> Option<Duration> {
        let missing = LINGER_TARGET.checked_sub(count).filter(|&missing| missing > 0)?;
        if self.per_second * LINGER_MAX.as_secs_f64() < 1.0 {
            return None;
        }
        Some(Duration::from_secs_f64(missing as f64 / self.per_second).min(LINGER_MAX))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of `count` taken every `interval`, `times` times.
    fn steady(count: usize, interval: Duration, times: u32) -> Arrivals {
        let mut arrivals = Arrivals::default();
        let start = Instant::now();
        for i in 0..=times {
            arrivals.took(count, start + interval * i);
        }
        arrivals
    }

    #[test]
    fn a_quiet_providers_callback_is_committed_at_once() {
        let arrivals = steady(1, Duration::from_millis(50), 20);
        assert_eq!(arrivals.linger(1), None, "{arrivals:?}");
        assert_eq!(Arrivals::default().linger(1), None);
    }

    #[test]
    fn small_batches_at_a_high_rate_wait_for_about_the_target_at_most_the_longest_wait() {
        // 4 callbacks per 0.5 ms: 8,000/s, so the 12 missing are due in 1.5 ms.
        let arrivals = steady(4, Duration::from_micros(500), 200);
        let wait = arrivals.linger(4).expect("worth waiting");
        assert!(wait > Duration::from_micros(1300) && wait <= Duration::from_micros(1600), "{wait:?}");
        // 1 per ms: the 15 missing would take 15 ms; it waits the longest only.
        let slower = steady(1, Duration::from_millis(1), 200);
        assert_eq!(slower.linger(1), Some(LINGER_MAX));
    }

    #[test]
    fn a_batch_at_the_target_does_not_wait() {
        let arrivals = steady(4, Duration::from_micros(500), 200);
        assert_eq!(arrivals.linger(LINGER_TARGET), None);
        assert_eq!(arrivals.linger(MAX_BATCH), None);
    }

    #[test]
    fn the_rate_follows_a_burst_that_ended() {
        let mut arrivals = steady(8, Duration::from_micros(500), 200);
        assert!(arrivals.linger(1).is_some());
        let quiet = arrivals.last_take.expect("taken") + Duration::from_secs(1);
        arrivals.took(1, quiet);
        assert_eq!(arrivals.linger(1), None, "{arrivals:?}");
    }
}
