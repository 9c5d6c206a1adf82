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
    // The dead instance's worker lease expires, then this one applies what is left.
    eventually("every event applied", || async {
        app.events().await.iter().all(|event| event["status"] == "done").then_some(())
    })
    .await;
    assert_eq!(app.suite_view(SUITE_ID).await["has_ticket"], true);
    app.stop().await;
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
