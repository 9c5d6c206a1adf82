//! Retention: done events older than the window are pruned in the background (never
//! pending or failed ones, never inside an ingest transaction), and a callback
//! signed before the window is refused, so a replayed old message cannot slip past
//! a dedupe key that was pruned with its event.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::{Db, events, now_ms};

/// Rows deleted per statement: short transactions, so ingest never waits long.
const PRUNE_BATCH: i64 = 2_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Between two batches of one pass, so a backlog is deleted without hogging the writer.
const BATCH_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    window_ms: i64,
}

impl Retention {
    pub fn days(days: u32) -> Self {
        Retention { window_ms: i64::from(days) * 24 * 60 * 60 * 1000 }
    }

    /// Whether a callback signed at `timestamp` (Unix seconds, as WeCom signs it)
    /// is older than the window. A timestamp that is no number is not stale here:
    /// the signature check has already vouched for it.
    pub fn is_stale(&self, timestamp: &str) -> bool {
        timestamp.trim().parse::<i64>().is_ok_and(|seconds| seconds.saturating_mul(1000) < now_ms() - self.window_ms)
    }

    /// Prunes once a minute, in batches.
    pub fn spawn_pruner(self, db: Db) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tick.tick().await;
                match self.prune(&db).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "pruned done events past retention"),
                    Err(error) => tracing::warn!(%error, "pruning old events failed; trying again later"),
                }
            }
        })
    }

    /// Deletes every done event older than the window; returns how many.
    pub async fn prune(&self, db: &Db) -> Result<usize, crate::store::StoreError> {
        let cutoff = now_ms() - self.window_ms;
        let mut pruned = 0;
        loop {
            let deleted = db.run(move |conn| events::prune_done(conn, cutoff, PRUNE_BATCH)).await?;
            pruned += deleted;
            if deleted < usize::try_from(PRUNE_BATCH).unwrap_or(usize::MAX) {
                return Ok(pruned);
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_timestamps_before_the_window_are_stale() {
        let retention = Retention::days(30);
        let now = now_ms() / 1000;
        assert!(!retention.is_stale(&now.to_string()));
        assert!(!retention.is_stale(&(now - 29 * 86_400).to_string()));
        assert!(retention.is_stale(&(now - 31 * 86_400).to_string()));
        assert!(!retention.is_stale("not-a-number"));
    }
}
