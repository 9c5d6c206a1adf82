//! SQLite's dedupe of callbacks without a random index page per callback.
//!
//! A unique index over the dedupe key made each callback of a commit dirty its own
//! index page, because after the send time the key is a hash: one more WAL frame per
//! callback, and most of a commit's cost (BENCHMARKS.md). On SQLite the event writer
//! is the only appender of callbacks, so it keeps the keys of its recent appends in
//! memory, exactly, and moves them to `event_keys` later: sorted, many at a time, a
//! slice riding along each commit, so one index page takes many keys at once.
//!
//! Invariant: from the commit of its event on, a callback's key is in `event_keys`
//! or in the writer's [`RecentKeys`]. Every event through
//! `event_key_merges.through_id` has its key in `event_keys`, so a new writer (after
//! a restart, a crash or a failed commit) reloads the keys of the events after it
//! from the log. Derived events, appended by other connections in the transactions
//! of the changes they report, put their key in `event_keys` directly.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use super::WriteTransaction;
use super::events::NewEvent;
use super::schema::{event_key_merges, event_keys, events};
use crate::model::EventId;

/// Recent keys frozen into one sorted run once this many gather: a run's slices
/// dirty each index page it spans about once, so the larger the run, the fewer
/// pages per key (with one-second stamps a run spans the whole second's keys).
const FREEZE_AT: usize = 65_536;
/// Or once the oldest of them waited this long, so a quiet service moves them too.
const FREEZE_AFTER: Duration = Duration::from_secs(30);
/// Keys moved along each commit: at least this many, or twice the batch, so a
/// run is moved before the next one is due.
const SLICE_MIN: usize = 512;
/// Keys moved by one commit of their own while no callback waits.
const IDLE_SLICE: usize = 4_096;

diesel::define_sql_function! {
    /// SQLite's rowid of the row its connection inserted last.
    fn last_insert_rowid() -> diesel::sql_types::BigInt;
}

/// The keys of the writer's committed callbacks that are not in `event_keys` yet.
#[derive(Debug)]
pub struct RecentKeys {
    /// Not yet part of a run.
    fresh: HashSet<String>,
    fresh_since: Option<Instant>,
    /// The run being moved, sorted: `run[..moved]` are in `event_keys` already.
    run: Vec<String>,
    moved: usize,
    /// The newest event whose key `run` completes, recorded when it is moved.
    run_through: i64,
    /// The newest event whose key is in `event_keys`, `run` or `fresh`.
    newest: i64,
}

impl RecentKeys {
    /// Reads the keys of the events after the moved watermark from the log.
    pub fn load(conn: &mut SqliteConnection) -> QueryResult<Self> {
        let through: i64 = event_key_merges::table.select(event_key_merges::through_id).first(conn)?;
        let recent: Vec<(i64, String)> =
            events::table.filter(events::id.gt(through)).select((events::id, events::dedupe_key)).load(conn)?;
        let newest = recent.iter().map(|(id, _)| *id).max().unwrap_or(through);
        let fresh: HashSet<String> = recent.into_iter().map(|(_, key)| key).collect();
        let fresh_since = (!fresh.is_empty()).then(Instant::now);
        Ok(RecentKeys { fresh, fresh_since, run: Vec::new(), moved: 0, run_through: through, newest })
    }

    /// Whether keys wait to be moved (then the writer moves some when it is idle).
    pub fn has_keys_to_move(&self) -> bool {
        !self.fresh.is_empty() || self.moved < self.run.len()
    }

    fn holds(&self, key: &str) -> bool {
        self.fresh.contains(key) || self.run.binary_search_by(|held| held.as_str().cmp(key)).is_ok()
    }

    /// Appends the callbacks of `batch` not stored before (nor earlier in the batch)
    /// in one transaction, which also moves the next slice of the run. Returns, per
    /// event, its id when it was new.
    pub fn append(&mut self, conn: &mut SqliteConnection, batch: &[NewEvent]) -> QueryResult<Vec<Option<EventId>>> {
        let slice = self.next_slice(SLICE_MIN.max(2 * batch.len()));
        let ids = conn.write_transaction(|c| {
            let mut in_batch = HashSet::with_capacity(batch.len());
            let mut new_slots = Vec::with_capacity(batch.len());
            for (slot, event) in batch.iter().enumerate() {
                let key = event.dedupe_key.as_str();
                if in_batch.contains(key) || self.holds(key) || is_stored(c, key)? {
                    continue;
                }
                diesel::insert_into(events::table).values(event).execute(c)?;
                in_batch.insert(key);
                new_slots.push(slot);
            }
            // Ids are consecutive, ending at the last rowid: this transaction holds
            // SQLite's only write lock and nothing refused burned an id.
            let mut ids = vec![None; batch.len()];
            if !new_slots.is_empty() {
                let last: i64 = diesel::select(last_insert_rowid()).get_result(c)?;
                let first = last - new_slots.len() as i64 + 1;
                for (slot, id) in new_slots.into_iter().zip(first..) {
                    ids[slot] = Some(EventId::new(id));
                }
            }
            self.move_slice(c, slice.clone())?;
            Ok::<_, diesel::result::Error>(ids)
        })?;
        // Committed: only now does memory take the new keys and drop the moved ones.
        for (id, event) in ids.iter().zip(batch) {
            if let Some(id) = id {
                self.fresh.insert(event.dedupe_key.clone());
                self.newest = self.newest.max(id.get());
            }
        }
        if !self.fresh.is_empty() && self.fresh_since.is_none() {
            self.fresh_since = Some(Instant::now());
        }
        self.slice_moved(slice);
        if self.fresh.len() >= FREEZE_AT || self.fresh_since.is_some_and(|since| since.elapsed() >= FREEZE_AFTER) {
            self.freeze();
        }
        Ok(ids)
    }

    /// With no callback waiting: moves a slice of keys in a commit of its own.
    pub fn move_while_idle(&mut self, conn: &mut SqliteConnection) -> QueryResult<()> {
        self.freeze();
        let slice = self.next_slice(IDLE_SLICE);
        conn.write_transaction(|c| self.move_slice(c, slice.clone()))?;
        self.slice_moved(slice);
        Ok(())
    }

    /// Makes the fresh keys the run to move, unless one is still being moved.
    fn freeze(&mut self) {
        if self.moved < self.run.len() || self.fresh.is_empty() {
            return;
        }
        self.run = self.fresh.drain().collect();
        self.run.sort_unstable();
        self.moved = 0;
        self.run_through = self.newest;
        self.fresh_since = None;
    }

    fn next_slice(&self, len: usize) -> std::ops::Range<usize> {
        self.moved..(self.moved + len).min(self.run.len())
    }

    fn move_slice(&self, conn: &mut SqliteConnection, slice: std::ops::Range<usize>) -> QueryResult<()> {
        if slice.is_empty() {
            return Ok(());
        }
        let completes_run = slice.end == self.run.len();
        for key in &self.run[slice] {
            // A key may be there already: reloaded after a crash in the middle of a run.
            diesel::insert_into(event_keys::table)
                .values(event_keys::dedupe_key.eq(key))
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        if completes_run {
            diesel::update(event_key_merges::table)
                .set(event_key_merges::through_id.eq(self.run_through))
                .execute(conn)?;
        }
        Ok(())
    }

    fn slice_moved(&mut self, slice: std::ops::Range<usize>) {
        self.moved = slice.end;
        if self.moved == self.run.len() {
            self.run = Vec::new();
            self.moved = 0;
        }
    }
}

fn is_stored(conn: &mut SqliteConnection, key: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(event_keys::table.find(key))).get_result(conn)
}

/// Inserts events outside the writer (derived events), each claiming its key in
/// `event_keys` first, inside the caller's transaction. Returns, per event, its id
/// when it was new.
pub fn insert_claiming_keys(conn: &mut SqliteConnection, batch: &[NewEvent]) -> QueryResult<Vec<Option<EventId>>> {
    let mut ids = Vec::with_capacity(batch.len());
    for event in batch {
        let claimed = diesel::insert_into(event_keys::table)
            .values(event_keys::dedupe_key.eq(&event.dedupe_key))
            .on_conflict_do_nothing()
            .execute(conn)?;
        if claimed == 0 {
            ids.push(None);
            continue;
        }
        diesel::insert_into(events::table).values(event).execute(conn)?;
        ids.push(Some(EventId::new(diesel::select(last_insert_rowid()).get_result(conn)?)));
    }
    Ok(ids)
}

/// Deletes the keys of events about to be pruned, in the pruning transaction.
pub fn forget(conn: &mut SqliteConnection, keys: &[String]) -> QueryResult<usize> {
    diesel::delete(event_keys::table.filter(event_keys::dedupe_key.eq_any(keys))).execute(conn)
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel_migrations::MigrationHarness;

    use super::*;
    use crate::model::EventStatus;

    fn migrated(dir: &tempfile::TempDir) -> SqliteConnection {
        let path = dir.path().join("events.db");
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).expect("opens");
        conn.run_pending_migrations(super::super::SQLITE_MIGRATIONS).expect("migrates");
        conn
    }

    fn callback(key: &str) -> NewEvent {
        NewEvent {
            provider_corpid: "wwprovider".into(),
            suite_id: Some("wwsuite".into()),
            corpid: None,
            kind: "change_contact".into(),
            dedupe_key: key.into(),
            ordering_key: None,
            plaintext: None,
            fields: "{}".into(),
            received_at: 1,
            status: EventStatus::Done,
            processed_at: Some(1),
            request_id: None,
        }
    }

    fn batch(keys: &[&str]) -> Vec<NewEvent> {
        keys.iter().map(|key| callback(key)).collect()
    }

    fn ids(stored: Vec<Option<EventId>>) -> Vec<Option<i64>> {
        stored.into_iter().map(|id| id.map(EventId::get)).collect()
    }

    fn count(conn: &mut SqliteConnection, table: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!("SELECT count(*) AS n FROM {table}")).get_result::<Count>(conn).expect("counts").n
    }

    fn through(conn: &mut SqliteConnection) -> i64 {
        event_key_merges::table.select(event_key_merges::through_id).first(conn).expect("one row")
    }

    #[test]
    fn the_migration_keeps_ids_the_sequence_and_every_stored_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("events.db");
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).expect("opens");
        while conn.pending_migrations(super::super::SQLITE_MIGRATIONS).expect("lists").len() > 1 {
            conn.run_next_migration(super::super::SQLITE_MIGRATIONS).expect("migrates");
        }
        conn.batch_execute(
            "INSERT INTO events (provider_corpid, kind, dedupe_key, fields, received_at, status) VALUES \
             ('wwprovider', 'change_contact', 'a', '{}', 1, 'done'), ('wwprovider', 'change_contact', 'b', '{}', 1, 'done'), \
             ('wwprovider', 'change_contact', 'pruned', '{}', 1, 'done'); DELETE FROM events WHERE id = 3",
        )
        .expect("old rows");
        conn.run_pending_migrations(super::super::SQLITE_MIGRATIONS).expect("migrates");

        assert_eq!(count(&mut conn, "event_keys"), 2);
        assert_eq!(through(&mut conn), 2);
        let mut recent = RecentKeys::load(&mut conn).expect("loads");
        assert!(!recent.has_keys_to_move());
        let stored = recent.append(&mut conn, &batch(&["b", "c"])).expect("appends");
        assert_eq!(ids(stored), [None, Some(4)], "a pruned id is never handed out again");
    }

    #[test]
    fn a_key_is_found_in_memory_in_its_index_and_after_a_reload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = migrated(&dir);
        let mut recent = RecentKeys::load(&mut conn).expect("loads");
        let stored = recent.append(&mut conn, &batch(&["a", "b", "a"])).expect("appends");
        assert_eq!(ids(stored), [Some(1), Some(2), None]);
        assert_eq!(ids(recent.append(&mut conn, &batch(&["b", "c"])).expect("appends")), [None, Some(3)]);
        let rows: Vec<(i64, String)> =
            events::table.select((events::id, events::dedupe_key)).order(events::id).load(&mut conn).expect("reads");
        assert_eq!(rows, [(1, "a".into()), (2, "b".into()), (3, "c".into())], "ids as SQLite gave them");
        assert_eq!(count(&mut conn, "event_keys"), 0, "the index is written later");

        recent.move_while_idle(&mut conn).expect("moves");
        assert_eq!(count(&mut conn, "event_keys"), 3);
        assert_eq!(through(&mut conn), 3);
        assert!(!recent.has_keys_to_move());
        assert_eq!(ids(recent.append(&mut conn, &batch(&["a", "d"])).expect("appends")), [None, Some(4)]);

        // A new writer: "a" to "c" are in the index, "d" only in the log.
        let mut reloaded = RecentKeys::load(&mut conn).expect("reloads");
        assert!(reloaded.has_keys_to_move());
        let stored = reloaded.append(&mut conn, &batch(&["d", "c", "e"])).expect("appends");
        assert_eq!(ids(stored), [None, None, Some(5)]);
        assert_eq!(count(&mut conn, "events"), 5);
    }

    #[test]
    fn a_run_cut_short_by_a_crash_is_completed_by_the_next_writer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = migrated(&dir);
        let mut recent = RecentKeys::load(&mut conn).expect("loads");
        let keys: Vec<String> = (0..SLICE_MIN + 100).map(|i| format!("key-{i:05}")).collect();
        let first: Vec<&str> = keys.iter().map(String::as_str).collect();
        recent.append(&mut conn, &batch(&first)).expect("appends");
        recent.freeze();
        // One more callback: its commit moves the first slice of the run, not all of it.
        recent.append(&mut conn, &batch(&["late"])).expect("appends");
        assert_eq!(count(&mut conn, "event_keys"), i64::try_from(SLICE_MIN).expect("small"));
        assert_eq!(through(&mut conn), 0, "the run is not complete");
        drop(recent);

        let mut reloaded = RecentKeys::load(&mut conn).expect("reloads");
        let mut retries = first.clone();
        retries.push("late");
        let stored = reloaded.append(&mut conn, &batch(&retries)).expect("appends");
        assert!(stored.iter().all(Option::is_none), "every retry is a duplicate");
        reloaded.move_while_idle(&mut conn).expect("moves");
        assert_eq!(count(&mut conn, "event_keys"), i64::try_from(keys.len() + 1).expect("small"));
        assert_eq!(through(&mut conn), i64::try_from(keys.len() + 1).expect("small"));
    }

    #[test]
    fn a_commit_that_fails_leaves_memory_as_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = migrated(&dir);
        let mut recent = RecentKeys::load(&mut conn).expect("loads");
        diesel::sql_query("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.dedupe_key = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(&mut conn)
            .expect("trigger");
        assert!(recent.append(&mut conn, &batch(&["ok", "bad"])).is_err());
        assert_eq!(count(&mut conn, "events"), 0);
        assert_eq!(ids(recent.append(&mut conn, &batch(&["ok"])).expect("appends")), [Some(1)], "not taken for stored");
    }

    #[test]
    fn a_derived_event_claims_its_key_at_once_and_the_writer_sees_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = migrated(&dir);
        assert_eq!(
            ids(insert_claiming_keys(&mut conn, &batch(&["derived", "derived"])).expect("inserts")),
            [Some(1), None]
        );
        assert_eq!(count(&mut conn, "event_keys"), 1);
        let mut recent = RecentKeys::load(&mut conn).expect("loads");
        assert_eq!(ids(recent.append(&mut conn, &batch(&["derived"])).expect("appends")), [None]);
        assert_eq!(forget(&mut conn, &["derived".to_owned()]).expect("forgets"), 1);
    }
}
