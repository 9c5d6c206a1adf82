use serde_json::Value;
use wecom_provider::app::StartOptions;

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_ok_without_auth() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    assert_eq!(app.get_raw("/healthz").await, (200, "ok".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn the_api_needs_the_bearer_token_and_answers_json_errors() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let url = app.url(&format!("/api/v1/suites/{SUITE_ID}"));
    for request in [
        app.client.get(&url),
        app.client.get(&url).bearer_auth("wrong-token"),
        app.client.get(&url).header("Authorization", ADMIN_TOKEN),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(body["error"]["message"].is_string());
    }
    let (status, body) = app.api("/api/v1/suites/wwnosuch").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = app.api("/api/v1/no/such/route").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let view = app.suite_view(SUITE_ID).await;
    assert!(!view.to_string().contains(SUITE_SECRET));
    app.stop().await;
}

#[tokio::test]
async fn the_api_answers_503_until_admin_token_is_set() {
    let db = TestDb::new();
    let app = TestApp::spawn_with(&db, StartOptions::default(), |env| {
        env.remove("ADMIN_TOKEN");
    })
    .await;
    let (status, body) = app.api(&format!("/api/v1/suites/{SUITE_ID}")).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "admin_token_unset");
    app.stop().await;
}

#[tokio::test]
async fn the_event_feed_pages_in_id_order_with_a_cursor() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    for i in 0..5 {
        let (status, _) = app
            .post_callback(
                &command_path(SUITE_ID),
                &suite_keys(),
                SUITE_ID,
                &suite_ticket_xml(SUITE_ID, &format!("t{i}")),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, first) = app.api("/api/v1/events?limit=2").await;
    assert_eq!(status, 200);
    let first_ids: Vec<i64> = first["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(first_ids.len(), 2);
    assert_eq!(first["next_after"], first_ids[1]);

    let (_, rest) = app.api(&format!("/api/v1/events?after={}&limit=10", first_ids[1])).await;
    let rest_ids: Vec<i64> = rest["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(rest_ids.len(), 3);
    assert!(rest_ids[0] > first_ids[1] && rest_ids.windows(2).all(|w| w[0] < w[1]));

    let (_, empty) = app.api(&format!("/api/v1/events?after={}", rest_ids[2])).await;
    assert_eq!(empty["events"], Value::Array(vec![]));
    assert_eq!(empty["next_after"], rest_ids[2], "an empty page keeps the cursor");

    let event = &rest["events"][0];
    for key in ["id", "suite_id", "corpid", "kind", "received_at", "fields"] {
        assert!(event.get(key).is_some(), "event has {key}");
    }
    for bad in ["limit=0", "limit=1001", "after=-1", "limit=abc"] {
        let (status, body) = app.api(&format!("/api/v1/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], "invalid_query", "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_failed_authentication_is_logged_with_the_client_and_slowed() {
    let db = TestDb::new();
    let app = TestApp::spawn_binary(&db, |env| {
        env.insert("RUST_LOG".into(), "warn,wecom_provider=info".into());
    })
    .await;
    let url = app.url(&format!("/api/v1/suites/{SUITE_ID}"));
    let started = std::time::Instant::now();
    let response = app.client.get(&url).bearer_auth("guessed-token-value").send().await.expect("request");
    assert_eq!(response.status().as_u16(), 401);
    assert!(started.elapsed() >= std::time::Duration::from_millis(250), "slowed: {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let (status, _) = app.api(&format!("/api/v1/suites/{SUITE_ID}")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < std::time::Duration::from_millis(250), "the right token is not slowed");
    let output = eventually("the failure is logged", || async {
        let output = app.output();
        output.contains("authentication failed").then_some(output)
    })
    .await;
    let line = output.lines().find(|line| line.contains("authentication failed")).expect("a log line");
    assert!(line.contains("client=127.0.0.1") && line.contains("key=\"unknown\""), "{line}");
    assert!(!output.contains("guessed-token-value"), "the presented token is never logged");
    app.stop().await;
}

#[tokio::test]
async fn a_bearer_token_shorter_than_32_characters_is_refused_at_start() {
    let db = TestDb::new();
    let mut env = env_for(&db);
    env.insert("ADMIN_TOKEN".into(), "short-token".into());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wecom-provider"))
        .arg("serve")
        .env_clear()
        .envs(&env)
        .output()
        .expect("binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ADMIN_TOKEN: must be at least 32 characters"), "{stderr}");
    assert!(!stderr.contains("short-token"), "{stderr}");
}

#[tokio::test]
async fn readyz_answers_ready_while_writes_commit_and_the_writer_runs() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let (status, body) = app.get_raw("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["ready"], true);
    assert_eq!(body["writes"], "ok");
    assert_eq!(body["event_writer"], "alive");
    assert_eq!(body["wal_bytes"].is_u64(), !db.is_postgres(), "{body}");
    app.stop().await;
}

/// PostgreSQL only (a read-only database is how it refuses writes here; a full disk
/// is the SQLite case): `/readyz` fails while writes are refused, callbacks answer
/// 503, and both recover once writes commit again.
#[tokio::test]
async fn readyz_fails_while_the_database_refuses_writes_and_recovers() {
    let db = TestDb::new();
    if !db.is_postgres() {
        eprintln!("SKIPPED readyz_fails_while_the_database_refuses_writes_and_recovers: needs PostgreSQL");
        return;
    }
    let app = TestApp::spawn(&db).await;
    let name = db.url_string().rsplit('/').next().expect("a database name").to_owned();
    let drop_sessions = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid();"
    );
    db.execute(&format!("ALTER DATABASE {name} SET default_transaction_read_only = on; {drop_sessions}"));
    let refused = eventually("readiness fails", || async {
        let (status, body) = app.get_raw("/readyz").await;
        (status == 503).then_some(body)
    })
    .await;
    let refused: Value = serde_json::from_str(&refused).expect("json");
    assert_eq!((refused["ready"].as_bool(), refused["writes"].as_str()), (Some(false), Some("refused")), "{refused}");
    let (status, _) = app
        .post_callback_once(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "t"))
        .await;
    assert_eq!(status, 503, "nothing is acknowledged that cannot be stored");
    assert_eq!(app.get_raw("/healthz").await.0, 200, "liveness stays up");

    db.execute(&format!("BEGIN READ WRITE; ALTER DATABASE {name} SET default_transaction_read_only = off; COMMIT;"));
    db.execute(&drop_sessions);
    eventually("readiness recovers", || async { (app.get_raw("/readyz").await.0 == 200).then_some(()) }).await;
    let (status, _) = eventually("callbacks are stored again", || async {
        let answer = app
            .post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "t2"))
            .await;
        (answer.0 == 200).then_some(answer)
    })
    .await;
    assert_eq!(status, 200);
    app.stop().await;
}
