//! Storage: one schema over SQLite and PostgreSQL through diesel.
//!
//! Every query is written once and compiled for both backends by [`with_backend!`];
//! [`Db::run`] is the only place that touches a connection, always on a blocking
//! thread, so the async workers never wait on disk or network I/O of the database.
//! SQLite runs in WAL mode with `synchronous=FULL`: a commit is on disk when it returns.

pub mod api_keys;
pub mod audit;
pub mod auth_codes;
pub mod console;
pub mod corps;
pub mod event_keys;
pub mod events;
pub mod ids;
pub mod install_states;
pub mod leases;
pub mod licenses;
pub mod login_codes;
pub mod registrations;
pub mod schema;
pub mod sealing;
pub mod suites;
pub mod ticket_budgets;
pub mod tokens;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::DatabaseUrl;
use crate::model::EventId;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Serialises migrations of instances that start together on one PostgreSQL database.
const MIGRATION_LOCK_KEY: i64 = 0x7765_636f_6d01;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("database task failed")]
    Task,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A pooled connection to whichever backend `DATABASE_URL` names.
pub enum Conn {
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
    Pg(PooledConnection<ConnectionManager<PgConnection>>),
}

/// Runs `$body` with `$c` bound to the concrete connection of either backend, so one
/// diesel query is type-checked and compiled for both.
#[macro_export]
macro_rules! with_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::Conn::Sqlite(pooled) => {
                let $c: &mut ::diesel::SqliteConnection = &mut **pooled;
                $body
            }
            $crate::store::Conn::Pg(pooled) => {
                let $c: &mut ::diesel::PgConnection = &mut **pooled;
                $body
            }
        }
    };
}

/// A transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`), so it waits on `busy_timeout` instead of failing when
/// another connection wrote since it started reading.
pub trait WriteTransaction: Connection {
    fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>;
}

impl WriteTransaction for SqliteConnection {
    fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.immediate_transaction(f)
    }
}

impl WriteTransaction for PgConnection {
    fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.transaction(f)
    }
}

#[derive(Clone)]
enum Pools {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Pg(Pool<ConnectionManager<PgConnection>>),
}

/// Handle to the database pool; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pools: Pools,
    /// Ticks whenever this process committed events: long polls and webhook
    /// deliverers wake on it (and poll slowly for other instances' commits).
    appended: Arc<tokio::sync::watch::Sender<()>>,
    /// The SQLite file, for reporting its WAL's size.
    sqlite_path: Option<std::path::PathBuf>,
    /// Seals what goes into secret columns and opens what comes out.
    sealer: sealing::Sealer,
    /// PostgreSQL's [`events::committed_through`], as readers last asked for it.
    committed: Arc<tokio::sync::Mutex<CommittedThrough>>,
}

/// SQLite's `journal_size_limit`: what a WAL is cut back to when it restarts.
pub const SQLITE_WAL_LIMIT_BYTES: u64 = 64 << 20;

/// How often PostgreSQL's committed-through id is read at most: each read holds every
/// instance's appends back for up to one commit.
pub const COMMITTED_REFRESH: Duration = Duration::from_millis(20);
/// How long it is kept while this process appends nothing.
pub const COMMITTED_MAX_AGE: Duration = Duration::from_millis(100);

/// The last committed-through id read, when its read began, and whether this process
/// appended since.
struct CommittedThrough {
    read: Option<(EventId, std::time::Instant)>,
    appended: tokio::sync::watch::Receiver<()>,
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            // busy_timeout first: the pool opens connections in parallel, and switching a
            // new database to WAL needs a moment of exclusive access. temp_store in memory:
            // a multi-row INSERT's statement journal would otherwise be a temp file per batch.
            // journal_size_limit: a WAL grown while a reader held old pages is cut back to
            // 64 MiB when it restarts, instead of keeping its peak size on disk for good.
            // Not lower: a burst writes 50 MB/s of WAL, and cutting the file back on every
            // restart made each new frame allocate, zero and later discard ext4 blocks
            // (13 % of the server's CPU at 4 MiB; BENCHMARKS.md). wal_autocheckpoint: under
            // a continuous burst only the writer's own checkpoint lets the WAL restart, and
            // it stalls its commit for longer the bigger the WAL: every 1024 pages (4 MiB)
            // instead of 8192 took p99 with one-second stamps from ~50 to ~16 ms
            // (BENCHMARKS.md).
            "PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
             PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384; \
             PRAGMA wal_autocheckpoint = 1024; PRAGMA journal_size_limit = {SQLITE_WAL_LIMIT_BYTES};",
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Switches the SQLite file to WAL before the pool opens its connections side by
/// side: the switch needs the file to itself, and on a fresh file a connection
/// opening beside it could fail with "database is locked" (logged by the pool as an
/// error on the first start). Afterwards every connection finds WAL set already.
fn switch_to_wal(path: &std::path::Path) -> StoreResult<()> {
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| StoreError::Open(e.to_string()))?;
    SqlitePragmas.on_acquire(&mut conn).map_err(|e| StoreError::Open(e.to_string()))
}

impl Db {
    /// Opens the pool (creating the SQLite file and its folder) without migrating.
    pub fn open(url: &DatabaseUrl, sealer: sealing::Sealer) -> StoreResult<Self> {
        let sqlite_path = match url {
            DatabaseUrl::Sqlite(path) => Some(path.clone()),
            DatabaseUrl::Postgres(_) => None,
        };
        let pools = match url {
            DatabaseUrl::Sqlite(path) => {
                create_owner_only(path)?;
                switch_to_wal(path)?;
                let manager = ConnectionManager::<SqliteConnection>::new(path.to_string_lossy());
                let pool = Pool::builder()
                    .max_size(8)
                    .connection_timeout(Duration::from_secs(10))
                    .connection_customizer(Box::new(SqlitePragmas))
                    .build(manager)
                    .map_err(|e| StoreError::Open(e.to_string()))?;
                Pools::Sqlite(pool)
            }
            DatabaseUrl::Postgres(url) => {
                let manager = ConnectionManager::<PgConnection>::new(url.as_str());
                let pool = Pool::builder()
                    .max_size(16)
                    .connection_timeout(Duration::from_secs(10))
                    .build(manager)
                    .map_err(|e| StoreError::Open(redact_url_error(&e.to_string())))?;
                Pools::Pg(pool)
            }
        };
        let appended = Arc::new(tokio::sync::watch::Sender::new(()));
        let committed = CommittedThrough { read: None, appended: appended.subscribe() };
        Ok(Db { pools, appended, sqlite_path, sealer, committed: Arc::new(tokio::sync::Mutex::new(committed)) })
    }

    pub fn sealer(&self) -> &sealing::Sealer {
        &self.sealer
    }

    /// SQLite: copies the WAL back into the database file every 100 ms on its own
    /// connection (a passive checkpoint never blocks writers), so commits do not
    /// stall on the whole checkpoint SQLite would otherwise run inside them. The
    /// writer's own checkpoint every 1024 pages is left only the frames since, and
    /// restarts the WAL.
    pub fn spawn_checkpointer(&self) -> Option<tokio::task::JoinHandle<()>> {
        let Pools::Sqlite(_) = &self.pools else {
            return None;
        };
        let db = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let checkpoint = db.run(|conn| {
                    with_backend!(conn, c => c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")?);
                    Ok(())
                });
                if let Err(error) = checkpoint.await {
                    tracing::warn!(%error, "WAL checkpoint failed");
                }
            }
        }))
    }

    /// The id through which every event has committed ([`events::committed_through`]):
    /// what the feed, the webhook deliverers and the worker read up to. On PostgreSQL
    /// each read of it waits out the appends in flight on every instance, so it is
    /// read again at most every [`COMMITTED_REFRESH`], and kept at most
    /// [`COMMITTED_MAX_AGE`] when this process appended nothing since (other
    /// instances' appends show within that). One read at a time; the others take its
    /// answer.
    pub async fn committed_through(&self) -> StoreResult<EventId> {
        if let Pools::Sqlite(_) = self.pools {
            return self.run(events::committed_through).await;
        }
        let mut cache = self.committed.lock().await;
        let appended_since = cache.appended.has_changed().unwrap_or(true);
        if let Some((through, read_at)) = cache.read {
            let age = read_at.elapsed();
            if !appended_since && age < COMMITTED_MAX_AGE {
                return Ok(through);
            }
            if let Some(wait) = COMMITTED_REFRESH.checked_sub(age) {
                tokio::time::sleep(wait).await;
            }
        }
        self.read_committed_through(&mut cache).await
    }

    /// [`Db::committed_through`] as read after this call began: what a reader at the
    /// head of the log needs to see every commit made before it asked, on any instance.
    pub async fn committed_through_now(&self) -> StoreResult<EventId> {
        if let Pools::Sqlite(_) = self.pools {
            return self.run(events::committed_through).await;
        }
        let asked = std::time::Instant::now();
        let mut cache = self.committed.lock().await;
        if let Some((through, read_at)) = cache.read
            && read_at >= asked
        {
            return Ok(through);
        }
        self.read_committed_through(&mut cache).await
    }

    async fn read_committed_through(&self, cache: &mut CommittedThrough) -> StoreResult<EventId> {
        cache.appended.borrow_and_update();
        let started = std::time::Instant::now();
        let through = self.run(events::committed_through).await?;
        cache.read = Some((through, started));
        Ok(through)
    }

    /// Tells whoever waits for new events that this process committed some.
    pub fn notify_appended(&self) {
        self.appended.send_replace(());
    }

    /// A receiver whose `changed()` resolves after the next [`Db::notify_appended`].
    pub fn watch_appended(&self) -> tokio::sync::watch::Receiver<()> {
        self.appended.subscribe()
    }

    pub fn backend_name(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite(_) => "sqlite",
            Pools::Pg(_) => "postgres",
        }
    }

    /// Runs one unit of database work on a blocking thread with a pooled connection.
    pub async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> StoreResult<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || work(&mut db.connection()?)).await.map_err(|_| StoreError::Task)?
    }

    /// Checks a connection out of the pool, blocking until one is free; for a thread
    /// that keeps one (the event writer). Everything else goes through [`Db::run`].
    pub fn connection(&self) -> StoreResult<Conn> {
        Ok(match &self.pools {
            Pools::Sqlite(pool) => Conn::Sqlite(pool.get()?),
            Pools::Pg(pool) => Conn::Pg(pool.get()?),
        })
    }

    /// Applies pending migrations; on PostgreSQL under an advisory lock so that
    /// instances starting together migrate one after the other.
    pub async fn migrate(&self) -> StoreResult<()> {
        self.run(|conn| {
            let migrate_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
            match conn {
                Conn::Sqlite(c) => {
                    c.run_pending_migrations(SQLITE_MIGRATIONS).map_err(migrate_err)?;
                }
                Conn::Pg(c) => {
                    c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
                    let result = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()).map_err(migrate_err);
                    c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
                    result?;
                }
            }
            Ok(())
        })
        .await
    }

    /// A write that commits (one lease row), for `/readyz`: it fails while the
    /// database refuses writes (a full disk, a read-only PostgreSQL).
    pub async fn probe_write(&self) -> StoreResult<()> {
        self.run(|conn| leases::acquire(conn, "readiness-probe", "readyz", 0).map(drop)).await
    }

    /// Bytes in SQLite's write-ahead log (`None` on PostgreSQL, or before it exists).
    pub fn wal_bytes(&self) -> Option<u64> {
        let path = self.sqlite_path.as_ref()?;
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).ok().map(|meta| meta.len())
    }

    /// A trivial round trip, for `/healthz`.
    pub async fn ping(&self) -> StoreResult<()> {
        self.run(|conn| with_backend!(conn, c => c.batch_execute("SELECT 1").map_err(StoreError::from))).await
    }
}

/// Creates the SQLite file's folder (0700) and the file itself (0600) when absent, so
/// the database and its WAL, which SQLite creates with the file's mode, are readable
/// by the service's user only. Existing ones keep the mode their operator gave them.
fn create_owner_only(path: &std::path::Path) -> StoreResult<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let cannot =
        |what: &std::path::Path, e: std::io::Error| StoreError::Open(format!("cannot create {}: {e}", what.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(|e| cannot(parent, e))?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(cannot(path, error)),
    }
}

/// libpq errors can quote the connection string; keep only the first line and drop
/// anything that looks like credentials.
fn redact_url_error(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    if first.contains("://") || first.contains("password") {
        "cannot connect to PostgreSQL".to_owned()
    } else {
        first.to_owned()
    }
}

/// Current time as Unix milliseconds, the unit of every time column.
pub fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}
