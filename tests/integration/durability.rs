use wecom_provider::app::StartOptions;

use crate::helpers::*;

#[tokio::test]
async fn a_restart_on_the_same_database_keeps_events_and_the_ticket() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let (status, _) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "kept")).await;
    assert_eq!(status, 200);
    app.settled().await;
    let first_seen = app.suite_view(SUITE_ID).await["ticket_updated_at"].clone();
    assert!(first_seen.is_string());
    app.stop().await;

    let app = TestApp::spawn(&db).await;
    let view = app.suite_view(SUITE_ID).await;
    assert_eq!(view["has_ticket"], true);
    assert_eq!(view["ticket_updated_at"], first_seen);
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], "done");
    app.stop().await;
}

#[tokio::test]
async fn an_event_acknowledged_before_its_effect_ran_is_applied_after_restart() {
    let db = TestDb::new();
    let stopped_worker = StartOptions { run_worker: false, ..StartOptions::default() };
    let app = TestApp::spawn_with(&db, stopped_worker, |_| {}).await;
    let (status, body) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "late")).await;
    assert_eq!((status, body.as_str()), (200, "success"));
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], "pending");
    assert_eq!(app.suite_view(SUITE_ID).await["has_ticket"], false);
    app.stop().await;

    let app = TestApp::spawn(&db).await;
    let events = app.settled().await;
    assert_eq!(events[0]["status"], "done");
    assert_eq!(events[0]["attempts"], 1);
    assert_eq!(app.suite_view(SUITE_ID).await["has_ticket"], true);
    app.stop().await;
}

/// The binary is killed with SIGKILL right after answering: every callback it
/// acknowledged must be in the database when it comes back.
#[tokio::test]
async fn callbacks_acknowledged_before_a_kill_9_survive_it() {
    let db = TestDb::new();
    let binary = TestApp::spawn_binary(&db, |_| {}).await;
    let keys = suite_keys();
    let path = command_path(SUITE_ID);
    let tickets: Vec<String> = (0..40).map(|i| suite_ticket_xml(SUITE_ID, &format!("ticket-{i}"))).collect();
    let posts = tickets.iter().map(|xml| binary.post_callback(&path, &keys, SUITE_ID, xml));
    let results = futures_util::future::join_all(posts).await;
    binary.stop().await;
    assert!(results.iter().all(|(status, body)| *status == 200 && body == "success"));

    let app = TestApp::spawn(&db).await;
    assert_eq!(app.events().await.len(), 40, "every acknowledged callback survived");
    let retries = tickets.iter().map(|xml| app.post_callback(&path, &keys, SUITE_ID, xml));
    futures_util::future::join_all(retries).await;
    assert_eq!(app.events().await.len(), 40, "their retries are recognised after the kill");
    // The dead instance's worker lease expires, then this one applies what is left.
    eventually("every event applied", || async {
        app.events().await.iter().all(|event| event["status"] == "done").then_some(())
    })
    .await;
    assert_eq!(app.suite_view(SUITE_ID).await["has_ticket"], true);
    app.stop().await;
}

/// WeCom's retries are stored once wherever the original's dedupe key is: in the
/// writer's memory, moved to its index (SQLite), or in neither after a kill -9, when
/// the restarted writer reads the keys back from the log.
#[tokio::test]
async fn a_retry_is_stored_once_before_and_after_its_key_moves_and_across_a_kill_9() {
    let db = TestDb::new();
    let tickets =
        |batch: &str| -> Vec<String> { (0..10).map(|i| suite_ticket_xml(SUITE_ID, &format!("{batch}-{i}"))).collect() };
    let (first, second) = (tickets("first"), tickets("second"));
    let stored = || db.count("SELECT count(*) FROM events");
    let moved = || db.count("SELECT count(*) FROM event_keys");

    let binary = TestApp::spawn_binary(&db, |_| {}).await;
    post_all(&binary, &first).await;
    post_all(&binary, &first).await;
    assert_eq!(stored(), 10, "retries of keys in the writer's memory");
    if !db.is_postgres() {
        eventually("the idle writer moves the keys to their index", || async { (moved() == 10).then_some(()) }).await;
        assert_eq!(db.count("SELECT through_id FROM event_key_merges"), db.count("SELECT max(id) FROM events"));
    }
    post_all(&binary, &first).await;
    assert_eq!(stored(), 10, "retries of keys in the index");
    post_all(&binary, &second).await;
    binary.stop().await;

    let app = TestApp::spawn(&db).await;
    post_all(&app, &first).await;
    post_all(&app, &second).await;
    assert_eq!(stored(), 20, "retries after a kill -9, of moved keys and of keys only the log had");
    if !db.is_postgres() {
        eventually("the new writer moves the reloaded keys", || async { (moved() == 20).then_some(()) }).await;
    }
    app.stop().await;
}

async fn post_all(app: &TestApp, xmls: &[String]) {
    let (keys, path) = (suite_keys(), command_path(SUITE_ID));
    let answers =
        futures_util::future::join_all(xmls.iter().map(|xml| app.post_callback(&path, &keys, SUITE_ID, xml))).await;
    assert!(answers.iter().all(|(status, body)| *status == 200 && body == "success"), "{answers:?}");
}

#[tokio::test]
async fn a_callback_the_store_refuses_is_not_acknowledged_and_its_retry_is_stored_once() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let ticket = suite_ticket_xml(SUITE_ID, "refused-then-kept");
    if db.is_postgres() {
        db.execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse();",
        );
    } else {
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused'); END;");
    }
    let (status, body) = app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &ticket).await;
    assert_eq!((status, body.as_str()), (503, "storage unavailable, try again"));
    assert!(app.events().await.is_empty());

    db.execute(if db.is_postgres() {
        "DROP TRIGGER refuse ON events; DROP FUNCTION refuse();"
    } else {
        "DROP TRIGGER refuse;"
    });
    // WeCom's retry: same plaintext, fresh ciphertext.
    let (status, _) = app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &ticket).await;
    assert_eq!(status, 200);
    let (status, _) = app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &ticket).await;
    assert_eq!(status, 200);
    assert_eq!(app.settled().await.len(), 1);
    assert_eq!(app.suite_view(SUITE_ID).await["has_ticket"], true);
    app.stop().await;
}

/// The event writer keeps one connection; when PostgreSQL drops it, the batch on it
/// is refused (WeCom retries) and the next batch takes a fresh connection.
/// (SQLite connections are in-process: there is no connection to lose.)
#[tokio::test]
async fn the_event_writer_recovers_when_postgres_drops_its_connection() {
    let db = TestDb::new();
    if !db.is_postgres() {
        return;
    }
    let app = TestApp::spawn(&db).await;
    let (status, _) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "a")).await;
    assert_eq!(status, 200);
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    let second = suite_ticket_xml(SUITE_ID, "b");
    let (status, _) = app.post_callback_once(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &second).await;
    assert_eq!(status, 503);
    let (status, _) = app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &second).await;
    assert_eq!(status, 200);
    assert_eq!(app.settled().await.len(), 2);
    app.stop().await;
}

/// The SQLite database, its WAL and its folder are created readable by the service's
/// user only: they hold secrets.
#[tokio::test]
async fn the_sqlite_files_are_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new();
    let wecom_provider::config::DatabaseUrl::Sqlite(path) = db.url.clone() else {
        eprintln!("SKIPPED the_sqlite_files_are_created_owner_only: it checks SQLite files, this run is on PostgreSQL");
        return;
    };
    let app = TestApp::spawn(&db).await;
    let (status, _) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "t")).await;
    assert_eq!(status, 200);
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().expect("a folder")), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = path.with_extension("db-wal");
    assert_eq!(mode(&wal), 0o600, "{}", wal.display());
    app.stop().await;
}

/// Posts `plaintext` once, sealed; `None` when no answer came (the service died).
async fn post_once(client: &reqwest::Client, base: &str, plaintext: &str) -> Option<(u16, String)> {
    let sealed = Sealed::new(&suite_keys(), SUITE_ID, plaintext);
    let url = format!("{base}{}?{}", command_path(SUITE_ID), sealed.query());
    let response = client.post(url).body(sealed.body()).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// How many times each member's contact change is stored.
fn stored_changes(db: &TestDb) -> std::collections::HashMap<String, usize> {
    let mut stored = std::collections::HashMap::new();
    for fields in db.texts("SELECT fields AS t FROM events WHERE kind = 'change_contact'") {
        let fields: serde_json::Value = serde_json::from_str(&fields).expect("fields are JSON");
        let user = fields["UserID"].as_str().expect("UserID").to_owned();
        *stored.entry(user).or_insert(0) += 1;
    }
    stored
}

/// SIGKILL lands while 16 clients are sending: every callback answered `success`
/// is stored exactly once, and what was stored unanswered is at most what was in flight.
#[tokio::test]
async fn a_kill_9_in_the_middle_of_concurrent_load_loses_no_acknowledged_callback() {
    use std::sync::atomic::{AtomicI64, Ordering};
    const CLIENTS: usize = 16;
    let db = TestDb::new();
    let binary = TestApp::spawn_binary(&db, |_| {}).await;
    let next = std::sync::Arc::new(AtomicI64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, base, client) = (next.clone(), binary.base.clone(), binary.client.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    match post_once(&client, &base, &change_contact_xml(n)).await {
                        Some((200, body)) if body == "success" => acknowledged.push(format!("user{n}")),
                        Some(_) => {}
                        None => return acknowledged,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    binary.stop().await; // SIGKILL, with requests in flight
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.expect("client task"));
    }
    assert!(acknowledged.len() > 100, "the kill landed under load: {} acknowledged", acknowledged.len());

    let stored = stored_changes(&db);
    let missing: Vec<_> = acknowledged.iter().filter(|user| !stored.contains_key(*user)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let twice: Vec<_> = stored.iter().filter(|(_, times)| **times > 1).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    let unanswered = stored.len() - acknowledged.len();
    assert!(unanswered <= CLIENTS, "{unanswered} stored without an answer, more than were in flight");
    eprintln!("kill -9 under load: {} acknowledged, {unanswered} stored unanswered", acknowledged.len());
}

/// A WAL grown while a reader pinned it is cut back once the reader is gone.
#[tokio::test]
async fn the_wal_grown_behind_a_long_reader_is_cut_back() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    const BOUND: u64 = wecom_provider::store::SQLITE_WAL_LIMIT_BYTES;
    let db = TestDb::new();
    let wecom_provider::config::DatabaseUrl::Sqlite(path) = db.url.clone() else {
        eprintln!("SKIPPED the_wal_grown_behind_a_long_reader_is_cut_back: SQLite's WAL, this run is on PostgreSQL");
        return;
    };
    let app = TestApp::spawn(&db).await;
    let wal_bytes = || async {
        let (_, readiness) = app.api("/readyz").await;
        readiness["wal_bytes"].as_u64().unwrap_or(0)
    };
    let mut reader = diesel::SqliteConnection::establish(&path.display().to_string()).expect("sqlite opens");
    reader.batch_execute("BEGIN; SELECT COUNT(*) FROM events;").expect("read snapshot");
    let path_ = command_path(SUITE_ID);
    let keys = suite_keys();
    // A long name (longer than real ones) grows the WAL in fewer posts.
    let long_name = format!("<Name><![CDATA[{}]]></Name></xml>", "名".repeat(2000));
    let mut n = 0;
    while wal_bytes().await <= 2 * BOUND {
        let posts = (n..n + 50).map(|n| change_contact_xml(n).replace("</xml>", &long_name)).collect::<Vec<_>>();
        let sends = posts.iter().map(|xml| app.post_callback(&path_, &keys, SUITE_ID, xml));
        let results = futures_util::future::join_all(sends).await;
        assert!(results.iter().all(|(status, _)| *status == 200));
        n += 50;
        assert!(n < 20_000, "the WAL does not grow behind a reader");
    }
    reader.batch_execute("COMMIT").expect("reader done");
    let later = std::sync::atomic::AtomicI64::new(n);
    eventually("the WAL is cut back to its limit", || async {
        let n = later.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (status, _) = app.post_callback(&path_, &keys, SUITE_ID, &change_contact_xml(n)).await;
        assert_eq!(status, 200);
        (wal_bytes().await <= BOUND).then_some(())
    })
    .await;
    app.stop().await;
}

/// A small tmpfs for a disk that fills; unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (the test skips, loudly) when this process may not mount.
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallDisk { dir })
    }

    /// Writes a filler file until the disk refuses a byte more.
    fn fill(&self) {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut filler = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("filler");
        let block = vec![0u8; 4096];
        while filler.write_all(&block).and_then(|()| filler.sync_all()).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.path().join("filler")).expect("filler removed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Stored,
    NotStored,
    Uncertain,
}

#[derive(Default)]
struct Answers {
    acknowledged: Vec<i64>,
    refused: Vec<i64>,
}

impl Answers {
    /// Sends callback `n` (then counts on) and files its answer.
    async fn send(&mut self, app: &TestApp, n: &mut i64) -> Answer {
        let sent = *n;
        *n += 1;
        let (status, body) = post_once(&app.client, &app.base, &change_contact_xml(sent)).await.expect("an answer");
        match (status, body.as_str()) {
            (200, "success") => {
                self.acknowledged.push(sent);
                Answer::Stored
            }
            (503, "storage unavailable, try again") => {
                self.refused.push(sent);
                Answer::NotStored
            }
            (503, STORE_TOO_SLOW) => Answer::Uncertain,
            (status, body) => panic!("callback {sent} answered {status}: {body}"),
        }
    }
}

/// On a full disk: callbacks are answered 503 and none of those is stored, every
/// acknowledged one is; readiness says so; the service restarts on the full disk
/// and still verifies URLs; writes resume when space comes back.
#[tokio::test]
async fn a_full_disk_refuses_callbacks_honestly_and_the_service_restarts_on_it() {
    let Some(disk) = SmallDisk::mount(16) else {
        eprintln!("SKIPPED a_full_disk_refuses_callbacks_honestly…: mounting a tmpfs needs root (CAP_SYS_ADMIN)");
        return;
    };
    let db = TestDb::sqlite_at(disk.dir.path().join("wecom.db"));
    let verification = {
        let vectors = vectors();
        let a1 = &vectors["cases"][0];
        let query = |name: &str| a1[name].as_str().expect("vector field").to_owned();
        format!(
            "{}?msg_signature={}&timestamp={}&nonce={}&echostr={}",
            command_path(SUITE_ID),
            query("msg_signature"),
            query("timestamp"),
            query("nonce"),
            query("echostr_url_encoded")
        )
    };
    // What each callback's answer says of it: stored, or certainly not stored. A 503
    // "too slow" (a loaded machine) may still commit, so it says neither.
    let mut log = Answers::default();
    let mut n = 0;
    let app = TestApp::spawn_binary(&db, |_| {}).await;
    while log.acknowledged.len() < 10 {
        assert_eq!(log.send(&app, &mut n).await, Answer::Stored);
    }
    disk.fill();
    while log.refused.len() < 5 {
        log.send(&app, &mut n).await;
        assert!(n < 5_000, "a full disk never refused a write");
    }
    // SQLite reuses WAL space it already holds, and cutting the WAL back frees some:
    // a write may commit again until the disk is filled anew. Readiness follows it.
    let mut readiness = serde_json::Value::Null;
    for _ in 0..20 {
        disk.fill();
        let (status, answer) = app.api("/readyz").await;
        readiness = answer;
        if status == 503 {
            break;
        }
    }
    assert_eq!(readiness["writes"], "refused", "{readiness}");
    assert_eq!(app.get_raw("/healthz").await.0, 200, "still alive");
    app.stop().await;

    // Restarted on the full disk, it serves what needs no write.
    let app = TestApp::spawn_binary(&db, |_| {}).await;
    assert_eq!(app.get_raw(&verification).await, (200, "1616140317555161061".to_owned()));
    assert_eq!(app.api("/readyz").await.0, 503);
    assert_ne!(log.send(&app, &mut n).await, Answer::Stored, "nothing can be stored yet");

    disk.free();
    // Within a few attempts: one may be too slow on a loaded machine.
    let mut resumed = false;
    for _ in 0..5 {
        if log.send(&app, &mut n).await == Answer::Stored {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "writes resume once there is space");
    assert_eq!(app.api("/readyz").await.0, 200);
    app.stop().await;

    let stored = stored_changes(&db);
    let Answers { acknowledged, refused } = log;
    for n in &acknowledged {
        assert_eq!(stored.get(&format!("user{n}")), Some(&1), "acknowledged user{n}");
    }
    for n in &refused {
        assert!(!stored.contains_key(&format!("user{n}")), "refused user{n} was stored");
    }
    eprintln!("full disk: {} acknowledged, {} refused", acknowledged.len(), refused.len());
}

/// The first start on a new SQLite file logs no error: the pool's connections open
/// side by side, and one of them could find the file busy switching to WAL (it did in
/// about one start of four).
#[test]
fn a_new_sqlite_file_opens_without_a_locked_database_error() {
    for attempt in 0..16 {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wecom-provider"))
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("new.db").display()))
            .env("RUST_LOG", "warn")
            .output()
            .expect("runs");
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "attempt {attempt}: {log}");
        assert!(!log.contains("ERROR"), "attempt {attempt}: {log}");
    }
}
